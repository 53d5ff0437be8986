//! The PostgreSQL store: sessions as rows with a JSONB `data` column, for several app instances
//! sharing one database.
//!
//! Every session operation is one SQL statement, so one round trip: a patch is applied by the
//! server (`(data - removed) || set`) to whatever the row holds when the statement runs, and row
//! locking makes concurrent patches to one session queue up instead of overwriting each other.
//!
//! Saves from concurrent requests share statements: a save waits for no timer, but while one
//! batch of saves is at the database, the saves that arrive queue up and then go together as
//! one `UPDATE … FROM unnest(…)`, one round trip and one commit for all of them (see
//! `Batcher`). Under load this cuts the commits, which cost far more than the reads, by the
//! number of requests in flight.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::ser::{Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnection, PgPool, PgQueryResult, PgRow, Postgres};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::store::{Percentiles, Store, StoreStats};
use crate::stores::StoreUrl;
use crate::stores::sql::{DEFAULT_TABLE, checked_table_name};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

use super::sql::batch::{Batcher, QueuedSave, SaveMany};
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

/// The statements for one table, built once: identifiers cannot be bound as parameters, so the
/// (checked) table name is spliced in here and nowhere else.
#[derive(Debug)]
struct Statements {
    load: SqlStr,
    create: SqlStr,
    save: SqlStr,
    save_many: SqlStr,
    rotate: SqlStr,
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
        let t = format!("\"{table}\"");
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        // $1 = id (old id for rotate), $2 = whether the data changes, $3 = clear, $4 = removed
        // keys, $5 = keys to set, $6 = whether user_id changes, $7 = new user_id, $8 = new expiry,
        // $9 = now. The data expression is guarded by $2 so that a touch leaves the (possibly
        // TOASTed) JSONB untouched instead of rewriting an identical copy.
        let set = "data = CASE WHEN $2 \
                THEN (CASE WHEN $3 THEN '{}'::jsonb ELSE data END - $4::text[]) || $5::jsonb \
                ELSE data END, \
             user_id = CASE WHEN $6 THEN $7::text ELSE user_id END, \
             expires_at = COALESCE($8::bigint, expires_at), \
             updated_at = $9";
        let columns = "user_id, data, created_at, updated_at, expires_at";
        Self {
            load: sql(format!(
                "SELECT {columns} FROM {t} WHERE id = $1 AND expires_at > $2"
            )),
            // Only an expired row may be replaced, and only in this same statement; a live one
            // makes the upsert update nothing, which `create` reports as a collision.
            create: sql(format!(
                "INSERT INTO {t} AS s (id, {columns}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, data = EXCLUDED.data, \
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
                 expires_at = EXCLUDED.expires_at \
                 WHERE s.expires_at <= EXCLUDED.created_at"
            )),
            save: sql(format!(
                "UPDATE {t} SET {set} WHERE id = $1 AND expires_at > $9"
            )),
            rotate: sql(format!(
                "UPDATE {t} SET id = $10, {set} WHERE id = $1 AND expires_at > $9"
            )),
            // `save` for many sessions at once: one row of arrays per save, the same columns as
            // `save`'s parameters (removed keys and set keys as JSON text). Ids are distinct.
            save_many: sql(format!(
                "UPDATE {t} AS s SET \
                 data = CASE WHEN p.changes \
                    THEN (CASE WHEN p.clear THEN '{{}}'::jsonb ELSE s.data END \
                          - ARRAY(SELECT jsonb_array_elements_text(p.remove::jsonb))) \
                         || p.set::jsonb \
                    ELSE s.data END, \
                 user_id = CASE WHEN p.user_changes THEN p.user_id ELSE s.user_id END, \
                 expires_at = COALESCE(p.expires_at, s.expires_at), \
                 updated_at = p.now \
                 FROM unnest($1::text[], $2::bool[], $3::bool[], $4::text[], $5::text[], \
                    $6::bool[], $7::text[], $8::int8[], $9::int8[]) \
                    AS p(id, changes, clear, remove, set, user_changes, user_id, expires_at, now) \
                 WHERE s.id = p.id AND s.expires_at > p.now \
                 RETURNING s.id"
            )),
            delete: sql(format!("DELETE FROM {t} WHERE id = $1")),
            list_user: sql(format!(
                "SELECT id, {columns} FROM {t} WHERE user_id = $1 AND expires_at > $2 \
                 ORDER BY created_at, id"
            )),
            revoke_user: sql(format!(
                "DELETE FROM {t} WHERE user_id = $1 AND id IS DISTINCT FROM $2"
            )),
            count: sql(format!("SELECT COUNT(*) FROM {t} WHERE expires_at > $1")),
            // SKIP LOCKED lets several instances purge at once without queueing on each other's
            // rows; the outer condition is checked again on the row as it is when deleted, so a
            // row that `create` replaced meanwhile survives.
            purge: sql(format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= $1 \
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) AND expires_at <= $1"
            )),
            // One pass over the table; sizes are of the text PostgreSQL renders, which is close
            // to (a little larger than) cloakroom's compact JSON.
            stats: sql(format!(
                "SELECT COUNT(*) FILTER (WHERE expires_at > $1), \
                 COUNT(*) FILTER (WHERE expires_at <= $1), \
                 MIN(created_at) FILTER (WHERE expires_at > $1), \
                 MAX(created_at) FILTER (WHERE expires_at > $1), \
                 percentile_disc(ARRAY[0.5, 0.9, 0.99]::float8[]) \
                 WITHIN GROUP (ORDER BY octet_length(data::text)) FILTER (WHERE expires_at > $1), \
                 MAX(octet_length(data::text)) FILTER (WHERE expires_at > $1) \
                 FROM {t}"
            )),
            top_users: sql(format!(
                "SELECT user_id, COUNT(*) FROM {t} WHERE user_id IS NOT NULL AND expires_at > $1 \
                 GROUP BY user_id ORDER BY COUNT(*) DESC, user_id LIMIT $2"
            )),
        }
    }
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
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    // Table names are ASCII (checked), so byte slicing is on character boundaries.
    let keep = 63 - suffix.len() - tag.len() - 2;
    format!("{}_{tag}_{suffix}", &table[..keep.min(table.len())])
}

/// The keys a patch sets, serialized as one JSON object without copying the values.
struct SetObject<'a>(&'a [(String, Value)]);

impl Serialize for SetObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A key set twice keeps its last value, as `Patch::apply_to` would.
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[async_trait]
impl SaveMany for PostgresStore {
    const ENGINE: &'static str = ENGINE.name;

    fn batcher(&self) -> &OnceLock<Batcher> {
        &self.batcher
    }

    fn without_batcher(&self) -> Self {
        Self {
            batcher: Arc::new(OnceLock::new()),
            batch_connection: Arc::default(),
            ..self.clone()
        }
    }

    async fn save_many(&self, batch: &[QueuedSave]) -> Result<Vec<bool>, StoreError> {
        fn column<'a, T>(batch: &'a [QueuedSave], f: impl Fn(&'a Patch) -> T) -> Vec<T> {
            batch.iter().map(|save| f(&save.patch)).collect()
        }
        let ids: Vec<String> = batch.iter().map(|save| save.hash.to_string()).collect();
        // Strings and JSON values always serialize; the fallbacks are never used.
        let remove = column(batch, |p| {
            serde_json::to_string(&p.remove).unwrap_or_else(|_| "[]".into())
        });
        let set = column(batch, |p| {
            serde_json::to_string(&SetObject(&p.set)).unwrap_or_else(|_| "{}".into())
        });
        let mut slot = self.batch_connection.lock().await;
        let connection = match &mut *slot {
            Some(connection) => connection,
            empty => empty.insert(self.open_batch_connection().await?),
        };
        let saved = sqlx::query_scalar(self.sql.save_many.clone())
            .bind(&ids)
            .bind(column(batch, Patch::changes_data))
            .bind(column(batch, |p| p.clear))
            .bind(remove)
            .bind(set)
            .bind(column(batch, |p| p.user_id.is_some()))
            .bind(column(batch, |p| {
                p.user_id.as_ref().and_then(Option::as_deref)
            }))
            .bind(column(batch, |p| {
                p.expires_at.map(Timestamp::as_unix_millis)
            }))
            .bind(column(batch, |p| p.updated_at.as_unix_millis()))
            .fetch_all(&mut *connection)
            .await;
        let saved: HashSet<String> = match saved {
            Ok(saved) => saved.into_iter().collect(),
            Err(error) => {
                // Anything but the database refusing the statement may have left the
                // connection unusable: the next batch opens another.
                if !matches!(error, sqlx::Error::Database(_)) {
                    *slot = None;
                }
                return Err(self.error(error));
            }
        };
        Ok(ids.iter().map(|id| saved.contains(id)).collect())
    }

    async fn save_one(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.update(&self.sql.save, hash, None, patch).await
    }
}

impl PostgresStore {
    /// A connection for the batch task alone, taken out of the pool (which may open another in
    /// its place): batches then never wait behind loads for a connection.
    ///
    /// It plans the batch statement on every run. Otherwise, after five runs, PostgreSQL would
    /// cache a generic plan made for the table as it was then, and a plan made while the table
    /// was small (a hash join over a full scan) stays in use as the table grows, until
    /// statistics are refreshed (never, with autovacuum off). Measured: a batch on a
    /// 200,000-row table took 26 ms with such a plan, 0.07 ms with its own (an index lookup per
    /// id). Setting this for the one connection keeps the statement prepared (one round trip
    /// per batch) without changing how the pool's connections plan the app's own queries.
    async fn open_batch_connection(&self) -> Result<PgConnection, StoreError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error(e))?
            .detach();
        sqlx::query("SET plan_cache_mode = force_custom_plan")
            .execute(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(connection)
    }
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
