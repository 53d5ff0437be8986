//! The store conformance suite: the executable form of the `Store` contract.
//!
//! Every store runs every case through `conformance_suite!(factory)`, where `factory` is an async
//! expression giving `Option<Harness>` (`None` when the store's service is unreachable and the
//! case is skipped, see `support::skip`). Each case gets its own harness, so stores isolate cases by
//! table name or key prefix and they run in parallel.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cloakroom::{
    Clock, Data, Key, ManualClock, Patch, Record, SessionHash, SessionLayer, Store, StoreError,
    Timestamp,
};

use serde_json::Value;

mod layer;
mod probed;
mod races;
mod store;

// Unused in test programs that borrow the helpers without running the suite.
#[allow(unused_imports)]
pub use {layer::*, probed::*, races::*, store::*};

type Cleanup = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;
type NativeExpiry =
    Arc<dyn Fn(SessionHash) -> Pin<Box<dyn Future<Output = Timestamp> + Send>> + Send + Sync>;
type AtRest = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;

/// One store under test, with the clock the case should use.
pub struct Harness {
    pub store: Arc<dyn Store>,
    /// Every case runs on this clock, stores with native TTL included: they also treat a record
    /// as gone once `now` passes its expiry, so no case sleeps to see expiry.
    clock: ManualClock,
    reports: Reports,
    /// Everything the store holds for this case, as bytes (rows, keys and values, files).
    at_rest: Option<AtRest>,
    /// When the server itself will drop a session (Redis TTL), for stores that expire natively.
    native_expiry: Option<NativeExpiry>,
    cleanup: Option<Cleanup>,
}

/// What a store's `stats` reports beyond the live count (the README's "Stores" section lists
/// it per store). The stats case holds each store to exactly this: what it claims is right, and
/// what it does not claim stays empty.
#[derive(Clone, Copy, Debug)]
pub struct Reports {
    pub expired: bool,
    pub top_users: bool,
    pub oldest_newest: bool,
    pub data_bytes: bool,
}

impl Reports {
    pub const LIVE_ONLY: Self = Self {
        expired: false,
        top_users: false,
        oldest_newest: false,
        data_bytes: false,
    };
    pub const ALL: Self = Self {
        expired: true,
        top_users: true,
        oldest_newest: true,
        data_bytes: true,
    };
}

impl Harness {
    /// A store whose `stats` knows only the live count (the trait's default).
    pub fn new(store: impl Store) -> Self {
        Self {
            store: Arc::new(store),
            clock: ManualClock::new(),
            reports: Reports::LIVE_ONLY,
            at_rest: None,
            native_expiry: None,
            cleanup: None,
        }
    }

    /// What the store's `stats` reports.
    pub fn reports(mut self, reports: Reports) -> Self {
        self.reports = reports;
        self
    }

    /// For stores that also expire records by the server's own clock (Redis TTL): the cases'
    /// clock starts a day ahead, so no record vanishes natively while a slow machine runs the
    /// case. Native TTLs have tests of their own.
    pub fn native_ttl(self) -> Self {
        self.clock.advance(Duration::from_secs(24 * 3600));
        self
    }

    /// How to read everything the store holds, as an attacker with a copy of it would.
    pub fn at_rest<F, Fut>(mut self, dump: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<u8>> + Send + 'static,
    {
        self.at_rest = Some(Arc::new(move || Box::pin(dump())));
        self
    }

    /// How to read when the server itself will drop the session filed under a hash.
    pub fn native_expiry<F, Fut>(mut self, expiry: F) -> Self
    where
        F: Fn(SessionHash) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Timestamp> + Send + 'static,
    {
        self.native_expiry = Some(Arc::new(move |hash| Box::pin(expiry(hash))));
        self
    }

    /// Runs `cleanup` after the case (drop tables, delete key prefixes).
    pub fn on_cleanup<F, Fut>(mut self, cleanup: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.cleanup = Some(Box::new(move || Box::pin(cleanup())));
        self
    }

    pub async fn finish(mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup().await;
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// A layer over this harness's store, on the harness's clock.
    pub fn layer(&self, key: Key) -> SessionLayer {
        SessionLayer::builder(Arc::clone(&self.store))
            .key(key)
            .clock(self.clock.clone())
            .build()
            .expect("valid configuration")
    }
}

/// Skips the case when `service` is not listening (see `support::skip`); fails on any other
/// error, and whenever services are required (CI).
pub fn skip(service: &str, url: &str, error: &StoreError) -> Option<Harness> {
    crate::support::skip_unreachable(service, url, error);
    None
}

/// Every case against a server-side store. (Sealed cookies are not a store; their own tests are
/// in `cookie_store.rs`.)
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@store_cases @run $factory;);
        $crate::conformance_suite!(@run $factory;
            layer_keeps_all_twenty_concurrent_keys,
            layer_logout_beats_an_in_flight_write,
            two_layers_share_one_store
        );
    };
    (@store_cases @$mode:ident $($args:tt)*) => {
        $crate::conformance_suite!(@$mode $($args)*
            create_then_load_round_trips_every_json_type,
            create_fails_on_collision_and_keeps_the_original,
            load_of_unknown_hash_is_none,
            save_applies_patches_to_what_is_stored,
            concurrent_patches_to_different_keys_all_stick,
            save_touch_and_rotate_never_resurrect,
            expired_records_are_gone,
            touch_extends_the_deadline,
            rotate_moves_the_record_atomically,
            rotate_never_overwrites_a_live_record,
            delete_reports_whether_it_removed,
            user_index_lists_and_revokes,
            count_and_purge_only_touch_expired,
            stats_report_what_the_store_can_tell,
            round_trips_per_request_match_the_readme,
            tickets_never_rest_in_the_store,
            extended_deadline_stops_at_the_absolute_deadline,
            a_lifetime_shorter_than_the_idle_timeout_is_the_first_deadline,
            absolute_deadline_is_checked_at_load,
            login_racing_a_logout_leaves_no_session,
            login_racing_a_revocation_leaves_no_session,
            login_racing_a_save_keeps_the_saved_key,
            save_after_a_rotation_does_not_revive_the_old_ticket
        );
    };
    (@run $factory:expr; $($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            let Some(harness) = $factory.await else { return };
            $crate::conformance::$case(&harness).await;
            harness.finish().await;
        }
    )*};
}

pub fn data(value: Value) -> Data {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub fn hash(n: u8) -> SessionHash {
    // Distinct per process run so a store left dirty by a crashed run does not collide.
    let mut bytes = [0u8; 32];
    getrandom_fill(&mut bytes);
    bytes[0] = n;
    SessionHash::from_bytes(bytes)
}

fn getrandom_fill(bytes: &mut [u8; 32]) {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    for chunk in bytes.chunks_mut(8) {
        let word = RandomState::new().hash_one(0u8).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

pub fn record(h: &Harness, ttl: Duration, data: Value, user: Option<&str>) -> Record {
    let now = h.now();
    Record {
        data: self::data(data),
        user_id: user.map(str::to_owned),
        created_at: now,
        updated_at: now,
        expires_at: now.saturating_add(ttl),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn patch(h: &Harness) -> Patch {
    Patch {
        updated_at: h.now(),
        ..Patch::default()
    }
}

async fn data_of(h: &Harness, hash: &SessionHash) -> Option<Value> {
    h.store
        .load(hash, h.now())
        .await
        .expect("load")
        .map(|r| Value::Object(r.data))
}
