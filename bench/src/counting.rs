//! Store wrappers that count the operations each library asks of its store.
//!
//! The three libraries each have a store trait: cloakroom's `Store`, tower-sessions'
//! `SessionStore` and axum_session's `DatabasePool`. Each wrapper forwards every call unchanged
//! and adds one to a shared counter per call that reaches the store, so "store operations per
//! request" means the same thing for every library: calls that cross the store boundary.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use parking_lot::Mutex;

/// A shared count of store operations, and of the time spent in them.
///
/// The wrappers sit inside the measured request, so counting must cost the library next to
/// nothing: each thread adds to its own cache line (one shared counter would make the runtime's
/// threads take turns at it on every store call), and only one call in [`TIMED_EVERY`] reads
/// the clock, its time standing for the calls in between.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<Counts>);

/// One call in this many is timed.
const TIMED_EVERY: u64 = 8;

/// Threads share slots only beyond this many.
const SLOTS: usize = 16;

#[derive(Debug, Default)]
struct Counts {
    slots: [Slot; SLOTS],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    ops: AtomicU64,
    nanos: AtomicU64,
}

thread_local! {
    static SLOT: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS
    };
}

impl Counter {
    /// Operations so far.
    pub fn get(&self) -> u64 {
        self.0
            .slots
            .iter()
            .map(|s| s.ops.load(Ordering::Relaxed))
            .sum()
    }

    /// Nanoseconds spent inside store operations so far (summed over concurrent calls),
    /// estimated from the timed calls.
    pub fn nanos(&self) -> u64 {
        self.0
            .slots
            .iter()
            .map(|s| s.nanos.load(Ordering::Relaxed))
            .sum()
    }

    /// Runs one store operation, counting it and (one time in [`TIMED_EVERY`]) its time.
    async fn timed<T>(&self, operation: impl Future<Output = T>) -> T {
        let slot = &self.0.slots[SLOT.with(|s| *s)];
        let before = slot.ops.fetch_add(1, Ordering::Relaxed);
        if before % TIMED_EVERY != 0 {
            return operation.await;
        }
        let started = Instant::now();
        let result = operation.await;
        let nanos = started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        slot.nanos
            .fetch_add(nanos.saturating_mul(TIMED_EVERY), Ordering::Relaxed);
        result
    }
}

/// cloakroom's `Store`, counted.
pub mod cloakroom_store {
    use super::*;
    use cloakroom::{Patch, Record, SessionHash, Store, StoreError, StoreStats, Timestamp};

    pub struct Counted {
        pub inner: Arc<dyn Store>,
        pub ops: Counter,
    }

    impl Counted {
        /// The store itself: calling through `Arc<dyn Store>` would take the forwarding impl
        /// for `Arc<S>` and box every store future twice.
        fn store(&self) -> &dyn Store {
            &*self.inner
        }
    }

    #[async_trait]
    impl Store for Counted {
        fn name(&self) -> &'static str {
            self.store().name()
        }
        async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
            self.ops.timed(self.store().create(hash, record)).await
        }
        async fn load(
            &self,
            hash: &SessionHash,
            now: Timestamp,
        ) -> Result<Option<Record>, StoreError> {
            self.ops.timed(self.store().load(hash, now)).await
        }
        async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
            self.ops.timed(self.store().save(hash, patch)).await
        }
        async fn touch(
            &self,
            hash: &SessionHash,
            expires_at: Timestamp,
            now: Timestamp,
        ) -> Result<bool, StoreError> {
            self.ops
                .timed(self.store().touch(hash, expires_at, now))
                .await
        }
        async fn rotate(
            &self,
            old: &SessionHash,
            new: &SessionHash,
            patch: &Patch,
        ) -> Result<bool, StoreError> {
            self.ops.timed(self.store().rotate(old, new, patch)).await
        }
        async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
            self.ops.timed(self.store().delete(hash)).await
        }
        async fn list_user(
            &self,
            user_id: &str,
            now: Timestamp,
        ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
            self.ops.timed(self.store().list_user(user_id, now)).await
        }
        async fn revoke_user(
            &self,
            user_id: &str,
            except: Option<&SessionHash>,
        ) -> Result<u64, StoreError> {
            self.ops
                .timed(self.store().revoke_user(user_id, except))
                .await
        }
        async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
            self.store().count(now).await
        }
        async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
            self.store().purge_expired(now, limit).await
        }
        async fn migrate(&self) -> Result<(), StoreError> {
            self.store().migrate().await
        }
        async fn stats(&self, now: Timestamp, top_users: usize) -> Result<StoreStats, StoreError> {
            self.store().stats(now, top_users).await
        }
    }
}

/// tower-sessions' `SessionStore`, counted. Optionally remembers the ids it created, so that
/// records in a shared Redis (where this store has no key prefix) can be deleted afterwards.
pub mod tower_store {
    use super::*;
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::Result;

    #[derive(Clone)]
    pub struct Counted<S> {
        pub inner: S,
        pub ops: Counter,
        pub created: Option<Arc<Mutex<Vec<Id>>>>,
    }

    impl<S: fmt::Debug> fmt::Debug for Counted<S> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Counted")
                .field("inner", &self.inner)
                .finish()
        }
    }

    #[async_trait]
    impl<S: SessionStore + Clone> SessionStore for Counted<S> {
        async fn create(&self, record: &mut Record) -> Result<()> {
            self.ops.timed(self.inner.create(record)).await?;
            if let Some(created) = &self.created {
                created.lock().push(record.id);
            }
            Ok(())
        }
        async fn save(&self, record: &Record) -> Result<()> {
            self.ops.timed(self.inner.save(record)).await
        }
        async fn load(&self, id: &Id) -> Result<Option<Record>> {
            self.ops.timed(self.inner.load(id)).await
        }
        async fn delete(&self, id: &Id) -> Result<()> {
            self.ops.timed(self.inner.delete(id)).await
        }
    }
}

/// axum_session's `DatabasePool`, counted. Its in-memory layer in front of the pool is part of
/// the library, so only calls that reach the database count.
pub mod axum_pool {
    use super::*;
    use axum_session::{DatabaseError, DatabasePool};

    #[derive(Clone)]
    pub struct Counted<P> {
        pub inner: P,
        pub ops: Counter,
    }

    impl<P> fmt::Debug for Counted<P> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Counted")
        }
    }

    #[async_trait]
    impl<P: DatabasePool + Send + Sync> DatabasePool for Counted<P> {
        async fn initiate(&self, table_name: &str) -> Result<(), DatabaseError> {
            self.inner.initiate(table_name).await
        }
        async fn count(&self, table_name: &str) -> Result<i64, DatabaseError> {
            self.ops.timed(self.inner.count(table_name)).await
        }
        async fn store(
            &self,
            id: &str,
            session: &str,
            expires: i64,
            table_name: &str,
        ) -> Result<(), DatabaseError> {
            self.ops
                .timed(self.inner.store(id, session, expires, table_name))
                .await
        }
        async fn load(&self, id: &str, table_name: &str) -> Result<Option<String>, DatabaseError> {
            self.ops.timed(self.inner.load(id, table_name)).await
        }
        async fn delete_one_by_id(&self, id: &str, table_name: &str) -> Result<(), DatabaseError> {
            self.ops
                .timed(self.inner.delete_one_by_id(id, table_name))
                .await
        }
        async fn exists(&self, id: &str, table_name: &str) -> Result<bool, DatabaseError> {
            self.ops.timed(self.inner.exists(id, table_name)).await
        }
        async fn delete_by_expiry(&self, table_name: &str) -> Result<Vec<String>, DatabaseError> {
            self.ops
                .timed(self.inner.delete_by_expiry(table_name))
                .await
        }
        async fn delete_all(&self, table_name: &str) -> Result<(), DatabaseError> {
            self.ops.timed(self.inner.delete_all(table_name)).await
        }
        async fn get_ids(&self, table_name: &str) -> Result<Vec<String>, DatabaseError> {
            self.ops.timed(self.inner.get_ids(table_name)).await
        }
        fn auto_handles_expiry(&self) -> bool {
            self.inner.auto_handles_expiry()
        }
    }
}
