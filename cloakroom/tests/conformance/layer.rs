//! Conformance cases that go through the layer: what a browser sees of the store contract.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use cloakroom::Key;
use http::StatusCode;
use serde_json::{Value, json};

use super::Harness;

const CONCURRENT: usize = 20;

/// Lets a test hold requests between loading their session and saving it.
struct Gate {
    loaded: tokio::sync::Notify,
    proceed: tokio::sync::Notify,
    /// Every concurrent writer has loaded the session before any of them saves.
    together: tokio::sync::Barrier,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            loaded: tokio::sync::Notify::new(),
            proceed: tokio::sync::Notify::new(),
            together: tokio::sync::Barrier::new(CONCURRENT),
        }
    }
}

fn app(h: &Harness, key: Key) -> Router {
    gated_app(h, key, Arc::default())
}

fn gated_app(h: &Harness, key: Key, gate: Arc<Gate>) -> Router {
    async fn gated_put(
        axum::Extension(gate): axum::Extension<Arc<Gate>>,
        session: cloakroom::Session,
        body: String,
    ) -> StatusCode {
        gate.loaded.notify_one();
        gate.proceed.notified().await;
        let (k, v) = body.split_once('=').unwrap();
        session.insert(k, v).unwrap();
        StatusCode::OK
    }
    async fn put(session: cloakroom::Session, body: String) -> StatusCode {
        let (k, v) = body.split_once('=').unwrap();
        session.insert(k, v).unwrap();
        StatusCode::OK
    }
    async fn put_together(
        axum::Extension(gate): axum::Extension<Arc<Gate>>,
        session: cloakroom::Session,
        body: String,
    ) -> StatusCode {
        // Read, wait for all the others to have read, then write: the window in which a
        // whole-record save would lose updates.
        let _ = session.to_map();
        gate.together.wait().await;
        put(session, body).await
    }
    async fn dump(session: cloakroom::Session) -> axum::Json<Value> {
        axum::Json(Value::Object(session.to_map()))
    }
    async fn logout(session: cloakroom::Session) -> StatusCode {
        session.destroy();
        StatusCode::OK
    }
    Router::new()
        .route("/put", post(put))
        .route("/dump", get(dump))
        .route("/logout", post(logout))
        .route("/gated-put", post(gated_put))
        .route("/put-together", post(put_together))
        .layer(h.layer(key))
        .layer(axum::Extension(gate))
}

fn key() -> Key {
    Key::from_secret(b"conformance-suite-key-0123456789abcdef").unwrap()
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    body: &str,
) -> (StatusCode, Option<String>, String) {
    let reply = crate::support::request(app, method, uri, cookie, body).await;
    let pair = reply.cookie_pair().map(str::to_owned);
    (reply.status, pair, reply.body)
}

pub async fn layer_keeps_all_twenty_concurrent_keys(h: &Harness) {
    let app = app(h, key());
    let (_, cookie, _) = send(&app, "POST", "/put", None, "start=1").await;
    let cookie = cookie.expect("session created");
    let requests = (0..CONCURRENT).map(|i| {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move {
            let body = format!("k{i}={i}");
            send(&app, "POST", "/put-together", Some(&cookie), &body).await
        })
    });
    let tasks: Vec<_> = requests.collect();
    let all = async move {
        let mut replies = Vec::with_capacity(tasks.len());
        for task in tasks {
            replies.push(task.await.unwrap());
        }
        replies
    };
    // The barrier opens only once all twenty have loaded; a layer that serialized them would
    // hang here instead of passing without the race.
    let replies = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("all twenty requests loaded the session before any saved");
    for reply in replies {
        assert_eq!(reply.0, StatusCode::OK);
    }
    let (_, _, body) = send(&app, "GET", "/dump", Some(&cookie), "").await;
    let data: Value = serde_json::from_str(&body).unwrap();
    let data = data.as_object().unwrap();
    assert_eq!(data.len(), CONCURRENT + 1, "{data:?}");
    for i in 0..CONCURRENT {
        assert_eq!(data[&format!("k{i}")], json!(i.to_string()));
    }
}

pub async fn layer_logout_beats_an_in_flight_write(h: &Harness) {
    let gate = Arc::new(Gate::default());
    let app = gated_app(h, key(), Arc::clone(&gate));
    let (_, cookie, _) = send(&app, "POST", "/put", None, "user=alice").await;
    let cookie = cookie.unwrap();
    // The write loads the session and waits; the logout completes; then the write saves.
    let write = {
        let (app, cookie) = (app.clone(), cookie.clone());
        tokio::spawn(async move { send(&app, "POST", "/gated-put", Some(&cookie), "late=1").await })
    };
    gate.loaded.notified().await;
    let (status, removal, _) = send(&app, "POST", "/logout", Some(&cookie), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(removal.as_deref(), Some("id="));
    gate.proceed.notify_one();
    let (status, after_write, _) = write.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        after_write.as_deref(),
        Some("id="),
        "the late write clears the cookie"
    );
    let (_, set, body) = send(&app, "GET", "/dump", Some(&cookie), "").await;
    assert_eq!(body, "{}", "the session stayed dead");
    assert_eq!(set.as_deref(), Some("id="));
}

pub async fn two_layers_share_one_store(h: &Harness) {
    // Two "app instances": separate layers and routers over one store and one key.
    let first = app(h, key());
    let second = app(h, key());
    let (_, cookie, _) = send(&first, "POST", "/put", None, "cart=3").await;
    let mut cookie = cookie.unwrap();
    let (_, _, body) = send(&second, "GET", "/dump", Some(&cookie), "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"cart": "3"})
    );
    // Like a browser, keep whatever cookie the server sets.
    if let (_, Some(set), _) = send(&second, "POST", "/put", Some(&cookie), "theme=dark").await {
        cookie = set;
    }
    let (_, _, body) = send(&first, "GET", "/dump", Some(&cookie), "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"cart": "3", "theme": "dark"})
    );
}
