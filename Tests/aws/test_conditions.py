"""ConditionExpression on PutItem, UpdateItem, DeleteItem (checked against the local replica)."""
import tandem


class ConditionTests(tandem.DynamoTest):
    def test_put_if_absent(self):
        # attribute_not_exists: the first put wins, the second fails and changes nothing.
        self.ddb.put_item(TableName=self.table, Item={**self.key("c", 1), "v": {"S": "first"}}, ConditionExpression="attribute_not_exists(pk)")
        code = tandem.error_code(lambda: self.ddb.put_item(TableName=self.table, Item={**self.key("c", 1), "v": {"S": "second"}},
                                                           ConditionExpression="attribute_not_exists(pk)"))
        self.assertEqual(code, "ConditionalCheckFailedException")
        self.assertEqual(self.ddb.get_item(TableName=self.table, Key=self.key("c", 1))["Item"]["v"], {"S": "first"})

    def test_update_guarded_by_comparison_and_functions(self):
        # Comparisons, BETWEEN, IN, begins_with, contains, size, AND/OR/NOT.
        self.ddb.put_item(TableName=self.table, Item={**self.key("c", 1), "n": {"N": "5"}, "s": {"S": "hello"}, "tags": {"SS": ["a"]}})
        ok = "n BETWEEN :lo AND :hi AND begins_with(s, :h) AND contains(tags, :a) AND size(s) = :five AND NOT (n IN (:lo, :hi))"
        values = {":lo": {"N": "1"}, ":hi": {"N": "9"}, ":h": {"S": "he"}, ":a": {"S": "a"}, ":five": {"N": "5"}, ":one": {"N": "1"}}
        r = self.ddb.update_item(TableName=self.table, Key=self.key("c", 1), UpdateExpression="ADD n :one", ConditionExpression=ok,
                                 ExpressionAttributeValues=values, ReturnValues="UPDATED_NEW")
        self.assertEqual(r["Attributes"], {"n": {"N": "6"}})
        code = tandem.error_code(lambda: self.ddb.update_item(TableName=self.table, Key=self.key("c", 1), UpdateExpression="ADD n :one",
                                                              ConditionExpression="n > :hi", ExpressionAttributeValues={":hi": {"N": "9"}, ":one": {"N": "1"}}))
        self.assertEqual(code, "ConditionalCheckFailedException")

    def test_failed_condition_can_return_old_item(self):
        # ReturnValuesOnConditionCheckFailure=ALL_OLD puts the current item in the error.
        self.ddb.put_item(TableName=self.table, Item={**self.key("c", 1), "v": {"S": "kept"}})
        try:
            self.ddb.delete_item(TableName=self.table, Key=self.key("c", 1), ConditionExpression="v = :x",
                                 ExpressionAttributeValues={":x": {"S": "other"}}, ReturnValuesOnConditionCheckFailure="ALL_OLD")
            self.fail("the condition should have failed")
        except self.ddb.exceptions.ConditionalCheckFailedException as e:
            self.assertEqual(e.response["Item"]["v"], {"S": "kept"})
        self.assertIn("Item", self.ddb.get_item(TableName=self.table, Key=self.key("c", 1)))
