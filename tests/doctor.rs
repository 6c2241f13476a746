//! `portcullis doctor` against the real test provider (`oidc-provider`, ZITADEL-shaped: roles
//! map in tokens and userinfo, opaque tokens through introspection with a ZITADEL key JSON, a web
//! app with a key JSON for private_key_jwt): everything passes on a good config (exit 0), and
//! each failure it names — unreachable discovery, an issuer that differs by a byte, a redirect
//! URI the client did not register, a bad client secret, a token whose `aud` is not in
//! `audiences`, a token without roles — is one FAIL line with the fix (exit 1).

mod support;
use support::oidc::OidcProvider;
use support::*;

/// A login provider (client `web`, or `web-jwt` with its key file) with introspection by key
/// file; `public_url` decides the redirect URI (`<public_url>/.auth/callback`).
fn config(dir: &tempfile::TempDir, issuer: &str, provider_extra: &str, public_url: &str) -> String {
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "{public_url}"
[providers.zitadel]
issuer = "{issuer}"
scopes = ["openid", "profile", "email", "urn:zitadel:iam:org:projects:roles"]
audiences = ["portcullis-api"]
{provider_extra}
[providers.zitadel.introspection]
key_file = "zitadel-introspector-key.json"
[session]
secret = "4f9c2b7e1a8d3c6f5e0b9a2d7c4e1f8a"
[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:3000"
auth = "login_or_bearer"
"#
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, &toml).unwrap();
    path.to_str().unwrap().to_string()
}

fn setup(op: &OidcProvider) -> tempfile::TempDir {
    let dir = temp_dir();
    std::fs::copy(
        op.introspector_key_file(),
        dir.path().join("zitadel-introspector-key.json"),
    )
    .unwrap();
    std::fs::copy(
        op.state_dir.path().join("zitadel-web-key.json"),
        dir.path().join("zitadel-web-key.json"),
    )
    .unwrap();
    dir
}

const GOOD: &str = "client_id = \"web\"\nclient_secret = \"web-secret\"";
const CALLBACK_BASE: &str = "http://127.0.0.1:8080";

fn doctor(cfg: &str, extra: &[&str]) -> CliOutput {
    let mut args = vec!["doctor", "--config", cfg];
    args.extend_from_slice(extra);
    cli(&args)
}

fn line<'a>(out: &'a CliOutput, prefix: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{}{}", out.stdout, out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_good_setup_with_jwt_and_opaque_tokens() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let dir = setup(&op);
    let jwt = op.jwt("api-admin").await;
    let opaque = op
        .token("api-admin", Some("urn:portcullis:api:opaque"))
        .await;
    for (client, token) in [
        (GOOD, jwt.as_str()),
        (
            "client_id = \"web-jwt\"\nprivate_key_file = \"zitadel-web-key.json\"",
            opaque.as_str(),
        ),
    ] {
        let cfg = config(&dir, &op.issuer, client, CALLBACK_BASE);
        let out = doctor(&cfg, &["--token", token]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        for check in [
            "PASS discovery",
            "PASS issuer",
            "PASS clock",
            "PASS redirect uri",
            "PASS client credentials",
            "PASS introspection",
            "PASS token",
            "PASS audience",
            "PASS roles",
        ] {
            line(&out, check);
        }
        assert!(line(&out, "PASS roles").contains("admin"), "{}", out.stdout);
        assert!(
            line(&out, "PASS roles").contains("123456"),
            "orgs: {}",
            out.stdout
        );
        assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_failure() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let dir = setup(&op);

    // discovery unreachable: nothing else can be checked
    let cfg = config(&dir, "http://127.0.0.1:1", GOOD, CALLBACK_BASE);
    let out = doctor(&cfg, &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let l = line(&out, "FAIL discovery");
    assert!(
        l.contains("cannot reach http://127.0.0.1:1/.well-known/openid-configuration"),
        "{l}"
    );

    // an issuer differing by a trailing slash: both spellings shown
    let cfg = config(&dir, &format!("{}/", op.issuer), GOOD, CALLBACK_BASE);
    let out = doctor(&cfg, &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let l = line(&out, "FAIL issuer");
    assert!(
        l.contains(&format!("{:?}", op.issuer))
            && l.contains(&format!("{:?}", format!("{}/", op.issuer))),
        "{l}"
    );

    // a redirect URI the client did not register
    let cfg = config(&dir, &op.issuer, GOOD, "http://127.0.0.1:9999");
    let out = doctor(&cfg, &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let l = line(&out, "FAIL redirect uri");
    assert!(
        l.contains("\"http://127.0.0.1:9999/.auth/callback\"") && l.contains("not registered"),
        "{l}"
    );

    // a wrong client secret
    let cfg = config(
        &dir,
        &op.issuer,
        "client_id = \"web\"\nclient_secret = \"wrong\"",
        CALLBACK_BASE,
    );
    let out = doctor(&cfg, &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let l = line(&out, "FAIL client credentials");
    assert!(
        l.contains("invalid_client") && l.contains("Client Secret"),
        "{l}"
    );
    line(&out, "PASS redirect uri");

    // a token whose aud is not one of `audiences`
    let cfg = config(&dir, &op.issuer, GOOD, CALLBACK_BASE).to_string();
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap().replace(
            "audiences = [\"portcullis-api\"]",
            "audiences = [\"other-api\"]",
        ),
    )
    .unwrap();
    let jwt = op.jwt("api-admin").await;
    let out = doctor(&cfg, &["--token", &jwt]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    line(&out, "PASS token");
    let l = line(&out, "FAIL audience");
    assert!(
        l.contains("portcullis-api")
            && l.contains("urn:zitadel:iam:org:project:id:<projectId>:aud"),
        "{l}"
    );

    // a token without roles: the scope and the project setting are named
    let cfg = config(&dir, &op.issuer, GOOD, CALLBACK_BASE);
    let noroles = op.jwt("api-noroles").await;
    let out = doctor(&cfg, &["--token", &noroles]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let l = line(&out, "FAIL roles");
    assert!(
        l.contains("urn:zitadel:iam:org:projects:roles")
            && l.contains("Assert Roles on Authentication"),
        "{l}"
    );
    assert!(out.stdout.contains("1 check(s) failed"), "{}", out.stdout);

    // a token starting with `-` (opaque tokens are random base64url) is the value of
    // `--token`, not an option: it is checked (and here refused as unknown)
    let out = doctor(&cfg, &["--token", "-n0t-a-token"]);
    assert!(
        !out.stderr.contains("unexpected argument"),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAIL token"), "{}", out.stdout);
}

/// `--login`: doctor prints an authorization URL; a browser (scripted: the provider's login
/// form) signs in and ends on `<public_url>/.auth/callback?code=…`, whose address is pasted on
/// stdin; doctor redeems the code and reports the ID token, userinfo's roles (alice: admin,
/// granted in org 123456) — and for bob, who has none, the scope and project setting to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_login_reports_what_a_sign_in_returns() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let callback = "http://localhost:8080/.auth/callback";
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0"), ("CLIENT_REDIRECT_URIS", callback)]);
    let dir = setup(&op);
    let cfg = config(&dir, &op.issuer, GOOD, "http://localhost:8080");
    for (user, roles_line) in [("alice", "PASS roles"), ("bob", "FAIL roles")] {
        let mut child = Command::new(binary())
            .args(["doctor", "--config", &cfg, "--login"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portcullis doctor");
        let pid = child.id();
        // bounded: the child is killed if the test stalls (and only while it is ours: the
        // watchdog stands down as soon as the child has been waited for)
        let (done, stalled) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if stalled
                .recv_timeout(std::time::Duration::from_secs(90))
                .is_err_and(|e| e == std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        let url = loop {
            let mut l = String::new();
            assert!(
                stdout.read_line(&mut l).unwrap() > 0,
                "no URL printed: {seen}"
            );
            seen.push_str(&l);
            if let Some(u) = l.trim().strip_prefix("http") {
                break format!("http{u}");
            }
        };
        assert!(
            url.contains("redirect_uri=http%3A%2F%2Flocalhost%3A8080%2F.auth%2Fcallback"),
            "{url}"
        );
        let b = Browser::new();
        let (_, visited) = b.navigate(&url, user).await;
        let back = visited.last().unwrap().clone();
        assert!(
            back.starts_with(callback) && back.contains("code="),
            "{visited:?}"
        );
        writeln!(child.stdin.take().unwrap(), "{back}").unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let _ = done.send(());
        let status = child.wait().unwrap();
        watchdog.join().unwrap();
        let out = CliOutput {
            code: status.code().unwrap_or(-1),
            stdout: rest,
            stderr: String::new(),
        };
        let l = line(&out, "PASS login");
        assert!(l.contains(&format!("sub \"{user}\"")), "{l}");
        line(&out, "PASS userinfo");
        let l = line(&out, roles_line);
        if user == "alice" {
            assert_eq!(out.code, 0, "{}", out.stdout);
            assert!(l.contains("admin") && l.contains("123456"), "{l}");
        } else {
            assert_eq!(out.code, 1, "{}", out.stdout);
            assert!(l.contains("urn:zitadel:iam:org:projects:roles"), "{l}");
        }
    }
}
