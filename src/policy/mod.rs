//! Policy you can test: a request and a synthetic identity judged by the proxy's own
//! [`decide`], offline. [`Synthetic`] stands where authentication would judge a token or a
//! session (no provider is contacted, no key fetched, no signature checked — by
//! construction); everything before it (host, method, path, route) and after it
//! (requirements) is the running proxy's code. `portcullis test` ([`run`]),
//! `portcullis matrix` / `diff` ([`matrix`]) and `explain --claims` build on [`judge`].
//!
//! What a test request carries by default: the `Host` of its URL and nothing else — an API
//! client. A browser navigation needs `Accept: text/html` in its `headers` (a login route then
//! answers 302 instead of 401). It comes from an untrusted peer (192.0.2.1).

pub mod matrix;
pub mod run;

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, Version, header};
use serde_json::{Map, Value};

use crate::auth::Authenticate;
use crate::auth::bearer::{self, Presented};
use crate::auth::login::is_browser_navigation;
use crate::config::{AuthMode, Config, RolesClaim, Route, TestIdentity, TestRequest};
use crate::decision::{Decision, Input, Verdict, decide};
use crate::error::{AuthError, ProxyError, Scheme};
use crate::identity::{Authenticated, Identity, Via};
use crate::request::{self, ConnInfo};

/// Said by every offline command, so nobody takes a pass for a verified token.
pub const OFFLINE_NOTE: &str = "offline: no provider contacted, no keys fetched; synthetic identities and token files are not signature-checked";

/// The authentication stage of policy tests: `who` is taken as proven, for any route.
pub struct Synthetic<'a> {
    pub cfg: &'a Config,
    pub who: &'a TestIdentity,
}

impl Authenticate for Synthetic<'_> {
    async fn authenticate(
        &self,
        route: &Route,
        parts: &Parts,
        _conn: ConnInfo,
        _host: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let bearer_half = route.auth == AuthMode::Bearer
            || (route.auth == AuthMode::LoginOrBearer && bearer::has_authorization(parts));
        let presented = if bearer_half {
            match bearer::presented(parts) {
                Presented::BadRequest(why) => {
                    return Err(AuthError::BadRequest {
                        scheme: Scheme::Bearer,
                        reason: why.to_string(),
                    });
                }
                Presented::Token(_) => true,
                Presented::None => false,
            }
        } else {
            false
        };
        match self.who {
            TestIdentity::Anonymous if presented => Err(AuthError::InvalidToken {
                reason: "offline: a token in the request's headers is not verified; give it as the identity (identity = \"path/to/token.jwt\")".into(),
            }),
            TestIdentity::Anonymous if bearer_half => Err(AuthError::NoCredentials {
                scheme: Scheme::Bearer,
                clear_cookies: Vec::new(),
            }),
            TestIdentity::Anonymous if is_browser_navigation(parts) => {
                Err(AuthError::LoginRequired {
                    location: format!(
                        "(offline) the sign-in page of provider {:?}",
                        route.provider.as_deref().unwrap_or("")
                    ),
                    set_cookie: Vec::new(),
                })
            }
            TestIdentity::Anonymous => Err(AuthError::NoCredentials {
                scheme: Scheme::Session,
                clear_cookies: Vec::new(),
            }),
            who => Ok(Authenticated {
                identity: Arc::new(identity(
                    self.cfg,
                    route,
                    who,
                    if bearer_half { Via::Bearer } else { Via::Session },
                )),
                set_cookie: Vec::new(),
            }),
        }
    }
}

/// The identity `who` proves on `route`: its claims, with a table's `roles` put where the
/// route's provider reads roles (`roles_claim`; `auto` → the `roles` claim), and the roles
/// read back the way the provider reads them.
pub fn identity(cfg: &Config, route: &Route, who: &TestIdentity, via: Via) -> Identity {
    let provider = route.provider.as_deref().and_then(|n| cfg.providers.get(n));
    let mut claims: Map<String, Value> = match who {
        TestIdentity::Anonymous => Map::new(),
        TestIdentity::Token { claims, .. } => claims.clone(),
        TestIdentity::Claims(c) => {
            let mut c = c.clone();
            if let Some(roles) = c.remove("roles") {
                let at = match provider.map(|p| &p.roles_claim) {
                    Some(RolesClaim::Path(p)) => p.clone(),
                    // a ZITADEL role map (`{admin = {"<orgId>" = "<domain>"}}`) where ZITADEL puts it
                    _ if roles.is_object() => "urn:zitadel:iam:org:project:roles".to_string(),
                    _ => "roles".to_string(),
                };
                c.insert(at, roles);
            }
            c
        }
    };
    let sub = match claims.get("sub").and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => {
            claims.insert("sub".into(), Value::String("synthetic".into()));
            "synthetic".into()
        }
    };
    let roles = match provider {
        Some(p) => crate::claims::roles(
            &claims,
            &p.roles_claim,
            p.client_id.as_deref(),
            p.project_id.as_deref(),
        ),
        None => crate::claims::roles(&claims, &RolesClaim::Auto, None, None),
    };
    let org_roles = match provider {
        Some(p) => crate::claims::org_roles(&claims, &p.roles_claim, p.project_id.as_deref()),
        None => crate::claims::org_roles(&claims, &RolesClaim::Auto, None),
    };
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    Identity {
        sub,
        email: s("email"),
        name: s("name"),
        preferred_username: s("preferred_username"),
        roles,
        org_roles,
        expires_at: None,
        access_token: None,
        provider: Arc::from(route.provider.as_deref().unwrap_or("")),
        via,
        claims,
        header_values: Default::default(),
    }
}

/// What the proxy would do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 200: forwarded; else the status the proxy answers; `None`: an endpoint of the proxy
    /// (under the auth prefix) answers.
    pub status: Option<u16>,
    /// The route that judged it.
    pub route: Option<String>,
    /// The reason code of a refusal.
    pub reason: Option<&'static str>,
    /// Why, for people ("" when forwarded).
    pub message: String,
}

impl Outcome {
    /// `200`, `403 missing_roles`, `endpoint`.
    pub fn short(&self) -> String {
        match (self.status, self.reason) {
            (None, _) => "endpoint".into(),
            (Some(s), Some(r)) => format!("{s} {r}"),
            (Some(s), None) => s.to_string(),
        }
    }
}

/// The head of `req` as the proxy would receive it.
pub fn head(req: &TestRequest) -> Result<Parts, String> {
    let mut b = http::Request::builder()
        .method(req.method.clone())
        .uri(req.target.as_str())
        .version(if req.host.is_some() {
            Version::HTTP_11
        } else {
            Version::HTTP_2
        });
    for (n, v) in &req.headers {
        b = b.header(n, v);
    }
    let mut parts = b.body(()).map_err(|e| e.to_string())?.into_parts().0;
    if let Some(h) = &req.host {
        let v = HeaderValue::from_str(h).map_err(|e| e.to_string())?;
        parts.headers.insert(header::HOST, v);
    }
    Ok(parts)
}

/// Judges `req` sent by `who` with the proxy's [`decide`], offline; the decision too (for
/// explain).
pub async fn judge_full(
    cfg: &Config,
    req: &TestRequest,
    who: &TestIdentity,
) -> (Outcome, Option<Decision>) {
    let mut parts = match head(req) {
        Ok(p) => p,
        Err(e) => {
            return (
                Outcome {
                    status: Some(400),
                    route: None,
                    reason: Some("bad_request"),
                    message: e,
                },
                None,
            );
        }
    };
    let host = request::request_host(&parts).map(str::to_string);
    let input = Input {
        host: host.as_deref(),
        method_known: true,
        conn: ConnInfo {
            peer: ([192, 0, 2, 1], 40000).into(),
            tls: req.tls,
        },
        sni: None,
    };
    let auth = Synthetic { cfg, who };
    let d = decide(cfg, &auth, &mut parts, input).await;
    (outcome(cfg, &d), Some(d))
}

/// [`judge_full`] without the decision.
pub async fn judge(cfg: &Config, req: &TestRequest, who: &TestIdentity) -> Outcome {
    judge_full(cfg, req, who).await.0
}

/// The outcome of a decision.
pub fn outcome(cfg: &Config, d: &Decision) -> Outcome {
    let route = d.route.map(|i| cfg.routes[i].name.clone());
    match &d.verdict {
        Ok(Verdict::Forward { .. }) => Outcome {
            status: Some(200),
            route,
            reason: None,
            message: String::new(),
        },
        Ok(Verdict::Endpoint) => Outcome {
            status: None,
            route,
            reason: None,
            message: format!(
                "an endpoint of the proxy ({}) answers",
                cfg.server.auth_prefix
            ),
        },
        Err(e) => Outcome {
            status: Some(e.status().as_u16()),
            route,
            reason: Some(d.reason().unwrap_or("")),
            message: match e {
                ProxyError::Auth(a) => a.to_string(),
                e => e.to_string(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{REASONS, reason_code};
    use crate::error::{AuthError, Scheme};

    /// Every reason code the proxy can give for a route's decision is one a test may expect.
    #[test]
    fn every_reason_is_listed() {
        let s = || Scheme::Session;
        let denied = [
            crate::authz::Denied::MissingRoles(vec![]),
            crate::authz::Denied::NoneOfRoles(vec![]),
            crate::authz::Denied::MissingOrgRoles {
                org: None,
                own: true,
                roles: vec![],
            },
            crate::authz::Denied::Claim {
                claim: String::new(),
                accepted: vec![],
            },
            crate::authz::Denied::EmailNotVerified(None),
            crate::authz::Denied::EmailNotAllowed {
                email: String::new(),
                domains: vec![],
            },
        ];
        let mut errs: Vec<AuthError> = denied
            .into_iter()
            .map(|unmet| AuthError::Forbidden {
                scheme: s(),
                unmet,
                who: String::new(),
                set_cookie: vec![],
            })
            .collect();
        errs.extend([
            AuthError::NoCredentials {
                scheme: Scheme::Bearer,
                clear_cookies: vec![],
            },
            AuthError::NoCredentials {
                scheme: s(),
                clear_cookies: vec![],
            },
            AuthError::InvalidToken {
                reason: String::new(),
            },
            AuthError::LoginRequired {
                location: String::new(),
                set_cookie: vec![],
            },
            AuthError::ProviderUnavailable {
                scheme: s(),
                detail: String::new(),
            },
            AuthError::SessionStoreUnavailable {
                detail: String::new(),
            },
            AuthError::BadRequest {
                scheme: s(),
                reason: String::new(),
            },
        ]);
        for e in &errs {
            assert_eq!(reason_code(e.reason()), Some(e.reason()), "{e:?}");
        }
        for code in [
            "not_found",
            "invalid_path",
            "bad_request",
            "misdirected_request",
        ] {
            assert!(REASONS.iter().any(|(c, _)| *c == code), "{code}");
        }
        assert_eq!(reason_code("missing_role"), Some("missing_roles"));
    }
}
