//! `[forward_auth]`: what `/.auth/check` adds to its answers besides the route's `[headers]`.

use super::raw::RawForwardAuth;

#[derive(Debug, Clone, Default)]
pub struct ForwardAuth {
    /// A check's 200 also carries oauth2-proxy's `--set-xauthrequest` headers
    /// (`X-Auth-Request-User`, `-Email`, `-Groups`, `-Preferred-Username`), so front-proxy
    /// configs written for oauth2-proxy keep working.
    pub xauthrequest: bool,
}

impl From<&RawForwardAuth> for ForwardAuth {
    fn from(raw: &RawForwardAuth) -> Self {
        ForwardAuth {
            xauthrequest: raw.xauthrequest,
        }
    }
}
