//! The store's one multiplexed connection: opening it, bounding every operation by the store's
//! timeout, replacing it when it stops answering, and sorting driver errors into
//! [`StoreError`]s.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, RedisResult, Value};

use super::scripts::Call;
use super::{DEFAULT_TIMEOUT, NAME};
use crate::error::StoreError;
use crate::stores::StoreUrl;

/// How long one attempt to open a TCP connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 500;

/// A connection to one Redis server that reconnects by itself, and the timeout that bounds
/// each operation on it.
pub(super) struct Connection {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    current: Mutex<Current>,
    pub(super) timeout: Duration,
    /// The URL with its password hidden, for messages.
    pub(super) url: String,
}

/// The current connection manager, and how many times it has been replaced.
struct Current {
    generation: u64,
    manager: ConnectionManager,
}

impl Connection {
    /// Connects to the server at `url` and checks that it answers within [`DEFAULT_TIMEOUT`].
    pub(super) async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
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
            // Operations are bounded by `Connection::timeout` instead.
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
        Ok(Self {
            client,
            manager_config,
            current: Mutex::new(Current {
                generation: 0,
                manager,
            }),
            timeout: DEFAULT_TIMEOUT,
            url: redacted,
        })
    }

    fn current(&self) -> (u64, ConnectionManager) {
        let current = self.current.lock();
        (current.generation, current.manager.clone())
    }

    /// Drops the connection of `generation` for a fresh one that connects on first use.
    fn replace(&self, generation: u64) {
        let mut current = self.current.lock();
        if current.generation != generation {
            return; // Another request has replaced it already.
        }
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(manager) => {
                current.manager = manager;
                current.generation += 1;
            }
            Err(error) => {
                tracing::warn!(%error, "cloakroom: could not replace the Redis connection");
            }
        }
    }

    /// Runs one operation within the timeout. A connection that was refused (so the command
    /// was never sent) is tried once more, on the reconnection that refusal started: the first
    /// request after Redis comes back then succeeds instead of failing on the stale error. An
    /// operation that times out replaces the connection, so one that silently died (e.g. after
    /// a failover) is not reused forever.
    async fn run<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut retried = false;
        loop {
            let (generation, manager) = self.current();
            match tokio::time::timeout_at(deadline, attempt(manager)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) if error.is_connection_refusal() && !retried => retried = true,
                Ok(Err(error)) => return Err(store_error(error)),
                Err(_) => {
                    self.replace(generation);
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

    /// Runs one command.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.run(|mut manager| async move { cmd.query_async(&mut manager).await })
            .await
    }

    /// Runs one script and reads its reply.
    pub(super) async fn call<R>(&self, call: Call<R>) -> Result<R, StoreError> {
        let invocation = &call.invocation;
        let reply: Value = self
            .run(|mut manager| async move { invocation.invoke_async(&mut manager).await })
            .await?;
        (call.reply)(reply)
    }

    /// One `SCAN` step over the keys matching `pattern`: the next cursor (0 when the walk is
    /// complete) and the keys found.
    pub(super) async fn scan_step(
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
pub(super) fn store_error(error: RedisError) -> StoreError {
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
