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


class TagTests(tandem.DynamoTest):
    """TagResource, UntagResource, ListTagsOfResource and CreateTable's Tags."""
    sort_key = False

    def arn(self, table=None):
        return self.ddb.describe_table(TableName=table or self.table)["Table"]["TableArn"]

    def tags(self, client=None, arn=None):
        out = (client or self.ddb).list_tags_of_resource(ResourceArn=arn or self.arn())["Tags"]
        return {t["Key"]: t["Value"] for t in out}

    def test_tag_untag_and_list(self):
        self.assertEqual(self.tags(), {})
        self.ddb.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "team", "Value": "cc"}, {"Key": "env", "Value": "prod"}])
        self.ddb.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "env", "Value": "test"}])
        self.assertEqual(self.tags(), {"team": "cc", "env": "test"})
        self.ddb.untag_resource(ResourceArn=self.arn(), TagKeys=["team", "absent"])
        self.assertEqual(self.tags(), {"env": "test"})
        # Tags replicate; tags set in two regions at once both stay.
        self.ddb_b.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "from-b", "Value": "1"}])
        self.ddb.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "from-a", "Value": "1"}])
        want = {"env": "test", "from-a": "1", "from-b": "1"}
        self.on_b(lambda: self.tags(self.ddb_b), want)
        self.assertTrue(tandem.wait_for(lambda: self.tags() == want), self.tags())

    def test_tag_limits_and_errors(self):
        self.ddb.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "k%d" % i, "Value": "v"} for i in range(50)])
        self.assertEqual(tandem.error_code(lambda: self.ddb.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "one-more", "Value": "v"}])),
                         "ValidationException")
        self.ddb.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "k0", "Value": "changed"}])  # replacing stays within 50
        self.assertEqual(len(self.tags()), 50)
        raw = tandem.client("dynamodb", validate=False)
        self.assertEqual(tandem.error_code(lambda: raw.tag_resource(ResourceArn=self.arn(), Tags=[{"Key": "aws:x", "Value": "v"}])),
                         "ValidationException")
        self.assertEqual(tandem.error_code(lambda: self.ddb.list_tags_of_resource(ResourceArn="not-an-arn")), "ValidationException")
        missing = "arn:aws:dynamodb:us-east-1:000000000000:table/" + tandem.unique("missing")
        self.assertEqual(tandem.error_code(lambda: self.ddb.list_tags_of_resource(ResourceArn=missing)), "ResourceNotFoundException")

    def test_create_table_tags_belong_to_that_incarnation(self):
        name = tandem.unique("tagged")
        create = lambda **kw: self.ddb.create_table(
            TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST", **kw)
        create(Tags=[{"Key": "owner", "Value": "routing"}])
        self.assertEqual(self.tags(arn=self.arn(name)), {"owner": "routing"})
        self.ddb.delete_table(TableName=name)
        create()  # the same name again: a new table, without the old one's tags
        self.assertEqual(self.tags(arn=self.arn(name)), {})
        self.ddb.delete_table(TableName=name)


class UpdateTableTests(tandem.DynamoTest):
    sort_key = False

    def update(self, **kw):
        return tandem.error_code(lambda: self.ddb.update_table(TableName=self.table, **kw))

    def test_billing_mode_and_streams(self):
        self.assertIsNone(self.update(BillingMode="PAY_PER_REQUEST"))
        self.assertIsNone(self.update(BillingMode="PROVISIONED", ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}))
        # DynamoDB: "a ValidationException if you try to disable a stream on a table that doesn't have
        # a stream" (test_streams has the rest).
        self.assertEqual(self.update(StreamSpecification={"StreamEnabled": False}), "ValidationException")
        self.assertEqual(self.update(BillingMode="PROVISIONED"), "ValidationException")
        self.assertEqual(self.update(BillingMode="PAY_PER_REQUEST", ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}),
                         "ValidationException")
        self.assertIsNone(self.update(StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}))
        # ... or to enable one on a table that has one.
        self.assertEqual(self.update(StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}), "ValidationException")
        self.assertIsNone(self.update(StreamSpecification={"StreamEnabled": False}))
        # Global secondary indexes are created by UpdateTable as DynamoDB does (test_indexes.py).
        self.assertIsNone(self.update(
            AttributeDefinitions=[{"AttributeName": "status", "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[{"Create": {"IndexName": "by-status", "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                                                     "Projection": {"ProjectionType": "ALL"}}}]))
        self.assertEqual(self.update(), "ValidationException")
        self.assertEqual(tandem.error_code(lambda: self.ddb.update_table(TableName=tandem.unique("missing"), BillingMode="PAY_PER_REQUEST")),
                         "ResourceNotFoundException")
        self.assertEqual(self.ddb.describe_table(TableName=self.table)["Table"]["TableStatus"], "ACTIVE")
