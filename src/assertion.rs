//! The signed identity assertion: when `[headers] assertion = "X-Portcullis-Assertion"`, each
//! forwarded request carries a short-lived ES256 JWT of the identity, signed by the proxy's own
//! key, so an upstream can verify it really sits behind portcullis (a forged plain
//! `X-Forwarded-User` reaching it by another path fails that check). The public key is served at
//! `/.auth/jwks` as `{"keys": [ … ]}` with a `kid` (RFC 7638 thumbprint).
//!
//! Claims: `iss` = the `[server] public_url` origin (or `"portcullis"` when unset), `aud` = the
//! route's name, `sub`, `email` (only when not `email_verified: false`), `name`,
//! `preferred_username`, `roles`, `orgs` (ZITADEL: ids of the organizations that granted any
//! role, sorted), `idp` (the name of the provider that vouched for the identity)
//! and `idp_iss` (that provider's issuer) — `sub` alone is only unique per provider, so an
//! upstream behind several providers keys users by (`idp_iss`, `sub`) — `iat`, `exp` = iat + 60 s.
//! Key: `[headers] assertion_key_file` (PEM PKCS#8 EC P-256); generated at start otherwise — then
//! each restart and each replica has its own key, so upstreams must fetch `/.auth/jwks` by `kid`.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use http::{HeaderValue, Response, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Body, full};
use crate::identity::Identity;

/// Lifetime of an assertion.
pub const ASSERTION_TTL: i64 = 60;

pub struct AssertionSigner {
    key: EncodingKey,
    kid: String,
    jwk: Value,
    issuer: String,
    /// Provider name → its configured issuer (`idp_iss`).
    provider_issuers: std::collections::HashMap<String, String>,
    /// The key was generated at start (no `assertion_key_file`): a config reload keeps it.
    generated: bool,
    /// Keys a reload replaced, still published at `/.auth/jwks` until the given unix time: an
    /// assertion they signed (up to [`ASSERTION_TTL`] old) must keep verifying.
    retired: Vec<(Value, i64)>,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let pkcs8: Vec<u8> = match &cfg.headers.assertion_key_file {
            Some(path) => {
                use rustls::pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
                let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| {
                    format!("{}: not a PEM PKCS#8 private key ({e})", path.display())
                })?;
                der.secret_pkcs8_der().to_vec()
            }
            None => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(|e| format!("generating the assertion key: {e}"))?
                .as_ref()
                .to_vec(),
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|e| format!("the assertion key must be an EC P-256 key: {e}"))?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err("unexpected EC public key encoding".into());
        }
        let b64 = |x: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
        let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
        // RFC 7638 thumbprint: members in lexicographic order, no whitespace.
        let thumb = format!("{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{x}\",\"y\":\"{y}\"}}");
        let kid = b64(&Sha256::digest(thumb.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
        let issuer = cfg
            .server
            .public_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|| "portcullis".to_string());
        let provider_issuers = cfg
            .providers
            .values()
            .filter_map(|p| Some((p.name.clone(), p.issuer.clone()?)))
            .collect();
        Ok(AssertionSigner {
            key: EncodingKey::from_ec_der(&pkcs8),
            kid,
            jwk,
            issuer,
            provider_issuers,
            generated: cfg.headers.assertion_key_file.is_none(),
            retired: Vec::new(),
        })
    }

    /// The signer for a reloaded `cfg`: a generated key is kept (upstreams that cached it by
    /// `kid` keep verifying), a key file is read again; issuers are the new config's. A key
    /// that a reload replaced stays published at `/.auth/jwks` for [`ASSERTION_TTL`] + 60 s,
    /// so what it signed just before keeps verifying.
    pub fn carry_over(&self, cfg: &Config) -> Result<Self, String> {
        let fresh = Self::new(cfg)?;
        let now = crate::session::now();
        let mut retired: Vec<(Value, i64)> = (self.retired.iter())
            .filter(|(jwk, until)| *until > now && jwk["kid"] != fresh.kid.as_str())
            .cloned()
            .collect();
        if self.generated && cfg.headers.assertion_key_file.is_none() {
            return Ok(AssertionSigner {
                key: self.key.clone(),
                kid: self.kid.clone(),
                jwk: self.jwk.clone(),
                retired,
                ..fresh
            });
        }
        if fresh.kid != self.kid {
            // (a minute of clock skew at the verifier on top of the lifetime)
            retired.push((self.jwk.clone(), now + ASSERTION_TTL + 60));
        }
        Ok(AssertionSigner { retired, ..fresh })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A fresh assertion of `id` for the route `audience`.
    pub fn sign(&self, id: &Identity, audience: &str) -> Option<String> {
        let now = crate::session::now();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        // The configured issuer; a provider configured without one (explicit endpoints) is
        // named by its tokens' `iss`.
        let idp_iss = self
            .provider_issuers
            .get(&*id.provider)
            .map(String::as_str)
            .or_else(|| id.claims.get("iss").and_then(Value::as_str));
        let claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": id.sub,
            "idp": &*id.provider,
            "idp_iss": idp_iss,
            "email": id.verified_email(),
            "name": id.name,
            "preferred_username": id.preferred_username,
            "roles": id.roles,
            "orgs": id.org_roles.orgs(),
            "iat": now,
            "exp": now + ASSERTION_TTL,
        });
        match jsonwebtoken::encode(&h, &claims, &self.key) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "signing the identity assertion failed");
                None
            }
        }
    }

    /// `GET /.auth/jwks`.
    pub fn jwks_response(&self) -> Response<Body> {
        let now = crate::session::now();
        let retired = (self.retired.iter()).filter(|(_, until)| *until > now);
        let keys: Vec<&Value> = std::iter::once(&self.jwk)
            .chain(retired.map(|(jwk, _)| jwk))
            .collect();
        let body = json!({ "keys": keys }).to_string();
        let mut r = Response::new(full(body));
        *r.status_mut() = StatusCode::OK;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_against_its_jwk() {
        let src = "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"https://app.example.com\"\n[providers.p]\njwks_uri = \"http://127.0.0.1:1/jwks\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:2\"\nauth = \"bearer\"\n";
        let cfg = crate::config::load_str(std::path::Path::new("t.toml"), src, Default::default())
            .unwrap();
        let s = AssertionSigner::new(&cfg).unwrap();
        let id = Identity {
            sub: "u1".into(),
            roles: vec!["admin".into()],
            ..Default::default()
        };
        let t = s.sign(&id, "api").unwrap();
        let set =
            crate::provider::jwks::KeySet::parse(json!({"keys": [s.jwk]}).to_string().as_bytes())
                .unwrap();
        let h = crate::provider::jwks::screen_header(&t).unwrap();
        let crate::provider::jwks::Lookup::Found(k) =
            crate::provider::jwks::lookup(&set, &h).unwrap()
        else {
            panic!()
        };
        let c = crate::provider::jwks::verify_with(
            &t,
            k,
            Some("https://app.example.com"),
            &["api".into()],
        )
        .unwrap();
        assert_eq!(c["sub"], "u1");
        assert_eq!(c["roles"], json!(["admin"]));
    }
}
