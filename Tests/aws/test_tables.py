"""Table lifecycle: CreateTable, DescribeTable, ListTables, DeleteTable, and boto3's waiters."""
import tandem


class TableTests(tandem.DynamoTest):
    sort_key = False

    def test_lifecycle_with_waiters(self):
        # Create → waiter table_exists → listed and described ACTIVE → delete → waiter table_not_exists.
        name = tandem.unique("lifecycle")
        self.ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}], BillingMode="PAY_PER_REQUEST")
        self.ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        d = self.ddb.describe_table(TableName=name)["Table"]
        self.assertEqual(d["TableStatus"], "ACTIVE")
        self.assertEqual(d["KeySchema"], [{"AttributeName": "id", "KeyType": "HASH"}])
        self.assertIn(name, self.ddb.list_tables(Limit=100)["TableNames"] + list(self._all_tables()))
        self.ddb.delete_table(TableName=name)
        self.ddb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        # The deletion replicates: node B stops describing the table too.
        self.assertTrue(tandem.wait_for(lambda: tandem.error_code(lambda: self.ddb_b.describe_table(TableName=name)) == "ResourceNotFoundException"))

    def _all_tables(self):
        # ListTables pages with ExclusiveStartTableName, as boto3's paginator does.
        for page in self.ddb.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 2}):
            yield from page["TableNames"]

    def test_create_existing_and_describe_missing(self):
        # ResourceInUseException for a second create; ResourceNotFoundException for an unknown table.
        code = tandem.error_code(lambda: self.ddb.create_table(TableName=self.table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                                               BillingMode="PAY_PER_REQUEST"))
        self.assertEqual(code, "ResourceInUseException")
        self.assertEqual(tandem.error_code(lambda: self.ddb.describe_table(TableName="no-such-table")), "ResourceNotFoundException")

    def test_item_count(self):
        # DescribeTable's ItemCount counts the items.
        for i in range(3):
            self.ddb.put_item(TableName=self.table, Item={"pk": {"S": str(i)}})
        self.assertEqual(self.ddb.describe_table(TableName=self.table)["Table"]["ItemCount"], 3)


class DescribeTests(tandem.DynamoTest):
    """DescribeTable's TableId, DescribeEndpoints and DescribeLimits, as SDKs and tools call them."""
    sort_key = False

    def test_table_id_is_a_uuid_the_same_on_every_node(self):
        import re
        a = self.ddb.describe_table(TableName=self.table)["Table"]["TableId"]
        self.assertRegex(a, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        self.assertEqual(self.ddb_b.describe_table(TableName=self.table)["Table"]["TableId"], a)
        other = tandem.unique("other")
        self.ddb.create_table(TableName=other, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        self.assertNotEqual(self.ddb.describe_table(TableName=other)["Table"]["TableId"], a)
        self.ddb.delete_table(TableName=other)

    def test_describe_endpoints_and_limits(self):
        endpoints = self.ddb.describe_endpoints()["Endpoints"]
        self.assertEqual(endpoints, [{"Address": tandem.cluster().endpoints[0], "CachePeriodInMinutes": 1440}])
        limits = self.ddb.describe_limits()
        self.assertGreaterEqual(limits["TableMaxWriteCapacityUnits"], 1)
        self.assertGreaterEqual(limits["AccountMaxReadCapacityUnits"], limits["TableMaxReadCapacityUnits"])
