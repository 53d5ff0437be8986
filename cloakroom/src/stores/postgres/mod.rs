//! The PostgreSQL store: sessions as rows with a JSONB `data` column, for several app instances
//! sharing one database.
//!
//! Every session operation is one SQL statement, so one round trip: a patch is applied by the
//! server (`(data - removed) || set`) to whatever the row holds when the statement runs, and row
//! locking makes concurrent patches to one session queue up instead of overwriting each other.
//! The statements are in `statements.rs`.
//!
//! Saves from concurrent requests share statements: a save waits for no timer, but while one
//! batch of saves is at the database, the saves that arrive queue up and then go together as
//! one `UPDATE … FROM unnest(…)`, one round trip and one commit for all of them (`batch.rs`,
//! on the batcher shared with MySQL). Under load this cuts the commits, which cost far more than
//! the reads, by the number of requests in flight.

mod batch;
mod statements;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnection, PgPool, PgQueryResult, PgRow, Postgres};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, SqlStr};

use self::statements::{SetObject, Statements};

use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::store::{Percentiles, Store, StoreStats};
use crate::stores::StoreUrl;
use crate::stores::sql::{DEFAULT_TABLE, checked_table_name};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

use super::sql::batch::{Batcher, SaveMany};
use super::sql::common::{Calls, RowsAffected};
use super::sql::driver as sql;

const ENGINE: sql::Engine = sql::Engine {
    name: "postgres",
    store_type: "PostgresStore",
    database: "PostgreSQL",
    schemes: "postgres:// or postgresql://",
    missing_table: "42P01",
};

/// Keeps sessions in PostgreSQL, one row per session, shared by every app instance that uses the
/// same database and table.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::StoreError> {
/// use cloakroom::PostgresStore;
///
/// // Creates the table if needed; `?table=` picks another one than `cloakroom_sessions`.
/// let store = PostgresStore::connect("postgres://app@db.internal/app?table=sessions").await?;
/// # Ok(()) }
/// ```
///
/// The table (created by [`migrate`](Self::migrate)):
///
/// | column | type | |
/// |---|---|---|
/// | `id` | `TEXT` primary key | SHA-256 of the ticket, 64 hex digits; never the ticket itself |
/// | `user_id` | `TEXT` null | indexed (partial index on non-null values) |
/// | `data` | `JSONB` | the session's key/value data |
/// | `created_at`, `updated_at`, `expires_at` | `BIGINT` | Unix milliseconds; `expires_at` indexed |
///
/// Expired rows are invisible to every call but stay until [`Store::purge_expired`] deletes them:
/// run it periodically, e.g. with cloakroom's background purger.
///
/// PostgreSQL cannot keep the NUL character (U+0000) in `jsonb` or `text`; session data or user
/// ids containing it are refused with [`StoreError::Config`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    table: String,
    sql: Arc<Statements>,
    /// Started by the first save, shared by clones of the store.
    batcher: Arc<OnceLock<Batcher>>,
    /// The batch task's own connection, taken out of the pool when the first batch runs (see
    /// [`SaveMany::save_many`]); empty in every other copy of the store.
    batch_connection: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
}

impl PostgresStore {
    /// Connects to the database at `url` and creates the table if it does not exist.
    ///
    /// `url` is a PostgreSQL URL as sqlx takes it (`postgres://user:password@host:5432/db`,
    /// with options like `?sslmode=require`), plus cloakroom's `table=` option. The pool opened
    /// here waits at most 3 seconds for a connection, so an unreachable database gives
    /// [`StoreError::Unavailable`] rather than hanging requests; to tune the pool, build it
    /// yourself and use [`new`](Self::new).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_parsed(&StoreUrl::parse(url)?).await
    }

    async fn connect_parsed(url: &StoreUrl) -> Result<Self, StoreError> {
        let (pool, table) = sql::connect(&ENGINE, url, &url.driver_url).await?;
        let store = Self::new(pool).with_table(table)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool, using the table `cloakroom_sessions`.
    ///
    /// Call [`migrate`](Self::migrate) once at startup unless the table is created elsewhere.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            sql: Arc::new(Statements::new(DEFAULT_TABLE)),
            batcher: Arc::new(OnceLock::new()),
            batch_connection: Arc::default(),
        }
    }

    /// Uses the table `name` instead; fails unless it is a plain identifier (letters, digits and
    /// underscores), since it is spliced into SQL.
    pub fn with_table(mut self, name: &str) -> Result<Self, StoreError> {
        let name = checked_table_name(name)?;
        self.table = name.to_owned();
        self.sql = Arc::new(Statements::new(name));
        self.batcher = Arc::new(OnceLock::new());
        self.batch_connection = Arc::default();
        Ok(self)
    }

    /// The table sessions are kept in.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The connection pool, e.g. to share it with the rest of the app.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the table and its indexes if they do not exist. Safe to run on every startup and
    /// from several instances at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let t = format!("\"{}\"", self.table);
        let user_index = index_name(&self.table, "user_id_idx");
        let expiry_index = index_name(&self.table, "expires_at_idx");
        let statements = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 id TEXT COLLATE \"C\" PRIMARY KEY, \
                 user_id TEXT COLLATE \"C\", \
                 data JSONB NOT NULL, \
                 created_at BIGINT NOT NULL, \
                 updated_at BIGINT NOT NULL, \
                 expires_at BIGINT NOT NULL)"
            ),
            // Most sessions are anonymous; indexing only bound ones keeps the index small.
            format!(
                "CREATE INDEX IF NOT EXISTS \"{user_index}\" ON {t} (user_id) \
                 WHERE user_id IS NOT NULL"
            ),
            format!("CREATE INDEX IF NOT EXISTS \"{expiry_index}\" ON {t} (expires_at)"),
        ];
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        // `IF NOT EXISTS` is not safe against itself: two sessions creating the same table at
        // once can both pass the check and one then fails on the catalog's unique index. An
        // advisory lock (released at commit) makes concurrent migrations take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(1668050802, hashtext($1))")
            .bind(self.table.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(e))?;
        for statement in statements {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.error(e))?;
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// Turns a driver error into the store error that says what to do.
    fn error(&self, error: sqlx::Error) -> StoreError {
        map_error(&self.table, error)
    }

    /// Where the calls PostgreSQL runs as MySQL does run.
    fn calls(&self) -> Calls<'_, Postgres> {
        Calls {
            engine: &ENGINE,
            pool: &self.pool,
            table: &self.table,
            error: map_error,
        }
    }

    /// Runs a patch as `save` (no `new`) or `rotate`; `true` if a live row took it.
    async fn update(
        &self,
        statement: &SqlStr,
        id: &SessionHash,
        new: Option<&SessionHash>,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        let mut query = sqlx::query(statement.clone())
            .bind(id.to_string())
            .bind(patch.changes_data())
            .bind(patch.clear)
            .bind(patch.remove.as_slice())
            .bind(Json(SetObject(&patch.set)))
            .bind(patch.user_id.is_some())
            .bind(patch.user_id.as_ref().and_then(Option::as_deref))
            .bind(patch.expires_at.map(Timestamp::as_unix_millis))
            .bind(patch.updated_at.as_unix_millis());
        if let Some(new) = new {
            query = query.bind(new.to_string());
        }
        let done = query.execute(&self.pool).await.map_err(|e| self.error(e))?;
        Ok(done.rows_affected() > 0)
    }
}

/// Turns a driver error on `table` into the store error that says what to do.
fn map_error(table: &str, error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error
            // The NUL character in jsonb (22P05) or text (22021); a user id too long for the
            // index (54000). Retrying cannot help, so this is not "unavailable".
            && let Some("22P05" | "22021" | "54000") = db.code().as_deref()
    {
        return StoreError::Config(format!(
            "PostgreSQL refused the session data or user id: {}; it cannot store the NUL \
                 character (U+0000) in jsonb or text, nor index user ids over about 2,700 bytes",
            db.message()
        ));
    }
    sql::error(&ENGINE, table, error)
}

impl RowsAffected for PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// An index name unique to `table` within 63 bytes (PostgreSQL silently truncates longer names,
/// and two long table names could then end up sharing one index name, so that `IF NOT EXISTS`
/// skips creating the second table's index).
fn index_name(table: &str, suffix: &str) -> String {
    if table.len() + 1 + suffix.len() <= 63 {
        return format!("{table}_{suffix}");
    }
    let digest = Sha256::digest(table.as_bytes());
    let tag = crate::ticket::hex(&digest[..4]);
    // Table names are ASCII (checked), so byte slicing is on character boundaries.
    let keep = 63 - suffix.len() - tag.len() - 2;
    format!("{}_{tag}_{suffix}", &table[..keep.min(table.len())])
}

/// User ids are `TEXT`: read as they are.
fn decode_user_id(text: String) -> Result<String, StoreError> {
    Ok(text)
}

/// The sizes of live data: percentiles (an array) and largest, in columns 4 and 5 of `stats`.
fn data_bytes(row: &PgRow) -> Result<Option<Percentiles>, StoreError> {
    let sizes: Option<Vec<i32>> = sql::stats_column(&ENGINE, row, 4)?;
    let max_size: Option<i32> = sql::stats_column(&ENGINE, row, 5)?;
    let bytes = |n: i32| u64::try_from(n).unwrap_or(0);
    Ok(match (sizes.as_deref(), max_size) {
        (Some(&[p50, p90, p99]), Some(max)) => Some(Percentiles {
            p50: bytes(p50),
            p90: bytes(p90),
            p99: bytes(p99),
            max: bytes(max),
        }),
        _ => None,
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        ENGINE.name
    }

    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        let done = sqlx::query(self.sql.create.clone())
            .bind(hash.to_string())
            .bind(record.user_id.as_deref())
            .bind(Json(&record.data))
            .bind(record.created_at.as_unix_millis())
            .bind(record.updated_at.as_unix_millis())
            .bind(record.expires_at.as_unix_millis())
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Collision);
        }
        Ok(())
    }

    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        let statement = &self.sql.load;
        self.calls()
            .load(statement, hash, now, decode_user_id)
            .await
    }

    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.save_batched(hash, patch).await
    }

    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        self.update(&self.sql.rotate, old, Some(new), patch).await
    }

    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        self.calls().delete(&self.sql.delete, hash).await
    }

    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        let statement = &self.sql.list_user;
        self.calls()
            .list_user(statement, user_id, now, decode_user_id)
            .await
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        let statement = &self.sql.revoke_user;
        self.calls().revoke_user(statement, user_id, except).await
    }

    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.calls().count(&self.sql.count, now).await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.calls().purge(&self.sql.purge, now, limit).await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        PostgresStore::migrate(self).await
    }

    async fn stats(&self, now: Timestamp, top_users: usize) -> Result<StoreStats, StoreError> {
        let row = sqlx::query(self.sql.stats.clone())
            .bind(now.as_unix_millis())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let mut stats = StoreStats {
            data_bytes: data_bytes(&row)?,
            ..sql::decode_stats(&ENGINE, &row)?
        };
        if top_users > 0 {
            let statement = &self.sql.top_users;
            stats.top_users = (self.calls())
                .top_users(statement, now, top_users, decode_user_id)
                .await?;
        }
        Ok(stats)
    }
}

/// Opens the store for [`connect`](crate::stores::connect).
pub(crate) async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(PostgresStore::connect_parsed(url).await?))
}
