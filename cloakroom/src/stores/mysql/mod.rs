//! The MySQL / MariaDB store: sessions as rows with a JSON `data` column, for several app
//! instances sharing one database.
//!
//! A patch is one `UPDATE` that rewrites `data` with `JSON_REMOVE`/`JSON_SET` on the server, so
//! it applies to whatever the row holds when the statement runs; InnoDB's row lock makes
//! concurrent patches to one session queue up instead of overwriting each other.
//!
//! Saves from concurrent requests share statements, as on PostgreSQL: while one batch is at the
//! database, the saves that arrive queue up and then go together as one
//! `UPDATE … SET data = CASE id WHEN … END … WHERE id IN (…)`, one round trip and one commit for
//! all of them. A lone save goes at once; a batch the server or a check refuses is retried save
//! by save, so a bad patch fails only itself.
//!
//! MariaDB stores JSON as text and has quirks with it; `json.rs` says which and how every value
//! and key is written to get round them. `patch.rs` compiles patches and batches to SQL.

mod json;
mod patch;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sqlx::mysql::{MySql, MySqlPool, MySqlQueryResult};
use sqlx::{AssertSqlSafe, QueryBuilder, SqlSafeStr, SqlStr};

use self::json::ascii_json;
use self::patch::{push_live_rows, save_many_statement, update_statement};

use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::store::{Store, StoreStats};
use crate::stores::StoreUrl;
use crate::stores::sql::{DEFAULT_TABLE, checked_table_name};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

use super::sql::batch::{Batcher, QueuedSave, SaveMany};
use super::sql::common::{Calls, RowsAffected};
use super::sql::driver as sql;

const ENGINE: sql::Engine = sql::Engine {
    name: "mysql",
    store_type: "MySqlStore",
    database: "MySQL",
    schemes: "mysql:// or mariadb://",
    missing_table: "42S02",
};

/// The longest user id the `user_id` column holds, in bytes. Kept under InnoDB's smallest index
/// key limit (767 bytes) so the schema works with every row format.
pub const MAX_USER_ID_BYTES: usize = 255;

/// Keeps sessions in MySQL (5.7 and later) or MariaDB (10.5 and later), one row per session,
/// shared by every app instance that uses the same database and table.
///
/// ```no_run
/// # async fn demo() -> Result<(), cloakroom::StoreError> {
/// use cloakroom::MySqlStore;
///
/// // Creates the table if needed; `?table=` picks another one than `cloakroom_sessions`.
/// let store = MySqlStore::connect("mysql://app:secret@db.internal/app?table=sessions").await?;
/// # Ok(()) }
/// ```
///
/// The table (created by [`migrate`](Self::migrate)):
///
/// | column | type | |
/// |---|---|---|
/// | `id` | `CHAR(64)` ASCII, primary key | SHA-256 of the ticket in hex; never the ticket itself |
/// | `user_id` | `VARBINARY(255)` null, indexed | binary, so `alice`, `Alice` and `alice ` are three users |
/// | `data` | `JSON` | the session's key/value data |
/// | `created_at`, `updated_at`, `expires_at` | `BIGINT` | Unix milliseconds; `expires_at` indexed |
///
/// Expired rows are invisible to every call but stay until [`Store::purge_expired`] deletes them:
/// run it periodically, e.g. with cloakroom's background purger.
///
/// User ids longer than [`MAX_USER_ID_BYTES`] are refused with [`StoreError::Config`].
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    table: String,
    sql: Arc<Statements>,
    /// Started by the first save (it needs a runtime); shared by clones, so they batch together.
    batcher: Arc<OnceLock<Batcher>>,
}

/// The fixed statements for one table, built once: identifiers cannot be bound as parameters, so
/// the (checked) table name is spliced in here. Patches build theirs per call, since the number of
/// keys they change varies.
#[derive(Debug)]
struct Statements {
    /// The quoted table name, for the per-patch statements.
    table: String,
    load: SqlStr,
    insert: SqlStr,
    delete_expired: SqlStr,
    delete: SqlStr,
    list_user: SqlStr,
    revoke_user: SqlStr,
    count: SqlStr,
    purge: SqlStr,
    stats: SqlStr,
    top_users: SqlStr,
}

impl Statements {
    fn new(table: &str) -> Self {
        let t = format!("`{table}`");
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        let columns = "user_id, data, created_at, updated_at, expires_at";
        Self {
            load: sql(format!(
                "SELECT {columns} FROM {t} WHERE id = ? AND expires_at > ?"
            )),
            insert: sql(format!(
                "INSERT INTO {t} (id, {columns}) VALUES (?, ?, ?, ?, ?, ?)"
            )),
            delete_expired: sql(format!("DELETE FROM {t} WHERE id = ? AND expires_at <= ?")),
            delete: sql(format!("DELETE FROM {t} WHERE id = ?")),
            list_user: sql(format!(
                "SELECT id, {columns} FROM {t} WHERE user_id = ? AND expires_at > ? \
                 ORDER BY created_at, id"
            )),
            // `<=>` is null-safe: with no session to keep, `NOT (id <=> NULL)` holds for all.
            revoke_user: sql(format!(
                "DELETE FROM {t} WHERE user_id = ? AND NOT (id <=> ?)"
            )),
            count: sql(format!("SELECT COUNT(*) FROM {t} WHERE expires_at > ?")),
            purge: sql(format!(
                "DELETE FROM {t} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
            )),
            stats: sql(format!(
                "SELECT COUNT(CASE WHEN expires_at > ? THEN 1 END), \
                 COUNT(CASE WHEN expires_at <= ? THEN 1 END), \
                 MIN(CASE WHEN expires_at > ? THEN created_at END), \
                 MAX(CASE WHEN expires_at > ? THEN created_at END) \
                 FROM {t}"
            )),
            top_users: sql(format!(
                "SELECT user_id, COUNT(*) AS n FROM {t} \
                 WHERE user_id IS NOT NULL AND expires_at > ? \
                 GROUP BY user_id ORDER BY n DESC, user_id LIMIT ?"
            )),
            table: t,
        }
    }
}

impl MySqlStore {
    /// Connects to the database at `url` and creates the table if it does not exist.
    ///
    /// `url` is a MySQL URL as sqlx takes it (`mysql://user:password@host:3306/db`; `mariadb://`
    /// works too), plus cloakroom's `table=` option. The pool opened here waits at most 3 seconds
    /// for a connection, so an unreachable database gives [`StoreError::Unavailable`] rather than
    /// hanging requests; to tune the pool, build it yourself and use [`new`](Self::new).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_parsed(&StoreUrl::parse(url)?).await
    }

    async fn connect_parsed(url: &StoreUrl) -> Result<Self, StoreError> {
        // sqlx knows only the mysql:// scheme; MariaDB speaks the same protocol.
        let driver_url = match url.driver_url.split_once("://") {
            Some((_, rest)) => format!("mysql://{rest}"),
            None => url.driver_url.clone(),
        };
        let (pool, table) = sql::connect(&ENGINE, url, &driver_url).await?;
        let store = Self::new(pool).with_table(table)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool, using the table `cloakroom_sessions`.
    ///
    /// Call [`migrate`](Self::migrate) once at startup unless the table is created elsewhere.
    pub fn new(pool: MySqlPool) -> Self {
        Self {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            sql: Arc::new(Statements::new(DEFAULT_TABLE)),
            batcher: Arc::new(OnceLock::new()),
        }
    }

    /// Uses the table `name` instead; fails unless it is a plain identifier (letters, digits and
    /// underscores), since it is spliced into SQL.
    pub fn with_table(mut self, name: &str) -> Result<Self, StoreError> {
        let name = checked_table_name(name)?;
        self.table = name.to_owned();
        self.sql = Arc::new(Statements::new(name));
        self.batcher = Arc::new(OnceLock::new());
        Ok(self)
    }

    /// The table sessions are kept in.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The connection pool, e.g. to share it with the rest of the app.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Creates the table and its indexes if they do not exist. Safe to run on every startup and
    /// from several instances at once (it is a single `CREATE TABLE IF NOT EXISTS`, which MySQL
    /// and MariaDB serialize on the table name's metadata lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // `id` is ASCII with a binary collation: hex digits need no more, and comparisons are
        // exact and cheap. The table's utf8mb4 default matters on MariaDB, where `data` is text.
        let statement = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             id CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, \
             user_id VARBINARY({MAX_USER_ID_BYTES}) NULL, \
             data JSON NOT NULL, \
             created_at BIGINT NOT NULL, \
             updated_at BIGINT NOT NULL, \
             expires_at BIGINT NOT NULL, \
             PRIMARY KEY (id), \
             KEY user_id_idx (user_id), \
             KEY expires_at_idx (expires_at)\
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.sql.table
        );
        sqlx::query(AssertSqlSafe(statement))
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Turns a driver error into the store error that says what to do.
    fn error(&self, error: sqlx::Error) -> StoreError {
        map_error(&self.table, error)
    }

    /// Where the calls MySQL runs as PostgreSQL does run.
    fn calls(&self) -> Calls<'_, MySql> {
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
        id: &SessionHash,
        new: Option<&SessionHash>,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        let mut query = update_statement(&self.sql.table, id, new, patch)?;
        // The connection reports rows *matched* (sqlx sets CLIENT_FOUND_ROWS), so a patch that
        // happens to change nothing still counts as having found its session.
        let done = query
            .build()
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert(&self, id: &str, record: &Record) -> Result<(), StoreError> {
        sqlx::query(self.sql.insert.clone())
            .bind(id)
            .bind(record.user_id.as_deref().map(str::as_bytes))
            .bind(ascii_json(&record.data)?)
            .bind(record.created_at.as_unix_millis())
            .bind(record.updated_at.as_unix_millis())
            .bind(record.expires_at.as_unix_millis())
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// Turns a driver error on `table` into the store error that says what to do.
fn map_error(table: &str, error: sqlx::Error) -> StoreError {
    sql::error(&ENGINE, table, error)
}

impl RowsAffected for MySqlQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

pub(super) fn check_user_id(user_id: &str) -> Result<(), StoreError> {
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(StoreError::Config(format!(
            "user id is {} bytes; the MySQL store keeps at most {MAX_USER_ID_BYTES} \
             (bind sessions to a shorter id, e.g. the user's primary key)",
            user_id.len()
        )));
    }
    Ok(())
}

/// User ids are `VARBINARY` (compared byte for byte): read back as UTF-8.
fn decode_user_id(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|_| StoreError::corrupt(ENGINE.name, "user_id is not valid UTF-8"))
}

#[async_trait]
impl SaveMany for MySqlStore {
    const ENGINE: &'static str = ENGINE.name;

    fn batcher(&self) -> &OnceLock<Batcher> {
        &self.batcher
    }

    fn without_batcher(&self) -> Self {
        Self {
            batcher: Arc::new(OnceLock::new()),
            ..self.clone()
        }
    }

    /// One `UPDATE … SET column = CASE id WHEN … END` for the whole batch. MySQL cannot return
    /// the rows an `UPDATE` touched, but it counts the rows it found: when that is every session
    /// of the batch (the usual case), each save found its session. Otherwise the sessions still
    /// live afterwards are read back; a session that had ended was not touched and cannot have
    /// come back, so only one ended *after* the statement (and took the patch with it) is
    /// reported as gone, which it is.
    async fn save_many(&self, batch: &[QueuedSave]) -> Result<Vec<bool>, StoreError> {
        let ids: Vec<String> = batch.iter().map(|save| save.hash.to_string()).collect();
        let mut query = save_many_statement(&self.sql.table, batch, &ids)?;
        let done = query
            .build()
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        if done.rows_affected() == batch.len() as u64 {
            return Ok(vec![true; batch.len()]);
        }
        let mut check = QueryBuilder::<MySql>::new("SELECT id FROM ");
        check.push(&self.sql.table);
        push_live_rows(&mut check, batch, &ids)?;
        let live: HashSet<String> = check
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?
            .into_iter()
            .collect();
        Ok(ids.iter().map(|id| live.contains(id)).collect())
    }

    async fn save_one(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.update(hash, None, patch).await
    }
}

#[async_trait]
impl Store for MySqlStore {
    fn name(&self) -> &'static str {
        ENGINE.name
    }

    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        if let Some(user_id) = &record.user_id {
            check_user_id(user_id)?;
        }
        let id = hash.to_string();
        match self.insert(&id, record).await {
            // A plain INSERT is the whole story unless the id is taken, which for random 256-bit
            // ids means an expired row left for the purge. Only then is that row deleted and the
            // insert tried once more; a live row is never touched. (An upsert cannot tell
            // "replaced" from "kept" here: with CLIENT_FOUND_ROWS both report one row.)
            Err(StoreError::Collision) => {
                let done = sqlx::query(self.sql.delete_expired.clone())
                    .bind(&id)
                    .bind(record.created_at.as_unix_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(|e| self.error(e))?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Collision);
                }
                self.insert(&id, record).await
            }
            other => other,
        }
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
        self.update(old, Some(new), patch).await
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
        let user_id = user_id.as_bytes();
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
        let user_id = user_id.as_bytes();
        self.calls().revoke_user(statement, user_id, except).await
    }

    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.calls().count(&self.sql.count, now).await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.calls().purge(&self.sql.purge, now, limit).await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MySqlStore::migrate(self).await
    }

    /// Counts, ages and top users. Data sizes are not reported: on MariaDB the stored text is
    /// ASCII-escaped, so its length would overstate non-Latin data several times over.
    async fn stats(&self, now: Timestamp, top_users: usize) -> Result<StoreStats, StoreError> {
        let now = now.as_unix_millis();
        let row = sqlx::query(self.sql.stats.clone())
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        let mut stats = sql::decode_stats(&ENGINE, &row)?;
        if top_users > 0 {
            let statement = &self.sql.top_users;
            let now = Timestamp::from_unix_millis(now);
            stats.top_users = (self.calls())
                .top_users(statement, now, top_users, decode_user_id)
                .await?;
        }
        Ok(stats)
    }
}

/// Opens the store for [`connect`](crate::stores::connect).
pub(crate) async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(MySqlStore::connect_parsed(url).await?))
}
