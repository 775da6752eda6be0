"""UpdateItem: SET (if_not_exists, list_append, + and -), REMOVE, ADD, DELETE, ReturnValues."""
import tandem


class UpdateExpressionTests(tandem.DynamoTest):
    def update(self, expr, values=None, names=None, rv="ALL_NEW", key=None):
        args = dict(TableName=self.table, Key=key or self.key("u", 1), UpdateExpression=expr, ReturnValues=rv)
        if values:
            args["ExpressionAttributeValues"] = values
        if names:
            args["ExpressionAttributeNames"] = names
        return self.ddb.update_item(**args).get("Attributes")

    def test_set_creates_item_and_arithmetic(self):
        # UpdateItem creates the item; SET a = a + :k and - :k are counters.
        r = self.update("SET n = if_not_exists(n, :zero) + :five, s = :s", {":zero": {"N": "0"}, ":five": {"N": "5"}, ":s": {"S": "x"}})
        self.assertEqual(r["n"], {"N": "5"})
        r = self.update("SET n = n - :two", {":two": {"N": "2"}})
        self.assertEqual(r["n"], {"N": "3"})
        self.assertEqual(r["pk"], {"S": "u"})

    def test_list_append_and_index(self):
        # list_append at either end, SET of one element by index.
        self.update("SET l = :l", {":l": {"L": [{"S": "b"}]}})
        self.update("SET l = list_append(:a, l)", {":a": {"L": [{"S": "a"}]}})
        self.update("SET l = list_append(l, :c)", {":c": {"L": [{"S": "c"}]}})
        r = self.update("SET l[0] = :z", {":z": {"S": "z"}})
        self.assertEqual(r["l"], {"L": [{"S": "z"}, {"S": "b"}, {"S": "c"}]})

    def test_remove_add_delete(self):
        # REMOVE drops attributes; ADD adds to numbers and sets; DELETE removes set elements.
        self.update("SET a = :one, b = :one ADD tags :ab", {":one": {"N": "1"}, ":ab": {"SS": ["a", "b"]}})
        self.update("DELETE tags :a", {":a": {"SS": ["a"]}})
        r = self.update("REMOVE b ADD a :one, tags :c", {":one": {"N": "1"}, ":c": {"SS": ["c"]}})
        self.assertNotIn("b", r)
        self.assertEqual(r["a"], {"N": "2"})
        self.assertEqual(sorted(r["tags"]["SS"]), ["b", "c"])

    def test_return_values_variants(self):
        # UPDATED_OLD / UPDATED_NEW give only the touched attributes; NONE gives nothing.
        self.update("SET a = :one, b = :one", {":one": {"N": "1"}})
        self.assertEqual(self.update("SET a = :two", {":two": {"N": "2"}}, rv="UPDATED_OLD"), {"a": {"N": "1"}})
        self.assertEqual(self.update("SET a = :three", {":three": {"N": "3"}}, rv="UPDATED_NEW"), {"a": {"N": "3"}})
        self.assertIsNone(self.update("SET a = :four", {":four": {"N": "4"}}, rv="NONE"))

    def test_nested_map_path(self):
        # SET into a nested map path writes one member, leaving its siblings.
        self.update("SET m = :m", {":m": {"M": {"x": {"N": "1"}, "y": {"N": "2"}}}})
        r = self.update("SET m.#x = :v", {":v": {"N": "9"}}, names={"#x": "x"})
        self.assertEqual(r["m"], {"M": {"x": {"N": "9"}, "y": {"N": "2"}}})
