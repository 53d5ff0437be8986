//! HTML: the templates (compiled into the binary), the layout's shared data, and error pages.

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use cloakroom::Session;
use minijinja::{Environment, Value, context};

use crate::catalogue;
use crate::error::Error;
use crate::routes::{cart, preferences};
use crate::state::App;

/// Every template, by name. `layout.html` is the frame the others extend.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("login.html", include_str!("../templates/login.html")),
    (
        "dashboard.html",
        include_str!("../templates/dashboard.html"),
    ),
    ("admin.html", include_str!("../templates/admin.html")),
    ("cart.html", include_str!("../templates/cart.html")),
    ("register.html", include_str!("../templates/register.html")),
    (
        "preferences.html",
        include_str!("../templates/preferences.html"),
    ),
    ("devices.html", include_str!("../templates/devices.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// The stylesheet, served at `/static/style.css`.
pub const STYLESHEET: &str = include_str!("../static/style.css");

static ENVIRONMENT: LazyLock<Result<Environment<'static>, minijinja::Error>> =
    LazyLock::new(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        env.add_filter("price", catalogue::format_price);
        env.add_filter("datetime", format_datetime);
        env.add_filter("ago", format_ago);
        Ok(env)
    });

/// Fails when a template does not parse: called at start-up, so a broken template stops the
/// app instead of failing requests.
pub fn check() -> Result<(), Error> {
    environment().map(|_| ())
}

fn environment() -> Result<&'static Environment<'static>, Error> {
    ENVIRONMENT
        .as_ref()
        .map_err(|e| Error::Internal(format!("templates: {e:#}")))
}

fn render_template(name: &str, ctx: Value) -> Result<String, Error> {
    environment()?
        .get_template(name)
        .and_then(|template| template.render(ctx))
        .map_err(|e| Error::Internal(format!("template {name}: {e:#}")))
}

/// Renders a page inside the layout, which shows who is logged in, the flash messages (consumed
/// here, so each is shown exactly once), the cart count and the theme.
///
/// `ctx` holds the page's own values; it may also set `csrf_token` for its forms (the layout
/// sets it for logged-in visitors, whose navigation has a logout form).
pub fn page(app: &App, session: &Session, template: &str, ctx: Value) -> Result<Response, Error> {
    let user = app.current_user(session);
    let csrf_token = match &user {
        Some(_) => Some(crate::csrf::token(session)?),
        None => None,
    };
    let prefs = preferences::load(session);
    let base = context! {
        user,
        csrf_token,
        flashes => session.take_flashes(),
        cart_count => cart::load(session).len(),
        theme => prefs.theme,
        language => prefs.language,
        store => app.store_name(),
    };
    let html = render_template(template, context! { ..ctx, ..base })?;
    Ok(Html(html).into_response())
}

/// A page for an error: status, what happened, a way back.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let ctx = context! {
        status => status.as_u16(),
        reason => status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match render_template("error.html", ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "the error page does not render");
            (
                status,
                [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                message.to_owned(),
            )
                .into_response()
        }
    }
}

/// Unix milliseconds as `2026-11-01 14:03 UTC`.
fn format_datetime(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Unix milliseconds as `just now`, `5 minutes ago`, `in 2 hours`.
fn format_ago(millis: i64) -> String {
    let now = jiff::Timestamp::now().as_millisecond();
    let seconds = (now - millis) / 1000;
    let (amount, future) = (seconds.unsigned_abs(), seconds < 0);
    let (n, unit) = match amount {
        0..=59 => return "just now".into(),
        60..=3_599 => (amount / 60, "minute"),
        3_600..=86_399 => (amount / 3_600, "hour"),
        _ => (amount / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if future {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        check().unwrap();
    }

    #[test]
    fn times_read_well() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00 UTC");
        let now = jiff::Timestamp::now().as_millisecond();
        assert_eq!(format_ago(now), "just now");
        assert_eq!(format_ago(now - 61_000), "1 minute ago");
        assert_eq!(format_ago(now - 3 * 3_600_000), "3 hours ago");
        assert_eq!(format_ago(now + 2 * 86_400_000 + 5_000), "in 2 days");
    }
}
