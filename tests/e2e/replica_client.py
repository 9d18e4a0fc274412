"""Drive replicas behind a load balancer with the official Python SDK (tests/e2e_replicas.rs).

usage: replica_client.py URL API_KEY TOOL CALLS KILL_AT KILL_PID KILL_PORT

Runs two clients at once through URL: a legacy session (2025-11-25, `Mcp-Session-Id`) and a
stateless one (2026-07-28). Each calls TOOL (an echo tool) CALLS times in a row and checks
every answer echoes its own message. When both have made KILL_AT calls they wait; the driver
sends SIGKILL to KILL_PID (a replica the test started and reaps; 0: none) and waits until
its port KILL_PORT refuses connections (a dying process's listening socket still takes
connections for a moment: a request sent then is in flight on it), then both go on, so no
call is in flight on the replica when it dies. A legacy call answered 404 ("Session
terminated") re-initializes and retries once, as the MCP transport spec says a client must.

stdout: {"legacy": R, "stateless": R}, R = {"protocol": P, "ok": N, "errors": [...],
"reinitialized": N}.
"""
import contextlib
import json
import os
import signal
import socket
import sys
import time

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def run(url, key, tool, calls, kill_at, mode, reached, resume, out):
    result = {"protocol": None, "ok": 0, "errors": [], "reinitialized": 0}
    out[mode] = result
    try:
        await calls_through(url, key, tool, calls, kill_at, mode, reached, resume, result)
    finally:
        # A client that failed early must not keep the other one waiting.
        reached.set()


async def calls_through(url, key, tool, calls, kill_at, mode, reached, resume, result):
    headers = {"x-fentaris-api-key": key}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
        async with contextlib.AsyncExitStack() as stack:

            async def connect():
                transport = streamable_http_client(url, http_client=http)
                return await stack.enter_async_context(Client(transport, mode=mode))

            client = await connect()
            result["protocol"] = getattr(client.session, "protocol_version", None)
            for i in range(calls):
                if i == kill_at:
                    reached.set()
                    await resume.wait()
                msg = f"{mode}-{i}"
                for attempt in range(2):
                    try:
                        r = await client.call_tool(tool, {"message": msg})
                        text = r.content[0].text if r.content else None
                        if r.is_error or text != msg:
                            result["errors"].append({"call": i, "answer": str(text)})
                        else:
                            result["ok"] += 1
                        break
                    except Exception as e:  # noqa: BLE001 - every failure is a result
                        terminated = "Session terminated" in str(getattr(e, "message", e))
                        if terminated and attempt == 0 and mode == "legacy":
                            result["reinitialized"] += 1
                            client = await connect()
                            continue
                        result["errors"].append({"call": i, "error": f"{type(e).__name__}: {e}"})
                        break


def wait_refused(port):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.01)
    raise RuntimeError(f"port {port} still takes connections after SIGKILL")


async def main():
    url, key, tool = sys.argv[1], sys.argv[2], sys.argv[3]
    calls, kill_at, kill_pid = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    kill_port = int(sys.argv[7])
    out = {}
    events = {m: (anyio.Event(), anyio.Event()) for m in ("legacy", "auto")}
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for mode, (reached, resume) in events.items():
                tg.start_soon(run, url, key, tool, calls, kill_at, mode, reached, resume, out)
            for reached, _ in events.values():
                await reached.wait()
            if kill_pid:
                os.kill(kill_pid, signal.SIGKILL)
                await anyio.to_thread.run_sync(wait_refused, kill_port)
            for _, resume in events.values():
                resume.set()
    json.dump({"legacy": out["legacy"], "stateless": out["auto"]}, sys.stdout)


anyio.run(main)
