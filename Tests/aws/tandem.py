"""Shared fixture for the boto3 suite: two real `tandem node` processes, started once per run.

`scripts/test-aws` builds the binary and runs `python3 -m unittest discover -s Tests/aws`.
Environment:
  TANDEM_BIN        the tandem binary (required unless TANDEM_ENDPOINTS is set)
  TANDEM_ENDPOINTS  "host:port,host:port": use these running nodes instead of starting any
                    (the first is node A, the second, if any, node B)
"""
import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_cluster = None


def _free_base(count):
    """A run of `count` consecutive ports free for TCP and UDP on loopback."""
    for _ in range(200):
        base = random.randint(20000, 59000)
        ok = True
        for port in range(base, base + count):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return base
    raise RuntimeError("no free ports")


def _get(endpoint, path, timeout=1.0):
    with urllib.request.urlopen("http://%s%s" % (endpoint, path), timeout=timeout) as r:
        return json.loads(r.read())


def wait_for(predicate, timeout=10.0, interval=0.05):
    """Polls `predicate` until it is truthy; returns its last value."""
    deadline = time.time() + timeout
    while True:
        try:
            v = predicate()
        except Exception:  # a node not answering yet counts as "not yet"
            v = None
        if v or time.time() > deadline:
            return v
        time.sleep(interval)


def start_node(binary, root, i, bind, api, extra):
    """One `tandem node` (n{i+1}, region-{i}) with its data dir and log under `root`."""
    args = [binary, "node", "--name", "n%d" % (i + 1), "--region", "region-%d" % i,
            "--bind", bind, "--api", api, "--data-dir", "%s/n%d" % (root, i + 1),
            "--profile", "fast", "--log-level", "warning"] + extra
    with open("%s/n%d.log" % (root, i + 1), "w") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


class Cluster:
    """Two nodes (or the ones named in TANDEM_ENDPOINTS)."""

    def __init__(self):
        self.procs = []
        self.root = None
        given = os.environ.get("TANDEM_ENDPOINTS")
        if given:
            self.endpoints = given.split(",")
            return
        binary = os.environ.get("TANDEM_BIN")
        if not binary or not os.access(binary, os.X_OK):
            raise unittest.SkipTest("set TANDEM_BIN to the tandem binary (scripts/test-aws does)")
        self.root = tempfile.mkdtemp(prefix="tandem-aws-")
        base = _free_base(4)
        binds = ["127.0.0.1:%d" % (base + i) for i in range(2)]
        self.endpoints = ["127.0.0.1:%d" % (base + 2 + i) for i in range(2)]
        for i in range(2):
            self.procs.append(start_node(binary, self.root, i, binds[i], self.endpoints[i], ["--seed", binds[0]] if i else []))
        atexit.register(self.stop)
        formed = wait_for(lambda: all(
            len([m for m in _get(e, "/v1/members")["members"] if m["status"] == "alive"]) == 2 for e in self.endpoints), 20)
        if not formed:
            self.stop()
            raise RuntimeError("the two nodes did not form a cluster")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        self.procs = []
        if self.root and not os.environ.get("TANDEM_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def alive(self):
        """True if every node we started is still running (malformed requests must not kill it)."""
        return all(p.poll() is None for p in self.procs)


def cluster():
    global _cluster
    if _cluster is None:
        _cluster = Cluster()
    return _cluster


def client(service, node=0, endpoint=None, key_id="x", secret="x", validate=True):
    """A boto3 client for node `node` (0 = A, 1 = B), or for `endpoint`, as application code would make one
    (`validate=False`: without boto3's own parameter checks, to send what only the server refuses)."""
    if endpoint is None:
        c = cluster()
        endpoint = c.endpoints[min(node, len(c.endpoints) - 1)]
    return boto3.client(service, endpoint_url="http://" + endpoint, region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10,
                                      parameter_validation=validate))


def unique(prefix):
    """A fresh table or stream name, so tests never see each other's data."""
    return "%s-%d-%d" % (prefix, os.getpid(), int(time.time() * 1e6) % 10**10)


def error_code(call):
    """The error code `call` raises, or None if it succeeds."""
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


class DynamoTest(unittest.TestCase):
    """Base class: `self.ddb` (node A), `self.ddb_b` (node B) and a fresh table per test."""
    sort_key = True
    sort_key_type = "N"

    def setUp(self):
        self.ddb = client("dynamodb", 0)
        self.ddb_b = client("dynamodb", 1)
        self.table = unique(type(self).__name__.lower())
        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        defs = [{"AttributeName": "pk", "AttributeType": "S"}]
        if self.sort_key:
            keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
            defs.append({"AttributeName": "sk", "AttributeType": self.sort_key_type})
        self.ddb.create_table(TableName=self.table, KeySchema=keys, AttributeDefinitions=defs, BillingMode="PAY_PER_REQUEST")
        self.ddb.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 10})
        # The catalog replicates asynchronously; tests that use node B need the table there.
        self.assertTrue(wait_for(lambda: self.ddb_b.describe_table(TableName=self.table)), "table never reached node B")

    def tearDown(self):
        error_code(lambda: self.ddb.delete_table(TableName=self.table))

    def key(self, pk, sk=None):
        k = {"pk": {"S": pk}}
        if sk is not None:
            k["sk"] = {"N": str(sk)} if self.sort_key_type == "N" else {"S": sk}
        return k

    def on_b(self, call, want, timeout=10.0):
        """Waits until `call()` on node B returns `want` (replication is asynchronous)."""
        got = wait_for(lambda: call() == want and True, timeout)
        self.assertTrue(got, "node B never returned %r; last: %r" % (want, call()))
