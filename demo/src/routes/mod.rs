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
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::{AppState, not_found};
use crate::views::STYLESHEET;

pub mod admin;
pub mod cart;
pub mod devices;
pub mod home;
pub mod login;
pub mod preferences;
pub mod register;

/// Every route.
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
