//! The session lifecycle as a browser sees it: through the layer, over the memory store.

mod support;

use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cloakroom::{
    Clock, Error, Key, KeyRing, ManualClock, MemoryStore, SameSite, Session, SessionLayer,
    SessionLayerBuilder, Store,
};
use http::{StatusCode, header};
use serde_json::{Value, json};
use support::{Client, Probe, Reply, request};

const MIN: Duration = Duration::from_secs(60);

fn key(byte: u8) -> Key {
    Key::from_secret(&[byte; 32]).unwrap()
}

// ---- the app under test: one route per API call ----

async fn get_value(session: Session, Path(key): Path<String>) -> Result<Json<Value>, Error> {
    Ok(Json(session.get::<Value>(&key)?.unwrap_or(Value::Null)))
}

async fn put_value(
    session: Session,
    Path(key): Path<String>,
    Json(value): Json<Value>,
) -> Result<StatusCode, Error> {
    session.insert(key, value)?;
    Ok(StatusCode::OK)
}

async fn remove_value(session: Session, Path(key): Path<String>) -> Json<bool> {
    Json(session.remove(&key))
}

async fn pop(session: Session, Path(key): Path<String>) -> Result<Json<Option<Value>>, Error> {
    Ok(Json(session.pop(&key)?))
}

async fn get_or(session: Session, Path(key): Path<String>) -> Result<Json<Value>, Error> {
    Ok(Json(session.get_or(&key, json!("default"))?))
}

async fn number(session: Session, Path(key): Path<String>) -> Result<String, Error> {
    Ok(session.get::<u32>(&key)?.unwrap_or(0).to_string())
}

async fn extend(
    session: Session,
    Json(pairs): Json<serde_json::Map<String, Value>>,
) -> Result<StatusCode, Error> {
    session.extend(pairs)?;
    Ok(StatusCode::OK)
}

async fn status(session: Session) -> Json<Value> {
    Json(json!({
        "keys": session.keys(),
        "map": session.to_map(),
        "contains_a": session.contains("a"),
        "len": session.len(),
        "is_new": session.is_new(),
        "is_modified": session.is_modified(),
        "persistent": session.is_persistent(),
        "user": session.user(),
        "hash": session.hash().map(|h| h.to_string()),
    }))
}

/// `is_modified()` before and after writing `key` (removing it when the body is `remove`).
async fn modified_by(session: Session, Path(key): Path<String>, body: String) -> Json<Value> {
    let before = session.is_modified();
    if body == "remove" {
        session.remove(&key);
    } else {
        session.insert(key, body).unwrap();
    }
    Json(json!([before, session.is_modified()]))
}

async fn flash(session: Session, Json(f): Json<Value>) -> StatusCode {
    session
        .flash(
            f["category"].as_str().unwrap(),
            f["message"].as_str().unwrap(),
        )
        .unwrap();
    StatusCode::OK
}

async fn take_flashes(session: Session) -> Json<Value> {
    Json(serde_json::to_value(session.take_flashes()).unwrap())
}

async fn login(session: Session, Path(user): Path<String>) -> StatusCode {
    session.cycle_id();
    session.set_user(user);
    StatusCode::OK
}

async fn logout(session: Session) -> StatusCode {
    session.destroy();
    session.flash("info", "You have been logged out.").unwrap();
    StatusCode::OK
}

async fn fail(session: Session) -> StatusCode {
    session.insert("during-failure", true).unwrap();
    StatusCode::INTERNAL_SERVER_ERROR
}

fn routes() -> Router {
    Router::new()
        .route(
            "/value/{key}",
            get(get_value).put(put_value).delete(remove_value),
        )
        .route("/pop/{key}", post(pop))
        .route("/get-or/{key}", get(get_or))
        .route("/number/{key}", get(number))
        .route("/extend", post(extend))
        .route("/status", get(status))
        .route(
            "/peek",
            get(|s: Session| async move { format!("{:?}", s.get_value("x")) }),
        )
        .route("/clear", post(|s: Session| async move { s.clear() }))
        .route("/flash", post(flash))
        .route("/flashes", get(take_flashes))
        .route(
            "/flashes/clear",
            post(|s: Session| async move { s.clear_flashes() }),
        )
        .route("/destroy", post(|s: Session| async move { s.destroy() }))
        .route("/logout", post(logout))
        .route("/login/{user}", post(login))
        .route("/cycle", post(|s: Session| async move { s.cycle_id() }))
        .route(
            "/persistent/{on}",
            post(|s: Session, Path(on): Path<bool>| async move { s.set_persistent(on) }),
        )
        .route("/untouched", get(|| async { "no session here" }))
        .route("/modified-by/{key}", post(modified_by))
        .route("/fail", post(fail))
}

struct Setup {
    client: Client,
    store: Probe<MemoryStore>,
    clock: ManualClock,
}

fn setup_with(configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder) -> Setup {
    let store = Probe::new(MemoryStore::default());
    let clock = ManualClock::new();
    let builder = SessionLayer::builder(store.clone())
        .key(key(1))
        .clock(clock.clone());
    let layer = configure(builder).build().unwrap();
    Setup {
        client: Client::new(routes().layer(layer)),
        store,
        clock,
    }
}

fn setup() -> Setup {
    setup_with(|b| b)
}

impl Setup {
    async fn stored(&self) -> u64 {
        self.store.inner.count(self.clock.now()).await.unwrap()
    }

    async fn status(&mut self) -> Value {
        let reply = self.client.get("/status").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.json()
    }
}

fn attributes(reply: &Reply) -> Vec<String> {
    let mut parts: Vec<String> = reply
        .set_cookie()
        .expect("a Set-Cookie header")
        .split("; ")
        .skip(1)
        .map(str::to_owned)
        .collect();
    parts.sort();
    parts
}

// ---- the session API, row by row ----

#[tokio::test]
async fn every_api_call_is_observable_through_responses_and_the_store() {
    let mut s = setup();
    let c = &mut s.client;
    assert_eq!(c.send("PUT", "/value/a", "1").await.status, StatusCode::OK);
    c.send("PUT", "/value/b", r#"{"x": [1, "two"]}"#).await;
    assert_eq!(c.get("/value/a").await.json(), json!(1));
    assert_eq!(c.get("/value/b").await.json(), json!({"x": [1, "two"]}));
    assert_eq!(c.get("/get-or/nope").await.json(), json!("default"));
    assert_eq!(c.get("/get-or/a").await.json(), json!(1));

    let status = s.status().await;
    assert_eq!(status["keys"], json!(["a", "b"]));
    assert_eq!(status["contains_a"], json!(true));
    assert_eq!(status["len"], json!(2));
    assert_eq!(status["is_new"], json!(false));
    assert_eq!(status["is_modified"], json!(false));
    let hash = status["hash"].as_str().unwrap().to_owned();

    let c = &mut s.client;
    assert_eq!(c.post("/pop/a", "").await.json(), json!(1));
    assert_eq!(c.post("/pop/a", "").await.json(), json!(null));
    assert_eq!(c.send("DELETE", "/value/b", "").await.json(), json!(true));
    assert_eq!(c.send("DELETE", "/value/b", "").await.json(), json!(false));
    c.post("/extend", r#"{"c": 3, "d": [4]}"#).await;
    assert_eq!(s.status().await["map"], json!({"c": 3, "d": [4]}));

    // What the store holds is what the handler sees.
    let record = s
        .store
        .inner
        .load(&hash.parse().unwrap(), s.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Value::Object(record.data), json!({"c": 3, "d": [4]}));

    // clear() empties the data but keeps the session and its ticket.
    let reply = s.client.post("/clear", "").await;
    assert_eq!(reply.set_cookie(), None);
    let status = s.status().await;
    assert_eq!(status["keys"], json!([]));
    assert_eq!(status["hash"], json!(hash));
    assert_eq!(s.stored().await, 1);
}

#[tokio::test]
async fn is_new_and_is_modified_follow_the_request() {
    let mut s = setup();
    let status = s.status().await;
    assert_eq!(status["is_new"], json!(true));
    assert_eq!(status["is_modified"], json!(false));
    s.client.send("PUT", "/value/x", "1").await;
    assert_eq!(s.status().await["is_new"], json!(false));
}

#[tokio::test]
async fn a_type_mismatch_is_a_clear_error() {
    let mut s = setup();
    s.client.send("PUT", "/value/n", r#""not a number""#).await;
    let reply = s.client.get("/number/n").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains(r#"key "n" does not deserialize"#),
        "{}",
        reply.body
    );
    assert_eq!(
        s.status().await["map"],
        json!({"n": "not a number"}),
        "nothing lost"
    );
}

// ---- anonymous visitors ----

#[tokio::test]
async fn an_anonymous_visitor_who_writes_nothing_gets_no_cookie_and_no_record() {
    let mut s = setup();
    let reply = s.client.get("/peek").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.set_cookie(), None);
    assert_eq!(s.store.ops(), 0, "no cookie, nothing to load");
    assert_eq!(s.stored().await, 0);
    // The page depended on the (absent) session: caches must key on the cookie.
    assert_eq!(reply.headers[header::VARY], "Cookie");
}

#[tokio::test]
async fn handlers_that_never_ask_for_the_session_cost_no_store_access() {
    let mut s = setup();
    s.client.send("PUT", "/value/x", "1").await;
    let ops = s.store.ops();
    for _ in 0..5 {
        let reply = s.client.get("/untouched").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.set_cookie(), None);
        assert!(reply.headers.get(header::VARY).is_none());
        assert!(reply.headers.get(header::CACHE_CONTROL).is_none());
    }
    assert_eq!(s.store.ops(), ops);
}

// ---- cookie attributes ----

#[tokio::test]
async fn default_cookie_attributes_are_safe() {
    let mut s = setup();
    let reply = s.client.send("PUT", "/value/x", "1").await;
    let pair = reply.cookie_pair().unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, "id");
    assert_eq!(value.len(), 87, "43-char ticket, dot, 43-char MAC");
    assert_eq!(
        attributes(&reply),
        ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"]
    );
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(reply.headers[header::VARY], "Cookie");
}

#[tokio::test]
async fn every_cookie_attribute_is_configurable() {
    let mut s = setup_with(|b| {
        b.cookie_name("app_session")
            .cookie_domain("example.com")
            .cookie_path("/app")
            .same_site(SameSite::Strict)
            .secure(false)
            .http_only(false)
    });
    let reply = s.client.send("PUT", "/value/x", "1").await;
    assert!(reply.cookie_pair().unwrap().starts_with("app_session="));
    assert_eq!(
        attributes(&reply),
        ["Domain=example.com", "Path=/app", "SameSite=Strict"]
    );
    // The configured name is the one read back.
    assert_eq!(s.client.get("/value/x").await.json(), json!(1));

    let mut s = setup_with(|b| b.same_site(SameSite::None));
    let reply = s.client.send("PUT", "/value/x", "1").await;
    assert!(attributes(&reply).contains(&"SameSite=None".to_owned()));
}

#[tokio::test]
async fn host_prefix_is_supported_and_its_rules_enforced() {
    let mut s = setup_with(|b| b.cookie_name("__Host-id"));
    let reply = s.client.send("PUT", "/value/x", "1").await;
    assert!(reply.cookie_pair().unwrap().starts_with("__Host-id="));
    assert_eq!(
        attributes(&reply),
        ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"]
    );

    let store = MemoryStore::default();
    for bad in [
        SessionLayer::builder(MemoryStore::default())
            .cookie_name("__Host-id")
            .cookie_domain("example.com"),
        SessionLayer::builder(MemoryStore::default())
            .cookie_name("__Host-id")
            .cookie_path("/app"),
        SessionLayer::builder(store)
            .cookie_name("__Host-id")
            .secure(false),
    ] {
        let err = bad.key(key(1)).build().unwrap_err();
        assert!(err.to_string().contains("__Host-"), "{err}");
    }
}

// ---- hostile cookies ----

#[tokio::test]
async fn hostile_cookies_get_a_fresh_session_and_never_touch_the_store() {
    let mut s = setup();
    s.client.send("PUT", "/value/secret", r#""alice's""#).await;
    let good = s.client.cookie.clone().unwrap();
    let value = good.strip_prefix("id=").unwrap();
    let mut tampered = value.to_owned().into_bytes();
    tampered[50] = if tampered[50] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let hostile = [
        format!("id={tampered}"),
        format!("id={}", &value[..86]),
        "id=not-a-ticket".to_owned(),
        format!("id={}", "A".repeat(100 * 1024)),
        "id='; DROP TABLE sessions; --".to_owned(),
        "id=../../../../etc/passwd".to_owned(),
        "id=%00%0d%0a".to_owned(),
        format!("id={}.{}", &value[..43], "x".repeat(43)),
    ];
    for cookie in &hostile {
        let ops = s.store.ops();
        let reply = request(&s.client.app, "GET", "/value/secret", Some(cookie), "").await;
        assert_eq!(reply.status, StatusCode::OK, "{cookie:.60}");
        assert_eq!(reply.json(), json!(null), "not adopted: {cookie:.60}");
        assert_eq!(s.store.ops(), ops, "no store query for {cookie:.60}");
        // The dead cookie is cleared so the browser stops sending it.
        assert!(reply.is_removal(), "cleared: {cookie:.60}");

        let reply = request(&s.client.app, "PUT", "/value/mine", Some(cookie), "1").await;
        assert_eq!(reply.status, StatusCode::OK);
        let fresh = reply.cookie_pair().unwrap();
        assert_ne!(fresh, cookie);
        assert_ne!(fresh, good);
    }
    // The real session is untouched.
    assert_eq!(s.client.get("/value/secret").await.json(), json!("alice's"));
}

#[tokio::test]
async fn a_validly_signed_but_unknown_ticket_is_not_adopted() {
    // Another deployment with the same key but its own store issued this cookie.
    let mut elsewhere = setup();
    elsewhere.client.send("PUT", "/value/x", "1").await;
    let foreign = elsewhere.client.cookie.clone().unwrap();

    let mut s = setup();
    let reply = request(&s.client.app, "PUT", "/value/y", Some(&foreign), "2").await;
    assert_eq!(reply.status, StatusCode::OK);
    let issued = reply.cookie_pair().unwrap().to_owned();
    assert_ne!(
        issued, foreign,
        "a ticket the server did not issue is never adopted"
    );
    s.client.cookie = Some(issued);
    assert_eq!(s.status().await["map"], json!({"y": 2}));
}

// ---- logout, login ----

#[tokio::test]
async fn destroy_removes_the_record_and_the_cookie_and_replay_is_anonymous() {
    let mut s = setup();
    s.client.post("/login/alice", "").await;
    s.client.send("PUT", "/value/cart", "[1, 2]").await;
    let old = s.client.cookie.clone().unwrap();
    assert_eq!(s.stored().await, 1);

    let reply = s.client.post("/destroy", "").await;
    assert!(reply.is_removal(), "{:?}", reply.set_cookie());
    assert!(reply.set_cookie().unwrap().contains("Path=/"));
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(s.stored().await, 0);
    let alice = s
        .store
        .inner
        .list_user("alice", s.clock.now())
        .await
        .unwrap();
    assert!(alice.is_empty());

    let replay = request(&s.client.app, "GET", "/status", Some(&old), "").await;
    assert_eq!(replay.json()["is_new"], json!(true));
    assert_eq!(replay.json()["map"], json!({}));
    assert!(replay.is_removal());
}

#[tokio::test]
async fn writes_after_destroy_go_to_a_brand_new_session() {
    let mut s = setup();
    s.client.post("/login/alice", "").await;
    let old = s.client.cookie.clone().unwrap();
    let reply = s.client.post("/logout", "").await;
    assert!(!reply.is_removal());
    let new = reply.cookie_pair().unwrap();
    assert_ne!(new, old);
    assert_eq!(s.stored().await, 1, "old gone, new holds the flash");
    let flashes = s.client.get("/flashes").await.json();
    assert_eq!(
        flashes,
        json!([{"category": "info", "message": "You have been logged out."}])
    );
    assert_eq!(s.status().await["user"], json!(null));
}

#[tokio::test]
async fn cycle_id_issues_a_new_ticket_keeps_the_data_and_kills_the_old_one() {
    let mut s = setup();
    s.client.send("PUT", "/value/cart", "[7]").await;
    let before = s.client.cookie.clone().unwrap();
    let created = s.status().await["hash"].clone();

    let reply = s.client.post("/login/alice", "").await;
    let after = reply.cookie_pair().unwrap().to_owned();
    assert_ne!(after, before);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let status = s.status().await;
    assert_eq!(status["map"], json!({"cart": [7]}));
    assert_eq!(status["user"], json!("alice"));
    assert_ne!(status["hash"], created);
    assert_eq!(s.stored().await, 1);

    let old = request(&s.client.app, "GET", "/status", Some(&before), "").await;
    assert_eq!(
        old.json()["is_new"],
        json!(true),
        "the pre-login ticket is dead"
    );
    assert_eq!(old.json()["map"], json!({}));

    let listed = s
        .store
        .inner
        .list_user("alice", s.clock.now())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(json!(listed[0].0.to_string()), status["hash"]);
}

#[tokio::test]
async fn cycle_id_on_a_new_session_just_creates_it() {
    let mut s = setup();
    let reply = s.client.post("/login/bob", "").await;
    assert!(reply.cookie_pair().is_some());
    assert_eq!(s.status().await["user"], json!("bob"));
    assert_eq!(s.stored().await, 1);
}

// ---- expiry ----

#[tokio::test]
async fn idle_timeout_ends_the_session_exactly_at_its_boundary() {
    let mut s = setup_with(|b| b.idle_timeout(10 * MIN).touch_interval(MIN));
    s.client.send("PUT", "/value/x", "1").await;
    let cookie = s.client.cookie.clone().unwrap();
    s.clock.advance(10 * MIN - Duration::from_millis(1));
    let alive = request(&s.client.app, "GET", "/value/x", Some(&cookie), "").await;
    assert_eq!(
        alive.json(),
        json!(1),
        "one millisecond before the deadline"
    );

    let mut t = setup_with(|b| b.idle_timeout(10 * MIN).touch_interval(MIN));
    t.client.send("PUT", "/value/x", "1").await;
    t.clock.advance(10 * MIN);
    let reply = t.client.get("/value/x").await;
    assert_eq!(
        reply.json(),
        json!(null),
        "at the deadline the session is gone"
    );
    assert!(reply.is_removal());
}

#[tokio::test]
async fn activity_keeps_a_session_alive_until_the_absolute_cap() {
    let mut s = setup_with(|b| {
        b.idle_timeout(10 * MIN)
            .absolute_timeout(60 * MIN)
            .touch_interval(MIN)
    });
    s.client.send("PUT", "/value/x", "1").await;
    // A request every half idle timeout: 5, 10, …, 55 minutes after creation.
    for step in 1..=11 {
        s.clock.advance(5 * MIN);
        let reply = s.client.get("/value/x").await;
        assert_eq!(reply.json(), json!(1), "alive at {} min", step * 5);
    }
    // Login near the end does not buy more time.
    s.client.post("/cycle", "").await;
    s.clock.advance(5 * MIN);
    let reply = s.client.get("/value/x").await;
    assert_eq!(reply.json(), json!(null), "dead at 60 min despite activity");
}

#[tokio::test]
async fn the_absolute_cap_holds_at_its_boundary() {
    let mut s = setup_with(|b| {
        b.idle_timeout(10 * MIN)
            .absolute_timeout(12 * MIN)
            .touch_interval(MIN)
    });
    s.client.send("PUT", "/value/x", "1").await;
    s.clock.advance(8 * MIN);
    assert_eq!(s.client.get("/value/x").await.json(), json!(1));
    // The idle deadline would be 18 min, but the cap is 12 min.
    s.clock.advance(4 * MIN - Duration::from_millis(1));
    assert_eq!(s.client.get("/value/x").await.json(), json!(1));
    s.clock.advance(Duration::from_millis(1));
    assert_eq!(s.client.get("/value/x").await.json(), json!(null));
}

#[tokio::test]
async fn read_only_requests_extend_the_deadline_at_most_once_per_touch_interval() {
    let mut s = setup_with(|b| b.idle_timeout(10 * MIN).touch_interval(MIN));
    s.client.send("PUT", "/value/x", "1").await;
    let writes = s.store.writes();
    s.clock.advance(Duration::from_secs(30));
    let reply = s.client.get("/value/x").await;
    assert_eq!(
        s.store.writes(),
        writes,
        "within the touch interval: no write"
    );
    assert_eq!(reply.set_cookie(), None);
    s.clock.advance(Duration::from_secs(40));
    let reply = s.client.get("/value/x").await;
    assert_eq!(s.store.writes(), writes + 1, "one touch");
    assert_eq!(
        reply.set_cookie(),
        None,
        "a browser-session cookie has no expiry to update"
    );
    // The touch moved the deadline: 9.5 minutes later the session is still there.
    s.clock.advance(10 * MIN - Duration::from_secs(30));
    assert_eq!(s.client.get("/value/x").await.json(), json!(1));
}

#[tokio::test]
async fn persistent_sessions_get_a_max_age_that_follows_the_deadline() {
    let mut s = setup_with(|b| b.idle_timeout(10 * MIN).touch_interval(MIN));
    s.client.send("PUT", "/value/x", "1").await;
    let reply = s.client.post("/persistent/true", "").await;
    assert!(
        attributes(&reply).contains(&"Max-Age=600".to_owned()),
        "{:?}",
        reply.set_cookie()
    );
    assert_eq!(s.status().await["persistent"], json!(true));

    s.clock.advance(2 * MIN);
    let reply = s.client.get("/value/x").await;
    assert!(
        attributes(&reply).contains(&"Max-Age=600".to_owned()),
        "touched: the cookie is re-sent with the new deadline"
    );

    let reply = s.client.post("/persistent/false", "").await;
    assert!(
        !reply.set_cookie().unwrap().contains("Max-Age"),
        "back to a browser-session cookie"
    );
    assert_eq!(s.status().await["persistent"], json!(false));
}

// ---- keys ----

#[tokio::test]
async fn rotated_keys_keep_everyone_logged_in_and_re_sign_old_cookies() {
    let store = MemoryStore::default();
    let shared = std::sync::Arc::new(store);
    let app = |keys: KeyRing| {
        routes().layer(
            SessionLayer::builder(shared.clone())
                .keys(keys)
                .build()
                .unwrap(),
        )
    };
    let mut before = Client::new(app(KeyRing::new(key(1))));
    before.send("PUT", "/value/x", "1").await;
    let old_cookie = before.cookie.clone().unwrap();

    let rotated = app(KeyRing::new(key(2)).with_old_key(key(1)));
    let reply = request(&rotated, "GET", "/value/x", Some(&old_cookie), "").await;
    assert_eq!(reply.json(), json!(1), "the old key still verifies");
    let resigned = reply.cookie_pair().expect("re-signed with the new key");
    assert_ne!(resigned, old_cookie);
    assert_eq!(
        resigned[..46],
        old_cookie[..46],
        "same ticket, new signature"
    );

    let new_only = app(KeyRing::new(key(2)));
    let reply = request(&new_only, "GET", "/value/x", Some(resigned), "").await;
    assert_eq!(reply.json(), json!(1));
    assert_eq!(
        reply.set_cookie(),
        None,
        "signed by the current key: nothing to resend"
    );
    let reply = request(&new_only, "GET", "/value/x", Some(&old_cookie), "").await;
    assert_eq!(
        reply.json(),
        json!(null),
        "a retired key no longer verifies"
    );
}

// ---- flash ----

#[tokio::test]
async fn flash_messages_show_once_on_the_next_request() {
    let mut s = setup();
    s.client
        .post("/flash", r#"{"category": "success", "message": "Saved!"}"#)
        .await;
    assert_eq!(
        s.client.get("/flashes").await.json(),
        json!([{"category": "success", "message": "Saved!"}])
    );
    assert_eq!(s.client.get("/flashes").await.json(), json!([]));

    s.client
        .post("/flash", r#"{"category": "info", "message": "one"}"#)
        .await;
    s.client.post("/flashes/clear", "").await;
    assert_eq!(s.client.get("/flashes").await.json(), json!([]));
}

#[tokio::test]
async fn is_modified_turns_true_with_a_change_and_only_for_that_request() {
    let mut s = setup();
    let created = s.client.post("/modified-by/a", "1").await.json();
    assert_eq!(created, json!([false, true]), "a new session's first write");
    assert_eq!(s.status().await["is_modified"], json!(false), "reading");
    let removed_nothing = s.client.post("/modified-by/absent", "remove").await.json();
    assert_eq!(
        removed_nothing,
        json!([false, false]),
        "removing a missing key"
    );
    let removed = s.client.post("/modified-by/a", "remove").await.json();
    assert_eq!(removed, json!([false, true]), "removing a stored key");
}

// ---- failures ----

#[tokio::test]
async fn an_unreachable_store_gives_503_and_recovers_by_itself() {
    let mut s = setup();
    s.client.send("PUT", "/value/x", "1").await;
    s.store.set_failing(true);
    let reply = s.client.get("/value/x").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("unavailable"), "{}", reply.body);
    assert!(
        !reply.body.contains("probe"),
        "driver details stay in the log: {}",
        reply.body
    );
    assert_eq!(reply.set_cookie(), None);
    assert_eq!(
        reply.headers[header::CACHE_CONTROL],
        "no-store",
        "load-time 503"
    );
    // A new visitor's first write fails at save time: also 503, and no cookie for a session that
    // was never stored.
    let reply = request(&s.client.app, "PUT", "/value/y", None, "2").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.set_cookie(), None);
    assert_eq!(
        reply.headers[header::CACHE_CONTROL],
        "no-store",
        "save-time 503"
    );
    // Pages that do not use the session keep working.
    assert_eq!(s.client.get("/untouched").await.status, StatusCode::OK);

    s.store.set_failing(false);
    assert_eq!(
        s.client.get("/value/x").await.json(),
        json!(1),
        "data intact"
    );
}

#[tokio::test]
async fn a_corrupt_record_starts_a_fresh_session_under_a_new_ticket() {
    let mut s = setup();
    s.client.send("PUT", "/value/x", "1").await;
    let hash: cloakroom::SessionHash = s.status().await["hash"].as_str().unwrap().parse().unwrap();
    // From now on the store reports the record as undecodable.
    s.store.set_corrupt(true);
    let reply = s.client.get("/status").await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "not an error on every request"
    );
    assert_eq!(reply.json()["is_new"], json!(true));
    let reply = s.client.send("PUT", "/value/y", "2").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.cookie_pair().is_some(), "a new ticket");
    s.store.set_corrupt(false);
    let status = s.status().await;
    assert_eq!(status["map"], json!({"y": 2}));
    assert_ne!(status["hash"], json!(hash.to_string()));
    // The bad record was not overwritten by the new session.
    let old = s
        .store
        .inner
        .load(&hash, s.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Value::Object(old.data), json!({"x": 1}));
}

#[tokio::test]
async fn the_error_status_is_configurable() {
    let mut s = setup_with(|b| b.error_status(StatusCode::INTERNAL_SERVER_ERROR));
    s.client.send("PUT", "/value/x", "1").await;
    s.store.set_failing(true);
    assert_eq!(
        s.client.get("/value/x").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(
        SessionLayer::builder(MemoryStore::default())
            .error_status(StatusCode::OK)
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_server_error_from_the_handler_saves_nothing() {
    let mut s = setup();
    let reply = s.client.post("/fail", "").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.set_cookie(), None);
    assert_eq!(s.stored().await, 0);

    s.client.send("PUT", "/value/x", "1").await;
    s.client.post("/fail", "").await;
    assert_eq!(s.status().await["map"], json!({"x": 1}));

    let mut saving = setup_with(|b| b.save_on_server_error(true));
    saving.client.post("/fail", "").await;
    assert_eq!(saving.stored().await, 1);
    assert_eq!(
        saving.status().await["map"],
        json!({"during-failure": true})
    );
}

#[tokio::test]
async fn data_over_the_limit_is_refused_and_nothing_is_half_written() {
    let mut s = setup_with(|b| b.max_data_bytes(200));
    s.client.send("PUT", "/value/x", r#""small""#).await;
    let big = format!("\"{}\"", "x".repeat(300));
    let reply = s.client.send("PUT", "/value/big", &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        reply.body.contains("over the limit of 200 bytes"),
        "{}",
        reply.body
    );
    let reply = s
        .client
        .post("/extend", &format!(r#"{{"a": 1, "b": {big}}}"#))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.status().await["map"], json!({"x": "small"}));
}

#[tokio::test]
async fn a_route_without_the_layer_explains_what_is_missing() {
    let app = Router::new().route("/", put(|s: Session| async move { s.clear() }));
    let reply = request(&app, "PUT", "/", None, "").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("needs a SessionLayer"),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_handler_that_already_varies_keeps_its_headers() {
    async fn cached(session: Session) -> ([(header::HeaderName, &'static str); 2], &'static str) {
        session.insert("x", 1).unwrap();
        (
            [
                (header::VARY, "Accept-Encoding, cookie"),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            "ok",
        )
    }
    let app = Router::new().route("/", get(cached)).layer(
        SessionLayer::builder(MemoryStore::default())
            .key(key(1))
            .build()
            .unwrap(),
    );
    let reply = request(&app, "GET", "/", None, "").await;
    assert!(reply.cookie_pair().is_some());
    assert_eq!(reply.headers.get_all(header::VARY).iter().count(), 1);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "private, max-age=60");
}
