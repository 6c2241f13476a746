// Smoke test of the test provider. Exits non-zero on the first failure.
//
//   node smoke.mjs                 # starts provider.mjs itself (ephemeral port, temp STATE_DIR)
//   ISSUER=http://127.0.0.1:PORT node smoke.mjs   # against a running provider started with the default
//       CLIENT_REDIRECT_URIS / POST_LOGOUT_REDIRECT_URIS (or set REDIRECT_URI / POST_LOGOUT_REDIRECT_URI);
//       skips the back-channel checks. Note: it rotates that provider's keys.
//
// Doubles as executable documentation of every flow the Rust side uses: discovery, client_credentials
// (JWT and opaque), introspection (Basic and ZITADEL-style private_key_jwt), authorization code + PKCE
// with a cookie jar and manual redirects, refresh, userinfo, RP-initiated + back-channel logout, keys.

import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { strict as assert } from 'node:assert';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROLES = 'urn:zitadel:iam:org:project:roles';
const b64u = (buf) => Buffer.from(buf).toString('base64url');
const step = (msg) => console.log(`ok - ${msg}`);

// ---------------------------------------------------------------------------------------------
// helpers

function decodeJwt(jwt) {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}

function verifyJwt(jwt, jwks) {
  const { header, payload } = decodeJwt(jwt);
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} not in JWKS`);
  const [h, p, s] = jwt.split('.');
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  let ok;
  if (header.alg === 'RS256') {
    ok = crypto.verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'));
  } else if (header.alg === 'ES256') {
    ok = crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'));
  } else {
    throw new Error(`unexpected alg ${header.alg}`);
  }
  assert.ok(ok, 'bad JWT signature');
  return { header, payload };
}

// ZITADEL-style client assertion from an application key JSON file
function clientAssertion(keyFile, audience) {
  const key = JSON.parse(fs.readFileSync(keyFile, 'utf8'));
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', typ: 'JWT', kid: key.keyId };
  const payload = {
    iss: key.clientId, sub: key.clientId, aud: audience, iat: now, exp: now + 60, jti: crypto.randomUUID(),
  };
  const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
  const sig = crypto.sign('sha256', Buffer.from(input), crypto.createPrivateKey(key.key));
  return { clientId: key.clientId, assertion: `${input}.${b64u(sig)}` };
}

// minimal cookie jar honouring Path and deletion (Max-Age=0 / past Expires)
class CookieJar {
  cookies = new Map(); // name|path -> {name, value, path}

  store(res, url) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let cpath = '/';
      let expired = value === '';
      for (const a of attrs) {
        const [k, v = ''] = a.split('=');
        const lk = k.toLowerCase();
        if (lk === 'path') cpath = v;
        if (lk === 'max-age' && Number(v) <= 0) expired = true;
        if (lk === 'expires' && Date.parse(v) < Date.now()) expired = true;
      }
      if (!attrs.some((a) => a.toLowerCase().startsWith('path='))) {
        cpath = new URL(url).pathname.replace(/\/[^/]*$/, '') || '/';
      }
      const id = `${name}|${cpath}`;
      if (expired) this.cookies.delete(id);
      else this.cookies.set(id, { name, value, path: cpath });
    }
  }

  header(url) {
    const p = new URL(url).pathname;
    const matching = [...this.cookies.values()].filter((c) => p === c.path || p.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`));
    return matching.map((c) => `${c.name}=${c.value}`).join('; ');
  }
}

async function req(jar, url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  const cookie = jar?.header(url);
  if (cookie) headers.cookie = cookie;
  const res = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar?.store(res, url);
  return res;
}

async function json(res, expectStatus = 200) {
  const text = await res.text();
  assert.equal(res.status, expectStatus, `HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

const form = (o) => new URLSearchParams(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

// ---------------------------------------------------------------------------------------------
// setup: start the provider (unless ISSUER is given) with a back-channel logout receiver

const logoutTokens = [];
const receiver = http.createServer(async (rq, rs) => {
  let body = '';
  for await (const c of rq) body += c;
  if (rq.method === 'POST' && rq.url === '/.auth/backchannel-logout') {
    logoutTokens.push(new URLSearchParams(body).get('logout_token'));
    rs.writeHead(200).end();
  } else {
    rs.writeHead(404).end();
  }
});
await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
const rpOrigin = `http://127.0.0.1:${receiver.address().port}`;
let issuer = process.env.ISSUER;
const ownProvider = !issuer;
// against an external provider, use its (default) registered URIs
const REDIRECT_URI = ownProvider ? `${rpOrigin}/.auth/callback` : (process.env.REDIRECT_URI ?? 'http://127.0.0.1:8080/.auth/callback');
const POST_LOGOUT = ownProvider ? `${rpOrigin}/` : (process.env.POST_LOGOUT_REDIRECT_URI ?? 'http://127.0.0.1:8080/');

let child;
if (ownProvider) {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-smoke-'));
  child = spawn(process.execPath, [path.join(HERE, 'provider.mjs')], {
    env: {
      ...process.env,
      PORT: '0',
      STATE_DIR: stateDir,
      CLIENT_REDIRECT_URIS: `${REDIRECT_URI},http://127.0.0.1:8080/.auth/callback`,
      POST_LOGOUT_REDIRECT_URIS: POST_LOGOUT,
      BACKCHANNEL_LOGOUT_URI: `${rpOrigin}/.auth/backchannel-logout`,
      LOG_REQUESTS: process.env.LOG_REQUESTS ?? '0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  issuer = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('provider did not print READY within 10s')), 10_000);
    child.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/^READY (http:\/\/127\.0\.0\.1:\d+)\n/);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => reject(new Error(`provider exited with ${code}`)));
  });
  step(`provider started: ${issuer}`);
}

function cleanup() {
  receiver.close();
  if (child && child.exitCode === null) child.kill('SIGTERM');
}

try {
  await main();
  console.log('SMOKE OK');
} catch (err) {
  console.error('SMOKE FAILED:', err);
  process.exitCode = 1;
} finally {
  cleanup();
}

// ---------------------------------------------------------------------------------------------

async function main() {
  // --- discovery
  const disco = await json(await fetch(`${issuer}/.well-known/openid-configuration`));
  assert.equal(disco.issuer, issuer);
  for (const k of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint', 'end_session_endpoint']) {
    assert.ok(disco[k], `discovery lacks ${k}`);
  }
  assert.equal(disco.authorization_response_iss_parameter_supported, true);
  assert.equal(disco.backchannel_logout_supported, true);
  assert.ok(disco.scopes_supported.includes('urn:zitadel:iam:org:projects:roles'));
  const health = await json(await fetch(`${issuer}/__test/health`));
  const stateDir = health.state_dir;
  let jwks = await json(await fetch(disco.jwks_uri));
  assert.ok(jwks.keys.some((k) => k.alg === 'RS256') && jwks.keys.some((k) => k.alg === 'ES256'));
  assert.ok(jwks.keys.every((k) => !k.d), 'private key material in JWKS');
  step('discovery + JWKS (RS256 + ES256)');

  // --- client_credentials, JWT access token
  const tokenFor = async (id, resource) => json(await fetch(disco.token_endpoint, {
    method: 'POST',
    headers: { authorization: basic(id, `${id}-secret`) },
    body: form({ grant_type: 'client_credentials', resource }),
  }));
  const adminJwt = (await tokenFor('api-admin', 'urn:portcullis:api')).access_token;
  {
    const { header, payload } = verifyJwt(adminJwt, jwks);
    assert.equal(header.typ, 'at+jwt');
    assert.equal(header.alg, 'RS256');
    assert.equal(payload.aud, 'portcullis-api');
    assert.equal(payload.iss, issuer);
    assert.equal(payload.sub, 'api-admin');
    assert.deepEqual(Object.keys(payload[ROLES]).sort(), ['admin', 'reader']);
    assert.deepEqual(payload[ROLES].admin, { 123456: 'acme.localhost' });
    assert.equal(payload['urn:zitadel:iam:user:resourceowner:id'], '123456');
  }
  {
    const { payload } = decodeJwt((await tokenFor('api-reader', 'urn:portcullis:api')).access_token);
    assert.deepEqual(Object.keys(payload[ROLES]), ['reader']);
    const { payload: p2 } = decodeJwt((await tokenFor('api-noroles', 'urn:portcullis:api')).access_token);
    assert.equal(p2[ROLES], undefined);
  }
  step('client_credentials JWT: aud + ZITADEL roles for api-admin / api-reader / api-noroles');

  // --- opaque token + introspection (Basic and private_key_jwt from the ZITADEL key file)
  const opaque = (await tokenFor('api-admin')).access_token;
  assert.equal(opaque.split('.').length, 1, 'expected an opaque token without resource');
  const introspect = async (token, auth) => json(await fetch(disco.introspection_endpoint, {
    method: 'POST',
    headers: auth.basic ? { authorization: auth.basic } : {},
    body: form({ token, ...(auth.body ?? {}) }),
  }));
  const viaBasic = await introspect(opaque, { basic: basic('introspector-basic', 'introspector-secret') });
  assert.equal(viaBasic.active, true);
  assert.equal(viaBasic.client_id, 'api-admin');
  assert.ok(viaBasic[ROLES].admin);
  const keyFile = path.join(stateDir, 'zitadel-introspector-key.json');
  const keyJson = JSON.parse(fs.readFileSync(keyFile, 'utf8'));
  assert.equal(keyJson.type, 'application');
  assert.equal(keyJson.clientId, 'introspector-jwt');
  assert.match(keyJson.key, /^-----BEGIN RSA PRIVATE KEY-----\n/);
  const jwtAuth = (aud) => {
    const { clientId, assertion } = clientAssertion(keyFile, aud);
    return {
      body: {
        client_id: clientId,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      },
    };
  };
  const viaJwt = await introspect(opaque, jwtAuth(issuer));
  assert.equal(viaJwt.active, true);
  assert.ok(viaJwt[ROLES].reader);
  // aud = introspection endpoint and aud = token endpoint are accepted too; anything else is not
  assert.equal((await introspect(opaque, jwtAuth(disco.introspection_endpoint))).active, true);
  assert.equal((await introspect(opaque, jwtAuth(disco.token_endpoint))).active, true);
  {
    const res = await fetch(disco.introspection_endpoint, { method: 'POST', body: form({ token: opaque, ...jwtAuth(`${issuer}/other`).body }) });
    assert.equal(res.status, 401);
  }
  {
    // client_id in the body is optional with a client assertion (taken from iss/sub)
    const { assertion } = clientAssertion(keyFile, issuer);
    const r = await json(await fetch(disco.introspection_endpoint, {
      method: 'POST',
      body: form({ token: opaque, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }),
    }));
    assert.equal(r.active, true);
  }
  const opaqueAud = (await tokenFor('api-admin', 'urn:portcullis:api:opaque')).access_token;
  assert.equal((await introspect(opaqueAud, { basic: basic('introspector-basic', 'introspector-secret') })).aud, 'portcullis-api');
  const jwtIntro = await fetch(disco.introspection_endpoint, { method: 'POST', headers: { authorization: basic('introspector-basic', 'introspector-secret') }, body: form({ token: adminJwt }) });
  assert.equal(jwtIntro.status, 400, 'JWT access tokens cannot be introspected');
  step('opaque token introspection: Basic + private_key_jwt (aud issuer|token|introspection endpoint); urn:portcullis:api:opaque carries aud');

  // --- authorization code + PKCE logins for each web client
  const clients = [
    { id: 'web', auth: (b) => ({ headers: { authorization: basic('web', 'web-secret') }, body: b }) },
    { id: 'web-post', auth: (b) => ({ headers: {}, body: { ...b, client_id: 'web-post', client_secret: 'web-post-secret' } }) },
    { id: 'web-public', auth: (b) => ({ headers: {}, body: { ...b, client_id: 'web-public' } }) },
    {
      id: 'web-jwt',
      auth: (b) => {
        const { assertion } = clientAssertion(path.join(stateDir, 'zitadel-web-key.json'), issuer);
        return { headers: {}, body: { ...b, client_id: 'web-jwt', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion } };
      },
    },
  ];
  const tokenCall = (client, body) => {
    const { headers, body: b } = client.auth(body);
    return fetch(disco.token_endpoint, { method: 'POST', headers, body: form(b) });
  };

  let aliceSession;
  for (const [i, client] of clients.entries()) {
    const user = i === 1 ? 'bob' : 'alice';
    const jar = new CookieJar();
    const verifier = b64u(crypto.randomBytes(32));
    const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
    const state = b64u(crypto.randomBytes(16));
    const nonce = b64u(crypto.randomBytes(16));
    const authUrl = `${disco.authorization_endpoint}?${form({
      client_id: client.id,
      response_type: 'code',
      scope: 'openid profile email offline_access',
      redirect_uri: REDIRECT_URI,
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: 'S256',
    })}`;
    // 1. GET /auth → 303 /interaction/UID (sets _interaction + _interaction_resume cookies)
    let res = await req(jar, authUrl);
    assert.equal(res.status, 303, `auth: ${res.status} ${await res.text()}`);
    const interaction = new URL(res.headers.get('location'), issuer);
    assert.match(interaction.pathname, /^\/interaction\/[\w-]+$/);
    // 2. GET /interaction/UID → 200 login form (optional for a script)
    res = await req(jar, interaction.href);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /name="login"/);
    // 3. POST the login (the form's own target, or the /login alias for the second client)
    const loginUrl = i % 2 === 0 ? interaction.href : `${interaction.href}/login`;
    res = await req(jar, loginUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form(i % 2 === 0 ? { prompt: 'login', login: user, password: 'x' } : { login: user, password: 'x' }),
    });
    assert.equal(res.status, 303, `login: ${res.status} ${await res.text()}`);
    // 4. follow to /auth/UID → 303 redirect_uri?code&state&iss (sets _session)
    let loc = new URL(res.headers.get('location'), issuer);
    for (let hops = 0; !loc.href.startsWith(REDIRECT_URI); hops++) {
      assert.ok(hops < 5, 'too many redirects');
      assert.equal(loc.origin, issuer);
      res = await req(jar, loc.href);
      assert.ok([302, 303].includes(res.status), `resume: ${res.status} ${await res.text()}`);
      loc = new URL(res.headers.get('location'), issuer);
    }
    assert.equal(loc.searchParams.get('state'), state);
    assert.equal(loc.searchParams.get('iss'), issuer);
    const code = loc.searchParams.get('code');
    assert.ok(code);
    // 5. token exchange
    const tok = await json(await tokenCall(client, {
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier,
    }));
    assert.ok(tok.id_token && tok.access_token && tok.refresh_token, `tokens: ${JSON.stringify(tok)}`);
    assert.equal(tok.token_type, 'Bearer');
    assert.ok(tok.scope.split(' ').includes('offline_access'));
    const { payload: idt } = verifyJwt(tok.id_token, jwks);
    assert.equal(idt.sub, user);
    assert.equal(idt.aud, client.id);
    assert.equal(idt.nonce, nonce);
    assert.equal(idt.email, `${user}@example.com`);
    if (ownProvider) assert.ok(idt.sid, "sid expected (client has backchannel_logout_session_required)");
    if (user === 'alice') {
      assert.deepEqual(idt[ROLES], { admin: { 123456: 'acme.localhost' } });
      assert.equal(idt.name, 'Alice Admin');
    } else {
      assert.equal(idt[ROLES], undefined);
      assert.equal(idt.name, 'Bob Builder');
    }
    // 6. userinfo
    const ui = await json(await fetch(disco.userinfo_endpoint, { headers: { authorization: `Bearer ${tok.access_token}` } }));
    assert.equal(ui.sub, user);
    assert.equal(ui.email, `${user}@example.com`);
    if (user === 'alice') assert.ok(ui[ROLES].admin);
    // 7. refresh (rotated by default: a new refresh_token comes back, the old one is consumed)
    const ref = await json(await tokenCall(client, { grant_type: 'refresh_token', refresh_token: tok.refresh_token }));
    assert.ok(ref.access_token && ref.id_token && ref.refresh_token);
    assert.notEqual(ref.refresh_token, tok.refresh_token);
    assert.equal(decodeJwt(ref.id_token).payload.sub, user);
    const ui2 = await json(await fetch(disco.userinfo_endpoint, { headers: { authorization: `Bearer ${ref.access_token}` } }));
    assert.equal(ui2.email, `${user}@example.com`);
    // 8. the user's opaque access token, introspected with the ZITADEL key
    const intro = await introspect(ref.access_token, jwtAuth(issuer));
    assert.equal(intro.active, true);
    assert.equal(intro.sub, user);
    assert.equal(intro.client_id, client.id);
    if (user === 'alice') assert.ok(intro[ROLES].admin);
    step(`login ${user} via ${client.id}: code+PKCE, iss in response, id_token/access/refresh, refresh, userinfo, introspection`);
    if (client.id === 'web') aliceSession = { jar, tok: ref, idt };
  }

  // --- a second authorization with the same provider session skips the login form (SSO)
  {
    const { jar } = aliceSession;
    const verifier = b64u(crypto.randomBytes(32));
    const res = await req(jar, `${disco.authorization_endpoint}?${form({
      client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 's2',
      code_challenge: b64u(crypto.createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256',
    })}`);
    assert.equal(res.status, 303);
    assert.ok(res.headers.get('location').startsWith(`${REDIRECT_URI}?code=`), res.headers.get('location'));
    step('second authorization with the provider session: straight back to redirect_uri (no form)');
  }

  // --- prompt=login still works, prompt=none without a session gives login_required
  {
    const verifier = b64u(crypto.randomBytes(32));
    const res = await req(new CookieJar(), `${disco.authorization_endpoint}?${form({
      client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 's3', prompt: 'none',
      code_challenge: b64u(crypto.createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256',
    })}`);
    assert.equal(res.status, 303);
    const loc = new URL(res.headers.get('location'));
    assert.equal(loc.searchParams.get('error'), 'login_required');
    step('prompt=none without session → redirect_uri?error=login_required');
  }

  // --- RP-initiated logout + back-channel logout token
  {
    const { jar, tok, idt } = aliceSession;
    let res = await req(jar, `${disco.end_session_endpoint}?${form({ id_token_hint: tok.id_token, post_logout_redirect_uri: POST_LOGOUT, state: 'bye' })}`);
    assert.equal(res.status, 200);
    const html = await res.text();
    const xsrf = html.match(/name="xsrf" value="([^"]+)"/)?.[1];
    assert.ok(xsrf, 'no xsrf in logout page');
    res = await req(jar, `${issuer}/session/end/confirm`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form({ xsrf, logout: 'yes' }),
    });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), `${POST_LOGOUT}?state=bye`);
    if (ownProvider) {
      assert.equal(logoutTokens.length, 1, `expected one logout token, got ${logoutTokens.length}`);
      const { header, payload } = verifyJwt(logoutTokens[0], jwks);
      assert.equal(header.typ, 'logout+jwt');
      assert.equal(payload.iss, issuer);
      assert.equal(payload.aud, 'web');
      assert.equal(payload.sub, 'alice');
      assert.equal(payload.sid, idt.sid);
      assert.ok(payload.jti && payload.iat && payload.exp);
      assert.equal(payload.nonce, undefined);
      assert.deepEqual(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
    }
    // offline_access grants survive a provider logout (oidc-provider's persistsLogout): the refresh
    // token still works until the RP revokes it at the revocation endpoint.
    const still = await json(await tokenCall(clients[0], { grant_type: 'refresh_token', refresh_token: tok.refresh_token }));
    const rev = await fetch(disco.revocation_endpoint, {
      method: 'POST', headers: { authorization: basic('web', 'web-secret') }, body: form({ token: still.refresh_token, token_type_hint: 'refresh_token' }),
    });
    assert.equal(rev.status, 200);
    const dead = await tokenCall(clients[0], { grant_type: 'refresh_token', refresh_token: still.refresh_token });
    assert.equal(dead.status, 400);
    assert.equal((await dead.json()).error, 'invalid_grant');
    // revoking the refresh token revokes the whole grant: its access token is inactive too
    assert.equal((await introspect(still.access_token, { basic: basic('introspector-basic', 'introspector-secret') })).active, false);
    step('RP-initiated logout (GET /session/end → POST /session/end/confirm) + back-channel logout token; refresh survives logout until revoked');
  }

  // --- test hook: send a logout token on demand
  if (ownProvider) {
    const r = await json(await fetch(`${issuer}/__test/backchannel-logout`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'web', sub: 'bob', sid: 'some-sid' }),
    }));
    assert.equal(r.ok, true);
    assert.equal(logoutTokens.length, 2);
    const { payload } = verifyJwt(logoutTokens[1], jwks);
    assert.equal(payload.sub, 'bob');
    assert.equal(payload.sid, 'some-sid');
    step('POST /__test/backchannel-logout delivers a logout token');
  }

  // --- add-key: new kid signs, the old one stays published
  {
    const oldKids = jwks.keys.map((k) => k.kid);
    const added = await json(await fetch(`${issuer}/__test/add-key`, { method: 'POST' }));
    jwks = await json(await fetch(disco.jwks_uri));
    const kids = jwks.keys.map((k) => k.kid);
    assert.ok(kids.includes(added.kid));
    for (const k of oldKids) assert.ok(kids.includes(k), 'old key dropped by add-key');
    const fresh = (await tokenFor('api-admin', 'urn:portcullis:api')).access_token;
    assert.equal(verifyJwt(fresh, jwks).header.kid, added.kid);
    verifyJwt(adminJwt, jwks); // old token still verifies
    // opaque tokens survive the provider re-creation
    assert.equal((await introspect(opaque, { basic: basic('introspector-basic', 'introspector-secret') })).active, true);
    step('add-key: new kid signs new tokens, old kid still in JWKS, state kept');
  }

  // --- rotate-keys: all old kids gone
  {
    const oldKids = jwks.keys.map((k) => k.kid);
    const rotated = await json(await fetch(`${issuer}/__test/rotate-keys`, { method: 'POST' }));
    jwks = await json(await fetch(disco.jwks_uri));
    const kids = jwks.keys.map((k) => k.kid);
    assert.deepEqual(kids, rotated.kids);
    for (const k of oldKids) assert.ok(!kids.includes(k), `old kid ${k} still published`);
    assert.throws(() => verifyJwt(adminJwt, jwks), /not in JWKS/);
    const fresh = (await tokenFor('api-admin', 'urn:portcullis:api')).access_token;
    assert.equal(verifyJwt(fresh, jwks).header.kid, rotated.kid);
    assert.equal((await introspect(opaque, jwtAuth(issuer))).active, true);
    step('rotate-keys: JWKS kid changed, old JWTs have an unknown kid, new tokens use the new kid');
  }
}
