//! `/.auth/me`: who the browser's session says the user is (JSON), for the app's front end.
//! No route here: the session of whichever provider made it counts, as long as it belongs to
//! that provider (`idp` says which). The email is only shown when verified.

use http::header::HeaderMap;
use serde_json::json;

use super::Answer;
use crate::auth::Authenticated;
use crate::auth::login::LoginState;
use crate::error::{AuthError, LoginError};
use crate::provider::Providers;
use crate::request::ConnInfo;

pub(super) async fn me(
    l: &LoginState,
    providers: &Providers,
    headers: &HeaderMap,
    conn: ConnInfo,
    host: Option<&str>,
) -> Result<Answer, AuthError> {
    let mut ended = Vec::new();
    match l
        .session_identity(providers, headers, conn, host, None, &mut ended)
        .await
    {
        Ok(Some(Authenticated {
            identity: id,
            set_cookie,
        })) => {
            let body = json!({
                "sub": id.sub,
                "idp": &*id.provider,
                "email": id.verified_email(),
                "name": id.name,
                "preferred_username": id.preferred_username,
                "roles": id.roles,
                "orgs": id.org_roles.orgs(),
                "expires_at": id.expires_at,
            });
            Ok(Answer::Json {
                body: body.to_string(),
                set_cookie,
            })
        }
        Ok(None) => Err(LoginError::NoSession {
            clear_cookies: ended,
        }
        .into()),
        Err(e) => Err(AuthError::SessionStoreUnavailable {
            detail: e.to_string(),
        }),
    }
}
