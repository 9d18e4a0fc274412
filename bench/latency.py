"""Sequential tools/call latency over streamable HTTP (one session, keep-alive).

usage: latency.py HOST PORT PATH API_KEY N [TOOL]
Prints {"p50_ms", "p99_ms", "mean_ms", "n"} as JSON (50 warm-up calls are not counted).
Used for the closing-note numbers; the load generator of issue 8 replaces it.
"""
import http.client, json, sys, time, statistics
host, port, path, key, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
tool = sys.argv[6] if len(sys.argv) > 6 else "echo"
c = http.client.HTTPConnection(host, port)
H = {"content-type": "application/json", "accept": "application/json, text/event-stream", "x-fentaris-api-key": key}
def post(body, extra={}):
    c.request("POST", path, json.dumps(body), {**H, **extra})
    r = c.getresponse(); data = r.read()
    return r, data
r, _ = post({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"lat","version":"1"}}})
sid = r.getheader("mcp-session-id")
S = {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"} if sid else {}
post({"jsonrpc":"2.0","method":"notifications/initialized"}, S)
lat = []
for i in range(n + 50):
    t = time.perf_counter()
    r, data = post({"jsonrpc":"2.0","id":i+2,"method":"tools/call","params":{"name":tool,"arguments":{"message":"hi"}}}, S)
    dt = time.perf_counter() - t
    assert r.status == 200 and b"hi" in data, (r.status, data[:200])
    if i >= 50: lat.append(dt * 1000)
lat.sort()
print(json.dumps({"p50_ms": round(lat[len(lat)//2], 3), "p99_ms": round(lat[int(len(lat)*0.99)], 3), "mean_ms": round(statistics.mean(lat), 3), "n": n}))
