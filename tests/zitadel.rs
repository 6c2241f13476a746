//! ZITADEL organizations over real sockets, with tokens shaped like ZITADEL's (a role map
//! `{"admin": {"<orgId>": "<orgDomain>"}}`, `urn:zitadel:iam:user:resourceowner:id`) signed by a
//! key the test holds: `require_org_roles` with a fixed org and with `"@user"` (pass, org missing,
//! role granted in another org → 403 naming it), `X-Forwarded-Orgs` (sorted, forged copies
//! stripped) and `orgs` in the signed assertion. Helpers: `tests/support/`.

mod support;
use support::oidc::{TestIssuer, payload};
use support::*;

use serde_json::{Value, json};

const ROLES: &str = "urn:zitadel:iam:org:project:roles";
const OWNER: &str = "urn:zitadel:iam:user:resourceowner:id";

fn config(issuer: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[providers.zitadel]
issuer = "{issuer}"
audiences = ["portcullis-api"]
[headers]
assertion = "X-Portcullis-Assertion"
[[route]]
name = "acme-admin"
path = "/acme"
upstream = "{upstream}"
auth = "bearer"
require_org_roles = {{ org = "111", roles = ["admin", "billing"] }}
[[route]]
name = "own-admin"
path = "/own"
upstream = "{upstream}"
auth = "bearer"
require_org_roles = {{ org = "@user", roles = ["admin"] }}
[[route]]
name = "any"
path = "/"
upstream = "{upstream}"
auth = "bearer"
"#
    )
}

fn token(ti: &TestIssuer, roles: Value, owner: Option<&str>) -> String {
    let mut c = ti.claims();
    c.as_object_mut().unwrap().remove("roles");
    c[ROLES] = roles;
    if let Some(o) = owner {
        c[OWNER] = json!(o);
    }
    format!("Bearer {}", ti.sign_rs256(Some("test-rsa"), &c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_org_roles_fixed_org_and_own_org() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let p = start_proxy(&config(&ti.issuer, &up.url(""))).await;
    wait_ready(&p).await;

    // admin + billing granted in 111, reader in 222; the user belongs to 111
    let acme = token(
        &ti,
        json!({"admin": {"111": "acme.example"}, "billing": {"111": "acme.example", "222": "beta.example"}, "reader": {"222": "beta.example"}}),
        Some("111"),
    );
    for path in ["/acme/x", "/own/x"] {
        let r = call(&p, path, &[("authorization", &acme)]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    // admin granted only in another organization (222): the role name alone does not pass
    let elsewhere = token(
        &ti,
        json!({"admin": {"222": "beta.example"}, "billing": {"111": "acme.example"}}),
        Some("111"),
    );
    let r = call(&p, "/acme/x", &[("authorization", &elsewhere)]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text()
            .contains("missing role(s) admin in organization 111"),
        "{}",
        r.text()
    );
    assert!(
        r.headers
            .get("www-authenticate")
            .and_then(|w| w.to_str().ok())
            .is_some_and(|w| w.contains("insufficient_scope")),
        "{:?}",
        r.headers.get("www-authenticate")
    );
    let r = call(&p, "/own/x", &[("authorization", &elsewhere)]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text()
            .contains("missing role(s) admin in your organization 111"),
        "{}",
        r.text()
    );

    // @user follows the user's own organization: admin in 222 passes for a user of 222
    let beta_user = token(&ti, json!({"admin": {"222": "beta.example"}}), Some("222"));
    let r = call(&p, "/own/x", &[("authorization", &beta_user)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&p, "/acme/x", &[("authorization", &beta_user)]).await;
    assert_eq!(r.status, 403, "{}", r.text());

    // the organization missing altogether: no resourceowner claim for @user, no grant at all
    let no_owner = token(&ti, json!({"admin": {"111": "acme.example"}}), None);
    let r = call(&p, "/own/x", &[("authorization", &no_owner)]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("urn:zitadel:iam:user:resourceowner"),
        "{}",
        r.text()
    );
    let plain = token(&ti, json!(["admin"]), Some("111"));
    let r = call(&p, "/acme/x", &[("authorization", &plain)]).await;
    assert_eq!(
        r.status,
        403,
        "a role list names no organization: {}",
        r.text()
    );
    assert!(r.text().contains("admin, billing"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_header_and_assertion() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let p = start_proxy(&config(&ti.issuer, &up.url(""))).await;
    wait_ready(&p).await;
    let t = token(
        &ti,
        json!({"reader": {"333": "c.example", "111": "acme.example"}, "admin": {"111": "acme.example"}}),
        Some("111"),
    );
    let r = call(
        &p,
        "/x",
        &[
            ("authorization", &t),
            ("x-forwarded-orgs", "999"),
            ("x_forwarded_orgs", "999"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert_eq!(e.header_all("x-forwarded-orgs"), ["111,333"]);
    assert!(!e.header_names().contains(&"x_forwarded_orgs"));
    let a = payload(e.header("x-portcullis-assertion").expect("assertion"));
    assert_eq!(a["orgs"], json!(["111", "333"]));

    // no role map: no header (a forged one still stripped), an empty list in the assertion
    let plain = token(&ti, json!(["admin"]), None);
    let r = call(
        &p,
        "/x",
        &[("authorization", &plain), ("x-forwarded-orgs", "999")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert_eq!(e.header("x-forwarded-orgs"), None);
    let a = payload(e.header("x-portcullis-assertion").expect("assertion"));
    assert_eq!(a["orgs"], json!([]));
}

/// `orgs = "X-Tenant-Ids"` renames the header (the default name is then still stripped);
/// `orgs = ""` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_header_renamed_or_disabled() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let t = token(&ti, json!({"admin": {"111": "acme.example"}}), Some("111"));
    for (setting, want) in [
        ("orgs = \"X-Tenant-Ids\"", Some("x-tenant-ids")),
        ("orgs = \"\"", None),
    ] {
        let cfg = config(&ti.issuer, &up.url(""))
            .replace("[headers]\n", &format!("[headers]\n{setting}\n"));
        let p = start_proxy(&cfg).await;
        wait_ready(&p).await;
        let r = call(
            &p,
            "/x",
            &[
                ("authorization", &t),
                ("x-forwarded-orgs", "999"),
                ("x-tenant-ids", "999"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let e = r.echoed();
        assert_eq!(e.header("x-forwarded-orgs"), None, "{setting}");
        match want {
            Some(h) => assert_eq!(e.header_all(h), ["111"], "{setting}"),
            None => assert_eq!(
                e.header("x-tenant-ids"),
                Some("999"),
                "{setting}: not an identity header when off"
            ),
        }
        p.shutdown().await;
    }
}

/// A ZITADEL key JSON (`type` application or serviceaccount) with a fresh RSA key.
fn zitadel_key_json(kind: &str) -> String {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use base64::Engine;
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der = kp.as_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    json!({"type": kind, "keyId": "281537329873", "key": pem, "appId": "281537329871", "clientId": "281537329870@shop"})
        .to_string()
}

/// Every ```toml block of docs/zitadel.md is a whole config that `portcullis check` accepts
/// (its `[[test]]` tables run and pass too), with the guide's environment variables set.
#[test]
fn every_config_in_the_zitadel_guide_passes_check() {
    let doc = std::fs::read_to_string(repo().join("docs/zitadel.md")).expect("docs/zitadel.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|rest| &rest[..rest.find("\n```").expect("closing fence") + 1])
        .collect();
    assert!(blocks.len() >= 5, "the guide's configs: {}", blocks.len());
    let dir = temp_dir();
    let api_key = dir.path().join("api-key.json");
    let app_key = dir.path().join("app-key.json");
    std::fs::write(&api_key, zitadel_key_json("application")).unwrap();
    std::fs::write(&app_key, zitadel_key_json("application")).unwrap();
    let env = [
        ("ZITADEL_DOMAIN", "https://my-instance.zitadel.cloud"),
        ("ZITADEL_CLIENT_ID", "281537329870@shop"),
        ("ZITADEL_CLIENT_SECRET", "m8XyQ2vLr7TnWk4pZc9Hs1Jd6Fb3Ga0E"),
        ("ZITADEL_PROJECT_ID", "281537329800"),
        ("ZITADEL_ORG_ID", "231851478245"),
        (
            "SESSION_SECRET",
            "3f9a1c7e5b2d8f4a6c0e9b1d7f3a5c8e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a",
        ),
        ("ZITADEL_API_KEY_PATH", api_key.to_str().unwrap()),
        ("ZITADEL_APP_KEY_PATH", app_key.to_str().unwrap()),
    ];
    for (i, block) in blocks.iter().enumerate() {
        let path = dir.path().join(format!("guide-{i}.toml"));
        std::fs::write(&path, block).unwrap();
        let out = cli_env(&["check", "--config", path.to_str().unwrap()], &env, &[]);
        assert_eq!(
            out.code, 0,
            "config #{i} of docs/zitadel.md:\n{block}\n{}{}",
            out.stdout, out.stderr
        );
        assert!(
            !out.stderr.contains("warning"),
            "config #{i} of docs/zitadel.md warns:\n{}",
            out.stderr
        );
    }
}

/// `[[test]]` synthetic identities carry a role map (as `roles` or under ZITADEL's claim name)
/// and `require_org_roles` judges it offline; `explain --claims` shows the unmet rule, the
/// granted orgs and the reason.
#[test]
fn org_roles_in_policy_tests_and_explain() {
    let dir = temp_dir();
    let toml = r#"
[server]
listen = "127.0.0.1:0"
[providers.zitadel]
issuer = "https://z.example.com"
audiences = ["api"]
[[route]]
name = "tenant"
path = "/t"
upstream = "http://127.0.0.1:3000"
auth = "bearer"
require_org_roles = { org = "@user", roles = ["admin"] }
[[route]]
name = "acme"
path = "/acme"
upstream = "http://127.0.0.1:3000"
auth = "bearer"
require_org_roles = { org = "111", roles = ["admin"] }

[[test]]
name = "own org admin"
request = "GET http://x/t"
identity = { sub = "u1", roles = { admin = { "222" = "b.example" } }, "urn:zitadel:iam:user:resourceowner:id" = "222" }
expect = { status = 200 }

[[test]]
name = "admin elsewhere"
request = "GET http://x/acme"
identity = { sub = "u1", "urn:zitadel:iam:org:project:roles" = { admin = { "222" = "b.example" } } }
expect = { status = 403, reason = "missing_org_roles" }

[[test]]
name = "no org claim"
request = "GET http://x/t"
identity = { sub = "u1", roles = { admin = { "222" = "b.example" } } }
expect = { status = 403, reason = "missing_org_roles" }
"#;
    let path = dir.path().join("p.toml");
    std::fs::write(&path, toml).unwrap();
    let p = path.to_str().unwrap();
    let out = cli(&["test", "--config", p]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("3 passed"), "{}", out.stdout);

    let out = cli(&[
        "explain",
        "--config",
        p,
        "GET",
        "http://x/acme",
        "--claims",
        r#"{"sub":"u1","urn:zitadel:iam:org:project:roles":{"admin":{"333":"c.example","222":"b.example"}}}"#,
    ]);
    assert!(
        out.stdout
            .contains("requires roles admin in organization 111"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "FAIL  require_org_roles [admin] in org 111: missing role(s) admin in organization 111"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("orgs [222, 333]"), "{}", out.stdout);
    assert!(out.stdout.contains("403"), "{}", out.stdout);

    // the matrix's default identities include one per org rule, allowed on its own route only
    let out = cli(&["matrix", "--config", p, "--format", "json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("org:111:admin"), "{}", out.stdout);
    assert!(out.stdout.contains("org:@user:admin"), "{}", out.stdout);
}

/// The README links the ZITADEL guide from its first screen.
#[test]
fn readme_links_the_zitadel_guide_on_its_first_screen() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let first: String = readme.lines().take(25).collect::<Vec<_>>().join("\n");
    assert!(first.contains("(docs/zitadel.md)"), "{first}");
}

/// A browser login at the test provider (ZITADEL-shaped: alice's role map `{"admin":
/// {"123456": "acme.localhost"}}` and resourceowner 123456 arrive in userinfo): the session
/// carries the org grants — `X-Forwarded-Orgs`, `require_org_roles` with `@user` and a fixed
/// org — across requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_carry_org_grants() {
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let up = echo_upstream_map().await;
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
[providers.op]
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret"
scopes = ["openid", "profile", "email", "urn:zitadel:iam:org:projects:roles"]
[session]
{session}
[[route]]
name = "own"
path = "/own"
upstream = "http://{up}"
auth = "login"
require_org_roles = {{ org = "@user", roles = ["admin"] }}
[[route]]
name = "other"
path = "/other"
upstream = "http://{up}"
auth = "login"
require_org_roles = {{ org = "999", roles = ["admin"] }}
[[route]]
name = "app"
path = "/"
upstream = "http://{up}"
auth = "login"
"#,
        issuer = provider.issuer,
        session = session_cfg(""),
    );
    let _proxy = start_proxy_ready(&toml).await;
    let base = format!("http://127.0.0.1:{port}");
    let header = |r: &Page, name: &str| r.json()["headers"][name].as_str().map(str::to_string);

    let alice = Browser::new();
    let r = alice.login(&base, "/", "alice").await;
    assert_eq!(header(&r, "x-forwarded-orgs").as_deref(), Some("123456"));
    let r = alice.get(&format!("{base}/own/x")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(header(&r, "x-forwarded-orgs").as_deref(), Some("123456"));
    let r = alice.get(&format!("{base}/other/x")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("missing role(s) admin in organization 999"),
        "{}",
        r.body
    );

    // bob: same organization, no role there
    let bob = Browser::new();
    let r = bob.login(&base, "/", "bob").await;
    assert_eq!(header(&r, "x-forwarded-orgs"), None);
    let r = bob.get(&format!("{base}/own/x")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body
            .contains("missing role(s) admin in your organization 123456"),
        "{}",
        r.body
    );
}
