"""Drive Fentaris (or any MCP server) with the official Python SDK, for the end-to-end tests.

usage: mcp_client.py URL API_KEY MODE < steps.json      MODE: auto | legacy | stdio
       (stdio: URL is a JSON list [command, args...] and API_KEY is ignored)

stdin is a JSON list of steps; stdout is a JSON list of results, one per step:
{"ok": true, "value": ...} or {"ok": false, "code": N, "message": "..."}.
Steps: {"op": "list_tools" | "list_prompts" | "list_resources" | "list_templates"}
       {"op": "call_tool", "name": N, "args": {...}, "progress": true?}
       {"op": "get_prompt", "name": N, "args": {...}}
       {"op": "read_resource", "uri": U}
       {"op": "complete_prompt", "name": N, "arg": A, "value": V}
       {"op": "protocol"}
Extra request headers (to test that none reach an upstream): EXTRA_HEADERS='{"name": "value"}'.
CALLBACKS=1: the client offers sampling (answering "sampled by the client"), elicitation
(declining) and roots (none).
"""
import json
import os
import sys

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CreateMessageResult, ElicitResult, ListRootsResult, PromptReference, TextContent


def dump(v):
    if hasattr(v, "model_dump"):
        return v.model_dump(mode="json", by_alias=True, exclude_none=True)
    return v


async def run_steps(client, steps):
    out = []
    for s in steps:
        op = s["op"]
        try:
            if op == "protocol":
                v = getattr(client.session, "protocol_version", None)
            elif op == "list_tools":
                v = dump(await client.list_tools())
            elif op == "list_prompts":
                v = dump(await client.list_prompts())
            elif op == "list_resources":
                v = dump(await client.list_resources())
            elif op == "list_templates":
                v = dump(await client.list_resource_templates())
            elif op == "call_tool":
                progress = []

                async def on_progress(p, total, message):
                    progress.append(p)

                r = await client.call_tool(
                    s["name"], s.get("args", {}), progress_callback=on_progress if s.get("progress") else None
                )
                v = dump(r)
                if s.get("progress"):
                    v = {"result": v, "progress": progress}
            elif op == "get_prompt":
                v = dump(await client.get_prompt(s["name"], s.get("args")))
            elif op == "read_resource":
                v = dump(await client.read_resource(s["uri"]))
            elif op == "complete_prompt":
                r = await client.complete(PromptReference(type="ref/prompt", name=s["name"]), {"name": s["arg"], "value": s["value"]})
                v = dump(r)
            else:
                raise ValueError(f"unknown op {op}")
            out.append({"ok": True, "value": v})
        except Exception as e:  # noqa: BLE001 - every failure is a result to assert on
            code = getattr(e, "code", None)
            out.append({"ok": False, "code": code, "message": str(getattr(e, "message", e)), "type": type(e).__name__})
    return out


async def on_sampling(context, params):
    return CreateMessageResult(role="assistant", content=TextContent(type="text", text="sampled by the client"), model="test-model")


async def on_elicitation(context, params):
    return ElicitResult(action="decline")


async def on_roots(context):
    return ListRootsResult(roots=[])


def callbacks():
    """With CALLBACKS=1 the client offers sampling, elicitation and roots."""
    if os.environ.get("CALLBACKS") != "1":
        return {}
    return {"sampling_callback": on_sampling, "elicitation_callback": on_elicitation, "list_roots_callback": on_roots}


async def main():
    url, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    steps = json.load(sys.stdin)
    if mode == "stdio":
        argv = json.loads(url)
        params = StdioServerParameters(command=argv[0], args=argv[1:])
        async with Client(params, mode="legacy", **callbacks()) as client:
            results = await run_steps(client, steps)
    else:
        headers = {"x-fentaris-api-key": key}
        headers.update(json.loads(os.environ.get("EXTRA_HEADERS", "{}")))
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, mode=mode, **callbacks()) as client:
                results = await run_steps(client, steps)
    json.dump(results, sys.stdout)


anyio.run(main)
