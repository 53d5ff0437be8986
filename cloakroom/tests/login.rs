//! What a session may carry across a request that fails, a login, and a visitor who keeps
//! reloading: the rules that stop a session from holding what it should not. Every case runs on
//! the memory store and on SQLite.

mod support;

use std::sync::Arc;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cloakroom::{Clock, DiscardChanges, Error, Key, Session, SessionLayer, Store, SystemClock};
use http::StatusCode;
use serde_json::{Value, json};
use support::{Client, request};
use tokio::sync::Barrier;

const MAX_BYTES: usize = 1024;

async fn put(session: Session, Path(key): Path<String>, Json(value): Json<Value>) -> Response {
    match session.insert(key, value) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn whoami(session: Session) -> Json<Value> {
    Json(json!({
        "user": session.user(),
        "data": session.to_map(),
        "flashes": session.take_flashes(),
    }))
}

async fn log_in(session: Session, Path(user): Path<String>) -> Result<StatusCode, Error> {
    session.log_in(user, &["cart"]);
    session.flash("success", "Welcome back!")?;
    Ok(StatusCode::OK)
}

/// A login that fails half-way: the ticket is rotated and the user bound, then a write fails.
async fn log_in_then_fail(session: Session, Path(user): Path<String>) -> Result<StatusCode, Error> {
    session.log_in(user, &[]);
    session.insert("profile", "x".repeat(MAX_BYTES))?;
    Ok(StatusCode::OK)
}

async fn refuse_marked(session: Session) -> Response {
    session.remove("cart");
    (StatusCode::PAYMENT_REQUIRED, DiscardChanges, "refused").into_response()
}

async fn refuse_unmarked(session: Session) -> StatusCode {
    session.insert("seen_refusal", true).unwrap();
    StatusCode::BAD_REQUEST
}

async fn flash(session: Session, Path(message): Path<String>) -> Result<StatusCode, Error> {
    session.flash("info", message)?;
    Ok(StatusCode::OK)
}

/// Every request holds here until all of them have loaded the session.
async fn racing_log_in(
    Extension(barrier): Extension<Arc<Barrier>>,
    session: Session,
    Path(user): Path<String>,
) -> StatusCode {
    barrier.wait().await;
    session.log_in(user, &[]);
    StatusCode::OK
}

fn app(store: Arc<dyn Store>, racers: usize) -> Router {
    let layer = SessionLayer::builder(store)
        .key(Key::from_secret(&[7; 32]).unwrap())
        .max_data_bytes(MAX_BYTES)
        .build()
        .unwrap();
    Router::new()
        .route("/put/{key}", post(put))
        .route("/whoami", get(whoami))
        .route("/login/{user}", post(log_in))
        .route("/login-then-fail/{user}", post(log_in_then_fail))
        .route("/refuse-marked", post(refuse_marked))
        .route("/refuse-unmarked", post(refuse_unmarked))
        .route("/flash/{message}", post(flash))
        .route("/racing-login/{user}", post(racing_log_in))
        .layer(Extension(Arc::new(Barrier::new(racers))))
        .layer(layer)
}

async fn stores() -> Vec<Arc<dyn Store>> {
    let mut stores = Vec::new();
    for url in ["memory://", "sqlite::memory:"] {
        stores.push(cloakroom::stores::connect(url).await.unwrap());
    }
    stores
}

/// The user's only stored session, as the store holds it.
async fn stored_for(store: &dyn Store, user: &str) -> Vec<Value> {
    store
        .list_user(user, SystemClock.now())
        .await
        .unwrap()
        .into_iter()
        .map(|(_, record)| Value::Object(record.data))
        .collect()
}

#[tokio::test]
async fn logging_in_over_another_users_session_leaves_nothing_of_theirs() {
    for store in stores().await {
        let mut browser = Client::new(app(Arc::clone(&store), 1));
        // Alice fills a cart and a form, and walks away without logging out.
        browser.post("/login/alice", "").await;
        browser.post("/put/cart", "[1, 2]").await;
        browser.post("/put/address", r#""1 Rabbit Hole""#).await;
        let alices_ticket = browser.cookie.clone().unwrap();

        let reply = browser.post("/login/bob", "").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_ne!(
            browser.cookie.as_ref(),
            Some(&alices_ticket),
            "{}",
            store.name()
        );
        let seen = browser.get("/whoami").await.json();
        assert_eq!(seen["user"], "bob");
        assert_eq!(
            seen["data"],
            json!({}),
            "{}: Bob sees Alice's data",
            store.name()
        );
        assert_eq!(
            seen["flashes"],
            json!([{"category": "success", "message": "Welcome back!"}])
        );
        // Alice's session is gone from the store with its data, and her ticket is dead.
        assert_eq!(stored_for(&*store, "alice").await, Vec::<Value>::new());
        let replay = request(&browser.app, "GET", "/whoami", Some(&alices_ticket), "").await;
        assert_eq!(replay.json()["user"], Value::Null);
    }
}

#[tokio::test]
async fn an_anonymous_cart_survives_the_login_and_nothing_else_does() {
    for store in stores().await {
        let mut browser = Client::new(app(Arc::clone(&store), 1));
        browser.post("/put/cart", "[3]").await;
        browser.post("/put/planted", r#""by someone else""#).await;
        browser.post("/login/carol", "").await;
        let seen = browser.get("/whoami").await.json();
        assert_eq!(seen["user"], "carol");
        assert_eq!(seen["data"], json!({"cart": [3]}), "{}", store.name());
        let stored = stored_for(&*store, "carol").await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].get("planted"), None, "{}", store.name());
    }
}

#[tokio::test]
async fn a_login_that_fails_half_way_saves_nothing() {
    for store in stores().await {
        let mut browser = Client::new(app(Arc::clone(&store), 1));
        browser.post("/put/cart", "[1]").await;
        let before = browser.cookie.clone().unwrap();

        let reply = browser.post("/login-then-fail/dave", "").await;
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            store.name()
        );
        assert_eq!(
            reply.set_cookie(),
            None,
            "{}: a rotated ticket leaked",
            store.name()
        );
        // The visitor is exactly as before: same ticket, not logged in, cart intact.
        assert_eq!(browser.cookie.as_ref(), Some(&before));
        let seen = browser.get("/whoami").await.json();
        assert_eq!(seen["user"], Value::Null, "{}", store.name());
        assert_eq!(seen["data"], json!({"cart": [1]}));
        assert_eq!(stored_for(&*store, "dave").await, Vec::<Value>::new());
    }
}

#[tokio::test]
async fn a_response_marked_discard_saves_nothing_and_an_unmarked_4xx_saves() {
    for store in stores().await {
        let mut browser = Client::new(app(Arc::clone(&store), 1));
        browser.post("/login/erin", "").await;
        browser.post("/put/cart", "[9]").await;

        let reply = browser.post("/refuse-marked", "").await;
        assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(reply.set_cookie(), None);
        assert_eq!(
            stored_for(&*store, "erin").await[0]["cart"],
            json!([9]),
            "{}",
            store.name()
        );

        let reply = browser.post("/refuse-unmarked", "").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            stored_for(&*store, "erin").await[0]["seen_refusal"],
            json!(true)
        );
    }
}

#[tokio::test]
async fn repeated_flashes_cannot_grow_a_session_past_its_limit() {
    for store in stores().await {
        let mut browser = Client::new(app(Arc::clone(&store), 1));
        browser.post("/login/frank", "").await;
        browser.get("/whoami").await; // shows and consumes the welcome
        // The same message on every reload is kept once.
        for _ in 0..20 {
            assert_eq!(
                browser.post("/flash/please-log-in", "").await.status,
                StatusCode::OK
            );
        }
        let stored = stored_for(&*store, "frank").await;
        assert_eq!(
            stored[0]["__flash"].as_array().unwrap().len(),
            1,
            "{}",
            store.name()
        );
        // Distinct messages pile up to the limit, then are refused like data, with nothing saved.
        let mut refused = None;
        for n in 0..200 {
            let reply = browser.post(&format!("/flash/message-{n}"), "").await;
            if reply.status != StatusCode::OK {
                refused = Some(reply);
                break;
            }
        }
        let refused = refused.expect("flashes never hit the size limit");
        assert_eq!(
            refused.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            store.name()
        );
        let stored = serde_json::to_string(&stored_for(&*store, "frank").await[0]).unwrap();
        assert!(
            stored.len() <= MAX_BYTES,
            "{}: {} bytes stored",
            store.name(),
            stored.len()
        );
    }
}

#[tokio::test]
async fn a_double_submitted_login_keeps_the_winners_ticket() {
    const RACERS: usize = 8;
    for store in stores().await {
        let app = app(Arc::clone(&store), RACERS);
        let mut browser = Client::new(app.clone());
        browser.post("/put/cart", "[1]").await;
        let before = browser.cookie.clone().unwrap();

        // All eight load the session before any of them saves (the barrier), then all rotate.
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                let app = app.clone();
                let before = before.clone();
                tokio::spawn(async move {
                    request(&app, "POST", "/racing-login/gina", Some(&before), "").await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for racer in racers {
            replies.push(racer.await.unwrap());
        }
        assert!(replies.iter().all(|r| r.status == StatusCode::OK));
        assert!(
            replies.iter().all(|r| !r.is_removal()),
            "{}: a losing login removed the cookie",
            store.name()
        );
        let winners: Vec<&str> = replies.iter().filter_map(|r| r.cookie_pair()).collect();
        assert_eq!(winners.len(), 1, "{}: {winners:?}", store.name());
        // The winner's ticket is the one logged in; the pre-login ticket is dead.
        let seen = request(&app, "GET", "/whoami", Some(winners[0]), "")
            .await
            .json();
        assert_eq!(seen["user"], "gina");
        let old = request(&app, "GET", "/whoami", Some(&before), "")
            .await
            .json();
        assert_eq!(old["user"], Value::Null);
        assert_eq!(stored_for(&*store, "gina").await.len(), 1);
    }
}
