//! The layer's metrics, read back through a debugging recorder.
#![cfg(feature = "metrics")]

mod support;

use axum::Router;
use axum::routing::{get, post};
use cloakroom::{Key, MemoryStore, Session, SessionLayer};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use support::{Client, Probe};

fn counter(snapshot: &[(CompositeKey, DebugValue)], name: &str, op: Option<&str>) -> u64 {
    snapshot
        .iter()
        .filter(|(key, _)| key.kind() == MetricKind::Counter && key.key().name() == name)
        .filter(|(key, _)| op.is_none_or(|op| key.key().labels().any(|l| l.value() == op)))
        .map(|(_, value)| match value {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

// One test per binary: the recorder is process-global.
#[tokio::test]
async fn the_layer_counts_sessions_and_store_operations() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let store = Probe::new(MemoryStore::default());
    let layer = SessionLayer::builder(store.clone())
        .key(Key::from_secret(&[5; 32]).unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/write",
            post(|s: Session| async move { s.insert("x", 1).unwrap() }),
        )
        .route(
            "/read",
            get(|s: Session| async move { s.get_value("x").is_some().to_string() }),
        )
        .route("/destroy", post(|s: Session| async move { s.destroy() }))
        .layer(layer);
    let mut client = Client::new(app);

    client.post("/write", "").await; // created
    client.get("/read").await; // loaded
    client.post("/write", "").await; // loaded + saved
    client.post("/destroy", "").await; // loaded + destroyed
    store.set_failing(true);
    client.post("/write", "").await; // a new session: create fails
    store.set_failing(false);

    let snapshot = snapshotter.snapshot().into_vec();
    let snapshot: Vec<(CompositeKey, DebugValue)> =
        snapshot.into_iter().map(|(k, _, _, v)| (k, v)).collect();
    assert_eq!(
        counter(&snapshot, "cloakroom_sessions_created_total", None),
        1
    );
    assert_eq!(
        counter(&snapshot, "cloakroom_sessions_loaded_total", None),
        3
    );
    assert_eq!(
        counter(&snapshot, "cloakroom_sessions_saved_total", None),
        1
    );
    assert_eq!(
        counter(&snapshot, "cloakroom_sessions_destroyed_total", None),
        1
    );
    assert_eq!(
        counter(&snapshot, "cloakroom_store_errors_total", Some("create")),
        1
    );
    let histograms = snapshot
        .iter()
        .filter(|(key, _)| {
            key.kind() == MetricKind::Histogram && key.key().name() == "cloakroom_store_seconds"
        })
        .count();
    assert!(
        histograms >= 4,
        "latency recorded per operation kind, got {histograms}"
    );
}
