"""Time to live: UpdateTimeToLive/DescribeTimeToLive; expired items vanish on every node."""
import time

import tandem


class TimeToLiveTests(tandem.DynamoTest):
    sort_key = False

    def test_enable_describe_and_expire_on_both_nodes(self):
        # The setting replicates; an item whose TTL passes reads as absent on both nodes.
        self.assertEqual(self.ddb.describe_time_to_live(TableName=self.table)["TimeToLiveDescription"]["TimeToLiveStatus"], "DISABLED")
        r = self.ddb.update_time_to_live(TableName=self.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
        self.assertEqual(r["TimeToLiveSpecification"], {"Enabled": True, "AttributeName": "expires"})
        self.on_b(lambda: self.ddb_b.describe_time_to_live(TableName=self.table)["TimeToLiveDescription"].get("AttributeName"), "expires")
        now = int(time.time())
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "soon"}, "expires": {"N": str(now + 2)}})
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "later"}, "expires": {"N": str(now + 3600)}})
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "gone"}, "expires": {"N": str(now - 1)}})
        self.assertNotIn("Item", self.ddb.get_item(TableName=self.table, Key={"pk": {"S": "gone"}}), "already expired: absent at once")

        def keys(c):
            return sorted(i["pk"]["S"] for i in c.scan(TableName=self.table)["Items"])
        for c in (self.ddb, self.ddb_b):
            self.assertTrue(tandem.wait_for(lambda: keys(c) == ["later"], timeout=8), keys(c))
        # Disabling needs the same attribute name, as in DynamoDB.
        self.assertEqual(tandem.error_code(lambda: self.ddb.update_time_to_live(
            TableName=self.table, TimeToLiveSpecification={"Enabled": False, "AttributeName": "other"})), "ValidationException")
        self.ddb.update_time_to_live(TableName=self.table, TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires"})
