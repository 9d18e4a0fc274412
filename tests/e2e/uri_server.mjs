// Test upstream for tests/adversary/uri.rs: resources served by the official TypeScript SDK's
// McpServer, which looks them up by `new URL(uri).toString()` (a WHATWG parser). Secret
// resources hold canary text that must never come back through Fentaris.
// Subscriptions and completions are answered by handlers that read URIs the same way, and the
// tool `seen` returns every URI this server was asked to subscribe to or complete, as sent.
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  SubscribeRequestSchema, UnsubscribeRequestSchema, CompleteRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const server = new McpServer(
  { name: 'uri-server', version: '1.0.0' },
  { capabilities: { resources: { subscribe: true, listChanged: true }, completions: {} } },
);

const text = (uri, t) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: t }] });
server.resource('secrets', 'file:///srv/secrets.env', uri => text(uri, 'SECRET-ENV-CANARY'));
server.resource('public-file', 'file:///srv/public.txt', uri => text(uri, 'PUBLIC-FILE'));
server.resource('secret-page', 'https://example.com/secret', uri => text(uri, 'SECRET-HTTPS-CANARY'));
server.resource('public-page', 'https://example.com/public', uri => text(uri, 'PUBLIC-PAGE'));
server.resource(
  'private',
  new ResourceTemplate('file:///srv/private/{name}', { list: undefined }),
  (uri, { name }) => text(uri, `PRIVATE-CANARY-${name}`),
);

const seen = [];
const norm = uri => { try { return new URL(uri).toString(); } catch { return `unparsable:${uri}`; } };
server.server.setRequestHandler(SubscribeRequestSchema, req => {
  seen.push(`subscribe ${req.params.uri}`);
  return {};
});
server.server.setRequestHandler(UnsubscribeRequestSchema, req => {
  seen.push(`unsubscribe ${req.params.uri}`);
  return {};
});
server.server.setRequestHandler(CompleteRequestSchema, req => {
  const ref = req.params.ref;
  const uri = ref.type === 'ref/resource' ? norm(ref.uri) : ref.name;
  seen.push(`complete ${ref.type === 'ref/resource' ? ref.uri : ref.name}`);
  // A server that completes inside whatever resource it resolves the reference to.
  const secret = {
    'file:///srv/secrets.env': 'SECRET-ENV-CANARY',
    'https://example.com/secret': 'SECRET-HTTPS-CANARY',
  }[uri] ?? (uri.startsWith('file:///srv/private/') ? 'PRIVATE-CANARY' : null);
  return { completion: { values: [secret ?? 'nothing-secret'], hasMore: false } };
});
server.tool('seen', 'URIs this server was asked to subscribe to or complete', async () => ({
  content: [{ type: 'text', text: JSON.stringify(seen) }],
}));

await server.connect(new StdioServerTransport());
