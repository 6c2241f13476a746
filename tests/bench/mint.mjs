// Token material for the bearer benchmark (no dependencies beyond Node's standard library).
//
//   node mint.mjs jwt    DIR ISSUER N   → DIR/jwks.json, DIR/openid-configuration.json,
//                                          DIR/tokens.txt (N distinct RS256 JWTs, one per line)
//   node mint.mjs opaque DIR ISSUER N   → DIR/opaque.txt: N opaque tokens of client api-admin from
//                                          the test provider (tests/provider) at ISSUER
//
// The JWTs carry the role `admin` twice: as ZITADEL's role map (what portcullis reads with
// roles_claim = "auto") and as a plain `roles` array (what mod_auth_openidc's `Require claim
// roles:admin` can match — it cannot address a claim name containing ':').
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const [mode, dir, issuer, nStr] = process.argv.slice(2);
const n = Number.parseInt(nStr ?? '1000', 10);
if (!mode || !dir || !issuer || !Number.isInteger(n) || n <= 0) {
  console.error('usage: node mint.mjs jwt|opaque DIR ISSUER N');
  process.exit(2);
}
fs.mkdirSync(dir, { recursive: true });
const b64 = (x) => Buffer.from(x).toString('base64url');

if (mode === 'jwt') {
  // PEM out, then re-import: avoids a Node 20 deadlock exporting a generator-owned KeyObject.
  const { privateKey: pem } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  const privateKey = crypto.createPrivateKey(pem);
  const publicKey = crypto.createPublicKey(privateKey);
  const kid = `bench-${crypto.randomBytes(4).toString('hex')}`;
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  fs.writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
  fs.writeFileSync(
    path.join(dir, 'openid-configuration.json'),
    JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }),
  );
  const now = Math.floor(Date.now() / 1000);
  const head = b64(JSON.stringify({ alg: 'RS256', typ: 'at+jwt', kid }));
  const lines = [];
  for (let i = 0; i < n; i += 1) {
    const claims = {
      iss: issuer,
      aud: 'portcullis-api',
      sub: `bench-user-${i}`,
      client_id: 'bench',
      iat: now,
      exp: now + 4 * 3600,
      jti: crypto.randomBytes(12).toString('hex'),
      roles: ['admin', 'reader'],
      'urn:zitadel:iam:org:project:roles': { admin: { 123456: 'acme.localhost' }, reader: { 123456: 'acme.localhost' } },
    };
    const input = `${head}.${b64(JSON.stringify(claims))}`;
    const sig = crypto.sign('sha256', Buffer.from(input), privateKey);
    lines.push(`${input}.${b64(sig)}`);
  }
  fs.writeFileSync(path.join(dir, 'tokens.txt'), `${lines.join('\n')}\n`);
} else if (mode === 'opaque') {
  const auth = `Basic ${Buffer.from('api-admin:api-admin-secret').toString('base64')}`;
  const out = new Array(n);
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next;
      next += 1;
      const r = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials&resource=urn%3Aportcullis%3Aapi%3Aopaque',
      });
      if (!r.ok) throw new Error(`token request: ${r.status} ${await r.text()}`);
      out[i] = (await r.json()).access_token;
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker));
  fs.writeFileSync(path.join(dir, 'opaque.txt'), `${out.join('\n')}\n`);
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
