//! Sealed-cookie sessions: the conformance cases that need no server state, and the flows and
//! attacks specific to keeping the whole session in the cookie.
#![cfg(feature = "cookie")]

mod conformance;
mod support;

use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom::{
    Clock, CookieStore, Error, Key, KeyRing, ManualClock, Session, SessionLayer,
    SessionLayerBuilder, Store, StoreError,
};
use conformance::Harness;
use http::StatusCode;
use serde_json::{Value, json};
use support::{Client, request};

async fn cookie() -> Option<Harness> {
    Some(Harness::new(CookieStore::new()))
}

conformance_suite!(sealed cookie());

const MIN: Duration = Duration::from_secs(60);

fn key(byte: u8) -> Key {
    Key::from_secret(&[byte; 32]).unwrap()
}

async fn put_value(
    session: Session,
    Path(key): Path<String>,
    Json(value): Json<Value>,
) -> Result<StatusCode, Error> {
    session.insert(key, value)?;
    Ok(StatusCode::OK)
}

async fn status(session: Session) -> Json<Value> {
    Json(json!({
        "map": session.to_map(),
        "user": session.user(),
        "is_new": session.is_new(),
        "hash": session.hash().map(|h| h.to_string()),
    }))
}

async fn login(session: Session, Path(user): Path<String>) {
    session.cycle_id();
    session.set_user(user);
    session.flash("success", "Welcome!");
}

async fn logout(session: Session) {
    session.destroy();
    session.flash("info", "Logged out.");
}

fn app(configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder) -> Router {
    let layer = configure(SessionLayer::builder(CookieStore::new()).key(key(1)))
        .build()
        .unwrap();
    Router::new()
        .route("/value/{key}", axum::routing::put(put_value))
        .route("/status", get(status))
        .route(
            "/flashes",
            get(|s: Session| async move { Json(s.take_flashes()) }),
        )
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/untouched", get(|| async { "no session" }))
        .layer(layer)
}

fn client_on(
    clock: &ManualClock,
    configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
) -> Client {
    let clock = clock.clone();
    Client::new(app(move |b| configure(b.clock(clock))))
}

#[tokio::test]
async fn every_json_type_round_trips_through_the_cookie() {
    let mut c = Client::new(app(|b| b));
    let value = json!({
        "null": null, "bool": true, "int": -42, "big": 9_007_199_254_740_993u64, "float": 0.25,
        "empty": "", "quote": "\"'\\\n", "emoji": "🧥", "日本": "語",
        "nested": {"a": [1, {"b": []}, {}]},
    });
    let reply = c.send("PUT", "/value/v", &value.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .set_cookie()
            .unwrap()
            .contains("HttpOnly; Secure; SameSite=Lax")
    );
    let status = c.get("/status").await.json();
    assert_eq!(status["map"]["v"], value);
    assert_eq!(status["hash"], json!(null), "no server-side identity");
}

#[tokio::test]
async fn login_flash_and_logout_work_as_with_a_server_store() {
    let mut c = Client::new(app(|b| b));
    c.send("PUT", "/value/cart", "[1]").await;
    let before = c.cookie.clone().unwrap();
    let reply = c.post("/login/bob", "").await;
    assert_ne!(
        reply.cookie_pair().unwrap(),
        before,
        "a freshly sealed cookie at login"
    );
    assert_eq!(
        c.get("/flashes").await.json(),
        json!([{"category": "success", "message": "Welcome!"}])
    );
    assert_eq!(c.get("/flashes").await.json(), json!([]));
    let status = c.get("/status").await.json();
    assert_eq!(status["user"], json!("bob"));
    assert_eq!(status["map"], json!({"cart": [1]}));

    let reply = c.post("/logout", "").await;
    assert!(!reply.is_removal(), "the logout flash needs a new cookie");
    assert_eq!(
        c.get("/flashes").await.json(),
        json!([{"category": "info", "message": "Logged out."}])
    );
    assert_eq!(c.get("/status").await.json()["user"], json!(null));
}

#[tokio::test]
async fn destroy_without_new_data_removes_the_cookie() {
    async fn destroy(session: Session) {
        session.destroy();
    }
    let layer = SessionLayer::builder(CookieStore::new())
        .key(key(1))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/set",
            get(|s: Session| async move { s.insert("x", 1).unwrap() }),
        )
        .route("/destroy", post(destroy))
        .layer(layer);
    let mut c = Client::new(app);
    c.get("/set").await;
    assert!(c.post("/destroy", "").await.is_removal());
}

#[tokio::test]
async fn a_copied_cookie_stays_valid_after_logout_as_documented() {
    // The limitation the module documentation states: the server cannot end a sealed session.
    let mut c = Client::new(app(|b| b));
    c.post("/login/alice", "").await;
    let copy = c.cookie.clone().unwrap();
    c.post("/logout", "").await;
    let replay = request(&c.app, "GET", "/status", Some(&copy), "").await;
    assert_eq!(replay.json()["user"], json!("alice"));
}

#[tokio::test]
async fn a_replayed_cookie_is_refused_after_its_idle_deadline() {
    let clock = ManualClock::new();
    let mut c = client_on(&clock, |b| b.idle_timeout(10 * MIN).touch_interval(MIN));
    c.send("PUT", "/value/x", "1").await;
    let copy = c.cookie.clone().unwrap();
    clock.advance(10 * MIN - Duration::from_millis(1));
    let alive = request(&c.app, "GET", "/status", Some(&copy), "").await;
    assert_eq!(alive.json()["map"], json!({"x": 1}));
    clock.advance(Duration::from_millis(1));
    let dead = request(&c.app, "GET", "/status", Some(&copy), "").await;
    assert_eq!(
        dead.json()["map"],
        json!({}),
        "the browser kept it, the server refuses it"
    );
    assert!(dead.is_removal());
}

#[tokio::test]
async fn activity_re_seals_with_a_later_deadline_until_the_absolute_cap() {
    let clock = ManualClock::new();
    let mut c = client_on(&clock, |b| {
        b.idle_timeout(10 * MIN)
            .absolute_timeout(30 * MIN)
            .touch_interval(MIN)
    });
    c.send("PUT", "/value/x", "1").await;
    // Within the touch interval nothing is re-sent.
    clock.advance(Duration::from_secs(20));
    assert_eq!(c.get("/status").await.set_cookie(), None);
    for step in 1..=5 {
        clock.advance(5 * MIN);
        let reply = c.get("/status").await;
        assert_eq!(reply.json()["map"], json!({"x": 1}));
        if step < 5 {
            assert!(
                reply.cookie_pair().is_some(),
                "re-sealed with the extended deadline"
            );
        } else {
            // The deadline already sits at the absolute cap: nothing left to extend.
            assert_eq!(reply.set_cookie(), None);
        }
    }
    clock.advance(5 * MIN);
    assert_eq!(
        c.get("/status").await.json()["map"],
        json!({}),
        "absolute cap"
    );
}

#[tokio::test]
async fn hostile_cookies_start_a_fresh_session() {
    let mut c = Client::new(app(|b| b));
    c.send("PUT", "/value/secret", "1").await;
    let good = c.cookie.clone().unwrap();
    let value = good.strip_prefix("id=").unwrap();
    let mut flipped = value.as_bytes().to_vec();
    flipped[30] = if flipped[30] == b'A' { b'B' } else { b'A' };
    let other_key = {
        let mut other = Client::new(app(|b| b.key(key(9))));
        other.send("PUT", "/value/secret", "2").await;
        other.cookie.unwrap()
    };
    for cookie in [
        format!("id={}", String::from_utf8(flipped).unwrap()),
        format!("id={}", &value[..value.len() - 5]),
        "id=!!!not-base64!!!".to_owned(),
        "id=".to_owned(),
        format!("id={}", "A".repeat(5000)),
        other_key,
    ] {
        let reply = request(&c.app, "GET", "/status", Some(&cookie), "").await;
        assert_eq!(reply.status, StatusCode::OK, "{cookie:.40}");
        assert_eq!(reply.json()["map"], json!({}), "{cookie:.40}");
        assert!(reply.is_removal());
    }
}

#[tokio::test]
async fn a_session_too_big_for_a_cookie_fails_clearly_and_keeps_the_old_cookie() {
    let mut c = Client::new(app(|b| b));
    c.send("PUT", "/value/small", "1").await;
    let before = c.cookie.clone().unwrap();
    let big = format!("\"{}\"", "x".repeat(3500));
    let reply = c.send("PUT", "/value/big", &big).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.set_cookie(), None, "nothing truncated, nothing sent");
    assert_eq!(c.cookie.as_deref(), Some(before.as_str()));
    assert_eq!(c.get("/status").await.json()["map"], json!({"small": 1}));
}

#[tokio::test]
async fn rotated_keys_open_old_cookies_and_re_seal_them() {
    let mut old = Client::new(app(|b| b.key(key(1))));
    old.send("PUT", "/value/x", "1").await;
    let old_cookie = old.cookie.clone().unwrap();

    let rotated = app(|b| b.keys(KeyRing::new(key(2)).with_old_key(key(1))));
    let reply = request(&rotated, "GET", "/status", Some(&old_cookie), "").await;
    assert_eq!(reply.json()["map"], json!({"x": 1}));
    let resealed = reply
        .cookie_pair()
        .expect("re-sealed with the new key")
        .to_owned();

    let new_only = app(|b| b.key(key(2)));
    let reply = request(&new_only, "GET", "/status", Some(&resealed), "").await;
    assert_eq!(reply.json()["map"], json!({"x": 1}));
    assert_eq!(reply.set_cookie(), None);
    let reply = request(&new_only, "GET", "/status", Some(&old_cookie), "").await;
    assert_eq!(reply.json()["map"], json!({}));
}

#[tokio::test]
async fn untouched_handlers_get_no_cookie() {
    let mut c = Client::new(app(|b| b));
    c.send("PUT", "/value/x", "1").await;
    assert_eq!(c.get("/untouched").await.set_cookie(), None);
}

#[tokio::test]
async fn server_side_operations_are_refused_explicitly() {
    let store = CookieStore::new();
    let now = ManualClock::new().now();
    for result in [
        store.list_user("alice", now).await.map(|_| ()),
        store.revoke_user("alice", None).await.map(|_| ()),
        store.count(now).await.map(|_| ()),
        store.purge_expired(now, 10).await.map(|_| ()),
    ] {
        assert!(
            matches!(
                result,
                Err(StoreError::Unsupported {
                    store: "cookie",
                    ..
                })
            ),
            "{result:?}"
        );
    }
    let opened = cloakroom::stores::connect("cookie://").await.unwrap();
    assert!(opened.keeps_state_in_cookie());
    assert!(cloakroom::stores::connect("cookie://host").await.is_err());
}
