//! Warnings, not errors: a header that maps a ZITADEL claim ZITADEL only sends when a scope is
//! requested (`urn:zitadel:iam:user:resourceowner:*`, the project roles claims,
//! `urn:zitadel:iam:user:metadata`), on a login provider whose `scopes` lack it. The config still
//! loads (`check` exits 0): a project setting ("Assert Roles on Authentication") can send roles
//! without the scope, and a provider other than ZITADEL may send such claims anyway — but the
//! usual outcome is a header that never arrives, so `check` names the entry and the fix.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::load::{Validator, span};
use super::provider::Provider;
use super::raw::{RawConfig, RawHeaders};
use super::values::Str;

/// The scopes that make ZITADEL send `claim` (any one suffices), and what the claim is, or
/// `None` when no scope is needed.
pub fn zitadel_scopes_for(claim: &str) -> Option<(&'static [&'static str], &'static str)> {
    if claim.starts_with("urn:zitadel:iam:user:resourceowner") {
        return Some((
            &["urn:zitadel:iam:user:resourceowner"],
            "the user's organization",
        ));
    }
    if claim.starts_with("urn:zitadel:iam:user:metadata") {
        return Some((&["urn:zitadel:iam:user:metadata"], "the user's metadata"));
    }
    let project_roles = claim == "urn:zitadel:iam:org:project:roles"
        || claim
            .strip_prefix("urn:zitadel:iam:org:project:")
            .and_then(|r| r.strip_suffix(":roles"))
            .is_some_and(|id| !id.is_empty() && !id.contains(':'));
    if project_roles {
        return Some((
            &[
                "urn:zitadel:iam:org:projects:roles",
                "urn:zitadel:iam:org:project:roles",
            ],
            "the project roles",
        ));
    }
    None
}

/// Whether `scopes` ask ZITADEL for a claim `accepted` covers (a `…:project:role:<key>` scope
/// asks for roles too).
fn requested(scopes: &[String], accepted: &[&str]) -> bool {
    scopes.iter().any(|s| {
        accepted.contains(&s.as_str())
            || (accepted.contains(&"urn:zitadel:iam:org:projects:roles")
                && s.starts_with("urn:zitadel:iam:org:project:role:"))
    })
}

impl Validator<'_, '_> {
    /// Warns about `[headers.claims]` entries (global and per route) whose ZITADEL scope the
    /// login provider does not request.
    pub(super) fn scope_warnings(
        &mut self,
        raw: &RawConfig,
        providers: &BTreeMap<String, Arc<Provider>>,
        only_provider: &Option<String>,
    ) {
        let login: Vec<&Provider> = providers
            .values()
            .filter(|p| p.used_for_login)
            .map(|p| &**p)
            .collect();
        self.warn_headers(&raw.headers, "headers", &login);
        for (i, r) in raw.routes.iter().enumerate() {
            let r = r.get_ref();
            let Some(h) = &r.headers else { continue };
            if !r.auth.as_ref().is_some_and(|a| a.get_ref().0.uses_login()) {
                continue;
            }
            let name = r
                .provider
                .as_ref()
                .map(|p| p.get_ref().0.clone())
                .or_else(|| only_provider.clone());
            let ps: Vec<&Provider> = name
                .and_then(|n| providers.get(&n))
                .map(|p| &**p)
                .into_iter()
                .collect();
            self.warn_headers(h, &format!("route[{i}].headers"), &ps);
        }
    }

    fn warn_headers(&mut self, h: &RawHeaders, prefix: &str, providers: &[&Provider]) {
        let entries: Vec<(&String, &Spanned<Str>)> = h.claims.iter().collect();
        for (header, claim) in entries {
            let Some((accepted, what)) = zitadel_scopes_for(claim.get_ref()) else {
                continue;
            };
            for p in providers.iter().filter(|p| !requested(&p.scopes, accepted)) {
                let alt = if accepted.len() > 1 {
                    " (or set the project's \"Assert Roles on Authentication\")"
                } else {
                    ""
                };
                self.errs.warn(
                    span(claim),
                    format!("{prefix}.claims.{header}"),
                    format!(
                        "maps {:?} ({what}), which ZITADEL sends only when the scope {:?} is requested, and provider {:?} does not request it: the header will be missing. Add {:?} to providers.{}.scopes{alt}",
                        claim.get_ref().0,
                        accepted[0],
                        p.name,
                        accepted[0],
                        p.name
                    ),
                );
            }
        }
    }
}
