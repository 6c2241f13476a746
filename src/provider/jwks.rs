//! JWKS parsing and JWT verification against it.
//!
//! Security choices, all deliberate:
//! - the algorithm comes from the key (`alg` of the JWK, or derived from `kty`/`crv` when absent),
//!   never from the token: a token whose header names another algorithm is refused, so an RSA
//!   public key can never be used as an HMAC secret;
//! - only asymmetric algorithms (RS*, PS*, ES256/384, EdDSA); `oct` keys and `use: enc` keys are
//!   ignored; `alg: none` and HS* are refused before any key is looked at;
//! - a token header carrying `jwk`, `jku`, `x5u`, `x5c` (keys or key locations chosen by the
//!   sender) or `crit` (extensions we do not understand) is refused;
//! - `iss` (when an issuer is configured), `aud`, `exp` are required; `nbf` and `iat` are
//!   honoured with [`LEEWAY`];
//! - a token bound to a key (`cnf`: DPoP, mTLS) is refused: its proof is not verified here;
//! - never looser than jsonwebtoken (checked by `tests/jwt_differential.rs` and the `jwt_verify`
//!   fuzz target): a header or payload naming a member twice, in any of its objects, is refused
//!   (serde_json would keep the last one silently, so two readers could see two tokens — or
//!   two role lists); the registered header
//!   parameters jsonwebtoken types as strings (`typ`, `cty`, `kid`, `x5t`, `x5t#S256`, `enc`,
//!   `zip`, and ACME's `url`, `nonce`) must be strings; `exp`/`nbf`/`iat` must be NumericDates
//!   in jsonwebtoken's range (0 ≤ t < 2^64, fractions rounded); `iss` and `sub` must be strings
//!   and `aud` a string or an array of strings.
//!
//! Verification is done here on aws-lc-rs directly, with each JWK parsed once into a
//! `ParsedPublicKey` when the JWKS is loaded (jsonwebtoken rebuilds the RSA key from `n`/`e` and
//! parses the token twice on every call: about half the cost of an uncached request). RSA keys
//! below 2048 bits are refused by the verification algorithms.

use std::borrow::Cow;
use std::sync::Arc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use super::TokenError;

/// Why a token carrying `cnf` (RFC 7800: DPoP, mTLS binding) is refused.
pub const SENDER_CONSTRAINED: &str =
    "the token is sender-constrained (cnf); proof-of-possession (DPoP, mTLS) is not supported";

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY: u64 = 60;

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: ParsedPublicKey,
}

/// A loaded key set.
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Parses a JWKS document; keys that are unusable for signature verification are skipped.
    pub fn parse(body: &[u8]) -> Result<KeySet, String> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let arr = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no \"keys\" array")?;
        let keys: Vec<Key> = arr.iter().filter_map(|k| parse_jwk(k).ok()).collect();
        Ok(KeySet { keys })
    }

    /// The key a token header points at. `Ok(None)` = no such key (maybe refetch).
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Result<Option<&Key>, TokenError> {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) if k.alg == alg => Ok(Some(k)),
                Some(k) => Err(TokenError::Algorithm(format!(
                    "{} (the key requires {})",
                    alg_name(alg),
                    alg_name(k.alg)
                ))),
                None => Ok(None),
            },
            // No kid: only unambiguous when exactly one key of that algorithm exists.
            None => {
                let mut it = self.keys.iter().filter(|k| k.alg == alg);
                match (it.next(), it.next()) {
                    (Some(k), None) => Ok(Some(k)),
                    (Some(_), Some(_)) => Err(TokenError::Other(
                        "the token has no `kid` and the provider has several keys".into(),
                    )),
                    (None, _) => Ok(None),
                }
            }
        }
    }
}

pub fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "HMAC",
    }
}

fn asymmetric_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn parse_jwk(k: &Value) -> Result<Key, String> {
    let s = |f: &str| k.get(f).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return Err("not a signature key".into());
    }
    let kty = s("kty").ok_or("no kty")?;
    let crv = s("crv");
    let derived = match (kty, crv) {
        ("RSA", _) => Algorithm::RS256,
        ("EC", Some("P-256")) => Algorithm::ES256,
        ("EC", Some("P-384")) => Algorithm::ES384,
        ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
        _ => return Err(format!("unsupported key type {kty}")),
    };
    let alg = match s("alg") {
        None => derived,
        Some(a) => {
            let alg = asymmetric_alg(a).ok_or_else(|| format!("unsupported alg {a}"))?;
            let family_ok = match kty {
                "RSA" => matches!(
                    alg,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                ),
                _ => alg == derived,
            };
            if !family_ok {
                return Err(format!("alg {a} does not fit kty {kty}"));
            }
            alg
        }
    };
    let b64 = |f: &str| -> Result<Vec<u8>, String> {
        let v = s(f).ok_or_else(|| format!("no {f}"))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|e| format!("{f}: {e}"))
    };
    let bytes = match kty {
        "RSA" => rsa_public_key_der(&b64("n")?, &b64("e")?),
        "EC" => {
            let (x, y) = (b64("x")?, b64("y")?);
            let mut p = Vec::with_capacity(1 + x.len() + y.len());
            p.push(4);
            p.extend_from_slice(&x);
            p.extend_from_slice(&y);
            p
        }
        _ => b64("x")?,
    };
    let key =
        ParsedPublicKey::new(verification_algorithm(alg), &bytes).map_err(|e| e.to_string())?;
    Ok(Key {
        kid: s("kid").map(str::to_string),
        alg,
        key,
    })
}

fn verification_algorithm(a: Algorithm) -> &'static dyn VerificationAlgorithm {
    match a {
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        // RS256, and nothing else reaches here (asymmetric_alg admits only the above)
        _ => &sig::RSA_PKCS1_2048_8192_SHA256,
    }
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`, DER.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, l: usize) {
        if l < 0x80 {
            out.push(l as u8);
        } else {
            let b = l.to_be_bytes();
            let skip = b.iter().take_while(|x| **x == 0).count();
            out.push(0x80 | (b.len() - skip) as u8);
            out.extend_from_slice(&b[skip..]);
        }
    }
    fn int(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v
            .iter()
            .take_while(|x| **x == 0)
            .count()
            .min(v.len().saturating_sub(1))..];
        out.push(0x02);
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        len(out, v.len() + pad as usize);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(&mut body, n);
    int(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// What the header of a JWT says, after the checks that need no key.
pub struct JwtHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// `typ` as sent (`JWT`, `at+jwt`, `logout+jwt`, …); what kind of token it marks is the
    /// caller's business (bearer routes: [`crate::auth::bearer`]).
    pub typ: Option<String>,
}

/// Header parameters jsonwebtoken's `Header` types as strings (RFC 7515 §4.1, RFC 7516 `enc`
/// and `zip`, RFC 8555 `url` and `nonce`): a token where one is not a string is refused, as
/// jsonwebtoken refuses it. (`jku`, `x5u`, `jwk`, `x5c`, `crit` are refused whatever their type;
/// `alg` is checked on its own.)
const STRING_HEADER_PARAMS: [&str; 9] = [
    "typ", "cty", "kid", "x5t", "x5t#S256", "enc", "zip", "url", "nonce",
];

/// Parses and screens a JWT header (`alg`, forbidden members, member types, duplicates).
pub fn screen_header(token: &str) -> Result<JwtHeader, TokenError> {
    let head = token.split('.').next().ok_or(TokenError::Malformed)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| TokenError::Malformed)?;
    let h = parse_object(&raw, "header")?;
    for forbidden in ["jwk", "jku", "x5u", "x5c"] {
        if h.contains_key(forbidden) {
            return Err(TokenError::Other(format!(
                "the token header must not carry `{forbidden}`"
            )));
        }
    }
    if h.contains_key("crit") {
        return Err(TokenError::Other(
            "the token header carries unsupported critical extensions".into(),
        ));
    }
    let alg = match h.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(TokenError::Malformed),
    };
    let alg =
        asymmetric_alg(alg).ok_or_else(|| TokenError::Algorithm(alg.chars().take(16).collect()))?;
    for name in STRING_HEADER_PARAMS {
        if h.get(name).is_some_and(|v| !v.is_string()) {
            return Err(TokenError::Other(format!(
                "the token header parameter `{name}` must be a string"
            )));
        }
    }
    let string = |name: &str| h.get(name).and_then(Value::as_str).map(str::to_string);
    Ok(JwtHeader {
        alg,
        kid: string("kid"),
        typ: string("typ"),
    })
}

/// Parses a JWT header or payload: a JSON object whose member names are unique in every object,
/// nested ones included (`realm_access.roles`, `resource_access.<client>.roles` and ZITADEL's
/// role map carry roles: a second `roles` would grant what a reader keeping the first one does
/// not see), compared unescaped (`"r\u006fles"` is `roles`). One pass building the `Value`:
/// each object checks its names as it takes them (the `Map` entry), where `Value`'s own
/// deserializer would overwrite the first value. Bounded by serde_json's nesting limit (128).
/// `what` names the part in the error.
fn parse_object(json: &[u8], what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let mut duplicate = None;
    let mut de = serde_json::Deserializer::from_slice(json);
    match de
        .deserialize_map(UniqueMembers(&mut duplicate))
        .and_then(|m| de.end().map(|()| m))
    {
        Ok(m) => Ok(m),
        Err(_) => Err(match duplicate {
            // The name is the sender's: bounded, as `Algorithm`'s is (the description is
            // sanitized where it becomes a header).
            Some(path) => TokenError::Other(format!(
                "the token {what} names `{}` twice",
                bounded(&path, 64)
            )),
            None => TokenError::Malformed,
        }),
    }
}

/// At most `max` characters of `s`, `...` marking a cut.
fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}...", &s[..i])),
    }
}

/// Deserializes a JSON object into a `Map` whose nested objects are checked too, failing on a
/// repeated member name. The path of the repeated member (`realm_access.roles`,
/// `groups[0].id`) is stored for the message: the innermost object stores the name, each
/// enclosing object or array prefixes its own part as the error passes through it.
struct UniqueMembers<'a>(&'a mut Option<String>);

impl<'de> Visitor<'de> for UniqueMembers<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            match out.entry(name) {
                Entry::Vacant(e) => {
                    match access.next_value_seed(UniqueValue(&mut *self.0)) {
                        Ok(v) => e.insert(v),
                        Err(err) => {
                            if let Some(path) = self.0 {
                                let sep = if path.starts_with('[') { "" } else { "." };
                                *path = format!("{}{sep}{path}", e.key());
                            }
                            return Err(err);
                        }
                    };
                }
                Entry::Occupied(e) => {
                    *self.0 = Some(e.key().clone());
                    return Err(A::Error::custom("duplicate member"));
                }
            }
        }
        Ok(out)
    }
}

/// Deserializes any JSON value as `Value`'s own deserializer does, objects through
/// [`UniqueMembers`].
struct UniqueValue<'a>(&'a mut Option<String>);

impl<'de> DeserializeSeed<'de> for UniqueValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As `Value` does (JSON text has no NaN or infinity, so this stays a number).
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
        loop {
            match access.next_element_seed(UniqueValue(&mut *self.0)) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => return Ok(Value::Array(out)),
                Err(err) => {
                    if let Some(path) = self.0 {
                        let sep = if path.starts_with('[') { "" } else { "." };
                        *path = format!("[{}]{sep}{path}", out.len());
                    }
                    return Err(err);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
        UniqueMembers(self.0).visit_map(access).map(Value::Object)
    }
}

/// Outcome of looking a key up.
pub enum Lookup<'a> {
    Found(&'a Key),
    Missing,
}

pub fn lookup<'a>(set: &'a KeySet, h: &JwtHeader) -> Result<Lookup<'a>, TokenError> {
    Ok(match set.find(h.kid.as_deref(), h.alg)? {
        Some(k) => Lookup::Found(k),
        None => Lookup::Missing,
    })
}

/// Verifies signature and claims with `key`. `issuer` None = bearer-only provider configured
/// with just `jwks_uri`: the signature by the provider's keys is then the only proof of origin.
pub fn verify_with(
    token: &str,
    key: &Key,
    issuer: Option<&str>,
    audiences: &[String],
) -> Result<Map<String, Value>, TokenError> {
    if audiences.is_empty() {
        return Err(TokenError::Other(
            "no audience is configured for this provider".into(),
        ));
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (_, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
    let signature = b64.decode(signature).map_err(|_| TokenError::Malformed)?;
    key.key
        .verify_sig(signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;
    // Only now, with the signature verified, is the payload worth parsing.
    let payload = b64.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims = parse_object(&payload, "payload")?;
    check_claims(&claims, issuer, audiences, now())?;
    Ok(claims)
}

/// A NumericDate claim as jsonwebtoken reads it (its `numeric_type`): an integer in 0..2^64,
/// or a finite float in [0, 2^64) rounded to the nearest second. Anything else — negative,
/// 1e20, a string — is refused rather than ignored.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, TokenError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let n = match v {
        Value::Number(n) => n,
        _ => return Err(invalid_date(name)),
    };
    if let Some(t) = n.as_u64() {
        return Ok(Some(t));
    }
    match n.as_f64() {
        // `is_f64`: a negative integer is an `i64`, refused like jsonwebtoken does.
        Some(f) if n.is_f64() && f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
            Ok(Some(f.round() as u64))
        }
        _ => Err(invalid_date(name)),
    }
}

fn invalid_date(name: &'static str) -> TokenError {
    TokenError::Other(format!(
        "the token claim `{name}` has an invalid format (a NumericDate: seconds since 1970, \
         not negative)"
    ))
}

/// `exp` (required), `nbf`, `iat` with [`LEEWAY`]; `iss` = issuer (required when configured);
/// `aud` (required) one of `audiences`. The types are checked first, on every claim
/// jsonwebtoken types, whether or not this configuration uses its value: `sub` and `iss` are
/// strings, `aud` a string or an array of strings.
fn check_claims(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    audiences: &[String],
    now: i64,
) -> Result<(), TokenError> {
    if claims.get("sub").is_some_and(|v| !v.is_string()) {
        return Err(TokenError::Other(
            "the token claim `sub` must be a string".into(),
        ));
    }
    // Also without a configured issuer: jsonwebtoken's `iss` is a string (or array of
    // strings, which we do not accept: one issuer signs one token).
    if claims.get("iss").is_some_and(|v| !v.is_string()) {
        return Err(TokenError::Issuer);
    }
    let aud_ok = match claims.get("aud") {
        None | Some(Value::String(_)) => true,
        Some(Value::Array(a)) => a.iter().all(Value::is_string),
        Some(_) => false,
    };
    if !aud_ok {
        return Err(TokenError::Other(
            "the token claim `aud` must be a string or an array of strings".into(),
        ));
    }
    let now = u64::try_from(now).unwrap_or(0);
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    if exp.saturating_add(LEEWAY) <= now {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY)) {
        return Err(TokenError::NotYetValid);
    }
    // iat far in the future: a token minted by a clock we should not trust.
    if iat.is_some_and(|iat| iat > now.saturating_add(LEEWAY)) {
        return Err(TokenError::NotYetValid);
    }
    if let Some(want) = issuer {
        match claims.get("iss") {
            None => return Err(TokenError::MissingClaim("iss")),
            Some(Value::String(iss)) if iss == want => {}
            Some(_) => return Err(TokenError::Issuer),
        }
    }
    // A sender-constrained token (DPoP, mTLS) is only valid with its proof of possession,
    // which a bearer check does not verify: refused, never accepted as a plain bearer token.
    if claims.contains_key("cnf") {
        return Err(TokenError::Other(SENDER_CONSTRAINED.into()));
    }
    let accepted = |v: &Value| v.as_str().is_some_and(|a| audiences.iter().any(|x| x == a));
    match claims.get("aud") {
        None => Err(TokenError::MissingClaim("aud")),
        Some(Value::Array(a)) if a.iter().any(accepted) => Ok(()),
        Some(v @ Value::String(_)) if accepted(v) => Ok(()),
        Some(_) => Err(TokenError::Audience),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Shared, swappable key set.
pub type SharedKeys = arc_swap::ArcSwapOption<KeySet>;

pub fn empty() -> SharedKeys {
    arc_swap::ArcSwapOption::new(None::<Arc<KeySet>>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn es256_pair() -> (EncodingKey, Value) {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pk = kp.to_pkcs8v1().unwrap();
        let pubk = kp.public_key().as_ref().to_vec();
        let b = |x: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
        let jwk =
            json!({"kty":"EC","crv":"P-256","kid":"k1","x":b(&pubk[1..33]),"y":b(&pubk[33..65])});
        (EncodingKey::from_ec_der(pk.as_ref()), jwk)
    }

    /// The crypto backend is wired (jsonwebtoken panics at run time without exactly one).
    #[test]
    fn decodes_a_token_with_the_aws_lc_backend() {
        let (ek, jwk) = es256_pair();
        let set = KeySet::parse(json!({"keys":[jwk]}).to_string().as_bytes()).unwrap();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        let claims = json!({"iss":"https://op","aud":"api","exp": now() + 60, "sub":"u"});
        let t = encode(&h, &claims, &ek).unwrap();
        let hdr = screen_header(&t).unwrap();
        let Lookup::Found(k) = lookup(&set, &hdr).unwrap() else {
            panic!("key not found")
        };
        let c = verify_with(&t, k, Some("https://op"), &["api".into()]).unwrap();
        assert_eq!(c["sub"], "u");
        assert!(matches!(
            verify_with(&t, k, Some("https://other"), &["api".into()]),
            Err(TokenError::Issuer)
        ));
        assert!(matches!(
            verify_with(&t, k, Some("https://op"), &["x".into()]),
            Err(TokenError::Audience)
        ));
        // a kid-less token works when exactly one key fits
        let t2 = encode(&Header::new(Algorithm::ES256), &claims, &ek).unwrap();
        assert!(matches!(
            lookup(&set, &screen_header(&t2).unwrap()).unwrap(),
            Lookup::Found(_)
        ));
    }

    /// Boundaries of the time checks (leeway 60 s) and the required claims.
    #[test]
    fn claim_checks() {
        let aud = vec!["api".to_string()];
        let at = 1_000_000;
        let c = |v: Value| v.as_object().cloned().unwrap();
        let base = |exp: i64| json!({"iss": "i", "aud": "api", "exp": exp});
        assert!(check_claims(&c(base(at - 59)), Some("i"), &aud, at).is_ok());
        assert!(matches!(
            check_claims(&c(base(at - 60)), Some("i"), &aud, at),
            Err(TokenError::Expired)
        ));
        let nbf = |n: i64| json!({"iss": "i", "aud": ["x", "api"], "exp": at + 100, "nbf": n});
        assert!(check_claims(&c(nbf(at + 60)), Some("i"), &aud, at).is_ok());
        assert!(matches!(
            check_claims(&c(nbf(at + 61)), Some("i"), &aud, at),
            Err(TokenError::NotYetValid)
        ));
        let iat = json!({"iss": "i", "aud": "api", "exp": at + 100, "iat": at + 61});
        assert!(matches!(
            check_claims(&c(iat), Some("i"), &aud, at),
            Err(TokenError::NotYetValid)
        ));
        assert!(matches!(
            check_claims(&c(json!({"iss": "i", "aud": "api"})), Some("i"), &aud, at),
            Err(TokenError::MissingClaim("exp"))
        ));
        assert!(matches!(
            check_claims(
                &c(json!({"aud": "api", "exp": at + 9})),
                Some("i"),
                &aud,
                at
            ),
            Err(TokenError::MissingClaim("iss"))
        ));
        assert!(check_claims(&c(json!({"aud": "api", "exp": at + 9})), None, &aud, at).is_ok());
        assert!(matches!(
            check_claims(&c(json!({"iss": "i", "exp": at + 9})), Some("i"), &aud, at),
            Err(TokenError::MissingClaim("aud"))
        ));
        assert!(matches!(
            check_claims(
                &c(json!({"iss": "i", "aud": [], "exp": at + 9})),
                Some("i"),
                &aud,
                at
            ),
            Err(TokenError::Audience)
        ));
        assert!(matches!(
            check_claims(
                &c(json!({"iss": "i", "aud": "api", "exp": "soon"})),
                Some("i"),
                &aud,
                at
            ),
            Err(TokenError::Other(_))
        ));
        assert!(matches!(
            check_claims(
                &c(json!({"iss": ["i"], "aud": "api", "exp": at + 9})),
                Some("i"),
                &aud,
                at
            ),
            Err(TokenError::Issuer)
        ));
    }

    /// Attack: a DPoP- or mTLS-bound JWT access token (RFC 9449 / RFC 8705: `cnf`) replayed
    /// without its proof-of-possession as a plain bearer token.
    #[test]
    fn sender_constrained_jwts_are_refused() {
        let aud = vec!["api".to_string()];
        let at = 1_000_000;
        let c = |v: Value| v.as_object().cloned().unwrap();
        let t = |cnf: Value| json!({"iss": "i", "aud": "api", "exp": at + 100, "cnf": cnf});
        for cnf in [json!({"jkt": "abc"}), json!({"x5t#S256": "abc"}), json!({})] {
            assert!(
                check_claims(&c(t(cnf.clone())), Some("i"), &aud, at).is_err(),
                "{cnf}"
            );
        }
    }

    /// A 1024-bit RSA key never verifies (a fixture signed outside: aws-lc refuses to sign
    /// with one), whether the JWKS loader keeps it or not.
    #[test]
    fn rsa_keys_below_2048_bits_are_refused() {
        const N: &str = "2FdxaRoXeEdcpuZhRW0Sys0CdTHWHoE-_QiJSz5Qmkd59zASoIGl728UW1ji5jZ8Xmao-jutwhUULZOQ7FRKHDFsuEunxLo_wBgO-XOkKKi5v-eX2-ThSAOvmJbHhdq3p5lOzSsGjBVYEmIyP8KcBsDJwm8OaQO5mq8MFa8GaUM";
        const T: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IndlYWsifQ.eyJpc3MiOiJodHRwczovL29wIiwiYXVkIjoiYXBpIiwic3ViIjoidSIsImV4cCI6NDEwMjQ0NDgwMH0.HvlbynNBaSW_ZwfTxZZB_n0NS0WiT_-MwxZi-f_zp6PEufsVWg3MvQEYVoddvgWfrgvlfCUA4quC8-DqUrs7q3wqDEO6vjI4ikTyavh6qer4JIQAM7Ckfn3Ygt7zJUfiV24XxSICyvByLMR07bQi87TiXszE4w032lN8sN-f9Vw";
        let set = KeySet::parse(
            json!({"keys":[{"kty":"RSA","kid":"weak","alg":"RS256","n":N,"e":"AQAB"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        match lookup(&set, &screen_header(T).unwrap()).unwrap() {
            Lookup::Missing => {}
            Lookup::Found(k) => assert!(matches!(
                verify_with(T, k, Some("https://op"), &["api".into()]),
                Err(TokenError::BadSignature)
            )),
        }
    }

    /// base64url must be canonical and unpadded in every segment; duplicate header members
    /// cannot smuggle `alg: none` past the screen; a padded or re-encoded signature is refused.
    #[test]
    fn encoding_strictness() {
        let (ek, jwk) = es256_pair();
        let set = KeySet::parse(json!({"keys":[jwk]}).to_string().as_bytes()).unwrap();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        let claims = json!({"iss":"https://op","aud":"api","exp": now() + 60, "sub":"u"});
        let t = encode(&h, &claims, &ek).unwrap();
        let Lookup::Found(k) = lookup(&set, &screen_header(&t).unwrap()).unwrap() else {
            panic!()
        };
        let v = |tok: &str| verify_with(tok, k, Some("https://op"), &["api".into()]);
        assert!(v(&t).is_ok());
        let (hd, rest) = t.split_once('.').unwrap();
        let (pl, sig) = rest.split_once('.').unwrap();
        // padding on a segment
        assert!(screen_header(&format!("{hd}==.{pl}.{sig}")).is_err());
        assert!(v(&format!("{hd}.{pl}=.{sig}")).is_err());
        assert!(v(&format!("{hd}.{pl}.{sig}=")).is_err());
        // standard alphabet instead of url-safe
        let std_sig = sig.replace('-', "+").replace('_', "/");
        if std_sig != sig {
            assert!(v(&format!("{hd}.{pl}.{std_sig}")).is_err());
        }
        // non-canonical last character (unused low bits set) of the 64-byte signature
        let mut bad = sig.as_bytes().to_vec();
        let last = bad.len() - 1;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.iter().position(|c| *c == bad[last]).unwrap();
        bad[last] = alphabet[idx | 1];
        if bad[last] != sig.as_bytes()[last] {
            assert!(v(&format!("{hd}.{pl}.{}", std::str::from_utf8(&bad).unwrap())).is_err());
        }
        // duplicate members: refused by the screen whichever comes first …
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for h in [
            r#"{"alg":"ES256","alg":"none"}"#,
            r#"{"alg":"none","alg":"ES256","kid":"k1"}"#,
        ] {
            assert!(matches!(
                screen_header(&format!("{}.e30.", b(h))),
                Err(TokenError::Other(m)) if m == "the token header names `alg` twice"
            ));
        }
        // … and a smuggled first member cannot change the key or algorithm actually used
        let dup = format!(
            "{}.{pl}.{sig}",
            b(r#"{"alg":"none","alg":"ES256","kid":"k1"}"#)
        );
        assert!(matches!(v(&dup), Err(TokenError::BadSignature)));
        // a fourth segment
        assert!(v(&format!("{t}.x")).is_err());
    }

    /// jsonwebtoken (used for signing assertions and client assertions) has its crypto backend:
    /// without exactly one it compiles and then panics at the first encode/decode.
    #[test]
    fn jsonwebtoken_backend_decodes() {
        let (ek, jwk) = es256_pair();
        let t = encode(
            &Header::new(Algorithm::ES256),
            &json!({"exp": now() + 60, "aud": "a"}),
            &ek,
        )
        .unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&["a"]);
        let d = jsonwebtoken::decode::<Value>(
            &t,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(d.claims["aud"], "a");
    }

    #[test]
    fn header_screening() {
        let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let tok = |h: Value| format!("{}.e30.", b(h));
        assert!(matches!(
            screen_header(&tok(json!({"alg":"none"}))),
            Err(TokenError::Algorithm(_))
        ));
        assert!(matches!(
            screen_header(&tok(json!({"alg":"HS256"}))),
            Err(TokenError::Algorithm(_))
        ));
        assert!(matches!(
            screen_header(&tok(json!({"alg":"RS256","jku":"http://x"}))),
            Err(TokenError::Other(_))
        ));
        assert!(matches!(
            screen_header(&tok(json!({"alg":"RS256","x5c":[]}))),
            Err(TokenError::Other(_))
        ));
        assert!(matches!(
            screen_header("garbage"),
            Err(TokenError::Malformed)
        ));
        assert!(screen_header(&tok(json!({"alg":"RS256","kid":"a"}))).is_ok());
    }

    /// What jsonwebtoken refuses is refused (found by `tests/jwt_differential.rs`): repeated
    /// members, string header parameters of another type, claims of the wrong type, times
    /// outside its u64 — at the boundaries of its `numeric_type`.
    #[test]
    fn never_looser_than_jsonwebtoken() {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let hdr = |h: &str| screen_header(&format!("{}.e30.", b(h)));
        assert!(hdr(r#"{"alg":"ES256","kid":"k","typ":"JWT","cty":"JWT","nonce":"n"}"#).is_ok());
        for name in STRING_HEADER_PARAMS {
            for bad in ["5", "{}", "[]", "null", "true"] {
                let e = hdr(&format!(r#"{{"alg":"ES256","{name}":{bad}}}"#)).err();
                assert!(
                    matches!(&e, Some(TokenError::Other(m)) if m.contains(&format!("`{name}` must be a string"))),
                    "{name}: {bad}: {:?}",
                    e.map(|e| e.to_string())
                );
            }
        }
        assert!(matches!(
            hdr(r#"{"alg":"ES256","x":1,"x":1}"#),
            Err(TokenError::Other(m)) if m == "the token header names `x` twice"
        ));
        // Nested objects may not repeat names either.
        assert!(matches!(
            hdr(r#"{"alg":"ES256","ext":{"a":1,"a":2}}"#),
            Err(TokenError::Other(m)) if m == "the token header names `ext.a` twice"
        ));
        assert!(matches!(
            hdr(r#"{"alg":"ES256"} x"#),
            Err(TokenError::Malformed)
        ));
        assert!(matches!(
            hdr(r#"["alg","ES256"]"#),
            Err(TokenError::Malformed)
        ));
        assert!(matches!(
            parse_object(br#"{"exp":1,"aud":"a","exp":2}"#, "payload"),
            Err(TokenError::Other(m)) if m == "the token payload names `exp` twice"
        ));
        // … at every level of the payload, compared unescaped: roles sit in nested objects.
        let payload = |j: &str| match parse_object(j.as_bytes(), "payload") {
            Err(TokenError::Other(m)) => m,
            other => panic!("{j}: {:?}", other.map(|_| ())),
        };
        for (json, path) in [
            (
                r#"{"realm_access":{"roles":["user"],"roles":["admin"]}}"#,
                "realm_access.roles",
            ),
            (
                r#"{"realm_access":{"roles":["user"],"r\u006fles":["admin"]}}"#,
                "realm_access.roles",
            ),
            (
                r#"{"resource_access":{"app":{"roles":[]},"app":{"roles":["admin"]}}}"#,
                "resource_access.app",
            ),
            (
                r#"{"resource_access":{"app":{"roles":["a"],"roles":["admin"]}}}"#,
                "resource_access.app.roles",
            ),
            (
                r#"{"urn:zitadel:iam:org:project:roles":{"admin":{"1":"x"},"admin":{"2":"y"}}}"#,
                "urn:zitadel:iam:org:project:roles.admin",
            ),
            (r#"{"groups":[{"id":1},{"id":2,"id":3}]}"#, "groups[1].id"),
            (
                r#"{"m":[[{"a":1}],[0,{"b":{"c":1,"c":1}}]]}"#,
                "m[1][1].b.c",
            ),
        ] {
            assert_eq!(
                payload(json),
                format!("the token payload names `{path}` twice")
            );
        }
        // the same names in different objects, and values as `Value` reads them
        let v = parse_object(
            br#"{"a":{"roles":[1]},"b":{"roles":[1]},"roles":[{"roles":null}],"n":-1.5e3,"u":18446744073709551615,"t":true,"s":"\u00e9"}"#,
            "payload",
        )
        .unwrap();
        assert_eq!(
            Value::Object(v),
            json!({"a":{"roles":[1]},"b":{"roles":[1]},"roles":[{"roles":null}],"n":-1500.0,"u":18446744073709551615_u64,"t":true,"s":"é"})
        );
        // a long path is cut in the message; nesting stays within serde_json's limit
        let long = format!(r#"{{"{}":{{"x":1,"x":2}}}}"#, "k".repeat(200));
        assert!(payload(&long).contains("...` twice"));
        let deep = format!("{}{}", r#"{"a":"#.repeat(200), "}".repeat(201));
        assert!(matches!(
            parse_object(deep.as_bytes(), "payload"),
            Err(TokenError::Malformed)
        ));

        let aud = vec!["api".to_string()];
        let at = 1_000_000_i64;
        // `extra` adds members or replaces the base ones (`"iss":"i"`, `"aud":"api"`, `exp`).
        let check = |extra: &str| {
            let exp = format!(r#","exp":{}"#, at + 100);
            let base: String = [r#","iss":"i""#, r#","aud":"api""#, &exp]
                .into_iter()
                .filter(|m| !extra.contains(&m[..6]))
                .collect();
            let text = format!("{{{}}}", format!("{base}{extra}").trim_start_matches(','));
            check_claims(
                &parse_object(text.as_bytes(), "payload")?,
                Some("i"),
                &aud,
                at,
            )
        };
        assert!(check("").is_ok());
        for ok in [
            r#","sub":"u""#,
            r#","aud":["x","api"]"#,
            r#","nbf":0"#,
            r#","nbf":-0"#,
            r#","nbf":1000060.4"#,
            r#","iat":999999.5"#,
            r#","nbf":0.4"#,
        ] {
            assert!(
                check(ok).is_ok(),
                "{ok}: {:?}",
                check(ok).err().map(|e| e.to_string())
            );
        }
        let invalid = |extra: &str, want: &str| {
            let got = check(extra)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(got.contains(want), "{extra}: {got:?} lacks {want:?}");
        };
        for name in ["nbf", "iat", "exp"] {
            for bad in [
                "-1",
                "-1.5",
                "1e20",
                "18446744073709551616",
                "1e300",
                "\"5\"",
                "null",
                "[1]",
            ] {
                invalid(
                    &format!(r#","{name}":{bad}"#),
                    &format!("`{name}` has an invalid format"),
                );
            }
        }
        // u64::MAX is a NumericDate for jsonwebtoken: no overflow in the leeway arithmetic.
        assert!(check(r#","exp":18446744073709551615"#).is_ok());
        invalid(r#","nbf":18446744073709551615"#, "not valid yet");
        // rounded like jsonwebtoken: .5 up (not yet valid), .4 down (valid)
        invalid(r#","nbf":1000060.5"#, "not valid yet");
        for bad in ["5", "null", "[\"u\"]", "{}"] {
            invalid(&format!(r#","sub":{bad}"#), "`sub` must be a string");
        }
        for bad in [
            r#"["api",5]"#,
            r#"[null,"api"]"#,
            r#"["api",{}]"#,
            "5",
            "{}",
            "null",
        ] {
            invalid(
                &format!(r#","aud":{bad}"#),
                "`aud` must be a string or an array of strings",
            );
        }
        // `iss` is a string also when no issuer is configured.
        let no_iss = |iss: &str| {
            let text = format!(r#"{{"iss":{iss},"aud":"api","exp":{}}}"#, at + 100);
            check_claims(
                &parse_object(text.as_bytes(), "payload").unwrap(),
                None,
                &aud,
                at,
            )
        };
        assert!(no_iss(r#""anyone""#).is_ok());
        for bad in ["5", "null", r#"["i"]"#] {
            assert!(matches!(no_iss(bad), Err(TokenError::Issuer)), "{bad}");
        }
    }

    #[test]
    fn jwk_alg_is_derived_or_checked() {
        let set = KeySet::parse(
            br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"EC","crv":"P-256","alg":"RS256","x":"AA","y":"AA"},
            {"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#,
        )
        .unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].alg, Algorithm::RS256);
        let h = JwtHeader {
            alg: Algorithm::PS256,
            kid: Some("r".into()),
            typ: None,
        };
        assert!(matches!(lookup(&set, &h), Err(TokenError::Algorithm(_))));
    }
}
