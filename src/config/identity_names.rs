//! The set of identity header names stripped from every request, built at config load. Below
//! config (imports nothing of the crate) so that config never imports a module that imports it.

/// The identity header names, folded (lower case, `_` → `-`), for `headers::strip_inbound`: a name
/// is checked against the names of its length only (a bit mask says which lengths exist), so
/// the usual request, none of whose headers is one, costs a mask test per header and no hashing.
#[derive(Debug, Clone, Default)]
pub struct IdentityNames {
    /// Bit `n` set: some name has length `n` (names of 128 bytes and more set bit 127).
    lengths: u128,
    names: Vec<Box<[u8]>>,
}

impl IdentityNames {
    /// Adds a folded name (no-op when present).
    pub fn insert(&mut self, folded: &str) {
        if !self.contains(folded) {
            self.lengths |= 1u128 << folded.len().min(127);
            self.names.push(folded.as_bytes().into());
        }
    }

    /// Whether `folded` (already folded) is one of the names.
    pub fn contains(&self, folded: &str) -> bool {
        self.matches(folded.as_bytes(), |b| b)
    }

    /// Whether `name` folded with `fold` is one of the names.
    pub fn matches(&self, name: &[u8], fold: impl Fn(u8) -> u8) -> bool {
        if self.lengths & (1u128 << name.len().min(127)) == 0 {
            return false;
        }
        self.names
            .iter()
            .any(|n| n.len() == name.len() && n.iter().zip(name).all(|(a, b)| *a == fold(*b)))
    }
}

/// The given names and [`ALWAYS_STRIPPED`]: a set built from the config can never miss those.
impl<S: AsRef<str>> FromIterator<S> for IdentityNames {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut names = IdentityNames::default();
        for n in ALWAYS_STRIPPED {
            names.insert(n);
        }
        for n in iter {
            names.insert(n.as_ref());
        }
        names
    }
}

/// Headers only a proxy or the web server in front of an app may set, removed from every
/// request on every route (folded: lower case, `-`): frameworks and servers take the user
/// (`Remote-User`; Grafana's auth proxy `X-WEBAUTH-USER`; `X-User`, `X-Email`, `Auth-User`,
/// `X-Authenticated-User` in auth-proxy setups), the path or host (`X-Original-URL`,
/// `X-Rewrite-URL`: IIS, Symfony, Zend; `X-Original-URI`/`-Method`/`-Host` from nginx
/// `auth_request`; `X-Host`), the client address (`True-Client-IP`: Akamai, Cloudflare;
/// `X-Forwarded`, `Forwarded-For`: what IP libraries read besides the standard names) or the
/// method (`X-HTTP-Method-Override` and its variants: Express, Rails, Spring's
/// `HiddenHttpMethodFilter`) from them. `Proxy` is httpoxy (CVE-2016-5385: CGI turns it into
/// `HTTP_PROXY`, which HTTP clients take as their outbound proxy); `Proxy-Authorization` is
/// hop-by-hop, listed for its `_` spelling. Every `X-Auth-Request-*` and `X-Portcullis-*` name is
/// removed as well (prefixes, in `headers::strip_inbound`). A name here that `[headers]` configures as
/// an identity header is still removed from the request, and then set by the proxy.
pub const ALWAYS_STRIPPED: &[&str] = &[
    "remote-user",
    "x-remote-user",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-original-host",
    "x-host",
    "true-client-ip",
    "x-forwarded",
    "forwarded-for",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "proxy",
    "proxy-authorization",
    "x-webauth-user",
    "x-authenticated-user",
    "x-user",
    "x-email",
    "auth-user",
    // what other auth proxies and platforms vouch for, which an app moved from them may still
    // trust: Authelia/Authentik, Kong, Grafana, Azure App Service, Google IAP, AWS ALB,
    // Cloudflare Access, Pomerium
    "remote-email",
    "remote-groups",
    "remote-name",
    "x-auth-user",
    "x-auth-email",
    "x-username",
    "x-user-id",
    "x-authenticated-userid",
    "x-consumer-id",
    "x-consumer-username",
    "x-webauth-email",
    "x-webauth-name",
    "x-ms-client-principal",
    "x-ms-client-principal-id",
    "x-ms-client-principal-idp",
    "x-ms-client-principal-name",
    "x-goog-authenticated-user-email",
    "x-goog-authenticated-user-id",
    "x-goog-iap-jwt-assertion",
    "x-amzn-oidc-accesstoken",
    "x-amzn-oidc-data",
    "x-amzn-oidc-identity",
    "cf-access-authenticated-user-email",
    "cf-access-jwt-assertion",
    "x-pomerium-jwt-assertion",
    "x-pomerium-claim-email",
    "x-pomerium-claim-groups",
    "x-anonymous-consumer",
    "x-authenticated-scope",
    "x-authenticated-groups",
];
