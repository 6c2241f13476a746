//! RFC 7523 client assertions (`private_key_jwt`) signed with a ZITADEL key file:
//! header `{alg: RS256, kid: keyId}`, claims iss = sub = clientId, aud = the issuer, iat,
//! exp = iat + 60 s, and a random `jti` (providers reject replays).

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde_json::json;

use crate::config::ZitadelKey;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A parsed key file, ready to sign.
pub struct ClientKey {
    pub client_id: String,
    key_id: String,
    key: EncodingKey,
}

impl ClientKey {
    pub fn new(k: &ZitadelKey) -> Result<Self, String> {
        // Parsed at config load; a key built elsewhere is parsed here.
        let key = match &k.signing_key {
            Some(key) => key.clone(),
            None => EncodingKey::from_rsa_pem(k.key.as_bytes())
                .map_err(|e| format!("key file {}: {e}", k.key_id))?,
        };
        let client_id = k
            .subject()
            .ok_or("key file has neither clientId nor userId")?
            .to_string();
        Ok(ClientKey {
            client_id,
            key_id: k.key_id.clone(),
            key,
        })
    }

    /// A fresh assertion for `audience` (the issuer).
    pub fn assertion(&self, audience: &str) -> Result<String, String> {
        let now = super::jwks::now();
        let mut jti = [0u8; 18];
        rand::rng().fill_bytes(&mut jti);
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(self.key_id.clone());
        let claims = json!({
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
        });
        jsonwebtoken::encode(&h, &claims, &self.key).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;

    fn key_file() -> ZitadelKey {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        serde_json::from_value(json!({
            "type": "application", "keyId": "k-123", "key": pem, "appId": "a1", "clientId": "api@proj"
        }))
        .unwrap()
    }

    /// RFC 7523 shape: kid = keyId, iss = sub = clientId, aud = issuer, exp ≤ iat + 60, fresh jti.
    #[test]
    fn client_assertion_shape() {
        let k = ClientKey::new(&key_file()).unwrap();
        let part = |t: &str, i: usize| -> serde_json::Value {
            let p = t.split('.').nth(i).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap(),
            )
            .unwrap()
        };
        let a = k.assertion("https://issuer.example").unwrap();
        let b = k.assertion("https://issuer.example").unwrap();
        assert_eq!(part(&a, 0)["kid"], "k-123");
        assert_eq!(part(&a, 0)["alg"], "RS256");
        let c = part(&a, 1);
        assert_eq!(c["iss"], "api@proj");
        assert_eq!(c["sub"], "api@proj");
        assert_eq!(c["aud"], "https://issuer.example");
        let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
        assert!(exp > iat && exp - iat <= 60);
        assert_ne!(c["jti"], part(&b, 1)["jti"]);
    }
}
