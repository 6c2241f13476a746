//! The login tests' setup: the test provider registered for the proxies' ports
//! ([`Provider`]), the proxy config they share ([`ProxyOpts`], [`proxy_config`],
//! [`session_cfg`]) and alice's session as a login would have stored it ([`alice_session`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;

/// The test provider with the proxies at `proxy_ports` registered (callback, post-logout and
/// back-channel URIs); its request log goes to a file ([`Provider::count`]). Killed on drop.
pub struct Provider {
    pub issuer: String,
    pub state_dir: tempfile::TempDir,
    pub log: PathBuf,
    child: Child,
}

impl Provider {
    /// Starts the provider with `proxy_ports` registered (callback, post-logout, back-channel).
    pub fn start(proxy_ports: &[u16], env: &[(&str, &str)]) -> Provider {
        let state_dir = tempfile::tempdir().unwrap();
        let log = state_dir.path().join("provider.log");
        let cb: Vec<String> = proxy_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/.auth/callback"))
            .collect();
        let post: Vec<String> = proxy_ports
            .iter()
            .flat_map(|p| {
                [
                    format!("http://127.0.0.1:{p}/"),
                    format!("http://127.0.0.1:{p}/bye"),
                    format!("http://127.0.0.1:{p}/public/bye"),
                ]
            })
            .collect();
        let (cb, post) = (cb.join(","), post.join(","));
        let backchannel = format!(
            "http://127.0.0.1:{}/.auth/backchannel-logout",
            proxy_ports[0]
        );
        let mut vars = vec![
            ("CLIENT_REDIRECT_URIS", cb.as_str()),
            ("POST_LOGOUT_REDIRECT_URIS", post.as_str()),
            ("BACKCHANNEL_LOGOUT_URI", backchannel.as_str()),
        ];
        vars.extend_from_slice(env);
        let (child, issuer) =
            super::provider::start(state_dir.path(), &vars, super::provider::Stderr::File(&log));
        Provider {
            issuer,
            state_dir,
            log,
            child,
        }
    }

    /// How many requests matching `needle` (e.g. "POST /token") the provider logged. The provider
    /// logs when a response has finished, which can be just after the client saw it: let it settle.
    pub fn count(&self, needle: &str) -> usize {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct ProxyOpts {
    pub port: u16,
    pub issuer: String,
    pub upstream: SocketAddr,
    pub client_id: &'static str,
    pub client_auth: String,
    pub session: String,
    pub admin: bool,
}

pub fn proxy_config(o: &ProxyOpts) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
{admin}
[providers.op]
issuer = "{issuer}"
client_id = "{client_id}"
{client_auth}
scopes = ["openid", "profile", "email"]

[session]
{session}

[[route]]
name = "public"
path = "/public"
upstream = "http://{up}"
auth = "none"

[[route]]
name = "admin"
path = "/admin"
upstream = "http://{up}"
auth = "login"
require_roles = ["admin"]

[[route]]
name = "api"
path = "/api"
upstream = "http://{up}"
auth = "login_or_bearer"

[[route]]
name = "app"
path = "/"
upstream = "http://{up}"
auth = "login"
"#,
        port = o.port,
        admin = if o.admin {
            "admin_listen = \"127.0.0.1:0\""
        } else {
            ""
        },
        issuer = o.issuer,
        client_id = o.client_id,
        client_auth = o.client_auth,
        session = o.session,
        up = o.upstream,
    )
}

pub fn session_cfg(extra: &str) -> String {
    format!(
        "secret = \"{}\"\n{extra}",
        "a-test-secret-of-at-least-32-bytes-4f0c9e2b7a"
    )
}

/// alice's session as a login at `provider` would have stored it, created now.
pub fn alice_session(provider: &str, sid: Option<&str>) -> portcullis::session::SessionData {
    let now = portcullis::session::now();
    portcullis::session::SessionData {
        id: "x".into(),
        provider: provider.into(),
        iss: None,
        sub: "alice".into(),
        email: None,
        name: None,
        preferred_username: None,
        roles: vec![],
        roles_rule: None,
        claims: Default::default(),
        access_token: "at".into(),
        refresh_token: None,
        id_token: None,
        sid: sid.map(str::to_string),
        created_at: now,
        created_ms: portcullis::session::now_ms(),
        last_seen: now,
        access_expires_at: None,
        access_issued_at: now,
        identity: Default::default(),
    }
}
