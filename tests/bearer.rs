//! Bearer routes against a real OpenID provider (npm `oidc-provider`, tests/provider) and an
//! issuer whose keys the test holds (for tokens a real provider would never issue). No mocks.
//! Every denial asserts the status, the `WWW-Authenticate` header and the error text.

mod support;
use support::oidc;
use support::*;

use std::time::Duration;

use oidc::{OidcProvider, TestIssuer, hs256, payload, raw_jwt};
use serde_json::{Value, json};

async fn bearer(p: &TestProxy, path: &str, token: &str) -> Resp {
    call(p, path, &[("authorization", &format!("Bearer {token}"))]).await
}

/// Asserts a 401 invalid_token whose description (header and body) contains `text`.
#[track_caller]
fn assert_invalid(r: &Resp, text: &str, case: &str) {
    assert_eq!(r.status, 401, "{case}: {}", r.text());
    let w = www(r);
    assert!(
        w.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{case}: {w}"
    );
    assert!(w.contains(text), "{case}: header {w:?} lacks {text:?}");
    assert!(
        message(r).contains(text),
        "{case}: body {} lacks {text:?}",
        r.text()
    );
}

#[track_caller]
fn assert_unavailable(r: &Resp, case: &str) {
    assert_eq!(r.status, 503, "{case}: {}", r.text());
    assert!(
        www(r).starts_with("Bearer error=\"temporarily_unavailable\""),
        "{case}: {}",
        www(r)
    );
    assert!(
        message(r).contains("identity provider is unavailable"),
        "{case}: {}",
        r.text()
    );
}

fn config(op: &OidcProvider, upstream: &str, extra: &str) -> String {
    let issuer = &op.issuer;
    let key = op.introspector_key_file();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{extra}

[providers.op]
issuer = "{issuer}"
audiences = ["portcullis-api"]
[providers.op.introspection]
client_id = "introspector-basic"
client_secret = "introspector-secret"
cache = "30s"

[providers.opjwt]
issuer = "{issuer}"
audiences = ["portcullis-api"]
roles_claim = "urn:zitadel:iam:org:project:roles"
[providers.opjwt.introspection]
key_file = "{key}"

[providers.wrongaud]
issuer = "{issuer}"
audiences = ["another-api"]

[headers]
assertion = "X-Portcullis-Assertion"
[headers.claims]
"X-User-Org" = "urn:zitadel:iam:user:resourceowner:id"

[[route]]
name = "admin"
path = "/admin"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
require_roles = ["admin"]

[[route]]
name = "org"
path = "/org"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
require_claims = {{ "urn:zitadel:iam:user:resourceowner:id" = ["123456", "654321"] }}

[[route]]
name = "org-other"
path = "/other-org"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
require_claims = {{ "urn:zitadel:iam:user:resourceowner:id" = "999" }}

[[route]]
name = "ijwt"
path = "/ijwt"
upstream = "{upstream}"
auth = "bearer"
provider = "opjwt"
require_any_role = ["reader", "admin"]

[[route]]
name = "wrongaud"
path = "/wrongaud"
upstream = "{upstream}"
auth = "bearer"
provider = "wrongaud"

[[route]]
name = "public"
path = "/public"
upstream = "{upstream}"
auth = "none"

[[route]]
name = "api"
path = "/"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
"#,
        key = key.display(),
    )
}

/// Valid tokens pass; identity headers are the token's (forged ones stripped), roles and
/// claim mappings and the signed assertion reach the upstream; role and claim rules give 403.
#[tokio::test]
async fn jwt_identity_roles_claims_and_assertion() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let up = echo_upstream().await;
    let p = start_proxy(&config(&op, &up.url(""), "")).await;
    wait_ready(&p).await;
    let admin = op.jwt("api-admin").await;
    let reader = op.jwt("api-reader").await;

    // valid token; forged identity headers in every spelling are replaced by the real ones
    let r = call(
        &p,
        "/admin/x",
        &[
            ("authorization", &format!("bearer {admin}")),
            ("x-forwarded-user", "mallory"),
            ("x_forwarded_user", "mallory"),
            ("x-forwarded-roles", "superuser"),
            ("x-portcullis-assertion", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert_eq!(e.header_all("x-forwarded-user"), ["api-admin"]);
    assert_eq!(e.header("x-forwarded-roles"), Some("admin,reader"));
    assert_eq!(e.header("x-user-org"), Some("123456"));
    assert!(!e.header_names().contains(&"x_forwarded_user"));
    // Authorization passes through by default
    assert_eq!(
        e.header("authorization"),
        Some(format!("bearer {admin}").as_str())
    );

    // the assertion verifies with the proxy's /.auth/jwks
    let assertion = e
        .header("x-portcullis-assertion")
        .expect("assertion")
        .to_string();
    let jwks = call(&p, "/.auth/jwks", &[]).await;
    assert_eq!(jwks.status, 200);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&jwks.body).unwrap();
    let hdr = jsonwebtoken::decode_header(&assertion).unwrap();
    assert_eq!(hdr.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = set
        .find(hdr.kid.as_deref().unwrap())
        .expect("kid in /.auth/jwks");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["admin"]);
    v.set_issuer(&["portcullis"]);
    let c = jsonwebtoken::decode::<Value>(
        &assertion,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("assertion verifies")
    .claims;
    assert_eq!(c["sub"], "api-admin");
    assert_eq!(c["roles"], json!(["admin", "reader"]));
    assert!(c["exp"].as_i64().unwrap() - now() <= 60);

    // roles: reader lacks admin → 403 insufficient_scope naming the requirement
    let r = bearer(&p, "/admin", &reader).await;
    assert_forbidden(&r, "missing required role(s): admin", "reader on admin");
    assert!(!r.text().contains(&reader), "the token is never echoed");
    // require_any_role passes with reader (via the key-file provider's JWT path)
    let r = bearer(&p, "/ijwt", &reader).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // no roles at all
    let none = op.jwt("api-noroles").await;
    let r = bearer(&p, "/ijwt", &none).await;
    assert_forbidden(&r, "requires one of the roles: reader, admin", "noroles");
    let r = bearer(&p, "/api", &none).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed().header("x-forwarded-roles"), None);

    // require_claims: value in list passes, other value → 403
    assert_eq!(bearer(&p, "/org", &reader).await.status, 200);
    let r = bearer(&p, "/other-org", &reader).await;
    assert_forbidden(
        &r,
        "claim `urn:zitadel:iam:user:resourceowner:id` must be",
        "claim",
    );

    // cached token: the role check still runs on every request
    let r = bearer(&p, "/admin", &reader).await;
    assert_eq!(r.status, 403);
    assert_eq!(bearer(&p, "/admin", &admin).await.status, 200);
}

/// The attacks of issue 3 that can be made from the real provider's tokens.
#[tokio::test]
async fn jwt_attacks_with_real_tokens() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let up = echo_upstream().await;
    let p = start_proxy(&config(&op, &up.url(""), "")).await;
    wait_ready(&p).await;
    let admin = op.jwt("api-admin").await;
    let parts: Vec<&str> = admin.split('.').collect();
    let head: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[0])
            .unwrap(),
    )
    .unwrap();
    let claims = payload(&admin);

    // no token, token in the query string, another scheme
    assert_challenge(&call(&p, "/api", &[]).await, "no token");
    assert_challenge(
        &call(&p, &format!("/api?access_token={admin}"), &[]).await,
        "query string",
    );
    assert_challenge(
        &call(&p, "/api", &[("authorization", "Basic YWRtaW46YWRtaW4=")]).await,
        "basic",
    );

    // two Authorization headers → 400 invalid_request
    let r = call(
        &p,
        "/api",
        &[
            ("authorization", &format!("Bearer {admin}")),
            ("authorization", "Bearer other"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        www(&r).starts_with("Bearer error=\"invalid_request\""),
        "{}",
        www(&r)
    );
    assert!(message(&r).contains("more than one Authorization header"));

    // tampered payload: sub changed, signature kept
    let mut forged = claims.clone();
    forged["sub"] = json!("api-root");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        support::b64(forged.to_string().as_bytes()),
        parts[2]
    );
    assert_invalid(
        &bearer(&p, "/api", &tampered).await,
        "the token signature is invalid",
        "tampered",
    );

    // truncated signature, truncated token, garbage
    let truncated = &admin[..admin.len() - 8];
    assert_invalid(
        &bearer(&p, "/api", truncated).await,
        "the token",
        "truncated signature",
    );
    let two_parts = format!("{}.{}", parts[0], parts[1]);
    assert_invalid(
        &bearer(&p, "/wrongaud", &two_parts).await,
        "opaque tokens are not accepted on this route",
        "two parts = not a JWT, no introspection",
    );
    assert_invalid(
        &bearer(&p, "/api", "abc.def.ghi").await,
        "the token is malformed",
        "garbage jwt",
    );
    assert_invalid(
        &bearer(&p, "/api", "<script>").await,
        "the token is malformed",
        "bad characters",
    );

    // alg none with the real claims
    let none = raw_jwt(&json!({"alg": "none", "typ": "JWT"}), &claims, b"");
    assert_invalid(
        &bearer(&p, "/api", &none).await,
        "the token algorithm is not accepted: none",
        "alg none",
    );
    // HS256 "signed" with the provider's public key material, with the real kid
    let jwks = op.jwks().await;
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == head["kid"])
        .unwrap();
    for secret in [
        rsa.to_string().into_bytes(),
        rsa["n"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let t = hs256(
            &json!({"alg": "HS256", "kid": head["kid"]}),
            &claims,
            &secret,
        );
        assert_invalid(
            &bearer(&p, "/api", &t).await,
            "the token algorithm is not accepted: HS256",
            "HS256 confusion",
        );
    }
    // RS256 signature presented as PS256 (alg that disagrees with the key)
    let mut h2 = head.clone();
    h2["alg"] = json!("PS256");
    let t = format!(
        "{}.{}.{}",
        support::b64(h2.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    assert_invalid(
        &bearer(&p, "/api", &t).await,
        "the token algorithm is not accepted: PS256",
        "alg mismatch",
    );
    // embedded keys / key URLs in the header
    for (k, v) in [
        ("jwk", json!(rsa)),
        ("jku", json!("http://127.0.0.1:1/jwks")),
        ("x5u", json!("http://127.0.0.1:1/cert")),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut h = head.clone();
        h[k] = v;
        let t = format!(
            "{}.{}.{}",
            support::b64(h.to_string().as_bytes()),
            parts[1],
            parts[2]
        );
        assert_invalid(
            &bearer(&p, "/api", &t).await,
            &format!("must not carry `{k}`"),
            k,
        );
    }
    // valid token for another audience
    assert_invalid(
        &bearer(&p, "/wrongaud", &admin).await,
        "the token audience is not accepted",
        "wrong aud",
    );

    // a 100 KB token: refused by the header size limit before any parsing
    let huge = "a".repeat(100 * 1024);
    let r = bearer(&p, "/api", &huge).await;
    assert_eq!(r.status, 431, "huge token");

    // and the real token still works
    assert_eq!(bearer(&p, "/api", &admin).await.status, 200);
}

fn forge_config(issuer: &str, upstream: &str, extra_server: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{extra_server}
[providers.forge]
issuer = "{issuer}"
audiences = ["portcullis-api"]
[[route]]
name = "forge"
path = "/"
upstream = "{upstream}"
auth = "bearer"
require_roles = ["admin"]
"#
    )
}

/// Attack: `Connection: X-Forwarded-User, …` names the proxy's own identity headers as
/// hop-by-hop, so the hop-by-hop cleanup ran after injection removed them (and the signed
/// assertion): the upstream got an authenticated request without — or, behind another hop,
/// with a re-forgeable — identity. The proxy's headers are never removed by the client.
#[tokio::test]
async fn connection_header_cannot_remove_identity_headers() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let cfg = forge_config(&ti.issuer, &up.url(""), "").replace(
        "[[route]]",
        "[headers]\nassertion = \"X-Portcullis-Assertion\"\n[[route]]",
    );
    let p = start_proxy(&cfg).await;
    wait_ready(&p).await;
    let token = ti.sign_rs256(Some("test-rsa"), &ti.claims());
    let auth = format!("Bearer {token}");
    let r = call(
        &p,
        "/x",
        &[
            ("authorization", &auth),
            (
                "connection",
                "x-forwarded-user, X-Forwarded-Roles, x-portcullis-assertion, x-forwarded-for",
            ),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert_eq!(e.header("x-forwarded-user"), Some("forged-user"));
    assert_eq!(e.header("x-forwarded-roles"), Some("admin"));
    assert!(e.header("x-portcullis-assertion").is_some());
    assert!(e.header("x-forwarded-for").is_some());
}

/// Tokens a real provider would not issue, signed with keys the test holds.
#[tokio::test]
async fn forged_claims_and_headers() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let p = start_proxy(&forge_config(
        &ti.issuer,
        &up.url(""),
        "max_header_bytes = 262144",
    ))
    .await;
    wait_ready(&p).await;
    let good = ti.claims();
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        c
    };

    let r = bearer(&p, "/", &ti.sign_rs256(Some("test-rsa"), &good)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed().header("x-forwarded-user"), Some("forged-user"));
    // no kid: one RSA key in the JWKS → unambiguous; ES256 key without `alg` → derived
    assert_eq!(
        bearer(&p, "/", &ti.sign_rs256(None, &good)).await.status,
        200
    );
    assert_eq!(
        bearer(&p, "/", &ti.sign_es256(Some("test-ec"), &good))
            .await
            .status,
        200
    );

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            ti.sign_rs256(Some("test-rsa"), &with("exp", json!(now() - 120))),
            "the token has expired",
        ),
        (
            "nbf future",
            ti.sign_rs256(Some("test-rsa"), &with("nbf", json!(now() + 600))),
            "the token is not valid yet",
        ),
        (
            "iat future",
            ti.sign_rs256(Some("test-rsa"), &with("iat", json!(now() + 600))),
            "the token is not valid yet",
        ),
        (
            "wrong iss",
            ti.sign_rs256(
                Some("test-rsa"),
                &with("iss", json!("https://evil.example")),
            ),
            "the token issuer is not accepted",
        ),
        (
            "wrong aud",
            ti.sign_rs256(Some("test-rsa"), &with("aud", json!(["someone-else"]))),
            "the token audience is not accepted",
        ),
        (
            "no exp",
            ti.sign_rs256(Some("test-rsa"), &with("exp", Value::Null)),
            "the token lacks the required claim `exp`",
        ),
        (
            "no iss",
            ti.sign_rs256(Some("test-rsa"), &with("iss", Value::Null)),
            "the token lacks the required claim `iss`",
        ),
        (
            "no sub",
            ti.sign_rs256(Some("test-rsa"), &with("sub", Value::Null)),
            "the token lacks the required claim `sub`",
        ),
        (
            "RS256 with the EC key's kid",
            ti.sign_rs256(Some("test-ec"), &good),
            "the token algorithm is not accepted: RS256",
        ),
        (
            "unknown kid",
            ti.sign_rs256(Some("nope"), &good),
            "the token's signing key is unknown",
        ),
        (
            "HS256 with the RSA public key (PEM)",
            hs256(
                &json!({"alg":"HS256","kid":"test-rsa"}),
                &good,
                ti.rsa_public_pem.as_bytes(),
            ),
            "not accepted: HS256",
        ),
        (
            "HS256 with the RSA public key (DER)",
            hs256(&json!({"alg":"HS256"}), &good, &ti.rsa_public_der),
            "not accepted: HS256",
        ),
        (
            "alg none",
            raw_jwt(&json!({"alg":"none"}), &good, b""),
            "not accepted: none",
        ),
    ];
    for (case, token, text) in &cases {
        assert_invalid(&bearer(&p, "/", token).await, text, case);
    }
    let r = bearer(
        &p,
        "/",
        &ti.sign_rs256(Some("test-rsa"), &with("roles", json!(["reader"]))),
    )
    .await;
    assert_forbidden(&r, "missing required role(s): admin", "forged reader");

    // a flood of random kids: at most one JWKS refetch per 10 s
    let before = ti.jwks_hits.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..40 {
        let t = ti.sign_rs256(Some(&format!("random-{i}")), &good);
        assert_invalid(
            &bearer(&p, "/", &t).await,
            "signing key is unknown",
            "kid flood",
        );
    }
    let after = ti.jwks_hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "kid flood caused {} JWKS fetches",
        after - before
    );

    // a huge token that fits the (raised) header limit is refused by size
    let huge = "a".repeat(100 * 1024);
    assert_invalid(
        &bearer(&p, "/", &huge).await,
        "the token is too large",
        "100 KB",
    );
}

/// A bearer-only provider with `issuer` + `jwks_uri` skips discovery (the issuer here has
/// none) and still checks `iss`.
#[tokio::test]
async fn bearer_only_provider_without_discovery() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[providers.keys]
issuer = "https://issuer.example"
jwks_uri = "{}/jwks"
audiences = ["portcullis-api"]
[[route]]
name = "api"
path = "/"
upstream = "{}"
auth = "bearer"
"#,
        ti.issuer,
        up.url("")
    );
    let p = start_proxy(&cfg).await;
    wait_ready(&p).await;
    let mut c = ti.claims();
    c["iss"] = json!("https://issuer.example");
    assert_eq!(
        bearer(&p, "/", &ti.sign_rs256(Some("test-rsa"), &c))
            .await
            .status,
        200
    );
    let r = bearer(&p, "/", &ti.sign_rs256(Some("test-rsa"), &ti.claims())).await;
    assert_invalid(&r, "the token issuer is not accepted", "iss still checked");
}

/// Discovery whose issuer differs from the configured one (one trailing slash) is refused:
/// the proxy runs, /readyz says why, bearer routes answer 503 — never 200.
#[tokio::test]
async fn discovery_issuer_mismatch_is_not_ready() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let p = start_proxy(&forge_config(&format!("{}/", ti.issuer), &up.url(""), "")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, _, body) =
        support::http_req("GET", &format!("http://{}/readyz", p.admin()), &[], None).await;
    assert_eq!(st, 503);
    assert!(body.contains("must be identical"), "{body}");
    let r = bearer(&p, "/", &ti.sign_rs256(Some("test-rsa"), &ti.claims())).await;
    assert_unavailable(&r, "issuer mismatch");
}

/// The provider rotates its keys: new tokens validate without a restart; a token signed by a
/// rotated-out key is refused.
#[tokio::test]
async fn key_rotation() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let up = echo_upstream().await;
    let p = start_proxy(&config(&op, &up.url(""), "")).await;
    wait_ready(&p).await;
    let before = op.jwt("api-admin").await;
    let before2 = op.jwt("api-admin").await;
    assert_eq!(bearer(&p, "/api", &before).await.status, 200);
    op.rotate_keys().await;
    let after = op.jwt("api-admin").await;
    assert_ne!(
        jsonwebtoken::decode_header(&before).unwrap().kid,
        jsonwebtoken::decode_header(&after).unwrap().kid
    );
    let r = bearer(&p, "/api", &after).await;
    assert_eq!(r.status, 200, "new key after rotation: {}", r.text());
    assert_invalid(
        &bearer(&p, "/api", &before2).await,
        "the token's signing key is unknown",
        "rotated-out kid",
    );
}

/// Opaque tokens: introspection with Basic and with a ZITADEL key file (private_key_jwt);
/// active:false (revoked) → 401; no aud → 401; concurrent identical misses → one call.
#[tokio::test]
async fn introspection() {
    let op = OidcProvider::start(&[]);
    let up = echo_upstream().await;
    let p = start_proxy(&config(&op, &up.url(""), "")).await;
    wait_ready(&p).await;
    let opaque = op
        .token("api-admin", Some("urn:portcullis:api:opaque"))
        .await;
    assert_eq!(
        opaque.matches('.').count(),
        0,
        "opaque token expected: {opaque}"
    );

    let r = bearer(&p, "/admin", &opaque).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert_eq!(e.header("x-forwarded-user"), Some("api-admin"));
    assert_eq!(e.header("x-forwarded-roles"), Some("admin,reader"));
    // key-file (private_key_jwt) introspection
    let r = bearer(&p, "/ijwt", &opaque).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // reader's opaque token: 403 on admin, every time (cached or not)
    let reader = op
        .token("api-reader", Some("urn:portcullis:api:opaque"))
        .await;
    for _ in 0..2 {
        assert_forbidden(
            &bearer(&p, "/admin", &reader).await,
            "missing required role(s): admin",
            "opaque reader",
        );
    }

    // 20 concurrent requests with one new token → one introspection call
    let fresh = op
        .token("api-admin", Some("urn:portcullis:api:opaque"))
        .await;
    let calls = op.count("POST /token/introspection");
    let futs: Vec<_> = (0..20).map(|_| bearer(&p, "/api", &fresh)).collect();
    for r in futures_util::future::join_all(futs).await {
        assert_eq!(r.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        op.count_settled("POST /token/introspection", calls + 1)
            .await
            - calls,
        1,
        "concurrent misses share one call"
    );

    // revoked → active:false
    let revoked = op
        .token("api-admin", Some("urn:portcullis:api:opaque"))
        .await;
    op.revoke("api-admin", &revoked).await;
    assert_invalid(
        &bearer(&p, "/api", &revoked).await,
        "the token is not active",
        "revoked",
    );
    assert_invalid(
        &bearer(&p, "/api", "made-up-opaque-token").await,
        "the token is not active",
        "unknown opaque",
    );
    // without a resource the introspection answer has no aud and client_id is not an audience
    let no_aud = op.token("api-admin", None).await;
    assert_invalid(
        &bearer(&p, "/api", &no_aud).await,
        "the token audience is not accepted",
        "no aud",
    );
}

/// Provider outage: cached keys keep validating; what needs the provider answers 503; a proxy
/// started while the provider is down is not ready and answers 503, never 200.
#[tokio::test]
async fn provider_down() {
    let mut op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let up = echo_upstream().await;
    let cfg = config(&op, &up.url(""), "");
    let p = start_proxy(&cfg).await;
    wait_ready(&p).await;
    let seen = op.jwt("api-admin").await;
    let unseen = op.jwt("api-admin").await;
    let opaque = op
        .token("api-admin", Some("urn:portcullis:api:opaque"))
        .await;
    assert_eq!(bearer(&p, "/api", &seen).await.status, 200);
    op.kill();

    let r = bearer(&p, "/api", &unseen).await;
    assert_eq!(r.status, 200, "cached keys keep working: {}", r.text());
    assert_unavailable(
        &bearer(&p, "/api", &opaque).await,
        "introspection while down",
    );
    let mut h: Value = payload(&format!("x.{}", unseen.split('.').next().unwrap()));
    h["kid"] = json!("brand-new-kid");
    let parts: Vec<&str> = unseen.split('.').collect();
    let t = format!(
        "{}.{}.{}",
        support::b64(h.to_string().as_bytes()),
        parts[1],
        parts[2]
    );
    assert_unavailable(&bearer(&p, "/api", &t).await, "unknown kid while down");

    // a fresh proxy against the dead provider
    let p2 = start_proxy(&cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_unavailable(&bearer(&p2, "/api", &unseen).await, "fresh proxy");
    let (st, _, body) =
        support::http_req("GET", &format!("http://{}/readyz", p2.admin()), &[], None).await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("provider:op"), "{body}");
    // routes without auth still work
    assert_eq!(call(&p2, "/public", &[]).await.status, 200);
}

/// `portcullis explain --header 'Authorization: Bearer …'` prints the decision and why.
#[tokio::test]
async fn explain_with_token() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let dir = support::temp_dir();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config(&op, "http://127.0.0.1:9", "")).unwrap();
    let reader = op.jwt("api-reader").await;
    let admin = op.jwt("api-admin").await;
    let path_s = path.to_str().unwrap().to_string();
    let run = |tok: String| {
        let path_s = path_s.clone();
        tokio::task::spawn_blocking(move || {
            support::cli(&[
                "explain",
                "--config",
                &path_s,
                "GET",
                "http://app/admin/x",
                "--header",
                &format!("Authorization: Bearer {tok}"),
            ])
        })
    };
    let out = run(reader).await.unwrap();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("roles [reader]"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("403 insufficient_scope — missing required role(s): admin"),
        "{}",
        out.stdout
    );
    let out = run(admin).await.unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("decision: allowed"), "{}", out.stdout);
    let out = run("abc.def.ghi".into()).await.unwrap();
    assert!(
        out.stdout
            .contains("401 invalid_token — the token is malformed"),
        "{}",
        out.stdout
    );
}

/// An opaque token's identity is reused no longer than the introspection cache allows
/// (`[providers.X.introspection] cache`): revoked at the provider, it is still accepted from
/// the cache within that time, and refused once it is over (re-introspected: `active: false`).
#[tokio::test]
async fn opaque_identities_live_no_longer_than_the_introspection_cache() {
    let op = OidcProvider::start(&[]);
    let up = echo_upstream().await;
    let toml = config(&op, &up.url(""), "").replace("cache = \"30s\"", "cache = \"2s\"");
    let p = start_proxy(&toml).await;
    wait_ready(&p).await;
    let opaque = op
        .token("api-admin", Some("urn:portcullis:api:opaque"))
        .await;
    let calls = op.count("POST /token/introspection");
    for _ in 0..3 {
        assert_eq!(bearer(&p, "/api", &opaque).await.status, 200);
    }
    assert_eq!(
        op.count_settled("POST /token/introspection", calls + 1)
            .await
            - calls,
        1,
        "one introspection for three requests"
    );
    op.revoke("api-admin", &opaque).await;
    assert_eq!(
        bearer(&p, "/api", &opaque).await.status,
        200,
        "within the cache time the answer is reused"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_invalid(
        &bearer(&p, "/api", &opaque).await,
        "the token is not active",
        "revoked, after the cache time",
    );
}

/// Email rules against tokens a provider could sign: only a verified address of a listed
/// domain (letter case aside) or a listed address passes. Look-alike domains (a trailing dot or
/// space, a suffix, a subdomain, Cyrillic letters, punycode, NUL), an address spelled with a
/// Unicode letter that lower-cases to ASCII (the Kelvin sign K), and every `email_verified`
/// that is not `true` are refused: 403 with the reason, nothing forwarded.
#[tokio::test]
async fn email_rules_refuse_look_alikes_and_unverified_addresses() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let cfg = forge_config(&ti.issuer, &up.url(""), "").replace(
        "require_roles = [\"admin\"]",
        "require_email_domains = [\"example.com\"]\nrequire_emails = [\"\u{212A}ing@partner.org\"]",
    );
    let p = start_proxy(&cfg).await;
    wait_ready(&p).await;
    let ask = |email: Value, verified: Option<Value>| {
        let mut claims = ti.claims();
        claims["email"] = email;
        if let Some(v) = verified {
            claims["email_verified"] = v;
        }
        format!("Bearer {}", ti.sign_rs256(Some("test-rsa"), &claims))
    };
    for (email, verified) in [
        (json!("ALICE@EXAMPLE.COM"), json!(true)),
        (json!("alice@example.com"), json!("true")),
        (json!("\u{212A}ing@partner.org"), json!(true)),
    ] {
        let auth = ask(email.clone(), Some(verified));
        let r = call(&p, "/x", &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{email}: {}", r.text());
    }
    for email in [
        "alice@example.com.",
        "alice@example.com ",
        "alice@example.com.evil.com",
        "alice@sub.example.com",
        "alice@\u{0435}xample.com",
        "alice@xn--xample-9uf.com",
        "alice@example.com\u{0}",
        "alice@example.co",
        "king@partner.org",
        "KING@PARTNER.ORG",
        "alice",
    ] {
        let auth = ask(json!(email), Some(json!(true)));
        let r = call(&p, "/x", &[("authorization", &auth)]).await;
        assert_eq!(r.status, 403, "{email:?}: {}", r.text());
        assert!(
            r.text().contains("is not allowed here"),
            "{email:?}: {}",
            r.text()
        );
    }
    for verified in [
        Some(json!(false)),
        Some(json!("false")),
        Some(json!("yes")),
        Some(json!(1)),
        Some(json!(null)),
        None,
    ] {
        let auth = ask(json!("alice@example.com"), verified.clone());
        let r = call(&p, "/x", &[("authorization", &auth)]).await;
        assert_eq!(r.status, 403, "{verified:?}: {}", r.text());
        assert!(
            r.text().contains("is not verified"),
            "{verified:?}: {}",
            r.text()
        );
    }
    for email in [
        json!(null),
        json!(""),
        json!(["alice@example.com"]),
        json!(7),
    ] {
        let auth = ask(email.clone(), Some(json!(true)));
        let r = call(&p, "/x", &[("authorization", &auth)]).await;
        assert_eq!(r.status, 403, "{email}: {}", r.text());
        assert!(r.text().contains("has no email"), "{email}: {}", r.text());
    }
}
