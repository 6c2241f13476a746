// Demo upstream for portcullis: shows what the proxied app receives.
// Dependency-free. PORT env (default 3000), listens on 127.0.0.1 (HOST env to override).
//
//   node config/demo/upstream.mjs
//   curl -H 'Accept: application/json' http://127.0.0.1:3000/anything
//
// Every request gets an HTML page (or JSON when the Accept header prefers application/json) with the
// method, path, query and all request headers; the X-Forwarded-* identity headers are highlighted.

import * as http from 'node:http';

const PORT = Number.parseInt(process.env.PORT ?? '3000', 10);
const HOST = process.env.HOST ?? '127.0.0.1';

const IDENTITY = new Set([
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-preferred-username',
  'x-forwarded-name',
  'x-forwarded-roles',
  'x-forwarded-access-token',
  'x-portcullis-assertion',
]);

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function wantsJson(req) {
  const accept = String(req.headers.accept ?? '');
  if (!accept.includes('application/json')) return false;
  const html = accept.indexOf('text/html');
  return html === -1 || accept.indexOf('application/json') < html;
}

function headerList(req) {
  // rawHeaders keeps duplicates and the original spelling
  const out = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) out.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  return out;
}

function page(req, url, headers) {
  const identity = headers.filter(([k]) => IDENTITY.has(k.toLowerCase()));
  const rows = headers.map(([k, v]) => {
    const lk = k.toLowerCase();
    const cls = IDENTITY.has(lk) ? 'id' : lk.startsWith('x-forwarded-') || lk === 'forwarded' ? 'fwd' : '';
    const shown = lk === 'authorization' || lk === 'x-forwarded-access-token' || lk === 'cookie'
      ? `${v.slice(0, 24)}${v.length > 24 ? '…' : ''}` : v;
    return `<tr class="${cls}"><th>${esc(k)}</th><td>${esc(shown)}</td></tr>`;
  }).join('\n');
  const who = identity.length
    ? `<p class="who">Signed in as <b>${esc(req.headers['x-forwarded-name'] ?? req.headers['x-forwarded-preferred-username'] ?? req.headers['x-forwarded-user'])}</b>
       ${req.headers['x-forwarded-email'] ? `&lt;${esc(req.headers['x-forwarded-email'])}&gt;` : ''}
       ${req.headers['x-forwarded-roles'] ? ` — roles: <code>${esc(req.headers['x-forwarded-roles'])}</code>` : ' — no roles'}</p>`
    : '<p class="who anon">No identity headers: this request was not authenticated by portcullis (auth = "none", or the app is reached directly).</p>';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>demo upstream — ${esc(url.pathname)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
 nav a{margin-right:1rem} table{border-collapse:collapse;width:100%;margin-top:1rem}
 th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top;font-family:ui-monospace,monospace;font-size:.9rem;word-break:break-all}
 th{white-space:nowrap;width:1%} tr.id{background:#fff3b0;font-weight:bold} tr.fwd{background:#eef6ff}
 .who{padding:.6rem 1rem;background:#e8f7e8;border-radius:4px} .who.anon{background:#f3f3f3}
 code{background:#eee;padding:0 .2rem}
</style></head><body>
<nav><a href="/">/</a><a href="/admin">/admin</a><a href="/.auth/me">/.auth/me</a><a href="/.auth/logout">/.auth/logout</a></nav>
<h1>Demo upstream</h1>
${who}
<p><code>${esc(req.method)} ${esc(url.pathname)}${esc(url.search)}</code> (HTTP/${esc(req.httpVersion)})</p>
<table><caption>Request headers as received (identity headers highlighted)</caption>
${rows}
</table>
</body></html>
`;
}

const server = http.createServer((req, res) => {
  // drain any body so keep-alive works
  req.resume();
  req.on('end', () => {
    const url = new URL(req.url, 'http://upstream.invalid');
    const headers = headerList(req);
    if (wantsJson(req)) {
      const body = JSON.stringify({
        method: req.method,
        path: url.pathname,
        query: url.search.slice(1),
        identity: Object.fromEntries(headers.filter(([k]) => IDENTITY.has(k.toLowerCase())).map(([k, v]) => [k.toLowerCase(), v])),
        headers: Object.fromEntries(Object.entries(req.headers)),
      }, null, 2);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const body = page(req, url, headers);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
});

server.listen(PORT, HOST, () => {
  const { port } = server.address();
  console.log(`demo upstream listening on http://${HOST}:${port}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
