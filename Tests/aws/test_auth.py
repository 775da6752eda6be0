"""API auth on: boto3 signs with SigV4 using an access key id and secret from the tokens file.

Its own node, started with `--api-tokens` (the shared two-node cluster runs without tokens).
"""
import datetime
import http.client
import os
import shutil
import signal
import tempfile
import unittest
from unittest import mock

import botocore.auth

import tandem

TOKENS = """# secret (the token)          role   access key id
reader-secret-0123456789abcdef read   AKIDREADER
writer-secret-0123456789abcdef write  AKIDWRITER
admin-secret-0123456789abcdefg admin  AKIDADMIN
bearer-only-0123456789abcdefgh write
"""


class AuthTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = os.environ.get("TANDEM_BIN")
        if os.environ.get("TANDEM_ENDPOINTS") or not binary:
            raise unittest.SkipTest("needs TANDEM_BIN: this module starts its own node with --api-tokens")
        cls.root = tempfile.mkdtemp(prefix="tandem-aws-auth-")
        with open(cls.root + "/tokens", "w") as f:
            f.write(TOKENS)
        base = tandem._free_base(2)
        cls.endpoint = "127.0.0.1:%d" % (base + 1)
        cls.proc = tandem.start_node(binary, cls.root, 0, "127.0.0.1:%d" % base, cls.endpoint,
                                     ["--api-tokens", cls.root + "/tokens"])
        # /v1/health is open even with tokens on.
        if not tandem.wait_for(lambda: tandem._get(cls.endpoint, "/v1/health")["status"] == "ok", 20):
            cls.tearDownClass()
            raise RuntimeError("the node with tokens did not start")
        cls.admin = cls.client("dynamodb", "AKIDADMIN", "admin-secret-0123456789abcdefg")
        cls.writer = cls.client("dynamodb", "AKIDWRITER", "writer-secret-0123456789abcdef")
        cls.reader = cls.client("dynamodb", "AKIDREADER", "reader-secret-0123456789abcdef")
        cls.table = tandem.unique("auth")
        cls.admin.create_table(TableName=cls.table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                               BillingMode="PAY_PER_REQUEST")

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGKILL)
            cls.proc.wait()
        if not os.environ.get("TANDEM_KEEP"):
            shutil.rmtree(cls.root, ignore_errors=True)

    @classmethod
    def client(cls, service, key_id, secret):
        return tandem.client(service, endpoint=cls.endpoint, key_id=key_id, secret=secret)

    def test_right_keys_work_by_role(self):
        # The writer writes, the reader reads; neither reader nor writer may create tables.
        self.writer.put_item(TableName=self.table, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        self.writer.update_item(TableName=self.table, Key={"pk": {"S": "a"}}, UpdateExpression="ADD n :k",
                                ExpressionAttributeValues={":k": {"N": "2"}})
        self.assertEqual(self.reader.get_item(TableName=self.table, Key={"pk": {"S": "a"}})["Item"]["n"], {"N": "3"})
        self.assertEqual(self.reader.scan(TableName=self.table)["Count"], 1)
        for c in (self.reader, self.writer):
            self.assertEqual(tandem.error_code(lambda: c.create_table(
                TableName=tandem.unique("nope"), KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])), "AccessDeniedException")

    def test_read_role_cannot_write(self):
        # A read-role key signs correctly and is refused PutItem with AccessDeniedException (HTTP 400).
        try:
            self.reader.put_item(TableName=self.table, Item={"pk": {"S": "r"}})
            self.fail("the reader wrote")
        except self.reader.exceptions.ClientError as e:
            self.assertEqual(e.response["Error"]["Code"], "AccessDeniedException")
            self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertNotIn("Item", self.reader.get_item(TableName=self.table, Key={"pk": {"S": "r"}}))

    def test_wrong_secret_and_unknown_key(self):
        # A known id with the wrong secret: InvalidSignatureException; an id nobody knows:
        # UnrecognizedClientException; no credentials at all: MissingAuthenticationTokenException.
        wrong = self.client("dynamodb", "AKIDWRITER", "reader-secret-0123456789abcdef")
        self.assertEqual(tandem.error_code(lambda: wrong.list_tables()), "InvalidSignatureException")
        stranger = self.client("dynamodb", "AKIDNOBODY", "writer-secret-0123456789abcdef")
        self.assertEqual(tandem.error_code(lambda: stranger.list_tables()), "UnrecognizedClientException")
        host, port = self.endpoint.split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request("POST", "/", body="{}", headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                                                  "Content-Type": "application/x-amz-json-1.0"})
        r = c.getresponse()
        self.assertEqual((r.status, r.read().decode().count("MissingAuthenticationTokenException")), (400, 1))
        c.close()

    def test_stale_signature_refused(self):
        # A request signed 20 minutes ago (beyond AWS's 15-minute window) is refused.
        past = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=past):
            self.assertEqual(tandem.error_code(lambda: self.reader.list_tables()), "InvalidSignatureException")
        self.assertIn(self.table, self.reader.list_tables()["TableNames"])

    def test_kinesis_roles(self):
        # Kinesis signs with service "kinesis": the admin creates a stream, the reader may not put to it.
        admin = self.client("kinesis", "AKIDADMIN", "admin-secret-0123456789abcdefg")
        reader = self.client("kinesis", "AKIDREADER", "reader-secret-0123456789abcdef")
        name = tandem.unique("authstream")
        admin.create_stream(StreamName=name, ShardCount=1)
        self.assertIn(name, reader.list_streams()["StreamNames"])
        self.assertEqual(tandem.error_code(lambda: reader.put_record(StreamName=name, Data=b"x", PartitionKey="k")),
                         "AccessDeniedException")

    def test_bearer_token_still_works(self):
        # curl-style clients keep using `Authorization: Bearer TOKEN` on the same endpoint.
        host, port = self.endpoint.split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request("POST", "/", body="{}", headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                                                  "Content-Type": "application/x-amz-json-1.0",
                                                  "Authorization": "Bearer bearer-only-0123456789abcdefgh"})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn(self.table, r.read().decode())
        c.close()


if __name__ == "__main__":
    unittest.main()
