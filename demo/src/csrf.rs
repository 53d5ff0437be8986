//! Session-bound CSRF tokens for the HTML forms.
//!
//! Each session holds one random token (created when the first form is shown, renewed at login).
//! Every form carries it in a hidden `csrf_token` field; [`CsrfForm`] refuses a submission whose
//! token is missing or different with 403, before the handler runs. The JSON API needs no token:
//! it accepts only `Content-Type: application/json`, which a cross-site form cannot send.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom::Session;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;

use crate::error::{Error, PageError};

/// The session key holding the token, and the form field carrying it.
pub const FIELD: &str = "csrf_token";

/// The session's token, created if it has none yet.
pub fn token(session: &Session) -> Result<String, Error> {
    match session.get::<String>(FIELD) {
        Ok(Some(token)) => Ok(token),
        // Missing, or not a string (never written by us): start over.
        Ok(None) | Err(_) => renew(session),
    }
}

/// Replaces the session's token, so forms rendered before (e.g. before login) stop working.
pub fn renew(session: &Session) -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    session.insert(FIELD, &token)?;
    Ok(token)
}

/// Checks a submitted token against the session's, in constant time.
pub fn verify(session: &Session, sent: Option<&str>) -> Result<(), Error> {
    let expected = session.get::<String>(FIELD).ok().flatten();
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
