//! CSRF tokens for the HTML forms: stateless for visitors, session-bound once logged in.
//!
//! Every form carries a token in a hidden `csrf_token` field; [`CsrfForm`] refuses a submission
//! whose token is missing or wrong with 403, before the handler runs. Where the expected token
//! lives depends on who is asking:
//!
//! - **Logged in**: in the session (created at login by [`renew`], so forms shown before login
//!   stop working). The session exists anyway; the token costs nothing more.
//! - **Visitors**: in a cookie (double submit). Showing a form must not create a session, or every
//!   anonymous look at the login page would be a stored record (the security probe left 2,167).
//!   The first form page sets `__Host-csrf` (`csrf` with `--insecure-cookies`), a random 256-bit
//!   value, `HttpOnly`, `SameSite=Lax`, for the browser session; the form sends the same value
//!   back, and the two must match. A cross-site page can make the browser send the cookie (or,
//!   with `SameSite=Lax`, not even that on a POST), but cannot read it to fill in the field.
//!
//! Why no signature (HMAC over a nonce): for a visitor there is nothing to bind a signature to,
//! so an attacker who can plant cookies would simply plant a pair the site signed for them. What
//! keeps the cookie honest is the `__Host-` prefix: browsers refuse it from sibling subdomains
//! and plain-HTTP pages, which are the ways to plant one. Without `Secure` (`--insecure-cookies`)
//! there is no prefix, and a network attacker who can plant cookies can defeat this check for
//! visitors, as they could already fix a session of their own choosing on such a deployment.
//!
//! The JSON API needs no token: it accepts only `Content-Type: application/json`, which a
//! cross-site form cannot send.

use std::cell::Cell;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom::Session;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;

use crate::error::{Error, PageError};

/// The session key holding a logged-in user's token, and the form field carrying every token.
pub const FIELD: &str = "csrf_token";

/// A token: 32 random bytes, base64url without padding.
const TOKEN_CHARS: usize = 43;

/// The visitor's cookie token for this request.
struct CookieToken {
    /// The value forms get: the one the browser sent, or a new one.
    value: String,
    /// Whether the browser sent it (only then can a submission match it).
    sent: bool,
    /// Whether a form was rendered with it (only then is a new one worth a Set-Cookie).
    used: Cell<bool>,
}

tokio::task_local! {
    // A task-local rather than a request extension: the token is read by `token()` deep inside
    // page rendering, which sees only the session, and this keeps every form handler's
    // signature as it was. Handlers run inside the middleware's future, so it is always set.
    static COOKIE_TOKEN: CookieToken;
}

/// The cookie's name: with `Secure`, the `__Host-` prefix (see the module doc).
pub fn cookie_name(secure_cookies: bool) -> &'static str {
    if secure_cookies {
        "__Host-csrf"
    } else {
        "csrf"
    }
}

/// Middleware: makes the visitor's cookie token available to the request, and sets the cookie
/// when a page used a new one. `secure_cookies` is the app's cookie setting.
pub async fn cookie_tokens(
    State(secure_cookies): State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let name = cookie_name(secure_cookies);
    let sent = sent_cookie(request.headers(), name);
    let token = CookieToken {
        sent: sent.is_some(),
        value: match sent {
            Some(value) => value,
            None => match random_token() {
                Ok(value) => value,
                Err(error) => return PageError(error).into_response(),
            },
        },
        used: Cell::new(false),
    };
    let (mut response, set) = COOKIE_TOKEN
        .scope(token, async {
            let response = next.run(request).await;
            let set = COOKIE_TOKEN.with(|t| (!t.sent && t.used.get()).then(|| t.value.clone()));
            (response, set)
        })
        .await;
    if let Some(value) = set {
        let secure = if secure_cookies { "; Secure" } else { "" };
        let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}");
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
    }
    response
}

/// The first well-formed value of cookie `name`; anything else is ignored (a new token is made).
fn sent_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| {
            *n == name
                && v.len() == TOKEN_CHARS
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(|(_, v)| v.to_owned())
}

fn random_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The token for the forms of this page: the session's for a logged-in user (created if it has
/// none yet), the cookie's for a visitor (which stores nothing).
pub fn token(session: &Session) -> Result<String, Error> {
    if session.user().is_none() {
        return COOKIE_TOKEN
            .try_with(|t| {
                t.used.set(true);
                t.value.clone()
            })
            .map_err(|_| Error::Internal("the CSRF cookie middleware is not installed".into()));
    }
    match session.get::<String>(FIELD) {
        Ok(Some(token)) => Ok(token),
        // Missing, or not a string (never written by us): start over.
        Ok(None) | Err(_) => renew(session),
    }
}

/// Replaces the session's token, so forms rendered before (e.g. before login) stop working.
pub fn renew(session: &Session) -> Result<String, Error> {
    let token = random_token()?;
    session.insert(FIELD, &token)?;
    Ok(token)
}

/// Checks a submitted token, in constant time: against the session's for a logged-in user,
/// against the cookie the browser sent for a visitor.
pub fn verify(session: &Session, sent: Option<&str>) -> Result<(), Error> {
    let expected = if session.user().is_some() {
        session.get::<String>(FIELD).ok().flatten()
    } else {
        COOKIE_TOKEN
            .try_with(|t| t.sent.then(|| t.value.clone()))
            .ok()
            .flatten()
    };
    match (expected, sent) {
        (Some(expected), Some(sent)) if bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) => {
            Ok(())
        }
        _ => Err(Error::Csrf),
    }
}

/// A urlencoded form whose CSRF token has been checked; the fields are deserialized into `T`
/// (which need not declare `csrf_token`).
///
/// Rejections: 415 unless the body is `application/x-www-form-urlencoded`, 403 when the token is
/// missing or wrong, 400 when the other fields do not fit `T`.
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

/// For forms that are only a button (log out, clear the cart).
#[derive(Debug, Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
struct TokenField {
    csrf_token: Option<String>,
}

impl<S, T> FromRequest<S> for CsrfForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(Error::from)?;
        let is_form = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(Error::UnsupportedMediaType("application/x-www-form-urlencoded").into());
        }
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| Error::Rejected {
                status: rejection.status(),
                message: rejection.body_text(),
            })?;
        let sent: TokenField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| Error::BadRequest(format!("the form cannot be read: {e}")))?;
        verify(&session, sent.csrf_token.as_deref())?;
        serde_urlencoded::from_bytes(&bytes)
            .map(CsrfForm)
            .map_err(|e| Error::BadRequest(format!("the form is incomplete: {e}")).into())
    }
}
