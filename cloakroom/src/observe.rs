//! Metrics through the `metrics` facade (feature `metrics`); without the feature every function
//! here compiles to nothing.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `cloakroom_sessions_created_total` | counter | |
//! | `cloakroom_sessions_loaded_total` | counter | |
//! | `cloakroom_sessions_saved_total` | counter | |
//! | `cloakroom_sessions_destroyed_total` | counter | |
//! | `cloakroom_store_errors_total` | counter | `op` |
//! | `cloakroom_store_seconds` | histogram | `op` |
//!
//! `op` is one of `load`, `create`, `save`, `rotate`, `delete`.

use std::future::Future;

use crate::error::StoreError;

#[derive(Clone, Copy)]
pub(crate) enum Event {
    Created,
    Loaded,
    Saved,
    Destroyed,
}

#[cfg(feature = "metrics")]
pub(crate) fn count(event: Event) {
    let name = match event {
        Event::Created => "cloakroom_sessions_created_total",
        Event::Loaded => "cloakroom_sessions_loaded_total",
        Event::Saved => "cloakroom_sessions_saved_total",
        Event::Destroyed => "cloakroom_sessions_destroyed_total",
    };
    metrics::counter!(name).increment(1);
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn count(_: Event) {}

/// Runs one store operation, recording its latency and any error.
#[cfg(feature = "metrics")]
pub(crate) async fn timed<T>(
    op: &'static str,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let start = std::time::Instant::now();
    let result = operation.await;
    metrics::histogram!("cloakroom_store_seconds", "op" => op)
        .record(start.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("cloakroom_store_errors_total", "op" => op).increment(1);
    }
    result
}

#[cfg(not(feature = "metrics"))]
pub(crate) async fn timed<T>(
    _op: &'static str,
    operation: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    operation.await
}
