//! The axum extractor, and responses for the crate's errors.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, HeaderValue};
use http::request::Parts;

use crate::error::{Error, StoreError};
use crate::layer::{LazySession, LoadError};
use crate::session::Session;

/// Why the [`Session`] extractor failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRejection {
    /// The route is not wrapped in a [`SessionLayer`](crate::SessionLayer).
    #[error(
        "the Session extractor needs a SessionLayer around the route: \
         add `.layer(SessionLayer::new(store))` to the router"
    )]
    MissingLayer,
    /// The store failed while loading.
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Load(error) => error.status,
        };
        text_response(status, self.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let lazy = parts
            .extensions
            .get::<LazySession>()
            .cloned()
            .ok_or(SessionRejection::MissingLayer)?;
        Ok(lazy.load().await?)
    }
}

/// Lets handlers use `?` on session calls: a value too large is a 413, a store failure a 503,
/// anything else a 500.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Store(StoreError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %self, "cloakroom: session error in handler");
        text_response(status, self.to_string())
    }
}

fn text_response(status: StatusCode, message: String) -> Response {
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
