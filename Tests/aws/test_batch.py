"""BatchWriteItem and BatchGetItem, with DynamoDB's limits (25 writes, 100 reads)."""
import tandem


class BatchTests(tandem.DynamoTest):
    sort_key = False

    def test_write_then_get(self):
        # 25 puts in one call, then a get of some present and some absent keys.
        r = self.ddb.batch_write_item(RequestItems={self.table: [
            {"PutRequest": {"Item": {"pk": {"S": "k%d" % i}, "v": {"N": str(i)}}}} for i in range(25)]})
        self.assertEqual(r["UnprocessedItems"], {})
        got = self.ddb.batch_get_item(RequestItems={self.table: {"Keys": [{"pk": {"S": "k%d" % i}} for i in (1, 2, 99)],
                                                                 "ProjectionExpression": "v"}})
        self.assertEqual(sorted(int(i["v"]["N"]) for i in got["Responses"][self.table]), [1, 2])
        self.assertEqual(got["UnprocessedKeys"], {})

    def test_mixed_puts_and_deletes(self):
        # Deletes and puts in one batch.
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "gone"}})
        self.ddb.batch_write_item(RequestItems={self.table: [{"DeleteRequest": {"Key": {"pk": {"S": "gone"}}}},
                                                             {"PutRequest": {"Item": {"pk": {"S": "new"}}}}]})
        self.assertNotIn("Item", self.ddb.get_item(TableName=self.table, Key={"pk": {"S": "gone"}}))
        self.assertIn("Item", self.ddb.get_item(TableName=self.table, Key={"pk": {"S": "new"}}))

    def test_limits(self):
        # 26 writes or 101 reads are refused as DynamoDB refuses them, and nothing is written.
        code = tandem.error_code(lambda: self.ddb.batch_write_item(RequestItems={self.table: [
            {"PutRequest": {"Item": {"pk": {"S": "x%d" % i}}}} for i in range(26)]}))
        self.assertEqual(code, "ValidationException")
        self.assertEqual(self.ddb.scan(TableName=self.table, Select="COUNT")["Count"], 0)
        code = tandem.error_code(lambda: self.ddb.batch_get_item(RequestItems={self.table: {"Keys": [{"pk": {"S": "x%d" % i}} for i in range(101)]}}))
        self.assertEqual(code, "ValidationException")
