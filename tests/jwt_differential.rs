//! The `jwt_verify` fuzz target's differential property on every `cargo test`: portcullis's
//! JWS verifier never accepts a token that jsonwebtoken (configured the same way) rejects, and
//! when both accept they read the same claims. Same harness as the fuzz target
//! (`fuzz/common/jwt_diff.rs`), over a deterministic set of mutation programs: the seed programs
//! and a few hundred seeded-random ones for each of the nine algorithms. Then the divergences
//! the harness found, over real sockets: the proxy on a bearer route in front of an issuer
//! whose keys the test holds, each refused with a 401 that says why — and a member named twice
//! in a nested object (`realm_access.roles`), which jsonwebtoken accepts too.

mod support;
use support::oidc;
use support::*;
#[path = "../fuzz/common/jwt_diff.rs"]
mod jwt_diff;

use std::collections::BTreeMap;

use jwt_diff::{Harness, KEYS, Verdict};
use oidc::TestIssuer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random programs per algorithm.
const PER_ALG: usize = 300;

/// One random operation with its argument bytes (see `Case::parse` for the layout); the raw
/// JSON operation (19) is left to the curated seeds.
fn random_op(rng: &mut StdRng, out: &mut Vec<u8>) {
    let op: u8 = rng.random_range(0..19);
    out.push(op);
    let args = match op {
        4 | 14 => 2 + usize::from(op == 14),
        10 => 3,
        11 | 12 | 16 => 4,
        15 | 17 => 0,
        18 => {
            let kind: u8 = rng.random_range(0..8);
            out.push(kind);
            [3, 2, 2, 1, 1, 0, 0, 1][kind as usize]
        }
        _ => 1,
    };
    for _ in 0..args {
        out.push(rng.random());
    }
}

fn programs() -> Vec<(String, Vec<u8>)> {
    let mut out = jwt_diff::seed_programs();
    for (k, (kid, _)) in KEYS.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(0x6a77_7400 + k as u64);
        for i in 0..PER_ALG {
            let mut p = vec![k as u8, rng.random_range(0..32)];
            for _ in 0..rng.random_range(1..=3) {
                random_op(&mut rng, &mut p);
            }
            out.push((format!("{kid}-{i}"), p));
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    both_accept: usize,
    both_reject: usize,
    /// jsonwebtoken accepts, portcullis refuses: our error → (count, first example).
    stricter: BTreeMap<String, (usize, String)>,
    violations: Vec<String>,
}

impl Tally {
    fn add(&mut self, h: &Harness, name: &str, v: &Verdict) {
        // Strict: no divergence is tolerated here, `jwt_diff::KNOWN_LOOSER` or not.
        if let Some(why) = h.violation(v) {
            self.violations.push(format!("[{name}] {why}"));
        }
        match (&v.ours, &v.theirs) {
            (Ok(_), Ok(_)) => self.both_accept += 1,
            (Err(_), Err(_)) => self.both_reject += 1,
            (Err(e), Ok(_)) => {
                let example = || format!("[{name}]\n{}", jwt_diff::describe(&v.token));
                self.stricter
                    .entry(e.clone())
                    .or_insert_with(|| (0, example()))
                    .0 += 1;
            }
            (Ok(_), Err(_)) => {}
        }
    }
}

/// The unmutated token of every algorithm passes both verifiers (with and without `kid`,
/// with and without a configured issuer): the harness is live, not vacuously agreeing.
#[test]
fn valid_tokens_pass_both_verifiers() {
    let h = Harness::new();
    for (k, (kid, _)) in KEYS.iter().enumerate() {
        for flags in [0u8, 1, 2, 4, 8 | 16] {
            let v = h.run(&[k as u8, flags]);
            assert!(
                v.ours.is_ok() && v.theirs.is_ok(),
                "{kid} flags {flags}: ours {:?}, jsonwebtoken {:?}\n{}",
                v.ours.as_ref().err(),
                v.theirs.as_ref().err(),
                jwt_diff::describe(&v.token)
            );
        }
    }
}

/// Seed programs and seeded-random mutations of every algorithm: no token that jsonwebtoken
/// rejects is accepted, and no divergence is tolerated. Run with `--nocapture` for the tally
/// of where portcullis is stricter.
#[test]
fn never_accepts_what_jsonwebtoken_rejects() {
    let h = Harness::new();
    let mut t = Tally::default();
    let programs = programs();
    for (name, p) in &programs {
        t.add(&h, name, &h.run(p));
    }
    eprintln!(
        "{} programs: {} accepted by both, {} rejected by both, {} rejected by portcullis only",
        programs.len(),
        t.both_accept,
        t.both_reject,
        t.stricter.values().map(|(n, _)| n).sum::<usize>()
    );
    for (why, (n, example)) in &t.stricter {
        eprintln!("  stricter ×{n}: {why}; first example: {example}");
    }
    // Enough of each kind that the comparison means something.
    assert!(
        t.both_accept >= programs.len() / 10,
        "too few accepted tokens"
    );
    assert!(
        t.violations.is_empty(),
        "{} violation(s):\n\n{}",
        t.violations.len(),
        t.violations.join("\n\n")
    );
}

/// RS256 over the header and payload exactly as written (duplicate members and odd types
/// survive: no serializer in between), with the test issuer's key.
fn sign_raw(ti: &TestIssuer, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &ti.rsa, jsonwebtoken::Algorithm::RS256)
        .expect("RS256 signature");
    format!("{input}.{sig}")
}

/// Attack: validly signed tokens that jsonwebtoken refuses and the verifier used to accept —
/// a member named twice (`"aud":"x","aud":"api"`: two readers, two audiences), header
/// parameters of the wrong type, a non-string `aud` element, `nbf`/`exp`/`iat` outside
/// jsonwebtoken's range (`nbf: -1`), a non-string `sub` or `iss`. Each is refused over HTTP
/// with 401 `invalid_token` naming the member; the same token written correctly passes.
#[tokio::test]
async fn divergent_tokens_are_refused_over_http() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let p = start_proxy(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[providers.forge]
issuer = "{}"
audiences = ["portcullis-api"]
[[route]]
name = "api"
path = "/"
upstream = "{}"
auth = "bearer"
"#,
        ti.issuer,
        up.url("")
    ))
    .await;
    wait_ready(&p).await;

    let (iss, exp, t) = (format!("{:?}", ti.issuer), now() + 300, now());
    let head = r#"{"alg":"RS256","typ":"JWT","kid":"test-rsa"}"#;
    let body = |extra: &str| {
        format!(
            r#"{{"iss":{iss},"sub":"forged-user","aud":"portcullis-api","exp":{exp},"iat":{t}{extra}}}"#
        )
    };
    let call = |token: String| {
        let req = http::Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(empty_body())
            .unwrap();
        send(p.http(), req)
    };

    let ok = call(sign_raw(&ti, head, &body(""))).await;
    assert_eq!(ok.status, 200, "the well-formed token: {}", ok.text());

    let payload_cases: &[(&str, String, &str)] = &[
        (
            "aud twice",
            format!(
                r#"{{"aud":"someone-else","iss":{iss},"sub":"forged-user","aud":"portcullis-api","exp":{exp}}}"#
            ),
            "the token payload names `aud` twice",
        ),
        (
            "exp twice",
            body(&format!(r#","exp":{}"#, exp + 1)),
            "the token payload names `exp` twice",
        ),
        (
            "aud with a number",
            body("").replace(r#""aud":"portcullis-api""#, r#""aud":["portcullis-api",5]"#),
            "the token claim `aud` must be a string or an array of strings",
        ),
        (
            "negative nbf",
            body(r#","nbf":-1"#),
            "the token claim `nbf` has an invalid format",
        ),
        (
            "exp beyond u64",
            body("").replace(&format!(r#""exp":{exp}"#), r#""exp":1e20"#),
            "the token claim `exp` has an invalid format",
        ),
        (
            "negative iat",
            body("").replace(&format!(r#""iat":{t}"#), r#""iat":-1"#),
            "the token claim `iat` has an invalid format",
        ),
        (
            "sub an array",
            body("").replace(r#""sub":"forged-user""#, r#""sub":["forged-user"]"#),
            "the token claim `sub` must be a string",
        ),
        (
            "iss a number",
            body("").replace(&format!(r#""iss":{iss}"#), r#""iss":5"#),
            "the token issuer is not accepted",
        ),
    ];
    for (case, payload, text) in payload_cases {
        let r = call(sign_raw(&ti, head, payload)).await;
        assert_invalid(&r, text, case);
    }

    let header_cases: &[(&str, &str, &str)] = &[
        (
            "alg twice",
            r#"{"alg":"ES512","alg":"RS256","kid":"test-rsa"}"#,
            "the token header names `alg` twice",
        ),
        (
            "kid twice",
            r#"{"alg":"RS256","kid":"test-ec","kid":"test-rsa"}"#,
            "the token header names `kid` twice",
        ),
        (
            "typ a number",
            r#"{"alg":"RS256","typ":5,"kid":"test-rsa"}"#,
            "the token header parameter `typ` must be a string",
        ),
        (
            "cty an object",
            r#"{"alg":"RS256","cty":{},"kid":"test-rsa"}"#,
            "the token header parameter `cty` must be a string",
        ),
        (
            "nonce a number",
            r#"{"alg":"RS256","nonce":7,"kid":"test-rsa"}"#,
            "the token header parameter `nonce` must be a string",
        ),
        (
            "kid a number",
            r#"{"alg":"RS256","kid":5}"#,
            "the token header parameter `kid` must be a string",
        ),
    ];
    for (case, header, text) in header_cases {
        let r = call(sign_raw(&ti, header, &body(""))).await;
        assert_invalid(&r, text, case);
    }
}

/// A 401 `invalid_token` whose description (header and JSON body) contains `text`.
#[track_caller]
fn assert_invalid(r: &support::Resp, text: &str, case: &str) {
    assert_eq!(r.status, 401, "{case}: {}", r.text());
    let w = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        w.starts_with("Bearer error=\"invalid_token\", error_description=\"") && w.contains(text),
        "{case}: WWW-Authenticate {w:?} lacks {text:?}"
    );
    assert!(
        r.text().contains(text),
        "{case}: body {} lacks {text:?}",
        r.text()
    );
}

/// Attack: a validly signed token whose nested role object names `roles` twice
/// (`"realm_access":{"roles":["user"],"roles":["admin"]}`, also with the second name escaped,
/// `"r\u006fles"`) — serde_json keeps the last copy, so the proxy read `admin` where a reader
/// keeping the first saw `user`. Every object of the payload is checked now: 401
/// `invalid_token` naming `realm_access.roles` (or the ZITADEL role it repeats); the same token
/// with one `roles` passes or is refused 403 as its roles say.
#[tokio::test]
async fn nested_duplicate_roles_are_refused_over_http() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let p = start_proxy(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[providers.forge]
issuer = "{}"
audiences = ["portcullis-api"]
roles_claim = "auto"
[[route]]
name = "admin"
path = "/"
upstream = "{}"
auth = "bearer"
require_roles = ["admin"]
"#,
        ti.issuer,
        up.url("")
    ))
    .await;
    wait_ready(&p).await;

    let (iss, exp) = (format!("{:?}", ti.issuer), now() + 300);
    let head = r#"{"alg":"RS256","typ":"JWT","kid":"test-rsa"}"#;
    let body = |extra: &str| {
        format!(r#"{{"iss":{iss},"sub":"forged-user","aud":"portcullis-api","exp":{exp}{extra}}}"#)
    };
    let call = |token: String| {
        let req = http::Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(empty_body())
            .unwrap();
        send(p.http(), req)
    };

    let admin = call(sign_raw(
        &ti,
        head,
        &body(r#","realm_access":{"roles":["admin"]}"#),
    ))
    .await;
    assert_eq!(admin.status, 200, "one `roles`, admin: {}", admin.text());
    let user = call(sign_raw(
        &ti,
        head,
        &body(r#","realm_access":{"roles":["user"]}"#),
    ))
    .await;
    assert_eq!(user.status, 403, "one `roles`, user: {}", user.text());

    let cases: &[(&str, &str, &str)] = &[
        (
            "realm_access.roles twice",
            r#","realm_access":{"roles":["user"],"roles":["admin"]}"#,
            "the token payload names `realm_access.roles` twice",
        ),
        (
            "realm_access.roles twice, escaped",
            r#","realm_access":{"roles":["user"],"r\u006fles":["admin"]}"#,
            "the token payload names `realm_access.roles` twice",
        ),
        (
            "a ZITADEL role twice",
            r#","urn:zitadel:iam:org:project:roles":{"admin":{"1":"a"},"admin":{"2":"b"}}"#,
            "the token payload names `urn:zitadel:iam:org:project:roles.admin` twice",
        ),
    ];
    for (case, extra, text) in cases {
        let r = call(sign_raw(&ti, head, &body(extra))).await;
        assert_invalid(&r, text, case);
    }
}
