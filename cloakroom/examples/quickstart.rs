//! A visit counter with login and logout, in one file.
//!
//! ```sh
//! cargo run --example quickstart    # then open http://127.0.0.1:3000
//! ```
//!
//! Set `CLOAKROOM_SECRET` (32+ bytes) to keep sessions across restarts.

use axum::response::{Html, Redirect};
use axum::routing::{get, post};
use axum::{Form, Router};
use cloakroom::{Key, MemoryStore, Session, SessionLayer};
use serde::Deserialize;

async fn home(session: Session) -> Result<Html<String>, cloakroom::Error> {
    let visits: u64 = session.get_or("visits", 0)? + 1;
    session.insert("visits", visits)?;
    let flashes: String = session
        .take_flashes()
        .into_iter()
        .map(|f| format!("<p class={}>{}</p>", f.category, escape(&f.message)))
        .collect();
    let who = match session.user() {
        Some(user) => format!(
            "Logged in as <b>{}</b>. <form method=post action=/logout><button>Log out</button></form>",
            escape(&user)
        ),
        None => "<form method=post action=/login><input name=user placeholder=name required> \
                 <button>Log in</button></form>"
            .to_owned(),
    };
    Ok(Html(format!(
        "<!doctype html><title>cloakroom quickstart</title>{flashes}\
         <p>You have visited this page {visits} times.</p>{who}"
    )))
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<Redirect, cloakroom::Error> {
    // A new ticket at login, so one planted before it is worthless afterwards; nothing another
    // user left in this browser's session carries over.
    session.log_in(form.user.trim(), &[]);
    session.flash("success", format!("Welcome, {}!", form.user.trim()))?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, cloakroom::Error> {
    session.destroy();
    session.flash("info", "You have been logged out.")?;
    Ok(Redirect::to("/"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cloakroom=debug".into()),
        )
        .init();
    let mut layer = SessionLayer::builder(MemoryStore::default());
    if let Ok(secret) = std::env::var("CLOAKROOM_SECRET") {
        layer = layer.key(Key::from_secret(secret.as_bytes())?);
    }
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .layer(layer.build()?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("cloakroom quickstart on http://127.0.0.1:3000 (sessions in memory)");
    axum::serve(listener, app).await?;
    Ok(())
}
