// portcullis test OpenID provider: a real `oidc-provider` (panva) instance with fixed clients and
// users, ZITADEL-shaped claims, and a few test-control endpoints under /__test/.
//
// stdout: exactly one line `READY http://127.0.0.1:PORT` once it serves requests. Everything else
// (oidc-provider notices, request log) goes to stderr. See README.md.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

// oidc-provider prints its NOTICEs with console.info (stdout). Keep stdout for READY only.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const { default: Provider, errors: oidcErrors, interactionPolicy } = await import('oidc-provider');
// Deep imports (the package has no "exports" map; the version is pinned): the built-in memory adapter
// over ONE store shared by every Provider instance (key rotation re-creates the Provider), sized for
// benchmarks (the default store is an LRU of 1000 entries per generation, per Provider instance).
const { default: MemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');
const { default: LRU } = await import('oidc-provider/lib/helpers/lru.js');

// ---------------------------------------------------------------------------------------------
// configuration from the environment

const env = process.env;
const list = (v, dflt) => (v === undefined ? dflt : v.split(',').map((s) => s.trim()).filter(Boolean));
const int = (v, dflt) => {
  if (v === undefined || v === '') return dflt;
  const n = Number.parseInt(v, 10);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`not a positive integer: ${v}`);
  return n;
};

const PORT = env.PORT ? Number.parseInt(env.PORT, 10) : 0;
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) throw new Error(`bad PORT: ${env.PORT}`);
const CLIENT_REDIRECT_URIS = list(env.CLIENT_REDIRECT_URIS, ['http://127.0.0.1:8080/.auth/callback']);
const POST_LOGOUT_REDIRECT_URIS = list(env.POST_LOGOUT_REDIRECT_URIS, ['http://127.0.0.1:8080/']);
const BACKCHANNEL_LOGOUT_URI = env.BACKCHANNEL_LOGOUT_URI || undefined;
const ACCESS_TOKEN_TTL = int(env.ACCESS_TOKEN_TTL, 300);
const ID_TOKEN_TTL = int(env.ID_TOKEN_TTL, 300);
const API_AUDIENCE = env.API_AUDIENCE || 'portcullis-api';
// always | default | never  (ZITADEL rotates refresh tokens on every use → "always")
const ROTATE_REFRESH_TOKEN = env.ROTATE_REFRESH_TOKEN || 'always';
const LOG_REQUESTS = env.LOG_REQUESTS !== '0';
const STATE_DIR = env.STATE_DIR
  ? path.resolve(env.STATE_DIR)
  : fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-provider-'));
fs.mkdirSync(STATE_DIR, { recursive: true });

// Resource indicators must be absolute URIs (oidc-provider rejects `portcullis-api`), so the
// JWT-format API is requested with one of these `resource` values; the token's `aud` is API_AUDIENCE.
const RESOURCE_JWT = new Set(['urn:portcullis:api']);
const RESOURCE_OPAQUE = new Set(['urn:portcullis:api:opaque']);
if (URL.parse(API_AUDIENCE)) RESOURCE_JWT.add(API_AUDIENCE);

const ROLES_CLAIM = 'urn:zitadel:iam:org:project:roles';
const ROLES_SCOPE = 'urn:zitadel:iam:org:projects:roles';
const RESOURCEOWNER_CLAIM = 'urn:zitadel:iam:user:resourceowner:id';
const ORG_ID = '123456';
const ORG_DOMAIN = 'acme.localhost';

const STORE_SIZE = int(env.STORE_SIZE, 200_000);
const sharedStore = new LRU({ maxSize: STORE_SIZE });
const adapter = (model) => new MemoryAdapter(model, sharedStore, 0);

const log = (...args) => console.error('[provider]', ...args);

// ---------------------------------------------------------------------------------------------
// keys

function newKid(prefix) {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
}

// Node 20 can deadlock when a KeyObject returned by generateKeyPairSync is exported while the
// GC finalizes the generating job (KeyGenJob's destructor takes the key's mutex that ExportJWK
// holds; seen here as a provider hung before READY). Asking the generator for PEM text and
// re-importing it gives KeyObjects the job never owned.
function generatePair(type, options) {
  const { privateKey } = crypto.generateKeyPairSync(type, {
    ...options,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const priv = crypto.createPrivateKey(privateKey);
  return { privateKey: priv, publicKey: crypto.createPublicKey(priv) };
}

function rsaSigningJwk() {
  const { privateKey } = generatePair('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid('rs'), alg: 'RS256', use: 'sig' };
}

function ecSigningJwk() {
  const { privateKey } = generatePair('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid('es'), alg: 'ES256', use: 'sig' };
}

// ZITADEL application key JSON (what the console's "add key" downloads), PKCS#1 PEM.
// Reused when the file already exists and is valid, so a fixed STATE_DIR keeps the same key.
function zitadelKeyFile(file, clientId) {
  const full = path.join(STATE_DIR, file);
  try {
    const json = JSON.parse(fs.readFileSync(full, 'utf8'));
    if (json.clientId === clientId && json.keyId && json.key) {
      const pub = crypto.createPublicKey(crypto.createPrivateKey(json.key));
      return { json, jwk: { ...pub.export({ format: 'jwk' }), kid: json.keyId, alg: 'RS256', use: 'sig' }, path: full };
    }
  } catch { /* generate below */ }
  const { privateKey, publicKey } = generatePair('rsa', { modulusLength: 2048 });
  const keyId = String(BigInt(`0x${crypto.randomBytes(7).toString('hex')}`));
  const json = {
    type: 'application',
    keyId,
    key: privateKey.export({ type: 'pkcs1', format: 'pem' }),
    appId: String(BigInt(`0x${crypto.randomBytes(7).toString('hex')}`)),
    clientId,
  };
  fs.writeFileSync(full, `${JSON.stringify(json, null, 2)}\n`, { mode: 0o600 });
  return { json, jwk: { ...publicKey.export({ format: 'jwk' }), kid: keyId, alg: 'RS256', use: 'sig' }, path: full };
}

const introspectorKey = zitadelKeyFile('zitadel-introspector-key.json', 'introspector-jwt');
const webKey = zitadelKeyFile('zitadel-web-key.json', 'web-jwt');

let signingKeys = [rsaSigningJwk(), ecSigningJwk()];
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

// ---------------------------------------------------------------------------------------------
// users and clients

const ADMIN_ROLES = { admin: { [ORG_ID]: ORG_DOMAIN } };

const USERS = {
  alice: {
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Admin',
    given_name: 'Alice',
    family_name: 'Admin',
    preferred_username: 'alice',
    [ROLES_CLAIM]: ADMIN_ROLES,
    [RESOURCEOWNER_CLAIM]: ORG_ID,
  },
  bob: {
    email: 'bob@example.com',
    email_verified: true,
    name: 'Bob Builder',
    given_name: 'Bob',
    family_name: 'Builder',
    preferred_username: 'bob',
    [RESOURCEOWNER_CLAIM]: ORG_ID,
  },
};

// Any other login name also works: sub = the login, email <login>@example.com (unverified), no roles.
function userClaims(sub) {
  return USERS[sub] ?? {
    email: `${sub}@example.com`,
    email_verified: false,
    name: sub,
    preferred_username: sub,
  };
}

const API_CLIENT_CLAIMS = {
  'api-admin': {
    [ROLES_CLAIM]: { admin: { [ORG_ID]: ORG_DOMAIN }, reader: { [ORG_ID]: ORG_DOMAIN } },
    [RESOURCEOWNER_CLAIM]: ORG_ID,
  },
  'api-reader': {
    [ROLES_CLAIM]: { reader: { [ORG_ID]: ORG_DOMAIN } },
    [RESOURCEOWNER_CLAIM]: ORG_ID,
  },
  'api-noroles': {
    [RESOURCEOWNER_CLAIM]: ORG_ID,
  },
};

function apiClient(clientId) {
  return {
    client_id: clientId,
    client_secret: `${clientId}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}

function webClient(clientId, extra) {
  return {
    client_id: clientId,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: CLIENT_REDIRECT_URIS,
    post_logout_redirect_uris: POST_LOGOUT_REDIRECT_URIS,
    ...(BACKCHANNEL_LOGOUT_URI
      ? { backchannel_logout_uri: BACKCHANNEL_LOGOUT_URI, backchannel_logout_session_required: true }
      : {}),
    ...extra,
  };
}

const CLIENTS = [
  apiClient('api-admin'),
  apiClient('api-reader'),
  apiClient('api-noroles'),
  {
    client_id: 'introspector-basic',
    client_secret: 'introspector-secret',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'introspector-jwt',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [introspectorKey.jwk] },
  },
  webClient('web', { client_secret: 'web-secret', token_endpoint_auth_method: 'client_secret_basic' }),
  webClient('web-post', { client_secret: 'web-post-secret', token_endpoint_auth_method: 'client_secret_post' }),
  webClient('web-public', { token_endpoint_auth_method: 'none' }),
  webClient('web-jwt', {
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [webKey.jwk] },
  }),
];

// ---------------------------------------------------------------------------------------------
// provider configuration

function rolesWanted(scope) {
  const scopes = new Set(String(scope ?? '').split(' '));
  return scopes.has('profile') || scopes.has(ROLES_SCOPE);
}

function buildConfiguration() {
  return {
    adapter,
    clients: CLIENTS,
    jwks: { keys: signingKeys },
    cookies: { keys: cookieKeys },
    pkce: { required: () => true },
    interactions: { policy: buildInteractionPolicy() },
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username', ROLES_CLAIM, RESOURCEOWNER_CLAIM],
      [ROLES_SCOPE]: [ROLES_CLAIM, RESOURCEOWNER_CLAIM],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', ROLES_SCOPE],
    async findAccount(_ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, ...structuredClone(userClaims(sub)) };
        },
      };
    },
    // Automatic consent: every requested (known) scope/claim/resource scope is granted, so a login
    // is GET /auth → login form → redirect_uri, with no consent page.
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant) {
        grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.account.accountId });
      }
      const scopes = [...oidc.requestParamOIDCScopes];
      if (scopes.length) grant.addOIDCScope(scopes.join(' '));
      const claims = [...oidc.requestParamClaims];
      if (claims.length) grant.addOIDCClaims(claims);
      for (const [indicator, rs] of Object.entries(oidc.resourceServers ?? {})) {
        if (rs.scope) grant.addResourceScope(indicator, rs.scope);
      }
      await grant.save();
      return grant;
    },
    // Refresh tokens for every authorization-code grant that asked for offline_access (prompt=consent
    // not needed: oidc-provider only drops offline_access when a `prompt` parameter WITHOUT consent is present).
    async issueRefreshToken(_ctx, client, code) {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      return code.scopes.has('offline_access');
    },
    rotateRefreshToken(ctx) {
      if (ROTATE_REFRESH_TOKEN === 'always') return true;
      if (ROTATE_REFRESH_TOKEN === 'never') return false;
      const { RefreshToken: rt, Client: client } = ctx.oidc.entities;
      if (client.clientAuthMethod === 'none') return true;
      return rt.ttlPercentagePassed() >= 70;
    },
    async extraTokenClaims(_ctx, token) {
      if (token.kind === 'ClientCredentials') {
        return { sub: token.clientId, ...structuredClone(API_CLIENT_CLAIMS[token.clientId] ?? {}) };
      }
      if (token.accountId && rolesWanted(token.scope)) {
        const u = userClaims(token.accountId);
        const out = {};
        if (u[ROLES_CLAIM]) out[ROLES_CLAIM] = structuredClone(u[ROLES_CLAIM]);
        if (u[RESOURCEOWNER_CLAIM]) out[RESOURCEOWNER_CLAIM] = u[RESOURCEOWNER_CLAIM];
        return out;
      }
      return undefined;
    },
    // oidc-provider's outgoing fetch (back-channel logout) refuses special-use addresses such as
    // 127.0.0.1 (SSRF protection through its own undici dispatcher). Everything here is on loopback.
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      ClientCredentials: ACCESS_TOKEN_TTL,
      IdToken: ID_TOKEN_TTL,
      AuthorizationCode: 60,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      RefreshToken: 14 * 24 * 3600,
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // any confidential client may introspect any token; public clients only their own
        allowedPolicy: async (_ctx, client, token) => client.clientAuthMethod !== 'none'
          || token.clientId === client.clientId,
      },
      revocation: {
        enabled: true,
        // a client may revoke only its own tokens (oidc-provider's default, without its NOTICE)
        allowedPolicy: async (_ctx, client, token) => {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new oidcErrors.InvalidRequest('client is not authorized to revoke the presented token');
        },
      },
      rpInitiatedLogout: { enabled: true, logoutSource },
      backchannelLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => false,
        async getResourceServerInfo(_ctx, resource) {
          if (RESOURCE_JWT.has(resource)) {
            return {
              scope: 'api:read api:write',
              audience: API_AUDIENCE,
              accessTokenTTL: ACCESS_TOKEN_TTL,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          }
          if (RESOURCE_OPAQUE.has(resource)) {
            return {
              scope: 'api:read api:write',
              audience: API_AUDIENCE,
              accessTokenTTL: ACCESS_TOKEN_TTL,
              accessTokenFormat: 'opaque',
            };
          }
          throw new oidcErrors.InvalidTarget(`unknown resource ${resource}`);
        },
      },
    },
  };
}

// The default policy forces a consent interaction whenever prompt=consent is present. Remove that
// check: consent is automatic here (loadExistingGrant), and prompt=consent is added to authorization
// requests with offline_access (see keepOfflineAccess) so that refresh tokens are issued.
function buildInteractionPolicy() {
  const policy = interactionPolicy.base();
  policy.get('consent').checks.remove('consent_prompt');
  return policy;
}

// oidc-provider (per OIDC Core 11) silently drops `offline_access` from an authorization request
// unless its `prompt` contains `consent`. Real providers (ZITADEL, Keycloak) issue refresh tokens for
// offline_access without prompt=consent, so GET /auth requests asking for offline_access without
// prompt=none get `consent` added to their prompt (harmless: consent is automatic, see above).
async function keepOfflineAccess(ctx, next) {
  if (ctx.method === 'GET' && ctx.path === '/auth' && ctx.querystring) {
    const q = new URLSearchParams(ctx.querystring);
    const scopes = (q.get('scope') ?? '').split(' ');
    const prompts = new Set((q.get('prompt') ?? '').split(' ').filter(Boolean));
    if (scopes.includes('offline_access') && !prompts.has('none') && !prompts.has('consent') && q.getAll('prompt').length <= 1) {
      prompts.add('consent');
      q.set('prompt', [...prompts].join(' '));
      ctx.querystring = q.toString();
    }
  }
  await next();
}

// Logout confirmation page: auto-submits "yes, sign me out" in a browser (so the demo needs one
// click less); scripted clients POST xsrf=<value>&logout=yes to /session/end/confirm.
async function logoutSource(ctx, form) {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign out</title></head>
<body>
<h1>Sign out from ${ctx.host}?</h1>
${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}
<button autofocus type="submit" form="op.logoutForm">Yes, sign me out</button>
<script>document.getElementById('op.logoutForm').submit()</script>
</body></html>`;
}

// ---------------------------------------------------------------------------------------------
// server: a tiny dispatcher in front of the current Provider instance. Key rotation builds a new
// Provider with the new keys; the memory adapter's storage is module-global in oidc-provider, and the
// cookie keys are fixed, so sessions, grants, opaque tokens and refresh tokens survive a rotation.

let provider;
let callback;
let issuer;

function installProvider() {
  const p = new Provider(issuer, buildConfiguration());
  p.proxy = false;
  p.use(keepOfflineAccess);
  p.on('server_error', (_ctx, err) => log('server_error', err));
  p.on('backchannel.error', (_ctx, err, client) => log('backchannel.error', client.clientId, err.message));
  p.on('backchannel.success', (_ctx, client, accountId, sid) => log('backchannel.success', client.clientId, accountId, sid));
  p.on('grant.error', (_ctx, err) => log('grant.error', err.message, err.error_description ?? ''));
  p.on('introspection.error', (_ctx, err) => log('introspection.error', err.message, err.error_description ?? ''));
  p.on('authorization.error', (_ctx, err) => log('authorization.error', err.message, err.error_description ?? ''));
  provider = p;
  callback = p.callback();
}

function publicJwks() {
  return signingKeys.map(({ kty, kid, alg, use, n, e, crv, x, y }) => JSON.parse(JSON.stringify({ kty, kid, alg, use, n, e, crv, x, y })));
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function parseParams(req) {
  const text = await readBody(req);
  const type = String(req.headers['content-type'] ?? '');
  if (!text) return {};
  if (type.includes('json')) return JSON.parse(text);
  return Object.fromEntries(new URLSearchParams(text));
}

// Set by POST /__test/userinfo-fault and /__test/token-without-id-token; applied in handle().
let userinfoFault;
let stripIdToken = false;

// Removes `id_token` from the JSON body oidc-provider is about to send (koa sets the headers,
// then calls res.end(body) once, headers not yet sent).
function withoutIdToken(res) {
  const end = res.end.bind(res);
  res.end = (body, ...rest) => {
    try {
      const json = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : String(body));
      if (json && typeof json === 'object' && 'id_token' in json) {
        delete json.id_token;
        body = JSON.stringify(json);
        if (!res.headersSent) res.setHeader('content-length', Buffer.byteLength(body));
      }
    } catch { /* not JSON: unchanged */ }
    return end(body, ...rest);
  };
}

function userinfoWithFault(res) {
  switch (userinfoFault) {
    case 'unauthorized':
      return sendJson(res, 401, { error: 'invalid_token', error_description: 'test fault' });
    case 'down':
      return sendJson(res, 503, { error: 'temporarily_unavailable' });
    case 'other-email': {
      // alice, with another address and no word on whether it is verified
      const { email_verified: _, ...claims } = userClaims('alice');
      return sendJson(res, 200, { sub: 'alice', ...claims, email: 'boss@partner.org' });
    }
    default:
      return sendJson(res, 200, { sub: 'mallory', ...userClaims('mallory') });
  }
}

function fromLoopback(req) {
  const a = req.socket.remoteAddress ?? '';
  return a === '127.0.0.1' || a === '::1' || a === '::ffff:127.0.0.1';
}

async function testControl(req, res, url) {
  // The server listens on 127.0.0.1 only; refuse anything else anyway (these mutate users).
  if (!fromLoopback(req)) return sendJson(res, 403, { error: 'test-control endpoints are loopback-only' });
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /__test/health':
      return sendJson(res, 200, { ok: true, issuer, kids: signingKeys.map((k) => k.kid), state_dir: STATE_DIR });
    case 'POST /__test/rotate-keys': {
      const old = signingKeys.map((k) => k.kid);
      signingKeys = [rsaSigningJwk(), ecSigningJwk()];
      installProvider();
      log('rotate-keys', old.join(','), '->', signingKeys.map((k) => k.kid).join(','));
      return sendJson(res, 200, { kid: signingKeys[0].kid, kids: signingKeys.map((k) => k.kid), removed: old, jwks: { keys: publicJwks() } });
    }
    case 'POST /__test/add-key': {
      // the new RSA key goes first: oidc-provider signs with the first matching key
      const added = rsaSigningJwk();
      signingKeys = [added, ...signingKeys];
      installProvider();
      log('add-key', added.kid);
      return sendJson(res, 200, { kid: added.kid, kids: signingKeys.map((k) => k.kid), jwks: { keys: publicJwks() } });
    }
    case 'POST /__test/set-roles': {
      // change a user's roles from now on (next token, ID token, userinfo): {sub, roles: [..]};
      // an empty list removes the role claim. Test-only: role changes at the provider.
      const p = await parseParams(req);
      const sub = String(p.sub ?? '');
      if (!sub) return sendJson(res, 400, { error: 'sub is required' });
      const roles = Array.isArray(p.roles) ? p.roles.map(String) : list(p.roles, []);
      USERS[sub] ??= structuredClone(userClaims(sub));
      if (roles.length) {
        USERS[sub][ROLES_CLAIM] = Object.fromEntries(roles.map((r) => [r, { [ORG_ID]: ORG_DOMAIN }]));
      } else {
        delete USERS[sub][ROLES_CLAIM];
      }
      log('set-roles', sub, roles.join(',') || '(none)');
      return sendJson(res, 200, { sub, roles });
    }
    case 'POST /__test/userinfo-fault': {
      // make userinfo (GET/POST /me) misbehave from now on: {fault: "unauthorized" (401
      // invalid_token) | "down" (503) | "other-sub" (200 about user "mallory") | "other-email"
      // (alice with email boss@partner.org and no email_verified) | "none"}
      const p = await parseParams(req);
      const fault = String(p.fault ?? 'none');
      if (!['none', 'unauthorized', 'down', 'other-sub', 'other-email'].includes(fault)) {
        return sendJson(res, 400, { error: `unknown fault ${fault}` });
      }
      userinfoFault = fault === 'none' ? undefined : fault;
      log('userinfo-fault', fault);
      return sendJson(res, 200, { fault });
    }
    case 'POST /__test/token-without-id-token': {
      // {on: true|false}: token responses (refresh included) carry no id_token from now on, as
      // OIDC Core 12.2 allows for refreshes
      const p = await parseParams(req);
      stripIdToken = p.on === true || p.on === 'true';
      log('token-without-id-token', stripIdToken);
      return sendJson(res, 200, { on: stripIdToken });
    }
    case 'POST /__test/backchannel-logout': {
      // send a logout token to a client's backchannel_logout_uri right now: {client_id, sub, sid}
      const p = await parseParams(req);
      const client = await provider.Client.find(p.client_id ?? 'web');
      if (!client) return sendJson(res, 404, { error: 'unknown client' });
      if (!client.backchannelLogoutUri) return sendJson(res, 400, { error: 'client has no backchannel_logout_uri' });
      try {
        await client.backchannelLogout(p.sub ?? 'alice', p.sid);
        return sendJson(res, 200, { ok: true, uri: client.backchannelLogoutUri });
      } catch (err) {
        return sendJson(res, 502, { error: err.message });
      }
    }
    default:
      return sendJson(res, 404, { error: 'unknown test-control endpoint' });
  }
}

// Convenience alias: POST /interaction/UID/login with login=...&password=... (the devInteractions
// form itself posts to /interaction/UID with prompt=login; both work).
const LOGIN_ALIAS = /^\/interaction\/([A-Za-z0-9_-]+)\/login$/;

async function loginAlias(req, res) {
  const p = await parseParams(req);
  if (!p.login) return sendJson(res, 400, { error: 'login is required' });
  await provider.interactionFinished(req, res, { login: { accountId: p.login } }, { mergeWithLastSubmission: false });
}

async function handle(req, res) {
  const started = Date.now();
  if (LOG_REQUESTS) {
    res.on('finish', () => log(req.method, req.url.split('?')[0], res.statusCode, `${Date.now() - started}ms`));
  }
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname.startsWith('/__test/')) return await testControl(req, res, url);
    if (req.method === 'POST' && LOGIN_ALIAS.test(url.pathname)) return await loginAlias(req, res);
    if (userinfoFault && url.pathname === '/me') return userinfoWithFault(res);
    if (stripIdToken && req.method === 'POST' && url.pathname === '/token') withoutIdToken(res);
  } catch (err) {
    log('test endpoint error', err);
    if (!res.headersSent) return sendJson(res, 400, { error: err.message });
    return res.end();
  }
  return callback(req, res);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    log('unhandled', err);
    if (!res.headersSent) sendJson(res, 500, { error: 'internal' });
    else res.end();
  });
});

server.listen(PORT, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  installProvider();
  fs.writeFileSync(path.join(STATE_DIR, 'provider.json'), `${JSON.stringify({
    issuer,
    api_audience: API_AUDIENCE,
    resource_jwt: [...RESOURCE_JWT],
    resource_opaque: [...RESOURCE_OPAQUE],
    introspector_key_file: introspectorKey.path,
    web_jwt_key_file: webKey.path,
    pid: process.pid,
  }, null, 2)}\n`);
  log(`issuer ${issuer}, state dir ${STATE_DIR}`);
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown(signal) {
  log(`${signal}: shutting down`);
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
