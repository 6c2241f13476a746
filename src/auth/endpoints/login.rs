//! `/.auth/login?rd=…&provider=…`: starts a login (see [`LoginState::prepare_login`]) at the
//! provider of the route `rd` leads to — a session is only good on its own provider's routes,
//! so `?provider=` only chooses when it names that provider or `rd` leads to no login route.

use http::{Method, Request};

use super::{Answer, param};
use crate::auth::login::{LoginState, query_pairs};
use crate::auth::redirect;
use crate::error::AuthError;
use crate::provider::Providers;
use crate::request::ConnInfo;

pub(super) async fn login<B>(
    l: &LoginState,
    providers: &Providers,
    req: &Request<B>,
    conn: ConnInfo,
    host: Option<&str>,
) -> Result<Answer, AuthError> {
    let q = query_pairs(req);
    let rd = param(&q, "rd").unwrap_or("/");
    let provider = login_provider(l, param(&q, "provider"), rd, conn, host);
    let login = l
        .prepare_login(providers, &provider, rd, req.headers(), conn, host)
        .await?;
    Ok(Answer::Redirect {
        location: login.location,
        set_cookie: login.set_cookie,
    })
}

/// The provider `/.auth/login` signs in with: the one of the route `rd` leads to, when
/// that route takes sessions — `?provider=` only chooses when it names that provider or
/// `rd` leads to no login route (a session is only good on its own provider's routes, so
/// a login elsewhere would only send the browser back to sign in again). Else the default.
fn login_provider(
    l: &LoginState,
    requested: Option<&str>,
    rd: &str,
    conn: ConnInfo,
    host: Option<&str>,
) -> String {
    let of_route = route_provider_of(l, rd, conn, host);
    match (of_route, requested) {
        (Some(route), Some(req)) if route != req => {
            tracing::info!(
                requested = req,
                provider = route,
                "login: rd leads to a route of another provider; signing in with that route's provider"
            );
            route.to_string()
        }
        (Some(route), _) => route.to_string(),
        (None, Some(req)) => req.to_string(),
        (None, None) => l.default_provider().unwrap_or_default(),
    }
}

/// The provider of the route a browser sent to `rd` lands on (a GET), when that route
/// takes sessions.
fn route_provider_of<'a>(
    l: &'a LoginState,
    rd: &str,
    conn: ConnInfo,
    host: Option<&str>,
) -> Option<&'a str> {
    let origin = l.origin(conn, host)?;
    let target = redirect::validate(rd, &origin, &l.config.server.allowed_redirect_hosts)?;
    let url = origin.join(&target).ok()?;
    let target_host = if target.starts_with('/') {
        host.map(str::to_string)
    } else {
        url.host_str().map(|h| match url.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    };
    let path = crate::routes::normalize_path(url.path()).ok()?;
    let route = l.config.routes.iter().find(|r| {
        r.matcher
            .matches(target_host.as_deref(), &Method::GET, &path)
    })?;
    route
        .auth
        .uses_login()
        .then_some(route.provider.as_deref())
        .flatten()
}
