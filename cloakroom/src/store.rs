//! The store contract: what every session store promises.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

/// A place to keep sessions.
///
/// The layer is the only writer in normal operation; the admin CLI and your own code may call the
/// per-user and maintenance methods directly. Every store passes the same conformance suite
/// (`cloakroom/tests/conformance`), which is the executable form of this contract:
///
/// - **Keyed by hash.** Records are filed under the [`SessionHash`] of the ticket, never the
///   ticket, so a leaked store yields no usable cookie.
/// - **Expiry.** A record whose `expires_at` is not after `now` is gone: `load` returns `None` and
///   `save`/`touch`/`rotate` do nothing and return `false`. Stores remove such records natively
///   (TTL) or through [`Store::purge_expired`].
/// - **Atomic create.** [`Store::create`] fails with [`StoreError::Collision`] when the hash
///   exists; it never overwrites.
/// - **Patches, not overwrites.** [`Store::save`] applies a [`Patch`] to what is stored *now*, in
///   one atomic step, so concurrent requests changing different keys both keep their change.
/// - **No resurrection.** `save`, `touch` and `rotate` never create a record that is missing:
///   they return `Ok(false)`, so a request in flight during logout cannot bring the session back.
/// - **Atomic rotation.** [`Store::rotate`] moves a record to a new hash and applies a patch in
///   one step; afterwards the old hash is gone.
/// - **Per-user index.** Sessions bound to a user can be listed and revoked.
/// - **Errors, not panics.** An unreachable store returns [`StoreError::Unavailable`]; a record
///   that cannot be decoded returns [`StoreError::Corrupt`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and errors, e.g. `"memory"` or `"postgres"`.
    fn name(&self) -> &'static str;

    /// Stores a new record. Fails with [`StoreError::Collision`] if `hash` is taken (even by an
    /// expired record that has not been purged yet, unless the store can replace it atomically).
    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError>;

    /// The live record under `hash`, or `None` if there is none or it has expired at `now`.
    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError>;

    /// Applies `patch` atomically to the live record under `hash`. Returns `false`, changing
    /// nothing, if there is no live record at `patch.updated_at`.
    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError>;

    /// Moves the expiry of the live record under `hash`. Returns `false` if there is none.
    async fn touch(
        &self,
        hash: &SessionHash,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.save(hash, &Patch::touch(expires_at, now)).await
    }

    /// Atomically moves the live record under `old` to `new` and applies `patch` to it. Returns
    /// `false`, changing nothing, if there is no live record under `old`.
    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError>;

    /// Deletes the record under `hash`; `true` if there was one.
    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError>;

    /// The live sessions bound to `user_id`, oldest first.
    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError>;

    /// Deletes every session bound to `user_id` except `except`; returns how many went.
    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError>;

    /// The number of live sessions at `now`.
    async fn count(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Deletes up to `limit` records that expired at `now`; returns how many went. Call again
    /// until it returns less than `limit` to purge everything.
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError>;

    /// Creates the schema if it is missing, or checks it. Idempotent; stores without a schema
    /// do nothing.
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Figures for operators. The default knows only the live count; stores fill in what they
    /// can tell cheaply (`None` or empty where they cannot).
    async fn stats(&self, now: Timestamp, top_users: usize) -> Result<StoreStats, StoreError> {
        let _ = top_users;
        Ok(StoreStats {
            live: self.count(now).await?,
            ..StoreStats::default()
        })
    }
}

/// What a store can tell about its sessions, for `cloakroom stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreStats {
    /// Live sessions.
    pub live: u64,
    /// Expired sessions not purged yet (`None` where the store expires them natively).
    pub expired: Option<u64>,
    /// Users with the most live sessions, most first.
    pub top_users: Vec<(String, u64)>,
    /// Creation time of the oldest live session.
    pub oldest: Option<Timestamp>,
    /// Creation time of the newest live session.
    pub newest: Option<Timestamp>,
    /// Size of live sessions' serialized data, in bytes.
    pub data_bytes: Option<Percentiles>,
}

/// A distribution summarized by its percentiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Percentiles of `values` (sorted here); `None` when there are none.
    pub fn of(mut values: Vec<u64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let at = |q: usize| values[(values.len() - 1) * q / 100];
        Some(Self {
            p50: at(50),
            p90: at(90),
            p99: at(99),
            max: values[values.len() - 1],
        })
    }
}

/// `store` behind one `Arc<dyn Store>`. Wrapping an `Arc<dyn Store>` in another `Arc` would send
/// every call through the forwarding impl, which boxes each future a second time.
pub(crate) fn shared<S: Store>(store: S) -> Arc<dyn Store> {
    match (&store as &dyn Any).downcast_ref::<Arc<dyn Store>>() {
        Some(shared) => Arc::clone(shared),
        None => Arc::new(store),
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<S: Store + ?Sized> Store for $ty {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
                (**self).create(hash, record).await
            }
            async fn load(
                &self,
                hash: &SessionHash,
                now: Timestamp,
            ) -> Result<Option<Record>, StoreError> {
                (**self).load(hash, now).await
            }
            async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
                (**self).save(hash, patch).await
            }
            async fn touch(
                &self,
                hash: &SessionHash,
                expires_at: Timestamp,
                now: Timestamp,
            ) -> Result<bool, StoreError> {
                (**self).touch(hash, expires_at, now).await
            }
            async fn rotate(
                &self,
                old: &SessionHash,
                new: &SessionHash,
                patch: &Patch,
            ) -> Result<bool, StoreError> {
                (**self).rotate(old, new, patch).await
            }
            async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
                (**self).delete(hash).await
            }
            async fn list_user(
                &self,
                user_id: &str,
                now: Timestamp,
            ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
                (**self).list_user(user_id, now).await
            }
            async fn revoke_user(
                &self,
                user_id: &str,
                except: Option<&SessionHash>,
            ) -> Result<u64, StoreError> {
                (**self).revoke_user(user_id, except).await
            }
            async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
                (**self).count(now).await
            }
            async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
                (**self).purge_expired(now, limit).await
            }
            async fn migrate(&self) -> Result<(), StoreError> {
                (**self).migrate().await
            }
            async fn stats(&self, now: Timestamp, top_users: usize) -> Result<StoreStats, StoreError> {
                (**self).stats(now, top_users).await
            }
        }
    )*};
}

// A store shared with the rest of the app (e.g. an admin page) is passed as `Arc<S>`.
forward_store!(Arc<S>, Box<S>);

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.name())
    }
}
