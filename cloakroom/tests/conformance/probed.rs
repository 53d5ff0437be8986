//! Conformance cases that count and order the store operations a request causes: round trips per
//! request, the absolute deadline, and rotation racing other requests on the same session.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use cloakroom::{
    Clock, Key, ManualClock, Session, SessionHash, SessionLayer, SessionLayerBuilder, Store,
};
use http::StatusCode;
use serde_json::{Value, json};

use super::{Harness, hash};
use crate::support::{Probe, Reply, request};

const MINUTE: Duration = Duration::from_secs(60);

/// A layer over a counting wrapper of the harness's store, on the harness's clock.
pub struct Probed {
    pub probe: Probe<Arc<dyn Store>>,
    pub clock: ManualClock,
    pub app: Router,
}

impl Probed {
    pub fn new(
        h: &Harness,
        configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
    ) -> Self {
        let probe = Probe::new(Arc::clone(&h.store));
        let clock = h.clock.clone();
        let app = app_over(&probe, &clock, configure);
        Self { probe, clock, app }
    }

    /// Another app instance over the same store and clock, configured differently.
    pub fn sibling(
        &self,
        configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
    ) -> Router {
        app_over(&self.probe, &self.clock, configure)
    }

    pub fn now(&self) -> cloakroom::Timestamp {
        self.clock.now()
    }

    /// Sends one request with `cookie`, keeps the cookie the server sets, and checks the status.
    pub async fn send(&self, app: &Router, cookie: &mut Option<String>, line: &str) -> Reply {
        let (method, rest) = line.split_once(' ').unwrap();
        let (uri, body) = rest.split_once(' ').unwrap_or((rest, ""));
        let reply = request(app, method, uri, cookie.as_deref(), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{line}: {}", reply.body);
        if let Some(pair) = reply.cookie_pair() {
            *cookie = (!reply.is_removal()).then(|| pair.to_owned());
        }
        reply
    }

    /// Sends `line` and asserts how many store operations it cost.
    pub async fn expect_ops(&self, ops: usize, cookie: &mut Option<String>, line: &str) -> Reply {
        let before = self.probe.ops();
        let reply = self.send(&self.app, cookie, line).await;
        assert_eq!(
            self.probe.ops() - before,
            ops,
            "store operations for `{line}`"
        );
        reply
    }

    /// The hash of the live session the `GET /read` handler sees.
    pub async fn hash_of(&self, cookie: &Option<String>) -> SessionHash {
        let reply = request(&self.app, "GET", "/read", cookie.as_deref(), "").await;
        reply.json()["hash"]
            .as_str()
            .expect("a live session")
            .parse()
            .unwrap()
    }

    pub async fn stored(&self, hash: &SessionHash) -> Option<cloakroom::Record> {
        self.probe.inner.load(hash, self.now()).await.unwrap()
    }
}

fn app_over(
    probe: &Probe<Arc<dyn Store>>,
    clock: &ManualClock,
    configure: impl FnOnce(SessionLayerBuilder) -> SessionLayerBuilder,
) -> Router {
    async fn read(session: Session) -> axum::Json<Value> {
        axum::Json(json!({
            "data": session.to_map(),
            "hash": session.hash().map(|h| h.to_string()),
        }))
    }
    async fn write(session: Session, body: String) {
        let (k, v) = body.split_once('=').unwrap();
        session.insert(k, v).unwrap();
    }
    async fn bind(session: Session, user: String) {
        session.set_user(&user);
        session.set_persistent(true);
        session.insert("user", user).unwrap();
    }
    async fn login(session: Session, user: String) {
        session.cycle_id();
        session.set_user(&user);
        session.insert("user", user).unwrap();
    }
    let builder = SessionLayer::builder(probe.clone())
        .key(Key::from_secret(b"conformance-probed-key-0123456789abcdef").unwrap())
        .clock(clock.clone());
    let layer = configure(builder).build().expect("valid configuration");
    Router::new()
        .route("/untouched", get(|| async { "no session here" }))
        .route("/read", get(read))
        .route("/write", post(write))
        .route("/bind", post(bind))
        .route("/login", post(login))
        .route("/logout", post(|s: Session| async move { s.destroy() }))
        .layer(layer)
}

fn hourly(builder: SessionLayerBuilder) -> SessionLayerBuilder {
    builder.idle_timeout(60 * MINUTE).touch_interval(MINUTE)
}

/// The README's table of store operations per request, row by row.
pub async fn round_trips_per_request_match_the_readme(h: &Harness) {
    let t = Probed::new(h, hourly);
    let mut cookie = None;
    t.expect_ops(0, &mut cookie, "GET /untouched").await;
    t.expect_ops(0, &mut cookie, "GET /read").await;
    assert_eq!(cookie, None, "a visitor who only reads gets no cookie");
    t.expect_ops(1, &mut cookie, "POST /write a=1").await;
    assert!(cookie.is_some(), "a new session sets its cookie");
    t.expect_ops(0, &mut cookie, "GET /untouched").await;
    t.expect_ops(1, &mut cookie, "GET /read").await;
    t.clock.advance(2 * MINUTE);
    t.expect_ops(2, &mut cookie, "GET /read").await;
    // Less than the touch interval later: the deadline would move, but not by enough.
    t.clock.advance(MINUTE / 2);
    t.expect_ops(1, &mut cookie, "GET /read").await;
    t.expect_ops(2, &mut cookie, "POST /write b=2").await;
    t.expect_ops(2, &mut cookie, "POST /login alice").await;
    t.expect_ops(2, &mut cookie, "POST /logout").await;
    assert_eq!(cookie, None, "logout removes the cookie");
}

fn max_age(reply: &Reply) -> Option<u64> {
    let set_cookie = reply.set_cookie()?;
    let attribute = set_cookie
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))?;
    attribute.parse().ok()
}

/// Extending the idle deadline stops at the absolute one: in the store and in `Max-Age`.
pub async fn extended_deadline_stops_at_the_absolute_deadline(h: &Harness) {
    let t = Probed::new(h, |b| {
        b.idle_timeout(5 * MINUTE)
            .absolute_timeout(12 * MINUTE)
            .touch_interval(MINUTE)
    });
    let start = t.now();
    let mut cookie = None;
    let user = format!("cap-{}", hash(0));
    let created = t
        .send(&t.app, &mut cookie, &format!("POST /bind {user}"))
        .await;
    assert_eq!(max_age(&created), Some(300));
    let session = t.hash_of(&cookie).await;

    t.clock.advance(4 * MINUTE);
    t.send(&t.app, &mut cookie, "GET /read").await;
    t.clock.advance(4 * MINUTE);
    // The idle timeout would give start + 13 minutes; the absolute deadline is start + 12.
    let capped = t.send(&t.app, &mut cookie, "GET /read").await;
    let cap = start.saturating_add(12 * MINUTE);
    let stored = t.stored(&session).await.expect("still live");
    assert_eq!(stored.expires_at, cap, "stored expiry");
    if let Some(native_expiry) = &h.native_expiry {
        assert_eq!(native_expiry(session).await, cap, "the server's own expiry");
    }
    assert_eq!(max_age(&capped), Some(4 * 60), "cookie Max-Age");

    t.clock.advance(3 * MINUTE + MINUTE / 2);
    let reply = t.send(&t.app, &mut cookie, "GET /read").await;
    assert_eq!(
        reply.json()["data"],
        json!({"user": user}),
        "before the cap"
    );
    t.clock.advance(MINUTE);
    let reply = t.send(&t.app, &mut cookie, "GET /read").await;
    assert_eq!(
        reply.json()["data"],
        json!({}),
        "past the absolute deadline"
    );
}

/// With a lifetime shorter than the idle timeout, the session's first deadline is already the
/// absolute one, and no activity moves it.
pub async fn a_lifetime_shorter_than_the_idle_timeout_is_the_first_deadline(h: &Harness) {
    let t = Probed::new(h, |b| hourly(b).absolute_timeout(10 * MINUTE));
    let start = t.now();
    let mut cookie = None;
    let user = format!("short-{}", hash(0));
    let created = t
        .send(&t.app, &mut cookie, &format!("POST /bind {user}"))
        .await;
    assert_eq!(max_age(&created), Some(600), "cookie Max-Age");
    let session = t.hash_of(&cookie).await;
    let cap = start.saturating_add(10 * MINUTE);
    assert_eq!(t.stored(&session).await.unwrap().expires_at, cap);
    t.clock.advance(5 * MINUTE);
    let read = t.send(&t.app, &mut cookie, "GET /read").await;
    assert_eq!(read.set_cookie(), None, "nothing to extend");
    assert_eq!(t.stored(&session).await.unwrap().expires_at, cap);
    t.clock.advance(5 * MINUTE);
    let reply = t.send(&t.app, &mut cookie, "GET /read").await;
    assert_eq!(
        reply.json()["data"],
        json!({}),
        "past the absolute deadline"
    );
}

/// The liveness check at load applies the absolute deadline whatever expiry the store holds:
/// here a record written under a longer lifetime, read by an instance configured shorter.
pub async fn absolute_deadline_is_checked_at_load(h: &Harness) {
    let t = Probed::new(h, hourly);
    let strict = t.sibling(|b| hourly(b).absolute_timeout(10 * MINUTE));
    let mut cookie = None;
    t.send(&t.app, &mut cookie, "POST /write a=1").await;
    t.clock.advance(11 * MINUTE);
    let mut seen_by_strict = cookie.clone();
    let reply = t.send(&strict, &mut seen_by_strict, "GET /read").await;
    assert_eq!(
        reply.json()["data"],
        json!({}),
        "the strict instance ends it"
    );
    let reply = request(&t.app, "GET", "/read", cookie.as_deref(), "").await;
    assert_eq!(
        reply.json()["data"],
        json!({"a": "1"}),
        "the record itself is still live in the store"
    );
}

/// The forms a ticket could be written in: its cookie text, raw bytes, hex, standard base64.
fn ticket_forms(cookie: &str) -> Vec<(&'static str, Vec<u8>)> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let value = cookie.split_once('=').unwrap().1;
    let text = value.split_once('.').expect("ticket.mac").0;
    let raw = URL_SAFE_NO_PAD.decode(text).expect("base64url ticket");
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("cookie text", text.as_bytes().to_vec()),
        ("raw bytes", raw.clone()),
        ("hex", hex.into_bytes()),
        ("standard base64", STANDARD.encode(&raw).into_bytes()),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A leaked store yields no usable cookie: after a visit and a login, nothing the store holds
/// contains either ticket, in any encoding.
pub async fn tickets_never_rest_in_the_store(h: &Harness) {
    let t = Probed::new(h, |b| b);
    let user = format!("at-rest-{}", hash(0));
    let mut cookie = None;
    t.send(&t.app, &mut cookie, &format!("POST /bind {user}"))
        .await;
    let before_login = cookie.clone().unwrap();
    t.send(&t.app, &mut cookie, &format!("POST /login {user}"))
        .await;
    let after_login = cookie.unwrap();
    // A store's own index is the first place a careless one would file the ticket.
    for cookie in [&before_login, &after_login] {
        let (_, raw) = ticket_forms(cookie).swap_remove(1);
        let as_hash = SessionHash::from_bytes(raw.try_into().unwrap());
        assert!(
            t.stored(&as_hash).await.is_none(),
            "filed under the ticket itself"
        );
    }
    // Only SQLite's in-memory database has no outside view; its file-backed suite scans rows.
    let Some(dump) = h.at_rest.clone() else {
        return;
    };
    let held = dump().await;
    assert!(
        contains(&held, user.as_bytes()),
        "the dump does not show the session at all, so it proves nothing"
    );
    let lowercase = held.to_ascii_lowercase();
    for cookie in [before_login, after_login] {
        for (form, bytes) in ticket_forms(&cookie) {
            let found = if form == "hex" {
                contains(&lowercase, &bytes)
            } else {
                contains(&held, &bytes)
            };
            assert!(!found, "the store holds a ticket ({form})");
        }
    }
}
