//! "Your devices": the user's sessions from the store's per-user index, with revocation of one
//! or of all but this one.
//!
//! Logging out other devices is a sensitive change (ASVS 3.7.1): whoever holds this session (a
//! borrowed laptop, a stolen cookie) could otherwise lock the owner out of every other device.
//! So it needs the password again, in the form or as `{"password": "..."}` in the API call,
//! throttled like logins. Logging out this very device needs none: that is just logging out.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Redirect;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cloakroom::{Clock as _, Session, SessionHash, SystemClock};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::JsonBody;
use crate::auth::{self, USER_AGENT_KEY};
use crate::csrf::CsrfForm;
use crate::error::{ApiError, ApiResult, Error, PageResult};
use crate::state::{App, AppState};
use crate::throttle::ClientAddr;
use crate::users::User;
use crate::views;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/devices", get(devices_page))
        .route("/devices/{id}/revoke", post(revoke_form))
        .route("/devices/revoke-others", post(revoke_others_form))
        .route("/api/devices", get(api_devices))
        .route("/api/devices/{id}", delete(api_revoke))
        .route("/api/devices/revoke-others", post(api_revoke_others))
}

/// One session of the user.
#[derive(Serialize)]
struct Device {
    /// The session's hash (never its ticket): what revocation names.
    id: String,
    /// Unix milliseconds.
    created_at: i64,
    /// When the session last changed (`updated_at`), in Unix milliseconds.
    last_seen: i64,
    expires_at: i64,
    user_agent: Option<String>,
    /// The user agent in a few words: "Firefox on Windows".
    browser: String,
    /// This is the session making the request.
    current: bool,
}

impl Device {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "created_at": rfc3339(self.created_at),
            "last_seen": rfc3339(self.last_seen),
            "expires_at": rfc3339(self.expires_at),
            "user_agent": self.user_agent,
            "current": self.current,
        })
    }
}

fn rfc3339(millis: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(millis)
        .ok()
        .map(|t| t.to_string())
}

/// The user's live sessions, this one first, then the most recently seen.
async fn devices(app: &App, session: &Session, user: &User) -> Result<Vec<Device>, Error> {
    let current = session.hash();
    let now = SystemClock.now();
    let mut devices: Vec<Device> = app
        .store()?
        .list_user(&user.id.to_string(), now)
        .await?
        .into_iter()
        .map(|(hash, record)| {
            let user_agent = record
                .data
                .get(USER_AGENT_KEY)
                .and_then(Value::as_str)
                .map(str::to_owned);
            Device {
                id: hash.to_string(),
                created_at: record.created_at.as_unix_millis(),
                last_seen: record.updated_at.as_unix_millis(),
                expires_at: record.expires_at.as_unix_millis(),
                browser: describe_browser(user_agent.as_deref()),
                user_agent,
                current: Some(hash) == current,
            }
        })
        .collect();
    devices.sort_by_key(|d| (!d.current, -d.last_seen));
    Ok(devices)
}

/// "Chrome on Linux" from a user agent string; the string itself when it names nothing known.
fn describe_browser(user_agent: Option<&str>) -> String {
    let Some(agent) = user_agent.filter(|a| !a.trim().is_empty()) else {
        return "unknown browser".into();
    };
    // Order matters: Edge says Chrome and Safari too, Chrome says Safari.
    let browser = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .into_iter()
    .find(|(token, _)| agent.contains(token))
    .map(|(_, name)| name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(token, _)| agent.contains(token))
    .map(|(_, name)| name);
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_owned(),
        _ => agent.to_owned(),
    }
}

/// What the revoking forms and API calls send.
#[derive(Deserialize)]
struct Confirmation {
    password: Option<String>,
}

const PASSWORD_NEEDED: &str = "logging out other devices needs your password: type it to confirm (the API takes \
     {\"password\": \"...\"})";
const PASSWORD_WRONG: &str =
    "that is not your password; nothing was logged out, please type your current password";

/// Checks that the user knows their password, charging the login throttle like a login does.
async fn confirm_password(
    app: &App,
    user: &User,
    password: Option<&str>,
    client: Option<IpAddr>,
) -> Result<(), Error> {
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or(Error::Forbidden(PASSWORD_NEEDED))?;
    app.login_throttle.attempt(&user.email, client)?;
    match app.users.authenticate(&user.email, password).await? {
        Some(confirmed) if confirmed.id == user.id => Ok(()),
        _ => Err(Error::Forbidden(PASSWORD_WRONG)),
    }
}

/// A wrong or missing password on an HTML form: back to the list, saying why.
fn refused(session: &Session, error: Error) -> PageResult<Redirect> {
    match error {
        Error::Forbidden(message) => {
            session.flash("error", capitalized(message))?;
            Ok(Redirect::to("/devices"))
        }
        other => Err(other.into()),
    }
}

fn capitalized(message: &str) -> String {
    let mut chars = message.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

enum Revoked {
    OtherDevice,
    ThisDevice,
}

/// Ends one of the user's sessions. Only the user's own: any other id is "not found", whether
/// it exists or not. Revoking this very session is logging out; any other needs the password.
async fn revoke(
    app: &App,
    session: &Session,
    user: &User,
    id: &str,
    (password, client): (Option<&str>, Option<IpAddr>),
) -> Result<Revoked, Error> {
    let not_found = || Error::NotFound("you have no device with this id".into());
    let hash: SessionHash = id.parse().map_err(|_| not_found())?;
    let owned = app
        .store()?
        .list_user(&user.id.to_string(), SystemClock.now())
        .await?
        .iter()
        .any(|(h, _)| *h == hash);
    if !owned {
        return Err(not_found());
    }
    if session.hash() == Some(hash) {
        auth::log_out(session)?;
        return Ok(Revoked::ThisDevice);
    }
    confirm_password(app, user, password, client).await?;
    app.store()?.delete(&hash).await?;
    Ok(Revoked::OtherDevice)
}

/// Ends every session of the user but this one, once the password is confirmed; returns how
/// many.
async fn revoke_others(
    app: &App,
    session: &Session,
    user: &User,
    (password, client): (Option<&str>, Option<IpAddr>),
) -> Result<u64, Error> {
    confirm_password(app, user, password, client).await?;
    let current = session.hash();
    Ok(app
        .store()?
        .revoke_user(&user.id.to_string(), current.as_ref())
        .await?)
}

async fn devices_page(State(app): State<AppState>, session: Session, uri: Uri) -> PageResult {
    let user = auth::require_user(&app, &session, Some(&uri))?;
    let ctx = match devices(&app, &session, &user).await {
        Ok(devices) => {
            let others = devices.iter().filter(|d| !d.current).count();
            context! { devices, others }
        }
        // Sealed-cookie sessions live only in browsers: there is nothing to list.
        Err(error) if error.is_unsupported() => context! { unsupported => error.public_message() },
        Err(error) => return Err(error.into()),
    };
    Ok(views::page(&app, &session, "devices.html", ctx)?)
}

async fn revoke_form(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    ClientAddr(client): ClientAddr,
    CsrfForm(form): CsrfForm<Confirmation>,
) -> PageResult<Redirect> {
    let user = auth::require_user(&app, &session, None)?;
    let confirmation = (form.password.as_deref(), client);
    match revoke(&app, &session, &user, &id, confirmation).await {
        Err(error) => refused(&session, error),
        Ok(Revoked::OtherDevice) => {
            session.flash("success", "That device has been logged out.")?;
            Ok(Redirect::to("/devices"))
        }
        Ok(Revoked::ThisDevice) => Ok(Redirect::to("/")),
    }
}

async fn revoke_others_form(
    State(app): State<AppState>,
    session: Session,
    ClientAddr(client): ClientAddr,
    CsrfForm(form): CsrfForm<Confirmation>,
) -> PageResult<Redirect> {
    let user = auth::require_user(&app, &session, None)?;
    let n = match revoke_others(&app, &session, &user, (form.password.as_deref(), client)).await {
        Ok(n) => n,
        Err(error) => return refused(&session, error),
    };
    let plural = if n == 1 { "" } else { "s" };
    session.flash("success", format!("Logged out {n} other device{plural}."))?;
    Ok(Redirect::to("/devices"))
}

async fn api_devices(State(app): State<AppState>, session: Session) -> ApiResult<Json<Value>> {
    let user = auth::require_api_user(&app, &session)?;
    let devices = devices(&app, &session, &user).await?;
    let list: Vec<Value> = devices.iter().map(Device::to_json).collect();
    Ok(Json(json!({ "devices": list })))
}

async fn api_revoke(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    ClientAddr(client): ClientAddr,
    body: Result<JsonBody<Confirmation>, ApiError>,
) -> ApiResult<Json<Value>> {
    let user = auth::require_api_user(&app, &session)?;
    let password = sent_password(&body);
    let current = matches!(
        revoke(&app, &session, &user, &id, (password, client)).await?,
        Revoked::ThisDevice
    );
    Ok(Json(
        json!({ "message": "Device logged out", "current": current }),
    ))
}

async fn api_revoke_others(
    State(app): State<AppState>,
    session: Session,
    ClientAddr(client): ClientAddr,
    body: Result<JsonBody<Confirmation>, ApiError>,
) -> ApiResult<Json<Value>> {
    let user = auth::require_api_user(&app, &session)?;
    let password = sent_password(&body);
    let revoked = revoke_others(&app, &session, &user, (password, client)).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

/// The password of an API call. No body, or one that is not `{"password": "..."}`, is a
/// missing password (and answered as such), since revoking this device needs no body at all.
fn sent_password(body: &Result<JsonBody<Confirmation>, ApiError>) -> Option<&str> {
    body.as_ref()
        .ok()
        .and_then(|JsonBody(c)| c.password.as_deref())
}

#[cfg(test)]
mod tests {
    use super::describe_browser;

    #[test]
    fn user_agents_in_a_few_words() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 HeadlessChrome/156.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            ("curl/8.5.0", "curl"),
            ("Laptop Firefox", "Laptop Firefox"),
        ];
        for (agent, expected) in cases {
            assert_eq!(describe_browser(Some(agent)), expected);
        }
        assert_eq!(describe_browser(None), "unknown browser");
        assert_eq!(describe_browser(Some(" ")), "unknown browser");
    }
}
