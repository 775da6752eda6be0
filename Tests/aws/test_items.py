"""Items: PutItem, GetItem, DeleteItem, ProjectionExpression, ReturnValues."""
import tandem


class ItemTests(tandem.DynamoTest):
    def test_put_get_delete_round_trip(self):
        # Every attribute type comes back as written.
        item = {**self.key("c1", 1), "s": {"S": "x"}, "n": {"N": "7"}, "b": {"B": b"\x00\x01"}, "t": {"BOOL": True},
                "z": {"NULL": True}, "l": {"L": [{"S": "a"}, {"N": "1"}]}, "m": {"M": {"k": {"S": "v"}}},
                "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}, "bs": {"BS": [b"x"]}}
        self.ddb.put_item(TableName=self.table, Item=item)
        got = self.ddb.get_item(TableName=self.table, Key=self.key("c1", 1))["Item"]
        self.assertEqual(got["m"], item["m"])
        self.assertEqual(got["l"], item["l"])
        self.assertEqual(sorted(got["ss"]["SS"]), ["a", "b"])
        self.assertEqual(got["b"], {"B": b"\x00\x01"})
        # DeleteItem with ALL_OLD returns what was there; afterwards GetItem has no Item.
        old = self.ddb.delete_item(TableName=self.table, Key=self.key("c1", 1), ReturnValues="ALL_OLD")["Attributes"]
        self.assertEqual(old["s"], {"S": "x"})
        self.assertNotIn("Item", self.ddb.get_item(TableName=self.table, Key=self.key("c1", 1)))

    def test_put_replaces_whole_item_and_returns_old(self):
        # PutItem replaces every attribute (whole-item write), ReturnValues=ALL_OLD gives the old one.
        self.ddb.put_item(TableName=self.table, Item={**self.key("c1", 1), "a": {"S": "1"}, "b": {"S": "2"}})
        r = self.ddb.put_item(TableName=self.table, Item={**self.key("c1", 1), "c": {"S": "3"}}, ReturnValues="ALL_OLD")
        self.assertEqual(r["Attributes"]["a"], {"S": "1"})
        got = self.ddb.get_item(TableName=self.table, Key=self.key("c1", 1))["Item"]
        self.assertEqual(set(got), {"pk", "sk", "c"})

    def test_projection_with_names_and_nested_paths(self):
        # ProjectionExpression picks attributes, map members and list elements; #names stand in for words.
        self.ddb.put_item(TableName=self.table, Item={**self.key("c1", 1), "status": {"S": "open"},
                                                      "m": {"M": {"a": {"N": "1"}, "b": {"N": "2"}}}, "l": {"L": [{"S": "x"}, {"S": "y"}]}})
        got = self.ddb.get_item(TableName=self.table, Key=self.key("c1", 1), ProjectionExpression="#s, m.b, l[1]",
                                ExpressionAttributeNames={"#s": "status"})["Item"]
        self.assertEqual(got, {"status": {"S": "open"}, "m": {"M": {"b": {"N": "2"}}}, "l": {"L": [{"S": "y"}]}})

    def test_write_on_one_node_reads_on_the_other(self):
        # Replication: a put on node A is read on node B within moments.
        self.ddb.put_item(TableName=self.table, Item={**self.key("r", 1), "v": {"S": "from-a"}})
        self.on_b(lambda: self.ddb_b.get_item(TableName=self.table, Key=self.key("r", 1)).get("Item", {}).get("v"), {"S": "from-a"})
