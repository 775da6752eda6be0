"""Malformed requests get DynamoDB's error codes and shapes, and the node keeps serving."""
import http.client
import json

import tandem


class ErrorTests(tandem.DynamoTest):
    sort_key = False

    def raw(self, op, body, node=0):
        """One POST as an SDK sends it, bypassing boto3's own validation."""
        host, port = tandem.cluster().endpoints[node].split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        c.request("POST", "/", body=body, headers={"X-Amz-Target": "DynamoDB_20120810." + op,
                                                   "Content-Type": "application/x-amz-json-1.0"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, r.getheader("Content-Type"), json.loads(data)

    def assert_error(self, op, body, code):
        status, ctype, j = self.raw(op, body)
        self.assertEqual(status, 400, (op, body[:80], j))
        self.assertEqual(ctype, "application/x-amz-json-1.0")
        self.assertEqual(j["__type"].split("#")[-1], code, (op, body[:80], j))
        self.assertIn("message", j)

    def test_malformed_requests(self):
        # Bad JSON, wrong types, unknown operation, bad key, undefined placeholders, oversized item,
        # overlapping paths in one update (refused, as DynamoDB does).
        t = self.table
        self.assert_error("GetItem", "{not json", "SerializationException")
        self.assert_error("GetItem", json.dumps({"TableName": 5}), "SerializationException")
        self.assert_error("Frobnicate", "{}", "UnknownOperationException")
        self.assert_error("GetItem", json.dumps({"TableName": t, "Key": {"pk": {"N": "1"}}}), "ValidationException")
        self.assert_error("GetItem", json.dumps({"TableName": "missing-table", "Key": {"pk": {"S": "1"}}}), "ResourceNotFoundException")
        self.assert_error("UpdateItem", json.dumps({"TableName": t, "Key": {"pk": {"S": "1"}}, "UpdateExpression": "SET a = :nope"}),
                          "ValidationException")
        self.assert_error("UpdateItem", json.dumps({"TableName": t, "Key": {"pk": {"S": "1"}}, "UpdateExpression": "SET = oops"}),
                          "ValidationException")
        self.assert_error("PutItem", json.dumps({"TableName": t, "Item": {"pk": {"S": "big"}, "b": {"S": "x" * 410_000}}}),
                          "ValidationException")
        self.assert_error("PutItem", json.dumps({"TableName": t, "Item": {"pk": {"S": "x"}, "v": {"S": 5}}}), "SerializationException")
        self.assert_error("UpdateItem", json.dumps({"TableName": t, "Key": {"pk": {"S": "1"}}, "UpdateExpression": "SET a = :v, a = :v",
                                                    "ExpressionAttributeValues": {":v": {"S": "x"}}}), "ValidationException")
        # Still serving, through boto3 too.
        self.ddb.put_item(TableName=t, Item={"pk": {"S": "alive"}})
        self.assertIn("Item", self.ddb.get_item(TableName=t, Key={"pk": {"S": "alive"}}))
        self.assertTrue(tandem.cluster().alive())

    def test_boto3_sees_modeled_exceptions(self):
        # boto3 maps the __type codes onto its modeled exception classes.
        with self.assertRaises(self.ddb.exceptions.ResourceNotFoundException):
            self.ddb.get_item(TableName="missing-table", Key={"pk": {"S": "x"}})
        with self.assertRaises(self.ddb.exceptions.ConditionalCheckFailedException):
            self.ddb.delete_item(TableName=self.table, Key={"pk": {"S": "x"}}, ConditionExpression="attribute_exists(pk)")


class ErrorCountTests(tandem.DynamoTest):
    """Bad input is answered with the AWS error shape and counted (GET /metrics)."""
    sort_key = False

    def count(self, service, kind):
        import re
        import urllib.request
        with urllib.request.urlopen("http://%s/metrics" % tandem.cluster().endpoints[0], timeout=2) as r:
            text = r.read().decode()
        m = re.search(r'^tandem_aws_errors_total\{service="%s",type="%s"\} (\d+)$' % (service, kind), text, re.M)
        return int(m.group(1)) if m else 0

    def test_errors_are_counted_by_service_and_type(self):
        before = self.count("dynamodb", "ValidationException")
        for _ in range(3):
            tandem.error_code(lambda: self.ddb.get_item(TableName=self.table, Key={"pk": {"N": "1"}}))
        self.assertEqual(self.count("dynamodb", "ValidationException"), before + 3)
        kin = tandem.client("kinesis", 0)
        before = self.count("kinesis", "ResourceNotFoundException")
        tandem.error_code(lambda: kin.describe_stream_summary(StreamName="no-such-stream"))
        self.assertEqual(self.count("kinesis", "ResourceNotFoundException"), before + 1)
