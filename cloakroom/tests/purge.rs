//! The background purge: what it deletes, how it lives through store failures, how it stops.
//! Time is tokio's paused clock (for the schedule) plus a `ManualClock` (for expiry): no test
//! sleeps for real.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cloakroom::{
    Clock, ManualClock, MemoryStore, Patch, Purger, Record, SessionHash, Store, StoreError,
    StoreStats, Timestamp,
};
use support::Probe;

const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);

fn hash(n: u32) -> SessionHash {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    bytes[31] = 0xa5;
    SessionHash::from_bytes(bytes)
}

fn record(now: Timestamp, expires_at: Timestamp) -> Record {
    Record {
        data: serde_json::Map::from_iter([("k".to_owned(), serde_json::json!(1))]),
        user_id: None,
        created_at: now,
        updated_at: now,
        expires_at,
    }
}

/// Stores `count` sessions numbered from `first` that expire `ttl` after the clock's now (a
/// negative offset is written as already expired).
async fn fill(
    store: &dyn Store,
    clock: &ManualClock,
    first: u32,
    count: u32,
    ttl: Option<Duration>,
) {
    let now = clock.now();
    let expires_at = match ttl {
        Some(ttl) => now.saturating_add(ttl),
        None => Timestamp::from_unix_millis(now.as_unix_millis() - 1_000),
    };
    for n in first..first + count {
        store
            .create(&hash(n), &record(now, expires_at))
            .await
            .unwrap();
    }
}

async fn stats(store: &MemoryStore, clock: &ManualClock) -> (u64, u64) {
    let StoreStats { live, expired, .. } = store.stats(clock.now(), 0).await.unwrap();
    (live, expired.unwrap())
}

/// Lets the purger task run (in paused time, sleeping advances the clock to the next timer).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn purges_only_expired_sessions_on_schedule() {
    let clock = ManualClock::new();
    let store = Arc::new(MemoryStore::default());
    fill(store.as_ref(), &clock, 0, 5, Some(60 * MIN)).await;
    fill(store.as_ref(), &clock, 100, 5, Some(30 * SEC)).await;
    fill(store.as_ref(), &clock, 200, 7, None).await;
    assert_eq!(stats(&store, &clock).await, (10, 7));

    let purger = Purger::new(Arc::clone(&store))
        .interval(MIN)
        .clock(clock.clone())
        .spawn();
    settle().await;
    // The first run happens at once and takes only the expired ones.
    assert_eq!(stats(&store, &clock).await, (10, 0));
    for n in 0..5 {
        assert!(store.load(&hash(n), clock.now()).await.unwrap().is_some());
        assert!(
            store
                .load(&hash(100 + n), clock.now())
                .await
                .unwrap()
                .is_some()
        );
    }

    // Thirty-one seconds later five more have expired; they stay until the next run.
    clock.advance(31 * SEC);
    tokio::time::sleep(31 * SEC).await;
    assert_eq!(stats(&store, &clock).await, (5, 5));
    tokio::time::sleep(30 * SEC).await;
    assert_eq!(stats(&store, &clock).await, (5, 0));

    purger.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn purges_in_batches_until_one_comes_back_short() {
    let clock = ManualClock::new();
    let probe = Probe::new(MemoryStore::default());
    fill(probe.inner.as_ref(), &clock, 0, 20, None).await;
    fill(probe.inner.as_ref(), &clock, 100, 3, Some(MIN)).await;

    let purger = Purger::new(probe.clone())
        .batch(10)
        .clock(clock.clone())
        .spawn();
    settle().await;
    // 10, 10, then 0 (short): three calls, all 20 gone.
    assert_eq!(probe.writes(), 3);
    assert_eq!(stats(&probe.inner, &clock).await, (3, 0));
    purger.shutdown().await;

    // `purge_once` is the same run, for callers with their own schedule.
    fill(probe.inner.as_ref(), &clock, 200, 25, None).await;
    let purger = Purger::new(probe.clone()).batch(10).clock(clock.clone());
    assert_eq!(purger.purge_once().await.unwrap(), 25);
    assert_eq!(purger.purge_once().await.unwrap(), 0);
    assert_eq!(stats(&probe.inner, &clock).await, (3, 0));
}

#[tokio::test(start_paused = true)]
async fn keeps_going_through_store_failures_with_backoff() {
    let clock = ManualClock::new();
    let probe = Probe::new(MemoryStore::default());
    fill(probe.inner.as_ref(), &clock, 0, 4, None).await;
    fill(probe.inner.as_ref(), &clock, 100, 2, Some(60 * MIN)).await;
    probe.set_failing(true);

    let start = tokio::time::Instant::now();
    let purger = Purger::new(probe.clone())
        .interval(10 * MIN)
        .backoff(SEC, 8 * SEC)
        .clock(clock.clone())
        .spawn();
    // Attempts at 0, 1, 3, 7, 15, 23, 31, 39 s: the waits double up to the 8 s cap.
    tokio::time::sleep_until(start + Duration::from_millis(39_500)).await;
    assert_eq!(probe.ops(), 8);
    assert!(
        !purger.is_finished(),
        "the purger gave up on a transient error"
    );
    assert_eq!(stats(&probe.inner, &clock).await, (2, 4));

    // The store comes back: the next attempt (at 47 s) purges, and the schedule returns to the
    // ten-minute interval.
    probe.set_failing(false);
    tokio::time::sleep_until(start + Duration::from_millis(47_500)).await;
    assert_eq!(probe.ops(), 9);
    assert_eq!(stats(&probe.inner, &clock).await, (2, 0));
    tokio::time::sleep(9 * MIN).await;
    assert_eq!(
        probe.ops(),
        9,
        "after recovery it must wait a full interval"
    );
    tokio::time::sleep(MIN).await;
    assert_eq!(probe.ops(), 10);

    // A new failure starts the backoff from the beginning again.
    probe.set_failing(true);
    tokio::time::sleep(10 * MIN).await;
    let before = probe.ops();
    tokio::time::sleep(SEC + Duration::from_millis(10)).await;
    assert_eq!(probe.ops(), before + 1);
    purger.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_prompt_and_final() {
    let clock = ManualClock::new();
    let probe = Probe::new(MemoryStore::default());
    let purger = Purger::new(probe.clone())
        .interval(MIN)
        .clock(clock.clone())
        .spawn();
    settle().await;
    assert_eq!(probe.ops(), 1);

    // While asleep between runs.
    let began = tokio::time::Instant::now();
    purger.shutdown().await;
    assert_eq!(
        tokio::time::Instant::now(),
        began,
        "shutdown waited for a timer"
    );
    tokio::time::sleep(10 * MIN).await;
    assert_eq!(probe.ops(), 1, "the purger ran after shutdown");

    // Dropping the handle stops it as well.
    let purger = Purger::new(probe.clone()).interval(MIN).spawn();
    settle().await;
    drop(purger);
    tokio::time::sleep(10 * MIN).await;
    assert_eq!(probe.ops(), 2);
}

/// A store whose `purge_expired` hangs forever or refuses; everything else is the memory store.
struct Scripted {
    inner: MemoryStore,
    mode: AtomicU8,
    purges: AtomicUsize,
}

const HANG: u8 = 0;
const UNSUPPORTED: u8 = 1;

impl Scripted {
    fn new(mode: u8) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::default(),
            mode: AtomicU8::new(mode),
            purges: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Store for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        self.inner.create(hash, record).await
    }
    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        self.inner.load(hash, now).await
    }
    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.inner.save(hash, patch).await
    }
    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        self.inner.rotate(old, new, patch).await
    }
    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        self.inner.delete(hash).await
    }
    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        self.inner.list_user(user_id, now).await
    }
    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        self.inner.revoke_user(user_id, except).await
    }
    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.count(now).await
    }
    async fn purge_expired(&self, _now: Timestamp, _limit: usize) -> Result<u64, StoreError> {
        self.purges.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            HANG => std::future::pending().await,
            _ => Err(StoreError::Unsupported {
                store: "scripted",
                operation: "purge_expired",
                why: "it keeps nothing on the server",
            }),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_a_hanging_store() {
    let store = Scripted::new(HANG);
    let purger = Purger::new(Arc::clone(&store)).spawn();
    settle().await;
    assert_eq!(store.purges.load(Ordering::SeqCst), 1);
    tokio::time::timeout(SEC, purger.shutdown())
        .await
        .expect("shutdown waited for the hanging batch");
}

#[tokio::test(start_paused = true)]
async fn stops_by_itself_when_the_store_cannot_purge() {
    let store = Scripted::new(UNSUPPORTED);
    let purger = Purger::new(Arc::clone(&store)).interval(MIN).spawn();
    settle().await;
    assert!(purger.is_finished());
    tokio::time::sleep(10 * MIN).await;
    assert_eq!(store.purges.load(Ordering::SeqCst), 1);
    purger.shutdown().await;
}
