//! Login, logout and the dashboard behind them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::Session;
use minijinja::context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::JsonBody;
use crate::auth;
use crate::csrf::{self, CsrfForm, NoFields};
use crate::error::{ApiResult, Error, PageError, PageResult};
use crate::routes::{self, cart, preferences};
use crate::state::AppState;
use crate::throttle::ClientAddr;
use crate::views;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/dashboard", get(dashboard))
        .route("/api/login", post(api_login))
        .route("/api/logout", post(api_logout))
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    /// The "remember me" checkbox: present when ticked.
    remember: Option<String>,
}

async fn login_form(State(app): State<AppState>, session: Session) -> PageResult {
    if app.current_user(&session).is_some() {
        return Ok(Redirect::to(auth::DEFAULT_LANDING).into_response());
    }
    let ctx = context! { csrf_token => csrf::token(&session)?, email => "" };
    Ok(views::page(&app, &session, "login.html", ctx)?)
}

async fn login(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ClientAddr(client): ClientAddr,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> PageResult {
    app.login_throttle.attempt(&form.email, client)?;
    let Some(user) = app.users.authenticate(&form.email, &form.password).await? else {
        let ctx = context! {
            csrf_token => csrf::token(&session)?,
            email => form.email,
            error => Error::InvalidCredentials.to_string(),
        };
        let mut page = views::page(&app, &session, "login.html", ctx)?;
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(page);
    };
    // Read before logging in: the login starts the session over.
    let landing = auth::landing_page(&session);
    auth::log_in(
        &session,
        &user,
        &headers,
        form.remember.is_some(),
        &routes::KEPT_AT_LOGIN,
    )?;
    session.flash("success", format!("Welcome back, {}!", user.name))?;
    Ok(Redirect::to(&landing).into_response())
}

/// Logs out. A session that is already logged out (expired, or revoked from another device while
/// this page was open) has nothing to protect, so its stale form is not refused.
async fn logout(session: Session, form: Result<CsrfForm<NoFields>, PageError>) -> PageResult {
    if session.user().is_some() {
        form?;
        auth::log_out(&session)?;
    }
    Ok(Redirect::to("/").into_response())
}

/// The first protected page: who you are and what your session holds.
async fn dashboard(State(app): State<AppState>, session: Session, uri: Uri) -> PageResult {
    let user = auth::require_user(&app, &session, Some(&uri))?;
    let mut held: Map<String, Value> = session.to_map();
    // The token is no secret from its owner, but it is noise here.
    held.remove(csrf::FIELD);
    let ctx = context! {
        profile => user,
        session_json => serde_json::to_string_pretty(&held).unwrap_or_default(),
        cart => cart::lines(&cart::load(&session)),
        prefs => preferences::load(&session),
        session_created => session.created_at().map(|t| t.as_unix_millis()),
        session_expires => session.expires_at().map(|t| t.as_unix_millis()),
    };
    Ok(views::page(&app, &session, "dashboard.html", ctx)?)
}

#[derive(Deserialize)]
struct ApiLogin {
    email: String,
    password: String,
    #[serde(default)]
    remember: bool,
}

/// 200 `{"message", "user"}`, or 401 `{"error"}`.
async fn api_login(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<ApiLogin>,
) -> ApiResult<Json<Value>> {
    app.login_throttle.attempt(&body.email, client)?;
    let user = app
        .users
        .authenticate(&body.email, &body.password)
        .await?
        .ok_or(Error::InvalidCredentials)?;
    auth::log_in(
        &session,
        &user,
        &headers,
        body.remember,
        &routes::KEPT_AT_LOGIN,
    )?;
    session.flash("success", format!("Welcome back, {}!", user.name))?;
    Ok(Json(json!({ "message": "Login successful", "user": user })))
}

async fn api_logout(session: Session) -> ApiResult<Json<Value>> {
    auth::log_out(&session)?;
    Ok(Json(json!({ "message": "Logged out" })))
}
