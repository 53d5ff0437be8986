//! Logs name sessions by a short prefix of their hash, never by their ticket.

mod support;

use std::io;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use cloakroom::{Key, MemoryStore, Session, SessionLayer};
use support::{Client, Probe};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn traces_never_contain_a_ticket() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = Probe::new(MemoryStore::default());
    let layer = SessionLayer::builder(store.clone())
        .key(Key::from_secret(&[3; 32]).unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/write",
            post(|s: Session| async move { s.insert("x", 1).unwrap() }),
        )
        .route("/login", post(|s: Session| async move { s.cycle_id() }))
        .route("/logout", post(|s: Session| async move { s.destroy() }))
        .layer(layer);
    let mut client = Client::new(app);
    let mut tickets = Vec::new();
    client.post("/write", "").await;
    tickets.push(client.cookie.clone().unwrap());
    client.post("/write", "").await;
    client.post("/login", "").await;
    tickets.push(client.cookie.clone().unwrap());
    store.set_failing(true);
    client.post("/write", "").await; // errors are logged too
    store.set_failing(false);
    client.post("/logout", "").await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("cloakroom.save"), "spans are there: {logs}");
    assert!(logs.contains("cloakroom.rotate"));
    assert!(logs.contains("loading the session failed"));
    for cookie in tickets {
        let value = cookie.strip_prefix("id=").unwrap();
        let (ticket, mac) = value.split_once('.').unwrap();
        assert!(!logs.contains(ticket), "a ticket leaked into the logs");
        assert!(!logs.contains(mac));
        assert!(!logs.contains(&ticket[..12]));
    }
    // Sessions are named by 8 hex digits of their hash.
    let named = logs.split("session=").skip(1).all(|rest| {
        rest.len() >= 8
            && rest[..8].bytes().all(|b| b.is_ascii_hexdigit())
            && !rest.as_bytes()[8].is_ascii_hexdigit()
    });
    assert!(named, "{logs}");
}
