#!/usr/bin/env python3
"""Real boto3 calls against a running Tandem node's API port (optional; needs boto3).

    scripts/aws-smoke.py 127.0.0.1:7001

Exercises DynamoDB (tables, items, expressions, query paging, batches) and Kinesis (put,
iterators, get records) and exits non-zero on the first mismatch.
"""
import base64
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint = "http://" + (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7001")
session = dict(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
               endpoint_url=endpoint, config=Config(retries={"max_attempts": 2}))
ddb = boto3.client("dynamodb", **session)
kin = boto3.client("kinesis", **session)
suffix = str(int(time.time() * 1000))


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


# DynamoDB: a table with a sort key; the waiter sees ACTIVE.
table = "smoke-" + suffix
ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}])
ddb.get_waiter("table_exists").wait(TableName=table)
assert table in ddb.list_tables()["TableNames"]
assert error_code(lambda: ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                           AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                           BillingMode="PAY_PER_REQUEST")) == "ResourceInUseException"

# Items: put, get with canonical numbers, conditional put, update expressions.
ddb.put_item(TableName=table, Item={"pk": {"S": "c1"}, "sk": {"N": "001"}, "n": {"N": "1.5E2"}, "tags": {"SS": ["a"]}})
got = ddb.get_item(TableName=table, Key={"pk": {"S": "c1"}, "sk": {"N": "1"}})["Item"]
assert got["n"] == {"N": "150"} and got["sk"] == {"N": "1"}, got
assert error_code(lambda: ddb.put_item(TableName=table, Item={"pk": {"S": "c1"}, "sk": {"N": "1"}},
                                       ConditionExpression="attribute_not_exists(pk)")) == "ConditionalCheckFailedException"
r = ddb.update_item(TableName=table, Key={"pk": {"S": "c1"}, "sk": {"N": "1"}},
                    UpdateExpression="SET n = n + :one, #s = :s, l = list_append(if_not_exists(l, :empty), :x) ADD tags :b, hits :one",
                    ConditionExpression="n BETWEEN :lo AND :hi AND contains(tags, :a)",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":one": {"N": "1"}, ":s": {"S": "open"}, ":empty": {"L": []}, ":x": {"L": [{"S": "x"}]},
                                               ":b": {"SS": ["b"]}, ":lo": {"N": "100"}, ":hi": {"N": "200"}, ":a": {"S": "a"}},
                    ReturnValues="ALL_NEW")["Attributes"]
assert r["n"] == {"N": "151"} and r["hits"] == {"N": "1"} and sorted(r["tags"]["SS"]) == ["a", "b"] and r["status"] == {"S": "open"}, r
got = ddb.get_item(TableName=table, Key={"pk": {"S": "c1"}, "sk": {"N": "1"}}, ProjectionExpression="n, l[0]")["Item"]
assert got == {"n": {"N": "151"}, "l": {"L": [{"S": "x"}]}}, got

# Query paging, reverse order, filter, count; BatchWrite and BatchGet.
ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": "q"}, "sk": {"N": str(i)}, "v": {"N": str(i % 3)}}}}
                                           for i in range(10)]})
seen, start = [], None
while True:
    args = dict(TableName=table, KeyConditionExpression="pk = :p AND sk >= :from", Limit=4,
                ExpressionAttributeValues={":p": {"S": "q"}, ":from": {"N": "2"}})
    if start:
        args["ExclusiveStartKey"] = start
    page = ddb.query(**args)
    seen += [int(i["sk"]["N"]) for i in page["Items"]]
    start = page.get("LastEvaluatedKey")
    if not start:
        break
assert seen == list(range(2, 10)), seen
rev = ddb.query(TableName=table, KeyConditionExpression="pk = :p", ScanIndexForward=False, Limit=2,
                ExpressionAttributeValues={":p": {"S": "q"}})
assert [i["sk"]["N"] for i in rev["Items"]] == ["9", "8"], rev
count = ddb.query(TableName=table, KeyConditionExpression="pk = :p", FilterExpression="v = :z", Select="COUNT",
                  ExpressionAttributeValues={":p": {"S": "q"}, ":z": {"N": "0"}})
assert count["Count"] == 4 and count["ScannedCount"] == 10, count
batch = ddb.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": "q"}, "sk": {"N": "3"}}, {"pk": {"S": "q"}, "sk": {"N": "99"}}]}})
assert len(batch["Responses"][table]) == 1
segments = [ddb.scan(TableName=table, Segment=s, TotalSegments=3)["Count"] for s in range(3)]
assert sum(segments) == 11, segments
ddb.delete_item(TableName=table, Key={"pk": {"S": "c1"}, "sk": {"N": "1"}})
assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "c1"}, "sk": {"N": "1"}})
assert error_code(lambda: ddb.get_item(TableName="nope-" + suffix, Key={"pk": {"S": "x"}})) == "ResourceNotFoundException"
assert error_code(lambda: ddb.get_item(TableName=table, Key={"pk": {"S": "x"}})) == "ValidationException"
ddb.delete_table(TableName=table)
ddb.get_waiter("table_not_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
print("dynamodb ok")

# Kinesis: create, wait for ACTIVE, put, iterate.
stream = "smoke-" + suffix
kin.create_stream(StreamName=stream, ShardCount=2)
kin.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1})
shards = kin.list_shards(StreamName=stream)["Shards"]
assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"], shards
put = kin.put_record(StreamName=stream, Data=b"hello", PartitionKey="k1")
latest = kin.get_shard_iterator(StreamName=stream, ShardId=put["ShardId"], ShardIteratorType="LATEST")["ShardIterator"]
many = kin.put_records(StreamName=stream, Records=[{"Data": b"r%d" % i, "PartitionKey": "k1"} for i in range(3)])
assert many["FailedRecordCount"] == 0
it = kin.get_shard_iterator(StreamName=stream, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
out = kin.get_records(ShardIterator=it)
assert [r["Data"] for r in out["Records"]] == [b"hello", b"r0", b"r1", b"r2"], out["Records"]
assert [r["Data"] for r in kin.get_records(ShardIterator=latest)["Records"]] == [b"r0", b"r1", b"r2"]
after = kin.get_shard_iterator(StreamName=stream, ShardId=put["ShardId"], ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                               StartingSequenceNumber=put["SequenceNumber"])["ShardIterator"]
assert kin.get_records(ShardIterator=after, Limit=1)["Records"][0]["Data"] == b"r0"
empty = kin.get_records(ShardIterator=out["NextShardIterator"])
assert empty["Records"] == [] and "NextShardIterator" in empty
assert error_code(lambda: kin.get_records(ShardIterator=base64.b64encode(b"forged").decode())) == "InvalidArgumentException"
assert kin.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["OpenShardCount"] == 2
kin.delete_stream(StreamName=stream)
print("kinesis ok")
