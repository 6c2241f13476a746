//! Authenticated encryption of cookie values: AES-256-GCM with a key derived by HKDF-SHA256
//! from `session.secret` (one key per purpose), a random 96-bit nonce per value, and the cookie's
//! purpose and name as associated data — so a value sealed for one cookie (say, a pending login)
//! never opens as another (a session). Old secrets (`previous_secrets`) open but never seal.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand::RngCore;

/// Seals and opens values for one purpose.
pub struct Sealer {
    /// keys[0] seals; all open.
    keys: Vec<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn derive(secret: &[u8], purpose: &str) -> LessSafeKey {
    let salt = Salt::new(HKDF_SHA256, b"portcullis cookie v1");
    let prk = salt.extract(secret);
    let info = [purpose.as_bytes()];
    // expand() only fails when the output is longer than 255 hash lengths; 32 bytes never is.
    let okm = match prk.expand(&info, &AES_256_GCM) {
        Ok(o) => o,
        Err(_) => unreachable!("HKDF output of 32 bytes"),
    };
    LessSafeKey::new(UnboundKey::from(okm))
}

impl Sealer {
    /// `secrets[0]` is the current secret; the others are accepted for opening only.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>, purpose: &str) -> Self {
        Sealer {
            keys: secrets
                .into_iter()
                .map(|s| derive(s.as_bytes(), purpose))
                .collect(),
        }
    }

    /// base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let mut body = buf.split_off(NONCE_LEN);
        // Sealing with a fresh nonce and a buffer we own cannot fail.
        if self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut body,
            )
            .is_err()
        {
            return String::new();
        }
        buf.extend_from_slice(&body);
        B64.encode(buf)
    }

    /// Opens a value sealed by any of the keys; `None` for anything tampered, truncated,
    /// sealed for another cookie or under an unknown secret.
    pub fn open(&self, aad: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed.as_bytes()).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        for key in &self.keys {
            let mut buf = ct.to_vec();
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            if let Ok(pt) = key.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf) {
                return Some(pt.to_vec());
            }
        }
        None
    }
}

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// base64url(SHA-256(s)).
pub fn sha256_b64(s: &str) -> String {
    use sha2::Digest;
    B64.encode(sha2::Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef-a";
    const B: &str = "0123456789abcdef0123456789abcdef-b";

    #[test]
    fn round_trip_and_binding() {
        let s = Sealer::new([A], "session");
        let v = s.seal("portcullis", b"hello");
        assert_eq!(s.open("portcullis", &v).as_deref(), Some(&b"hello"[..]));
        // other cookie name (aad), other purpose, other secret
        assert!(s.open("portcullis.1", &v).is_none());
        assert!(Sealer::new([A], "login").open("portcullis", &v).is_none());
        assert!(Sealer::new([B], "session").open("portcullis", &v).is_none());
    }

    #[test]
    fn previous_secrets_open_but_do_not_seal() {
        let old = Sealer::new([A], "session");
        let v = old.seal("c", b"x");
        let rotated = Sealer::new([B, A], "session");
        assert_eq!(rotated.open("c", &v).as_deref(), Some(&b"x"[..]));
        let v2 = rotated.seal("c", b"y");
        assert!(old.open("c", &v2).is_none());
    }

    #[test]
    fn tampering_is_detected() {
        let s = Sealer::new([A], "session");
        let v = s.seal("c", b"some longer payload");
        let mut bytes = v.clone().into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(s.open("c", std::str::from_utf8(&bytes).unwrap()).is_none());
        assert!(s.open("c", &v[..v.len() - 4]).is_none());
        assert!(s.open("c", "").is_none());
        assert!(s.open("c", "!!!").is_none());
    }
}
