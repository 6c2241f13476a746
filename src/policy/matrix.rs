//! `portcullis matrix` (route × identity → decision) and `portcullis diff` (the decisions two
//! configs disagree on), offline, through [`super::judge`].
//!
//! Sample request of a route: its `host` (a wildcard `*.example.com` → `sample.example.com`;
//! no host → `localhost`), its `path` as written (the prefix itself), and the first method of
//! its `methods` (else of GET, POST, PUT, PATCH, DELETE) that an earlier route does not catch
//! (else the first one), over http, with no other header (an API client). The request is
//! judged against the whole route table: when an earlier route catches it, the cell says so.
//!
//! Default identities (no `--identities`): `anonymous`; `signed-in` (a `sub`, no roles);
//! one per distinct `require_roles` set (`roles:a+b`) and one per role of `require_any_role`
//! (`roles:x`), in route order; one verified email per route with email rules
//! (`email:user@<first domain>`, or its first `require_emails` address); one per
//! `require_org_roles` rule (`org:<orgId>:a+b`, the roles granted in that organization, which
//! is also the user's own; `org:@user:a+b` for `"@user"`).

use std::fmt::Write;

use serde_json::{Map, Value, json};

use super::{OFFLINE_NOTE, Outcome, judge};
use crate::config::{Config, Route, TestIdentity, TestRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum MatrixFormat {
    #[default]
    Text,
    Json,
    Csv,
    Markdown,
}

/// A named identity of a matrix.
pub type Named = (String, TestIdentity);

/// The default identities of `cfg` (see the module doc).
pub fn default_identities(cfg: &Config) -> Vec<Named> {
    let claims = |sub: &str, roles: &[String]| {
        let mut m = Map::new();
        m.insert("sub".into(), Value::String(sub.into()));
        if !roles.is_empty() {
            m.insert("roles".into(), json!(roles));
        }
        TestIdentity::Claims(m)
    };
    let mut out: Vec<Named> = vec![
        ("anonymous".into(), TestIdentity::Anonymous),
        ("signed-in".into(), claims("signed-in", &[])),
    ];
    let push = |out: &mut Vec<Named>, name: String, id: TestIdentity| {
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, id));
        }
    };
    for r in &cfg.routes {
        if !r.require_roles.is_empty() {
            let mut set = r.require_roles.clone();
            set.sort();
            set.dedup();
            let name = format!("roles:{}", set.join("+"));
            push(&mut out, name.clone(), claims(&name, &set));
        }
        for role in &r.require_any_role {
            let name = format!("roles:{role}");
            push(
                &mut out,
                name.clone(),
                claims(&name, std::slice::from_ref(role)),
            );
        }
    }
    for r in &cfg.routes {
        let email = match (r.require_email_domains.first(), r.require_emails.first()) {
            (Some(d), _) => format!("user@{d}"),
            (None, Some(e)) => e.clone(),
            (None, None) => continue,
        };
        let mut m = Map::new();
        m.insert("sub".into(), Value::String(email.clone()));
        m.insert("email".into(), Value::String(email.clone()));
        m.insert("email_verified".into(), Value::Bool(true));
        push(&mut out, format!("email:{email}"), TestIdentity::Claims(m));
    }
    for r in &cfg.routes {
        let Some(rule) = &r.require_org_roles else {
            continue;
        };
        let org = match &rule.org {
            crate::config::OrgRef::Id(id) => id.clone(),
            crate::config::OrgRef::User => "user-org".to_string(),
        };
        let name = format!("org:{}:{}", rule.org, rule.roles.join("+"));
        let grants: Map<String, Value> = rule
            .roles
            .iter()
            .map(|role| (role.clone(), json!({ org.clone(): "sample.example.com" })))
            .collect();
        let mut m = Map::new();
        m.insert("sub".into(), Value::String(name.clone()));
        m.insert(crate::claims::USER_ORG_CLAIM.into(), Value::String(org));
        m.insert(
            "urn:zitadel:iam:org:project:roles".into(),
            Value::Object(grants),
        );
        push(&mut out, name, TestIdentity::Claims(m));
    }
    out
}

/// The sample request of `route` in `cfg` (see the module doc).
pub fn sample(cfg: &Config, route: &Route) -> TestRequest {
    use http::Method;
    let m = &route.matcher;
    let host = m
        .host
        .as_ref()
        .map_or_else(|| "localhost".to_string(), |h| h.sample());
    let candidates: Vec<Method> = match &m.methods {
        Some(v) => v.clone(),
        None => vec![
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ],
    };
    let reaches = |method: &Method| {
        cfg.routes
            .iter()
            .find(|r| r.matcher.matches(Some(&host), method, &m.path))
            .is_some_and(|r| r.name == route.name)
    };
    let method = candidates
        .iter()
        .find(|x| reaches(x))
        .or(candidates.first())
        .cloned()
        .unwrap_or(Method::GET);
    TestRequest {
        method,
        host: Some(host),
        target: m.path.clone(),
        tls: false,
        headers: Vec::new(),
    }
}

/// One row: a route's sample request and each identity's outcome.
#[derive(Debug)]
pub struct Row {
    pub route: String,
    pub request: TestRequest,
    pub cells: Vec<Outcome>,
}

/// The matrix of `cfg` for `ids`.
pub async fn matrix(cfg: &Config, ids: &[Named]) -> Vec<Row> {
    let mut rows = Vec::new();
    for r in &cfg.routes {
        let request = sample(cfg, r);
        let mut cells = Vec::new();
        for (_, who) in ids {
            cells.push(judge(cfg, &request, who).await);
        }
        rows.push(Row {
            route: r.name.clone(),
            request,
            cells,
        });
    }
    rows
}

/// A cell for people: `200`, `403 missing_roles`, and `(→ other)` when another route judged
/// the row's sample.
fn cell(row: &Row, o: &Outcome) -> String {
    match &o.route {
        Some(r) if *r != row.route => format!("{} (→ {r})", o.short()),
        _ => o.short(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The matrix, in `format`.
pub fn render(rows: &[Row], ids: &[Named], format: MatrixFormat) -> String {
    let names: Vec<&str> = ids.iter().map(|(n, _)| n.as_str()).collect();
    match format {
        MatrixFormat::Text => {
            let mut table: Vec<Vec<String>> = vec![
                std::iter::once("route".to_string())
                    .chain(std::iter::once("request".to_string()))
                    .chain(names.iter().map(|n| n.to_string()))
                    .collect(),
            ];
            for row in rows {
                table.push(
                    [row.route.clone(), row.request.line()]
                        .into_iter()
                        .chain(row.cells.iter().map(|c| cell(row, c)))
                        .collect(),
                );
            }
            let widths: Vec<usize> = (0..table[0].len())
                .map(|i| {
                    table
                        .iter()
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let mut out = format!("# {OFFLINE_NOTE}\n");
            for r in &table {
                let line: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                let _ = writeln!(out, "{}", line.join("  ").trim_end());
            }
            out
        }
        MatrixFormat::Markdown => {
            let mut out = format!("| route | request | {} |\n", names.join(" | "));
            let _ = writeln!(out, "|---|---|{}", "---|".repeat(names.len()));
            for row in rows {
                let cells: Vec<String> = row.cells.iter().map(|c| cell(row, c)).collect();
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} |",
                    row.route,
                    row.request.line(),
                    cells.join(" | ")
                );
            }
            out
        }
        MatrixFormat::Csv => {
            let mut out = String::new();
            let header: Vec<String> = ["route", "request"]
                .into_iter()
                .chain(names.iter().copied())
                .map(csv_field)
                .collect();
            let _ = writeln!(out, "{}", header.join(","));
            for row in rows {
                let fields: Vec<String> = [row.route.clone(), row.request.line()]
                    .into_iter()
                    .chain(row.cells.iter().map(|c| cell(row, c)))
                    .map(|f| csv_field(&f))
                    .collect();
                let _ = writeln!(out, "{}", fields.join(","));
            }
            out
        }
        MatrixFormat::Json => {
            let rows: Vec<Value> = rows
                .iter()
                .map(|row| {
                    let decisions: Map<String, Value> = names
                        .iter()
                        .zip(&row.cells)
                        .map(|(n, o)| (n.to_string(), outcome_json(o)))
                        .collect();
                    json!({
                        "route": row.route,
                        "request": row.request.line(),
                        "decisions": decisions,
                    })
                })
                .collect();
            format!(
                "{:#}\n",
                json!({ "offline": true, "note": OFFLINE_NOTE, "identities": names, "routes": rows })
            )
        }
    }
}

fn outcome_json(o: &Outcome) -> Value {
    json!({ "status": o.status, "route": o.route, "reason": o.reason })
}

/// A request whose decision differs between two configs for one identity.
#[derive(Debug)]
pub struct Change {
    pub request: TestRequest,
    pub identity: String,
    pub old: Outcome,
    pub new: Outcome,
}

/// The sample requests of both configs (each once), judged by both for each identity; the
/// ones whose status, route or reason changed.
pub async fn diff(old: &Config, new: &Config, ids: &[Named]) -> Vec<Change> {
    let mut samples: Vec<TestRequest> = Vec::new();
    let both = old
        .routes
        .iter()
        .map(|r| sample(old, r))
        .chain(new.routes.iter().map(|r| sample(new, r)));
    for s in both {
        if !samples.iter().any(|x| x.line() == s.line()) {
            samples.push(s);
        }
    }
    let mut out = Vec::new();
    for s in samples {
        for (name, who) in ids {
            let a = judge(old, &s, who).await;
            let b = judge(new, &s, who).await;
            if (a.status, &a.route, a.reason) != (b.status, &b.route, b.reason) {
                out.push(Change {
                    request: s.clone(),
                    identity: name.clone(),
                    old: a,
                    new: b,
                });
            }
        }
    }
    out
}

/// The identities of a diff: both configs' defaults, each name once.
pub fn diff_identities(old: &Config, new: &Config) -> Vec<Named> {
    let mut ids = default_identities(old);
    for (n, id) in default_identities(new) {
        if !ids.iter().any(|(m, _)| *m == n) {
            ids.push((n, id));
        }
    }
    ids
}

/// The diff, in `format` (`csv`: request,identity,old,new; `markdown`: a table).
pub fn render_diff(changes: &[Change], format: MatrixFormat) -> String {
    let show = |o: &Outcome| match &o.route {
        Some(r) => format!("{} (route {r})", o.short()),
        None => o.short(),
    };
    match format {
        MatrixFormat::Text => {
            let mut out = format!("# {OFFLINE_NOTE}\n");
            if changes.is_empty() {
                out.push_str("no decision changed\n");
            }
            for c in changes {
                let _ = writeln!(
                    out,
                    "{}  as {}: {} → {}",
                    c.request.line(),
                    c.identity,
                    show(&c.old),
                    show(&c.new)
                );
            }
            if !changes.is_empty() {
                let _ = writeln!(
                    out,
                    "{} decision{} changed",
                    changes.len(),
                    if changes.len() == 1 { "" } else { "s" }
                );
            }
            out
        }
        MatrixFormat::Markdown => {
            let mut out = String::from("| request | identity | old | new |\n|---|---|---|---|\n");
            for c in changes {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    c.request.line(),
                    c.identity,
                    show(&c.old),
                    show(&c.new)
                );
            }
            out
        }
        MatrixFormat::Csv => {
            let mut out = String::from("request,identity,old,new\n");
            for c in changes {
                let _ = writeln!(
                    out,
                    "{},{},{},{}",
                    csv_field(&c.request.line()),
                    csv_field(&c.identity),
                    csv_field(&show(&c.old)),
                    csv_field(&show(&c.new))
                );
            }
            out
        }
        MatrixFormat::Json => {
            let v: Vec<Value> = changes
                .iter()
                .map(|c| {
                    json!({
                        "request": c.request.line(),
                        "identity": c.identity,
                        "old": outcome_json(&c.old),
                        "new": outcome_json(&c.new),
                    })
                })
                .collect();
            format!(
                "{:#}\n",
                json!({ "offline": true, "note": OFFLINE_NOTE, "changed": v.len(), "changes": v })
            )
        }
    }
}
