//! The SQLite store: the embedded default.
//!
//! The driver is rusqlite on tokio's blocking pool rather than sqlx: sqlx hands every query to a
//! per-connection worker thread and back, which costs more than these queries do (the
//! measurements are in `docs/design.md`, section "SQL stores").
//! A read is one hop to a blocking thread that takes an idle connection (`pool.rs`); a write is
//! queued for the store's writer thread, which commits whatever writes are waiting in one
//! transaction (`writer.rs`). Patches are compiled to SQL that SQLite applies to the stored row
//! (`patch.rs`); the fixed statements and the schema are in `statements.rs`, opening a database
//! in `connection.rs`.

mod connection;
mod patch;
mod pool;
mod statements;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use self::connection::{Database, switch_to_wal};
use self::patch::update_statements;
use self::pool::Pool;
use self::statements::{RecordRow, Statements, record_row};
use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::store::{Percentiles, Store, StoreStats};
use crate::stores::StoreUrl;
use crate::stores::sql::{checked_table_name, parse_hash, row_count, sql_limit};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

const NAME: &str = "sqlite";

pub use crate::stores::sql::DEFAULT_TABLE;

/// Keeps sessions in a SQLite database: one row per session, data as JSON text.
///
/// The table (default `cloakroom_sessions`) has the session hash as primary key and indexes on
/// `user_id` and `expires_at`; it is created if missing. File databases run in WAL mode, so
/// requests reading sessions never wait for one writing. A change is one SQL statement: a patch
/// is applied with SQLite's JSON functions inside the `UPDATE`, so concurrent requests changing
/// different keys both keep their change.
///
/// Reads run on tokio's blocking thread pool, so the store needs a tokio runtime. Writes to a
/// file go through one writer thread per store, which commits the writes queued at that moment
/// together, each in its own savepoint: a failed write is undone alone, and under load one
/// commit serves many requests.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom::StoreError> {
/// use cloakroom::{SqliteStore, Store};
///
/// let store = SqliteStore::connect("sqlite::memory:").await?;
/// assert_eq!(store.count(cloakroom::Timestamp::from_unix_millis(0)).await?, 0);
///
/// // On disk, in a table of your choice (the file is created if missing):
/// # let dir = std::env::temp_dir().join(format!("cloakroom-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let path = dir.join("sessions.db");
/// let store = SqliteStore::connect(&format!("sqlite://{}?table=web_sessions", path.display())).await?;
/// assert_eq!(store.table(), "web_sessions");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
    sql: Arc<Statements>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("database", &self.pool.target)
            .field("table", &self.sql.table)
            .finish()
    }
}

impl SqliteStore {
    /// Opens the database named by `url` and creates the table if it is missing.
    ///
    /// Accepted forms: `sqlite://path/to/sessions.db`, `sqlite:///absolute/path.db`,
    /// `sqlite:sessions.db`, and `sqlite::memory:` for a private in-memory database that lives as
    /// long as the store. Options: `?table=name` (default `cloakroom_sessions`). The file is
    /// created if missing; its directory must exist.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let parsed = StoreUrl::parse(url)?;
        Self::from_url(&parsed).await
    }

    /// Opens (or creates) the database file at `path`, with the default table.
    ///
    /// Use this instead of [`connect`](Self::connect) for paths that a URL would mangle (ones
    /// containing `?`).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::start(Database::File(path.as_ref().to_owned()), DEFAULT_TABLE).await
    }

    /// A store over the same database and connections, keeping its sessions in `table`
    /// (created if missing). For several apps sharing one database file.
    pub async fn with_table(&self, table: &str) -> Result<Self, StoreError> {
        let store = Self {
            pool: Arc::clone(&self.pool),
            sql: Arc::new(Statements::new(checked_table_name(table)?)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The table this store keeps its sessions in.
    pub fn table(&self) -> &str {
        &self.sql.table
    }

    /// Creates the table and its indexes if they are missing. Idempotent, and already done by
    /// every constructor; call it again only if something dropped the table meanwhile.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let schema = self.sql.schema.clone();
        self.write(move |conn| conn.execute_batch(&schema).map_err(db))
            .await
    }

    async fn from_url(url: &StoreUrl) -> Result<Self, StoreError> {
        let table = checked_table_name(url.option("table").unwrap_or(DEFAULT_TABLE))?;
        Self::start(Database::from_url(url)?, table).await
    }

    async fn start(target: Database, table: &str) -> Result<Self, StoreError> {
        let table = checked_table_name(table)?;
        let memory = matches!(target, Database::Memory);
        let pool = Arc::new(Pool::new(target));
        let mode = pool.run(|conn| switch_to_wal(conn)).await?;
        if mode != "wal" && !memory {
            tracing::warn!(
                database = %pool.target, journal_mode = %mode,
                "cloakroom: SQLite could not switch to WAL mode; readers and writers will wait \
                 for each other"
            );
        }
        let store = Self {
            pool,
            sql: Arc::new(Statements::new(table)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs a read on a pooled connection; reads run in parallel.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.pool.run(f).await
    }

    /// Runs a write on the writer thread (see `writer.rs`).
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.pool.write(f).await
    }

    /// Applies `patch` to the live row `old`, moving it to `new` first when rotating.
    async fn apply(
        &self,
        old: &SessionHash,
        new: Option<&SessionHash>,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        let statements = update_statements(&self.sql.table, old, new, patch);
        // A write runs inside the writer's transaction (see `writer.rs`), so the liveness check in
        // the first statement still holds when the last one runs, and a failure undoes them all.
        self.write(move |conn| {
            let mut statements = statements.into_iter();
            let Some(first) = statements.next() else {
                return Ok(false);
            };
            if first.execute(conn)? == 0 {
                return Ok(false);
            }
            for statement in statements {
                statement.execute(conn)?;
            }
            Ok(true)
        })
        .await
    }
}

/// Opens the store for [`connect`](crate::stores::connect).
pub(crate) async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqliteStore::from_url(url).await?))
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        let sql = Arc::clone(&self.sql);
        let params = vec![
            Sql::Text(hash.to_string()),
            record.user_id.clone().map_or(Sql::Null, Sql::Text),
            Sql::Text(Value::Object(record.data.clone()).to_string()),
            Sql::Integer(record.created_at.as_unix_millis()),
            Sql::Integer(record.updated_at.as_unix_millis()),
            Sql::Integer(record.expires_at.as_unix_millis()),
        ];
        let inserted = self
            .write(move |conn| {
                conn.prepare_cached(&sql.create)
                    .and_then(|mut st| st.execute(rusqlite::params_from_iter(params)))
                    .map_err(db)
            })
            .await?;
        // The upsert only overwrites an expired row; a live one leaves nothing changed.
        if inserted == 0 {
            Err(StoreError::Collision)
        } else {
            Ok(())
        }
    }

    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let sql = Arc::clone(&self.sql);
        let id = hash.to_string();
        self.run(move |conn| {
            let mut st = conn.prepare_cached(&sql.load).map_err(db)?;
            let row = st
                .query_row((id, now.as_unix_millis()), |row| record_row(row, 0))
                .optional()
                .map_err(db)?;
            row.map(RecordRow::decode).transpose()
        })
        .await
    }

    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.apply(hash, None, patch).await
    }

    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        self.apply(old, Some(new), patch).await
    }

    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        let sql = Arc::clone(&self.sql);
        let id = hash.to_string();
        self.write(move |conn| {
            conn.prepare_cached(&sql.delete)
                .and_then(|mut st| st.execute([id]))
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        let sql = Arc::clone(&self.sql);
        let user_id = user_id.to_owned();
        self.run(move |conn| {
            let mut st = conn.prepare_cached(&sql.list_user).map_err(db)?;
            let rows = st
                .query_map((user_id, now.as_unix_millis()), |row| {
                    Ok((row.get::<_, String>(0)?, record_row(row, 1)?))
                })
                .map_err(db)?;
            rows.map(|row| {
                let (id, raw) = row.map_err(db)?;
                Ok((parse_hash(NAME, &id)?, raw.decode()?))
            })
            .collect()
        })
        .await
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        let sql = Arc::clone(&self.sql);
        let params = (user_id.to_owned(), except.map(SessionHash::to_string));
        self.write(move |conn| {
            conn.prepare_cached(&sql.revoke_user)
                .and_then(|mut st| st.execute(params))
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        let sql = Arc::clone(&self.sql);
        let count: i64 = self
            .run(move |conn| {
                conn.prepare_cached(&sql.count)
                    .and_then(|mut st| st.query_row([now.as_unix_millis()], |row| row.get(0)))
                    .map_err(db)
            })
            .await?;
        Ok(row_count(count))
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let sql = Arc::clone(&self.sql);
        let limit = sql_limit(limit);
        self.write(move |conn| {
            conn.prepare_cached(&sql.purge)
                .and_then(|mut st| st.execute((now.as_unix_millis(), limit)))
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        SqliteStore::migrate(self).await
    }

    async fn stats(&self, now: Timestamp, top_users: usize) -> Result<StoreStats, StoreError> {
        let sql = Arc::clone(&self.sql);
        let now = now.as_unix_millis();
        let top_users = sql_limit(top_users);
        self.run(move |conn| {
            // One read transaction, so the figures describe one moment (WAL gives a snapshot).
            let tx = conn.transaction().map_err(db)?;
            let mut stats = StoreStats::default();
            let (live, expired, oldest, newest) = tx
                .query_row(&sql.stats_totals, [now], |row| {
                    Ok((
                        row.get::<_, Option<i64>>(0)?,
                        row.get::<_, Option<i64>>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                    ))
                })
                .map_err(db)?;
            let count = |n: Option<i64>| u64::try_from(n.unwrap_or(0)).unwrap_or(0);
            stats.live = count(live);
            stats.expired = Some(count(expired));
            stats.oldest = oldest.map(Timestamp::from_unix_millis);
            stats.newest = newest.map(Timestamp::from_unix_millis);
            let mut st = tx.prepare(&sql.stats_users).map_err(db)?;
            stats.top_users = st
                .query_map((now, top_users), |row| {
                    Ok((row.get::<_, String>(0)?, count(row.get(1)?)))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?;
            let mut st = tx.prepare(&sql.stats_sizes).map_err(db)?;
            let sizes = st
                .query_map([now], |row| row.get::<_, i64>(0))
                .map_err(db)?
                .map(|size| size.map(|n| u64::try_from(n).unwrap_or(0)))
                .collect::<rusqlite::Result<Vec<u64>>>()
                .map_err(db)?;
            stats.data_bytes = Percentiles::of(sizes);
            Ok(stats)
        })
        .await
    }
}

/// Classifies a driver error: stored JSON SQLite cannot parse is a corrupt record, a value of the
/// wrong type a corrupt column; everything else means the database cannot be used right now.
fn db(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(_, Some(message)) if message.contains("malformed JSON") => {
            StoreError::corrupt(NAME, format!("stored data is not valid JSON: {message}"))
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::corrupt(NAME, e.to_string()),
        _ => StoreError::unavailable(NAME, e),
    }
}
