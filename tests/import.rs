//! `portcullis import oauth2-proxy` over a corpus of real-world-shaped oauth2-proxy configs
//! (`tests/import/oauth2-proxy/*.cfg`, and `*.env` for environment-only setups): each file
//! names, in `# expect-out:` / `# no-out:` / `# expect-report:` / `# no-report:` comments, the
//! exact output lines and report lines it must produce, and `# check-env:` the placeholders the
//! output needs; the output must then pass `portcullis check`. Also: `--env` over a real process
//! environment (it wins over the file), `--out`, a TOML error (exit 2 with line:col), and the
//! README's "Coming from oauth2-proxy" example, run as written. Helpers: `tests/support/`.

mod support;

use std::path::{Path, PathBuf};

use support::*;

fn corpus_dir() -> PathBuf {
    repo().join("tests/import/oauth2-proxy")
}

/// The `# name: value` directives of a corpus file, `{DIR}` replaced.
fn directives(text: &str, name: &str, dir: &Path) -> Vec<String> {
    let prefix = format!("# {name}: ");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.replace("{DIR}", dir.to_str().expect("utf-8 dir")))
        .collect()
}

/// Files the corpus configs point at (`{DIR}/…`).
fn write_fixtures(dir: &Path) {
    let ca = TestCa::new();
    let leaf = ca.issue("import-test");
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).expect("write cert");
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).expect("write key");
    std::fs::write(dir.join("redis-ca.pem"), &ca.cert_pem).expect("write ca");
    std::fs::write(dir.join("client-secret"), "c2VjcmV0LWZyb20tYS1maWxl\n").expect("write");
    std::fs::write(
        dir.join("cookie-secret"),
        "8f3c1a9e5b7d2046e1c9a3f5b7d90e2c4a6b8d0f1e3c5a7b\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("emails.txt"),
        "# contractors\nAlice@Contractor.example\nbob@contractor.example, Bob B.\n\n",
    )
    .expect("write");
}

/// Runs `portcullis check` on `toml` with `env`: it must pass.
fn assert_check_passes(dir: &Path, what: &str, toml: &str, env: &[(String, String)]) {
    let path = dir.join("portcullis.toml");
    let run = |text: &str| {
        std::fs::write(&path, text).expect("write output");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli_env(&["check", "-c", path.to_str().expect("utf-8")], &env, &[])
    };
    let out = run(toml);
    if out.code == 0 {
        assert!(out.stdout.contains(": ok ("), "{what}: {}", out.stdout);
        return;
    }
    panic!("{what}: check failed:\n{}\n--- output:\n{toml}", out.stderr);
}

/// Checks one corpus file's directives against an import's output and report.
fn assert_directives(what: &str, text: &str, dir: &Path, out: &CliOutput) {
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    for want in directives(text, "expect-out", dir) {
        assert!(
            lines.contains(&want.as_str()),
            "{what}: output lacks the line {want:?}\n--- output:\n{}\n--- report:\n{}",
            out.stdout,
            out.stderr
        );
    }
    for bad in directives(text, "no-out", dir) {
        assert!(
            !out.stdout.contains(&bad),
            "{what}: output contains {bad:?}\n{}",
            out.stdout
        );
    }
    for want in directives(text, "expect-report", dir) {
        assert!(
            out.stderr.lines().any(|l| l.contains(&want)),
            "{what}: report lacks {want:?}\n--- report:\n{}",
            out.stderr
        );
    }
    for bad in directives(text, "no-report", dir) {
        assert!(
            !out.stderr.contains(&bad),
            "{what}: report contains {bad:?}\n{}",
            out.stderr
        );
    }
}

/// Every `${VAR}` of the output is named in the report (as a placeholder to set, or as an
/// oauth2-proxy variable the output keeps reading).
fn assert_placeholders_reported(what: &str, out: &CliOutput) {
    let mut rest = out.stdout.as_str();
    while let Some(at) = rest.find("${") {
        let name = &rest[at + 2..];
        let name = &name[..name.find('}').expect("closing brace")];
        assert!(
            out.stderr.contains(&format!("  - {name}: ")),
            "{what}: the output reads ${{{name}}} but the report does not name it:\n{}",
            out.stderr
        );
        rest = &rest[at + 2..];
    }
}

fn check_env(text: &str, dir: &Path) -> Vec<(String, String)> {
    directives(text, "check-env", dir)
        .into_iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("check-env: VAR=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Every `*.cfg` of the corpus: the expected lines, the expected report, and `check` passes.
#[test]
fn corpus_configs_import_and_pass_check() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus has {} configs", files.len());
    for file in files {
        let what = file.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = temp_dir();
        let dir = tmp.path();
        write_fixtures(dir);
        let text = std::fs::read_to_string(&file)
            .expect("read corpus file")
            .replace("{DIR}", dir.to_str().expect("utf-8"));
        let cfg = dir.join(&what);
        std::fs::write(&cfg, &text).expect("write cfg");
        let out = cli(&[
            "import",
            "oauth2-proxy",
            "--from",
            cfg.to_str().expect("utf-8"),
        ]);
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("portcullis import oauth2-proxy: "),
            "{what}: {}",
            out.stderr
        );
        assert_directives(&what, &text, dir, &out);
        // No secret of the source reaches the report.
        for secret_key in ["client_secret", "cookie_secret", "redis_password"] {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix(&format!("{secret_key} = ")) {
                    let v = v.trim_matches('"');
                    assert!(!out.stderr.contains(v), "{what}: report shows {secret_key}");
                }
            }
        }
        assert_placeholders_reported(&what, &out);
        assert_check_passes(dir, &what, &out.stdout, &check_env(&text, dir));
    }
}

/// `--env` over a real process environment: an environment-only setup (`env-only.env`);
/// secrets from the environment are written as `${OAUTH2_PROXY_…}` references, so `check`
/// needs the same environment.
#[test]
fn env_only_config_imports_from_the_process_environment() {
    let text = std::fs::read_to_string(corpus_dir().join("env-only.env")).expect("read");
    let tmp = temp_dir();
    let dir = tmp.path();
    let vars: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("VAR=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = cli_env(&["import", "oauth2-proxy", "--env"], &env, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_directives("env-only.env", &text, dir, &out);
    assert_placeholders_reported("env-only.env", &out);
    let mut check = check_env(&text, dir);
    check.extend(vars.iter().cloned());
    assert_check_passes(dir, "env-only.env", &out.stdout, &check);
}

/// The environment wins over the file (as in oauth2-proxy), list values in the environment are
/// comma-separated, and without `--env` the environment is not read.
#[test]
fn env_overrides_the_file() {
    let tmp = temp_dir();
    let cfg = tmp.path().join("oauth2-proxy.cfg");
    std::fs::write(
        &cfg,
        "provider = \"oidc\"\noidc_issuer_url = \"https://file.example.com\"\nclient_id = \"from-file\"\nclient_secret = \"ZmlsZS1jbGllbnQtc2VjcmV0LXZhbHVlLTEyMzQ=\"\ncookie_secret = \"ZmlsZS1jb29raWUtc2VjcmV0LTMyLWJ5dGVzLWxvbmc=\"\nemail_domains = [\"file.example\"]\nupstreams = [\"http://127.0.0.1:3000\"]\n",
    )
    .expect("write");
    let env = [
        ("OAUTH2_PROXY_OIDC_ISSUER_URL", "https://env.example.com"),
        ("OAUTH2_PROXY_EMAIL_DOMAINS", "a.example, b.example"),
        ("OAUTH2_PROXY_SKIP_AUTH_PREFLIGHT", "true"),
    ];
    let from = cfg.to_str().expect("utf-8");
    let out = cli_env(
        &["import", "oauth2-proxy", "--from", from, "--env"],
        &env,
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    for want in [
        "issuer = \"https://env.example.com\"",
        "client_id = \"from-file\"",
        "require_email_domains = [\"a.example\", \"b.example\"]",
        "methods = [\"OPTIONS\"]",
    ] {
        assert!(lines.contains(&want), "lacks {want:?}:\n{}", out.stdout);
    }
    let without = cli_env(&["import", "oauth2-proxy", "--from", from], &env, &[]);
    assert_eq!(without.code, 0, "{}", without.stderr);
    assert!(
        without
            .stdout
            .lines()
            .any(|l| l == "issuer = \"https://file.example.com\""),
        "{}",
        without.stdout
    );
    assert!(!without.stdout.contains("OPTIONS"), "{}", without.stdout);
}

/// A config file that is not TOML → exit 2, naming file:line:col; nothing on stdout.
#[test]
fn toml_error_exits_2_with_line_and_column() {
    let cfg = corpus_dir().join("broken/unterminated.cfg");
    let out = cli(&["import", "oauth2-proxy", "--from", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("unterminated.cfg:4:1: not a valid oauth2-proxy config file (TOML): "),
        "{}",
        out.stderr
    );
    let missing = cli(&[
        "import",
        "oauth2-proxy",
        "--from",
        "/nonexistent/oauth2-proxy.cfg",
    ]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("/nonexistent/oauth2-proxy.cfg: cannot read: "),
        "{}",
        missing.stderr
    );
    let nothing = cli(&["import", "oauth2-proxy"]);
    assert_eq!(nothing.code, 2);
    assert!(nothing.stderr.contains("--from FILE"), "{}", nothing.stderr);
}

/// `--out FILE` writes the config there, readable by its owner only; stdout stays empty.
#[test]
fn out_writes_a_private_file() {
    let tmp = temp_dir();
    let out_path = tmp.path().join("portcullis.toml");
    let cfg = corpus_dir().join("zitadel.cfg");
    let out = cli(&[
        "import",
        "oauth2-proxy",
        "--from",
        cfg.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("wrote "), "{}", out.stderr);
    let written = std::fs::read_to_string(&out_path).expect("output written");
    assert!(written.contains("[providers.oidc]"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
}

/// The fenced block after `<!-- name -->` in README.md.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let marker = format!("<!-- {name} -->");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"));
    let rest = &readme[at + marker.len()..];
    let open = rest.find("```").expect("a fenced block after the marker");
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    body[..body.find("\n```").expect("closing fence") + 1].to_owned()
}

/// README "Coming from oauth2-proxy": the oauth2-proxy config, the command's output and its
/// report are exactly what the README shows, and the output passes `check` with the variable
/// the report asks for.
#[test]
fn readme_example_runs_as_written() {
    let tmp = temp_dir();
    let cfg = tmp.path().join("oauth2-proxy.cfg");
    std::fs::write(&cfg, readme_block("import-oauth2-proxy-cfg")).expect("write");
    let out = cli(&["import", "oauth2-proxy", "--from", cfg.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown_out = readme_block("import-oauth2-proxy-out");
    assert_eq!(
        out.stdout
            .replace(cfg.to_str().unwrap(), "oauth2-proxy.cfg"),
        shown_out,
        "README output differs"
    );
    assert_eq!(
        out.stderr,
        readme_block("import-oauth2-proxy-report"),
        "README report differs"
    );
    assert_check_passes(
        tmp.path(),
        "README example",
        &out.stdout,
        &[(
            "PORTCULLIS_SESSION_SECRET".into(),
            "4f9a1c7e2b8d3065a9c1e7f3b5d2084c6e1a9f3b7d5c2e08".into(),
        )],
    );
}

/// Options oauth2-proxy does not know are reported by the name the user wrote (file key or
/// environment variable), with their value unless the name looks like a secret's.
#[test]
fn unknown_options_are_reported_with_secrets_redacted() {
    let tmp = temp_dir();
    let cfg = tmp.path().join("oauth2-proxy.cfg");
    std::fs::write(
        &cfg,
        "provider = \"oidc\"\noidc_issuer_url = \"https://idp.example.com\"\nclient_id = \"app\"\nclient_secert = \"typo-secret-value\"\nupstream = \"http://127.0.0.1:3000\"\n",
    )
    .expect("write");
    let out = cli_env(
        &[
            "import",
            "oauth2-proxy",
            "--from",
            cfg.to_str().unwrap(),
            "--env",
        ],
        &[("OAUTH2_PROXY_COOKIE_SECERT", "typo-env-secret")],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for want in [
        "  - client_secert = <redacted>: not an oauth2-proxy option (oauth2-proxy refuses unknown options too); instead: check the spelling; remove it",
        "  - upstream = \"http://127.0.0.1:3000\": not an oauth2-proxy option",
        "  - OAUTH2_PROXY_COOKIE_SECERT = <redacted>: not an oauth2-proxy option",
    ] {
        assert!(out.stderr.contains(want), "lacks {want:?}:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("typo-"), "{}", out.stderr);
    assert!(!out.stdout.contains("typo-"), "{}", out.stdout);
}
