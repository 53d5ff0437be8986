//! Logging in and out, and guarding pages that need a user: the classic login/logout and
//! "protected pages" examples.

use axum::http::{HeaderMap, Uri, header::USER_AGENT};
use cloakroom::Session;

use crate::csrf;
use crate::error::Error;
use crate::state::App;
use crate::users::User;

/// Where to go after logging in, set when a protected page sent the visitor to the login page.
pub const REDIRECT_KEY: &str = "redirect_after_login";
/// The browser that logged in, shown on the devices page.
pub const USER_AGENT_KEY: &str = "user_agent";
/// Where login sends you when no protected page asked for it.
pub const DEFAULT_LANDING: &str = "/dashboard";

const MAX_USER_AGENT_CHARS: usize = 256;
/// The longest page address kept to come back to after login. The session has a size limit
/// (64 KiB by default): a crafted link to a protected page with a huge query would otherwise
/// fill it, and every later write, logging in included, would fail with 413.
pub const MAX_REDIRECT_CHARS: usize = 512;

/// Binds the session to `user`, the way a login must:
///
/// - a new ticket and the user binding ([`Session::log_in`]): a ticket planted before login is
///   worthless after it, and a session another user left in this browser starts over empty;
/// - a new CSRF token, so forms shown before login stop working;
/// - the browser's name, for the devices page.
///
/// An anonymous visitor's session keeps only the keys in `keep` (what they chose before
/// logging in); nothing else survives a login (a form half-filled by someone else at this
/// computer, a previous user's data).
pub fn log_in(
    session: &Session,
    user: &User,
    headers: &HeaderMap,
    remember: bool,
    keep: &[&str],
) -> Result<(), Error> {
    session.log_in(user.id.to_string(), keep);
    session.set_persistent(remember);
    let agent: String = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown browser")
        .chars()
        .take(MAX_USER_AGENT_CHARS)
        .collect();
    session.insert(USER_AGENT_KEY, agent)?;
    csrf::renew(session)?;
    Ok(())
}

/// Ends the session (record deleted, cookie removed), then says so on a fresh anonymous one.
pub fn log_out(session: &Session) -> Result<(), Error> {
    let was_logged_in = session.user().is_some();
    session.destroy();
    if was_logged_in {
        session.flash("info", "You have been logged out.")?;
    }
    Ok(())
}

/// Where to go after a successful login: the protected page that sent the visitor here, or the
/// dashboard. Only local paths are followed, never another site.
pub fn landing_page(session: &Session) -> String {
    session
        .pop::<String>(REDIRECT_KEY)
        .ok()
        .flatten()
        .filter(|path| is_local_path(path))
        .unwrap_or_else(|| DEFAULT_LANDING.to_owned())
}

/// `/cart?x=1` yes; `//evil.example`, `/\evil.example`, `https://…` no.
fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(char::is_control)
}

/// The logged-in user for a page; otherwise sends the visitor to log in, remembering `page`
/// (a page shown with GET; `None` for form actions) to come back to after login, the
/// `redirect_after_login` of many Python apps.
pub fn require_user(app: &App, session: &Session, page: Option<&Uri>) -> Result<User, Error> {
    if let Some(user) = app.current_user(session) {
        return Ok(user);
    }
    if let Some(target) = page.and_then(redirect_target) {
        // Coming back to the page is a convenience: failing to remember it must not turn the
        // login redirect into an error page.
        if let Err(error) = session.insert(REDIRECT_KEY, target) {
            tracing::warn!(%error, "cannot remember the page to return to after login");
        }
    }
    // Shown once however often the visitor is sent here: the library keeps one copy of a
    // message that is already waiting. A full session must not block the way to the login
    // page either.
    if let Err(error) = session.flash("info", "Please log in first.") {
        tracing::warn!(%error, "cannot flash the login reminder");
    }
    Err(Error::LoginRequired)
}

/// What to remember of `uri` to come back to: the whole address if it is short enough, else
/// its path alone (a cut query could mean something else), else nothing.
fn redirect_target(uri: &Uri) -> Option<&str> {
    let full = uri.path_and_query().map_or("/", |p| p.as_str());
    [full, uri.path()]
        .into_iter()
        .find(|target| target.len() <= MAX_REDIRECT_CHARS)
}

/// The logged-in user for an API call; 401 otherwise.
pub fn require_api_user(app: &App, session: &Session) -> Result<User, Error> {
    app.current_user(session).ok_or(Error::LoginRequired)
}

/// The logged-in administrator; 403 for other users, the login page for visitors.
pub fn require_admin(app: &App, session: &Session, uri: &Uri) -> Result<User, Error> {
    let user = require_user(app, session, Some(uri))?;
    if !user.is_admin {
        return Err(Error::Forbidden(
            "this page is for administrators only; you are logged in as a regular user",
        ));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_addresses_are_remembered_by_their_path_or_not_at_all() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let short = uri("/devices?tab=2");
        assert_eq!(redirect_target(&short), Some("/devices?tab=2"));
        let long_query = uri(&format!("/dashboard?q={}", "x".repeat(MAX_REDIRECT_CHARS)));
        assert_eq!(redirect_target(&long_query), Some("/dashboard"));
        let long_path = uri(&format!("/{}", "x".repeat(MAX_REDIRECT_CHARS)));
        assert_eq!(redirect_target(&long_path), None);
    }

    #[test]
    fn only_local_paths_are_followed() {
        for ok in ["/", "/cart", "/devices?x=1#top"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "dashboard",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/\r\nSet-Cookie: x",
        ] {
            assert!(!is_local_path(bad), "{bad:?}");
        }
    }
}
