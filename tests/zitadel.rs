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
        r.text().contains("missing role(s) admin in organization 111"),
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
        r.text().contains("missing role(s) admin in your organization 111"),
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
    assert_eq!(r.status, 403, "a role list names no organization: {}", r.text());
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
    let r = call(&p, "/x", &[("authorization", &plain), ("x-forwarded-orgs", "999")]).await;
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
    for (setting, want) in [("orgs = \"X-Tenant-Ids\"", Some("x-tenant-ids")), ("orgs = \"\"", None)] {
        let cfg = config(&ti.issuer, &up.url(""))
            .replace("[headers]\n", &format!("[headers]\n{setting}\n"));
        let p = start_proxy(&cfg).await;
        wait_ready(&p).await;
        let r = call(&p, "/x", &[("authorization", &t), ("x-forwarded-orgs", "999"), ("x-tenant-ids", "999")]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let e = r.echoed();
        assert_eq!(e.header("x-forwarded-orgs"), None, "{setting}");
        match want {
            Some(h) => assert_eq!(e.header_all(h), ["111"], "{setting}"),
            None => assert_eq!(e.header("x-tenant-ids"), Some("999"), "{setting}: not an identity header when off"),
        }
        p.shutdown().await;
    }
}
