//! Harness for tests against OpenID providers, no mocks:
//! - [`OidcProvider`]: the real test provider (`tests/provider/provider.mjs`, npm
//!   `oidc-provider`) as a child process on an ephemeral port; its stderr request log is kept
//!   so tests can count calls ([`OidcProvider::count`]). Killed on drop.
//! - [`TestIssuer`]: a tiny issuer in the test process (discovery + JWKS) whose keys the test
//!   holds, to mint tokens the real provider would never issue (expired, wrong `aud`, …).
//! - JWT helpers: [`raw_jwt`], [`payload`], [`hs256`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{b64, basic, form, http_req, now};

// ---------------------------------------------------------------------------------------------
// The real provider
// ---------------------------------------------------------------------------------------------

pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    pub state_dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl OidcProvider {
    /// Starts `node tests/provider/provider.mjs` (runs `npm ci` first when node_modules is
    /// missing; see `support/provider.rs`). Fails the test with a clear message when node is not
    /// installed.
    pub fn start(env: &[(&str, &str)]) -> OidcProvider {
        let state_dir = tempfile::tempdir().expect("state dir");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (child, issuer) = super::provider::start(
            state_dir.path(),
            env,
            super::provider::Stderr::Lines(log.clone()),
        );
        OidcProvider {
            child,
            issuer,
            state_dir,
            log,
        }
    }

    /// Request-log lines (stderr) containing `needle`, e.g. "POST /token/introspection".
    pub fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// [`Self::count`] once the provider's log has caught up: its lines reach us through a
    /// reader thread, so a request that already answered may not be counted yet. Waits (at most
    /// 3 s) until at least `at_least` lines match, then 200 ms more for stragglers.
    pub async fn count_settled(&self, needle: &str, at_least: usize) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while self.count(needle) < at_least && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.count(needle)
    }

    pub fn introspector_key_file(&self) -> PathBuf {
        self.state_dir.path().join("zitadel-introspector-key.json")
    }

    /// client_credentials token for an `api-*` client; `resource` None = opaque, no aud.
    pub async fn token(&self, client: &str, resource: Option<&str>) -> String {
        let mut f = vec![("grant_type", "client_credentials")];
        if let Some(r) = resource {
            f.push(("resource", r));
        }
        let (st, _, body) = http_req(
            "POST",
            &format!("{}/token", self.issuer),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &basic(client, &format!("{client}-secret"))),
            ],
            Some(form(&f)),
        )
        .await;
        assert_eq!(st, 200, "token request failed: {body}");
        let v: Value = serde_json::from_str(&body).expect("token json");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A JWT access token (aud = portcullis-api).
    pub async fn jwt(&self, client: &str) -> String {
        self.token(client, Some("urn:portcullis:api")).await
    }

    /// Revokes a token of `client` (RFC 7009).
    pub async fn revoke(&self, client: &str, token: &str) {
        let (st, _, body) = http_req(
            "POST",
            &format!("{}/token/revocation", self.issuer),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &basic(client, &format!("{client}-secret"))),
            ],
            Some(form(&[("token", token)])),
        )
        .await;
        assert_eq!(st, 200, "revocation failed: {body}");
    }

    pub async fn rotate_keys(&self) -> Value {
        let (st, _, body) = http_req(
            "POST",
            &format!("{}/__test/rotate-keys", self.issuer),
            &[],
            None,
        )
        .await;
        assert_eq!(st, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn jwks(&self) -> Value {
        let (_, _, body) = http_req("GET", &format!("{}/jwks", self.issuer), &[], None).await;
        serde_json::from_str(&body).unwrap()
    }

    /// Kills the process (provider outage).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// An issuer whose keys the test holds
// ---------------------------------------------------------------------------------------------

pub struct TestIssuer {
    pub addr: SocketAddr,
    pub issuer: String,
    pub rsa: EncodingKey,
    pub rsa_kid: String,
    /// The RSA public key as PKCS#1/X.509 DER and its modulus — material for HMAC confusion.
    pub rsa_public_der: Vec<u8>,
    pub rsa_public_pem: String,
    pub ec: EncodingKey,
    pub jwks_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    pub async fn start() -> TestIssuer {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
        use aws_lc_rs::signature::KeyPair as _;
        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa_pk8: Pkcs8V1Der = rsa.as_der().unwrap();
        let pubk = rsa.public_key();
        let n = b64(pubk.modulus().big_endian_without_leading_zero());
        let e = b64(pubk.exponent().big_endian_without_leading_zero());
        let x509: PublicKeyX509Der = pubk.as_der().unwrap();
        let rsa_public_der = x509.as_ref().to_vec();
        let rsa_public_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&rsa_public_der)
        );
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .unwrap();
        let ec_pk8 = ec.to_pkcs8v1().unwrap();
        let pt = ec.public_key().as_ref().to_vec();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "test-rsa", "alg": "RS256", "use": "sig", "n": n, "e": e},
            {"kty": "EC", "crv": "P-256", "kid": "test-ec", "x": b64(&pt[1..33]), "y": b64(&pt[33..65])},
        ]})
        .to_string();
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
        })
        .to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let h2 = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let (jwks, discovery, hits) = (jwks.clone(), discovery.clone(), h2.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let body = match req.uri().path() {
                            "/jwks" => {
                                hits.fetch_add(1, Ordering::SeqCst);
                                Some(jwks.clone())
                            }
                            "/.well-known/openid-configuration" => Some(discovery.clone()),
                            _ => None,
                        };
                        async move {
                            let mut r = Response::new(Full::new(Bytes::from(
                                body.clone().unwrap_or_default(),
                            )));
                            if body.is_none() {
                                *r.status_mut() = StatusCode::NOT_FOUND;
                            }
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        TestIssuer {
            addr,
            issuer,
            rsa: EncodingKey::from_rsa_der(&pkcs8_to_pkcs1(&rsa_pk8)),
            rsa_kid: "test-rsa".into(),
            rsa_public_der,
            rsa_public_pem,
            ec: EncodingKey::from_ec_der(ec_pk8.as_ref()),
            jwks_hits: hits,
            task,
        }
    }

    /// Default claims of a good token: iss, aud, sub, exp in 5 min, iat now.
    pub fn claims(&self) -> Value {
        json!({"iss": self.issuer, "aud": "portcullis-api", "sub": "forged-user", "iat": now(), "exp": now() + 300,
               "roles": ["admin"]})
    }

    pub fn sign_rs256(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &self.rsa).unwrap()
    }

    pub fn sign_es256(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, &self.ec).unwrap()
    }
}

/// jsonwebtoken's `from_rsa_der` wants PKCS#1; aws-lc-rs exports PKCS#8. The PKCS#1 key is
/// the OCTET STRING inside the PKCS#8 structure: parse the few DER headers needed.
fn pkcs8_to_pkcs1(pk8: &aws_lc_rs::encoding::Pkcs8V1Der) -> Vec<u8> {
    fn read_len(b: &[u8], i: &mut usize) -> usize {
        let first = b[*i];
        *i += 1;
        if first < 0x80 {
            return first as usize;
        }
        let n = (first & 0x7f) as usize;
        let mut len = 0usize;
        for _ in 0..n {
            len = (len << 8) | b[*i] as usize;
            *i += 1;
        }
        len
    }
    fn skip(b: &[u8], i: &mut usize) {
        *i += 1;
        let l = read_len(b, i);
        *i += l;
    }
    let b = pk8.as_ref();
    let mut i = 0;
    assert_eq!(b[i], 0x30);
    i += 1;
    read_len(b, &mut i); // outer SEQUENCE
    skip(b, &mut i); // version INTEGER
    skip(b, &mut i); // AlgorithmIdentifier SEQUENCE
    assert_eq!(b[i], 0x04, "OCTET STRING");
    i += 1;
    let l = read_len(b, &mut i);
    b[i..i + l].to_vec()
}

/// Builds an unsigned (`alg: none`) or arbitrary-header token from parts.
pub fn raw_jwt(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(sig)
    )
}

/// The payload of a JWT as JSON (no verification).
pub fn payload(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

/// HS256 over header.payload with `secret`.
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(tag.as_ref()))
}
