"""A stdio MCP upstream with many items in small pages, for the aggregated-list tests
(tests/e2e_lists.rs).

usage: lists_upstream.py PREFIX COUNT PAGE_SIZE [DELAY_MS]

tools/list, prompts/list, resources/list and resources/templates/list each hold COUNT items
(`PREFIX-t<i>`, `PREFIX-p<i>`, `PREFIX://r/<i>`, `PREFIX://tpl/<i>/{x}`), PAGE_SIZE per page,
with `nextCursor` "page-<n>" while more follow. tools/call answers "PREFIX called NAME";
prompts/get and resources/read answer likewise. With DELAY_MS, each list page is answered
after that many milliseconds.
"""
import json
import sys
import time

prefix, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
delay = int(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0

LISTS = {
    "tools/list": ("tools", lambda i: {"name": f"{prefix}-t{i}", "inputSchema": {"type": "object"}}),
    "prompts/list": ("prompts", lambda i: {"name": f"{prefix}-p{i}"}),
    "resources/list": ("resources", lambda i: {"uri": f"{prefix}://r/{i}", "name": f"r{i}"}),
    "resources/templates/list": ("resourceTemplates", lambda i: {"uriTemplate": f"{prefix}://tpl/{i}/{{x}}", "name": f"tpl{i}"}),
}


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def text(t):
    return {"content": [{"type": "text", "text": t}]}


for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    mid, method, params = msg.get("id"), msg.get("method"), msg.get("params") or {}
    if mid is None:
        continue
    if method == "initialize":
        result = {"protocolVersion": "2025-11-25",
                  "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
                  "serverInfo": {"name": f"lists-{prefix}", "version": "1"}}
    elif method in LISTS:
        key, item = LISTS[method]
        time.sleep(delay)
        cursor = params.get("cursor")
        try:
            page = int(cursor.split("-")[1]) if cursor else 0
        except (AttributeError, IndexError, ValueError):
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "bad cursor"}})
            continue
        start = page * size
        result = {key: [item(i) for i in range(start, min(start + size, count))]}
        if start + size < count:
            result["nextCursor"] = f"page-{page + 1}"
    elif method == "tools/call":
        result = text(f"{prefix} called {params.get('name')}")
    elif method == "prompts/get":
        result = {"messages": [{"role": "user", "content": {"type": "text", "text": f"{prefix} prompt {params.get('name')}"}}]}
    elif method == "resources/read":
        uri = params.get("uri")
        result = {"contents": [{"uri": uri, "mimeType": "text/plain", "text": f"{prefix} read {uri}"}]}
    elif method == "ping":
        result = {}
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": f"no method {method}"}})
        continue
    send({"jsonrpc": "2.0", "id": mid, "result": result})
