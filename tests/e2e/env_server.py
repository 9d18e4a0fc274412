"""A minimal stdio MCP server for Fentaris' tests: it reports its own environment and
records every message it receives (to the file named by RECORD_FILE, if set).

Tools: `env` (returns the environment as JSON text), `sleep` (waits `seconds`, honouring
notifications/cancelled), `pid` (its process id), `withdraw` (asks the client for sampling,
then cancels that request), `change` (sends tools/list_changed), `read` (a file's text, or
`error: <reason>`), `echo` (its description is ECHO_DESCRIPTION when set, for the
tool-pinning tests).
"""
import json
import os
import sys
import threading
import time

record = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RECORD_FILE")
cancelled = set()
lock = threading.Lock()


def log(msg):
    if record:
        with lock, open(record, "a") as f:
            f.write(json.dumps(msg) + "\n")


def send(msg):
    with lock:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()


TOOLS = [
    {"name": "env", "description": "Report the environment", "inputSchema": {"type": "object"}},
    {"name": "sleep", "description": "Wait", "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
    {"name": "pid", "description": "Report the process id", "inputSchema": {"type": "object"}},
    {"name": "withdraw", "description": "Ask for sampling, then withdraw", "inputSchema": {"type": "object"}},
    {"name": "change", "description": "Announce that the tool list changed", "inputSchema": {"type": "object"}},
    {"name": "read", "description": "Read a file (sandbox tests)", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}},
    {"name": "echo", "description": os.environ.get("ECHO_DESCRIPTION", "Echo"), "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
     "x-unknown-field": {"kept": True}},
]


def handle(msg):
    mid, method, params = msg.get("id"), msg.get("method"), msg.get("params") or {}
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": True}},
                                                       "serverInfo": {"name": "env-server", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "env":
            text = json.dumps(dict(os.environ))
        elif name == "sleep":
            end = time.time() + float(args.get("seconds", 1))
            while time.time() < end and mid not in cancelled:
                time.sleep(0.02)
            if mid in cancelled:
                return
            text = "slept"
        elif name == "withdraw":
            # Ask the client for sampling, then withdraw the request.
            rid = f"w-{mid}"
            send({"jsonrpc": "2.0", "id": rid, "method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 1}})
            time.sleep(0.3)
            send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": rid, "reason": "changed my mind"}})
            text = "withdrawn"
        elif name == "change":
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            text = "changed"
        elif name == "pid":
            text = str(os.getpid())
        elif name == "read":
            try:
                with open(args.get("path", ""), "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError as e:
                text = f"error: {e.strerror}"

        elif name == "echo":
            text = str(args.get("message", ""))
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})
            return
        send({"jsonrpc": "2.0", "id": mid, "result": {"content": [{"type": "text", "text": text}]}})
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": f"Method not found: {method}"}})


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    msg = json.loads(line)
    log(msg)
    if msg.get("method") == "notifications/cancelled":
        cancelled.add((msg.get("params") or {}).get("requestId"))
        continue
    if "id" in msg and "method" in msg:
        threading.Thread(target=handle, args=(msg,), daemon=True).start()
