"""A test external authorizer for Fentaris: the path picks the behaviour.

/allow, /deny (reason "not approved"), /slow (answers allow after 2 s), /500, /garbage.
Every request body is appended as a JSON line to the file named by argv[2].
usage: authorizer.py PORT RECORD_FILE
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, record = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock, open(record, "a") as f:
            f.write(json.dumps({"path": self.path, "body": json.loads(body),
                                "auth": self.headers.get("authorization")}) + "\n")
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/500":
            self.send_response(500)
            self.end_headers()
            return
        out = {"/allow": {"decision": "allow"}, "/slow": {"decision": "allow"},
               "/deny": {"decision": "deny", "reason": "not approved"}}.get(self.path)
        data = b"<html>nope" if out is None else json.dumps(out).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
