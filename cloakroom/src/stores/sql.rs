//! What the SQL stores on sqlx (PostgreSQL, MySQL / MariaDB) share: pool settings, the default
//! table, and turning stored text back into cloakroom's types. Everything specific to an engine's
//! SQL dialect stays in that engine's file.

use std::fmt;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database};

use crate::error::StoreError;
use crate::ticket::SessionHash;

/// The table sessions live in unless `?table=` or `with_table` says otherwise.
pub(crate) const DEFAULT_TABLE: &str = "cloakroom_sessions";

/// How long a request waits for a connection, opening one included. Sessions are loaded on the
/// request path, so a database that cannot be reached must turn into an error (and a 503) in
/// seconds, not hold the request until the client gives up.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle for longer than this is pinged before use.
///
/// sqlx's default pings on every acquire, which doubles the round trips of every store call. A
/// connection used within the last second is almost certainly fine; one that sat idle through a
/// database restart is not, and the ping catches it before a request fails on it. Connections
/// that break while in use are dropped by the pool when they are returned.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool settings for the pools `connect` opens. (A pool passed to `new` keeps its own.)
pub(crate) fn pool_options<DB: Database>() -> PoolOptions<DB> {
    PoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Parses a session hash read back from an `id` column.
pub(crate) fn parse_hash(store: &'static str, text: &str) -> Result<SessionHash, StoreError> {
    text.parse().map_err(|_| {
        StoreError::corrupt(
            store,
            format!(
                "id {:?} is not a 64-digit hex session hash",
                text.chars().take(80).collect::<String>()
            ),
        )
    })
}

/// `purge_expired`'s limit as the signed integer SQL `LIMIT` takes.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A driver error with what the user should do about it, for the cases where the driver's own
/// message does not say (a pool timeout does not name the server; a missing table does not say
/// that `migrate` creates it).
#[derive(Debug)]
pub(crate) struct Explained {
    /// What the driver said.
    pub(crate) error: sqlx::Error,
    /// Where, or what to do.
    pub(crate) hint: String,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error, self.hint)
    }
}

// The driver error is part of the message already; exposing it as the source as well would
// print it twice in error chains.
impl std::error::Error for Explained {}

/// Wraps a failure to open the pool with the (password-redacted) URL and the wait, which sqlx's
/// "pool timed out" leaves out.
pub(crate) fn connect_error(
    store: &'static str,
    redacted_url: &str,
    error: sqlx::Error,
) -> StoreError {
    match error {
        sqlx::Error::Configuration(e) => {
            StoreError::Config(format!("{redacted_url} is not a valid {store} URL: {e}"))
        }
        error => {
            let hint = if matches!(error, sqlx::Error::PoolTimedOut) {
                format!(
                    "no connection to {redacted_url} within {}s",
                    ACQUIRE_TIMEOUT.as_secs()
                )
            } else {
                format!("connecting to {redacted_url}")
            };
            StoreError::unavailable(store, Explained { error, hint })
        }
    }
}
