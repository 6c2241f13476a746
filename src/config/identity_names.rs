//! The set of identity header names stripped from every request, built at config load. Below
//! config (imports nothing of the crate) so that config never imports a module that imports it.

/// Names of this length and longer share the last length bucket.
const LONG: usize = 127;

/// The identity header names, folded (lower case, `_` → `-`), for `headers::strip_inbound`: a
/// name is checked against the names of its length only, and among those first by its first
/// byte (a bit mask says which lengths exist), so the usual request, none of whose headers is
/// one, costs a mask test per header — or, for a header whose length some name has (e.g.
/// `authorization` and `x-http-method`), a few byte compares — and no hashing.
#[derive(Debug, Clone)]
pub struct IdentityNames {
    /// Bit `n` set: some name has length `n` (names of [`LONG`] bytes and more set bit 127).
    lengths: u128,
    /// Sorted by length bucket (`len.min(LONG)`), in insertion order within a bucket.
    names: Vec<Box<[u8]>>,
    /// The names of bucket `b` are `names[at[b]..at[b + 1]]`.
    at: [u32; LONG + 2],
}

impl Default for IdentityNames {
    fn default() -> Self {
        IdentityNames {
            lengths: 0,
            names: Vec::new(),
            at: [0; LONG + 2],
        }
    }
}

impl IdentityNames {
    /// Adds a folded name (no-op when present).
    pub fn insert(&mut self, folded: &str) {
        if self.contains(folded) {
            return;
        }
        let b = folded.len().min(LONG);
        self.lengths |= 1u128 << b;
        self.names
            .insert(self.at[b + 1] as usize, folded.as_bytes().into());
        for a in &mut self.at[b + 1..] {
            *a += 1;
        }
    }

    /// Whether `folded` (already folded) is one of the names.
    pub fn contains(&self, folded: &str) -> bool {
        self.matches(folded.as_bytes(), |b| b)
    }

    /// Whether `name` folded with `fold` is one of the names.
    #[inline]
    pub fn matches(&self, name: &[u8], fold: impl Fn(u8) -> u8) -> bool {
        let b = name.len().min(LONG);
        if self.lengths & (1u128 << b) == 0 {
            return false;
        }
        let Some(&first) = name.first() else {
            // The empty name: in the set when it was inserted.
            return self.bucket(0).iter().any(|n| n.is_empty());
        };
        let first = fold(first);
        self.bucket(b).iter().any(|n| {
            n.len() == name.len()
                && n[0] == first
                && n[1..].iter().zip(&name[1..]).all(|(a, c)| *a == fold(*c))
        })
    }

    /// The names of length bucket `b`.
    fn bucket(&self, b: usize) -> &[Box<[u8]>] {
        &self.names[self.at[b] as usize..self.at[b + 1] as usize]
    }

    /// Every name, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.names.iter().map(|n| &**n)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The set as it was before the length buckets: every name compared.
    fn reference(names: &[Vec<u8>], name: &[u8], fold: impl Fn(u8) -> u8) -> bool {
        names
            .iter()
            .any(|n| n.len() == name.len() && n.iter().zip(name).all(|(a, b)| *a == fold(*b)))
    }

    /// The bucketed lookup answers as a scan of every name does: for each name, each of its
    /// `_` spellings, prefixes, extensions, one-byte changes, names of 127 bytes and longer
    /// (one bucket), the empty name, and pseudo-random names of every length up to 140.
    #[test]
    fn lookups_agree_with_a_scan() {
        use rand::{Rng, SeedableRng};
        let fold = |b: u8| if b == b'_' { b'-' } else { b };
        let long = |n: usize, c: u8| String::from_utf8(vec![c; n]).unwrap();
        let extra = [
            "x-forwarded-user".to_string(),
            "a".into(),
            "ab".into(),
            long(126, b'q'),
            long(127, b'q'),
            long(128, b'q'),
            long(200, b'r'),
        ];
        for with_empty in [false, true] {
            let mut set: IdentityNames = extra.iter().collect();
            if with_empty {
                set.insert("");
            }
            let names: Vec<Vec<u8>> = set.iter().map(<[u8]>::to_vec).collect();
            let mut all: Vec<&str> = ALWAYS_STRIPPED
                .iter()
                .copied()
                .chain(extra.iter().map(String::as_str))
                .collect();
            if with_empty {
                all.push("");
            }
            all.sort_unstable();
            all.dedup();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                all.iter()
                    .map(|n| n.as_bytes().to_vec())
                    .collect::<Vec<_>>()
            );
            let mut probes: Vec<Vec<u8>> =
                vec![Vec::new(), b"authorization".to_vec(), b"host".to_vec()];
            for n in &names {
                probes.push(n.clone());
                probes.push(
                    n.iter()
                        .map(|b| if *b == b'-' { b'_' } else { *b })
                        .collect(),
                );
                probes.push(n[..n.len().saturating_sub(1)].to_vec());
                probes.push([n.as_slice(), b"x"].concat());
                for i in 0..n.len() {
                    let mut m = n.clone();
                    m[i] ^= 0x20;
                    probes.push(m.clone());
                    m[i] = b'_';
                    probes.push(m);
                }
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(15);
            let alphabet = b"-_xaeirtuw";
            for _ in 0..20_000 {
                let len = rng.random_range(0..=140);
                probes.push(
                    (0..len)
                        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                        .collect(),
                );
            }
            let mut hits = 0;
            for p in &probes {
                let want = reference(&names, p, fold);
                assert_eq!(
                    set.matches(p, fold),
                    want,
                    "{:?}",
                    String::from_utf8_lossy(p)
                );
                assert_eq!(set.matches(p, |b| b), reference(&names, p, |b| b));
                hits += usize::from(want);
            }
            assert!(hits > 2 * names.len(), "{hits}");
        }
    }
}
