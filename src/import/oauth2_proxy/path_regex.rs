//! A path regex of `skip_auth_routes` / `skip_auth_regex` (oauth2-proxy matches it against
//! the request path) → a portcullis route path (a segment prefix) that matches the same paths
//! or fewer, never more: what cannot be expressed that way stays behind login.

use crate::routes::Matcher;

/// Maps a path regex (oauth2-proxy matches it against the request path) onto a portcullis route
/// path (a segment prefix) that matches the same paths or fewer. `Ok((path, None))`: the same
/// paths; `Ok((path, Some(why)))`: fewer (why says which stay protected); `Err((why, hint))`:
/// any route would match more, or the regex is beyond a literal prefix (`hint`: the nearest
/// route path, for the report).
pub fn path_regex_route(re: &str) -> Result<(String, Option<String>), (String, Option<String>)> {
    let (anchored, body) = match re.strip_prefix('^') {
        Some(b) => (true, b),
        None => (false, re),
    };
    let mut lit = String::new();
    let mut wild_dot = false;
    let mut rest = body;
    loop {
        let mut chars = rest.chars();
        let Some(ch) = chars.next() else { break };
        match ch {
            '\\' => match chars.next() {
                Some(e @ ('.' | '/' | '-' | '_' | '~')) => {
                    lit.push(e);
                    rest = &rest[2..];
                }
                _ => break,
            },
            '.' if chars.next() == Some('*') => break,
            '.' => {
                wild_dot = true;
                lit.push('.');
                rest = &rest[1..];
            }
            c if c.is_ascii_alphanumeric() || "/-_~:@!&',=;".contains(c) => {
                lit.push(c);
                rest = &rest[c.len_utf8()..];
            }
            _ => break,
        }
    }
    const PREFIX: &[&str] = &["", ".*", ".*$"];
    const SEGMENT: &[&str] = &[
        "(/.*)?$",
        "(/|$)",
        "($|/)",
        "(/.*|$)",
        "($|/.*)",
        "(?:/.*)?$",
        "(?:/|$)",
        "(?:$|/)",
        "(/.*)?\\z",
    ];
    let trimmed = match lit.trim_end_matches('/') {
        "" => "/".to_owned(),
        t => t.to_owned(),
    };
    let hint = (lit.starts_with('/')).then(|| trimmed.clone());
    if !lit.starts_with('/') {
        if lit.is_empty() && PREFIX.contains(&rest) {
            return Ok(("/".into(), None));
        }
        return Err((
            "the regex does not start with a literal path; portcullis routes are path prefixes"
                .into(),
            None,
        ));
    }
    if Matcher::new(None, &trimmed, None).is_err() {
        return Err(("its literal part is not a valid route path".into(), None));
    }
    let mut narrower: Vec<String> = Vec::new();
    if PREFIX.contains(&rest) {
        if lit == "/" {
            return Ok(("/".into(), None));
        }
        if lit.ends_with('/') {
            return Err((
                format!(
                    "matches only below {trimmed}/; a route would also make {trimmed} itself public"
                ),
                hint,
            ));
        }
        narrower.push(format!(
            "the regex also matched paths that merely start with {lit} (such as {lit}x); they stay behind login"
        ));
    } else if SEGMENT.contains(&rest) {
        if lit.ends_with('/') {
            return Err((
                "a slash before the group; write the rule without it".into(),
                hint,
            ));
        }
    } else if rest == "$" {
        return Err((
            format!("matches exactly {lit}; a route would also make every path below it public"),
            hint,
        ));
    } else {
        return Err((
            format!("uses regex syntax ({rest:?}) that a path prefix cannot express"),
            hint,
        ));
    }
    if !anchored {
        narrower.push(format!(
            "unanchored, it also matched {lit} anywhere in the path; those paths stay behind login"
        ));
    }
    if wild_dot {
        narrower
            .push("an unescaped '.' matched any character; the route matches a literal '.'".into());
    }
    Ok((trimmed, (!narrower.is_empty()).then(|| narrower.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regexes that a segment prefix matches exactly, more narrowly, or not at all.
    #[test]
    fn path_regexes_map_to_routes_that_never_match_more() {
        let exact =
            |re: &str, p: &str| assert_eq!(path_regex_route(re), Ok((p.to_owned(), None)), "{re}");
        exact("^/health(/.*)?$", "/health");
        exact("^/api/public(/|$)", "/api/public");
        exact("^/", "/");
        exact("^/.*", "/");
        exact(".*", "/");
        exact("^/static\\.files(/|$)", "/static.files");
        let narrower = |re: &str, p: &str| {
            let r = path_regex_route(re);
            assert!(matches!(&r, Ok((q, Some(_))) if q == p), "{re}: {r:?}");
        };
        narrower("^/public", "/public");
        narrower("^/public.*", "/public");
        narrower("/public(/|$)", "/public");
        narrower("^/favicon.ico(/|$)", "/favicon.ico");
        let refused = |re: &str| assert!(path_regex_route(re).is_err(), "{re}");
        refused("^/health$");
        refused("^/static/");
        refused("^/static/.*");
        refused("\\.css$");
        refused("^/api/v[0-9]+/public");
        refused("^/(a|b)");
        refused("^/a/../b(/|$)");
        refused("(?i)^/public");
        refused("^/health/?$");
    }
}
