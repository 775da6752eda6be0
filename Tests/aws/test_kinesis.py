"""Kinesis: streams, shards, PutRecord(s), shard iterators of every type, GetRecords."""
import base64
import unittest
import time

import tandem


class KinesisTests(unittest.TestCase):
    def setUp(self):
        self.kin = tandem.client("kinesis", 0)
        self.stream = tandem.unique("events")
        self.kin.create_stream(StreamName=self.stream, ShardCount=2)
        self.kin.get_waiter("stream_exists").wait(StreamName=self.stream, WaiterConfig={"Delay": 1, "MaxAttempts": 20})

    def tearDown(self):
        tandem.error_code(lambda: self.kin.delete_stream(StreamName=self.stream))

    def iterator(self, shard, kind, **kw):
        return self.kin.get_shard_iterator(StreamName=self.stream, ShardId=shard, ShardIteratorType=kind, **kw)["ShardIterator"]

    def test_streams_and_shards_are_listed(self):
        # ListStreams, ListShards and DescribeStreamSummary describe the stream.
        self.assertIn(self.stream, self.kin.list_streams()["StreamNames"])
        shards = [s["ShardId"] for s in self.kin.list_shards(StreamName=self.stream)["Shards"]]
        self.assertEqual(shards, ["shardId-000000000000", "shardId-000000000001"])
        self.assertEqual(self.kin.describe_stream_summary(StreamName=self.stream)["StreamDescriptionSummary"]["OpenShardCount"], 2)

    def test_put_and_get_with_every_iterator_type(self):
        # TRIM_HORIZON sees all, LATEST only what follows, AT/AFTER_SEQUENCE_NUMBER start at a record.
        first = self.kin.put_record(StreamName=self.stream, Data=b"one", PartitionKey="caller-1")
        shard = first["ShardId"]
        latest = self.iterator(shard, "LATEST")
        stamp = time.time()
        batch = self.kin.put_records(StreamName=self.stream, Records=[{"Data": b"r%d" % i, "PartitionKey": "caller-1"} for i in range(3)])
        self.assertEqual(batch["FailedRecordCount"], 0)
        self.assertTrue(all(r["ShardId"] == shard for r in batch["Records"]), "one partition key, one shard")
        out = self.kin.get_records(ShardIterator=self.iterator(shard, "TRIM_HORIZON"))
        self.assertEqual([r["Data"] for r in out["Records"]], [b"one", b"r0", b"r1", b"r2"])
        self.assertIn("MillisBehindLatest", out)
        self.assertEqual([r["Data"] for r in self.kin.get_records(ShardIterator=latest)["Records"]], [b"r0", b"r1", b"r2"])
        at = self.iterator(shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=first["SequenceNumber"])
        self.assertEqual(self.kin.get_records(ShardIterator=at, Limit=1)["Records"][0]["Data"], b"one")
        after = self.iterator(shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=first["SequenceNumber"])
        self.assertEqual(self.kin.get_records(ShardIterator=after, Limit=1)["Records"][0]["Data"], b"r0")
        ts = self.iterator(shard, "AT_TIMESTAMP", Timestamp=stamp - 60)
        self.assertEqual(len(self.kin.get_records(ShardIterator=ts)["Records"]), 4)
        # The next iterator continues after the last record: nothing new yet, then the new record.
        empty = self.kin.get_records(ShardIterator=out["NextShardIterator"])
        self.assertEqual(empty["Records"], [])
        self.kin.put_record(StreamName=self.stream, Data=b"five", PartitionKey="caller-1")
        self.assertEqual([r["Data"] for r in self.kin.get_records(ShardIterator=empty["NextShardIterator"])["Records"]], [b"five"])

    def test_errors(self):
        # A forged iterator, an unknown shard and an unknown stream get Kinesis's error codes.
        self.assertEqual(tandem.error_code(lambda: self.kin.get_records(ShardIterator=base64.b64encode(b"forged").decode())),
                         "InvalidArgumentException")
        self.assertEqual(tandem.error_code(lambda: self.iterator("shardId-000000000009", "LATEST")), "ResourceNotFoundException")
        self.assertEqual(tandem.error_code(lambda: self.kin.put_record(StreamName="no-such-stream", Data=b"x", PartitionKey="k")),
                         "ResourceNotFoundException")


class ShardRuleTests(unittest.TestCase):
    """A record's shard follows Kinesis's documented rule, so client code that computes shards
    agrees: the MD5 of the partition key as a 128-bit integer, in the shard's HashKeyRange;
    an ExplicitHashKey overrides it."""

    def setUp(self):
        self.kin = tandem.client("kinesis", 0)
        self.stream = tandem.unique("shards")
        self.kin.create_stream(StreamName=self.stream, ShardCount=4)
        self.kin.get_waiter("stream_exists").wait(StreamName=self.stream, WaiterConfig={"Delay": 1, "MaxAttempts": 20})

    def tearDown(self):
        tandem.error_code(lambda: self.kin.delete_stream(StreamName=self.stream))

    def test_md5_of_the_partition_key_picks_the_shard(self):
        import hashlib
        shards = self.kin.list_shards(StreamName=self.stream)["Shards"]
        ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]), s["ShardId"]) for s in shards]
        # Four shards split the 2^128 hash keys evenly, as Kinesis splits a new stream.
        self.assertEqual([r[0] for r in ranges], [i * 2 ** 126 for i in range(4)])
        self.assertEqual(ranges[-1][1], 2 ** 128 - 1)

        def expected(hash_key):
            return next(shard for start, end, shard in ranges if start <= hash_key <= end)
        keys = ["agent-%d" % i for i in range(40)]
        out = self.kin.put_records(StreamName=self.stream, Records=[{"Data": b"x", "PartitionKey": k} for k in keys])["Records"]
        for key, record in zip(keys, out):
            self.assertEqual(record["ShardId"], expected(int(hashlib.md5(key.encode()).hexdigest(), 16)), key)
        self.assertGreater(len({r["ShardId"] for r in out}), 2, "40 keys land in more than two of four shards")
        # ExplicitHashKey overrides the key's hash, in PutRecord and PutRecords.
        one = self.kin.put_record(StreamName=self.stream, Data=b"x", PartitionKey="agent-0", ExplicitHashKey=str(3 * 2 ** 126))
        self.assertEqual(one["ShardId"], "shardId-000000000003")
        many = self.kin.put_records(StreamName=self.stream, Records=[
            {"Data": b"x", "PartitionKey": "agent-0", "ExplicitHashKey": str(2 ** 126 - 1)},
            {"Data": b"x", "PartitionKey": "agent-0", "ExplicitHashKey": str(2 ** 126)}])["Records"]
        self.assertEqual([r["ShardId"] for r in many], ["shardId-000000000000", "shardId-000000000001"])
        for bad in (str(2 ** 128), "-1", "12ab"):
            self.assertEqual(tandem.error_code(lambda: self.kin.put_record(
                StreamName=self.stream, Data=b"x", PartitionKey="k", ExplicitHashKey=bad)), "InvalidArgumentException", bad)


class ListStreamsTests(unittest.TestCase):
    def test_paging_and_unbuilt_operations(self):
        # ListStreams pages by NextToken (as boto3's paginator asks) or ExclusiveStartStreamName.
        kin = tandem.client("kinesis", 0)
        names = sorted(tandem.unique("page%d-" % i) for i in range(3))
        for n in names:
            kin.create_stream(StreamName=n, ShardCount=1)
        try:
            seen = []
            for page in kin.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 1}):
                seen += page["StreamNames"]
            self.assertEqual([n for n in seen if n in names], names)
            self.assertEqual(len(seen), len(set(seen)))
            first = kin.list_streams(Limit=1)
            self.assertTrue(first["HasMoreStreams"])
            self.assertEqual(kin.list_streams(Limit=1, NextToken=first["NextToken"])["StreamNames"],
                             kin.list_streams(Limit=1, ExclusiveStartStreamName=first["StreamNames"][0])["StreamNames"])
        finally:
            for n in names:
                tandem.error_code(lambda: kin.delete_stream(StreamName=n))
        # Enhanced fan-out is not built: a clear UnknownOperationException.
        self.assertEqual(tandem.error_code(lambda: kin.list_stream_consumers(StreamARN="arn:aws:kinesis:tandem:000000000000:stream/x")),
                         "UnknownOperationException")


class StreamSettingsTests(unittest.TestCase):
    """Retention changes and tags, as infrastructure tools call them after CreateStream."""

    def setUp(self):
        self.kin = tandem.client("kinesis", 0)
        self.stream = tandem.unique("settings")
        self.kin.create_stream(StreamName=self.stream, ShardCount=1, Tags={"team": "cc"})
        self.kin.get_waiter("stream_exists").wait(StreamName=self.stream, WaiterConfig={"Delay": 1, "MaxAttempts": 20})

    def tearDown(self):
        tandem.error_code(lambda: self.kin.delete_stream(StreamName=self.stream))

    def retention(self, client=None):
        return (client or self.kin).describe_stream_summary(StreamName=self.stream)["StreamDescriptionSummary"]["RetentionPeriodHours"]

    def test_retention_goes_up_with_increase_and_down_with_decrease(self):
        self.assertEqual(self.retention(), 24)
        self.kin.increase_stream_retention_period(StreamName=self.stream, RetentionPeriodHours=168)
        self.assertEqual(self.retention(), 168)
        self.assertTrue(tandem.wait_for(lambda: self.retention(tandem.client("kinesis", 1)) == 168), "not replicated")
        code = lambda call, h: tandem.error_code(lambda: call(StreamName=self.stream, RetentionPeriodHours=h))
        self.assertEqual(code(self.kin.increase_stream_retention_period, 48), "InvalidArgumentException")  # shorter
        self.assertEqual(code(self.kin.decrease_stream_retention_period, 200), "InvalidArgumentException")  # longer
        self.assertEqual(code(self.kin.increase_stream_retention_period, 8761), "InvalidArgumentException")
        self.assertEqual(code(self.kin.decrease_stream_retention_period, 23), "InvalidArgumentException")
        self.kin.decrease_stream_retention_period(StreamName=self.stream, RetentionPeriodHours=48)
        self.assertEqual(self.retention(), 48)

    def test_tags(self):
        tags = lambda **kw: self.kin.list_tags_for_stream(StreamName=self.stream, **kw)
        self.assertEqual(tags()["Tags"], [{"Key": "team", "Value": "cc"}])
        self.kin.add_tags_to_stream(StreamName=self.stream, Tags={"env": "prod", "owner": "routing"})
        page = tags(Limit=2)
        self.assertEqual([t["Key"] for t in page["Tags"]], ["env", "owner"])
        self.assertTrue(page["HasMoreTags"])
        self.assertEqual([t["Key"] for t in tags(ExclusiveStartTagKey="owner")["Tags"]], ["team"])
        self.kin.remove_tags_from_stream(StreamName=self.stream, TagKeys=["env", "team"])
        self.assertEqual(tags()["Tags"], [{"Key": "owner", "Value": "routing"}])
        many = {"k%d" % i: "v" for i in range(50)}  # 51 with "owner"
        self.assertEqual(tandem.error_code(lambda: self.kin.add_tags_to_stream(StreamName=self.stream, Tags=many)), "LimitExceededException")
        self.assertEqual(tandem.error_code(lambda: self.kin.add_tags_to_stream(StreamName=self.stream, Tags={"aws:x": "v"})),
                         "InvalidArgumentException")
