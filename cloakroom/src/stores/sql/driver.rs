//! What the SQL stores on sqlx (PostgreSQL, MySQL / MariaDB) share: pool settings, the first
//! half of `connect`, turning driver errors into store errors, and turning rows back into
//! cloakroom's types. Everything specific to an engine's SQL dialect (its statements, its schema,
//! how it applies a patch) stays in that engine's folder.

use std::fmt;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::types::Json;
use sqlx::{ColumnIndex, Connection, Database, Decode, Pool, Row, Type};

use crate::error::StoreError;
use crate::record::{Data, Record};
use crate::store::StoreStats;
use crate::stores::StoreUrl;

use super::{DEFAULT_TABLE, checked_table_name, parse_hash, row_count};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

/// What the shared code needs to know about an engine to name it in errors.
pub(crate) struct Engine {
    /// The store's name ([`Store::name`](crate::Store::name)), which is also its URL scheme once
    /// aliases are folded (`postgresql://` → `postgres`).
    pub(crate) name: &'static str,
    /// The store's type, for hints that say what to call.
    pub(crate) store_type: &'static str,
    /// The database, and the URL schemes that reach it, for a URL of another scheme.
    pub(crate) database: &'static str,
    pub(crate) schemes: &'static str,
    /// The error code the server reports for a table that does not exist.
    pub(crate) missing_table: &'static str,
}

/// How long a request waits for a connection, opening one included. Sessions are loaded on the
/// request path, so a database that cannot be reached must turn into an error (and a 503) in
/// seconds, not hold the request until the client gives up.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle for longer than this is pinged before use.
///
/// sqlx's default pings on every acquire, which doubles the round trips of every store call. A
/// connection used within the last second is almost certainly fine; one that sat idle through a
/// database restart is not, and the ping catches it before a request fails on it. Connections
/// that break while in use are dropped by the pool when they are returned.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool settings for the pools `connect` opens. (A pool passed to `new` keeps its own.)
fn pool_options<DB: Database>() -> PoolOptions<DB> {
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

/// The engine-independent half of `connect`: checks the URL's scheme and its `table=` option,
/// then opens a pool on `driver_url` (the URL as the driver wants it). Returns the pool and the
/// table; the caller builds the store on them and migrates.
pub(crate) async fn connect<'u, DB: Database>(
    engine: &Engine,
    url: &'u StoreUrl,
    driver_url: &str,
) -> Result<(Pool<DB>, &'u str), StoreError> {
    if url.scheme != engine.name {
        return Err(StoreError::Config(format!(
            "{} is not a {} URL: it must start with {}",
            url.redacted(),
            engine.database,
            engine.schemes
        )));
    }
    let table = url.option("table").unwrap_or(DEFAULT_TABLE);
    // Checked before connecting: a typo in the configuration should not cost a connection.
    checked_table_name(table)?;
    let pool = pool_options()
        .connect(driver_url)
        .await
        .map_err(|e| connect_error(engine.name, &url.redacted(), e))?;
    Ok((pool, table))
}

/// Turns a driver error into the store error that says what to do: a taken id is a collision, a
/// missing table says to migrate, anything else is the database being unavailable. Engines check
/// their own error codes first.
pub(crate) fn error(engine: &Engine, table: &str, error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        if db.is_unique_violation() {
            return StoreError::Collision;
        }
        if db.code().as_deref() == Some(engine.missing_table) {
            let hint = format!(
                "table {table:?} is missing: call {0}::migrate() at startup ({0}::connect does)",
                engine.store_type
            );
            return StoreError::unavailable(engine.name, Explained { error, hint });
        }
    }
    StoreError::unavailable(engine.name, error)
}

/// Reads the column `name`, reporting a value that does not decode as corrupt data.
pub(crate) fn column<'r, R, T>(
    engine: &Engine,
    row: &'r R,
    name: &'static str,
) -> Result<T, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(name)
        .map_err(|e| StoreError::corrupt(engine.name, format!("{name}: {e}")))
}

/// Decodes a row of `user_id, data, created_at, updated_at, expires_at` (timestamps in Unix
/// milliseconds). The `user_id` column's type differs between engines: `decode_user_id` turns what
/// it holds (`U`) into the user id.
pub(crate) fn decode_record<'r, R, U>(
    engine: &Engine,
    row: &'r R,
    decode_user_id: impl FnOnce(U) -> Result<String, StoreError>,
) -> Result<Record, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Json<Data>: Decode<'r, R::Database> + Type<R::Database>,
    U: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let Json(data): Json<Data> = column(engine, row, "data")?;
    let user_id = column::<R, Option<U>>(engine, row, "user_id")?
        .map(decode_user_id)
        .transpose()?;
    let millis = |name| column(engine, row, name).map(Timestamp::from_unix_millis);
    Ok(Record {
        data,
        user_id,
        created_at: millis("created_at")?,
        updated_at: millis("updated_at")?,
        expires_at: millis("expires_at")?,
    })
}

/// Decodes a row of `list_user`: the `id` column, then the record's columns as
/// [`decode_record`] reads them.
pub(crate) fn decode_listed<'r, R, U>(
    engine: &Engine,
    row: &'r R,
    decode_user_id: impl FnOnce(U) -> Result<String, StoreError>,
) -> Result<(SessionHash, Record), StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Json<Data>: Decode<'r, R::Database> + Type<R::Database>,
    U: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = column(engine, row, "id")?;
    Ok((
        parse_hash(engine.name, &id)?,
        decode_record(engine, row, decode_user_id)?,
    ))
}

/// Reads column `index` of a `stats` row, reporting a value that does not decode as corrupt.
pub(crate) fn stats_column<'r, R, T>(
    engine: &Engine,
    row: &'r R,
    index: usize,
) -> Result<T, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(index)
        .map_err(|e| StoreError::corrupt(engine.name, format!("stats: {e}")))
}

/// Decodes the columns every engine's stats query starts with: the live and the expired rows
/// (counts), then the oldest and the newest live `created_at` (`NULL` without live rows).
pub(crate) fn decode_stats<'r, R>(engine: &Engine, row: &'r R) -> Result<StoreStats, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let count = |i| stats_column(engine, row, i).map(row_count);
    let time = |i| {
        stats_column::<R, Option<i64>>(engine, row, i).map(|t| t.map(Timestamp::from_unix_millis))
    };
    Ok(StoreStats {
        live: count(0)?,
        expired: Some(count(1)?),
        oldest: time(2)?,
        newest: time(3)?,
        ..StoreStats::default()
    })
}

/// Decodes a row of the top users query: the user id (turned into a string by `decode_user_id`,
/// as in [`decode_record`]) and how many live sessions it has.
pub(crate) fn decode_top_user<'r, R, U>(
    engine: &Engine,
    row: &'r R,
    decode_user_id: impl FnOnce(U) -> Result<String, StoreError>,
) -> Result<(String, u64), StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    U: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let user = decode_user_id(stats_column(engine, row, 0)?)?;
    let sessions = stats_column(engine, row, 1)?;
    Ok((user, row_count(sessions)))
}

/// A driver error with what the user should do about it, for the cases where the driver's own
/// message does not say (a pool timeout does not name the server; a missing table does not say
/// that `migrate` creates it).
#[derive(Debug)]
struct Explained {
    /// What the driver said.
    error: sqlx::Error,
    /// Where, or what to do.
    hint: String,
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
fn connect_error(store: &'static str, redacted_url: &str, error: sqlx::Error) -> StoreError {
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
