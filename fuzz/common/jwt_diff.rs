//! The JWT differential harness, shared by the `jwt_verify` fuzz target and
//! `tests/jwt_differential.rs` (both include this file with `#[path]`).
//!
//! A byte string is read as a small program that rebuilds one token from a valid one: which of
//! the nine test keys (`fuzz/keys`: RS256/384/512 and PS256/384/512 on one RSA key, ES256,
//! ES384, EdDSA) the header names, then mutations — header and claim values of the wrong type or
//! at the time boundaries, duplicate members, forbidden header members, raw edits of the JSON
//! text, signing with another key, HMAC with the public key as the secret, `alg: none`,
//! signature bytes, ECDSA high-S, base64 padding and alphabet tricks, whitespace, extra dots.
//! Payload changes are signed again, so the claim checks are reached, not just the signature
//! check. The token then goes to portcullis's verifier (`provider::jwks`: `screen_header` →
//! `lookup` → `verify_with`, what `ProviderRuntime::verify_jwt` runs) and to jsonwebtoken
//! configured the same way (key by `kid`, or the one key of the header's algorithm; algorithm
//! pinned from the JWK; `exp`, `aud` and — when an issuer is configured — `iss` required; `nbf`
//! checked; leeway [`jwks::LEEWAY`]).
//!
//! The property ([`Harness::violation`]): portcullis never accepts a token that jsonwebtoken
//! rejects, and when both accept they read the same claims. Rejecting what jsonwebtoken accepts
//! is allowed (portcullis is stricter on purpose: `iat` in the future, `cnf`, `crit`, `jku`…).
//! Screening (`bearer::token_shape`, `bearer::presented`, `jwks::screen_header`) runs on every
//! token too: it must not panic, and an accepted token must screen as a JWT.

#![allow(dead_code)]

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis::auth::bearer;
use portcullis::provider::jwks::{self, KeySet, Lookup};
use serde_json::{Map, Value, json};

/// The issuer configured for the provider (unless the program turns it off).
pub const ISSUER: &str = "https://op.example";
/// The provider's `audiences`.
pub const AUDIENCES: [&str; 2] = ["api", "api2"];

const RSA_PEM: &str = include_str!("../keys/rsa2048.pem");
const P256_PEM: &str = include_str!("../keys/p256.pem");
const P384_PEM: &str = include_str!("../keys/p384.pem");
const ED25519_PEM: &str = include_str!("../keys/ed25519.pem");

/// (kid, algorithm) of the nine keys, in program order.
pub const KEYS: [(&str, Algorithm); 9] = [
    ("rs256", Algorithm::RS256),
    ("rs384", Algorithm::RS384),
    ("rs512", Algorithm::RS512),
    ("ps256", Algorithm::PS256),
    ("ps384", Algorithm::PS384),
    ("ps512", Algorithm::PS512),
    ("es256", Algorithm::ES256),
    ("es384", Algorithm::ES384),
    ("eddsa", Algorithm::EdDSA),
];

fn alg_name(a: Algorithm) -> &'static str {
    jwks::alg_name(a)
}

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).expect("test key PEM")
}

/// `RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }` → (n, e) without leading zeros.
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn tlv(b: &[u8]) -> (&[u8], &[u8]) {
        let (len, hdr) = if b[1] < 0x80 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            (
                b[2..2 + n].iter().fold(0usize, |a, x| a << 8 | *x as usize),
                2 + n,
            )
        };
        (&b[hdr..hdr + len], &b[hdr + len..])
    }
    let (seq, _) = tlv(der);
    let (n, rest) = tlv(seq);
    let (e, _) = tlv(rest);
    let strip = |v: &[u8]| v[v.iter().take_while(|x| **x == 0).count()..].to_vec();
    (strip(n), strip(e))
}

enum Signer {
    Rsa(Arc<RsaKeyPair>, &'static dyn sig::RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One test key: its signer, its public JWK, and byte strings an attacker could use as an HMAC
/// secret (the algorithm-confusion attack).
pub struct TestKey {
    pub kid: &'static str,
    pub alg: Algorithm,
    signer: Signer,
    pub jwk: Value,
    secrets: Vec<Vec<u8>>,
}

/// Which secret the HMAC confusion uses; also the order of `TestKey::secrets`.
const SECRET_KINDS: usize = 4;

/// The keys, the JWKS in both verifiers' forms, and an RNG for the randomized signatures.
pub struct Harness {
    pub keys: Vec<TestKey>,
    pub jwks: Value,
    ours: KeySet,
    theirs: JwkSet,
    audiences: Vec<String>,
    rng: SystemRandom,
}

/// The curve orders (big-endian) for the high-S signature rewrite.
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const P384_N: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// a - b for equal-length big-endian numbers, a ≥ b.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

impl Harness {
    pub fn new() -> Harness {
        let rsa = Arc::new(RsaKeyPair::from_pkcs8(&pem_der(RSA_PEM)).expect("RSA test key"));
        let (n, e) = rsa_components(rsa.public_key().as_ref());
        let p256 =
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &pem_der(P256_PEM))
                .expect("P-256 test key");
        let p384 =
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, &pem_der(P384_PEM))
                .expect("P-384 test key");
        let ed = Ed25519KeyPair::from_pkcs8(&pem_der(ED25519_PEM)).expect("Ed25519 test key");
        let mut keys = Vec::new();
        for (kid, alg) in KEYS {
            let name = alg_name(alg);
            let (signer, jwk, raw) = match alg {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => {
                    let enc: &'static dyn sig::RsaEncoding = match alg {
                        Algorithm::RS256 => &sig::RSA_PKCS1_SHA256,
                        Algorithm::RS384 => &sig::RSA_PKCS1_SHA384,
                        Algorithm::RS512 => &sig::RSA_PKCS1_SHA512,
                        Algorithm::PS256 => &sig::RSA_PSS_SHA256,
                        Algorithm::PS384 => &sig::RSA_PSS_SHA384,
                        _ => &sig::RSA_PSS_SHA512,
                    };
                    let jwk = json!({"kty": "RSA", "use": "sig", "kid": kid, "alg": name,
                        "n": B64.encode(&n), "e": B64.encode(&e)});
                    let raw = rsa.public_key().as_ref().to_vec();
                    (Signer::Rsa(rsa.clone(), enc), jwk, raw)
                }
                Algorithm::ES256 | Algorithm::ES384 => {
                    let (kp, crv, half) = if alg == Algorithm::ES256 {
                        (&p256, "P-256", 32)
                    } else {
                        (&p384, "P-384", 48)
                    };
                    let point = kp.public_key().as_ref().to_vec();
                    let jwk = json!({"kty": "EC", "use": "sig", "kid": kid, "alg": name,
                        "crv": crv, "x": B64.encode(&point[1..1 + half]),
                        "y": B64.encode(&point[1 + half..])});
                    let der = pem_der(if alg == Algorithm::ES256 {
                        P256_PEM
                    } else {
                        P384_PEM
                    });
                    let kp = EcdsaKeyPair::from_pkcs8(
                        if alg == Algorithm::ES256 {
                            &sig::ECDSA_P256_SHA256_FIXED_SIGNING
                        } else {
                            &sig::ECDSA_P384_SHA384_FIXED_SIGNING
                        },
                        &der,
                    )
                    .expect("EC test key");
                    (Signer::Ecdsa(kp), jwk, point)
                }
                _ => {
                    let x = ed.public_key().as_ref().to_vec();
                    let jwk = json!({"kty": "OKP", "use": "sig", "kid": kid, "alg": name,
                        "crv": "Ed25519", "x": B64.encode(&x)});
                    let kp = Ed25519KeyPair::from_pkcs8(&pem_der(ED25519_PEM)).expect("Ed25519");
                    (Signer::Ed(kp), jwk, x)
                }
            };
            let secrets = vec![
                jwk.to_string().into_bytes(),
                raw.clone(),
                B64.encode(&raw).into_bytes(),
                Vec::new(),
            ];
            debug_assert_eq!(secrets.len(), SECRET_KINDS);
            keys.push(TestKey {
                kid,
                alg,
                signer,
                jwk,
                secrets,
            });
        }
        let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let ours = KeySet::parse(jwks.to_string().as_bytes()).expect("our JWKS parser");
        assert_eq!(ours.keys.len(), KEYS.len(), "every test key loads");
        let theirs: JwkSet = serde_json::from_value(jwks.clone()).expect("jsonwebtoken JWKS");
        Harness {
            keys,
            jwks,
            ours,
            theirs,
            audiences: AUDIENCES.iter().map(|s| s.to_string()).collect(),
            rng: SystemRandom::new(),
        }
    }

    fn sign(&self, key: usize, msg: &[u8]) -> Vec<u8> {
        match &self.keys[key].signer {
            Signer::Rsa(kp, enc) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(*enc, &self.rng, msg, &mut out).expect("RSA sign");
                out
            }
            Signer::Ecdsa(kp) => kp
                .sign(&self.rng, msg)
                .expect("ECDSA sign")
                .as_ref()
                .to_vec(),
            Signer::Ed(kp) => kp.sign(msg).as_ref().to_vec(),
        }
    }

    /// Builds the token a program describes, at time `now` (claims are relative to it).
    pub fn token(&self, program: &[u8], now: i64) -> String {
        let case = Case::parse(program, now);
        case.build(self)
    }

    /// portcullis's verdict, as `ProviderRuntime::verify_jwt` reaches it with the keys loaded.
    pub fn ours(&self, token: &str, issuer: bool) -> Result<Map<String, Value>, String> {
        let header = jwks::screen_header(token).map_err(|e| e.to_string())?;
        match jwks::lookup(&self.ours, &header).map_err(|e| e.to_string())? {
            Lookup::Found(k) => {
                jwks::verify_with(token, k, issuer.then_some(ISSUER), &self.audiences)
                    .map_err(|e| e.to_string())
            }
            Lookup::Missing => Err("unknown key".into()),
        }
    }

    /// jsonwebtoken's verdict, configured like portcullis.
    pub fn theirs(&self, token: &str, issuer: bool) -> Result<Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        let jwk = match &header.kid {
            Some(kid) => self.theirs.find(kid).ok_or("unknown kid")?,
            None => {
                let mut fit = self.theirs.keys.iter().filter(|k| {
                    k.common
                        .key_algorithm
                        .and_then(|a| Algorithm::try_from(a).ok())
                        == Some(header.alg)
                });
                match (fit.next(), fit.next()) {
                    (Some(k), None) => k,
                    _ => return Err("no single key for the algorithm".into()),
                }
            }
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::try_from(a).ok())
            .ok_or("JWK without alg")?;
        let mut v = Validation::new(alg);
        v.leeway = jwks::LEEWAY;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_audience(&AUDIENCES);
        if issuer {
            v.set_issuer(&[ISSUER]);
            v.set_required_spec_claims(&["exp", "aud", "iss"]);
        } else {
            v.set_required_spec_claims(&["exp", "aud"]);
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key: {e}"))?;
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }

    /// Runs one program through both verifiers (and the screening). The clock is read before
    /// and after; a program that straddles a second boundary is run again, so a verdict never
    /// depends on the two verifiers reading different seconds.
    pub fn run(&self, program: &[u8]) -> Verdict {
        let mut tries = 0;
        loop {
            let now = jwks::now();
            let case = Case::parse(program, now);
            let token = case.build(self);
            screen(&token);
            // Ours first: if the second ticks between the calls, jsonwebtoken sees the later
            // time, which can only make `exp` stricter and `nbf` looser.
            let ours = self.ours(&token, case.issuer);
            let theirs = self.theirs(&token, case.issuer);
            tries += 1;
            if jwks::now() == now || tries >= 4 {
                return Verdict {
                    token,
                    issuer: case.issuer,
                    ours,
                    theirs,
                };
            }
        }
    }

    /// The property. `Some(why)` when it is violated.
    pub fn violation(&self, v: &Verdict) -> Option<String> {
        match (&v.ours, &v.theirs) {
            (Ok(_), Err(e)) => Some(format!(
                "portcullis ACCEPTS a token jsonwebtoken rejects ({e}){}\n  token: {}\n  issuer configured: {}\n{}",
                looser_class(&v.token).map_or(String::new(), |c| format!(" [class: {c}]")),
                v.token,
                v.issuer,
                describe(&v.token)
            )),
            (Ok(a), Ok(b)) if a != b => Some(format!(
                "both accept but read different claims\n  ours:   {a:?}\n  theirs: {b:?}\n  token: {}",
                v.token
            )),
            (Ok(_), Ok(_)) => match bearer::token_shape(v.token.as_bytes()) {
                Ok((_, true)) => None,
                other => Some(format!(
                    "an accepted token does not screen as a JWT ({:?})\n  token: {}",
                    other.map(|(_, jwt)| jwt).map_err(|e| e.to_string()),
                    v.token
                )),
            },
            _ => None,
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

/// Screening must never panic, whatever the token: the cheap shape check that routes a token to
/// JWT verification or introspection, the `Authorization` header reader, the header screen.
pub fn screen(token: &str) {
    let _ = bearer::token_shape(token.as_bytes());
    let _ = jwks::screen_header(token);
    if let Ok(v) = http::HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()) {
        let mut b = http::Request::builder();
        if let Some(h) = b.headers_mut() {
            h.insert(http::header::AUTHORIZATION, v);
        }
        if let Ok(r) = b.body(()) {
            let (parts, ()) = r.into_parts();
            let _ = bearer::presented(&parts);
        }
    }
}

/// Where portcullis is known to accept what jsonwebtoken rejects, by class ([`looser_class`]).
/// Empty: the five classes the harness found (duplicate members, header parameter types,
/// non-string `aud` elements, times outside u64, non-string `sub`) are refused by
/// `provider::jwks` now. `tests/jwt_differential.rs` never tolerates a divergence; the fuzz
/// target skips a class listed here unless `JWT_DIFF_STRICT=1`, for a long campaign while a
/// fix is pending — list one only with its issue.
pub const KNOWN_LOOSER: &[&str] = &[];

/// Which class of divergence a token falls in, if any, for the violation message: the classes
/// the harness found once ([`KNOWN_LOOSER`]), so a regression is named.
pub fn looser_class(token: &str) -> Option<&'static str> {
    let mut parts = token.split('.');
    let decode = |s: Option<&str>| s.and_then(|s| B64.decode(s).ok());
    let (head, body) = (decode(parts.next()), decode(parts.next()));
    let (head, body) = (head?, body?);
    if has_duplicate_member(&head) || has_duplicate_member(&body) {
        return Some("duplicate-member");
    }
    let h: Map<String, Value> = serde_json::from_slice(&head).ok()?;
    let string_typed = [
        "typ", "cty", "kid", "nonce", "url", "x5t", "x5t#S256", "enc", "zip",
    ];
    if string_typed
        .iter()
        .any(|m| h.get(*m).is_some_and(|v| !v.is_string() && !v.is_null()))
    {
        return Some("header-member-type");
    }
    let c: Map<String, Value> = serde_json::from_slice(&body).ok()?;
    if let Some(Value::Array(a)) = c.get("aud")
        && a.iter().any(|v| !v.is_string())
    {
        return Some("aud-non-string-member");
    }
    let outside_u64 = |v: &Value| {
        v.as_u64().is_none()
            && v.as_f64()
                .is_some_and(|f| !(f.is_finite() && f >= 0.0 && f < u64::MAX as f64))
    };
    if ["exp", "nbf"]
        .iter()
        .any(|k| c.get(*k).is_some_and(outside_u64))
    {
        return Some("time-outside-u64");
    }
    if c.get("sub").is_some_and(|v| v.is_array() || v.is_object()) {
        return Some("sub-not-string");
    }
    None
}

/// Whether the top-level JSON object in `json` names a member twice.
fn has_duplicate_member(json: &[u8]) -> bool {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Dup;
    impl<'de> Visitor<'de> for Dup {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<bool, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut dup = false;
            while let Some(k) = m.next_key::<String>()? {
                dup |= !seen.insert(k);
                m.next_value::<IgnoredAny>()?;
            }
            Ok(dup)
        }
    }
    serde_json::Deserializer::from_slice(json)
        .deserialize_map(Dup)
        .unwrap_or(false)
}

/// The decoded header and payload of a token, for messages.
pub fn describe(token: &str) -> String {
    let mut out = String::new();
    for (i, seg) in token.split('.').take(2).enumerate() {
        let text = B64
            .decode(seg)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| format!("(not base64url: {seg:?})"));
        out.push_str(if i == 0 { "  header:  " } else { "  payload: " });
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// Both verdicts on one token.
pub struct Verdict {
    pub token: String,
    pub issuer: bool,
    pub ours: Result<Map<String, Value>, String>,
    pub theirs: Result<Map<String, Value>, String>,
}

// ---- the mutation program -------------------------------------------------------------------

/// Reads a program; reads past the end give 0.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn more(&self) -> bool {
        self.pos < self.data.len()
    }
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.byte()) << 8 | u16::from(self.byte())
    }
    fn pick<'t, T>(&mut self, table: &'t [T]) -> &'t T {
        &table[self.byte() as usize % table.len()]
    }
    fn rest(&mut self) -> Vec<u8> {
        let r = self.data.get(self.pos..).unwrap_or_default().to_vec();
        self.pos = self.data.len();
        r
    }
}

/// Header `alg` values (JSON).
pub const ALGS: &[&str] = &[
    "\"RS256\"",
    "\"RS384\"",
    "\"RS512\"",
    "\"PS256\"",
    "\"PS384\"",
    "\"PS512\"",
    "\"ES256\"",
    "\"ES384\"",
    "\"EdDSA\"",
    "\"none\"",
    "\"HS256\"",
    "\"HS384\"",
    "\"HS512\"",
    "\"ES512\"",
    "\"es256\"",
    "\"RS256 \"",
    "\"\"",
    "null",
    "256",
    "[\"RS256\"]",
    "\"None\"",
    "\"NONE\"",
    "\"Ed25519\"",
    "\"ES256K\"",
];

/// Header `kid` values besides the nine real ones (JSON).
const ODD_KIDS: &[&str] = &[
    "\"unknown\"",
    "\"\"",
    "null",
    "5",
    "[\"es256\"]",
    "\"ES256\"",
    "\"es256 \"",
    "\"es256\\u0000\"",
    "\"\\u0065s256\"",
];

/// Header members besides `alg`/`kid` (name, JSON value).
const HEADER_EXTRAS: &[(&str, &str)] = &[
    ("jwk", r#"{"kty":"oct","k":"AAAA"}"#),
    ("jku", r#""https://evil.example/jwks""#),
    ("x5u", r#""https://evil.example/cert""#),
    ("x5c", r#"["MIIB"]"#),
    ("crit", r#"["exp"]"#),
    ("crit", "[]"),
    ("typ", r#""at+jwt""#),
    ("typ", "5"),
    ("typ", "null"),
    ("typ", r#""JWT""#),
    ("cty", r#""JWT""#),
    ("cty", "{}"),
    ("b64", "false"),
    ("zip", r#""DEF""#),
    ("enc", r#""A128GCM""#),
    ("x5t", "5"),
    ("x5t#S256", r#""abc""#),
    ("nonce", "7"),
    ("url", r#""https://x""#),
    ("foo", r#"{"a":[1,2]}"#),
];

/// Relative times (seconds from now) around the leeway boundaries.
const REL: &[i64] = &[
    -100_000, -3600, -61, -60, -59, -1, 0, 1, 59, 60, 61, 3600, 100_000,
];

/// Absolute or odd time values (JSON).
const ODD_TIMES: &[&str] = &[
    "0",
    "-1",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e20",
    "1e300",
    "-1e300",
    "4102444800",
    "4102444800.0",
    "4.1024448e9",
    "\"4102444800\"",
    "null",
    "true",
    "[4102444800]",
    "{}",
    "-4102444800",
    "-0",
    "0.4",
];

/// A time value: relative integers, relative ± 0.4 / 0.6 (rounding), or an odd one.
fn time_value(r: &mut Reader, now: i64) -> String {
    let i = r.byte() as usize % (REL.len() * 3 + ODD_TIMES.len());
    let rel = |k: usize| now + REL[k % REL.len()];
    match i / REL.len() {
        0 => rel(i).to_string(),
        1 => format!("{}.4", rel(i)),
        2 => format!("{}.6", rel(i)),
        _ => ODD_TIMES[i - REL.len() * 3].to_string(),
    }
}

const ISSUERS: &[&str] = &[
    r#""https://op.example""#,
    r#""https://op.example/""#,
    r#""https://OP.example""#,
    r#""""#,
    "null",
    "5",
    r#"["https://op.example"]"#,
    r#"["https://op.example","x"]"#,
    r#""https:\/\/op.example""#,
    r#""https://op.example\u0000""#,
    "{}",
    r#""https://op.example ""#,
];

const AUDS: &[&str] = &[
    r#""api""#,
    r#""api2""#,
    r#""API""#,
    r#""""#,
    r#"["api"]"#,
    r#"["x","api"]"#,
    r#"["api",5]"#,
    "[]",
    r#"["x"]"#,
    "null",
    "5",
    r#"{"api":1}"#,
    r#"[["api"]]"#,
    r#""api ""#,
    r#"[null,"api"]"#,
    r#"["api","api"]"#,
    r#""ap\u0069""#,
    r#"["api",{}]"#,
];

const SUBS: &[&str] = &[r#""alice""#, r#""""#, "5", "null", r#"["alice"]"#];

/// Claims a verifier may care about besides the registered ones.
const CLAIM_EXTRAS: &[(&str, &str)] = &[
    ("cnf", r#"{"jkt":"x"}"#),
    (
        "events",
        r#"{"http://schemas.openid.net/event/backchannel-logout":{}}"#,
    ),
    ("nonce", r#""n""#),
    ("at_hash", r#""x""#),
    ("typ", r#""ID""#),
    ("scope", r#""read write""#),
    ("roles", r#"["admin"]"#),
    ("jti", "5"),
    ("azp", r#""web""#),
];

/// Bytes a token-level edit inserts.
const TOKEN_BYTES: &[u8] = b" \n\t=+/.\0A%_-";

#[derive(Clone, Copy)]
enum Part {
    Header,
    Payload,
}

/// Insert, delete or replace one byte.
#[derive(Clone, Copy)]
struct Edit {
    kind: u8,
    pos: u16,
    byte: u8,
}

impl Edit {
    fn read(r: &mut Reader) -> Edit {
        Edit {
            kind: r.byte() % 3,
            pos: r.u16(),
            byte: r.byte(),
        }
    }
    fn apply(&self, v: &mut Vec<u8>) {
        let at = self.pos as usize % (v.len() + 1);
        match self.kind {
            0 => v.insert(at, self.byte),
            1 if at < v.len() => {
                v.remove(at);
            }
            _ if at < v.len() => v[at] = self.byte,
            _ => v.push(self.byte),
        }
    }
}

#[derive(Clone, Copy)]
enum TokenEdit {
    Insert(u16, u8),
    Delete(u16),
    /// `=` or `==` after segment i.
    Pad(u8, u8),
    /// `-`→`+`, `_`→`/` in segment i.
    StdAlphabet(u8),
    /// Set the unused low bits of segment i's last character.
    TrailingBits(u8),
    AppendDot,
    PrependDot,
    /// Segment i twice (`h.h.p.s`-like shapes).
    DuplicateSegment(u8),
}

enum Signing {
    /// The signature algorithm of key i (whatever the header says).
    Key(usize),
    /// HMAC (256/384/512) with one of key i's public byte strings as the secret.
    Mac(usize, Algorithm, usize),
    /// Empty signature.
    Empty,
}

struct Case {
    issuer: bool,
    header: Vec<(String, String)>,
    payload: Vec<(String, String)>,
    header_raw: Option<Vec<u8>>,
    payload_raw: Option<Vec<u8>>,
    edits: Vec<(Part, Edit)>,
    signing: Signing,
    sig_edits: Vec<Edit>,
    high_s: bool,
    token_edits: Vec<TokenEdit>,
}

fn set(fields: &mut Vec<(String, String)>, name: &str, value: String) {
    match fields.iter_mut().find(|(k, _)| k == name) {
        Some(f) => f.1 = value,
        None => fields.push((name.to_string(), value)),
    }
}

fn json_text(fields: &[(String, String)]) -> Vec<u8> {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", body.join(",")).into_bytes()
}

impl Case {
    /// Program layout: key byte (which key the header names and signs with), flags byte
    /// (bit 0: no issuer configured; 1: no `kid`; 2: no `typ`; 3: no `nbf`; 4: no `iat`),
    /// then operations until the end (see the `match` below).
    fn parse(data: &[u8], now: i64) -> Case {
        let mut r = Reader { data, pos: 0 };
        let key = r.byte() as usize % KEYS.len();
        let flags = r.byte();
        let (kid, alg) = KEYS[key];
        let mut header = vec![("alg".to_string(), format!("\"{}\"", alg_name(alg)))];
        if flags & 4 == 0 {
            header.push(("typ".into(), "\"JWT\"".into()));
        }
        if flags & 2 == 0 {
            header.push(("kid".into(), format!("\"{kid}\"")));
        }
        let mut payload = vec![
            ("iss".to_string(), format!("\"{ISSUER}\"")),
            ("sub".into(), "\"alice\"".into()),
            ("aud".into(), "\"api\"".into()),
            ("exp".into(), (now + 600).to_string()),
        ];
        if flags & 8 == 0 {
            payload.push(("nbf".into(), (now - 10).to_string()));
        }
        if flags & 16 == 0 {
            payload.push(("iat".into(), (now - 10).to_string()));
        }
        let mut c = Case {
            issuer: flags & 1 == 0,
            header,
            payload,
            header_raw: None,
            payload_raw: None,
            edits: Vec::new(),
            signing: Signing::Key(key),
            sig_edits: Vec::new(),
            high_s: false,
            token_edits: Vec::new(),
        };
        let kid_value = |r: &mut Reader| {
            let i = r.byte() as usize % (KEYS.len() + ODD_KIDS.len());
            match KEYS.get(i) {
                Some((k, _)) => format!("\"{k}\""),
                None => ODD_KIDS[i - KEYS.len()].to_string(),
            }
        };
        let mut ops = 0;
        while r.more() && ops < 64 {
            ops += 1;
            match r.byte() % 20 {
                0 => set(&mut c.header, "alg", r.pick(ALGS).to_string()),
                1 => {
                    let v = kid_value(&mut r);
                    set(&mut c.header, "kid", v)
                }
                2 => {
                    let i = r.byte() as usize;
                    if !c.header.is_empty() {
                        c.header.remove(i % c.header.len());
                    }
                }
                3 => {
                    let (k, v) = r.pick(HEADER_EXTRAS);
                    c.header.push((k.to_string(), v.to_string()));
                }
                4 => {
                    let name = *r.pick(&["exp", "nbf", "iat"]);
                    let v = time_value(&mut r, now);
                    set(&mut c.payload, name, v);
                }
                5 => set(&mut c.payload, "iss", r.pick(ISSUERS).to_string()),
                6 => set(&mut c.payload, "aud", r.pick(AUDS).to_string()),
                7 => set(&mut c.payload, "sub", r.pick(SUBS).to_string()),
                8 => {
                    let i = r.byte() as usize;
                    if !c.payload.is_empty() {
                        c.payload.remove(i % c.payload.len());
                    }
                }
                9 => {
                    let (k, v) = r.pick(CLAIM_EXTRAS);
                    c.payload.push((k.to_string(), v.to_string()));
                }
                10 => {
                    // A duplicate member, appended (serde_json keeps the last one).
                    let (name, v) = match r.byte() % 7 {
                        0 => ("exp", time_value(&mut r, now)),
                        1 => ("nbf", time_value(&mut r, now)),
                        2 => ("iss", r.pick(ISSUERS).to_string()),
                        3 => ("aud", r.pick(AUDS).to_string()),
                        4 => ("sub", r.pick(SUBS).to_string()),
                        5 => ("alg", r.pick(ALGS).to_string()),
                        _ => ("kid", kid_value(&mut r)),
                    };
                    let target = if matches!(name, "alg" | "kid") {
                        &mut c.header
                    } else {
                        &mut c.payload
                    };
                    let at = r.byte() as usize % (target.len() + 1);
                    target.insert(at, (name.to_string(), v));
                }
                11 => c.edits.push((Part::Header, Edit::read(&mut r))),
                12 => c.edits.push((Part::Payload, Edit::read(&mut r))),
                13 => c.signing = Signing::Key(r.byte() as usize % KEYS.len()),
                14 => {
                    let (name, mac) = *r.pick(&[
                        ("HS256", Algorithm::HS256),
                        ("HS384", Algorithm::HS384),
                        ("HS512", Algorithm::HS512),
                    ]);
                    let k = r.byte() as usize % KEYS.len();
                    let secret = r.byte() as usize % SECRET_KINDS;
                    set(&mut c.header, "alg", format!("\"{name}\""));
                    c.signing = Signing::Mac(k, mac, secret);
                }
                15 => {
                    set(&mut c.header, "alg", "\"none\"".into());
                    c.signing = Signing::Empty;
                }
                16 => c.sig_edits.push(Edit::read(&mut r)),
                17 => c.high_s = true,
                18 => {
                    let e = match r.byte() % 8 {
                        0 => TokenEdit::Insert(r.u16(), *r.pick(TOKEN_BYTES)),
                        1 => TokenEdit::Delete(r.u16()),
                        2 => TokenEdit::Pad(r.byte() % 3, 1 + r.byte() % 2),
                        3 => TokenEdit::StdAlphabet(r.byte() % 3),
                        4 => TokenEdit::TrailingBits(r.byte() % 3),
                        5 => TokenEdit::AppendDot,
                        6 => TokenEdit::PrependDot,
                        _ => TokenEdit::DuplicateSegment(r.byte() % 3),
                    };
                    c.token_edits.push(e);
                }
                _ => {
                    // Raw JSON text for the header or the payload: the rest of the program.
                    let header = r.byte().is_multiple_of(2);
                    let raw = r.rest();
                    if header {
                        c.header_raw = Some(raw);
                    } else {
                        c.payload_raw = Some(raw);
                    }
                }
            }
        }
        c
    }

    fn build(&self, h: &Harness) -> String {
        let mut head = self
            .header_raw
            .clone()
            .unwrap_or_else(|| json_text(&self.header));
        let mut body = self
            .payload_raw
            .clone()
            .unwrap_or_else(|| json_text(&self.payload));
        for (part, e) in &self.edits {
            match part {
                Part::Header => e.apply(&mut head),
                Part::Payload => e.apply(&mut body),
            }
        }
        let input = format!("{}.{}", B64.encode(&head), B64.encode(&body));
        let mut signature = match self.signing {
            Signing::Key(k) => h.sign(k, input.as_bytes()),
            Signing::Mac(k, alg, secret) => {
                let a = match alg {
                    Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
                    Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
                    _ => aws_lc_rs::hmac::HMAC_SHA256,
                };
                let key = aws_lc_rs::hmac::Key::new(a, &h.keys[k].secrets[secret]);
                aws_lc_rs::hmac::sign(&key, input.as_bytes())
                    .as_ref()
                    .to_vec()
            }
            Signing::Empty => Vec::new(),
        };
        if self.high_s {
            let n = match signature.len() {
                64 => Some(hex(P256_N)),
                96 => Some(hex(P384_N)),
                _ => None,
            };
            if let Some(n) = n
                && let Signing::Key(k) = self.signing
                && matches!(h.keys[k].alg, Algorithm::ES256 | Algorithm::ES384)
            {
                let half = signature.len() / 2;
                let s = sub_be(&n, &signature[half..]);
                signature.truncate(half);
                signature.extend_from_slice(&s);
            }
        }
        for e in &self.sig_edits {
            e.apply(&mut signature);
        }
        let mut token = format!("{input}.{}", B64.encode(&signature)).into_bytes();
        for e in &self.token_edits {
            token_edit(&mut token, *e);
        }
        String::from_utf8_lossy(&token).into_owned()
    }
}

/// Byte range of dot-separated segment `i` (clamped to the last one).
fn segment(token: &[u8], i: u8) -> std::ops::Range<usize> {
    let mut start = 0;
    let mut n = 0;
    for (at, b) in token.iter().enumerate() {
        if *b == b'.' {
            if n == i {
                return start..at;
            }
            n += 1;
            start = at + 1;
        }
    }
    start..token.len()
}

fn token_edit(t: &mut Vec<u8>, e: TokenEdit) {
    match e {
        TokenEdit::Insert(pos, b) => {
            let at = pos as usize % (t.len() + 1);
            t.insert(at, b);
        }
        TokenEdit::Delete(pos) => {
            if !t.is_empty() {
                let at = pos as usize % t.len();
                t.remove(at);
            }
        }
        TokenEdit::Pad(i, n) => {
            let end = segment(t, i).end;
            for _ in 0..n {
                t.insert(end, b'=');
            }
        }
        TokenEdit::StdAlphabet(i) => {
            let r = segment(t, i);
            for b in &mut t[r] {
                *b = match *b {
                    b'-' => b'+',
                    b'_' => b'/',
                    x => x,
                };
            }
        }
        TokenEdit::TrailingBits(i) => {
            let r = segment(t, i);
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            if r.len() % 4 >= 2
                && let Some(last) = t.get_mut(r.end.wrapping_sub(1))
                && let Some(idx) = ALPHABET.iter().position(|c| c == last)
            {
                *last = ALPHABET[idx | 1];
            }
        }
        TokenEdit::AppendDot => t.push(b'.'),
        TokenEdit::PrependDot => t.insert(0, b'.'),
        TokenEdit::DuplicateSegment(i) => {
            let r = segment(t, i);
            let mut copy = t[r.clone()].to_vec();
            copy.push(b'.');
            t.splice(r.start..r.start, copy);
        }
    }
}

/// Seed programs: one valid token per key (with and without `kid`, with no issuer
/// configured) and one program per kind of mutation.
pub fn seed_programs() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (k, (kid, _)) in KEYS.iter().enumerate() {
        let k = k as u8;
        out.push((format!("valid-{kid}"), vec![k, 0]));
        out.push((format!("valid-{kid}-nokid"), vec![k, 2]));
        out.push((format!("valid-{kid}-noiss"), vec![k, 1]));
    }
    let es = 6u8; // es256
    let rs = 0u8;
    let named: &[(&str, Vec<u8>)] = &[
        ("alg-none", vec![rs, 0, 15]),
        ("hs256-jwk-secret", vec![rs, 0, 14, 0, 0, 0]),
        ("hs256-raw-secret", vec![es, 0, 14, 0, 6, 1]),
        ("alg-swap-ps256", vec![rs, 0, 0, 3]),
        ("kid-other", vec![es, 0, 1, 7]),
        ("kid-null", vec![es, 0, 1, 11]),
        ("jku", vec![es, 0, 3, 1]),
        ("crit", vec![es, 0, 3, 4]),
        ("typ-number", vec![es, 0, 3, 7]),
        ("exp-boundary", vec![es, 0, 4, 0, 3]),
        ("exp-float", vec![es, 0, 4, 0, 13 + 4]),
        ("exp-huge", vec![es, 0, 4, 0, 39 + 6]),
        ("nbf-negative", vec![es, 0, 4, 1, 39 + 1]),
        ("iat-future", vec![es, 0, 4, 2, 11]),
        ("iss-array", vec![es, 0, 5, 6]),
        ("iss-number-noiss", vec![es, 1, 5, 5]),
        ("aud-array-mixed", vec![es, 0, 6, 6]),
        ("sub-array", vec![es, 0, 7, 4]),
        ("sub-number", vec![es, 0, 7, 2]),
        ("cty-object", vec![es, 0, 3, 11]),
        ("nonce-number", vec![es, 0, 3, 17]),
        ("x5t-number", vec![es, 0, 3, 15]),
        ("iat-negative", vec![es, 0, 4, 2, 39 + 1]),
        ("dup-custom-claim", vec![es, 0, 9, 6, 9, 6]),
        ("aud-missing", vec![es, 0, 8, 2]),
        ("cnf", vec![es, 0, 9, 0]),
        ("dup-exp", vec![es, 0, 10, 0, 3, 9]),
        ("dup-alg", vec![es, 0, 10, 5, 9, 0]),
        ("header-space", vec![es, 0, 11, 0, 0, 1, b' ']),
        ("payload-trailing", vec![es, 0, 12, 0, 255, 255, b' ']),
        ("other-key", vec![es, 0, 13, 7]),
        ("sig-flip", vec![es, 0, 16, 2, 0, 5, 1]),
        ("high-s", vec![es, 0, 17]),
        ("pad", vec![es, 0, 18, 2, 2, 0]),
        ("std-alphabet", vec![es, 0, 18, 3, 2]),
        ("trailing-bits", vec![es, 0, 18, 4, 1]),
        ("extra-dot", vec![es, 0, 18, 5]),
        ("space-in-token", vec![es, 0, 18, 0, 0, 30, 0]),
        ("raw-payload", {
            let mut v = vec![es, 0, 19, 1];
            v.extend_from_slice(
                br#"{"iss":"https://op.example","aud":"api","exp":4102444800,"sub":"raw"}"#,
            );
            v
        }),
    ];
    out.extend(named.iter().map(|(n, p)| (n.to_string(), p.clone())));
    out
}
