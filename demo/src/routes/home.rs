//! The home page (who you are, flash messages, cart count, theme), the session check and the
//! flash messages as JSON.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cloakroom::{Flash, Session};
use minijinja::context;
use serde_json::{Value, json};

use crate::error::{ApiResult, PageResult};
use crate::routes::preferences;
use crate::state::AppState;
use crate::views;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/api/session", get(api_session))
        .route("/api/flashes", get(api_flashes))
}

/// Reads the session only: an anonymous visit stores nothing and sets no cookie.
async fn home(State(app): State<AppState>, session: Session) -> PageResult {
    let prefs = preferences::load(&session);
    let ctx = context! {
        greeting => prefs.language.greeting(),
        language_name => prefs.language.name(),
        notifications => prefs.notifications,
        session_created => session.created_at().map(|t| t.as_unix_millis()),
        session_expires => session.expires_at().map(|t| t.as_unix_millis()),
        persistent => session.is_persistent(),
    };
    Ok(views::page(&app, &session, "home.html", ctx)?)
}

/// `{"logged_in": bool, "user": {...} | null}`, like a Flask app's `check_session`.
async fn api_session(State(app): State<AppState>, session: Session) -> ApiResult<Json<Value>> {
    let user = app.current_user(&session);
    Ok(Json(json!({ "logged_in": user.is_some(), "user": user })))
}

/// The flash messages left by earlier requests; reading them consumes them.
async fn api_flashes(session: Session) -> Json<Vec<Flash>> {
    Json(session.take_flashes())
}
