//! Every config error names file:line:col and the key; one test per error class.

use std::collections::HashMap;
use std::path::Path;

use super::session::weak_secret;
use super::*;

fn load(src: &str) -> Result<Config, ConfigErrors> {
    load_str(Path::new("/etc/portcullis/test.toml"), src, HashMap::new())
}

fn load_env(src: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_str(Path::new("/etc/portcullis/test.toml"), src, env)
}

fn err(src: &str) -> String {
    match load(src) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:3000"
auth = "none"
"#;

const SECRET: &str = "7c1e9a4f0b3d8e2a6f5c1d9b0e4a7f3c";

#[test]
fn minimal_config_loads() {
    let c = load(BASE).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].auth, AuthMode::None);
    assert!(c.routes[0].preserve_host);
    assert!(c.identity_header_names.contains("x-forwarded-user"));
}

#[test]
fn unknown_key_names_line_col_and_key() {
    let e = err("[server]\nlisten = \"127.0.0.1:8080\"\nlistne = \"x\"\n");
    assert!(e.starts_with("/etc/portcullis/test.toml:3:1: "), "{e}");
    assert!(e.contains("unknown field `listne`"), "{e}");
}

#[test]
fn unknown_key_in_route() {
    let e = err(&format!("{BASE}upstreem = \"x\"\n"));
    assert!(e.contains("unknown field `upstreem`"), "{e}");
    assert!(e.contains("route"), "{e}");
    assert!(e.contains(":10:1:"), "{e}");
}

#[test]
fn wrong_type() {
    let e = err("[server]\nlisten = 8080\n");
    assert!(e.contains(":2:10:"), "{e}");
    assert!(e.contains("server.listen"), "{e}");
}

#[test]
fn bad_socket_address() {
    let e = err("[server]\nlisten = \"localhost-8080\"\n");
    assert!(e.contains(":2:10:") && e.contains("server.listen"), "{e}");
}

#[test]
fn bad_url() {
    let e = err(&BASE.replace("http://127.0.0.1:3000", "127.0.0.1:3000"));
    assert!(e.contains("route[0].upstream"), "{e}");
    assert!(e.contains(":8:12:"), "{e}");
}

#[test]
fn missing_env_var_names_it() {
    let e = err(&BASE.replace("http://127.0.0.1:3000", "${PC_TEST_NOPE_UPSTREAM}"));
    assert!(e.contains("PC_TEST_NOPE_UPSTREAM"), "{e}");
    assert!(e.contains("route[0].upstream"), "{e}");
    assert!(e.contains(":8:12:"), "{e}");
}

#[test]
fn env_var_and_default() {
    let src = BASE.replace(
        "http://127.0.0.1:3000",
        "http://${PC_T_HOST}:${PC_T_PORT:-3000}",
    );
    let c = load_env(&src, &[("PC_T_HOST", "10.1.2.3")]).unwrap();
    assert_eq!(c.routes[0].upstream.authority.as_str(), "10.1.2.3:3000");
}

#[test]
fn missing_provider() {
    let e = err(&format!("{BASE}\n[[route]]\nname = \"api\"\npath = \"/api\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"bearer\"\nprovider = \"nope\"\n").replace("path = \"/\"", "path = \"/x\""));
    assert!(e.contains("no provider named \"nope\""), "{e}");
    assert!(e.contains("route[1].provider"), "{e}");
}

#[test]
fn duplicate_route_names() {
    let src = format!(
        "{}\n[[route]]\nname = \"app\"\npath = \"/other\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n",
        BASE.replace("path = \"/\"", "path = \"/first\"")
    );
    let e = err(&src);
    assert!(e.contains("duplicate route name \"app\""), "{e}");
    assert!(e.contains(":12:8:"), "{e}");
}

#[test]
fn shadowed_route() {
    let src = format!(
        "{BASE}\n[[route]]\nname = \"admin\"\npath = \"/admin\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n"
    );
    let e = err(&src);
    assert!(e.contains("can never match"), "{e}");
    assert!(e.contains("route[1]"), "{e}");
}

#[test]
fn short_session_secret() {
    let src = format!("{BASE}\n[session]\nsecret = \"tooshort\"\n");
    let e = err(&src);
    assert!(
        e.contains("session.secret") && e.contains("at least 32"),
        "{e}"
    );
    assert!(e.contains(":12:10:"), "{e}");
}

#[test]
fn login_route_without_session() {
    let src = BASE.replace("auth = \"none\"", "auth = \"login\"")
        + "\n[providers.z]\nissuer = \"https://z.example.com\"\nclient_id = \"abc\"\n";
    let e = err(&src);
    assert!(e.contains("no [session] section"), "{e}");
}

/// A `[session]` section whose secret is refused: that error alone, not also "no [session]
/// section" on the login route (the section is there).
#[test]
fn refused_session_secret_is_the_only_session_error() {
    let login = BASE.replace("auth = \"none\"", "auth = \"login\"")
        + "\n[providers.z]\nissuer = \"https://z.example.com\"\nclient_id = \"abc\"\n";
    for session in [
        format!("secret = \"{}\"", PLACEHOLDER_SECRETS[0]),
        "secret = \"tooshort\"".to_string(),
        "secret = \"${NOT_SET_ANYWHERE_PORTCULLIS}\"".to_string(),
    ] {
        let e = err(&format!("{login}\n[session]\n{session}\n"));
        assert!(e.contains("`session.secret`"), "{e}");
        assert!(!e.contains("no [session] section"), "{e}");
    }
}

#[test]
fn login_route_ok_with_provider_and_session() {
    let src = BASE.replace("auth = \"none\"", "auth = \"login\"")
        + &format!(
            "\n[providers.z]\nissuer = \"https://z.example.com\"\nclient_id = \"abc\"\n\n[session]\nsecret = \"{SECRET}\"\n"
        );
    let c = load(&src).unwrap();
    assert_eq!(c.routes[0].provider.as_deref(), Some("z"));
    assert_eq!(c.providers["z"].audiences, vec!["abc".to_string()]);
}

#[test]
fn several_errors_reported_together() {
    let src = "[server]\nlisten = \"127.0.0.1:8080\"\n\n[[route]]\nname = \"a\"\npath = \"/a\"\nupstream = \"ftp://x\"\nauth = \"none\"\n\n[[route]]\nname = \"b\"\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"magic\"\n";
    let e = load(src).unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
}

#[test]
fn unknown_auth_mode() {
    let e = err(&BASE.replace("auth = \"none\"", "auth = \"magic\""));
    assert!(
        e.contains("route[0].auth") && e.contains("\"magic\""),
        "{e}"
    );
}

#[test]
fn secret_file_is_read_relative_to_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), format!("{SECRET}\n")).unwrap();
    let src = format!("{BASE}\n[session]\nsecret_file = \"secret.txt\"\n");
    let c = load_str(&dir.path().join("p.toml"), &src, HashMap::new()).unwrap();
    assert_eq!(c.session.unwrap().secret.expose(), SECRET);
}

#[test]
fn missing_secret_file() {
    let e = err(&format!("{BASE}\n[session]\nsecret_file = \"nope.txt\"\n"));
    assert!(
        e.contains("session.secret_file") && e.contains("/etc/portcullis/nope.txt"),
        "{e}"
    );
}

#[test]
fn bad_duration() {
    let e = err(&format!(
        "{BASE}\n[session]\nsecret = \"{SECRET}\"\nlifetime = \"12 parsecs\"\n"
    ));
    assert!(
        e.contains("session.lifetime") && e.contains("invalid duration"),
        "{e}"
    );
}

#[test]
fn syntax_error_position() {
    let e = err("[server\nlisten = 1\n");
    assert!(e.contains("test.toml:1:"), "{e}");
    assert!(e.contains("TOML syntax error"), "{e}");
}

#[test]
fn requirements_on_none_route_rejected() {
    let e = err(&format!("{BASE}require_roles = [\"admin\"]\n"));
    assert!(e.contains("need an authenticated route"), "{e}");
}

#[test]
fn unnormalized_route_path_rejected() {
    let e = err(&BASE.replace("path = \"/\"", "path = \"/a//b\""));
    assert!(e.contains("route[0].path"), "{e}");
}

#[test]
fn header_overrides_and_identity_names() {
    let src = format!(
        "{BASE}\n[headers]\nuser = \"X-Remote-User\"\nemail = \"\"\n[headers.claims]\n\"X-User-Org\" = \"urn:zitadel:iam:user:resourceowner:id\"\n"
    );
    let c = load(&src).unwrap();
    assert_eq!(c.headers.user.as_ref().unwrap().as_str(), "x-remote-user");
    assert!(c.headers.email.is_none());
    assert!(c.identity_header_names.contains("x-remote-user"));
    assert!(c.identity_header_names.contains("x-user-org"));
    assert!(c.identity_header_names.contains("x-forwarded-email"));
}

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/portcullis.example.toml");
    let src = std::fs::read_to_string(&path).unwrap();
    // The example takes the session secret from the environment, without a default.
    if std::env::var_os("SESSION_SECRET").is_none() {
        let missing = load_str(&path, &src, HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("SESSION_SECRET"), "{missing}");
    }
    let secret = [(
        "SESSION_SECRET".to_string(),
        "e3b94a0c7d2f8156a9c4e0b7d13f6a28".to_string(),
    )];
    let c = load_str(&path, &src, secret.into_iter().collect()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes.len(), 6);
    assert_eq!(c.routes[5].auth, AuthMode::LoginOrBearer);
    let grpc = c.routes.iter().find(|r| r.name == "orders-grpc").unwrap();
    assert_eq!(grpc.upstream.protocol, UpstreamProtocol::H2c);
    assert!(c.session.is_some());
    // The example's list of targets; `upstream` is the first.
    assert_eq!(c.routes[2].targets.len(), 2);
    assert_eq!(c.routes[2].upstream.authority.as_str(), "127.0.0.1:8000");
    assert_eq!(c.routes[2].targets[1].authority.as_str(), "127.0.0.1:8001");
    assert_eq!(c.routes[4].targets.len(), 1);
    assert_eq!(c.routes[4].read_timeout, None);
}

/// A list element goes through `${VAR}` interpolation like any string; `read_timeout` parses.
#[test]
fn upstream_list_elements_are_interpolated() {
    let src = "[server]\nlisten = \"127.0.0.1:0\"\n[[route]]\npath = \"/\"\nauth = \"none\"\n\
               upstream = [\"http://${PC_T_NO_SUCH_HOST:-10.9.8.7}:1\", \"http://10.9.8.7:2\"]\n\
               read_timeout = \"1m\"\n";
    let c = load_str(Path::new("t.toml"), src, HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes[0].targets[0].authority.as_str(), "10.9.8.7:1");
    assert_eq!(c.routes[0].targets[1].authority.as_str(), "10.9.8.7:2");
    assert_eq!(
        c.routes[0].read_timeout,
        Some(std::time::Duration::from_secs(60))
    );
}

/// `project_id` and `introspection.max_concurrent`: defaults, values, and errors naming the key.
#[test]
fn project_id_and_introspection_max_concurrent() {
    let provider = |extra: &str, intro: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n[providers.z]\nissuer = \"https://z.example\"\naudiences = [\"api\"]\n{extra}\n[providers.z.introspection]\nclient_id = \"i\"\nclient_secret = \"s\"\n{intro}\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"bearer\"\n"
        )
    };
    let c = load(&provider("", "")).unwrap();
    assert_eq!(c.providers["z"].project_id, None);
    let intro = c.providers["z"].introspection.as_ref().unwrap();
    assert_eq!(intro.max_concurrent, 16);
    let c = load(&provider("project_id = \"2710\"", "max_concurrent = 4")).unwrap();
    assert_eq!(c.providers["z"].project_id.as_deref(), Some("2710"));
    assert_eq!(
        c.providers["z"]
            .introspection
            .as_ref()
            .unwrap()
            .max_concurrent,
        4
    );
    let e = err(&provider("", "max_concurrent = 0"));
    assert!(
        e.contains(":10:18: `providers.z.introspection.max_concurrent`: must be at least 1"),
        "{e}"
    );
    let e = err(&provider("project_id = \"1:roles\"", ""));
    assert!(
        e.contains(":6:14: `providers.z.project_id`: must be a ZITADEL project id"),
        "{e}"
    );
}

/// Published placeholders and low-entropy secrets are refused, naming file:line:col, the key
/// and the fix; a hex secret from `openssl rand -hex 32` passes.
#[test]
fn placeholder_and_weak_session_secrets_are_refused() {
    let with = |secret: &str| format!("{BASE}\n[session]\nsecret = \"{secret}\"\n");
    for p in PLACEHOLDER_SECRETS {
        let e = err(&with(p));
        assert!(e.contains("test.toml:12:10: `session.secret`"), "{e}");
        assert!(
            e.contains("placeholder") && e.contains("openssl rand -hex 32"),
            "{e}"
        );
        assert!(!e.contains(p), "the secret itself is not repeated: {e}");
        let upper = p.to_ascii_uppercase();
        assert!(err(&with(&upper)).contains("placeholder"), "{upper}");
    }
    let e = err(&with("please-change-me-0123456789abcdefghijkl"));
    assert!(e.contains("placeholder"), "{e}");
    // Near misses of the published ones and of what people write into examples.
    for near in [
        "change_me_to_32_random_bytes_at_least!!",
        "Change Me To 32 Random Bytes At Least",
        "demo-only-session-secret-0123456789abcde",
        "xdemo-only-session-secret-9f8e7d6c5b4a",
        "0123456789abcdef0123456789abcdef",
        "your-session-secret-goes-here-32-bytes!!",
        "k8s-session-secret-here-please-32-bytes!",
        "an-example-secret-for-the-docs-32-bytes",
        "my-password-is-long-enough-32-bytes-yes",
        "zyxwvutsrqponmlkjihgfedcba-9876543210",
    ] {
        let e = err(&with(near));
        assert!(
            e.contains("placeholder") && e.contains("`session.secret`"),
            "{near}: {e}"
        );
    }
    let e = err(&with(&"ab".repeat(20)));
    assert!(e.contains("only 2 distinct characters"), "{e}");
    let e = err(&with(&"abcdefg".repeat(6)));
    assert!(e.contains("only 7 distinct characters"), "{e}");
    assert!(
        load(&with(&"abcdefgh".repeat(4))).is_ok(),
        "8 distinct characters pass"
    );
    let hex = "3f9a0c1be2d47865a1f0c39e2b7d4a6813c5e0f2a9b8d7c6e5f4a3b2c1d0e9f8";
    assert!(load(&with(hex)).is_ok());
    // previous_secrets, and a placeholder read from secret_file
    let e = err(&format!(
        "{BASE}\n[session]\nsecret = \"{hex}\"\nprevious_secrets = [\"{}\"]\n",
        PLACEHOLDER_SECRETS[0]
    ));
    assert!(
        e.contains("`session.previous_secrets[0]`") && e.contains("placeholder"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s"),
        format!("{}\n", PLACEHOLDER_SECRETS[2]),
    )
    .unwrap();
    let e = load_str(
        &dir.path().join("p.toml"),
        &format!("{BASE}\n[session]\nsecret_file = \"s\"\n"),
        HashMap::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("secret_file") && e.contains("placeholder"),
        "{e}"
    );
}

#[test]
fn authorization_defaults_to_auto() {
    let c = load(BASE).unwrap();
    assert_eq!(c.headers.authorization, AuthorizationMode::Auto);
    for (v, m) in [
        ("auto", AuthorizationMode::Auto),
        ("pass", AuthorizationMode::Pass),
        ("strip", AuthorizationMode::Strip),
        ("access_token", AuthorizationMode::AccessToken),
    ] {
        let c = load(&format!("{BASE}\n[headers]\nauthorization = \"{v}\"\n")).unwrap();
        assert_eq!(c.headers.authorization, m);
    }
    let e = err(&format!("{BASE}\n[headers]\nauthorization = \"keep\"\n"));
    assert!(
        e.contains("headers.authorization") && e.contains("\"auto\""),
        "{e}"
    );
}

/// Secrets made the documented ways — `openssl rand -hex 32`, `openssl rand -base64 48` —
/// never trip the placeholder rules: 1000 of each, from the OS generator.
#[test]
fn random_secrets_always_pass() {
    use base64::Engine;
    use rand::RngCore;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let mut bytes = [0u8; 48];
        rng.fill_bytes(&mut bytes);
        let hex: String = bytes[..32].iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(weak_secret(&hex), None, "{hex}");
        assert_eq!(weak_secret(&b64), None, "{b64}");
    }
}

/// `h2c://` and `upstream_protocol`: what loads, and each refusal at file:line:col with its key.
#[test]
fn upstream_protocols() {
    let route = |upstream: &str, extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n\n[[route]]\nname = \"g\"\npath = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n{extra}"
        )
    };
    let p = |upstream: &str, extra: &str| {
        load(&route(upstream, extra)).unwrap().routes[0]
            .upstream
            .protocol
    };
    assert_eq!(p("http://127.0.0.1:3000", ""), UpstreamProtocol::Http1);
    assert_eq!(p("h2c://127.0.0.1:50051", ""), UpstreamProtocol::H2c);
    assert_eq!(p("H2C://127.0.0.1:50051/base", ""), UpstreamProtocol::H2c);
    assert_eq!(
        p("https://grpc.internal", "upstream_protocol = \"h2\""),
        UpstreamProtocol::H2
    );
    assert_eq!(
        p("https://grpc.internal", "upstream_protocol = \"auto\""),
        UpstreamProtocol::Auto
    );
    assert_eq!(
        p("http://app", "upstream_protocol = \"http1\""),
        UpstreamProtocol::Http1
    );
    let c = load(&route("h2c://127.0.0.1:50051/base", "")).unwrap();
    let u = &c.routes[0].upstream;
    assert_eq!(
        (
            u.scheme.as_str(),
            u.authority.as_str(),
            u.base_path.as_str()
        ),
        ("http", "127.0.0.1:50051", "/base")
    );
    assert_eq!(u.to_string(), "h2c://127.0.0.1:50051/base");

    let e = err(&route(
        "https://grpc.internal",
        "upstream_protocol = \"h3\"",
    ));
    assert!(e.starts_with("/etc/portcullis/test.toml:9:21: "), "{e}");
    assert!(
        e.contains("upstream_protocol") && e.contains("\"h3\""),
        "{e}"
    );
    let e = err(&route("h2c://127.0.0.1:1", "upstream_protocol = \"h2\""));
    assert!(
        e.starts_with("/etc/portcullis/test.toml:9:21: `route[0].upstream_protocol`"),
        "{e}"
    );
    assert!(e.contains("h2c:// upstream is HTTP/2"), "{e}");
    let e = err(&route("http://127.0.0.1:1", "upstream_protocol = \"h2\""));
    assert!(
        e.starts_with("/etc/portcullis/test.toml:9:21: `route[0].upstream_protocol`"),
        "{e}"
    );
    assert!(
        e.contains("https://") && e.contains("h2c://host:port"),
        "{e}"
    );
    let e = err(&route("h2c://127.0.0.1:1", "websocket = true"));
    assert!(
        e.contains("route[0].websocket") && e.contains("HTTP/1.1 upstream"),
        "{e}"
    );
    let e = err(&route("h2c://", ""));
    assert!(e.contains("route[0].upstream"), "{e}");
}

#[test]
fn telemetry_section() {
    let c = load(BASE).unwrap();
    assert!(
        c.telemetry.otlp_endpoint.is_none(),
        "export is off by default"
    );
    let on = format!(
        "{BASE}\n[telemetry]\notlp_endpoint = \"http://collector:4318/v1/traces\"\nservice_name = \"edge\"\n"
    );
    let c = load(&on).unwrap();
    assert_eq!(
        c.telemetry.otlp_endpoint.map(|u| u.to_string()).as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(c.telemetry.service_name, "edge");
    let e = err(&format!(
        "{BASE}\n[telemetry]\notlp_endpoint = \"collector:4318\"\n"
    ));
    assert!(e.contains("telemetry.otlp_endpoint"), "{e}");
    assert!(e.contains(":12:17:"), "{e}");
    let e = err(&format!(
        "{BASE}\n[telemetry]\nendpoint = \"http://c/v1/traces\"\n"
    ));
    assert!(e.contains("endpoint"), "{e}");
}
