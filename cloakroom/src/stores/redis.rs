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
//! The trade-off: on a Cluster, one store lives on one shard (with its replicas). A single Redis
//! primary serves well over 100 000 of these small scripts per second, which covers most
//! deployments; beyond that, give groups of apps their own prefixes. Tagging each session
//! separately (`…:s:{hash}`) would spread sessions over shards but would make rotation and the
//! user index non-atomic, which the [`Store`] contract rules out.
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
//! Reads are a bare `HGETALL` because every script call has a fixed cost on the server: an
//! `EVALSHA` of a script that only runs `GET` took Redis 7.0 5.1 µs against 0.4 µs for the `GET`
//! itself on one machine, 2.0 µs against 0.23 µs on another (`redis-benchmark -c 8`, `INFO
//! commandstats`). Redis is the one process every app instance shares, so its time per request
//! is what limits a deployment. (A read script that packed the reply into one string saved the
//! client allocations, but cost Redis 17.0 µs of CPU per read-only request against 4.6 µs for
//! `HGETALL`: one W2 benchmark cell each, `INFO cpu`.)
//!
//! Writes stay scripts. A key-only save as one `MULTI` block (`EXISTS`, `HGET m:expires`,
//! `HSET`, `PEXPIRE … NX`, then a `DEL` when the session had ended) saves Redis the script's
//! fixed cost, but it was slower end to end (W3 in-process on 2 cores: 40 500 requests/s against
//! 42 200–45 200 with the script, the two builds taking turns; where the time went was not
//! profiled). It also cannot leave a record the caller's clock has expired untouched, which
//! [`Store::save`] promises.
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

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, RedisResult, Script, ScriptInvocation, Value};

use crate::error::StoreError;
use crate::record::{Data, Patch, Record};
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
/// How long one attempt to open a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 500;

const DATA_FIELD: &str = "d:";
const CREATED_FIELD: &str = "m:created";
const UPDATED_FIELD: &str = "m:updated";
const EXPIRES_FIELD: &str = "m:expires";
const USER_FIELD: &str = "m:user";

/// Keeps sessions in Redis, with native expiry and a key layout ready for Redis Cluster.
///
/// See the [module documentation](self) for the key layout, its trade-off, and the commands each
/// kind of request costs.
pub struct RedisStore {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    connection: Mutex<Connection>,
    /// `{prefix}:s:`
    session_prefix: String,
    /// `{prefix}:u:`
    index_prefix: String,
    prefix: String,
    timeout: Duration,
    /// The URL with its password hidden, for messages.
    url: String,
}

/// The current connection, and how many times it has been replaced.
struct Connection {
    generation: u64,
    manager: ConnectionManager,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
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
        let redacted = url.redacted();
        if url.scheme != "redis" && url.scheme != "rediss" {
            return Err(StoreError::Config(format!(
                "{redacted:?} is not a Redis URL: use redis://host:6379 or rediss://host:6380"
            )));
        }
        let client = redis::Client::open(url.driver_url.as_str())
            .map_err(|e| client_error(&url.scheme, &redacted, &e))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Operations are bounded by `RedisStore::timeout` instead.
            .set_response_timeout(None)
            // Reconnect attempts are cheap and every failing request starts a new one, so each
            // gives up quickly instead of holding requests through a long backoff.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connecting = ConnectionManager::new_with_config(client.clone(), manager_config.clone());
        let manager = match tokio::time::timeout(DEFAULT_TIMEOUT, connecting).await {
            Ok(Ok(manager)) => manager,
            Ok(Err(e)) if e.kind() == redis::ErrorKind::InvalidClientConfig => {
                return Err(client_error(&url.scheme, &redacted, &e));
            }
            Ok(Err(e)) => {
                return Err(StoreError::unavailable(
                    NAME,
                    ConnectError {
                        url: redacted,
                        detail: e.to_string(),
                    },
                ));
            }
            Err(_) => {
                return Err(StoreError::unavailable(
                    NAME,
                    ConnectError {
                        url: redacted,
                        detail: format!("no answer within {DEFAULT_TIMEOUT:?}"),
                    },
                ));
            }
        };
        let store = Self {
            client,
            manager_config,
            connection: Mutex::new(Connection {
                generation: 0,
                manager,
            }),
            session_prefix: String::new(),
            index_prefix: String::new(),
            prefix: String::new(),
            timeout: DEFAULT_TIMEOUT,
            url: redacted,
        };
        store.with_prefix(url.option("prefix").unwrap_or(DEFAULT_PREFIX))
    }

    /// Files this store's keys under `prefix`, which also becomes their Redis Cluster hash tag:
    /// `{prefix}:s:…` and `{prefix}:u:…`.
    ///
    /// Stores with different prefixes on one Redis do not see each other's sessions. The prefix
    /// must be 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`, so it can neither end the
    /// hash tag early nor act as a wildcard in `SCAN` patterns.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, StoreError> {
        let valid = (1..=64).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !valid {
            return Err(StoreError::Config(format!(
                "Redis key prefix {prefix:?} must be 1-64 ASCII letters, digits, '_', '-', '.' \
                 or ':' (it becomes the Redis Cluster hash tag {{{prefix}}})"
            )));
        }
        self.prefix = prefix.to_owned();
        self.session_prefix = format!("{{{prefix}}}:s:");
        self.index_prefix = format!("{{{prefix}}}:u:");
        Ok(self)
    }

    /// Bounds every store operation (default [`DEFAULT_TIMEOUT`]): an operation that takes
    /// longer fails with [`StoreError::Unavailable`], and the layer answers 503 instead of
    /// holding the request. Keep it well above Redis's normal latency; a zero timeout is raised
    /// to one millisecond.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The key prefix (and Cluster hash tag) of this store.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of the session filed under `hash`, e.g. to inspect it with `redis-cli`.
    pub fn session_key(&self, hash: &SessionHash) -> String {
        format!("{}{hash}", self.session_prefix)
    }

    /// The Redis key of the index of `user_id`'s sessions.
    pub fn user_index_key(&self, user_id: &str) -> String {
        format!("{}{user_id}", self.index_prefix)
    }

    fn connection(&self) -> (u64, ConnectionManager) {
        let connection = self.connection.lock();
        (connection.generation, connection.manager.clone())
    }

    /// Drops the connection of `generation` for a fresh one that connects on first use.
    fn replace_connection(&self, generation: u64) {
        let mut connection = self.connection.lock();
        if connection.generation != generation {
            return; // Another request has replaced it already.
        }
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(manager) => {
                connection.manager = manager;
                connection.generation += 1;
            }
            Err(error) => {
                tracing::warn!(%error, "cloakroom: could not replace the Redis connection");
            }
        }
    }

    /// Runs one operation within the timeout. A connection that was refused (so the command
    /// was never sent) is tried once more, on the reconnection that refusal started: the first
    /// request after Redis comes back then succeeds instead of failing on the stale error.
    async fn run<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut retried = false;
        loop {
            let (generation, manager) = self.connection();
            match tokio::time::timeout_at(deadline, attempt(manager)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) if error.is_connection_refusal() && !retried => retried = true,
                Ok(Err(error)) => return Err(store_error(error)),
                Err(_) => {
                    self.replace_connection(generation);
                    return Err(StoreError::unavailable(
                        NAME,
                        TimedOut {
                            url: self.url.clone(),
                            timeout: self.timeout,
                        },
                    ));
                }
            }
        }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.run(|mut manager| async move { cmd.query_async(&mut manager).await })
            .await
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.run(|mut manager| async move { invocation.invoke_async(&mut manager).await })
            .await
    }

    /// Adds the arguments of the patch script (see `APPLY` in the Lua prelude).
    fn patch_args(
        &self,
        invocation: &mut ScriptInvocation<'_>,
        patch: &Patch,
        member: &SessionHash,
        previous: &SessionHash,
    ) {
        let (user_op, user) = match &patch.user_id {
            None => ("", ""),
            Some(None) => ("-", ""),
            Some(Some(user)) => ("+", user.as_str()),
        };
        invocation
            .arg(patch.updated_at.as_unix_millis())
            .arg(
                patch
                    .expires_at
                    .map(|t| t.as_unix_millis().to_string())
                    .unwrap_or_default(),
            )
            .arg(user_op)
            .arg(user)
            .arg(if patch.clear { "1" } else { "" })
            .arg(&self.index_prefix)
            .arg(member.to_string())
            .arg(previous.to_string())
            .arg(patch.remove.len());
        for key in &patch.remove {
            invocation.arg(data_field(key));
        }
        data_args(
            invocation,
            patch.set.iter().map(|(key, value)| (key, value)),
        );
    }

    /// One `SCAN` step over the keys matching `pattern`: the next cursor (0 when the walk is
    /// complete) and the keys found.
    async fn scan_step(
        &self,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        self.query(&cmd).await
    }
}

#[async_trait]
impl Store for RedisStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        let key = self.session_key(hash);
        if record.user_id.is_none() && record.data.len() <= PLAIN_MAX_FIELDS {
            let mut invocation = SCRIPTS.create_plain.key(&key);
            invocation
                .arg(record.expires_at.as_unix_millis())
                .arg(CREATED_FIELD)
                .arg(record.created_at.as_unix_millis())
                .arg(UPDATED_FIELD)
                .arg(record.updated_at.as_unix_millis())
                .arg(EXPIRES_FIELD)
                .arg(record.expires_at.as_unix_millis());
            data_args(&mut invocation, &record.data);
            if self.invoke::<i64>(&invocation).await? == 1 {
                return Ok(());
            }
            // The name is taken: the full script decides between a collision and replacing a
            // record that only the caller's clock has expired.
        }
        let mut invocation = SCRIPTS.create.key(key);
        invocation
            .arg(record.created_at.as_unix_millis())
            .arg(record.expires_at.as_unix_millis())
            .arg(record.created_at.as_unix_millis())
            .arg(record.updated_at.as_unix_millis())
            .arg(record.user_id.as_deref().unwrap_or(""))
            .arg(if record.user_id.is_some() { "1" } else { "" })
            .arg(&self.index_prefix)
            .arg(hash.to_string());
        data_args(&mut invocation, &record.data);
        match self.invoke::<i64>(&invocation).await? {
            1 => Ok(()),
            _ => Err(StoreError::Collision),
        }
    }

    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(self.session_key(hash));
        let reply: Value = self.query(&hgetall).await?;
        let fields = hash_fields(&reply)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let record = decode(fields)?;
        Ok(record.is_live(now).then_some(record))
    }

    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        let key = self.session_key(hash);
        let plain = !patch.clear
            && patch.remove.is_empty()
            && patch.user_id.is_none()
            && patch.expires_at.is_none()
            && patch.set.len() <= PLAIN_MAX_FIELDS;
        if plain {
            let mut invocation = SCRIPTS.save_plain.key(key);
            invocation.arg(patch.updated_at.as_unix_millis());
            data_args(
                &mut invocation,
                patch.set.iter().map(|(key, value)| (key, value)),
            );
            return Ok(self.invoke::<i64>(&invocation).await? == 1);
        }
        let mut invocation = SCRIPTS.save.key(key);
        self.patch_args(&mut invocation, patch, hash, hash);
        Ok(self.invoke::<i64>(&invocation).await? == 1)
    }

    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        let mut invocation = SCRIPTS.rotate.key(self.session_key(old));
        invocation.key(self.session_key(new));
        self.patch_args(&mut invocation, patch, new, old);
        match self.invoke::<i64>(&invocation).await? {
            1 => Ok(true),
            -1 => Err(StoreError::Collision),
            _ => Ok(false),
        }
    }

    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        let mut invocation = SCRIPTS.delete.key(self.session_key(hash));
        invocation.arg(&self.index_prefix).arg(hash.to_string());
        Ok(self.invoke::<i64>(&invocation).await? > 0)
    }

    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        let mut invocation = SCRIPTS.list.key(self.user_index_key(user_id));
        invocation
            .arg(now.as_unix_millis())
            .arg(&self.session_prefix)
            .arg(user_id);
        let Value::Array(items) = self.invoke::<Value>(&invocation).await? else {
            return Err(StoreError::corrupt(
                NAME,
                "the list script returned no array",
            ));
        };
        let mut found = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(member), Some(fields)) = (items.next(), items.next()) {
            let hash = match &member {
                Value::BulkString(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|text| text.parse::<SessionHash>().ok()),
                _ => None,
            };
            let Some(hash) = hash else {
                tracing::warn!(
                    user_index = %self.user_index_key(user_id),
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
        let mut invocation = SCRIPTS.revoke.key(self.user_index_key(user_id));
        invocation
            .arg(&self.session_prefix)
            .arg(user_id)
            .arg(except.map(ToString::to_string).unwrap_or_default());
        let revoked: i64 = self.invoke(&invocation).await?;
        Ok(u64::try_from(revoked).unwrap_or(0))
    }

    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        let pattern = format!("{}*", self.session_prefix);
        let (mut cursor, mut live) = (0, 0u64);
        loop {
            let (next, keys) = self.scan_step(cursor, &pattern).await?;
            if !keys.is_empty() {
                let mut invocation = SCRIPTS.count.prepare_invoke();
                for key in keys {
                    invocation.key(key);
                }
                invocation.arg(now.as_unix_millis());
                let n: i64 = self.invoke(&invocation).await?;
                live += u64::try_from(n).unwrap_or(0);
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
        let pattern = format!("{{{}}}:[su]:*", self.prefix);
        let (mut cursor, mut removed) = (0, 0u64);
        while removed < limit {
            let (next, keys) = self.scan_step(cursor, &pattern).await?;
            if !keys.is_empty() {
                let mut invocation = SCRIPTS.purge.prepare_invoke();
                for key in keys {
                    invocation.key(key);
                }
                invocation
                    .arg(now.as_unix_millis())
                    .arg(limit - removed)
                    .arg(&self.session_prefix)
                    .arg(&self.index_prefix);
                let n: i64 = self.invoke(&invocation).await?;
                removed += u64::try_from(n).unwrap_or(0);
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

fn data_field(key: &str) -> String {
    format!("{DATA_FIELD}{key}")
}

/// Adds one `d:<key>`, JSON value pair per entry.
fn data_args<'a>(
    invocation: &mut ScriptInvocation<'_>,
    entries: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
) {
    for (key, value) in entries {
        invocation.arg(data_field(key)).arg(value.to_string());
    }
}

/// A field name and its value, as stored.
type Field<'a> = (&'a [u8], &'a [u8]);

/// The field/value pairs of a hash as `HGETALL` returns it (a flat array in RESP2, a map in
/// RESP3), borrowed from the reply.
fn hash_fields(reply: &Value) -> Result<Vec<Field<'_>>, StoreError> {
    fn bytes(value: &Value) -> Option<&[u8]> {
        match value {
            Value::BulkString(bytes) => Some(bytes),
            _ => None,
        }
    }
    let fields = match reply {
        // An odd item count leaves a last chunk of one, which is malformed like any other.
        Value::Array(items) => items
            .chunks(2)
            .map(|pair| match pair {
                [field, value] => Some((bytes(field)?, bytes(value)?)),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(field, value)| Some((bytes(field)?, bytes(value)?)))
            .collect(),
        _ => None,
    };
    fields.ok_or_else(|| StoreError::corrupt(NAME, "a session hash came back malformed"))
}

/// Rebuilds a record from the fields of its hash.
fn decode<'a>(fields: impl IntoIterator<Item = Field<'a>>) -> Result<Record, StoreError> {
    let mut data = Data::new();
    let (mut created, mut updated, mut expires, mut user) = (None, None, None, None);
    for (field, value) in fields {
        let field = std::str::from_utf8(field)
            .map_err(|_| StoreError::corrupt(NAME, "a session field name is not UTF-8"))?;
        if let Some(key) = field.strip_prefix(DATA_FIELD) {
            let value = serde_json::from_slice(value).map_err(|e| {
                StoreError::corrupt(NAME, format!("the value of {key:?} is not JSON: {e}"))
            })?;
            data.insert(key.to_owned(), value);
            continue;
        }
        let slot = match field {
            CREATED_FIELD => &mut created,
            UPDATED_FIELD => &mut updated,
            EXPIRES_FIELD => &mut expires,
            USER_FIELD => &mut user,
            _ => continue, // Fields a later version may add.
        };
        let text = std::str::from_utf8(value)
            .map_err(|_| StoreError::corrupt(NAME, format!("{field} is not UTF-8")))?;
        *slot = Some(text.to_owned());
    }
    let millis = |name: &str, value: Option<String>| {
        let text = value.ok_or_else(|| StoreError::corrupt(NAME, format!("{name} is missing")))?;
        text.parse::<i64>()
            .map(Timestamp::from_unix_millis)
            .map_err(|_| StoreError::corrupt(NAME, format!("{name} = {text:?} is not a number")))
    };
    let created_at = millis(CREATED_FIELD, created)?;
    Ok(Record {
        data,
        user_id: user,
        created_at,
        updated_at: updated.map_or(Ok(created_at), |u| millis(UPDATED_FIELD, Some(u)))?,
        expires_at: millis(EXPIRES_FIELD, expires)?,
    })
}

fn client_error(scheme: &str, url: &str, error: &RedisError) -> StoreError {
    if scheme == "rediss" && error.to_string().contains("TLS") {
        return StoreError::Config(format!(
            "{url:?} asks for TLS, but the redis crate was built without it: add \
             redis = {{ version = \"1\", features = [\"tokio-rustls-comp\"] }} to your \
             Cargo.toml (or use redis:// through a TLS tunnel)"
        ));
    }
    StoreError::Config(format!("invalid Redis URL {url:?}: {error}"))
}

/// Sorts driver errors: a key of the wrong type under the store's prefix is corrupt data;
/// anything else means the server cannot serve us right now.
fn store_error(error: RedisError) -> StoreError {
    // Redis 7 passes the code through from inside a script; older servers wrap it in ERR.
    if error.code() == Some("WRONGTYPE") || error.detail().is_some_and(|d| d.contains("WRONGTYPE"))
    {
        return StoreError::corrupt(
            NAME,
            "a key under the store's prefix is not a Redis hash or sorted set; \
             give the store a prefix no one else uses",
        );
    }
    StoreError::unavailable(NAME, error)
}

/// The first connection failed.
#[derive(Debug, thiserror::Error)]
#[error("could not connect to {url}: {detail}")]
struct ConnectError {
    url: String,
    detail: String,
}

/// An operation ran past the store's timeout.
#[derive(Debug, thiserror::Error)]
#[error("{url} did not answer within {timeout:?}")]
struct TimedOut {
    url: String,
    timeout: Duration,
}

/// The Lua scripts, one per operation, each run atomically by Redis.
struct Scripts {
    create: Script,
    create_plain: Script,
    save: Script,
    save_plain: Script,
    rotate: Script,
    delete: Script,
    list: Script,
    revoke: Script,
    count: Script,
    purge: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
    Scripts {
        create: script(CREATE),
        create_plain: Script::new(CREATE_PLAIN),
        save: script(&format!("{APPLY}\n{SAVE}")),
        // Without the prelude: the most frequent writes should not pay for defining helpers.
        save_plain: Script::new(SAVE_PLAIN),
        rotate: script(&format!("{APPLY}\n{ROTATE}")),
        delete: script(DELETE),
        list: script(LIST),
        revoke: script(REVOKE),
        count: script(COUNT),
        purge: script(PURGE),
    }
});

/// Helpers every script shares. Timestamps travel as decimal strings and are written back as
/// the same strings, so Lua's doubles never round a stored value.
const PRELUDE: &str = r#"
-- Calls `command key items[first..last]` in chunks that fit Lua's stack (an even size, so
-- field/value pairs stay together).
local function each_chunk(command, key, items, first, last)
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call(command, key, unpack(items, i, j))
    i = j + 1
  end
end

-- A stored expiry as a number; an unreadable one counts as long past.
local function expiry(value)
  return tonumber(value) or 0
end

-- Files `member` (expiring at `expires`) in the sorted set `index` and keeps the set alive at
-- least as long as its longest-lived member.
local function index_add(index, member, expires)
  redis.call('ZADD', index, expires, member)
  local top = redis.call('ZRANGE', index, -1, -1)
  if top[1] == member then
    redis.call('PEXPIREAT', index, expires)
  end
end
"#;

/// Applies a patch to the live session at `key`, whose stored `m:expires` and `m:user` the
/// caller has just read. ARGV: [1] now, [2] new expiry or '', [3] user change ('' keep, '+' set,
/// '-' unset), [4] user id, [5] clear ('1' or ''), [6] index key prefix, [7] the session's hash,
/// [8] its previous hash (differs on rotation), [9] number R of removed fields, [10 .. 9+R]
/// removed fields, then field/value pairs to set.
///
/// A plain write (set some keys) costs one `HSET` here: the metadata rides along with the data,
/// and the TTL is only reset when the expiry moved (a rename keeps it).
const APPLY: &str = r#"
local function apply(key, old_expires, old_user)
  if ARGV[5] == '1' then
    local doomed = {}
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if string.sub(field, 1, 2) == 'd:' then doomed[#doomed + 1] = field end
    end
    each_chunk('HDEL', key, doomed, 1, #doomed)
  end
  local removed = tonumber(ARGV[9])
  each_chunk('HDEL', key, ARGV, 10, 9 + removed)
  local expires = old_expires
  if ARGV[2] ~= '' then expires = ARGV[2] end
  local user = old_user
  if ARGV[3] == '+' then user = ARGV[4] elseif ARGV[3] == '-' then user = false end
  local fields = {'m:updated', ARGV[1], 'm:expires', expires}
  if user and user ~= old_user then
    fields[5] = 'm:user'
    fields[6] = user
  end
  for i = 10 + removed, #ARGV do fields[#fields + 1] = ARGV[i] end
  each_chunk('HSET', key, fields, 1, #fields)
  if old_user and not user then redis.call('HDEL', key, 'm:user') end
  local moved = ARGV[7] ~= ARGV[8]
  if old_user and (moved or user ~= old_user) then
    redis.call('ZREM', ARGV[6] .. old_user, ARGV[8])
  end
  if user and (moved or user ~= old_user or ARGV[2] ~= '') then
    index_add(ARGV[6] .. user, ARGV[7], expires)
  end
  -- Last, so that an expiry already past deletes the key instead of leaving a key without TTL.
  if ARGV[2] ~= '' then redis.call('PEXPIREAT', key, expires) end
end
"#;

/// KEYS[1] session. Returns 1, or 0 when there is no live session (nothing changes).
const SAVE: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'm:expires', 'm:user')
if not meta[1] or expiry(meta[1]) <= tonumber(ARGV[1]) then return 0 end
apply(KEYS[1], meta[1], meta[2])
return 1
"#;

/// The common write (set some keys, nothing else changes): [`SAVE`] reduced to its one `HSET`.
/// KEYS[1] session. ARGV: [1] now, then field/value pairs (at most [`PLAIN_MAX_FIELDS`] pairs,
/// so that `unpack` stays within Lua's stack). Returns 1, or 0 when there is no live session.
const SAVE_PLAIN: &str = r#"
local expires = redis.call('HGET', KEYS[1], 'm:expires')
if not expires or (tonumber(expires) or 0) <= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'm:updated', ARGV[1], unpack(ARGV, 2))
return 1
"#;

/// The most keys a patch may set to take [`SAVE_PLAIN`], or a new session may hold to take
/// [`CREATE_PLAIN`] (so that `unpack` stays within Lua's stack).
const PLAIN_MAX_FIELDS: usize = 1000;

/// KEYS[1] old session, KEYS[2] new session. Returns 1 when moved, 0 when there is no live
/// session, -1 when the new key is taken (nothing changes).
const ROTATE: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'm:expires', 'm:user')
if not meta[1] or expiry(meta[1]) <= tonumber(ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('RENAME', KEYS[1], KEYS[2])
apply(KEYS[2], meta[1], meta[2])
return 1
"#;

/// The common create (a new session with no user): [`CREATE`] reduced to one `HSET` and the
/// TTL, for a name no key holds. KEYS[1] session. ARGV: [1] expires, then field/value pairs,
/// metadata first (at most [`PLAIN_MAX_FIELDS`] data pairs). Returns 1, or 0 when a key holds the
/// name (nothing changes; [`CREATE`] then decides). In the W4 Redis benchmark cell it cut
/// Redis's time per create call from 10.9–12.2 µs to 10.1–10.5 µs (`INFO commandstats`, two
/// runs each, the two builds taking turns).
const CREATE_PLAIN: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"#;

/// KEYS[1] session. ARGV: [1] now, [2] expires, [3] created, [4] updated, [5] user id,
/// [6] '1' if bound to a user, [7] index key prefix, [8] the session's hash, then field/value
/// pairs. Returns 1, or 0 when a live session (or a foreign key) holds the name.
const CREATE: &str = r#"
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then
  local meta = redis.pcall('HMGET', key, 'm:expires', 'm:user')
  if not meta[1] or expiry(meta[1]) > tonumber(ARGV[1]) then return 0 end
  -- Expired by the caller's clock, not yet by Redis's: replace it.
  if meta[2] then redis.call('ZREM', ARGV[7] .. meta[2], ARGV[8]) end
  redis.call('DEL', key)
end
redis.call('HSET', key, 'm:created', ARGV[3], 'm:updated', ARGV[4], 'm:expires', ARGV[2])
if ARGV[6] == '1' then
  redis.call('HSET', key, 'm:user', ARGV[5])
  index_add(ARGV[7] .. ARGV[5], ARGV[8], ARGV[2])
end
each_chunk('HSET', key, ARGV, 9, #ARGV)
redis.call('PEXPIREAT', key, ARGV[2])
return 1
"#;

/// KEYS[1] session. ARGV: [1] index key prefix, [2] the session's hash. Returns the number of
/// keys deleted. Deletes whatever is there, so an operator can remove a foreign key too.
const DELETE: &str = r#"
local user = redis.pcall('HGET', KEYS[1], 'm:user')
local removed = redis.call('DEL', KEYS[1])
if type(user) == 'string' then redis.call('ZREM', ARGV[1] .. user, ARGV[2]) end
return removed
"#;

/// KEYS[1] user index. ARGV: [1] now, [2] session key prefix, [3] user id. Returns
/// [hash, fields, hash, fields, …] of the live sessions; drops members whose session is gone
/// or bound to someone else.
const LIST: &str = r#"
local out = {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local fields = redis.pcall('HGETALL', ARGV[2] .. member)
  local expires, user
  if fields.err == nil then
    for i = 1, #fields, 2 do
      if fields[i] == 'm:expires' then expires = fields[i + 1]
      elseif fields[i] == 'm:user' then user = fields[i + 1] end
    end
  end
  if user ~= ARGV[3] or not expires then
    redis.call('ZREM', KEYS[1], member)
  elseif expiry(expires) > tonumber(ARGV[1]) then
    out[#out + 1] = member
    out[#out + 1] = fields
  end
end
return out
"#;

/// KEYS[1] user index. ARGV: [1] session key prefix, [2] user id, [3] hash to keep or ''.
/// Returns the number of sessions deleted.
const REVOKE: &str = r#"
local revoked = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if member ~= ARGV[3] then
    local key = ARGV[1] .. member
    if redis.pcall('HGET', key, 'm:user') == ARGV[2] then
      redis.call('DEL', key)
      revoked = revoked + 1
    end
    redis.call('ZREM', KEYS[1], member)
  end
end
return revoked
"#;

/// KEYS: session keys from one SCAN step. ARGV[1] now. Returns how many are live.
const COUNT: &str = r#"
local now, live = tonumber(ARGV[1]), 0
for _, key in ipairs(KEYS) do
  local expires = redis.pcall('HGET', key, 'm:expires')
  if type(expires) == 'string' and expiry(expires) > now then live = live + 1 end
end
return live
"#;

/// KEYS: session and index keys from one SCAN step. ARGV: [1] now, [2] limit, [3] session key
/// prefix, [4] index key prefix. Deletes sessions expired at `now` and index members whose
/// session is gone, up to `limit`; returns how many went.
const PURGE: &str = r#"
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local sp, ip = ARGV[3], ARGV[4]
local removed = 0
for _, key in ipairs(KEYS) do
  if removed >= limit then break end
  if string.sub(key, 1, #sp) == sp then
    local meta = redis.pcall('HMGET', key, 'm:expires', 'm:user')
    if meta.err == nil and meta[1] and expiry(meta[1]) <= now then
      redis.call('DEL', key)
      if meta[2] then redis.call('ZREM', ip .. meta[2], string.sub(key, #sp + 1)) end
      removed = removed + 1
    end
  elseif string.sub(key, 1, #ip) == ip then
    local user = string.sub(key, #ip + 1)
    local stale = redis.pcall('ZRANGEBYSCORE', key, '-inf', ARGV[1], 'LIMIT', 0, limit - removed)
    if stale.err == nil then
      for _, member in ipairs(stale) do
        local meta = redis.pcall('HMGET', sp .. member, 'm:expires', 'm:user')
        local mine = meta.err == nil and meta[2] == user and meta[1]
        if mine and expiry(meta[1]) > now then
          index_add(key, member, meta[1])
        else
          -- One expired session counts once, whether its key or its index comes first.
          if mine then redis.call('DEL', sp .. member) end
          redis.call('ZREM', key, member)
          removed = removed + 1
        end
      end
    end
  end
end
return removed
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    #[test]
    fn reads_hgetall_replies_of_either_protocol() {
        let expected: [Field<'_>; 2] = [(b"d:a:b", b"\xff\x00"), (b"m:expires", b"99")];
        let resp2 = Value::Array(vec![
            bulk(b"d:a:b"),
            bulk(b"\xff\x00"),
            bulk(b"m:expires"),
            bulk(b"99"),
        ]);
        assert_eq!(hash_fields(&resp2).unwrap(), expected);
        let resp3 = Value::Map(vec![
            (bulk(b"d:a:b"), bulk(b"\xff\x00")),
            (bulk(b"m:expires"), bulk(b"99")),
        ]);
        assert_eq!(hash_fields(&resp3).unwrap(), expected);
        assert!(hash_fields(&Value::Array(vec![])).unwrap().is_empty());
    }

    #[test]
    fn malformed_replies_are_corrupt_not_a_panic() {
        for bad in [
            Value::Nil,
            Value::Int(3),
            Value::Array(vec![bulk(b"d:a")]),
            Value::Array(vec![bulk(b"d:a"), Value::Int(1)]),
            Value::Map(vec![(Value::Nil, bulk(b"1"))]),
        ] {
            assert!(
                matches!(hash_fields(&bad), Err(StoreError::Corrupt { .. })),
                "{bad:?}"
            );
        }
    }
}
