//! The application: the router with the session layer and the app-wide middleware around it.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use cloakroom::{Backend, Key, SessionLayer};

use crate::api;
use crate::csrf;
use crate::error::{Error, json_error};
use crate::routes;
use crate::state::App;
use crate::throttle::{LoginLimits, LoginThrottle};
use crate::users::{PasswordCost, Users};
use crate::views;

/// What the app is built from.
pub struct Config {
    /// Where sessions live: any store, or sealed cookies (see `cloakroom::stores::open`).
    pub backend: Backend,
    /// The key that signs session cookies.
    pub key: Key,
    /// Send cookies with `Secure` (browsers still accept them on `http://localhost`).
    pub secure_cookies: bool,
    /// How expensive password hashing is.
    pub password_cost: PasswordCost,
    /// How many login attempts an account or a client address gets.
    pub login_limits: LoginLimits,
}

/// The session cookie's name. With `Secure` it takes the `__Host-` prefix, so browsers refuse
/// the cookie unless it is `Secure`, `Path=/` and host-only: a sibling subdomain or a plain-HTTP
/// page cannot plant or overwrite it. Without `Secure` browsers would drop a `__Host-` cookie, so
/// the plain generic name is used.
pub fn session_cookie_name(secure_cookies: bool) -> &'static str {
    if secure_cookies { "__Host-id" } else { "id" }
}

/// The whole app: pages, the JSON API, the session layer and the app-wide middleware.
pub fn router(config: Config) -> Result<Router, Error> {
    views::check()?;
    let app = Arc::new(App {
        users: Users::with_demo_users(config.password_cost)?,
        login_throttle: LoginThrottle::new(config.login_limits)?,
        store: config.backend.store().cloned(),
    });
    let sessions = SessionLayer::builder_for(config.backend)
        .key(config.key)
        .secure(config.secure_cookies)
        .cookie_name(session_cookie_name(config.secure_cookies))
        .build()?;
    Ok(routes::all()
        .with_state(app)
        .layer(sessions)
        .layer(from_fn_with_state(
            config.secure_cookies,
            csrf::cookie_tokens,
        ))
        .layer(from_fn(api::require_json))
        .layer(from_fn(error_bodies))
        .layer(from_fn(no_store)))
}

/// Pages show personal data: no cache keeps them, so after logout the Back button cannot show
/// the logged-in page again. Only the stylesheet may be cached.
async fn no_store(request: Request, next: Next) -> Response {
    let cacheable = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    if !cacheable && !response.headers().contains_key(CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Gives error responses made outside the handlers (axum's 405, the session layer's 503, a
/// rejected extractor) the body their side of the app promises: JSON under `/api/`, an HTML page
/// elsewhere.
async fn error_bodies(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with(api::PREFIX);
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let wanted = if is_api {
        "application/json"
    } else {
        "text/html"
    };
    if content_type(response.headers()).is_some_and(|t| t.starts_with(wanted)) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = plain_text(&parts.headers, body)
        .await
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let mut fixed = if is_api {
        json_error(status, &message)
    } else {
        views::error_page(status, &message)
    };
    // Keep what the original said about the response (Allow, Set-Cookie, Cache-Control, Vary).
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            fixed.headers_mut().append(name, value.clone());
        }
    }
    fixed
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// A short `text/plain` body, if that is what the response has.
async fn plain_text(headers: &HeaderMap, body: Body) -> Option<String> {
    if !content_type(headers).is_some_and(|t| t.starts_with("text/plain")) {
        return None;
    }
    let bytes = to_bytes(body, 4096).await.ok()?;
    let text = String::from_utf8(bytes.to_vec()).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
