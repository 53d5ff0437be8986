//! What can go wrong in a request, and how pages and the JSON API show it.
//!
//! Handlers return [`Error`] wrapped as [`PageError`] (an HTML page, or the redirect to the login
//! page) or [`ApiError`] (`{"error": "..."}`). Both pick the status from the same place, so a
//! page and its API twin always agree.

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom::{DiscardChanges, SessionRejection, StoreError};
use serde_json::json;

use crate::views;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or a field is invalid; the message says which.
    #[error("{0}")]
    BadRequest(String),
    /// Login failed. One message for an unknown e-mail and a wrong password.
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    /// Too many login attempts for this account or from this address; see `throttle`.
    #[error("too many login attempts; try again in {retry_after_secs} seconds")]
    TooManyAttempts { retry_after_secs: u64 },
    /// The page or call needs a logged-in user.
    #[error("please log in first")]
    LoginRequired,
    /// Logged in, but not allowed (e.g. a non-admin on /admin).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The form's CSRF token is missing or does not match the session's.
    #[error("this form has expired or was not sent by this site; reload the page and try again")]
    Csrf,
    /// No such thing (product, device, page).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (an e-mail address already registered).
    #[error("{0}")]
    Conflict(String),
    /// axum refused the request body (too large, unreadable).
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    /// The body must be sent with this content type.
    #[error("send the request body with Content-Type: {0}")]
    UnsupportedMediaType(&'static str),
    /// Sessions are sealed in cookies: the server keeps none to list, count or end.
    #[error(
        "sessions live sealed in each browser's cookie here, so the server keeps none to list, \
         count or log out"
    )]
    NoServerSessions,
    /// The session API refused (value too large, store failure).
    #[error(transparent)]
    Session(#[from] cloakroom::Error),
    /// The session store failed on a direct call (devices, admin).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The session could not be loaded.
    #[error(transparent)]
    SessionLoad(#[from] SessionRejection),
    /// A bug or a broken environment (a template that does not render, a failed worker).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::InvalidCredentials | Error::LoginRequired => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::Csrf => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NoServerSessions => StatusCode::NOT_IMPLEMENTED,
            Error::Rejected { status, .. } => *status,
            Error::Session(cloakroom::Error::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Session(cloakroom::Error::Store(e)) | Error::Store(e) => store_status(e),
            Error::SessionLoad(SessionRejection::Load(e)) => e.status,
            Error::Session(_) | Error::SessionLoad(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// What the visitor is told. Store and internal errors are logged in full and shown only
    /// generically: driver messages can name hosts and users.
    pub fn public_message(&self) -> String {
        match self {
            Error::Session(cloakroom::Error::Store(e)) | Error::Store(e) => match e {
                StoreError::Unsupported { .. } => e.to_string(),
                StoreError::Unavailable { .. } => {
                    "the session store is unavailable; please try again shortly".into()
                }
                _ => "the session store failed".into(),
            },
            Error::SessionLoad(_) => {
                "the session store is unavailable; please try again shortly".into()
            }
            Error::Session(cloakroom::Error::TooLarge { .. }) => {
                "your session is full; remove something first".into()
            }
            Error::Session(_) | Error::Internal(_) => "something went wrong on our side".into(),
            other => other.to_string(),
        }
    }

    /// Whether this cannot be done where sessions live (sealed cookies keep none on the server).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Error::NoServerSessions
                | Error::Store(StoreError::Unsupported { .. })
                | Error::Session(cloakroom::Error::Store(StoreError::Unsupported { .. }))
        )
    }

    /// Headers the status asks for (`Retry-After` with 429).
    fn add_headers(&self, response: &mut Response) {
        if let Error::TooManyAttempts { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
    }

    fn log(&self) {
        if self.is_unsupported() {
            tracing::info!(error = %self, "not possible with this store");
        } else if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
    }
}

fn store_status(error: &StoreError) -> StatusCode {
    match error {
        StoreError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An [`Error`] shown as an HTML page; [`Error::LoginRequired`] becomes a redirect to `/login`.
#[derive(Debug)]
pub struct PageError(pub Error);

impl<E: Into<Error>> From<E> for PageError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log();
        if let Error::LoginRequired = error {
            // Kept: the page to come back to and the "please log in" message.
            return Redirect::to("/login").into_response();
        }
        let mut response = views::error_page(error.status(), &error.public_message());
        error.add_headers(&mut response);
        discard_changes(response)
    }
}

/// A request that ends in an error saves none of its session changes: a login or a form step
/// that failed half-way must leave the session as it was (see `cloakroom::DiscardChanges`).
fn discard_changes(mut response: Response) -> Response {
    response.extensions_mut().insert(DiscardChanges);
    response
}

/// An [`Error`] shown as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log();
        let mut response = json_error(error.status(), &error.public_message());
        error.add_headers(&mut response);
        discard_changes(response)
    }
}

/// The API's error body.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A page handler's result.
pub type PageResult<T = Response> = Result<T, PageError>;
/// An API handler's result.
pub type ApiResult<T = Response> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_discard_the_requests_session_changes() {
        let too_large = cloakroom::Error::TooLarge { size: 2, limit: 1 };
        for response in [
            PageError(Error::Session(too_large)).into_response(),
            PageError(Error::Csrf).into_response(),
            ApiError(Error::BadRequest("no".into())).into_response(),
            ApiError(Error::LoginRequired).into_response(),
        ] {
            assert!(
                response.extensions().get::<DiscardChanges>().is_some(),
                "{}",
                response.status()
            );
        }
        // Sending a visitor to log in keeps the page to come back to and the message.
        let redirect = PageError(Error::LoginRequired).into_response();
        assert_eq!(redirect.status(), StatusCode::SEE_OTHER);
        assert!(redirect.extensions().get::<DiscardChanges>().is_none());
    }
}
