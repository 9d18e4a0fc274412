// Drive Fentaris with the official TypeScript SDK client, for the interop tests.
//
// usage: node ts_client.mjs URL API_KEY < steps.json
// stdin is a JSON list of steps, stdout a JSON list of results (the protocol of
// mcp_client.py): {"op": "list_tools"} | {"op": "call_tool", "name": N, "args": {...}} |
// {"op": "protocol"}; each result is {"ok": true, "value": ...} or
// {"ok": false, "code": N, "message": "..."}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, key] = process.argv.slice(2);
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const steps = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { 'x-fentaris-api-key': key } },
});
const client = new Client({ name: 'fentaris-interop', version: '1.0.0' });
await client.connect(transport);
const out = [];
for (const s of steps) {
  try {
    let v;
    if (s.op === 'protocol') v = transport.protocolVersion ?? null;
    else if (s.op === 'list_tools') v = await client.listTools();
    else if (s.op === 'call_tool') v = await client.callTool({ name: s.name, arguments: s.args ?? {} });
    else throw new Error(`unknown op ${s.op}`);
    out.push({ ok: true, value: v });
  } catch (e) {
    out.push({ ok: false, code: e.code ?? null, message: String(e.message ?? e) });
  }
}
await transport.terminateSession().catch(() => {});
await client.close();
process.stdout.write(JSON.stringify(out));
