"""Request options SDK code passes along: ReturnConsumedCapacity, ReturnItemCollectionMetrics,
Select with ProjectionExpression on Query/Scan/BatchGetItem, ConsistentRead."""
import tandem


class OptionTests(tandem.DynamoTest):
    def setUp(self):
        super().setUp()
        # Partition "p": sort keys 0..4, each with a nested map and a 5 KB blob (two read units).
        self.ddb.batch_write_item(RequestItems={self.table: [
            {"PutRequest": {"Item": {**self.key("p", i), "m": {"M": {"a": {"N": str(i)}, "b": {"S": "x"}}},
                                     "blob": {"S": "z" * 5000}}}} for i in range(5)]})

    def test_consumed_capacity_single_items(self):
        # TOTAL gives {TableName, CapacityUnits} by DynamoDB's on-demand rules: a write is 1 KB a
        # unit (this 5 KB item: 5), a read 4 KB (2 units, half when eventually consistent).
        put = self.ddb.put_item(TableName=self.table, Item={**self.key("q", 1), "blob": {"S": "z" * 5000}},
                                ReturnConsumedCapacity="TOTAL")
        self.assertEqual(put["ConsumedCapacity"], {"TableName": self.table, "CapacityUnits": 5.0})
        get = self.ddb.get_item(TableName=self.table, Key=self.key("q", 1), ReturnConsumedCapacity="TOTAL", ConsistentRead=True)
        self.assertEqual(get["ConsumedCapacity"]["CapacityUnits"], 2.0)
        get = self.ddb.get_item(TableName=self.table, Key=self.key("q", 1), ReturnConsumedCapacity="INDEXES")
        self.assertEqual(get["ConsumedCapacity"], {"TableName": self.table, "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}})
        # A miss still costs a read, and NONE (the default) answers no ConsumedCapacity.
        self.assertEqual(self.ddb.get_item(TableName=self.table, Key=self.key("none", 1),
                                           ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]["CapacityUnits"], 0.5)
        self.assertNotIn("ConsumedCapacity", self.ddb.get_item(TableName=self.table, Key=self.key("q", 1)))
        upd = self.ddb.update_item(TableName=self.table, Key=self.key("q", 1), UpdateExpression="SET n = :v",
                                   ExpressionAttributeValues={":v": {"N": "1"}}, ReturnConsumedCapacity="TOTAL",
                                   ReturnItemCollectionMetrics="SIZE")
        self.assertEqual(upd["ConsumedCapacity"]["CapacityUnits"], 5.0)
        # No local secondary indexes, so (as on DynamoDB) no item collection metrics.
        self.assertNotIn("ItemCollectionMetrics", upd)
        dele = self.ddb.delete_item(TableName=self.table, Key=self.key("q", 1), ReturnConsumedCapacity="TOTAL")
        self.assertEqual(dele["ConsumedCapacity"]["CapacityUnits"], 5.0)
        self.assertEqual(tandem.error_code(lambda: self.ddb.get_item(TableName=self.table, Key=self.key("q", 1),
                                                                     ReturnConsumedCapacity="ALL")), "ValidationException")

    def test_consumed_capacity_pages_and_batches(self):
        # A Query page is charged for what it read, rounded up once: 5 items of ~5 KB = 7 units
        # consistent; batches answer one entry per table.
        q = self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                           ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
        self.assertEqual(q["ConsumedCapacity"], {"TableName": self.table, "CapacityUnits": 7.0})
        s = self.ddb.scan(TableName=self.table, Select="COUNT", ReturnConsumedCapacity="TOTAL")
        self.assertEqual((s["Count"], s["ConsumedCapacity"]["CapacityUnits"]), (5, 3.5))
        g = self.ddb.batch_get_item(RequestItems={self.table: {"Keys": [self.key("p", 0), self.key("p", 1)]}},
                                    ReturnConsumedCapacity="TOTAL")
        self.assertEqual(g["ConsumedCapacity"], [{"TableName": self.table, "CapacityUnits": 2.0}])
        w = self.ddb.batch_write_item(RequestItems={self.table: [{"PutRequest": {"Item": self.key("r", i)}} for i in range(3)]},
                                      ReturnConsumedCapacity="TOTAL", ReturnItemCollectionMetrics="SIZE")
        self.assertEqual((w["UnprocessedItems"], w["ConsumedCapacity"]), ({}, [{"TableName": self.table, "CapacityUnits": 3.0}]))

    def test_select_and_projection(self):
        # ProjectionExpression picks paths on Query, Scan and BatchGetItem; with it Select may only
        # be SPECIFIC_ATTRIBUTES, and ALL_PROJECTED_ATTRIBUTES needs an index (both as DynamoDB says).
        want = [{"sk": {"N": str(i)}, "m": {"M": {"a": {"N": str(i)}}}} for i in range(5)]
        q = self.ddb.query(TableName=self.table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                           ProjectionExpression="sk, m.a", Select="SPECIFIC_ATTRIBUTES")
        self.assertEqual(q["Items"], want)
        s = self.ddb.scan(TableName=self.table, ProjectionExpression="#s, m.a", ExpressionAttributeNames={"#s": "sk"})
        self.assertEqual(sorted(s["Items"], key=lambda i: int(i["sk"]["N"])), want)
        g = self.ddb.batch_get_item(RequestItems={self.table: {"Keys": [self.key("p", 2)], "ProjectionExpression": "m.b",
                                                               "ConsistentRead": True}})
        self.assertEqual(g["Responses"][self.table], [{"m": {"M": {"b": {"S": "x"}}}}])
        for select in ("ALL_ATTRIBUTES", "COUNT"):
            self.assertEqual(tandem.error_code(lambda: self.ddb.scan(TableName=self.table, ProjectionExpression="sk", Select=select)),
                             "ValidationException", select)
        self.assertEqual(tandem.error_code(lambda: self.ddb.scan(TableName=self.table, Select="ALL_PROJECTED_ATTRIBUTES")),
                         "ValidationException")
        self.assertNotIn("Items", self.ddb.scan(TableName=self.table, Select="COUNT"))
