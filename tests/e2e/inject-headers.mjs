// Test only: a reverse proxy that adds fixed request headers, because the conformance suite
// cannot send any (modelcontextprotocol/conformance#453). It keeps the client's Host header,
// so Fentaris' DNS-rebinding checks still see what the client sent.
// LISTEN=3107 UPSTREAM=http://127.0.0.1:8080 INJECT='x-fentaris-api-key: k' node inject-headers.mjs
import http from 'node:http';
const up = new URL(process.env.UPSTREAM);
const inject = Object.fromEntries((process.env.INJECT || '').split(';').filter(Boolean)
  .map(p => [p.slice(0, p.indexOf(':')).trim().toLowerCase(), p.slice(p.indexOf(':') + 1).trim()]));
http.createServer((req, res) => {
  const chunks = []; req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const headers = { ...req.headers, ...inject };
    if (body.length) headers['content-length'] = String(body.length);
    const u = http.request({ hostname: up.hostname, port: up.port, path: req.url, method: req.method, headers },
      r => { res.writeHead(r.statusCode, r.headers); r.pipe(res); });
    u.on('error', e => { if (!res.headersSent) res.writeHead(502); res.end(String(e)); });
    res.on('close', () => u.destroy());
    u.end(body);
  });
}).listen(Number(process.env.LISTEN || 3107), '127.0.0.1');
