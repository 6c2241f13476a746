//! `portcullis explain`: which route a request matches, what it requires, and — given a token —
//! the decision and why. Uses the same matching and checks as the running proxy.

use std::fmt::Write;
use std::process::ExitCode;

use http::Method;

use crate::config::{AuthMode, Config};
use crate::routes;

/// Prints the explanation to stdout; exit 0 when the request would be allowed/forwarded,
/// 1 when it would be refused, 2 for bad input.
pub async fn explain(cfg: Config, method: &str, url: &str, headers: &[String]) -> ExitCode {
    let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
        eprintln!("error: {method:?} is not an HTTP method");
        return ExitCode::from(2);
    };
    // Split the URL by hand: URL parsers normalize the path (and `\` → `/`), which would
    // explain a different request than the one the proxy would see.
    let (host, path) = if url.starts_with('/') {
        (
            None,
            url.split(['?', '#']).next().unwrap_or("/").to_string(),
        )
    } else if let Some((_, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let path = rest[end..].split(['?', '#']).next().unwrap_or("");
        let path = if path.is_empty() { "/" } else { path };
        (Some(host.to_string()), path.to_string())
    } else {
        eprintln!("error: {url:?} is neither a URL (http://host/path) nor a path (/path)");
        return ExitCode::from(2);
    };
    let mut out = String::new();
    let normalized = match routes::normalize_path(&path) {
        Ok(p) => p.into_owned(),
        Err(e) => {
            println!("{method} {path}\n  decision: 400 Bad Request: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = writeln!(
        out,
        "{method} {}{normalized}",
        host.as_deref().unwrap_or("")
    );
    if normalized != path {
        let _ = writeln!(out, "  normalized path: {normalized} (from {path})");
    }
    if normalized == cfg.server.auth_prefix
        || normalized.starts_with(&format!("{}/", cfg.server.auth_prefix))
    {
        let _ = writeln!(
            out,
            "  endpoint owned by the proxy ({}); never forwarded",
            cfg.server.auth_prefix
        );
        print!("{out}");
        return ExitCode::SUCCESS;
    }
    let Some(route) = cfg
        .routes
        .iter()
        .find(|r| r.matcher.matches(host.as_deref(), &method, &normalized))
    else {
        let _ = writeln!(out, "  no route matches → 404");
        print!("{out}");
        return ExitCode::from(1);
    };
    let _ = writeln!(
        out,
        "  route: {:?} (path {}{})",
        route.name,
        route.matcher.path,
        match &route.matcher.host {
            Some(_) => ", host-restricted",
            None => "",
        }
    );
    let _ = writeln!(out, "  upstream: {}", route.upstream.url);
    let _ = writeln!(
        out,
        "  auth: {}{}",
        route.auth.as_str(),
        route
            .provider
            .as_deref()
            .map(|p| format!(" (provider {p:?})"))
            .unwrap_or_default()
    );
    if !route.require_roles.is_empty() {
        let _ = writeln!(
            out,
            "  requires all roles: {}",
            route.require_roles.join(", ")
        );
    }
    if !route.require_any_role.is_empty() {
        let _ = writeln!(
            out,
            "  requires any role of: {}",
            route.require_any_role.join(", ")
        );
    }
    for (c, v) in &route.require_claims {
        let vals: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        let _ = writeln!(out, "  requires claim {c} ∈ [{}]", vals.join(", "));
    }
    if route.auth == AuthMode::None {
        let _ = writeln!(
            out,
            "  decision: forwarded without authentication (identity headers stripped)"
        );
        print!("{out}");
        return ExitCode::SUCCESS;
    }
    let code = crate::auth::explain_decision(&cfg, route, headers, &mut out).await;
    print!("{out}");
    code
}
