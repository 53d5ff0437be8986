//! What every `/api` route shares: JSON bodies that fail as 400 (never 500), and the rule that
//! state-changing calls carry `Content-Type: application/json`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Error};

/// Paths under this prefix are the JSON API.
pub const PREFIX: &str = "/api/";

/// A JSON request body. Unlike axum's `Json`, every way the body can be wrong (not JSON, wrong
/// shape, a missing field) is a 400 with a JSON error saying what is wrong.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(Error::UnsupportedMediaType("application/json").into())
            }
            Err(JsonRejection::BytesRejection(rejection)) => Err(Error::Rejected {
                status: rejection.status(),
                message: rejection.body_text(),
            }
            .into()),
            Err(rejection) => Err(Error::BadRequest(rejection.body_text()).into()),
        }
    }
}

/// Refuses `POST`, `PUT`, `PATCH` and `DELETE` calls to the API unless they say
/// `Content-Type: application/json`, with 415. Browsers cannot send that content type across
/// sites without a CORS preflight, which this app never grants: that is the API's CSRF defence.
pub async fn require_json(request: Request, next: Next) -> Response {
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes_state && request.uri().path().starts_with(PREFIX) && !is_json(request.headers()) {
        return ApiError(Error::UnsupportedMediaType("application/json")).into_response();
    }
    next.run(request).await
}

/// Whether the headers say the body is JSON (`application/json`, with or without parameters).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}
