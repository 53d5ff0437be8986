//! The admin page: live session counts from the store. 403 for users who are not admins.

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::get;
use cloakroom::{Clock as _, Session, SystemClock};
use minijinja::context;
use serde::Serialize;

use crate::auth;
use crate::error::PageResult;
use crate::state::AppState;
use crate::views;

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin", get(admin))
}

#[derive(Serialize)]
struct UserRow {
    id: u64,
    name: String,
    email: String,
    is_admin: bool,
    sessions: usize,
}

async fn admin(State(app): State<AppState>, session: Session, uri: Uri) -> PageResult {
    auth::require_admin(&app, &session, &uri)?;
    let now = SystemClock.now();
    let stats = match app.store().map(|store| store.stats(now, 5)) {
        Ok(stats) => stats.await?,
        Err(error) => {
            if !error.is_unsupported() {
                return Err(error.into());
            }
            // Sealed-cookie sessions live only in browsers: there is nothing to count.
            let ctx = context! { unsupported => error.public_message(), users => app.users.all() };
            return Ok(views::page(&app, &session, "admin.html", ctx)?);
        }
    };
    let mut users = Vec::new();
    for user in app.users.all() {
        let sessions = app
            .store()?
            .list_user(&user.id.to_string(), now)
            .await?
            .len();
        users.push(UserRow {
            id: user.id,
            name: user.name,
            email: user.email,
            is_admin: user.is_admin,
            sessions,
        });
    }
    // The store contract has no count of sessions without a user, and only some stores list
    // their top users; what every store can do is count all live sessions and list one user's.
    // Users live in this process, so the difference counts sessions of users registered on
    // another instance (or before a restart) as anonymous too.
    let with_user: u64 = users.iter().map(|u| u.sessions as u64).sum();
    let anonymous = stats.live.saturating_sub(with_user);
    let top_users: Vec<(String, u64)> = stats
        .top_users
        .iter()
        .map(|(id, n)| {
            let who = id
                .parse()
                .ok()
                .and_then(|id| app.users.get(id))
                .map_or_else(|| format!("user {id}"), |u| u.email);
            (who, *n)
        })
        .collect();
    let ctx = context! {
        live => stats.live,
        anonymous,
        expired => stats.expired,
        oldest => stats.oldest.map(|t| t.as_unix_millis()),
        newest => stats.newest.map(|t| t.as_unix_millis()),
        data_bytes => stats.data_bytes,
        top_users,
        users,
    };
    Ok(views::page(&app, &session, "admin.html", ctx)?)
}
