"""A test function for Tandem processors: serves Lambda's Invoke API path and any other POST.

Each delivered record is appended to LOG as one JSON line {eventID, sequence, key, data,
attempt, at} (for a DynamoDB Streams event, data is the whole record as JSON). A record whose data (JSON) has "fail": true is reported failed through a partial
batch response; "raise": true makes the handler raise (200 with X-Amz-Function-Error, as Lambda
answers). SLEEP_MS delays every answer (a slow handler, so a test can kill a node mid-batch).
Usage: function.py PORT LOG [SLEEP_MS]
"""
import base64, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, log_path = int(sys.argv[1]), sys.argv[2]
sleep_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        failures, raised, lines = [], False, []
        for r in body.get("Records", []):
            if "dynamodb" in r:
                # A DynamoDB Streams event (a table source): the record's data is its `dynamodb`
                # part; a NewImage with "fail": {"BOOL": true} fails the record, as above.
                d = r["dynamodb"]
                image = d.get("NewImage", {})
                if image.get("fail") == {"BOOL": True} and not failures:
                    failures.append({"itemIdentifier": d["SequenceNumber"]})
                lines.append(json.dumps({"eventID": r["eventID"], "sequence": d["SequenceNumber"], "key": json.dumps(d["Keys"]),
                                         "data": json.dumps(r), "attempt": self.headers.get("X-Tandem-Attempt"),
                                         "at": time.time()}))
                continue
            k = r["kinesis"]
            data = base64.b64decode(k["data"]).decode()
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("raise"):
                raised = True
            if isinstance(parsed, dict) and parsed.get("fail") and not failures:
                failures.append({"itemIdentifier": k["sequenceNumber"]})
            lines.append(json.dumps({"eventID": r["eventID"], "sequence": k["sequenceNumber"], "key": k["partitionKey"],
                                     "data": data, "attempt": self.headers.get("X-Tandem-Attempt"), "at": time.time()}))
        with lock, open(log_path, "a") as f:
            for line in lines:
                f.write(line + "\n")
        if raised:
            out = json.dumps({"errorMessage": "raised on purpose", "errorType": "Exception"}).encode()
            self.send_response(200)
            self.send_header("X-Amz-Function-Error", "Unhandled")
        else:
            out = json.dumps({"batchItemFailures": failures}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def watch_parent():
    # Exit with the test run that started us (it sets TANDEM_PARENT_PID, as for nodes).
    import os
    parent = int(os.environ.get("TANDEM_PARENT_PID", "0"))
    while parent:
        time.sleep(1)
        try:
            os.kill(parent, 0)
        except OSError:
            os._exit(0)


threading.Thread(target=watch_parent, daemon=True).start()
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
