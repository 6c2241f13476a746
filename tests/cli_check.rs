//! `portcullis check` validates exactly what `run` uses, and says everything at once: a TLS pair
//! that does not belong together, CA files without a certificate (`upstream_ca_file`,
//! `providers.X.ca_file`, `session.redis_ca_file`) exit 1 with file:line:col and the key; every
//! missing variable and type error of a file comes in one run; a file that cannot be read is
//! named without a position; global flags go before or after the subcommand. And `rediss://`
//! works against a real TLS `redis-server` with a private CA. Helpers: `tests/support/`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const ROUTE: &str = "\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"none\"\n";

/// Writes `toml` as `dir/portcullis.toml` and runs `portcullis check -c` on it.
fn check_in(dir: &Path, toml: &str) -> CliOutput {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, toml).expect("write config");
    cli(&["check", "-c", path.to_str().expect("utf-8 path")])
}

/// The line:col (1-based) of the first `needle` in `toml`.
fn pos(toml: &str, needle: &str) -> String {
    let at = toml.find(needle).expect("needle in config");
    let before = &toml[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{line}:{col}")
}

fn assert_error_at(out: &CliOutput, toml: &str, needle: &str, key: &str, why: &str) {
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let want = format!("portcullis.toml:{}: `{key}`: ", pos(toml, needle));
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no error {want:?} in:\n{}", out.stderr));
    assert!(line.contains(why), "{line}");
}

#[test]
fn a_certificate_and_key_that_do_not_belong_together_fail_check() {
    let dir = temp_dir();
    let ca = TestCa::new();
    let one = ca.issue("one");
    let other = ca.issue("other");
    std::fs::write(dir.path().join("tls.crt"), &one.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &other.key_pem).unwrap();
    let toml = tls_server_toml("", "", ROUTE);
    let out = check_in(dir.path(), &toml);
    assert_error_at(
        &out,
        &toml,
        "\"tls.key\"",
        "server.tls.key",
        "do not belong together",
    );
    // the matching key passes
    std::fs::write(dir.path().join("tls.key"), &one.key_pem).unwrap();
    let out = check_in(dir.path(), &toml);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn ca_files_without_a_certificate_fail_check() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    std::fs::write(
        dir.path().join("notes.pem"),
        "this is where the CA will go\n",
    )
    .unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nupstream_ca_file = \"empty.pem\"\n\n[providers.corp]\nissuer = \"https://id.example.com\"\nca_file = \"notes.pem\"\n{ROUTE}"
    );
    let out = check_in(dir.path(), &toml);
    assert_error_at(
        &out,
        &toml,
        "\"empty.pem\"",
        "server.upstream_ca_file",
        "holds no PEM certificate",
    );
    assert_error_at(
        &out,
        &toml,
        "\"notes.pem\"",
        "providers.corp.ca_file",
        "holds no PEM certificate",
    );
    assert!(out.stderr.contains("2 errors"), "{}", out.stderr);

    // and a route's own CA file, and the Redis one
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nsecret = \"7c1e9a4f0b3d8e2a6f5c1d9b0e4a7f3c\"\nstore = \"redis\"\nredis_url = \"rediss://localhost:6380/0\"\nredis_ca_file = \"empty.pem\"\n{ROUTE}upstream_ca_file = \"notes.pem\"\n"
    );
    let out = check_in(dir.path(), &toml);
    assert_error_at(
        &out,
        &toml,
        "\"empty.pem\"",
        "session.redis_ca_file",
        "holds no PEM certificate",
    );
    assert_error_at(
        &out,
        &toml,
        "\"notes.pem\"",
        "route[0].upstream_ca_file",
        "holds no PEM certificate",
    );
}

#[test]
fn every_missing_variable_and_type_error_comes_in_one_run() {
    let dir = temp_dir();
    // The README's example shape: four variables, none set; plus three wrong types.
    let toml = r#"[server]
listen = "0.0.0.0:8080"
public_url = "${PC_T_PUBLIC_URL}"
max_header_bytes = "lots"

[providers.zitadel]
issuer = "${PC_T_ZITADEL_DOMAIN}"
client_id = "${PC_T_ZITADEL_CLIENT_ID}"
client_secret = "${PC_T_ZITADEL_CLIENT_SECRET}"

[session]
secret = "${PC_T_SESSION_SECRET}"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:3000"
auth = "login"
websocket = "yes"
timeout = "soon"
"#;
    let out = check_in(dir.path(), toml);
    for (needle, key) in [
        ("\"${PC_T_PUBLIC_URL}\"", "server.public_url"),
        ("\"lots\"", "server.max_header_bytes"),
        ("\"${PC_T_ZITADEL_DOMAIN}\"", "providers.zitadel.issuer"),
        (
            "\"${PC_T_ZITADEL_CLIENT_ID}\"",
            "providers.zitadel.client_id",
        ),
        (
            "\"${PC_T_ZITADEL_CLIENT_SECRET}\"",
            "providers.zitadel.client_secret",
        ),
        ("\"${PC_T_SESSION_SECRET}\"", "session.secret"),
        ("\"yes\"", "route[0].websocket"),
        ("\"soon\"", "route[0].timeout"),
    ] {
        let why = if needle.starts_with("\"${") {
            "is not set"
        } else {
            ""
        };
        assert_error_at(&out, toml, needle, key, why);
    }
    assert!(out.stderr.contains("8 errors in"), "{}", out.stderr);
    // A value that could not be read is reported once: not again as missing or invalid.
    assert!(
        !out.stderr.contains("no [session] section"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("needs `client_id`"), "{}", out.stderr);
}

#[test]
fn a_short_session_secret_is_one_error() {
    let dir = temp_dir();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[providers.z]\nissuer = \"https://z.example.com\"\nclient_id = \"abc\"\n\n[session]\nsecret = \"short\"\n{}",
        ROUTE.replace("auth = \"none\"", "auth = \"login\"")
    );
    let out = check_in(dir.path(), &toml);
    assert_error_at(&out, &toml, "\"short\"", "session.secret", "at least 32");
    assert!(out.stderr.contains("1 error in"), "{}", out.stderr);
}

#[test]
fn an_unreadable_config_file_is_named_without_a_position() {
    let out = cli(&["check", "-c", "/nonexistent/portcullis.toml"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("/nonexistent/portcullis.toml: cannot read the config file: "),
        "{first}"
    );
    assert!(!out.stderr.contains(":0:0:"), "{}", out.stderr);
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let dir = temp_dir();
    let toml = format!("[server]\nlisten = \"${{PC_T_LISTEN}}\"\n{ROUTE}");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, toml).unwrap();
    let env = dir.path().join(".env");
    std::fs::write(&env, "PC_T_LISTEN=127.0.0.1:0\n").unwrap();
    let (config, env) = (config.to_str().unwrap(), env.to_str().unwrap());
    for args in [
        vec!["--env-file", env, "check", "-c", config],
        vec!["--env-file", env, "-c", config, "check"],
        vec!["check", "--env-file", env, "-c", config],
        vec!["-c", config, "check", "--env-file", env],
    ] {
        let out = cli(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(out.stdout.contains(": ok ("), "{args:?}: {}", out.stdout);
    }
}

/// A `redis-server` serving TLS only, on a loopback port, with a certificate from `ca`.
struct TlsRedis {
    port: u16,
    child: Child,
}

impl TlsRedis {
    fn start(dir: &Path, ca: &TestCa) -> TlsRedis {
        let leaf = ca.issue("redis");
        std::fs::write(dir.join("redis.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.join("redis.key"), &leaf.key_pem).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let file = |n: &str| dir.join(n).to_str().unwrap().to_string();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &file("redis.crt")])
            .args(["--tls-key-file", &file("redis.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem")])
            .args(["--tls-auth-clients", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install -y redis-server)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return TlsRedis { port, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server (TLS) did not listen on {port}");
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn rediss_with_a_private_ca_connects_and_stores() {
    use portcullis::config::SessionStore;
    use portcullis::session::redis::RedisStore;

    let dir = temp_dir();
    let ca = TestCa::new();
    let redis = TlsRedis::start(dir.path(), &ca);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nsecret = \"7c1e9a4f0b3d8e2a6f5c1d9b0e4a7f3c\"\nstore = \"redis\"\nredis_url = \"rediss://localhost:{}/0\"\nredis_ca_file = \"ca.pem\"\n{ROUTE}",
        redis.port
    );
    let out = check_in(dir.path(), &toml);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let cfg = portcullis::config::load(&dir.path().join("portcullis.toml"), &Default::default())
        .expect("config loads");
    let Some(SessionStore::Redis {
        server,
        ca: Some(ca_file),
    }) = cfg.session.map(|s| s.store)
    else {
        panic!("a Redis store with a CA file");
    };
    let store = RedisStore::new(&server, Some(&ca_file), "tlstest").expect("client");
    let ttl = Duration::from_secs(30);
    assert!(
        store
            .set_once("jti", "abc", ttl)
            .await
            .expect("stored over TLS")
    );
    assert!(store.is_set("jti", "abc").await.expect("read over TLS"));
    assert!(!store.set_once("jti", "abc", ttl).await.expect("seen"));

    // Without the private CA (system roots only) the server's certificate is refused.
    let untrusted = RedisStore::new(&server, None, "tlstest").expect("client");
    assert!(untrusted.is_set("jti", "abc").await.is_err());
}

/// A login provider shaped like ZITADEL, with `scopes` as given, plus `extra` (headers, routes).
fn zitadel_toml(scopes: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[providers.zitadel]\nissuer = \"https://z.example.com\"\nclient_id = \"abc\"\nscopes = {scopes}\n\n[session]\nsecret = \"7c1e9a4f2b8d3e6a5f0c9b1d7e2a4c8f\"\n{extra}\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"login\"\n"
    )
}

fn assert_warning_at(out: &CliOutput, toml: &str, needle: &str, key: &str, why: &str) {
    assert_eq!(out.code, 0, "a warning is not an error: {}", out.stderr);
    let want = "warning: ";
    let at = format!("portcullis.toml:{}: `{key}`: ", pos(toml, needle));
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(want) && l.contains(&at))
        .unwrap_or_else(|| panic!("no warning {at:?} in:\n{}", out.stderr));
    assert!(line.contains(why), "{line}");
}

/// A header mapping a ZITADEL claim whose scope the login provider does not request: `check`
/// warns (file:line:col of the header entry, the scope to add) and exits 0; with the scope,
/// or a `…:project:role:<key>` scope for the roles claims, no warning. Global and per-route
/// headers; the resourceowner, roles and metadata claims.
#[test]
fn check_warns_when_a_zitadel_claims_scope_is_not_requested() {
    let dir = temp_dir();
    let headers = "[headers.claims]\n\"X-User-Org\" = \"urn:zitadel:iam:user:resourceowner:id\"\n\"X-Org-Name\" = \"urn:zitadel:iam:user:resourceowner:name\"\n\"X-Project-Roles\" = \"urn:zitadel:iam:org:project:123:roles\"\n\"X-Meta\" = \"urn:zitadel:iam:user:metadata\"\n\"X-Dept\" = \"department\"\n";
    let toml = zitadel_toml(r#"["openid", "profile"]"#, headers);
    let out = check_in(dir.path(), &toml);
    let add = |s: &str| format!("Add \"{s}\" to providers.zitadel.scopes");
    assert_warning_at(
        &out,
        &toml,
        "\"urn:zitadel:iam:user:resourceowner:id\"",
        "headers.claims.X-User-Org",
        &add("urn:zitadel:iam:user:resourceowner"),
    );
    assert_warning_at(
        &out,
        &toml,
        "\"urn:zitadel:iam:user:resourceowner:name\"",
        "headers.claims.X-Org-Name",
        &add("urn:zitadel:iam:user:resourceowner"),
    );
    assert_warning_at(
        &out,
        &toml,
        "\"urn:zitadel:iam:org:project:123:roles\"",
        "headers.claims.X-Project-Roles",
        "Assert Roles on Authentication",
    );
    assert_warning_at(
        &out,
        &toml,
        "\"urn:zitadel:iam:user:metadata\"",
        "headers.claims.X-Meta",
        &add("urn:zitadel:iam:user:metadata"),
    );
    assert_eq!(out.stderr.matches("warning: ").count(), 4, "{}", out.stderr);
    assert!(out.stdout.contains(": ok"), "{}", out.stdout);

    // every scope requested (a single-role scope counts for the roles claims): quiet
    let toml = zitadel_toml(
        r#"["openid", "urn:zitadel:iam:user:resourceowner", "urn:zitadel:iam:org:project:role:admin", "urn:zitadel:iam:user:metadata"]"#,
        headers,
    );
    let out = check_in(dir.path(), &toml);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    // a route's own headers: named with the route's index
    let toml = zitadel_toml(r#"["openid"]"#, "").replace(
        "auth = \"login\"\n",
        "auth = \"login\"\n[route.headers.claims]\n\"X-User-Org\" = \"urn:zitadel:iam:user:resourceowner:id\"\n",
    );
    let out = check_in(dir.path(), &toml);
    assert_warning_at(
        &out,
        &toml,
        "\"urn:zitadel:iam:user:resourceowner:id\"",
        "route[0].headers.claims.X-User-Org",
        &add("urn:zitadel:iam:user:resourceowner"),
    );
}

/// The shipped example requests the scope of every ZITADEL claim it maps: no warning.
#[test]
fn the_example_config_has_no_scope_warning() {
    let example = repo().join("config/portcullis.example.toml");
    let out = cli_env(
        &["check", "--config", example.to_str().unwrap()],
        &[(
            "SESSION_SECRET",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        )],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

/// `require_org_roles` errors name file:line:col and the key: no `org`, an empty org, an
/// unknown `@` value, no/empty `roles`, an empty role, wrong types, an unknown key, and the rule
/// on an `auth = "none"` route.
#[test]
fn require_org_roles_errors_point_at_the_value() {
    let dir = temp_dir();
    let route = |name: &str, rule: &str| {
        format!(
            "\n[[route]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"login\"\nrequire_org_roles = {rule}\n"
        )
    };
    let routes = [
        route("a", r#"{ org = "", roles = ["admin"] }"#),
        route("b", r#"{ roles = ["admin"] }"#),
        route("c", r#"{ org = "123", roles = [] }"#),
        route("d", r#"{ org = "@me", roles = ["admin"] }"#),
        route("e", r#"{ org = "123", roles = [""] }"#),
        route("f", r#"{ org = 123, roles = ["admin"] }"#),
        route("g", r#"{ org = "123", roles = "admin" }"#),
        route("h", r#"{ org = "123", role = ["admin"] }"#),
    ]
    .concat();
    let toml = zitadel_toml(r#"["openid"]"#, &routes);
    let out = check_in(dir.path(), &toml);
    assert_error_at(
        &out,
        &toml,
        "\"\", roles = [\"admin\"]",
        "route[0].require_org_roles.org",
        "empty organization id",
    );
    assert_error_at(
        &out,
        &toml,
        "{ roles = [\"admin\"] }",
        "route[1].require_org_roles.org",
        "missing `org`",
    );
    assert_error_at(
        &out,
        &toml,
        "[] }",
        "route[2].require_org_roles.roles",
        "empty list",
    );
    assert_error_at(
        &out,
        &toml,
        "\"@me\"",
        "route[3].require_org_roles.org",
        "\"@user\"",
    );
    assert_error_at(
        &out,
        &toml,
        "\"\"] }",
        "route[4].require_org_roles.roles[0]",
        "empty role name",
    );
    assert_error_at(
        &out,
        &toml,
        "123, roles",
        "route[5].require_org_roles.org",
        "invalid type",
    );
    assert_error_at(
        &out,
        &toml,
        "\"admin\" }",
        "route[6].require_org_roles.roles",
        "invalid type",
    );
    assert_error_at(
        &out,
        &toml,
        "role = [",
        "route[7].require_org_roles.role",
        "unknown field `role`",
    );

    let toml = zitadel_toml(r#"["openid"]"#, "").replace(
        "auth = \"login\"\n",
        "auth = \"none\"\nrequire_org_roles = { org = \"@user\", roles = [\"admin\"] }\n",
    );
    let out = check_in(dir.path(), &toml);
    assert_error_at(
        &out,
        &toml,
        "\"none\"",
        "route[0].auth",
        "require_org_roles",
    );
}
