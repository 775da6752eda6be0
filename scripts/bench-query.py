#!/usr/bin/env python3
"""Query/Scan page latency on a big table, raw keep-alive HTTP (no SDK).

    scripts/bench-query.py --binary PATH [--partitions 1000] [--per-partition 100]

Starts one node, loads partitions × per-partition items with BatchWriteItem, then times Query
pages (Limit 25 through one partition, with ExclusiveStartKey), Scan pages (Limit 100) and the
pages of one parallel-scan segment (Limit 100, segment 5 of 16) and prints the median and p99
per page. `--indexes` gives the table a GSI (projecting ALL) and an LSI (KEYS_ONLY) and times
index Query pages of 100 items: from the GSI's entries, from the LSI's entries, and from the LSI
with Select ALL_ATTRIBUTES, which reads each item from the table, as a GSI would if its entries
held only keys (docs/DESIGN-NOTES.md, "Secondary indexes").
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "aws"))
import tandem  # noqa: E402  (free ports, wait_for)

ap = argparse.ArgumentParser()
ap.add_argument("--binary", required=True)
ap.add_argument("--partitions", type=int, default=1000)
ap.add_argument("--per-partition", type=int, default=100)
ap.add_argument("--pages", type=int, default=200)
ap.add_argument("--indexes", action="store_true")
a = ap.parse_args()

root = tempfile.mkdtemp(prefix="tandem-bench-query-")
base = tandem._free_base(2)
api = "127.0.0.1:%d" % (base + 1)
node = subprocess.Popen([a.binary, "node", "--name", "b1", "--region", "r", "--bind", "127.0.0.1:%d" % base, "--api", api,
                         "--data-dir", root + "/b1", "--profile", "fast", "--log-level", "warning"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
conn = http.client.HTTPConnection("127.0.0.1", base + 1, timeout=30)


def call(op, body):
    conn.request("POST", "/", body=json.dumps(body), headers={"X-Amz-Target": "DynamoDB_20120810." + op,
                                                              "Content-Type": "application/x-amz-json-1.0"})
    r = conn.getresponse()
    data = json.loads(r.read())
    if r.status != 200:
        raise RuntimeError("%s: %s" % (op, data))
    return data


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return out[len(out) // 2], out[min(len(out) - 1, int(len(out) * 0.99))]


try:
    tandem.wait_for(lambda: tandem._get(api, "/v1/members"), 20)
    create = {"TableName": "bench", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
              "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
              "BillingMode": "PAY_PER_REQUEST"}
    if a.indexes:
        create["AttributeDefinitions"] += [{"AttributeName": "g", "AttributeType": "S"}, {"AttributeName": "t", "AttributeType": "N"}]
        create["GlobalSecondaryIndexes"] = [{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "t", "KeyType": "RANGE"}],
                                             "Projection": {"ProjectionType": "ALL"}}]
        create["LocalSecondaryIndexes"] = [{"IndexName": "by-t", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "t", "KeyType": "RANGE"}],
                                            "Projection": {"ProjectionType": "KEYS_ONLY"}}]
    call("CreateTable", create)
    t0 = time.time()
    batch = []
    for p in range(a.partitions):
        for s in range(a.per_partition):
            item = {"pk": {"S": "p%05d" % p}, "sk": {"N": str(s)}, "v": {"S": "x" * 20}}
            if a.indexes:
                item.update({"g": {"S": "g%d" % (p % 10)}, "t": {"N": str(p * a.per_partition + s)}, "v": {"S": "x" * 200}})
            batch.append({"PutRequest": {"Item": item}})
            if len(batch) == 25:
                call("BatchWriteItem", {"RequestItems": {"bench": batch}})
                batch = []
    if batch:
        call("BatchWriteItem", {"RequestItems": {"bench": batch}})
    items = a.partitions * a.per_partition
    print("loaded %d items in %.1f s" % (items, time.time() - t0))

    state = {"start": None, "p": 0}

    def query_page():
        body = {"TableName": "bench", "KeyConditionExpression": "pk = :p", "Limit": 25,
                "ExpressionAttributeValues": {":p": {"S": "p%05d" % (state["p"] % a.partitions)}}}
        if state["start"]:
            body["ExclusiveStartKey"] = state["start"]
        r = call("Query", body)
        state["start"] = r.get("LastEvaluatedKey")
        if not state["start"]:
            state["p"] += 1

    def scan_page():
        body = {"TableName": "bench", "Limit": 100}
        if state["start"]:
            body["ExclusiveStartKey"] = state["start"]
        state["start"] = call("Scan", body).get("LastEvaluatedKey")

    def get_item():
        call("GetItem", {"TableName": "bench", "Key": {"pk": {"S": "p00001"}, "sk": {"N": "1"}}})

    print("GetItem      median %.2f ms  p99 %.2f ms (baseline: one request)" % timed(get_item, a.pages))
    print("Query page   median %.2f ms  p99 %.2f ms (Limit 25, %d-item partitions)" % (*timed(query_page, a.pages), a.per_partition))
    state["start"] = None
    print("Scan page    median %.2f ms  p99 %.2f ms (Limit 100 of %d items)" % (*timed(scan_page, a.pages), items))

    def segment_page():
        # Pages of one segment of 16 (a parallel scan's worker), through to its end and again.
        body = {"TableName": "bench", "Limit": 100, "Segment": 5, "TotalSegments": 16}
        if state["start"]:
            body["ExclusiveStartKey"] = state["start"]
        state["start"] = call("Scan", body).get("LastEvaluatedKey")

    state["start"] = None
    print("Segment page median %.2f ms  p99 %.2f ms (Limit 100, segment 5 of 16)" % timed(segment_page, a.pages))

    def index_page(index, key, value, select):
        body = {"TableName": "bench", "IndexName": index, "KeyConditionExpression": "%s = :v" % key, "Limit": 100,
                "ExpressionAttributeValues": {":v": {"S": value()}}, "Select": select}
        if state["start"]:
            body["ExclusiveStartKey"] = state["start"]
        r = call("Query", body)
        assert len(r["Items"]) == min(100, r["ScannedCount"]) and r["Count"] > 0, r
        state["start"] = r.get("LastEvaluatedKey")
        if not state["start"]:
            state["p"] += 1

    if a.indexes:
        def g():
            return "g%d" % (state["p"] % 10)

        def p():
            return "p%05d" % (state["p"] % a.partitions)

        for label, args in [("GSI page, ALL projected: entries     ", ("by-g", "g", g, "ALL_PROJECTED_ATTRIBUTES")),
                            ("LSI page, KEYS_ONLY: entries          ", ("by-t", "pk", p, "ALL_PROJECTED_ATTRIBUTES")),
                            ("LSI page, ALL_ATTRIBUTES: table items ", ("by-t", "pk", p, "ALL_ATTRIBUTES"))]:
            state["start"], state["p"] = None, 0
            print("%s median %.2f ms  p99 %.2f ms (Limit 100)" % (label, *timed(lambda: index_page(*args), a.pages)))
finally:
    node.kill()
    node.wait()
    shutil.rmtree(root, ignore_errors=True)
