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
//! [`org_roles`] reads the same role map for the organizations that granted each role (ZITADEL:
//! the map's values are `{"<orgId>": "<orgDomain>"}`), and the user's own organization
//! (`urn:zitadel:iam:user:resourceowner:id`): `require_org_roles` and `X-Forwarded-Orgs`.
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

/// ZITADEL's claim naming the user's own organization.
pub const USER_ORG_CLAIM: &str = "urn:zitadel:iam:user:resourceowner:id";

/// Which organizations granted which roles (ZITADEL's role map), derived once per identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgRoles {
    /// (role, organization id), sorted, without duplicates.
    grants: Vec<(String, String)>,
    /// Every organization that granted any role: sorted, without duplicates.
    orgs: Vec<String>,
    /// The user's own organization (`urn:zitadel:iam:user:resourceowner:id`).
    pub user_org: Option<String>,
}

impl OrgRoles {
    /// Whether `role` is granted in organization `org`.
    pub fn has(&self, role: &str, org: &str) -> bool {
        self.grants
            .binary_search_by(|(r, o)| (r.as_str(), o.as_str()).cmp(&(role, org)))
            .is_ok()
    }

    /// The organizations in which the user holds any role, sorted.
    pub fn orgs(&self) -> &[String] {
        &self.orgs
    }

    /// The organizations that granted `role`.
    pub fn orgs_of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.grants
            .iter()
            .filter(move |(r, _)| r == role)
            .map(|(_, o)| o.as_str())
    }
}

/// The org grants in `claims`: the role maps [`roles`] reads (`roles_claim` when it names a
/// map; with `auto`, `urn:zitadel:iam:org:project:roles` and the configured project's
/// `urn:zitadel:iam:org:project:<project_id>:roles`). A role whose value is not an object
/// (a plain list of roles) names no organization.
pub fn org_roles(
    claims: &Map<String, Value>,
    how: &RolesClaim,
    project_id: Option<&str>,
) -> OrgRoles {
    let mut grants: Vec<(String, String)> = Vec::new();
    let mut add = |map: Option<&Value>| {
        let Some(Value::Object(map)) = map else {
            return;
        };
        for (role, orgs) in map {
            if let Value::Object(orgs) = orgs {
                for org in orgs.keys().filter(|o| !o.is_empty()) {
                    grants.push((role.clone(), org.clone()));
                }
            }
        }
    };
    match how {
        RolesClaim::Path(p) => add(claim(claims, p)),
        RolesClaim::Auto => {
            add(claims.get(ZITADEL_ROLES));
            if let Some(id) = project_id {
                add(claims.get(&format!("urn:zitadel:iam:org:project:{id}:roles")));
            }
        }
    }
    grants.sort_unstable();
    grants.dedup();
    let mut orgs: Vec<String> = grants.iter().map(|(_, o)| o.clone()).collect();
    orgs.sort_unstable();
    orgs.dedup();
    OrgRoles {
        grants,
        orgs,
        user_org: claims
            .get(USER_ORG_CLAIM)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    }
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

    /// The role map's values name the granting organizations; the project-scoped map counts
    /// only for our project; a plain list names none.
    #[test]
    fn zitadel_org_grants() {
        let c = m(json!({
            "urn:zitadel:iam:org:project:roles": {"admin": {"111": "acme.example"}, "reader": {"222": "b.example", "111": "acme.example"}},
            "urn:zitadel:iam:org:project:9:roles": {"ops": {"333": "c.example"}},
            "urn:zitadel:iam:org:project:8:roles": {"admin": {"444": "d.example"}},
            "urn:zitadel:iam:user:resourceowner:id": "111",
            "roles": ["x"]
        }));
        let o = org_roles(&c, &RolesClaim::Auto, Some("9"));
        assert!(o.has("admin", "111") && o.has("reader", "222") && o.has("ops", "333"));
        assert!(!o.has("admin", "222") && !o.has("admin", "444") && !o.has("x", "111"));
        assert_eq!(o.orgs(), ["111", "222", "333"]);
        assert_eq!(o.user_org.as_deref(), Some("111"));
        assert_eq!(o.orgs_of("reader").collect::<Vec<_>>(), ["111", "222"]);
        assert!(
            org_roles(&m(json!({"roles": ["a"]})), &RolesClaim::Auto, None) == OrgRoles::default()
        );
    }
}
