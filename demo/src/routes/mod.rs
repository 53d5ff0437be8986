//! The routes, one module per feature; each serves its pages and its `/api` twin.
//!
//! | feature | pages | API |
//! |---|---|---|
//! | [`home`] | `GET /` | `GET /api/session`, `GET /api/flashes` |
//! | [`login`] | `GET, POST /login`, `POST /logout`, `GET /dashboard` | `POST /api/login`, `POST /api/logout` |
//! | [`admin`] | `GET /admin` | |
//! | [`cart`] | `GET /cart`, `POST /cart/add`, `/cart/remove`, `/cart/clear` | `GET, POST, DELETE /api/cart`, `DELETE /api/cart/{product_id}` |
//! | [`register`] | `GET, POST /register/step1`, `/step2`, `/complete` | `POST /api/register/step1`, `/step2`, `/complete` |
//! | [`preferences`] | `GET, POST /preferences` | `GET, PUT /api/preferences` |
//! | [`devices`] | `GET /devices`, `POST /devices/{id}/revoke`, `/devices/revoke-others` | `GET /api/devices`, `DELETE /api/devices/{id}`, `POST /api/devices/revoke-others` |

use axum::Router;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api;
use crate::error::{ApiError, Error, PageError};
use crate::state::AppState;
use crate::views::STYLESHEET;

pub mod admin;
pub mod cart;
pub mod devices;
pub mod home;
pub mod login;
pub mod preferences;
pub mod register;

/// Every route.
/// What an anonymous visitor's session carries into the account at login: the cart and the
/// preferences chosen before logging in.
pub const KEPT_AT_LOGIN: [&str; 2] = [cart::KEY, preferences::KEY];

pub fn all() -> Router<AppState> {
    Router::new()
        .merge(home::routes())
        .merge(login::routes())
        .merge(admin::routes())
        .merge(cart::routes())
        .merge(register::routes())
        .merge(preferences::routes())
        .merge(devices::routes())
        .route("/static/style.css", get(stylesheet))
        .fallback(not_found)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

/// For unknown paths.
async fn not_found(request: Request) -> Response {
    let error = Error::NotFound(format!("there is nothing at {}", request.uri().path()));
    if request.uri().path().starts_with(api::PREFIX) {
        ApiError(error).into_response()
    } else {
        PageError(error).into_response()
    }
}
