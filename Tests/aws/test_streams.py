"""DynamoDB Streams: StreamSpecification on CreateTable/UpdateTable, DescribeTable's stream fields,
and the DynamoDBStreams_20120810 API (ListStreams, DescribeStream, GetShardIterator, GetRecords),
written from the DynamoDB Streams developer guide and API reference:
- a stream record per item change, eventName INSERT/MODIFY/REMOVE, eventSource "aws:dynamodb",
  the `dynamodb` structure holding Keys, and NewImage/OldImage as StreamViewType says;
- no record for a write that changes nothing;
- records of one item in the order of its changes; sequence numbers rising within a shard;
- iterators TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER;
- "a ValidationException if you try to enable a stream on a table that already has a stream, or
  if you try to disable a stream on a table that doesn't have a stream";
- a disabled stream's shards are closed (no NextShardIterator at the end, an
  EndingSequenceNumber) and stay readable; a stream enabled again is a new stream (new label and
  ARN);
- in a global table each replica's stream carries the changes replicated to it as well.
"""
import datetime

import tandem


def read_all(streams, iterator, limit=None):
    """Every record from `iterator` until a call returns nothing (or the shard ends)."""
    out = []
    while iterator:
        kw = {"ShardIterator": iterator}
        if limit:
            kw["Limit"] = limit
        r = streams.get_records(**kw)
        out += r["Records"]
        iterator = r.get("NextShardIterator")
        if not r["Records"]:
            break
    return out, iterator


class StreamTest(tandem.DynamoTest):
    sort_key = False
    view = "NEW_AND_OLD_IMAGES"

    def setUp(self):
        super().setUp()
        self.streams = tandem.client("dynamodbstreams", 0)
        self.streams_b = tandem.client("dynamodbstreams", 1)
        if self.view:
            self.ddb.update_table(TableName=self.table, StreamSpecification={"StreamEnabled": True, "StreamViewType": self.view})

    def arn(self, ddb=None):
        return (ddb or self.ddb).describe_table(TableName=self.table)["Table"]["LatestStreamArn"]

    def shard(self, streams=None, arn=None):
        d = (streams or self.streams).describe_stream(StreamArn=arn or self.arn())["StreamDescription"]
        self.assertEqual(len(d["Shards"]), 1, d)
        return d["Shards"][0]["ShardId"]

    def iterator(self, kind="TRIM_HORIZON", seq=None, streams=None, arn=None):
        streams = streams or self.streams
        arn = arn or self.arn()
        kw = {"StreamArn": arn, "ShardId": self.shard(streams, arn), "ShardIteratorType": kind}
        if seq is not None:
            kw["SequenceNumber"] = seq
        return streams.get_shard_iterator(**kw)["ShardIterator"]

    def records(self, want, kind="TRIM_HORIZON", seq=None, streams=None, arn=None, timeout=10):
        """Waits until reading from `kind` gives at least `want` records; returns them."""
        got = []

        def enough():
            got[:] = read_all(streams or self.streams, self.iterator(kind, seq, streams, arn))[0]
            return len(got) >= want
        tandem.wait_for(enough, timeout)
        return got


class StreamRecordTests(StreamTest):
    def test_describe_table_and_list_streams_show_the_stream(self):
        t = self.ddb.describe_table(TableName=self.table)["Table"]
        self.assertEqual(t["StreamSpecification"], {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
        self.assertTrue(t["LatestStreamArn"].endswith("/stream/" + t["LatestStreamLabel"]), t["LatestStreamArn"])
        self.assertIn(":table/%s/stream/" % self.table, t["LatestStreamArn"])
        listed = self.streams.list_streams(TableName=self.table)["Streams"]
        self.assertEqual(listed, [{"StreamArn": t["LatestStreamArn"], "TableName": self.table, "StreamLabel": t["LatestStreamLabel"]}])
        self.assertIn(t["LatestStreamArn"], [s["StreamArn"] for s in self.streams.list_streams()["Streams"]])
        d = self.streams.describe_stream(StreamArn=t["LatestStreamArn"])["StreamDescription"]
        self.assertEqual(d["StreamArn"], t["LatestStreamArn"])
        self.assertEqual(d["StreamLabel"], t["LatestStreamLabel"])
        self.assertEqual(d["StreamStatus"], "ENABLED")
        self.assertEqual(d["StreamViewType"], "NEW_AND_OLD_IMAGES")
        self.assertEqual(d["TableName"], self.table)
        self.assertEqual(d["KeySchema"], [{"AttributeName": "pk", "KeyType": "HASH"}])
        self.assertIsInstance(d["CreationRequestDateTime"], datetime.datetime)
        shard = d["Shards"][0]
        self.assertIn("StartingSequenceNumber", shard["SequenceNumberRange"])
        self.assertNotIn("EndingSequenceNumber", shard["SequenceNumberRange"], "an enabled stream's shard is open")

    def test_insert_modify_remove_with_both_images(self):
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        self.ddb.update_item(TableName=self.table, Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :v",
                             ExpressionAttributeValues={":v": {"N": "2"}})
        # A write that changes nothing makes no record.
        self.ddb.update_item(TableName=self.table, Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :v",
                             ExpressionAttributeValues={":v": {"N": "2"}})
        self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": "a"}})
        # Deleting what is not there changes nothing either.
        self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": "a"}})
        recs = self.records(3)
        self.assertEqual([r["eventName"] for r in recs], ["INSERT", "MODIFY", "REMOVE"], recs)
        for r in recs:
            self.assertEqual(r["eventSource"], "aws:dynamodb")
            self.assertIn("eventID", r)
            self.assertIn("eventVersion", r)
            self.assertIn("awsRegion", r)
            self.assertEqual(r["dynamodb"]["Keys"], {"pk": {"S": "a"}})
            self.assertEqual(r["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES")
            self.assertGreater(r["dynamodb"]["SizeBytes"], 0)
            self.assertIsInstance(r["dynamodb"]["ApproximateCreationDateTime"], datetime.datetime)
        insert, modify, remove = (r["dynamodb"] for r in recs)
        self.assertEqual(insert["NewImage"], {"pk": {"S": "a"}, "n": {"N": "1"}})
        self.assertNotIn("OldImage", insert)
        self.assertEqual(modify["OldImage"], {"pk": {"S": "a"}, "n": {"N": "1"}})
        self.assertEqual(modify["NewImage"], {"pk": {"S": "a"}, "n": {"N": "2"}})
        self.assertEqual(remove["OldImage"], {"pk": {"S": "a"}, "n": {"N": "2"}})
        self.assertNotIn("NewImage", remove)
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in recs]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 3)
        self.assertEqual(len({r["eventID"] for r in recs}), 3, "each record has its own eventID")

    def test_iterator_types_and_paging(self):
        for i in range(5):
            self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "k%d" % i}})
        recs = self.records(5)
        seqs = [r["dynamodb"]["SequenceNumber"] for r in recs]
        self.assertEqual([r["dynamodb"]["Keys"]["pk"]["S"] for r in recs], ["k%d" % i for i in range(5)])
        # Limit pages through the shard with NextShardIterator.
        paged, _ = read_all(self.streams, self.iterator(), limit=2)
        self.assertEqual([r["dynamodb"]["SequenceNumber"] for r in paged], seqs)
        first = self.streams.get_records(ShardIterator=self.iterator(), Limit=2)
        self.assertEqual(len(first["Records"]), 2)
        self.assertIn("NextShardIterator", first)
        # AT_SEQUENCE_NUMBER starts at the record, AFTER_SEQUENCE_NUMBER just after it.
        at, _ = read_all(self.streams, self.iterator("AT_SEQUENCE_NUMBER", seqs[2]))
        self.assertEqual([r["dynamodb"]["SequenceNumber"] for r in at], seqs[2:])
        after, _ = read_all(self.streams, self.iterator("AFTER_SEQUENCE_NUMBER", seqs[2]))
        self.assertEqual([r["dynamodb"]["SequenceNumber"] for r in after], seqs[3:])
        # LATEST: only what comes after the iterator was issued.
        latest = self.iterator("LATEST")
        r = self.streams.get_records(ShardIterator=latest)
        self.assertEqual(r["Records"], [])
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "new"}})
        got = []
        it = r["NextShardIterator"]

        def more():
            nonlocal it
            res = self.streams.get_records(ShardIterator=it)
            got.extend(res["Records"])
            it = res["NextShardIterator"]
            return got
        self.assertTrue(tandem.wait_for(more, 10))
        self.assertEqual([x["dynamodb"]["Keys"]["pk"]["S"] for x in got], ["new"])
        self.assertEqual(got[0]["eventName"], "INSERT")

    def test_replicated_writes_are_in_the_other_nodes_stream(self):
        # As a global table's replica stream: node A's stream carries a write taken by node B.
        self.assertTrue(tandem.wait_for(lambda: self.ddb_b.describe_table(TableName=self.table)["Table"].get("LatestStreamArn"), 10))
        self.ddb_b.put_item(TableName=self.table, Item={"pk": {"S": "from-b"}, "v": {"S": "x"}})
        recs = self.records(1)
        self.assertEqual(recs[0]["eventName"], "INSERT")
        self.assertEqual(recs[0]["dynamodb"]["NewImage"], {"pk": {"S": "from-b"}, "v": {"S": "x"}})
        # And node B's own stream has it too.
        recs_b = self.records(1, streams=self.streams_b, arn=self.arn(self.ddb_b))
        self.assertEqual(recs_b[0]["dynamodb"]["Keys"], {"pk": {"S": "from-b"}})

    def test_errors(self):
        arn = self.arn()
        missing = arn.replace(":table/%s/" % self.table, ":table/%s-missing/" % self.table)
        self.assertNotEqual(missing, arn)
        self.assertEqual(tandem.error_code(lambda: self.streams.describe_stream(StreamArn=missing)), "ResourceNotFoundException")
        self.assertEqual(tandem.error_code(lambda: self.streams.get_shard_iterator(
            StreamArn=arn, ShardId="shardId-00000000000000000000-00000000", ShardIteratorType="TRIM_HORIZON")),
            "ResourceNotFoundException")
        self.assertEqual(tandem.error_code(lambda: self.streams.list_streams(TableName=self.table + "-missing")),
                         "ResourceNotFoundException")
        raw = tandem.client("dynamodbstreams", 0, validate=False)
        self.assertEqual(tandem.error_code(lambda: raw.get_shard_iterator(
            StreamArn=arn, ShardId=self.shard(), ShardIteratorType="SOMEWHERE")), "ValidationException")
        self.assertEqual(tandem.error_code(lambda: raw.get_records(ShardIterator=self.iterator(), Limit=0)), "ValidationException")
        self.assertEqual(tandem.error_code(lambda: raw.get_records(ShardIterator="not-an-iterator")), "ValidationException")
        # Enabling a stream on a table that has one is a ValidationException.
        self.assertEqual(tandem.error_code(lambda: self.ddb.update_table(
            TableName=self.table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})), "ValidationException")
        self.assertTrue(tandem.cluster().alive())


class StreamLifecycleTests(StreamTest):
    view = None

    def test_no_stream_until_enabled_then_disable_and_enable_again(self):
        t = self.ddb.describe_table(TableName=self.table)["Table"]
        self.assertNotIn("LatestStreamArn", t)
        self.assertEqual(self.streams.list_streams(TableName=self.table)["Streams"], [])
        # Disabling a stream a table does not have is a ValidationException.
        self.assertEqual(tandem.error_code(lambda: self.ddb.update_table(
            TableName=self.table, StreamSpecification={"StreamEnabled": False})), "ValidationException")
        # Writes before the stream exists are not in it.
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "before"}})
        r = self.ddb.update_table(TableName=self.table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
        first_arn = r["TableDescription"]["LatestStreamArn"]
        first_label = r["TableDescription"]["LatestStreamLabel"]
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "during"}, "x": {"S": "y"}})
        recs = self.records(1, arn=first_arn)
        self.assertEqual([x["dynamodb"]["Keys"]["pk"]["S"] for x in recs], ["during"])
        self.assertNotIn("NewImage", recs[0]["dynamodb"], "KEYS_ONLY")
        self.assertNotIn("OldImage", recs[0]["dynamodb"], "KEYS_ONLY")
        self.assertEqual(recs[0]["dynamodb"]["StreamViewType"], "KEYS_ONLY")

        self.ddb.update_table(TableName=self.table, StreamSpecification={"StreamEnabled": False})
        self.assertNotIn("StreamSpecification", self.ddb.describe_table(TableName=self.table)["Table"])
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "after"}})
        # The disabled stream's shard closes: read to its end, there is no next iterator, and its
        # range has an end; its records are still readable.
        def closed():
            d = self.streams.describe_stream(StreamArn=first_arn)["StreamDescription"]
            return d["StreamStatus"] in ("DISABLED", "DISABLING") and "EndingSequenceNumber" in d["Shards"][0]["SequenceNumberRange"]
        self.assertTrue(tandem.wait_for(closed, 10))
        recs, next_it = read_all(self.streams, self.iterator(arn=first_arn))
        self.assertEqual([x["dynamodb"]["Keys"]["pk"]["S"] for x in recs], ["during"])
        self.assertIsNone(next_it, "a closed shard read to its end has no NextShardIterator")

        r = self.ddb.update_table(TableName=self.table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
        second_arn = r["TableDescription"]["LatestStreamArn"]
        self.assertNotEqual(second_arn, first_arn, "a stream enabled again is a new stream")
        self.assertNotEqual(r["TableDescription"]["LatestStreamLabel"], first_label)
        listed = [s["StreamArn"] for s in self.streams.list_streams(TableName=self.table)["Streams"]]
        self.assertEqual(sorted(listed), sorted([first_arn, second_arn]), "the disabled stream stays readable")
        self.ddb.put_item(TableName=self.table, Item={"pk": {"S": "again"}, "v": {"N": "7"}})
        self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": "again"}})
        recs = self.records(2, arn=second_arn)
        self.assertEqual([x["eventName"] for x in recs], ["INSERT", "REMOVE"])
        self.assertEqual(recs[0]["dynamodb"]["NewImage"], {"pk": {"S": "again"}, "v": {"N": "7"}})
        self.assertNotIn("OldImage", recs[0]["dynamodb"], "NEW_IMAGE")
        self.assertNotIn("NewImage", recs[1]["dynamodb"], "a REMOVE has no new image")

    def test_create_table_with_a_stream_and_bad_specifications(self):
        name = tandem.unique("streamcreate")
        r = self.ddb.create_table(
            TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST", StreamSpecification={"StreamEnabled": True, "StreamViewType": "OLD_IMAGE"})
        try:
            desc = r["TableDescription"]
            self.assertEqual(desc["StreamSpecification"], {"StreamEnabled": True, "StreamViewType": "OLD_IMAGE"})
            arn = desc["LatestStreamArn"]
            self.ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"N": "1"}, "v": {"S": "one"}})
            self.ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"N": "1"}, "v": {"S": "two"}})
            recs = self.records(2, arn=arn)
            self.assertEqual([x["eventName"] for x in recs], ["INSERT", "MODIFY"])
            self.assertEqual(recs[0]["dynamodb"]["Keys"], {"pk": {"S": "p"}, "sk": {"N": "1"}})
            self.assertNotIn("NewImage", recs[0]["dynamodb"], "OLD_IMAGE")
            self.assertNotIn("OldImage", recs[0]["dynamodb"], "an INSERT has no old image")
            self.assertEqual(recs[1]["dynamodb"]["OldImage"], {"pk": {"S": "p"}, "sk": {"N": "1"}, "v": {"S": "one"}})
        finally:
            tandem.error_code(lambda: self.ddb.delete_table(TableName=name))
        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        defs = [{"AttributeName": "pk", "AttributeType": "S"}]
        raw = tandem.client("dynamodb", 0, validate=False)
        for spec in ({"StreamEnabled": True}, {"StreamEnabled": True, "StreamViewType": "EVERYTHING"}):
            bad = tandem.unique("streambad")
            self.assertEqual(tandem.error_code(lambda: raw.create_table(
                TableName=bad, KeySchema=keys, AttributeDefinitions=defs, BillingMode="PAY_PER_REQUEST",
                StreamSpecification=spec)), "ValidationException", spec)
            self.assertEqual(tandem.error_code(lambda: self.ddb.describe_table(TableName=bad)), "ResourceNotFoundException")
