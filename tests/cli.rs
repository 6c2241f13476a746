//! The command line, running the real binary: `check` (accepts a good config, reports each
//! error with file:line:col and the key, refuses published placeholder session secrets),
//! `--env-file`, `explain`, `version`, `health`, and `run` failing cleanly.

mod support;
use support::*;

const GOOD: &str = r#"[server]
listen = "127.0.0.1:8080"

[[route]]
name = "admin"
host = "app.local"
path = "/admin"
upstream = "http://127.0.0.1:3000"
auth = "none"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:3001"
auth = "none"
"#;

#[test]
fn cli_check_accepts_a_good_config() {
    let dir = temp_dir();
    let f = write_file(&dir, "good.toml", GOOD);
    let out = cli(&["check", "--config", &f]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok"), "{}", out.stdout);
}

/// Each config error: exit 1, and the message names file:line:col and the key.
#[test]
fn cli_check_reports_each_error_with_location_and_key() {
    let dir = temp_dir();
    const PROVIDER: &str =
        "\n[providers.idp]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\n";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (label, config, "line:" expected, key mentioned)
        (
            "unknown key",
            GOOD.replace("listen = ", "listne = \"x\"\nlisten = "),
            "2:1",
            "listne",
        ),
        (
            "wrong type",
            GOOD.replace("\"127.0.0.1:8080\"", "8080"),
            "2:10",
            "server.listen",
        ),
        (
            "bad URL",
            GOOD.replace("http://127.0.0.1:3001", "127.0.0.1:3001"),
            "14:12",
            "route[1].upstream",
        ),
        (
            "missing provider",
            format!(
                "{PROVIDER}{}",
                GOOD.replace(
                    "auth = \"none\"\n\n",
                    "auth = \"bearer\"\nprovider = \"nope\"\n\n"
                )
            ),
            "14:12",
            "route[0].provider",
        ),
        (
            "duplicate route names",
            GOOD.replace("name = \"app\"", "name = \"admin\""),
            "12:8",
            "route[1].name",
        ),
        (
            "shadowed route",
            format!(
                "{GOOD}\n[[route]]\nname = \"late\"\npath = \"/late\"\nupstream = \"http://127.0.0.1:3002\"\nauth = \"none\"\n"
            ),
            "17:1",
            "route[2]",
        ),
        (
            "short session secret",
            format!("{GOOD}\n[session]\nsecret = \"too-short\"\n"),
            "18:10",
            "session.secret",
        ),
        (
            "missing env var",
            GOOD.replace("http://127.0.0.1:3000", "${PORTCULLIS_IT_SURELY_UNSET_VAR}"),
            "8:12",
            "PORTCULLIS_IT_SURELY_UNSET_VAR",
        ),
    ];
    let cases = {
        let mut cases = cases;
        std::fs::write(dir.path().join("garbage.pem"), "not PEM at all").unwrap();
        let tls = |cert: &str| {
            GOOD.replace(
                "listen = \"127.0.0.1:8080\"\n",
                &format!("listen = \"127.0.0.1:8080\"\n[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"{cert}\"\nkey = \"garbage.pem\"\n"),
            )
        };
        cases.push((
            "unreadable cert file",
            tls("missing.crt"),
            "5:8",
            "server.tls.cert",
        ));
        cases.push((
            "malformed key file",
            tls("garbage.pem"),
            "6:7",
            "server.tls.key",
        ));
        cases
    };
    let mut failures = Vec::new();
    for (i, (label, text, line_col, key)) in cases.iter().enumerate() {
        let f = write_file(&dir, &format!("bad{i}.toml"), text);
        let out = cli(&["check", "--config", &f]);
        let loc = format!("{f}:{line_col}:");
        if out.code != 1 || !out.stderr.contains(&loc) || !out.stderr.contains(key) {
            failures.push(format!(
                "{label}: want exit 1, {loc} and {key:?}; got exit {}:\n{}",
                out.code, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `--env-file` supplies `${VAR}` values; without it the variable is missing.
#[test]
fn cli_env_file_supplies_variables() {
    let dir = temp_dir();
    let f = write_file(
        &dir,
        "env.toml",
        &GOOD.replace("http://127.0.0.1:3000", "${PORTCULLIS_IT_ENVFILE_UPSTREAM}"),
    );
    let env = write_file(
        &dir,
        "test.env",
        "# comment\nPORTCULLIS_IT_ENVFILE_UPSTREAM=http://127.0.0.1:4000\n",
    );
    let out = cli(&["check", "--config", &f, "--env-file", &env]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = cli(&["check", "--config", &f]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("PORTCULLIS_IT_ENVFILE_UPSTREAM"),
        "{}",
        out.stderr
    );
    let out = cli(&[
        "explain",
        "--config",
        &f,
        "--env-file",
        &env,
        "GET",
        "http://app.local/admin/x",
    ]);
    assert!(
        out.stdout.contains("http://127.0.0.1:4000"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn cli_explain_prints_the_route() {
    let dir = temp_dir();
    let f = write_file(&dir, "good.toml", GOOD);
    let out = cli(&["explain", "--config", &f, "GET", "http://app.local/admin"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("route: \"admin\""), "{}", out.stdout);
    assert!(out.stdout.contains("auth: none"), "{}", out.stdout);
    let out = cli(&["explain", "--config", &f, "GET", "/admin/../x"]);
    assert!(out.stdout.contains("route: \"app\""), "{}", out.stdout);
    assert!(out.stdout.contains("normalized path: /x"), "{}", out.stdout);
    let out = cli(&["explain", "--config", &f, "GET", "http://app.local/%zz"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("400"), "{}", out.stdout);
}

#[test]
fn cli_version() {
    let out = cli(&["version"]);
    assert_eq!(out.code, 0);
    // `portcullis 0.1.0 (commit <sha>[-dirty] | unknown, built YYYY-MM-DD)`
    let line = out.stdout.trim();
    let prefix = format!("portcullis {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&prefix), "{line}");
    let (commit, built) = line[prefix.len()..]
        .trim_end_matches(')')
        .split_once(", built ")
        .unwrap_or_else(|| panic!("no build date: {line}"));
    assert!(
        commit == "unknown"
            || commit.trim_end_matches("-dirty").len() == 40
                && commit
                    .trim_end_matches("-dirty")
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit()),
        "commit {commit:?} in {line}"
    );
    let b = built.as_bytes();
    assert!(
        b.len() == 10 && b[4] == b'-' && b[7] == b'-' && built.starts_with("20"),
        "date {built:?} in {line}"
    );
}

/// `portcullis run` with a bad config or an address in use exits non-zero with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_fails_cleanly() {
    let dir = temp_dir();
    let bad = write_file(
        &dir,
        "bad.toml",
        &GOOD.replace("listen = ", "listne = \"x\"\nlisten = "),
    );
    let out = cli(&["run", "--config", &bad]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("listne"), "{}", out.stderr);

    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = write_file(
        &dir,
        "busy.toml",
        &GOOD.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")),
    );
    let out = cli(&["run", "--config", &busy]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&port.to_string()), "{}", out.stderr);
    drop(taken);
}

/// Attack (issue 9 item 7): known placeholder secrets passed — `config/portcullis.example.toml`
/// ran with its public default when `SESSION_SECRET` was unset, and the Kubernetes example's
/// placeholder passed too; whoever knows the value seals sessions of their choosing. Each
/// secret published in the examples/docs, any near miss of one or secret that looks like a
/// placeholder, and any secret with fewer than 8 distinct characters, is a config error in
/// `check` and `run`: exit 1, file:line:col, the key and the fix.
#[test]
fn placeholder_session_secrets_are_refused() {
    let dir = temp_dir();
    let config = |name: &str, session: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\n{session}\n\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
            ),
        )
        .expect("write config");
        path.to_str().expect("utf-8 path").to_string()
    };
    let placeholders = portcullis::config::PLACEHOLDER_SECRETS;
    for (i, secret) in placeholders.iter().enumerate() {
        let path = config(&format!("p{i}.toml"), &format!("secret = \"{secret}\""));
        for cmd in ["check", "run"] {
            let out = cli(&[cmd, "--config", &path]);
            assert_eq!(out.code, 1, "{cmd} {secret}: {}{}", out.stdout, out.stderr);
            let at = format!("{path}:5:10: `session.secret`");
            assert!(
                out.stderr.contains(&at),
                "{cmd}: no {at:?} in:\n{}",
                out.stderr
            );
            assert!(out.stderr.contains("placeholder"), "{}", out.stderr);
            assert!(
                out.stderr.contains("openssl rand -hex 32"),
                "{}",
                out.stderr
            );
        }
    }
    // From a file (the Kubernetes example's shape), and through previous_secrets.
    std::fs::write(dir.path().join("session-secret"), placeholders[2]).unwrap();
    let path = config("file.toml", "secret_file = \"session-secret\"");
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(":5:15: `session.secret`") && out.stderr.contains("secret_file"),
        "{}",
        out.stderr
    );
    let hex = "8e1f0a9b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304a5b6c7";
    let path = config(
        "prev.toml",
        &format!(
            "secret = \"{hex}\"\nprevious_secrets = [\"{}\"]",
            placeholders[0]
        ),
    );
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("`session.previous_secrets[0]`"),
        "{}",
        out.stderr
    );
    // Few distinct characters: refused; a hex secret (16 possible characters) passes.
    let path = config("weak.toml", &format!("secret = \"{}\"", "abcabc".repeat(8)));
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("only 3 distinct characters") && out.stderr.contains(":5:10:"),
        "{}",
        out.stderr
    );
    let path = config("good.toml", &format!("secret = \"{hex}\""));
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Near misses (review of issue 9) passed `check`: compared normalized (lower case, letters
    // and digits only), sharing 16 characters with a published placeholder, or containing a
    // placeholder word or an alphabet run, they are refused too.
    for (i, near) in [
        "change_me_to_32_random_bytes_at_least!!",
        "demo-only-session-secret-0123456789abcde",
        "0123456789abcdef0123456789abcdef",
        "your-session-secret-goes-here-32-bytes!!",
    ]
    .iter()
    .enumerate()
    {
        let path = config(&format!("near{i}.toml"), &format!("secret = \"{near}\""));
        let out = cli(&["check", "--config", &path]);
        assert_eq!(out.code, 1, "{near}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(":5:10: `session.secret`") && out.stderr.contains("placeholder"),
            "{near}: {}",
            out.stderr
        );
    }

    // A refused secret is the only error: the [session] section is there, so a login route
    // is not also told there is none.
    let path = dir.path().join("login.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nsecret = \"{}\"\n\n[providers.op]\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"login\"\n",
            placeholders[0]
        ),
    )
    .unwrap();
    let out = cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("`session.secret`"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("no [session] section"),
        "a misleading second error: {}",
        out.stderr
    );

    // The shipped example takes the secret from the environment: unset → the variable is named;
    // its old public default → refused; a generated one → passes.
    let example = support::repo().join("config/portcullis.example.toml");
    let example = example.to_str().unwrap();
    let out = cli_env(&["check", "--config", example], &[], &["SESSION_SECRET"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("SESSION_SECRET"), "{}", out.stderr);
    let out = cli_env(
        &["check", "--config", example],
        &[("SESSION_SECRET", placeholders[0])],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("`session.secret`"), "{}", out.stderr);
    let out = cli_env(
        &["check", "--config", example],
        &[("SESSION_SECRET", hex)],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

/// `portcullis health` (the container HEALTHCHECK, no curl): 0 when `/readyz` answers 200, 1
/// when it answers 503 (a provider not loaded), and the reason on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_health_follows_readyz() {
    let up = echo_upstream().await;
    let ready = start_proxy(&server_toml(&format!(
        "admin_listen = \"127.0.0.1:0\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    )))
    .await;
    wait_ready(&ready).await;
    let url = format!("http://{}/readyz", ready.admin());
    let out = tokio::task::spawn_blocking(move || cli(&["health", "--url", &url]))
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ready (200)"), "{}", out.stdout);

    // A provider whose discovery cannot load: /readyz says 503, so health says not ready.
    let dead = closed_port().await;
    let not_ready = start_proxy(&format!(
        "{}\n[providers.op]\nissuer = \"http://{dead}\"\nclient_id = \"x\"\nclient_secret = \"y\"\n\n[session]\nsecret = \"a-test-secret-of-at-least-32-bytes-4f0c9e2b7a\"\n{}",
        server_toml("admin_listen = \"127.0.0.1:0\""),
        route_toml("app", "login", "path = \"/\"", &up.url(""))
    ))
    .await;
    let url = format!("http://{}/readyz", not_ready.admin());
    let out = tokio::task::spawn_blocking(move || cli(&["health", "--url", &url]))
        .await
        .unwrap();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("not ready (HTTP 503)"),
        "{}",
        out.stderr
    );
    ready.shutdown().await;
    not_ready.shutdown().await;
}

/// `portcullis health` is bounded: nothing listening, or a peer that accepts and never answers,
/// is "not ready" (exit 1) within `--timeout`, and a URL it cannot probe is a usage error (2).
#[test]
fn cli_health_fails_fast_and_says_why() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = cli(&["health", "--url", &format!("http://{closed}/readyz")]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);

    // The kernel completes the handshake (backlog) but nobody reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/readyz", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let out = cli(&["health", "--url", &url, "--timeout", "300ms"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("no answer within 300ms"),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let out = cli(&["health", "--url", "https://127.0.0.1:9090/readyz"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("only http://"), "{}", out.stderr);
}
