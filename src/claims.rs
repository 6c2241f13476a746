//! Reading claims: a claim by name or dotted path ([`claim`]), and the role names a set of
//! claims grants ([`roles`], DESIGN.md Roles).
//!
//! `roles_claim` names a claim or a dotted path; its value may be an array of strings, an object
//! whose keys are the roles (ZITADEL: `{"admin": {"<orgId>": "<orgDomain>"}}`), or a
//! space-separated string. `auto` unions `urn:zitadel:iam:org:project:roles`,
//! `urn:zitadel:iam:org:project:<project_id>:roles` for the provider's configured `project_id`
//! only, `realm_access.roles`, `resource_access.<client_id>.roles`, `roles` and `groups`.
//! Order is kept, duplicates dropped.
//!
//! Why only one project: a ZITADEL token asked for several projects' roles carries one
//! `…:project:<id>:roles` claim per project, and an `admin` granted in another project (another
//! app, maybe one the user administers themselves) must not satisfy this one. Without a
//! `project_id` no project-scoped claim counts.

use serde_json::{Map, Value};

use crate::config::RolesClaim;

/// Looks up a claim by exact name first, then as a dotted path into nested objects.
pub fn claim<'c>(claims: &'c serde_json::Map<String, Value>, path: &str) -> Option<&'c Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

const ZITADEL_ROLES: &str = "urn:zitadel:iam:org:project:roles";

fn push_value(out: &mut Vec<String>, v: &Value) {
    let mut add = |s: &str| {
        if !s.is_empty() && !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    };
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_str).for_each(&mut add),
        Value::Object(o) => o.keys().for_each(|k| add(k)),
        Value::String(s) => s.split_ascii_whitespace().for_each(add),
        _ => {}
    }
}

/// The roles `claims` grant under `how`; `client_id` selects Keycloak's client roles,
/// `project_id` ZITADEL's project-scoped claim.
pub fn roles(
    claims: &Map<String, Value>,
    how: &RolesClaim,
    client_id: Option<&str>,
    project_id: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    match how {
        RolesClaim::Path(p) => {
            if let Some(v) = claim(claims, p) {
                push_value(&mut out, v);
            }
        }
        RolesClaim::Auto => {
            if let Some(v) = claims.get(ZITADEL_ROLES) {
                push_value(&mut out, v);
            }
            // project-scoped: urn:zitadel:iam:org:project:<project_id>:roles, ours only
            if let Some(id) = project_id
                && let Some(v) = claims.get(&format!("urn:zitadel:iam:org:project:{id}:roles"))
            {
                push_value(&mut out, v);
            }
            if let Some(v) = claims.get("realm_access").and_then(|r| r.get("roles")) {
                push_value(&mut out, v);
            }
            if let Some(id) = client_id
                && let Some(v) = claims
                    .get("resource_access")
                    .and_then(|r| r.get(id))
                    .and_then(|c| c.get("roles"))
            {
                push_value(&mut out, v);
            }
            for k in ["roles", "groups"] {
                if let Some(v) = claims.get(k) {
                    push_value(&mut out, v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn zitadel_role_map_keys() {
        let c = m(
            json!({"urn:zitadel:iam:org:project:roles": {"admin": {"1": "acme"}, "reader": {"1": "acme"}}}),
        );
        assert_eq!(
            roles(&c, &RolesClaim::Auto, None, None),
            ["admin", "reader"]
        );
        assert_eq!(
            roles(
                &c,
                &RolesClaim::Path("urn:zitadel:iam:org:project:roles".into()),
                None,
                None
            ),
            ["admin", "reader"]
        );
    }

    /// Attack: an `admin` granted in another ZITADEL project rides along in the token.
    #[test]
    fn zitadel_project_scoped_only_for_our_project() {
        let c = m(json!({
            "urn:zitadel:iam:org:project:987:roles": {"ops": {}},
            "urn:zitadel:iam:org:project:555:roles": {"admin": {}},
            "urn:zitadel:iam:org:project:x:y:roles": {"no": {}}
        }));
        assert_eq!(roles(&c, &RolesClaim::Auto, None, Some("987")), ["ops"]);
        assert_eq!(roles(&c, &RolesClaim::Auto, None, Some("555")), ["admin"]);
        assert!(roles(&c, &RolesClaim::Auto, None, None).is_empty());
        assert!(roles(&c, &RolesClaim::Auto, None, Some("1")).is_empty());
    }

    #[test]
    fn keycloak_realm_and_client() {
        let c = m(json!({
            "realm_access": {"roles": ["user", "admin"]},
            "resource_access": {"app": {"roles": ["editor"]}, "other": {"roles": ["x"]}}
        }));
        assert_eq!(
            roles(&c, &RolesClaim::Auto, Some("app"), None),
            ["user", "admin", "editor"]
        );
        assert_eq!(
            roles(
                &c,
                &RolesClaim::Path("resource_access.other.roles".into()),
                None,
                None
            ),
            ["x"]
        );
    }

    #[test]
    fn arrays_strings_union_dedup() {
        let c = m(json!({"roles": "a b  a", "groups": ["b", "c", 3]}));
        assert_eq!(roles(&c, &RolesClaim::Auto, None, None), ["a", "b", "c"]);
        assert_eq!(
            roles(&c, &RolesClaim::Path("scope".into()), None, None),
            Vec::<String>::new()
        );
    }
}
