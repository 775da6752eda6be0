"""Issue 15's bugs, found by an external DynamoDB suite, each checked against what DynamoDB
documents (Developer Guide: "Expression parameters" limits, "Comparison operator and function
reference", "Update expressions", UpdateItem's ReturnValues) and answers."""
import tandem


class ExpressionLimitTests(tandem.DynamoTest):
    sort_key = False

    def update(self, **kw):
        return self.ddb.update_item(TableName=self.table, Key=self.key("k"), **kw)

    def code(self, **kw):
        return tandem.error_code(lambda: self.update(**kw))

    def message(self, **kw):
        try:
            self.update(**kw)
        except tandem.ClientError as e:
            return e.response["Error"]["Message"]
        return ""

    def test_deep_nesting_is_a_validation_error_not_a_crash(self):
        # One request used to overflow the parser's stack and kill the node (SIGSEGV). DynamoDB
        # limits an expression to 4 KB and 300 operators, checked before it is parsed.
        v = {":v": {"N": "1"}}
        deep = "(" * 29000 + "a < b" + ")" * 29000
        self.assertIn("Expression size has exceeded the maximum allowed size",
                      self.message(UpdateExpression="SET z = :v", ConditionExpression=deep, ExpressionAttributeValues=v))
        self.assertEqual(self.code(UpdateExpression="SET z = :v", ConditionExpression="NOT " * 100000 + "a < b",
                                   ExpressionAttributeValues=v), "ValidationException")
        scan = lambda: self.ddb.scan(TableName=self.table, FilterExpression="(" * 29000 + "a < b" + ")" * 29000)
        self.assertEqual(tandem.error_code(scan), "ValidationException")
        # Under 4 KB but over 300 operators, or redundantly parenthesized: refused too.
        self.assertIn("too many operators", self.message(UpdateExpression="SET z = :v", ConditionExpression="not " * 1000 + "a<b",
                                                         ExpressionAttributeValues=v))
        self.assertIn("redundant parentheses", self.message(UpdateExpression="SET z = :v",
                                                            ConditionExpression="(" * 2046 + "a<b" + ")" * 2046,
                                                            ExpressionAttributeValues=v))
        self.assertTrue(tandem.cluster().alive(), "a node died")
        # 299 operators are fine.
        self.update(UpdateExpression="SET a = :one, b = :two", ExpressionAttributeValues={":one": {"N": "1"}, ":two": {"N": "2"}})
        self.update(UpdateExpression="SET z = :v", ConditionExpression="a<b " + "or (a<b " * 149 + ")" * 149,
                    ExpressionAttributeValues=v)
        self.assertEqual(self.ddb.get_item(TableName=self.table, Key=self.key("k"))["Item"]["z"], {"N": "1"})


class UpdateBugTests(tandem.DynamoTest):
    sort_key = False

    def update(self, expr, values=None, rv="NONE", key="k", **kw):
        args = dict(TableName=self.table, Key=self.key(key), UpdateExpression=expr, ReturnValues=rv, **kw)
        if values:
            args["ExpressionAttributeValues"] = values
        return self.ddb.update_item(**args).get("Attributes")

    def item(self, key="k"):
        return self.ddb.get_item(TableName=self.table, Key=self.key(key)).get("Item")

    def test_not_equal_between_two_missing_attributes_holds(self):
        # An unset attribute is "not equal" to anything, another unset one included.
        self.update("SET a = :v", {":v": {"N": "2"}}, ConditionExpression="q <> z")
        self.assertEqual(self.item()["a"], {"N": "2"})

    def test_remove_only_on_a_missing_item_creates_nothing(self):
        self.update("REMOVE b", key="absent")
        self.assertIsNone(self.item("absent"))
        self.update("REMOVE x.y, l[0]", key="absent")  # any path, on a missing item
        self.assertIsNone(self.item("absent"))
        # An update with no action still creates the item, as DynamoDB's does.
        self.ddb.update_item(TableName=self.table, Key=self.key("bare"))
        self.assertEqual(self.item("bare"), {"pk": {"S": "bare"}})

    def test_sets_past_the_end_append_in_index_order(self):
        # "If you add multiple elements in a single SET operation, the elements are sorted in
        # order by element number."
        self.update("SET a = :l", {":l": {"L": [{"S": "one"}]}})
        self.update("SET a[84] = :x, a[17] = :y", {":x": {"S": "a84"}, ":y": {"S": "a17"}})
        self.assertEqual(self.item()["a"], {"L": [{"S": "one"}, {"S": "a17"}, {"S": "a84"}]})

    def test_remove_through_a_non_map_is_a_validation_error(self):
        self.update("SET a = :s, b = :l", {":s": {"S": "hello"}, ":l": {"L": [{"S": "hi"}]}})
        for expr in ["REMOVE a.c", "REMOVE b.c", "REMOVE c.c", "REMOVE a[0]", "REMOVE c[0]"]:
            code = tandem.error_code(lambda: self.update(expr))
            self.assertEqual(code, "ValidationException", expr)
        self.assertEqual(self.item(), {"pk": {"S": "k"}, "a": {"S": "hello"}, "b": {"L": [{"S": "hi"}]}})

    def test_updated_new_after_removing_a_list_element(self):
        # The element that shifted into a.c[1] is what a.c[1] now holds, and it is returned.
        self.update("SET a = :m", {":m": {"M": {"c": {"L": [{"N": "1"}, {"N": "2"}, {"N": "70"}]}}}})
        self.assertEqual(self.update("REMOVE a.c[1]", rv="UPDATED_NEW"), {"a": {"M": {"c": {"L": [{"N": "70"}]}}}})
        self.assertEqual(self.update("REMOVE a.c[1], a.c[3]", rv="UPDATED_OLD"), {"a": {"M": {"c": {"L": [{"N": "70"}]}}}})
        self.assertIsNone(self.update("REMOVE a", rv="UPDATED_NEW"))


class ValidationTests(tandem.DynamoTest):
    """Requests DynamoDB refuses with a ValidationException, which Tandem used to accept."""

    def create(self, **kw):
        args = dict(TableName=tandem.unique("opts"), KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"}])
        args.update(kw)
        code = tandem.error_code(lambda: self.ddb.create_table(**args))
        if code is None:
            self.ddb.delete_table(TableName=args["TableName"])
        return code

    def test_create_table_options(self):
        # BillingMode: an enum, case-sensitive; PROVISIONED (the default) needs
        # ProvisionedThroughput and PAY_PER_REQUEST refuses it.
        self.assertEqual(self.create(BillingMode="unknown"), "ValidationException")
        self.assertEqual(self.create(BillingMode="pay_per_request"), "ValidationException")
        self.assertEqual(self.create(BillingMode="PAY_PER_REQUEST",
                                     ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}), "ValidationException")
        self.assertEqual(self.create(BillingMode="PROVISIONED"), "ValidationException")
        self.assertEqual(self.create(), "ValidationException")
        self.assertIsNone(self.create(ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}))
        # Duplicate attribute definitions; key names over 255 bytes.
        dup = [{"AttributeName": "p", "AttributeType": "S"}, {"AttributeName": "p", "AttributeType": "N"}]
        self.assertEqual(self.create(BillingMode="PAY_PER_REQUEST", AttributeDefinitions=dup), "ValidationException")
        long = "k" * 256
        self.assertEqual(self.create(BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": long, "KeyType": "HASH"}],
                                     AttributeDefinitions=[{"AttributeName": long, "AttributeType": "S"}]), "ValidationException")
        self.assertIsNone(self.create(BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": long[1:], "KeyType": "HASH"}],
                                      AttributeDefinitions=[{"AttributeName": long[1:], "AttributeType": "S"}]))

    def test_create_table_streams_and_tags(self):
        # A stream turned off is a table without one; invalid specifications are refused; a valid
        # enabled one makes a table with a stream (test_streams reads it).
        ppr = dict(BillingMode="PAY_PER_REQUEST")
        self.assertIsNone(self.create(StreamSpecification={"StreamEnabled": False}, **ppr))
        self.assertEqual(self.create(StreamSpecification={"StreamEnabled": True, "StreamViewType": "EVERYTHING"}, **ppr),
                         "ValidationException")
        self.assertEqual(self.create(StreamSpecification={"StreamEnabled": True}, **ppr), "ValidationException")
        self.assertIsNone(self.create(StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}, **ppr))
        # Tags: 1-128 character keys, values up to 256, no "aws:" prefix, no duplicates, at most 50.
        self.assertIsNone(self.create(Tags=[{"Key": "team", "Value": "contact-center"}, {"Key": "env", "Value": ""}], **ppr))
        for tags in ([{"Key": "", "Value": "x"}], [{"Key": "k" * 129, "Value": "x"}], [{"Key": "k", "Value": "v" * 257}],
                     [{"Key": "aws:cloudformation", "Value": "x"}], [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}],
                     [{"Key": "k%d" % i, "Value": "x"} for i in range(51)]):
            self.assertEqual(tandem.error_code(lambda: tandem.client("dynamodb", validate=False).create_table(
                TableName=tandem.unique("tags"), KeySchema=[{"AttributeName": "p", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"}], Tags=tags, **ppr)), "ValidationException", tags[:2])

    def test_query_filter_on_a_key_attribute_is_refused(self):
        q = lambda f: tandem.error_code(lambda: self.ddb.query(
            TableName=self.table, KeyConditionExpression="pk = :p", FilterExpression=f,
            ExpressionAttributeValues={":p": {"S": "a"}, ":v": {"N": "1"}}))
        self.assertEqual(q("sk = :v"), "ValidationException")
        self.assertEqual(q("attribute_exists(pk) AND x = :v"), "ValidationException")
        self.assertIsNone(q("x = :v"))

    def test_attribute_names_up_to_65535_bytes(self):
        name = "n" * 65535
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, name: {"N": "1"}})
        got = self.ddb.get_item(TableName=self.table, Key=self.key("a", 1), ProjectionExpression="#n",
                                ExpressionAttributeNames={"#n": name})["Item"]
        self.assertEqual(got, {name: {"N": "1"}})
        too_long = name + "n"
        self.assertEqual(tandem.error_code(lambda: self.ddb.put_item(
            TableName=self.table, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, too_long: {"N": "1"}})), "ValidationException")
        self.assertEqual(tandem.error_code(lambda: self.ddb.get_item(
            TableName=self.table, Key=self.key("a", 1), ProjectionExpression="#n", ExpressionAttributeNames={"#n": too_long})),
            "ValidationException")
