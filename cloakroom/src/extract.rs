//! The axum extractor, and responses for the crate's errors.

use axum_core::extract::FromRequestParts;
use std::convert::Infallible;

use axum_core::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use http::StatusCode;
use http::header::{CACHE_CONTROL, HeaderValue};
use http::request::Parts;

use crate::error::{Error, StoreError};
use crate::layer::{DiscardChanges, LazySession, LoadError};
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

/// Clients learn that the session store is unavailable, not why: driver messages can name hosts
/// and users. The details are in the log.
const UNAVAILABLE: &str = "the session store is unavailable; please try again shortly";

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingLayer => {
                text_response(StatusCode::INTERNAL_SERVER_ERROR, self.to_string())
            }
            Self::Load(error) => text_response(error.status, UNAVAILABLE.to_owned()),
        }
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
        Ok(lazy.load(&parts.headers).await?)
    }
}

/// Lets handlers use `?` on session calls: a value too large is a 413, a store failure a 503,
/// anything else a 500. Store errors are logged in full but shown to the client only generically.
/// The response carries [`DiscardChanges`]: what the handler changed in the session before the
/// error is not saved.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self, "cloakroom: session error in handler");
        match &self {
            Error::TooLarge { .. } => {
                text_response(StatusCode::PAYLOAD_TOO_LARGE, self.to_string())
            }
            Error::Store(StoreError::Unavailable { .. }) => {
                text_response(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE.to_owned())
            }
            Error::Store(_) => text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session store failed".to_owned(),
            ),
            _ => text_response(StatusCode::INTERNAL_SERVER_ERROR, self.to_string()),
        }
    }
}

fn text_response(status: StatusCode, message: String) -> Response {
    let mut response = (status, DiscardChanges, message).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Lets a handler return `(status, DiscardChanges, …)` as part of its response.
impl IntoResponseParts for DiscardChanges {
    type Error = Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Infallible> {
        parts.extensions_mut().insert(self);
        Ok(parts)
    }
}
