//! The background purge: deletes expired sessions from stores that do not expire them natively.
//!
//! SQL and file stores keep an expired record (invisible to every call) until
//! [`Store::purge_expired`] deletes it. [`Purger`] calls it on a schedule, in batches, from a
//! tokio task; the cost of a run grows with the number of expired records, not the table size.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::error::StoreError;
use crate::store::Store;
use crate::time::{Clock, SystemClock, Timestamp};

/// How often a [`Purger`] runs unless configured.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How many records a [`Purger`] deletes per store call unless configured.
pub const DEFAULT_PURGE_BATCH: usize = 1_000;
/// The first wait after a failed run unless configured; it doubles on every further failure.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts while the store keeps failing, unless configured.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// Deletes expired sessions periodically, in the background.
///
/// Every run deletes batches of up to [`batch`](Self::batch) records until a batch comes back
/// short, then the purger sleeps for [`interval`](Self::interval). When the store fails, the
/// purger logs a warning and tries again after a backoff that doubles on each consecutive failure
/// (from [`DEFAULT_INITIAL_BACKOFF`] up to [`DEFAULT_MAX_BACKOFF`]); the first success resets it.
/// It stops only when told to ([`PurgeHandle::shutdown`], or dropping the handle), or when the
/// store cannot purge at all ([`StoreError::Unsupported`]).
///
/// Stores with native expiry (Redis) or bounded memory need no purger; running one is harmless.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cloakroom::{MemoryStore, Purger, SessionLayer, Store};
///
/// let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
/// let layer = SessionLayer::new(Arc::clone(&store));
/// let purger = Purger::new(store)
///     .interval(Duration::from_secs(60))
///     .batch(5_000)
///     .spawn();
/// // … serve requests through `layer` …
/// purger.shutdown().await;
/// # drop(layer);
/// # }
/// ```
#[must_use]
pub struct Purger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    batch: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for Purger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger")
            .field("store", &self.store.name())
            .field("interval", &self.interval)
            .field("batch", &self.batch)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

impl Purger {
    /// A purger over `store` with the default schedule. Pass the same store as the layer's,
    /// e.g. `Arc::clone(layer.store().expect("a server-side store"))`; an `Arc<dyn Store>` is
    /// used as it is, not wrapped again.
    pub fn new(store: impl Store) -> Self {
        Self {
            store: crate::store::shared(store),
            clock: Arc::new(SystemClock),
            interval: DEFAULT_PURGE_INTERVAL,
            batch: DEFAULT_PURGE_BATCH,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }

    /// How long to wait after a successful run before the next one (default 5 minutes). A zero
    /// interval is raised to one millisecond so the task never spins.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many records one store call deletes at most (default 1000; at least 1). Larger
    /// batches purge a backlog faster; smaller ones hold the store's locks for less time.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The clock that decides what has expired (default: the system clock). It should be the
    /// layer's clock; tests pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The wait after the first failure (default 1 second) and the longest wait while failures
    /// go on (default 5 minutes). The wait doubles with every consecutive failure.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.initial_backoff);
        self
    }

    /// Deletes every record expired now, batch after batch, and returns how many went. This is
    /// one run of the background task, for callers with their own scheduler.
    ///
    /// On error, the batches deleted before it stay deleted; calling again resumes.
    pub async fn purge_once(&self) -> Result<u64, StoreError> {
        let run = self.run(self.clock.now()).await;
        match run.error {
            None => Ok(run.purged),
            Some(error) => Err(error),
        }
    }

    /// Starts purging in a tokio task: a first run at once, then one per interval.
    ///
    /// # Panics
    ///
    /// If called outside a tokio runtime (like [`tokio::spawn`]).
    pub fn spawn(self) -> PurgeHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run_forever(stopped));
        PurgeHandle { stop, task }
    }

    /// The task's body: runs until told to stop or until purging is impossible.
    async fn run_forever(self, mut stopped: watch::Receiver<bool>) {
        let store = self.store.name();
        let mut failures: u32 = 0;
        tracing::debug!(store, interval = ?self.interval, batch = self.batch,
            "cloakroom: background purge started");
        loop {
            let now = self.clock.now();
            let run = tokio::select! {
                // A batch is one atomic store call, so abandoning it mid-flight leaves the
                // store either purged or not: both are fine.
                _ = stop_requested(&mut stopped) => break,
                run = self.run(now) => run,
            };
            let wait = match run.error {
                None => {
                    if failures > 0 {
                        tracing::info!(store, failures, "cloakroom: purge works again");
                    }
                    failures = 0;
                    self.interval
                }
                Some(error @ StoreError::Unsupported { .. }) => {
                    tracing::error!(%error, store, "cloakroom: this store cannot purge; the background purge stops");
                    return;
                }
                Some(error) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(self.initial_backoff, self.max_backoff, failures);
                    tracing::warn!(%error, store, failures, retry_in = ?wait, purged = run.purged,
                        "cloakroom: purging expired sessions failed; will retry");
                    wait
                }
            };
            tokio::select! {
                _ = stop_requested(&mut stopped) => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!(store, "cloakroom: background purge stopped");
    }

    /// Purges batches of records expired at `now` until one comes back short or fails.
    async fn run(&self, now: Timestamp) -> Run {
        let store = self.store.name();
        let span = tracing::info_span!("cloakroom.purge", store, batch = self.batch);
        async {
            let mut run = Run::default();
            let limit = u64::try_from(self.batch).unwrap_or(u64::MAX);
            loop {
                match self.store.purge_expired(now, self.batch).await {
                    Ok(purged) => {
                        run.purged = run.purged.saturating_add(purged);
                        if purged < limit {
                            break;
                        }
                    }
                    Err(error) => {
                        run.error = Some(error);
                        break;
                    }
                }
            }
            if run.purged > 0 {
                tracing::info!(purged = run.purged, "cloakroom: purged expired sessions");
            } else {
                tracing::debug!("cloakroom: no expired sessions to purge");
            }
            run
        }
        .instrument(span)
        .await
    }
}

/// The outcome of one run: what was deleted before it finished or failed.
#[derive(Default)]
struct Run {
    purged: u64,
    error: Option<StoreError>,
}

/// Resolves when the handle asks to stop or is dropped.
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // `wait_for` fails only when the sender is gone: the handle was dropped, which means stop too.
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// `initial · 2^(failures − 1)`, at most `max`.
fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    initial.saturating_mul(factor).min(max)
}

/// Controls a running [`Purger`]. Dropping it stops the purger too, without waiting.
#[derive(Debug)]
pub struct PurgeHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PurgeHandle {
    /// Stops the purger and waits until it has stopped. A batch in flight is abandoned (each is
    /// one atomic store call, so nothing is half-done), so this returns promptly even while the
    /// store hangs.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            if error.is_panic() {
                tracing::error!(%error, "cloakroom: the background purge task panicked");
            }
        }
    }

    /// Whether the purger has stopped (after [`shutdown`](Self::shutdown), or because the store
    /// cannot purge).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        let waits: Vec<_> = (1..=6).map(|n| backoff(s(1), s(10), n)).collect();
        assert_eq!(waits, [s(1), s(2), s(4), s(8), s(10), s(10)]);
        assert_eq!(backoff(s(1), s(300), u32::MAX), s(300));
    }
}
