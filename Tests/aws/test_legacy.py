"""The legacy parameters older SDK code still sends (DynamoDB Developer Guide, "Legacy conditional
parameters"): AttributeUpdates, Expected and ConditionalOperator, KeyConditions, QueryFilter,
ScanFilter, AttributesToGet; and DynamoDB's rule that a request uses them or expressions, not both."""
import tandem

N = lambda n: {"N": str(n)}
S = lambda s: {"S": s}


class LegacyUpdateTests(tandem.DynamoTest):
    sort_key = False

    def update(self, updates, key="k", **kw):
        return self.ddb.update_item(TableName=self.table, Key=self.key(key), AttributeUpdates=updates, **kw).get("Attributes")

    def item(self, key="k"):
        return self.ddb.get_item(TableName=self.table, Key=self.key(key)).get("Item")

    def test_put_delete_and_add(self):
        # PUT (the default action) sets; DELETE without a value removes the attribute, with a set
        # removes those elements; ADD adds to a number, a set, or appends to a list, starting
        # from nothing when the attribute is missing.
        self.update({"a": {"Value": N(1)}, "b": {"Value": S("x"), "Action": "PUT"}, "s": {"Value": {"SS": ["p", "q", "r"]}},
                     "l": {"Value": {"L": [S("one")]}}})
        self.update({"a": {"Value": N(4), "Action": "ADD"}, "n": {"Value": N(2), "Action": "ADD"},
                     "s": {"Value": {"SS": ["q"]}, "Action": "DELETE"}, "t": {"Value": {"NS": ["7"]}, "Action": "ADD"},
                     "l": {"Value": {"L": [S("two")]}, "Action": "ADD"}, "m": {"Value": {"L": [N(1)]}, "Action": "ADD"},
                     "b": {"Action": "DELETE"}})
        self.assertEqual(self.item(), {"pk": S("k"), "a": N(5), "n": N(2), "s": {"SS": ["p", "r"]}, "t": {"NS": ["7"]},
                                       "l": {"L": [S("one"), S("two")]}, "m": {"L": [N(1)]}})

    def test_return_values_and_item_creation(self):
        self.assertEqual(self.update({"a": {"Value": N(1)}}, ReturnValues="ALL_NEW"), {"pk": S("k"), "a": N(1)})
        self.assertEqual(self.update({"a": {"Value": N(2)}}, ReturnValues="UPDATED_OLD"), {"a": N(1)})
        # Empty AttributeUpdates creates the item; DELETE alone on a missing item creates nothing.
        self.update({}, key="empty")
        self.assertEqual(self.item("empty"), {"pk": S("empty")})
        self.update({"x": {"Action": "DELETE"}}, key="none")
        self.assertIsNone(self.item("none"))

    def test_invalid_updates(self):
        for updates in ({"pk": {"Value": S("other")}},  # a key attribute
                        {"a": {"Action": "PUT"}},  # PUT needs a value
                        {"a": {"Value": S("x"), "Action": "ADD"}},  # ADD takes a number, set or list
                        {"a": {"Value": N(1), "Action": "DELETE"}}):  # DELETE's value is a set
            self.assertEqual(tandem.error_code(lambda: self.update(updates)), "ValidationException", updates)
        self.assertIsNone(self.item())


class ExpectedTests(tandem.DynamoTest):
    sort_key = False

    def setUp(self):
        super().setUp()
        self.ddb.put_item(TableName=self.table, Item={"pk": S("k"), "a": N(1), "s": S("hello"), "set": {"NS": ["2", "4"]},
                                                      "l": {"L": [N(2), N(4)]}})

    def put_if(self, expected, **kw):
        """The condition's verdict: True (written), False (ConditionalCheckFailed), or the error code."""
        code = tandem.error_code(lambda: self.ddb.update_item(
            TableName=self.table, Key=self.key("k"), AttributeUpdates={"z": {"Value": N(1)}}, Expected=expected, **kw))
        return {None: True, "ConditionalCheckFailedException": False}.get(code, code)

    def op(self, name, op, *values):
        return self.put_if({name: {"ComparisonOperator": op, "AttributeValueList": list(values)}})

    def test_value_and_exists(self):
        self.assertTrue(self.put_if({"a": {"Value": N(1)}}))
        self.assertTrue(self.put_if({"a": {"Value": N(1), "Exists": True}}))
        self.assertFalse(self.put_if({"a": {"Value": N(2)}}))
        self.assertFalse(self.put_if({"q": {"Value": N(1)}}))
        self.assertTrue(self.put_if({"q": {"Exists": False}}))
        self.assertFalse(self.put_if({"a": {"Exists": False}}))
        # Exists true alone, or false with a Value, or either with a ComparisonOperator: refused.
        self.assertEqual(self.put_if({"a": {"Exists": True}}), "ValidationException")
        self.assertEqual(self.put_if({"a": {"Exists": False, "Value": N(1)}}), "ValidationException")
        self.assertEqual(self.put_if({"a": {"Value": N(1), "ComparisonOperator": "EQ", "AttributeValueList": [N(1)]}}),
                         "ValidationException")

    def test_comparison_operators(self):
        self.assertTrue(self.op("a", "EQ", N(1)))
        self.assertFalse(self.op("a", "EQ", S("1")))  # another type: false, not an error
        self.assertTrue(self.op("a", "NE", N(2)))
        self.assertTrue(self.op("q", "NE", N(2)))  # a missing attribute is not equal
        self.assertTrue(self.op("a", "LT", N(2)) and self.op("a", "LE", N(1)) and self.op("a", "GE", N(1)))
        self.assertFalse(self.op("a", "GT", N(1)))
        self.assertFalse(self.op("q", "LT", N(2)))
        self.assertTrue(self.op("a", "NOT_NULL") and self.op("q", "NULL"))
        self.assertFalse(self.op("a", "NULL"))
        self.assertTrue(self.op("s", "CONTAINS", S("ell")) and self.op("set", "CONTAINS", N(4)) and self.op("l", "CONTAINS", N(4)))
        self.assertTrue(self.op("s", "NOT_CONTAINS", S("dog")))
        self.assertFalse(self.op("q", "NOT_CONTAINS", S("dog")))  # false on a missing attribute, unlike NE
        self.assertTrue(self.op("s", "BEGINS_WITH", S("hell")))
        self.assertTrue(self.op("a", "IN", N(3), N(1)))
        self.assertFalse(self.op("set", "IN", N(2)))  # IN compares the value, it does not look inside a set
        self.assertTrue(self.op("a", "BETWEEN", N(1), N(3)))
        self.assertFalse(self.op("q", "BETWEEN", N(0), N(9)))

    def test_invalid_comparisons(self):
        for args in (("a", "EQ", N(1), N(2)), ("a", "LT"), ("a", "LT", {"L": [N(1)]}), ("a", "NULL", N(1)),
                     ("s", "CONTAINS", {"L": [N(1)]}), ("s", "BEGINS_WITH", N(3)), ("a", "IN"), ("a", "IN", N(3), S("dog")),
                     ("a", "BETWEEN", N(3), N(1)), ("a", "BETWEEN", N(1), S("z")), ("a", "BETWEEN", N(1)), ("a", "LIKE", N(1))):
            self.assertEqual(self.op(*args), "ValidationException", args)

    def test_conditional_operator(self):
        both = {"a": {"Value": N(74)}, "q": {"Exists": False}}
        self.assertFalse(self.put_if(both))
        self.assertFalse(self.put_if(both, ConditionalOperator="AND"))
        self.assertTrue(self.put_if(both, ConditionalOperator="OR"))
        self.assertEqual(self.put_if(both, ConditionalOperator="and"), "ValidationException")
        self.assertEqual(self.put_if({}, ConditionalOperator="OR"), "ValidationException")
        self.assertTrue(self.put_if({}))

    def test_put_and_delete_with_expected(self):
        put = lambda v, old: tandem.error_code(lambda: self.ddb.put_item(
            TableName=self.table, Item={"pk": S("k"), "a": N(v)}, Expected={"a": {"Value": N(old)}}))
        self.assertEqual(put(2, 9), "ConditionalCheckFailedException")
        self.assertIsNone(put(2, 1))
        delete = lambda old: tandem.error_code(lambda: self.ddb.delete_item(
            TableName=self.table, Key=self.key("k"), Expected={"a": {"ComparisonOperator": "EQ", "AttributeValueList": [N(old)]}}))
        self.assertEqual(delete(1), "ConditionalCheckFailedException")
        self.assertIsNone(delete(2))
        self.assertNotIn("Item", self.ddb.get_item(TableName=self.table, Key=self.key("k")))


class LegacyReadTests(tandem.DynamoTest):
    sort_key_type = "S"

    def setUp(self):
        super().setUp()
        for sk, i in (("apple", 1), ("apricot", 2), ("banana", 3), ("cherry", 4)):
            self.ddb.put_item(TableName=self.table, Item={"pk": S("p"), "sk": S(sk), "i": N(i), "x": S(sk[:2])})

    def query(self, **kw):
        return self.ddb.query(TableName=self.table, **kw)

    def keys(self, items):
        return [it["sk"]["S"] for it in items]

    def test_key_conditions_query_filter_and_attributes_to_get(self):
        eq = {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S("p")]}}
        self.assertEqual(self.keys(self.query(KeyConditions=eq)["Items"]), ["apple", "apricot", "banana", "cherry"])
        r = self.query(KeyConditions=dict(eq, sk={"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [S("ap")]}))
        self.assertEqual(self.keys(r["Items"]), ["apple", "apricot"])
        r = self.query(KeyConditions=dict(eq, sk={"ComparisonOperator": "BETWEEN", "AttributeValueList": [S("b"), S("d")]}),
                       ScanIndexForward=False)
        self.assertEqual(self.keys(r["Items"]), ["cherry", "banana"])
        r = self.query(KeyConditions=eq, QueryFilter={"i": {"ComparisonOperator": "GT", "AttributeValueList": [N(3)]},
                                                      "x": {"ComparisonOperator": "EQ", "AttributeValueList": [S("ap")]}},
                       ConditionalOperator="OR", AttributesToGet=["sk", "i"])
        self.assertEqual(r["Items"], [{"sk": S("apple"), "i": N(1)}, {"sk": S("apricot"), "i": N(2)}, {"sk": S("cherry"), "i": N(4)}])
        self.assertEqual(r["ScannedCount"], 4)
        # A key attribute in QueryFilter, a non-key one in KeyConditions, a range operator on
        # the partition key, AttributesToGet with Select ALL_ATTRIBUTES: refused.
        for kw in (dict(KeyConditions=eq, QueryFilter={"sk": {"ComparisonOperator": "EQ", "AttributeValueList": [S("apple")]}}),
                   dict(KeyConditions=dict(eq, i={"ComparisonOperator": "EQ", "AttributeValueList": [N(1)]})),
                   dict(KeyConditions={"pk": {"ComparisonOperator": "GT", "AttributeValueList": [S("a")]}}),
                   dict(KeyConditions=eq, AttributesToGet=["i"], Select="ALL_ATTRIBUTES")):
            self.assertEqual(tandem.error_code(lambda: self.query(**kw)), "ValidationException", kw)

    def test_scan_filter_get_and_batch_get(self):
        r = self.ddb.scan(TableName=self.table, ScanFilter={"i": {"ComparisonOperator": "IN", "AttributeValueList": [N(2), N(3)]}},
                          AttributesToGet=["sk"])
        self.assertEqual(sorted(self.keys(r["Items"])), ["apricot", "banana"])
        got = self.ddb.get_item(TableName=self.table, Key=self.key("p", "apple"), AttributesToGet=["i", "missing"])["Item"]
        self.assertEqual(got, {"i": N(1)})
        r = self.ddb.batch_get_item(RequestItems={self.table: {"Keys": [self.key("p", "cherry")], "AttributesToGet": ["x"]}})
        self.assertEqual(r["Responses"][self.table], [{"x": S("ch")}])


class MixingTests(tandem.DynamoTest):
    """Legacy and expression parameters never mix; placeholders need an expression."""
    sort_key = False

    def test_mixing_is_a_validation_error(self):
        t, k = self.table, self.key("k")
        calls = [
            lambda: self.ddb.update_item(TableName=t, Key=k, AttributeUpdates={"a": {"Value": N(1)}}, UpdateExpression="SET b = :v",
                                         ExpressionAttributeValues={":v": N(1)}),
            lambda: self.ddb.update_item(TableName=t, Key=k, AttributeUpdates={"a": {"Value": N(1)}}, ConditionExpression="a = :v",
                                         ExpressionAttributeValues={":v": N(1)}),
            lambda: self.ddb.update_item(TableName=t, Key=k, UpdateExpression="SET b = :v", ExpressionAttributeValues={":v": N(1)},
                                         Expected={"a": {"Value": N(1)}}),
            lambda: self.ddb.put_item(TableName=t, Item={"pk": S("k")}, Expected={"a": {"Exists": False}},
                                      ConditionExpression="attribute_not_exists(a)"),
            lambda: self.ddb.get_item(TableName=t, Key=k, AttributesToGet=["a"], ProjectionExpression="b"),
            lambda: self.ddb.query(TableName=t, KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S("k")]}},
                                   FilterExpression="a = :v", ExpressionAttributeValues={":v": N(1)}),
            lambda: self.ddb.scan(TableName=t, ScanFilter={"a": {"ComparisonOperator": "NULL"}}, ProjectionExpression="a"),
            lambda: self.ddb.update_item(TableName=t, Key=k, AttributeUpdates={"a": {"Value": N(1)}},
                                         ExpressionAttributeValues={":v": N(1)}),
            lambda: self.ddb.update_item(TableName=t, Key=k, AttributeUpdates={"a": {"Value": N(1)}}, ConditionalOperator="OR"),
        ]
        for i, call in enumerate(calls):
            self.assertEqual(tandem.error_code(call), "ValidationException", i)
        self.assertNotIn("Item", self.ddb.get_item(TableName=t, Key=k))
