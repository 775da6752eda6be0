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
