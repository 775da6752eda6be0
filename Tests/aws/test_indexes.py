"""Global and local secondary indexes, as the DynamoDB Developer Guide and API reference describe
them: CreateTable with GlobalSecondaryIndexes/LocalSecondaryIndexes, UpdateTable's
GlobalSecondaryIndexUpdates (backfill, then ACTIVE), projections, Query and Scan with IndexName,
sparse indexes, index key type checks on writes, DescribeTable's index fields, and the limits.
"""
import unittest

import tandem
from tandem import error_code, wait_for
from botocore.exceptions import ClientError


def ks(hash_key, range_key=None):
    k = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        k.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return k


def gsi(name, hash_key, range_key=None, projection="ALL", non_key=None):
    p = {"ProjectionType": projection}
    if non_key:
        p["NonKeyAttributes"] = non_key
    return {"IndexName": name, "KeySchema": ks(hash_key, range_key), "Projection": p}


def message(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"]["Message"]
    return None, None


class IndexTest(unittest.TestCase):
    """A fresh table per test: pk (S) + sk (N), with the indexes the test asks for."""

    def setUp(self):
        self.ddb = tandem.client("dynamodb", 0)
        self.ddb_b = tandem.client("dynamodb", 1)
        self.tables = []

    def tearDown(self):
        for t in self.tables:
            error_code(lambda: self.ddb.delete_table(TableName=t))

    def make(self, gsis=None, lsis=None, extra_defs=(), sort_key=True):
        name = tandem.unique("idx")
        defs = [{"AttributeName": "pk", "AttributeType": "S"}]
        if sort_key:
            defs.append({"AttributeName": "sk", "AttributeType": "N"})
        defs += [{"AttributeName": n, "AttributeType": t} for n, t in extra_defs]
        args = dict(TableName=name, KeySchema=ks("pk", "sk" if sort_key else None), AttributeDefinitions=defs,
                    BillingMode="PAY_PER_REQUEST")
        if gsis:
            args["GlobalSecondaryIndexes"] = gsis
        if lsis:
            args["LocalSecondaryIndexes"] = lsis
        self.ddb.create_table(**args)
        self.tables.append(name)
        self.ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        return name

    def put(self, table, pk, sk, **attrs):
        item = {"pk": {"S": pk}, "sk": {"N": str(sk)}}
        for k, v in attrs.items():
            item[k] = {"N": str(v)} if isinstance(v, int) else {"S": v}
        self.ddb.put_item(TableName=table, Item=item)

    def query_all(self, client, **kw):
        """Every page of a Query (or Scan, `op="scan"`), following LastEvaluatedKey."""
        op = kw.pop("op", "query")
        items, pages = [], 0
        while True:
            r = getattr(client, op)(**kw)
            items += r.get("Items", [])
            pages += 1
            if "LastEvaluatedKey" not in r:
                return items, pages
            kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


class CreateAndDescribe(IndexTest):
    def test_describe_table_shows_both_kinds_of_index(self):
        # DescribeTable: GlobalSecondaryIndexes with IndexName, KeySchema, Projection, IndexStatus,
        # IndexSizeBytes, ItemCount, IndexArn; LocalSecondaryIndexes the same without IndexStatus.
        t = self.make(gsis=[gsi("by-status", "status", "ts", "INCLUDE", ["agent"])],
                      lsis=[gsi("by-ts", "pk", "ts", "KEYS_ONLY")], extra_defs=[("status", "S"), ("ts", "N")])
        d = self.ddb.describe_table(TableName=t)["Table"]
        g = d["GlobalSecondaryIndexes"]
        self.assertEqual([x["IndexName"] for x in g], ["by-status"])
        self.assertEqual(g[0]["KeySchema"], ks("status", "ts"))
        self.assertEqual(g[0]["Projection"], {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["agent"]})
        self.assertEqual(g[0]["IndexStatus"], "ACTIVE")
        self.assertTrue(g[0]["IndexArn"].endswith("/index/by-status"), g[0]["IndexArn"])
        self.assertEqual(g[0]["ItemCount"], 0)
        self.assertEqual(g[0]["IndexSizeBytes"], 0)
        loc = d["LocalSecondaryIndexes"]
        self.assertEqual([x["IndexName"] for x in loc], ["by-ts"])
        self.assertEqual(loc[0]["KeySchema"], ks("pk", "ts"))
        self.assertEqual(loc[0]["Projection"], {"ProjectionType": "KEYS_ONLY"})
        self.assertNotIn("IndexStatus", loc[0])
        defined = {a["AttributeName"]: a["AttributeType"] for a in d["AttributeDefinitions"]}
        self.assertEqual(defined, {"pk": "S", "sk": "N", "status": "S", "ts": "N"})

    def test_attribute_definitions_must_match_the_keys_used(self):
        # Every AttributeDefinition must be a key of the table or of an index, and every index key
        # must be defined.
        name = tandem.unique("idx")
        code, msg = message(lambda: self.ddb.create_table(
            TableName=name, KeySchema=ks("pk"), BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[gsi("g-1", "status")]))
        self.assertEqual(code, "ValidationException")
        self.assertIn("not defined in AttributeDefinitions", msg)

    def test_limits_and_names(self):
        defs = [("a%d" % i, "S") for i in range(21)]
        name = tandem.unique("idx")

        def create(**kw):
            base = dict(TableName=name, KeySchema=ks("pk", "sk"), BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "N"}])
            base.update(kw)
            return self.ddb.create_table(**base)

        def with_defs(names):
            return [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}] + [
                {"AttributeName": n, "AttributeType": "S"} for n in names]

        # At most 20 global secondary indexes per table.
        code, msg = message(lambda: create(AttributeDefinitions=with_defs([n for n, _ in defs]),
                                           GlobalSecondaryIndexes=[gsi("g%02d" % i, "a%d" % i) for i in range(21)]))
        self.assertEqual(code, "ValidationException")
        self.assertIn("GlobalSecondaryIndex count exceeds the per-table limit of 20", msg)
        # At most 5 local secondary indexes.
        code, msg = message(lambda: create(AttributeDefinitions=with_defs(["a%d" % i for i in range(6)]),
                                           LocalSecondaryIndexes=[gsi("l-%d" % i, "pk", "a%d" % i) for i in range(6)]))
        self.assertEqual(code, "ValidationException")
        self.assertIn("5", msg)
        # At most 100 NonKeyAttributes over all of a table's indexes.
        code, msg = message(lambda: create(AttributeDefinitions=with_defs(["a0", "a1"]), GlobalSecondaryIndexes=[
            gsi("g-0", "a0", projection="INCLUDE", non_key=["x%d" % i for i in range(60)]),
            gsi("g-1", "a1", projection="INCLUDE", non_key=["y%d" % i for i in range(41)])]))
        self.assertEqual(code, "ValidationException")
        self.assertIn("100", msg)
        # Index names are 3 to 255 characters (boto3 checks this too: sent without its checks).
        raw = tandem.client("dynamodb", 0, validate=False)
        self.assertEqual(error_code(lambda: raw.create_table(TableName=name, KeySchema=ks("pk", "sk"), BillingMode="PAY_PER_REQUEST",
                                                             AttributeDefinitions=with_defs(["a0"]),
                                                   GlobalSecondaryIndexes=[gsi("ab", "a0")])), "ValidationException")
        # Names are unique across a table's indexes.
        self.assertEqual(error_code(lambda: create(AttributeDefinitions=with_defs(["a0"]), GlobalSecondaryIndexes=[gsi("g-0", "a0")],
                                                   LocalSecondaryIndexes=[gsi("g-0", "pk", "a0")])), "ValidationException")
        # An LSI has the table's partition key, and needs a table with a sort key.
        self.assertEqual(error_code(lambda: create(AttributeDefinitions=with_defs(["a0"]),
                                                   LocalSecondaryIndexes=[gsi("l-0", "a0", "sk")])), "ValidationException")
        # Nothing was created by the refused requests.
        self.assertEqual(error_code(lambda: self.ddb.describe_table(TableName=name)), "ResourceNotFoundException")


class QueryAndScan(IndexTest):
    def setUp(self):
        super().setUp()
        self.t = self.make(gsis=[gsi("by-status", "status", "ts")], extra_defs=[("status", "S"), ("ts", "N")])

    def test_query_in_index_order_both_ways_with_paging(self):
        for i in range(12):
            self.put(self.t, "p%d" % (i % 3), i, status="available" if i % 2 == 0 else "busy", ts=100 - i, note="n%d" % i)
        r = self.ddb.query(TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s",
                           ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "available"}})
        self.assertEqual([int(x["ts"]["N"]) for x in r["Items"]], [90, 92, 94, 96, 98, 100])
        # ALL projection: the whole item.
        self.assertEqual(set(r["Items"][0].keys()), {"pk", "sk", "status", "ts", "note"})
        back = self.ddb.query(TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s AND ts > :t",
                              ScanIndexForward=False, ExpressionAttributeNames={"#s": "status"},
                              ExpressionAttributeValues={":s": {"S": "available"}, ":t": {"N": "93"}})
        self.assertEqual([int(x["ts"]["N"]) for x in back["Items"]], [100, 98, 96, 94])
        # Limit 2: LastEvaluatedKey holds the table key and the index key.
        page = self.ddb.query(TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s", Limit=2,
                              ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "busy"}})
        self.assertEqual(set(page["LastEvaluatedKey"].keys()), {"pk", "sk", "status", "ts"})
        items, pages = self.query_all(self.ddb, TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s",
                                      Limit=2, ExpressionAttributeNames={"#s": "status"},
                                      ExpressionAttributeValues={":s": {"S": "busy"}})
        self.assertEqual([int(x["ts"]["N"]) for x in items], [89, 91, 93, 95, 97, 99])
        self.assertGreaterEqual(pages, 3)

    def test_items_with_equal_index_keys_all_come_back(self):
        # Index keys need not be unique: several items share one (status, ts).
        for i in range(5):
            self.put(self.t, "p", i, status="s", ts=1)
        items, _ = self.query_all(self.ddb, TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s",
                                  Limit=2, ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "s"}})
        self.assertEqual(sorted(int(x["sk"]["N"]) for x in items), [0, 1, 2, 3, 4])

    def test_sparse_index_holds_only_items_with_the_keys(self):
        # An item without the index key attributes (or with only one of them) is not in the index.
        self.put(self.t, "a", 1, status="x", ts=1)
        self.put(self.t, "b", 2, status="x")
        self.put(self.t, "c", 3, ts=3)
        self.put(self.t, "d", 4)
        scan = self.ddb.scan(TableName=self.t, IndexName="by-status")
        self.assertEqual([x["pk"]["S"] for x in scan["Items"]], ["a"])
        self.assertEqual(scan["Count"], 1)
        self.assertEqual(self.ddb.scan(TableName=self.t)["Count"], 4)

    def test_updates_and_deletes_move_items_in_the_index(self):
        self.put(self.t, "a", 1, status="available", ts=5)

        def statuses():
            return {s: [x["pk"]["S"] for x in self.ddb.query(
                TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s",
                ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": s}})["Items"]]
                for s in ("available", "busy")}

        self.assertEqual(statuses(), {"available": ["a"], "busy": []})
        self.ddb.update_item(TableName=self.t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}}, UpdateExpression="SET #s = :s",
                             ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "busy"}})
        self.assertEqual(statuses(), {"available": [], "busy": ["a"]})
        self.ddb.update_item(TableName=self.t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}}, UpdateExpression="REMOVE ts")
        self.assertEqual(statuses(), {"available": [], "busy": []})
        self.ddb.update_item(TableName=self.t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}}, UpdateExpression="SET ts = :t",
                             ExpressionAttributeValues={":t": {"N": "7"}})
        self.assertEqual(statuses(), {"available": [], "busy": ["a"]})
        self.ddb.delete_item(TableName=self.t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})
        self.assertEqual(statuses(), {"available": [], "busy": []})

    def test_wrong_type_or_empty_index_key_is_refused_and_nothing_written(self):
        item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "status": {"N": "3"}}
        code, msg = message(lambda: self.ddb.put_item(TableName=self.t, Item=item))
        self.assertEqual(code, "ValidationException")
        self.assertIn("Type mismatch for Index Key status Expected: S Actual: N IndexName: by-status", msg)
        code, _ = message(lambda: self.ddb.update_item(
            TableName=self.t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}}, UpdateExpression="SET ts = :t",
            ExpressionAttributeValues={":t": {"S": "not a number"}}))
        self.assertEqual(code, "ValidationException")
        code, _ = message(lambda: self.ddb.batch_write_item(RequestItems={self.t: [{"PutRequest": {"Item": item}}]}))
        self.assertEqual(code, "ValidationException")
        code, msg = message(lambda: self.ddb.put_item(
            TableName=self.t, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "status": {"S": ""}}))
        self.assertEqual(code, "ValidationException")
        self.assertIn("secondary index key", msg)
        self.assertNotIn("Item", self.ddb.get_item(TableName=self.t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}}))

    def test_refusals_of_index_reads(self):
        q = dict(TableName=self.t, KeyConditionExpression="#s = :s", ExpressionAttributeNames={"#s": "status"},
                 ExpressionAttributeValues={":s": {"S": "x"}})
        code, msg = message(lambda: self.ddb.query(IndexName="nope", **q))
        self.assertEqual(code, "ValidationException")
        self.assertIn("does not have the specified index", msg)
        # Strongly consistent reads are not supported on a global secondary index.
        code, msg = message(lambda: self.ddb.query(IndexName="by-status", ConsistentRead=True, **q))
        self.assertEqual(code, "ValidationException")
        self.assertIn("Consistent reads are not supported on global secondary indexes", msg)
        self.assertEqual(error_code(lambda: self.ddb.scan(TableName=self.t, IndexName="by-status", ConsistentRead=True)),
                         "ValidationException")
        # The key condition names the index's keys, not the table's.
        self.assertEqual(error_code(lambda: self.ddb.query(
            TableName=self.t, IndexName="by-status", KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "a"}})), "ValidationException")
        # A Query's filter cannot name the index's key attributes.
        self.assertEqual(error_code(lambda: self.ddb.query(
            IndexName="by-status", FilterExpression="ts > :t",
            **dict(q, ExpressionAttributeValues={":s": {"S": "x"}, ":t": {"N": "1"}}))), "ValidationException")
        # ALL_PROJECTED_ATTRIBUTES is for index reads only.
        self.assertEqual(error_code(lambda: self.ddb.scan(TableName=self.t, Select="ALL_PROJECTED_ATTRIBUTES")),
                         "ValidationException")

    def test_long_index_keys(self):
        # Index key values as long as DynamoDB allows key values (2,048 bytes for a partition key,
        # 1,024 for a sort key), two of them alike in their first 1,500 bytes.
        long_a, long_b = "s" * 1500 + "a" * 500, "s" * 1500 + "b" * 500
        for i, status in enumerate((long_a, long_b, long_a)):
            self.put(self.t, "p%d" % i, i, status=status, ts=i)
        for status, want in ((long_a, ["p0", "p2"]), (long_b, ["p1"])):
            r = self.ddb.query(TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s",
                               ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": status}})
            self.assertEqual([x["pk"]["S"] for x in r["Items"]], want)
            self.assertEqual(r["Items"][0]["status"]["S"], status)
        items, _ = self.query_all(self.ddb, TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s",
                                  Limit=1, ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": long_a}})
        self.assertEqual([x["pk"]["S"] for x in items], ["p0", "p2"])

    def test_parallel_scan_of_an_index(self):
        for i in range(40):
            self.put(self.t, "p%d" % i, i, status="s%d" % (i % 4), ts=i)
        self.put(self.t, "unindexed", 99)
        seen = []
        for seg in range(3):
            items, _ = self.query_all(self.ddb, op="scan", TableName=self.t, IndexName="by-status", Segment=seg,
                                      TotalSegments=3, Limit=7)
            seen += [x["pk"]["S"] for x in items]
        self.assertEqual(sorted(seen), sorted("p%d" % i for i in range(40)))

    def test_the_index_follows_on_the_other_node(self):
        # A GSI is eventually consistent; node B keeps its own index from its own replica.
        self.assertTrue(wait_for(lambda: self.ddb_b.describe_table(TableName=self.t)["Table"].get("GlobalSecondaryIndexes")))
        self.put(self.t, "a", 1, status="x", ts=1)
        self.ddb_b.put_item(TableName=self.t, Item={"pk": {"S": "b"}, "sk": {"N": "2"}, "status": {"S": "x"}, "ts": {"N": "2"}})

        def on(client):
            return [x["pk"]["S"] for x in client.query(
                TableName=self.t, IndexName="by-status", KeyConditionExpression="#s = :s",
                ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "x"}})["Items"]]

        for c in (self.ddb, self.ddb_b):
            self.assertTrue(wait_for(lambda: on(c) == ["a", "b"]), on(c))


class Projections(IndexTest):
    def test_keys_only_include_and_all(self):
        t = self.make(gsis=[gsi("keys", "status", projection="KEYS_ONLY"),
                            gsi("incl", "status", "ts", projection="INCLUDE", non_key=["agent"])],
                      lsis=[gsi("local", "pk", "ts", "KEYS_ONLY")], extra_defs=[("status", "S"), ("ts", "N")])
        self.put(t, "a", 1, status="x", ts=4, agent="ann", other="o")
        q = dict(TableName=t, KeyConditionExpression="#s = :s", ExpressionAttributeNames={"#s": "status"},
                 ExpressionAttributeValues={":s": {"S": "x"}})
        # KEYS_ONLY: the table key and the index key only.
        self.assertEqual(set(self.ddb.query(IndexName="keys", **q)["Items"][0]), {"pk", "sk", "status"})
        self.assertEqual(set(self.ddb.query(IndexName="keys", Select="ALL_PROJECTED_ATTRIBUTES", **q)["Items"][0]),
                         {"pk", "sk", "status"})
        # INCLUDE: and the named non-key attributes.
        self.assertEqual(set(self.ddb.query(IndexName="incl", **q)["Items"][0]), {"pk", "sk", "status", "ts", "agent"})
        # A GSI cannot answer ALL_ATTRIBUTES unless it projects ALL.
        self.assertEqual(error_code(lambda: self.ddb.query(IndexName="keys", Select="ALL_ATTRIBUTES", **q)),
                         "ValidationException")
        # An LSI can: DynamoDB fetches the rest from the table.
        lq = dict(TableName=t, IndexName="local", KeyConditionExpression="pk = :p AND ts > :t",
                  ExpressionAttributeValues={":p": {"S": "a"}, ":t": {"N": "1"}})
        self.assertEqual(set(self.ddb.query(**lq)["Items"][0]), {"pk", "sk", "ts"})
        full = self.ddb.query(Select="ALL_ATTRIBUTES", ConsistentRead=True, **lq)["Items"]
        self.assertEqual(full[0]["other"], {"S": "o"})
        # COUNT counts.
        self.assertEqual(self.ddb.query(IndexName="incl", Select="COUNT", **q)["Count"], 1)


class UpdateTableIndexes(IndexTest):
    def test_create_backfills_then_is_active_and_delete_removes(self):
        t = self.make()
        for i in range(300):
            self.put(t, "p%d" % i, i, status="s%d" % (i % 3), ts=i)
        r = self.ddb.update_table(
            TableName=t, AttributeDefinitions=[{"AttributeName": "status", "AttributeType": "S"},
                                               {"AttributeName": "ts", "AttributeType": "N"}],
            GlobalSecondaryIndexUpdates=[{"Create": gsi("by-status", "status", "ts", "KEYS_ONLY")}])
        self.assertEqual([x["IndexName"] for x in r["TableDescription"]["GlobalSecondaryIndexes"]], ["by-status"])
        self.assertIn(r["TableDescription"]["GlobalSecondaryIndexes"][0]["IndexStatus"], ("CREATING", "ACTIVE"))

        def status():
            return self.ddb.describe_table(TableName=t)["Table"]["GlobalSecondaryIndexes"][0]["IndexStatus"]

        self.assertTrue(wait_for(lambda: status() == "ACTIVE", 30), status())
        items, _ = self.query_all(self.ddb, TableName=t, IndexName="by-status", KeyConditionExpression="#s = :s",
                                  ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "s1"}},
                                  Limit=40)
        self.assertEqual([int(x["ts"]["N"]) for x in items], list(range(1, 300, 3)))
        # The other node builds its own from its replica.
        self.assertTrue(wait_for(lambda: self.ddb_b.describe_table(TableName=t)["Table"].get(
            "GlobalSecondaryIndexes", [{}])[0].get("IndexStatus") == "ACTIVE", 30))
        items_b, _ = self.query_all(self.ddb_b, TableName=t, IndexName="by-status", KeyConditionExpression="#s = :s",
                                    ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "s1"}})
        self.assertEqual(len(items_b), 100)
        # One index change per UpdateTable call.
        code = error_code(lambda: self.ddb.update_table(
            TableName=t, AttributeDefinitions=[{"AttributeName": "a", "AttributeType": "S"},
                                               {"AttributeName": "b", "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[{"Create": gsi("g-a", "a")}, {"Create": gsi("g-b", "b")}]))
        self.assertIn(code, ("ValidationException", "LimitExceededException"))
        # Delete: gone from DescribeTable, and reads of it are refused.
        self.ddb.update_table(TableName=t, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-status"}}])
        self.assertTrue(wait_for(lambda: "GlobalSecondaryIndexes" not in self.ddb.describe_table(TableName=t)["Table"]))
        self.assertEqual(error_code(lambda: self.ddb.scan(TableName=t, IndexName="by-status")), "ValidationException")
        self.assertEqual(error_code(lambda: self.ddb.update_table(
            TableName=t, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-status"}}])), "ResourceNotFoundException")

    def test_a_new_index_needs_its_attribute_definitions(self):
        t = self.make()
        code, msg = message(lambda: self.ddb.update_table(
            TableName=t, GlobalSecondaryIndexUpdates=[{"Create": gsi("g-undefined", "undefined")}]))
        self.assertEqual(code, "ValidationException")
        self.assertIn("AttributeDefinitions", msg)


if __name__ == "__main__":
    unittest.main()
