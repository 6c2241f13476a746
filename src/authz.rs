//! The authorization stage: checks a route's `require_roles`, `require_any_role`,
//! `require_org_roles` (ZITADEL: roles granted in one organization), `require_claims` and email
//! rules (`require_email_domains`, `require_emails`) against an [`Identity`], in that order. A [`Permit`] exists only when they are met, and
//! identity headers can only be injected from a `Permit` — skipping this stage does not compile.

use std::sync::Arc;

use serde_json::Value;

use crate::claims::claim;
use crate::config::{OrgRef, Route};
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
    /// `require_org_roles`: roles not granted in the organization (`org`: its id, `None` when
    /// the rule names the user's own organization and the identity does not say which).
    #[error("{}", org_message(.org, .roles, *.own))]
    MissingOrgRoles {
        org: Option<String>,
        own: bool,
        roles: Vec<String>,
    },
    #[error("claim `{claim}` must be {}", describe(.accepted))]
    Claim { claim: String, accepted: Vec<Value> },
    /// The route has email rules and the identity's email is absent, or its
    /// `email_verified` is not `true`.
    #[error("{}", match .0 {
        None => "a verified email address is required, and the identity has no email".to_string(),
        Some(e) => format!("the email address {e} is not verified (email_verified must be true)"),
    })]
    EmailNotVerified(Option<String>),
    /// A verified email outside the route's `require_email_domains` / `require_emails`.
    #[error("the email address {email} is not allowed here{}", if .domains.is_empty() { String::new() } else { format!(" (allowed domains: {})", .domains.join(", ")) })]
    EmailNotAllowed { email: String, domains: Vec<String> },
}

fn org_message(org: &Option<String>, roles: &[String], own: bool) -> String {
    match (org, own) {
        (None, _) => format!(
            "role(s) {} are required in your own organization, and the identity does not name it (claim urn:zitadel:iam:user:resourceowner:id; ZITADEL sends it with the scope urn:zitadel:iam:user:resourceowner)",
            roles.join(", ")
        ),
        (Some(o), true) => format!(
            "missing role(s) {} in your organization {o} (require_org_roles, org = \"@user\")",
            roles.join(", ")
        ),
        (Some(o), false) => format!(
            "missing role(s) {} in organization {o} (require_org_roles)",
            roles.join(", ")
        ),
    }
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
    // Every request of a protected route passes here: [`met`] answers without building the
    // requirement list; a refusal (rare) is worked out by [`checks`], which names what is
    // missing, and which is the one that decides.
    if met(route, &identity) {
        return Ok(Permit { identity });
    }
    match unmet(route, &identity) {
        None => Ok(Permit { identity }),
        Some(unmet) => Err(Refused { identity, unmet }),
    }
}

/// Whether `identity` meets every requirement of `route`: exactly `unmet(..).is_none()`
/// (the `authz_fast_path_agrees` test), without allocating or building [`checks`]' iterator.
fn met(route: &Route, identity: &Identity) -> bool {
    let has = |r: &String| identity.roles.iter().any(|have| have == r);
    route.require_roles.iter().all(has)
        && (route.require_any_role.is_empty() || route.require_any_role.iter().any(has))
        && (route.require_org_roles.as_ref())
            .is_none_or(|rule| org_roles_met(rule, identity).is_ok())
        && route.require_claims.iter().all(|(name, accepted)| {
            claim(&identity.claims, name).is_some_and(|v| claim_matches(v, accepted))
        })
        && ((route.require_email_domains.is_empty() && route.require_emails.is_empty())
            || email_allowed(route, identity).is_ok())
}

/// The first requirement of `route` that `identity` does not meet.
fn unmet(route: &Route, identity: &Identity) -> Option<Denied> {
    checks(route, identity).find_map(|(_, r)| r.err())
}

/// One requirement of a route (its name for people: [`Requirement::label`]).
#[derive(Debug, Clone, Copy)]
pub enum Requirement<'a> {
    Roles,
    AnyRole,
    OrgRoles,
    Claim(&'a str, &'a [Value]),
    Email,
}

impl Requirement<'_> {
    /// How `portcullis explain` names it, e.g. `require_roles [admin]`.
    pub fn label(&self, route: &Route) -> String {
        match self {
            Requirement::Roles => format!("require_roles [{}]", route.require_roles.join(", ")),
            Requirement::AnyRole => {
                format!("require_any_role [{}]", route.require_any_role.join(", "))
            }
            Requirement::OrgRoles => match &route.require_org_roles {
                Some(rule) => format!(
                    "require_org_roles [{}] in org {}",
                    rule.roles.join(", "),
                    rule.org
                ),
                None => String::new(),
            },
            Requirement::Claim(name, accepted) => {
                format!("require_claims.{name} = {}", describe(accepted))
            }
            Requirement::Email => {
                let mut what = Vec::new();
                if !route.require_email_domains.is_empty() {
                    what.push(format!(
                        "require_email_domains [{}]",
                        route.require_email_domains.join(", ")
                    ));
                }
                if !route.require_emails.is_empty() {
                    what.push(format!(
                        "require_emails [{}]",
                        route.require_emails.join(", ")
                    ));
                }
                what.join(" or ")
            }
        }
    }
}

/// Each requirement of `route` in the order [`authorize`] checks them, with whether
/// `identity` meets it. Lazy, and nothing is allocated for a requirement that is met:
/// `authorize` stops at the first unmet one; `portcullis explain` lists them all.
pub fn checks<'a>(
    route: &'a Route,
    identity: &'a Identity,
) -> impl Iterator<Item = (Requirement<'a>, Result<(), Denied>)> + 'a {
    let roles = (!route.require_roles.is_empty()).then(|| {
        let missing: Vec<String> = route
            .require_roles
            .iter()
            .filter(|r| !identity.roles.iter().any(|have| have == *r))
            .cloned()
            .collect();
        (
            Requirement::Roles,
            if missing.is_empty() {
                Ok(())
            } else {
                Err(Denied::MissingRoles(missing))
            },
        )
    });
    let any = (!route.require_any_role.is_empty()).then(|| {
        let ok = route
            .require_any_role
            .iter()
            .any(|r| identity.roles.iter().any(|have| have == r));
        (
            Requirement::AnyRole,
            if ok {
                Ok(())
            } else {
                Err(Denied::NoneOfRoles(route.require_any_role.clone()))
            },
        )
    });
    let org = route
        .require_org_roles
        .as_ref()
        .map(|rule| (Requirement::OrgRoles, org_roles_met(rule, identity)));
    let claims = route.require_claims.iter().map(|(name, accepted)| {
        let ok = claim(&identity.claims, name).is_some_and(|v| claim_matches(v, accepted));
        (
            Requirement::Claim(name, accepted),
            if ok {
                Ok(())
            } else {
                Err(Denied::Claim {
                    claim: name.clone(),
                    accepted: accepted.clone(),
                })
            },
        )
    });
    let email = (!route.require_email_domains.is_empty() || !route.require_emails.is_empty())
        .then(|| (Requirement::Email, email_allowed(route, identity)));
    roles
        .into_iter()
        .chain(any)
        .chain(org)
        .chain(claims)
        .chain(email)
}

/// `require_org_roles`: each role's grant map names the organization (a fixed id, or the
/// user's own from `urn:zitadel:iam:user:resourceowner:id`).
fn org_roles_met(rule: &crate::config::OrgRolesRule, identity: &Identity) -> Result<(), Denied> {
    let own = rule.org == OrgRef::User;
    let org = match &rule.org {
        OrgRef::Id(id) => id.as_str(),
        OrgRef::User => match identity.org_roles.user_org.as_deref() {
            Some(o) => o,
            None => {
                return Err(Denied::MissingOrgRoles {
                    org: None,
                    own,
                    roles: rule.roles.clone(),
                });
            }
        },
    };
    let missing: Vec<String> = rule
        .roles
        .iter()
        .filter(|r| !identity.org_roles.has(r, org))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Denied::MissingOrgRoles {
            org: Some(org.to_string()),
            own,
            roles: missing,
        })
    }
}

/// The email rules: an email is present, `email_verified` is `true` (the boolean, or the
/// string some providers send), and the address is in `require_emails` or its domain — the
/// part after the last `@`, compared case-insensitively, subdomains not implied — is in
/// `require_email_domains`.
fn email_allowed(route: &Route, identity: &Identity) -> Result<(), Denied> {
    let email = identity
        .email
        .as_deref()
        .or_else(|| identity.claims.get("email").and_then(Value::as_str));
    let Some(email) = email.filter(|e| !e.is_empty()) else {
        return Err(Denied::EmailNotVerified(None));
    };
    let verified = match identity.claims.get("email_verified") {
        Some(Value::Bool(v)) => *v,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    };
    if !verified {
        return Err(Denied::EmailNotVerified(Some(email.to_string())));
    }
    let domain = email.rsplit_once('@').map(|(_, d)| d);
    let listed = route
        .require_emails
        .iter()
        .any(|e| e.eq_ignore_ascii_case(email));
    let in_domain = domain.is_some_and(|d| {
        route
            .require_email_domains
            .iter()
            .any(|want| want.eq_ignore_ascii_case(d))
    });
    if listed || in_domain {
        Ok(())
    } else {
        Err(Denied::EmailNotAllowed {
            email: email.to_string(),
            domains: route.require_email_domains.clone(),
        })
    }
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

    /// Email rules: verified, domain after the last `@` case-insensitively, no subdomains,
    /// listed addresses; absent or unverified emails refused with their own reason.
    #[test]
    fn email_rules() {
        let mut r = route(&[], &[], vec![]);
        r.require_email_domains = vec!["example.com".into()];
        r.require_emails = vec!["guest@other.org".into()];
        let who = |email: Option<&str>, verified: Value| {
            let mut i = ident(&[], json!({ "email_verified": verified }));
            Arc::make_mut(&mut i).email = email.map(str::to_string);
            i
        };
        assert!(authorize(&r, who(Some("a@Example.COM"), json!(true))).is_ok());
        assert!(authorize(&r, who(Some("Guest@other.org"), json!("true"))).is_ok());
        let e = |i| authorize(&r, i).unwrap_err().unmet;
        assert!(matches!(
            e(who(Some("a@sub.example.com"), json!(true))),
            Denied::EmailNotAllowed { .. }
        ));
        assert!(matches!(
            e(who(Some("a@example.com.evil"), json!(true))),
            Denied::EmailNotAllowed { .. }
        ));
        // the domain is what follows the last `@`
        assert!(authorize(&r, who(Some("\"a@evil.com\"@example.com"), json!(true))).is_ok());
        assert_eq!(
            e(who(Some("a@example.com"), json!(false))),
            Denied::EmailNotVerified(Some("a@example.com".into()))
        );
        assert_eq!(
            e(who(Some("a@example.com"), Value::Null)),
            Denied::EmailNotVerified(Some("a@example.com".into()))
        );
        assert_eq!(e(who(None, json!(true))), Denied::EmailNotVerified(None));
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

    /// `require_org_roles`: every role granted in the named org (fixed or the user's own);
    /// the requirement sits after the role lists and before claims; a role map naming another
    /// org, no resourceowner claim for `@user`, a plain role list: refused with the org named.
    #[test]
    fn org_roles() {
        use crate::config::{OrgRef, OrgRolesRule};
        let with = |org: OrgRef| {
            let mut r = route(&[], &[], vec![("sub", vec![json!("u1")])]);
            r.require_org_roles = Some(OrgRolesRule {
                org,
                roles: vec!["admin".into(), "billing".into()],
            });
            r
        };
        let who = |claims: Value| {
            let mut i = ident(&[], claims);
            let c = i.claims.clone();
            Arc::make_mut(&mut i).org_roles =
                crate::claims::org_roles(&c, &crate::config::RolesClaim::Auto, None);
            i
        };
        let map = json!({"sub": "u1", "urn:zitadel:iam:org:project:roles": {"admin": {"1": "a"}, "billing": {"1": "a", "2": "b"}}, "urn:zitadel:iam:user:resourceowner:id": "1"});
        let fixed = with(OrgRef::Id("1".into()));
        assert!(authorize(&fixed, who(map.clone())).is_ok());
        let other = with(OrgRef::Id("2".into()));
        assert_eq!(
            authorize(&other, who(map.clone())).unwrap_err().unmet,
            Denied::MissingOrgRoles {
                org: Some("2".into()),
                own: false,
                roles: vec!["admin".into()]
            }
        );
        let own = with(OrgRef::User);
        assert!(authorize(&own, who(map.clone())).is_ok());
        let mut elsewhere = map.clone();
        elsewhere["urn:zitadel:iam:user:resourceowner:id"] = json!("2");
        let e = authorize(&own, who(elsewhere)).unwrap_err().unmet;
        assert_eq!(
            e.to_string(),
            "missing role(s) admin in your organization 2 (require_org_roles, org = \"@user\")"
        );
        let mut nobody = map;
        nobody
            .as_object_mut()
            .unwrap()
            .remove("urn:zitadel:iam:user:resourceowner:id");
        let e = authorize(&own, who(nobody)).unwrap_err().unmet;
        assert!(
            matches!(e, Denied::MissingOrgRoles { org: None, .. }),
            "{e}"
        );
        let names: Vec<&str> = checks(&own, &who(json!({"sub": "u1"})))
            .map(|(r, _)| match r {
                Requirement::OrgRoles => "org",
                Requirement::Claim(..) => "claim",
                _ => "other",
            })
            .collect();
        assert_eq!(names, ["org", "claim"]);
    }

    /// The fast path of [`authorize`] ([`met`]) against the full one ([`unmet`]) over every
    /// combination of small role sets, role rules, org rules, claim rules and email rules.
    #[test]
    fn authz_fast_path_agrees() {
        use crate::config::{OrgRef, OrgRolesRule};
        let role_sets: &[&[&str]] = &[
            &[],
            &["admin"],
            &["reader"],
            &["admin", "reader"],
            &["Admin"],
        ];
        let claim_sets = [
            json!({}),
            json!({"email_verified": true, "group": "ops", "n": 1}),
            json!({"email_verified": "true", "group": ["dev", "ops"], "n": 1.0}),
            json!({"email_verified": false, "group": "dev", "n": 2,
                   "urn:zitadel:iam:org:project:roles": {"admin": {"1": "a"}},
                   "urn:zitadel:iam:user:resourceowner:id": "1"}),
        ];
        let emails = [None, Some("a@example.com"), Some("b@other.org"), Some("")];
        let claim_rules: Vec<Vec<(&str, Vec<Value>)>> = vec![
            vec![],
            vec![("group", vec![json!("ops")])],
            vec![
                ("n", vec![json!(1)]),
                ("group", vec![json!("dev"), json!("x")]),
            ],
        ];
        let org_rules = [
            None,
            Some(OrgRolesRule {
                org: OrgRef::Id("1".into()),
                roles: vec!["admin".into()],
            }),
            Some(OrgRolesRule {
                org: OrgRef::User,
                roles: vec!["admin".into()],
            }),
            Some(OrgRolesRule {
                org: OrgRef::Id("2".into()),
                roles: vec!["admin".into()],
            }),
        ];
        let email_rules: [(&[&str], &[&str]); 3] =
            [(&[], &[]), (&["example.com"], &[]), (&[], &["B@other.org"])];
        let (mut n, mut permits) = (0, 0);
        for required in role_sets {
            for any in role_sets {
                for claims in &claim_rules {
                    for org in &org_rules {
                        for (domains, listed) in email_rules {
                            let mut r = route(required, any, claims.clone());
                            r.require_org_roles = org.clone();
                            r.require_email_domains =
                                domains.iter().map(|s| s.to_string()).collect();
                            r.require_emails = listed.iter().map(|s| s.to_string()).collect();
                            for roles in role_sets {
                                for c in &claim_sets {
                                    for email in emails {
                                        let mut i = ident(roles, c.clone());
                                        let cl = i.claims.clone();
                                        let m = Arc::make_mut(&mut i);
                                        m.email = email.map(str::to_string);
                                        m.org_roles = crate::claims::org_roles(
                                            &cl,
                                            &crate::config::RolesClaim::Auto,
                                            None,
                                        );
                                        let fast = met(&r, &i);
                                        assert_eq!(fast, unmet(&r, &i).is_none(), "{r:?} {i:?}");
                                        assert_eq!(authorize(&r, i).is_ok(), fast);
                                        n += 1;
                                        permits += usize::from(fast);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(permits > 100 && n - permits > 100, "{permits} of {n}");
    }
}
