//! Policy you can test, through the real binary over real files: `portcullis test` (text, JSON,
//! JUnit; exit codes; failures naming what differed; test-table errors located), `check` running
//! the tests, `matrix` (every format), `diff`, offline `explain --claims` / `--cookie`, the
//! README's "Test your policy" examples and the example config's tests as written; email rules
//! over real sockets with sessions from the real oidc-provider.

mod support;
use support::*;

use serde_json::{Value, json};

const SECRET: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

const CONFIG: &str = r#"[server]
listen = "127.0.0.1:8080"

[providers.idp]
issuer = "https://idp.example.com"
client_id = "app"
client_secret = "app-secret"

[session]
secret = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

[[route]]
name = "public"
path = "/public"
upstream = "http://127.0.0.1:3000"
auth = "none"

[[route]]
name = "api-read"
host = "app.example.com"
path = "/api"
methods = ["GET"]
upstream = "http://127.0.0.1:3000"
auth = "bearer"
require_any_role = ["reader", "editor"]

[[route]]
name = "api"
host = "app.example.com"
path = "/api"
upstream = "http://127.0.0.1:3000"
auth = "bearer"
require_roles = ["editor"]

[[route]]
name = "staff"
path = "/staff"
upstream = "http://127.0.0.1:3000"
auth = "login"
require_email_domains = ["Example.com"]
require_emails = ["contractor@partner.org"]

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:3000"
auth = "login"
"#;

const PASSING: &str = r#"
[[test]]
name = "readers cannot delete"
request = "DELETE https://app.example.com/api/docs/1"
identity = { sub = "u1", roles = ["reader"] }
expect = { status = 403, route = "api", reason = "missing_role" }

[[test]]
name = "editors can delete"
request = "DELETE https://app.example.com/api/docs/1"
identity = { sub = "u2", roles = ["editor"] }
expect = { status = 200, route = "api" }

[[test]]
name = "no token"
request = "GET https://app.example.com/api/docs"
identity = "anonymous"
expect = { status = 401, route = "api-read", reason = "no_token" }

[[test]]
name = "a browser is sent to sign in"
request = "GET https://app.example.com/home"
headers = { Accept = "text/html" }
identity = "anonymous"
expect = { status = 302, route = "app", reason = "login_required" }

[[test]]
name = "an API client on a login route gets 401"
request = "GET https://app.example.com/home"
identity = "anonymous"
expect = { status = 401, route = "app", reason = "no_session" }

[[test]]
name = "public needs nothing"
request = "GET /public/x"
identity = "anonymous"
expect = { status = 200, route = "public" }

[[test]]
name = "an ambiguous path is refused"
request = "GET https://app.example.com/public/..%2Fadmin"
identity = "anonymous"
expect = { status = 400 }

[[test]]
name = "verified company email"
request = "GET https://app.example.com/staff/x"
identity = { sub = "u3", email = "Kim@EXAMPLE.com", email_verified = true }
expect = { status = 200, route = "staff" }

[[test]]
name = "listed address"
request = "GET https://app.example.com/staff/x"
identity = { sub = "u4", email = "contractor@partner.org", email_verified = true }
expect = { status = 200, route = "staff" }

[[test]]
name = "subdomain is not the domain"
request = "GET https://app.example.com/staff/x"
identity = { sub = "u5", email = "kim@mail.example.com", email_verified = true }
expect = { status = 403, route = "staff", reason = "email_not_allowed" }

[[test]]
name = "unverified email"
request = "GET https://app.example.com/staff/x"
identity = { sub = "u6", email = "kim@example.com", email_verified = false }
expect = { status = 403, reason = "email_not_verified" }

[[test]]
name = "no email"
request = "GET https://app.example.com/staff/x"
identity = { sub = "u7" }
expect = { status = 403, reason = "email_not_verified" }
"#;

const FAILING: &str = r#"
[[test]]
name = "readers may delete (wrong)"
request = "DELETE https://app.example.com/api/docs/1"
identity = { sub = "u1", roles = ["reader"] }
expect = { status = 200, route = "api-read" }
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    write_file(dir, name, text)
}

/// `portcullis test`: all pass → exit 0 and a PASS line per test; a failure → exit 1, naming
/// the test, where it is written, and each difference (status, route) expected vs actual.
#[test]
fn test_command_passes_and_names_what_differed() {
    let dir = temp_dir();
    let ok = write(&dir, "ok.toml", &format!("{CONFIG}{PASSING}"));
    let out = cli(&["test", "--config", &ok]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("PASS readers cannot delete"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("12 passed; 0 failed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("no provider contacted"),
        "{}",
        out.stdout
    );

    let bad = write(&dir, "bad.toml", &format!("{CONFIG}{PASSING}{FAILING}"));
    let out = cli(&["test", "--config", &bad]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let s = &out.stdout;
    assert!(s.contains("FAIL readers may delete (wrong)"), "{s}");
    assert!(s.contains("status: expected 200, got 403"), "{s}");
    assert!(s.contains("route: expected api-read, got api"), "{s}");
    assert!(s.contains("bad.toml:"), "names where the test is: {s}");
    assert!(s.contains("missing required role(s): editor"), "{s}");
    assert!(s.contains("12 passed; 1 failed"), "{s}");
}

/// `--format json` parses (serde_json) with the counts and the differences; `--format junit` is
/// well-formed XML with one testcase per test and one failure.
#[test]
fn test_command_json_and_junit() {
    let dir = temp_dir();
    let bad = write(&dir, "bad.toml", &format!("{CONFIG}{PASSING}{FAILING}"));
    let out = cli(&["test", "--config", &bad, "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        (v["passed"].clone(), v["failed"].clone()),
        (json!(12), json!(1))
    );
    assert_eq!(v["offline"], true);
    let failed: Vec<&Value> = v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["actual"]["status"], 403);
    assert_eq!(failed[0]["actual"]["reason"], "missing_roles");
    assert_eq!(
        failed[0]["differences"][0],
        json!({"field": "status", "expected": "200", "actual": "403"})
    );

    let out = cli(&["test", "--config", &bad, "--format", "junit"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let x = &out.stdout;
    assert_well_formed_xml(x);
    assert_eq!(x.matches("<testcase ").count(), 13, "{x}");
    assert_eq!(x.matches("<failure ").count(), 1, "{x}");
    assert!(x.contains("failures=\"1\""), "{x}");
    assert!(x.contains("status: expected 200, got 403"), "{x}");
}

/// A small XML check: one root, every tag closed in order, attributes quoted, no raw `<`/`&`
/// in text.
fn assert_well_formed_xml(x: &str) {
    let body = x
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    let mut roots = 0;
    while let Some(i) = rest.find(['<', '&']) {
        if rest[i..].starts_with('&') {
            let end = rest[i..].find(';').expect("entity ends with ;");
            let ent = &rest[i..i + end + 1];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&ent),
                "bad entity {ent}"
            );
            rest = &rest[i + end + 1..];
            continue;
        }
        let end = rest[i..].find('>').expect("tag closes") + i;
        let tag = &rest[i + 1..end];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else {
            let name = tag.split_whitespace().next().unwrap().trim_end_matches('/');
            if stack.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name.to_string());
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1, "one root element");
}

/// Test-table errors are config errors with file:line:col and the key; `test` exits 2.
#[test]
fn test_table_errors_are_located() {
    let dir = temp_dir();
    let cases = [
        (
            "unknown key",
            "[[test]]\nname = \"t\"\nrequest = \"GET /\"\nidentity = \"anonymous\"\nexpect = { status = 200 }\nexpeect = 1\n",
            "test[0]",
            "expeect",
        ),
        (
            "bad request line",
            "[[test]]\nname = \"t\"\nrequest = \"GET\"\nidentity = \"anonymous\"\nexpect = { status = 200 }\n",
            "test[0].request",
            "METHOD URL",
        ),
        (
            "bad identity",
            "[[test]]\nname = \"t\"\nrequest = \"GET /\"\nidentity = 7\nexpect = { status = 200 }\n",
            "test[0].identity",
            "anonymous",
        ),
        (
            "unknown reason",
            "[[test]]\nname = \"t\"\nrequest = \"GET /\"\nidentity = \"anonymous\"\nexpect = { status = 403, reason = \"nope\" }\n",
            "test[0].expect.reason",
            "missing_roles",
        ),
        (
            "unknown route",
            "[[test]]\nname = \"t\"\nrequest = \"GET /\"\nidentity = \"anonymous\"\nexpect = { status = 200, route = \"nope\" }\n",
            "test[0].expect.route",
            "api-read",
        ),
        (
            "missing token file",
            "[[test]]\nname = \"t\"\nrequest = \"GET /\"\nidentity = \"tokens/none.jwt\"\nexpect = { status = 200 }\n",
            "test[0].identity",
            "token file",
        ),
    ];
    let lines_before = CONFIG.lines().count();
    for (label, table, key, hint) in cases {
        let f = write(&dir, "t.toml", &format!("{CONFIG}{table}"));
        let out = cli(&["test", "--config", &f]);
        assert_eq!(out.code, 2, "{label}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(key), "{label}: {}", out.stderr);
        assert!(out.stderr.contains(hint), "{label}: {}", out.stderr);
        let line = out
            .stderr
            .split("t.toml:")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{label}: no file:line:col in {}", out.stderr));
        assert!(
            line > lines_before,
            "{label}: line {line} is in the test table"
        );
        // check refuses the same file (exit 1, as any config error)
        let out = cli(&["check", "--config", &f]);
        assert_eq!(out.code, 1, "{label}: {}", out.stderr);
    }
    // the same errors in a --tests file name that file
    let cfg = write(&dir, "c.toml", CONFIG);
    let tests = write(
        &dir,
        "more.toml",
        "[[test]]\nname = \"t\"\nrequest = \"FETCH\"\nidentity = \"anonymous\"\nexpect = { status = 200 }\n",
    );
    let out = cli(&["test", "--config", &cfg, "--tests", &tests]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("more.toml:3:11"), "{}", out.stderr);
    // no tests at all
    let out = cli(&["test", "--config", &cfg]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no policy tests"), "{}", out.stderr);
    // a broken config
    let broken = write(
        &dir,
        "broken.toml",
        &CONFIG.replace("auth = \"none\"", "auth = \"nobody\""),
    );
    let out = cli(&["test", "--config", &broken, "--tests", &tests]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// `--tests FILE` with a token-file identity: the JWT's claims decide, its signature is not
/// checked — and the output says so.
#[test]
fn tests_file_with_a_token_identity() {
    let dir = temp_dir();
    let cfg = write(&dir, "c.toml", CONFIG);
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    let jwt = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","kid":"k"}"#),
        b64(
            json!({"sub": "u9", "roles": ["reader"], "iss": "https://idp.example.com"})
                .to_string()
                .as_bytes()
        ),
        b64(b"not a signature")
    );
    std::fs::write(dir.path().join("tokens/reader.jwt"), format!("{jwt}\n")).unwrap();
    let tests = write(
        &dir,
        "policy-tests.toml",
        r#"[[test]]
name = "a reader's token may read"
request = "GET https://app.example.com/api/x"
identity = "tokens/reader.jwt"
expect = { status = 200, route = "api-read" }

[[test]]
name = "a reader's token may not write (wrong on purpose)"
request = "PUT https://app.example.com/api/x"
identity = "tokens/reader.jwt"
expect = { status = 200 }
"#,
    );
    let out = cli(&["test", "--config", &cfg, "--tests", &tests]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("PASS a reader's token may read"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("(signature not checked)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("status: expected 200, got 403"),
        "{}",
        out.stdout
    );
}

/// `check` runs the config's tests (and `--tests`) and fails on a failing test.
#[test]
fn check_runs_the_tests() {
    let dir = temp_dir();
    let ok = write(&dir, "ok.toml", &format!("{CONFIG}{PASSING}"));
    let out = cli(&["check", "--config", &ok]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok ("), "{}", out.stdout);
    assert!(out.stdout.contains("12 passed"), "{}", out.stdout);
    let bad = write(&dir, "bad.toml", &format!("{CONFIG}{PASSING}{FAILING}"));
    let out = cli(&["check", "--config", &bad]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAIL readers may delete (wrong)"),
        "{}",
        out.stdout
    );
    let cfg = write(&dir, "c.toml", CONFIG);
    let failing = write(&dir, "f.toml", FAILING);
    let out = cli(&["check", "--config", &cfg, "--tests", &failing]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    // without tests, check is what it was
    let out = cli(&["check", "--config", &cfg]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("policy test"), "{}", out.stdout);
}

/// `matrix`: text, JSON (parsed), CSV (a row per route, a column per identity), Markdown; the
/// default identities; an identities file; a broken identities file (exit 2, located).
#[test]
fn matrix_in_every_format() {
    let dir = temp_dir();
    let cfg = write(&dir, "c.toml", CONFIG);
    let out = cli(&["matrix", "--config", &cfg]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t = &out.stdout;
    for id in [
        "anonymous",
        "signed-in",
        "roles:editor",
        "roles:reader",
        "email:user@example.com",
    ] {
        assert!(t.lines().nth(1).unwrap().contains(id), "{id}: {t}");
    }
    let api = t.lines().find(|l| l.starts_with("api ")).expect("api row");
    assert!(api.contains("POST http://app.example.com/api"), "{api}");
    assert!(api.contains("401 no_token"), "{api}");
    assert!(api.contains("403 missing_roles"), "{api}");

    let out = cli(&["matrix", "--config", &cfg, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["routes"].as_array().unwrap().len(), 5);
    let staff = &v["routes"][3];
    assert_eq!(staff["route"], "staff");
    assert_eq!(staff["decisions"]["anonymous"]["status"], 401);
    assert_eq!(
        staff["decisions"]["signed-in"]["reason"],
        "email_not_verified"
    );
    assert_eq!(staff["decisions"]["email:user@example.com"]["status"], 200);

    let out = cli(&["matrix", "--config", &cfg, "--format", "csv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6, "{}", out.stdout);
    assert_eq!(rows[0][..2], ["route", "request"]);
    assert!(
        rows.iter().all(|r| r.len() == rows[0].len()),
        "{}",
        out.stdout
    );
    assert_eq!(rows[1][0], "public");

    let ids = write(
        &dir,
        "ids.toml",
        "[[identity]]\nname = \"anon\"\n\n[[identity]]\nname = \"ed\"\nclaims = { sub = \"u2\", roles = [\"editor\"] }\n",
    );
    let out = cli(&[
        "matrix",
        "--config",
        &cfg,
        "--identities",
        &ids,
        "--format",
        "markdown",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let md: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(md[0], "| route | request | anon | ed |");
    assert_eq!(md[1], "|---|---|---|---|");
    assert!(
        md.iter()
            .any(|l| l.starts_with("| api |") && l.ends_with("| 401 no_token | 200 |")),
        "{}",
        out.stdout
    );

    let bad = write(
        &dir,
        "bad-ids.toml",
        "[[identity]]\nname = \"x\"\nclaims = 5\n",
    );
    let out = cli(&["matrix", "--config", &cfg, "--identities", &bad]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("bad-ids.toml:3:10"), "{}", out.stderr);
    assert!(out.stderr.contains("identity[0].claims"), "{}", out.stderr);
}

/// `diff`: identical configs → exit 0 and "no decision changed"; a changed requirement → exit 1
/// naming the request, the identity and old → new; JSON parses.
#[test]
fn diff_names_changed_decisions() {
    let dir = temp_dir();
    let old = write(&dir, "old.toml", CONFIG);
    let out = cli(&["diff", &old, &old]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("no decision changed"), "{}", out.stdout);

    let new = write(
        &dir,
        "new.toml",
        &CONFIG.replace(
            "require_any_role = [\"reader\", \"editor\"]",
            "require_any_role = [\"editor\"]",
        ),
    );
    let out = cli(&["diff", &old, &new]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "GET http://app.example.com/api  as roles:reader: 200 (route api-read) → 403 missing_any_role (route api-read)"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 decision changed"), "{}", out.stdout);

    let ids = write(
        &dir,
        "ids.toml",
        "[[identity]]\nname = \"ed\"\nclaims = { roles = [\"editor\"] }\n",
    );
    let out = cli(&["diff", &old, &new, "--identities", &ids, "--format", "json"]);
    assert_eq!(out.code, 0, "editors keep access: {}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["changed"], 0);

    // a route that only exists in the new config: its sample path is judged by both
    let added = write(
        &dir,
        "added.toml",
        &CONFIG.replace(
            "[[route]]\nname = \"app\"",
            "[[route]]\nname = \"ops\"\npath = \"/ops\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"login\"\nrequire_roles = [\"ops\"]\n\n[[route]]\nname = \"app\"",
        ),
    );
    let out = cli(&["diff", &old, &added, "--format", "csv"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "GET http://localhost/ops,signed-in,200 (route app),403 missing_roles (route ops)"
        ),
        "{}",
        out.stdout
    );
    // a broken config: exit 2
    let broken = write(&dir, "broken.toml", "[server]\nlisten = 1\n");
    let out = cli(&["diff", &old, &broken]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("broken.toml:2:10"), "{}", out.stderr);
}

/// Offline explain with `--claims`: each check in order with pass/FAIL, the identity labelled
/// synthetic; exit 0 allowed, 1 refused, 2 bad claims.
#[test]
fn explain_with_claims_is_offline() {
    let dir = temp_dir();
    let cfg = write(&dir, "c.toml", CONFIG);
    let url = "https://app.example.com/staff/x";
    let out = cli(&[
        "explain",
        "--config",
        &cfg,
        "GET",
        url,
        "--claims",
        r#"{"sub":"u1","email":"kim@example.com","email_verified":false}"#,
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let s = &out.stdout;
    let order = [
        "pass  request head",
        "pass  route \"staff\"",
        "pass  authentication (auth = login)",
        "FAIL  require_email_domains [example.com] or require_emails [contractor@partner.org]: the email address kim@example.com is not verified",
        "decision: 403",
    ];
    let mut at = 0;
    for o in order {
        let i = s[at..]
            .find(o)
            .unwrap_or_else(|| panic!("{o:?} after offset {at}: {s}"));
        at += i;
    }
    assert!(s.contains("no provider contacted"), "{s}");
    assert!(s.contains("synthetic identity (not verified)"), "{s}");

    let out = cli(&[
        "explain",
        "--config",
        &cfg,
        "DELETE",
        "https://app.example.com/api/1",
        "--claims",
        r#"{"sub":"u2","roles":["editor"]}"#,
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("pass  require_roles [editor]"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("decision: allowed"), "{}", out.stdout);

    let out = cli(&["explain", "--config", &cfg, "GET", url, "--claims", "[1]"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("JSON object"), "{}", out.stderr);
    // a cookie that is no session: 401 and why
    let out = cli(&[
        "explain", "--config", &cfg, "GET", url, "--cookie", "garbage",
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("session cookie __Host-portcullis"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("FAIL  authentication"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("does not open a live session"),
        "{}",
        out.stdout
    );
}

/// The README's "Test your policy" examples, as written: the config, the identities file and
/// each command line with the exit code its comment names (0 when it names none).
#[test]
fn readme_policy_examples_run() {
    let dir = temp_dir();
    write(&dir, "policy.toml", &snippet("README.md", "policy-config"));
    write(
        &dir,
        "identities.toml",
        &snippet("README.md", "policy-identities"),
    );
    let commands = snippet("README.md", "policy-commands");
    let mut ran = 0;
    for line in commands.lines() {
        let Some(cmd) = line.strip_prefix("portcullis ") else {
            continue;
        };
        let (cmd, comment) = cmd.split_once('#').unwrap_or((cmd, ""));
        let want = comment
            .trim()
            .strip_prefix("exit ")
            .and_then(|r| r[..1].parse::<i32>().ok())
            .unwrap_or(0);
        let args = shell_words(cmd);
        let args: Vec<String> = args
            .into_iter()
            .map(|a| {
                if a.ends_with(".toml") {
                    dir.path().join(&a).to_string_lossy().into_owned()
                } else {
                    a
                }
            })
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli_env(&argv, &[("SESSION_SECRET", SECRET)], &[]);
        assert_eq!(
            out.code, want,
            "portcullis {cmd}\n{}{}",
            out.stdout, out.stderr
        );
        if argv.contains(&"junit") {
            assert_well_formed_xml(&out.stdout);
        }
        ran += 1;
    }
    assert!(ran >= 5, "the README's commands: {commands}");
}

/// Splits a command line on spaces, keeping '…' quoted words whole.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The shipped example config's `[[test]]` tables pass under `check` and `test`.
#[test]
fn example_config_tests_pass() {
    let example = repo().join("config/portcullis.example.toml");
    let example = example.to_str().unwrap();
    let out = cli_env(
        &["test", "--config", example],
        &[("SESSION_SECRET", SECRET)],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("4 passed; 0 failed"), "{}", out.stdout);
    let out = cli_env(
        &["check", "--config", example],
        &[("SESSION_SECRET", SECRET)],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("4 passed"), "{}", out.stdout);
}

/// `check` validates the email lists with file:line:col: an address among domains, a wildcard,
/// a domain among addresses; and email rules on an `auth = "none"` route.
#[test]
fn check_validates_email_lists() {
    let dir = temp_dir();
    let cases = [
        (
            "require_email_domains = [\"Example.com\"]",
            "require_email_domains = [\"a@example.com\"]",
            "route[3].require_email_domains[0]",
            "is an address",
        ),
        (
            "require_email_domains = [\"Example.com\"]",
            "require_email_domains = [\"*.example.com\"]",
            "route[3].require_email_domains[0]",
            "wildcards",
        ),
        (
            "require_emails = [\"contractor@partner.org\"]",
            "require_emails = [\"partner.org\"]",
            "route[3].require_emails[0]",
            "not an email address",
        ),
        (
            "auth = \"none\"",
            "auth = \"none\"\nrequire_emails = [\"a@b.org\"]",
            "route[0].auth",
            "authenticated route",
        ),
    ];
    for (from, to, key, hint) in cases {
        let f = write(&dir, "e.toml", &CONFIG.replacen(from, to, 1));
        let out = cli(&["check", "--config", &f]);
        assert_eq!(out.code, 1, "{to}: {}", out.stderr);
        assert!(out.stderr.contains(key), "{to}: {}", out.stderr);
        assert!(out.stderr.contains(hint), "{to}: {}", out.stderr);
        assert!(out.stderr.contains("e.toml:"), "{to}: {}", out.stderr);
    }
}

/// Email rules over real sockets with real sessions from the oidc-provider (alice and bob have
/// verified emails at example.com; any other login name gets an unverified one): a verified
/// address at a listed domain passes; a listed address passes; an unverified one is 403
/// `email_not_verified`; a domain that is not listed is 403 naming the address. `explain
/// --cookie` opens alice's real session cookie with the configured secret and agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_rules_with_real_sessions() {
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let upstream = echo_upstream_map().await;
    let mut toml = proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: true,
    });
    let extra = format!(
        "[[route]]\nname = \"staff\"\npath = \"/staff\"\nupstream = \"http://{upstream}\"\nauth = \"login\"\nrequire_email_domains = [\"EXAMPLE.com\"]\n\n[[route]]\nname = \"partners\"\npath = \"/partners\"\nupstream = \"http://{upstream}\"\nauth = \"login\"\nrequire_email_domains = [\"partner.org\"]\nrequire_emails = [\"bob@example.com\"]\n\n"
    );
    let at = toml.find("[[route]]\nname = \"public\"").unwrap();
    toml.insert_str(at, &extra);
    let _proxy = start_proxy_ready(&toml).await;
    let base = format!("http://127.0.0.1:{port}");

    let alice = Browser::new();
    alice.login(&base, "/hello", "alice").await;
    let r = alice.get(&format!("{base}/staff/rota")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["path"], "/staff/rota");
    let r = alice.get(&format!("{base}/partners/x")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("alice@example.com is not allowed here"),
        "{}",
        r.body
    );
    assert!(r.body.contains("partner.org"), "{}", r.body);

    let bob = Browser::new();
    bob.login(&base, "/hello", "bob").await;
    let r = bob.get(&format!("{base}/partners/x")).await;
    assert_eq!(r.status, 200, "listed address: {}", r.body);

    let carol = Browser::new();
    carol.login(&base, "/hello", "carol").await;
    let r = carol.get(&format!("{base}/staff/rota")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("is not verified"), "{}", r.body);

    // explain --cookie with alice's real session cookie, offline from the proxy
    let dir = temp_dir();
    let f = write(&dir, "p.toml", &toml);
    let cookies = alice.cookies(&format!("127.0.0.1:{port}"));
    let header: Vec<String> = cookies
        .iter()
        .filter(|(n, _)| n.starts_with("portcullis"))
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    assert!(
        !header.is_empty(),
        "alice has a session cookie: {cookies:?}"
    );
    let header = header.join("; ") + ";";
    let out = cli(&[
        "explain",
        "--config",
        &f,
        "GET",
        &format!("{base}/staff/x"),
        "--cookie",
        &header,
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("pass  require_email_domains [example.com]"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("session: valid; sub \"alice\""),
        "{}",
        out.stdout
    );
    let out = cli(&[
        "explain",
        "--config",
        &f,
        "GET",
        &format!("{base}/partners/x"),
        "--cookie",
        &header,
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "FAIL  require_email_domains [partner.org] or require_emails [bob@example.com]"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("decision: 403"), "{}", out.stdout);
    drop(provider);
}
