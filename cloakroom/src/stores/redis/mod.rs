//! The Redis store: sessions shared by many app instances, expired by Redis itself.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cloakroom::StoreError> {
//! use cloakroom::RedisStore;
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379/0?prefix=myapp").await?;
//! // or, from configuration: cloakroom::stores::connect("redis://…").await?
//! # Ok(()) }
//! ```
//!
//! The reasons behind the choices below, and the measurements that made them, are in
//! `docs/design.md` of the repository, section "Redis store".
//!
//! # Key layout
//!
//! With the default prefix `cloakroom` (set another with `?prefix=` or
//! [`RedisStore::with_prefix`]):
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `{cloakroom}:s:<64 hex digits>` | hash | one session, filed under the SHA-256 of its ticket | at the session's `expires_at` (`PEXPIREAT`) |
//! | `{cloakroom}:u:<user id>` | sorted set | the hashes of the user's sessions, scored by their `expires_at` | at the latest `expires_at` of its members |
//!
//! A session hash has one field per data key, `d:<key>`, holding the value as JSON text, and the
//! metadata fields `m:created`, `m:updated`, `m:expires` (Unix milliseconds) and `m:user`.
//! Because every data key is its own field, a patch touches only the fields it names and Redis
//! never has to parse JSON: big integers, empty arrays and objects and any Unicode round-trip
//! exactly.
//!
//! ## Why one hash tag for the whole store
//!
//! Redis Cluster puts a key in the slot of the part between its first `{` and `}`, and an atomic
//! operation (a script, `RENAME`) may only touch keys of one slot. The operations that must be
//! atomic here touch keys derived from *unrelated* values: a session key comes from a random
//! ticket, its index key from the user id, and rotation moves a session to the key of a fresh
//! random ticket. No tag built from the ticket or the user could put all of those in one slot, so
//! every key of a store carries the same tag, the prefix: a session, its user's index and the
//! session it rotates into always share a slot. Rotation, logout, revocation and rebinding stay
//! single atomic scripts, legal on Cluster (the scripts derive index keys from stored user ids,
//! which is allowed because they hash to the declared keys' slot).
//!
//! The trade-off: on a Cluster, one store lives on one shard (with its replicas). One Redis
//! primary runs these small scripts fast enough for most deployments; beyond that, give groups
//! of apps their own prefixes. Tagging each session separately (`…:s:{hash}`) would spread
//! sessions over shards but would make rotation and the user index non-atomic, which the
//! [`Store`] contract rules out.
//!
//! # Expiry
//!
//! Both timeouts are native: the layer caps `expires_at` at the absolute deadline, and every
//! write sets `PEXPIREAT` to it, so Redis deletes a session at its deadline on its own clock.
//! The record also keeps `m:expires`, and a record whose `expires_at` is not after the caller's
//! `now` is treated as gone, so the contract holds whichever clock runs ahead. An index key
//! expires with its longest-lived member; members whose session has gone are skipped and pruned
//! by [`Store::list_user`] and removed by [`Store::purge_expired`].
//!
//! # Round trips
//!
//! | request | commands |
//! |---|---|
//! | does not use the session | none |
//! | reads the session | `HGETALL` (plus the save script when the idle deadline is due to move) |
//! | writes the session | `HGETALL`, then the save script (a lean one when the write only sets keys) |
//! | new session | the create script (a lean one when no user is bound) |
//! | login with `cycle_id` | `HGETALL`, then the rotate script |
//! | logout (`destroy`) | `HGETALL`, then the delete script |
//!
//! Reads are a bare `HGETALL`, not a script: every script call has a fixed cost on the server,
//! several times that of a plain command, and Redis is the one process every app instance
//! shares, so its time per request is what limits a deployment.
//!
//! Writes are scripts, because a save must check, in the same atomic step, that the record is
//! live by the caller's clock, and leave a record that clock has expired untouched (see
//! [`Store::save`]). Each script is a Lua file with a typed Rust call site that builds its keys
//! and arguments; the lean variants skip the shared helpers, so the most frequent writes do not
//! pay for defining them.
//!
//! Scripts run with `EVALSHA`; the first call of each after Redis restarts costs two more round
//! trips (`NOSCRIPT`, `SCRIPT LOAD`). `count` and `purge_expired` walk the keyspace with `SCAN`
//! (never `KEYS`), one script call per batch: they are maintenance operations whose cost grows
//! with the database, and `count` may see a key twice while Redis resizes its table.
//!
//! # Outages
//!
//! The store holds one multiplexed connection (the redis crate's `ConnectionManager`), which
//! reconnects by itself after Redis restarts. Every operation is bounded by a timeout (2 s by
//! default, [`RedisStore::with_timeout`]); an unreachable or silent server yields
//! [`StoreError::Unavailable`] quickly, which the layer turns into a 503. An operation that times
//! out replaces the connection, so a connection that silently died (e.g. after a failover) is
//! not reused forever.

mod connection;
mod keys;
mod reply;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;

use self::connection::Connection;
use self::keys::Keys;
use self::reply::{decode, hash_fields};
use self::scripts::Rotated;
use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::store::Store;
use crate::stores::StoreUrl;
use crate::ticket::SessionHash;
use crate::time::Timestamp;

const NAME: &str = "redis";
/// The key prefix (and Cluster hash tag) used unless the URL or [`RedisStore::with_prefix`] says
/// otherwise.
pub const DEFAULT_PREFIX: &str = "cloakroom";
/// How long one store operation may take before it fails as unavailable, unless
/// [`RedisStore::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps sessions in Redis, with native expiry and a key layout ready for Redis Cluster.
///
/// See the [module documentation](self) for the key layout, its trade-off, and the commands each
/// kind of request costs.
pub struct RedisStore {
    connection: Connection,
    keys: Keys,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.connection.url)
            .field("prefix", &self.keys.prefix())
            .field("timeout", &self.connection.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis server at `url` and checks that it answers.
    ///
    /// `url` is `redis://[user:password@]host[:port][/db]`, optionally with `?prefix=name` to
    /// choose the key prefix (default [`DEFAULT_PREFIX`]). `rediss://` (TLS) needs TLS support
    /// compiled into the `redis` crate; without it this fails with a [`StoreError::Config`] that
    /// says how to enable it. Fails with [`StoreError::Unavailable`] when the server does not
    /// answer within [`DEFAULT_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_parsed(&StoreUrl::parse(url)?).await
    }

    async fn connect_parsed(url: &StoreUrl) -> Result<Self, StoreError> {
        let connection = Connection::open(url).await?;
        let keys = Keys::new(url.option("prefix").unwrap_or(DEFAULT_PREFIX))?;
        Ok(Self { connection, keys })
    }

    /// Files this store's keys under `prefix`, which also becomes their Redis Cluster hash tag:
    /// `{prefix}:s:…` and `{prefix}:u:…`.
    ///
    /// Stores with different prefixes on one Redis do not see each other's sessions. The prefix
    /// must be 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`, so it can neither end the
    /// hash tag early nor act as a wildcard in `SCAN` patterns.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, StoreError> {
        self.keys = Keys::new(prefix)?;
        Ok(self)
    }

    /// Bounds every store operation (default [`DEFAULT_TIMEOUT`]): an operation that takes
    /// longer fails with [`StoreError::Unavailable`], and the layer answers 503 instead of
    /// holding the request. Keep it well above Redis's normal latency; a zero timeout is raised
    /// to one millisecond.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.connection.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The key prefix (and Cluster hash tag) of this store.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The Redis key of the session filed under `hash`, e.g. to inspect it with `redis-cli`.
    pub fn session_key(&self, hash: &SessionHash) -> String {
        self.keys.session(hash)
    }

    /// The Redis key of the index of `user_id`'s sessions.
    pub fn user_index_key(&self, user_id: &str) -> String {
        self.keys.index(user_id)
    }
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        if let Some(call) = scripts::create_plain(&self.keys, hash, record) {
            if self.connection.call(call).await? {
                return Ok(());
            }
            // The name is taken: the full script decides between a collision and replacing a
            // record that only the caller's clock has expired.
        }
        match self
            .connection
            .call(scripts::create(&self.keys, hash, record))
            .await?
        {
            true => Ok(()),
            false => Err(StoreError::Collision),
        }
    }

    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(self.keys.session(hash));
        let reply: Value = self.connection.query(&hgetall).await?;
        let fields = hash_fields(&reply)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let record = decode(fields)?;
        Ok(record.is_live(now).then_some(record))
    }

    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        let call = match scripts::save_plain(&self.keys, hash, patch) {
            Some(plain) => plain,
            None => scripts::save(&self.keys, hash, patch),
        };
        self.connection.call(call).await
    }

    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        let call = scripts::rotate(&self.keys, old, new, patch);
        match self.connection.call(call).await? {
            Rotated::Moved => Ok(true),
            Rotated::Gone => Ok(false),
            Rotated::Taken => Err(StoreError::Collision),
        }
    }

    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        self.connection
            .call(scripts::delete(&self.keys, hash))
            .await
    }

    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        let call = scripts::list(&self.keys, user_id, now);
        let pairs = self.connection.call(call).await?;
        let mut found = Vec::with_capacity(pairs.len());
        for (member, fields) in pairs {
            let hash = match &member {
                Value::BulkString(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|text| text.parse::<SessionHash>().ok()),
                _ => None,
            };
            let Some(hash) = hash else {
                tracing::warn!(
                    user_index = %self.keys.index(user_id),
                    "cloakroom: skipped a Redis user index member that is not a session hash"
                );
                continue;
            };
            let record = decode(hash_fields(&fields)?)?;
            if record.is_live(now) {
                found.push((hash, record));
            }
        }
        found.sort_by_key(|(hash, record)| (record.created_at, *hash));
        Ok(found)
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        self.connection
            .call(scripts::revoke(&self.keys, user_id, except))
            .await
    }

    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        let pattern = self.keys.sessions_pattern();
        let (mut cursor, mut live) = (0, 0u64);
        loop {
            let (next, keys) = self.connection.scan_step(cursor, &pattern).await?;
            if !keys.is_empty() {
                live += self.connection.call(scripts::count(keys, now)).await?;
            }
            if next == 0 {
                return Ok(live);
            }
            cursor = next;
        }
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        // Session keys expire by themselves; what is left are sessions whose `expires_at` the
        // caller's clock has passed before Redis's, and index members of gone sessions.
        let pattern = self.keys.sessions_and_indexes_pattern();
        let (mut cursor, mut removed) = (0, 0u64);
        while removed < limit {
            let (next, keys) = self.connection.scan_step(cursor, &pattern).await?;
            if !keys.is_empty() {
                let call = scripts::purge(&self.keys, keys, now, limit - removed);
                removed += self.connection.call(call).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(removed)
    }
}

/// Opens the store for [`connect`](crate::stores::connect).
pub(crate) async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(RedisStore::connect_parsed(url).await?))
}
