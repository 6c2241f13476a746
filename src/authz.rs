//! The authorization stage: checks a route's `require_roles`, `require_any_role` and
//! `require_claims` against an [`Identity`]. A [`Permit`] exists only when they are met, and
//! identity headers can only be injected from a `Permit` — skipping this stage does not compile.

use std::sync::Arc;

use serde_json::Value;

use crate::claims::claim;
use crate::config::Route;
use crate::identity::Identity;

/// Proof that `identity` may use `route`.
#[derive(Debug)]
pub struct Permit {
    identity: Arc<Identity>,
}

impl Permit {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The identity, to keep beyond the permit (the access log's `sub`).
    pub fn shared(&self) -> &Arc<Identity> {
        &self.identity
    }
}

/// An identity that does not meet a route's requirements (handed back: the refusal names it).
#[derive(Debug)]
pub struct Refused {
    pub identity: Arc<Identity>,
    pub unmet: Denied,
}

/// Which requirement was not met (shown to the caller; never contains a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("missing required role(s): {}", .0.join(", "))]
    MissingRoles(Vec<String>),
    #[error("requires one of the roles: {}", .0.join(", "))]
    NoneOfRoles(Vec<String>),
    #[error("claim `{claim}` must be {}", describe(.accepted))]
    Claim { claim: String, accepted: Vec<Value> },
}

fn describe(accepted: &[Value]) -> String {
    let v: Vec<String> = accepted.iter().map(Value::to_string).collect();
    if v.len() == 1 {
        v[0].clone()
    } else {
        format!("one of [{}]", v.join(", "))
    }
}

fn claim_matches(actual: &Value, accepted: &[Value]) -> bool {
    let one = |a: &Value| {
        accepted.iter().any(|want| match (a, want) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (x, y) => x == y,
        })
    };
    match actual {
        // A multi-valued claim (e.g. groups) passes when any of its values is accepted.
        Value::Array(items) => items.iter().any(one),
        v => one(v),
    }
}

/// Checks the route's requirements.
pub fn authorize(route: &Route, identity: Arc<Identity>) -> Result<Permit, Refused> {
    match unmet(route, &identity) {
        None => Ok(Permit { identity }),
        Some(unmet) => Err(Refused { identity, unmet }),
    }
}

/// The first requirement of `route` that `identity` does not meet.
fn unmet(route: &Route, identity: &Identity) -> Option<Denied> {
    let missing: Vec<String> = route
        .require_roles
        .iter()
        .filter(|r| !identity.roles.iter().any(|have| have == *r))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Some(Denied::MissingRoles(missing));
    }
    if !route.require_any_role.is_empty()
        && !route
            .require_any_role
            .iter()
            .any(|r| identity.roles.iter().any(|have| have == r))
    {
        return Some(Denied::NoneOfRoles(route.require_any_role.clone()));
    }
    for (name, accepted) in &route.require_claims {
        let ok = claim(&identity.claims, name).is_some_and(|v| claim_matches(v, accepted));
        if !ok {
            return Some(Denied::Claim {
                claim: name.clone(),
                accepted: accepted.clone(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(roles: &[&str], any: &[&str], claims: Vec<(&str, Vec<Value>)>) -> Route {
        let src = "[server]\nlisten = \"127.0.0.1:1\"\n[providers.p]\njwks_uri = \"http://127.0.0.1:1/jwks\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:2\"\nauth = \"bearer\"\n";
        let cfg = crate::config::load_str(std::path::Path::new("t.toml"), src, Default::default())
            .unwrap();
        let mut r = (*cfg.routes[0]).clone();
        r.require_roles = roles.iter().map(|s| s.to_string()).collect();
        r.require_any_role = any.iter().map(|s| s.to_string()).collect();
        r.require_claims = claims
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        r
    }

    fn ident(roles: &[&str], claims: Value) -> Arc<Identity> {
        Arc::new(Identity {
            sub: "u1".into(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            claims: claims.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        })
    }

    #[test]
    fn all_roles_required() {
        let r = route(&["admin", "ops"], &[], vec![]);
        assert!(authorize(&r, ident(&["admin", "ops", "x"], json!({}))).is_ok());
        assert_eq!(
            authorize(&r, ident(&["admin"], json!({})))
                .unwrap_err()
                .unmet,
            Denied::MissingRoles(vec!["ops".into()])
        );
    }

    #[test]
    fn any_role() {
        let r = route(&[], &["editor", "admin"], vec![]);
        assert!(authorize(&r, ident(&["admin"], json!({}))).is_ok());
        assert!(authorize(&r, ident(&["reader"], json!({}))).is_err());
    }

    #[test]
    fn claims_values_lists_and_paths() {
        let r = route(
            &[],
            &[],
            vec![
                ("email_verified", vec![json!(true)]),
                (
                    "urn:zitadel:iam:user:resourceowner:id",
                    vec![json!("123"), json!("456")],
                ),
                ("org.tier", vec![json!(2)]),
            ],
        );
        let ok = json!({"email_verified": true, "urn:zitadel:iam:user:resourceowner:id": "456", "org": {"tier": 2.0}});
        assert!(authorize(&r, ident(&[], ok)).is_ok());
        let bad = json!({"email_verified": "true", "urn:zitadel:iam:user:resourceowner:id": "456", "org": {"tier": 2}});
        let e = authorize(&r, ident(&[], bad)).unwrap_err().unmet;
        assert!(e.to_string().contains("email_verified"), "{e}");
        let missing = json!({"email_verified": true});
        assert!(authorize(&r, ident(&[], missing)).is_err());
    }
}
