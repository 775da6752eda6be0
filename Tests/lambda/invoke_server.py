"""A small stand-in for the Lambda Invoke API (and the Runtime Interface Emulator), serving the
handler in handler.py: POST /2015-03-31/functions/{name}/invocations with the event as the body.

- The answer is the handler's return value as JSON, status 200.
- A handler that raises answers 200 with X-Amz-Function-Error: Unhandled and Lambda's error body
  ({"errorMessage", "errorType", "requestId", "stackTrace"}), as Lambda does.
- An unknown function is 404 ResourceNotFoundException; a body that is not JSON is 400
  InvalidRequestContentException.

Usage: python invoke_server.py --function NAME --port-file PATH [--parent-pid PID]
It listens on 127.0.0.1 on a free port and writes the port to PATH once it accepts connections.
GET /seen answers what the handler has seen so far (for tests); GET /invocations the invocations in
the order they were answered, each {"sequences": [the records' sequence numbers, as sent],
"attempt": the X-Tandem-Attempt header or null, "outcome": "success" | "partial" | "error",
"failed": [the itemIdentifiers answered], "errorType": the exception's type or null, "at": when it
was answered (seconds since the epoch)}, so a test
can replay what the function was given and what it said against Lambda's documented rules."""

import argparse
import json
import os
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import handler  # noqa: E402

invocations = []
invocations_lock = threading.Lock()


class Context:
    """The parts of Lambda's context object that handlers and powertools read."""

    def __init__(self, name):
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
        self.memory_limit_in_mb = 128
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self):
        return 300000


class Invoke(BaseHTTPRequestHandler):
    function = "handler"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/seen":
            self.answer(200, [list(s) for s in handler.seen])
        elif self.path == "/invocations":
            with invocations_lock:
                self.answer(200, list(invocations))
        else:
            self.answer(404, {"message": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 4 or parts[0] != "2015-03-31" or parts[1] != "functions" or parts[3] != "invocations":
            self.answer(404, {"message": f"no route for {self.path}"})
            return
        if parts[2] != self.function:
            self.answer(
                404,
                {"Type": "User", "message": f"Function not found: {parts[2]}"},
                [("x-amzn-ErrorType", "ResourceNotFoundException")],
            )
            return
        try:
            event = json.loads(raw) if raw else {}
        except ValueError as e:
            self.answer(400, {"Type": "User", "message": f"Could not parse request body into json: {e}"},
                        [("x-amzn-ErrorType", "InvalidRequestContentException")])
            return
        context = Context(self.function)
        entry = {
            "sequences": [r.get("kinesis", {}).get("sequenceNumber") for r in event.get("Records", [])],
            "attempt": self.headers.get("X-Tandem-Attempt"),
        }
        try:
            result = handler.lambda_handler(event, context)
        except Exception as e:  # the handler raised: Lambda's Unhandled function error
            entry.update(outcome="error", failed=[], errorType=type(e).__name__, at=time.time())
            with invocations_lock:
                invocations.append(entry)
            self.answer(
                200,
                {
                    "errorMessage": str(e),
                    "errorType": type(e).__name__,
                    "requestId": context.aws_request_id,
                    "stackTrace": traceback.format_tb(e.__traceback__),
                },
                [("X-Amz-Function-Error", "Unhandled"), ("X-Amz-Executed-Version", "$LATEST")],
            )
            return
        failed = [f.get("itemIdentifier") for f in (result or {}).get("batchItemFailures") or []]
        entry.update(outcome="partial" if failed else "success", failed=failed, errorType=None, at=time.time())
        with invocations_lock:
            invocations.append(entry)
        self.answer(200, result, [("X-Amz-Executed-Version", "$LATEST")])


def watch_parent(pid):
    while os.getppid() == pid:
        time.sleep(0.5)
    os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--function", default="handler")
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--parent-pid", type=int, help="exit when this process is gone (the test runner)")
    args = parser.parse_args()
    if args.parent_pid:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), daemon=True).start()
    Invoke.function = args.function
    server = ThreadingHTTPServer(("127.0.0.1", 0), Invoke)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
