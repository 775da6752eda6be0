"""Where Tandem is better than DynamoDB global tables: writes on two nodes merge per attribute.

BETTER THAN DYNAMODB: DynamoDB global tables resolve concurrent writes per item (last writer
wins), so concurrent increments in two regions lose all but one, and SET x in one region and
SET y in another keep only one of them. Here both survive.
"""
import threading

import tandem


class MultiRegionTests(tandem.DynamoTest):
    sort_key = False

    def item(self, client):
        return client.get_item(TableName=self.table, Key={"pk": {"S": "k"}}, ConsistentRead=True).get("Item", {})

    def test_concurrent_increments_on_two_nodes_all_count(self):
        # BETTER THAN DYNAMODB: 2 × 25 increments at the same time on two nodes sum to 50 on both.
        def bump(client):
            for _ in range(25):
                client.update_item(TableName=self.table, Key={"pk": {"S": "k"}}, UpdateExpression="ADD n :one",
                                   ExpressionAttributeValues={":one": {"N": "1"}})
        threads = [threading.Thread(target=bump, args=(c,)) for c in (self.ddb, self.ddb_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in (self.ddb, self.ddb_b):
            self.assertTrue(tandem.wait_for(lambda: self.item(c).get("n") == {"N": "50"}), self.item(c))

    def test_set_of_different_attributes_on_two_nodes_both_survive(self):
        # BETTER THAN DYNAMODB: SET x on node A and SET y on node B, concurrently: the item has both.
        self.ddb.update_item(TableName=self.table, Key={"pk": {"S": "k"}}, UpdateExpression="SET x = :v",
                             ExpressionAttributeValues={":v": {"S": "from-a"}})
        self.ddb_b.update_item(TableName=self.table, Key={"pk": {"S": "k"}}, UpdateExpression="SET y = :v",
                               ExpressionAttributeValues={":v": {"S": "from-b"}})
        want = {"pk": {"S": "k"}, "x": {"S": "from-a"}, "y": {"S": "from-b"}}
        for c in (self.ddb, self.ddb_b):
            self.assertTrue(tandem.wait_for(lambda: self.item(c) == want), self.item(c))
