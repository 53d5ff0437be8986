//! A multi-step registration: each step is kept in the session until the last one
//! creates the account and logs the new user in.
//!
//! The password is asked for only on the last step and never stored in the session.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::Session;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::JsonBody;
use crate::csrf::{self, CsrfForm};
use crate::error::{ApiResult, Error, PageResult};
use crate::state::{App, AppState};
use crate::users::{NewUser, User};
use crate::views;
use crate::{auth, routes};

/// The session keys the steps are kept under.
pub const STEP1_KEY: &str = "registration_step1";
pub const STEP2_KEY: &str = "registration_step2";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/register",
            get(|| async { Redirect::to("/register/step1") }),
        )
        .route("/register/step1", get(step1_form).post(step1_submit))
        .route("/register/step2", get(step2_form).post(step2_submit))
        .route(
            "/register/complete",
            get(complete_form).post(complete_submit),
        )
        .route("/api/register/step1", post(api_step1))
        .route("/api/register/step2", post(api_step2))
        .route("/api/register/complete", post(api_complete))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Step1 {
    name: String,
    email: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Step2 {
    phone: String,
    address: String,
}

#[derive(Deserialize)]
struct Password {
    password: String,
}

impl Step1 {
    fn validated(self, app: &App) -> Result<Self, Error> {
        let name = text_field("name", &self.name, 100)?;
        let email = self.email.trim().to_owned();
        if !looks_like_email(&email) {
            return Err(Error::BadRequest(format!(
                "{email:?} is not an e-mail address"
            )));
        }
        if app.users.email_taken(&email) {
            return Err(Error::Conflict(format!(
                "an account with the e-mail {email} already exists; log in instead"
            )));
        }
        Ok(Self { name, email })
    }
}

impl Step2 {
    fn validated(self) -> Result<Self, Error> {
        let phone = text_field("phone", &self.phone, 30)?;
        let phone_chars = |c: char| c.is_ascii_digit() || " +-().".contains(c);
        if !phone.chars().all(phone_chars) || phone.chars().filter(char::is_ascii_digit).count() < 3
        {
            return Err(Error::BadRequest(format!(
                "{phone:?} is not a phone number: use digits, spaces and + - ( )"
            )));
        }
        let address = text_field("address", &self.address, 300)?;
        Ok(Self { phone, address })
    }
}

/// Trimmed, not empty, at most `max` characters, no control characters.
fn text_field(field: &str, value: &str, max: usize) -> Result<String, Error> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::BadRequest(format!("the {field} is missing")));
    }
    if value.chars().count() > max {
        return Err(Error::BadRequest(format!(
            "the {field} is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "the {field} contains control characters"
        )));
    }
    Ok(value.to_owned())
}

fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn step1(session: &Session) -> Option<Step1> {
    session.get(STEP1_KEY).ok().flatten()
}

fn step2(session: &Session) -> Option<Step2> {
    session.get(STEP2_KEY).ok().flatten()
}

/// Creates the account from the saved steps, clears them, and logs the new user in.
async fn complete(
    app: &App,
    session: &Session,
    headers: &HeaderMap,
    password: &str,
) -> Result<User, Error> {
    let (Some(one), Some(two)) = (step1(session), step2(session)) else {
        return Err(Error::BadRequest(
            "registration steps 1 and 2 must be completed first".into(),
        ));
    };
    let new = NewUser {
        name: one.name,
        email: one.email,
        phone: Some(two.phone),
        address: Some(two.address),
    };
    let user = app.users.register(new, password).await?;
    session.remove(STEP1_KEY);
    session.remove(STEP2_KEY);
    auth::log_in(session, &user, headers, false, &routes::KEPT_AT_LOGIN)?;
    session.flash(
        "success",
        format!("Welcome, {}! Your account is ready.", user.name),
    )?;
    Ok(user)
}

// ---- pages ----

/// The registration page at `step` (1, 2 or 3), with the values to show and an error, if any
/// (whose status the page then gets).
fn step_page(
    app: &App,
    session: &Session,
    step: u8,
    values: Value,
    error: Option<Error>,
) -> PageResult {
    let status = error.as_ref().map_or(StatusCode::OK, Error::status);
    let ctx = context! {
        csrf_token => csrf::token(session)?,
        step,
        values,
        step1 => step1(session),
        step2 => step2(session),
        error => error.map(|e| e.public_message()),
    };
    let mut page = views::page(app, session, "register.html", ctx)?;
    *page.status_mut() = status;
    Ok(page)
}

/// Validation errors are shown on the form; anything else is an error page.
fn form_error(error: Error) -> Result<Error, Error> {
    match error {
        Error::BadRequest(_) | Error::Conflict(_) => Ok(error),
        other => Err(other),
    }
}

fn back_to(step: &str, session: &Session) -> PageResult {
    session.flash("info", "Please fill in this step first.")?;
    Ok(Redirect::to(step).into_response())
}

async fn step1_form(State(app): State<AppState>, session: Session) -> PageResult {
    let values = Value::from_serialize(step1(&session).unwrap_or_default());
    step_page(&app, &session, 1, values, None)
}

async fn step1_submit(
    State(app): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<Step1>,
) -> PageResult {
    match form.clone().validated(&app) {
        Ok(step) => {
            session.insert(STEP1_KEY, step)?;
            Ok(Redirect::to("/register/step2").into_response())
        }
        Err(error) => {
            let error = form_error(error)?;
            step_page(&app, &session, 1, Value::from_serialize(form), Some(error))
        }
    }
}

async fn step2_form(State(app): State<AppState>, session: Session) -> PageResult {
    if step1(&session).is_none() {
        return back_to("/register/step1", &session);
    }
    let values = Value::from_serialize(step2(&session).unwrap_or_default());
    step_page(&app, &session, 2, values, None)
}

async fn step2_submit(
    State(app): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<Step2>,
) -> PageResult {
    if step1(&session).is_none() {
        return back_to("/register/step1", &session);
    }
    match form.clone().validated() {
        Ok(step) => {
            session.insert(STEP2_KEY, step)?;
            Ok(Redirect::to("/register/complete").into_response())
        }
        Err(error) => {
            let error = form_error(error)?;
            step_page(&app, &session, 2, Value::from_serialize(form), Some(error))
        }
    }
}

async fn complete_form(State(app): State<AppState>, session: Session) -> PageResult {
    match (step1(&session), step2(&session)) {
        (None, _) => back_to("/register/step1", &session),
        (_, None) => back_to("/register/step2", &session),
        _ => step_page(&app, &session, 3, Value::UNDEFINED, None),
    }
}

async fn complete_submit(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<Password>,
) -> PageResult {
    if step1(&session).is_none() || step2(&session).is_none() {
        return back_to("/register/step1", &session);
    }
    match complete(&app, &session, &headers, &form.password).await {
        Ok(_) => Ok(Redirect::to(auth::DEFAULT_LANDING).into_response()),
        Err(error) => {
            let error = form_error(error)?;
            step_page(&app, &session, 3, Value::UNDEFINED, Some(error))
        }
    }
}

// ---- API ----

async fn api_step1(
    State(app): State<AppState>,
    session: Session,
    JsonBody(body): JsonBody<Step1>,
) -> ApiResult<Json<serde_json::Value>> {
    session.insert(STEP1_KEY, body.validated(&app)?)?;
    Ok(Json(json!({ "message": "Step 1 saved" })))
}

async fn api_step2(
    session: Session,
    JsonBody(body): JsonBody<Step2>,
) -> ApiResult<Json<serde_json::Value>> {
    if step1(&session).is_none() {
        return Err(Error::BadRequest("complete step 1 first".into()).into());
    }
    session.insert(STEP2_KEY, body.validated()?)?;
    Ok(Json(json!({ "message": "Step 2 saved" })))
}

/// 201 `{"id", "user"}`, and the session is logged in as the new user.
async fn api_complete(
    State(app): State<AppState>,
    session: Session,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Password>,
) -> ApiResult {
    let user = complete(&app, &session, &headers, &body.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": user.id, "user": user })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_fields_are_checked() {
        for ok in ["carol@example.com", "a.b+c@mail.example.org"] {
            assert!(looks_like_email(ok), "{ok}");
        }
        for bad in [
            "",
            "carol",
            "@example.com",
            "carol@example",
            "carol@.com",
            "c a@x.io",
        ] {
            assert!(!looks_like_email(bad), "{bad}");
        }
        assert_eq!(text_field("name", "  Carol ", 10).unwrap(), "Carol");
        assert!(text_field("name", "   ", 10).is_err());
        assert!(text_field("name", "x".repeat(11).as_str(), 10).is_err());
        assert!(text_field("name", "a\u{0}b", 10).is_err());
        let step2 = |phone: &str| Step2 {
            phone: phone.into(),
            address: "1 Main St".into(),
        };
        assert!(step2("+82 (10) 1234-5678").validated().is_ok());
        assert!(step2("call me").validated().is_err());
        assert!(step2("12").validated().is_err());
    }
}
