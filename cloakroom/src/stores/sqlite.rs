//! The SQLite store: the embedded default.
//!
//! Driver: rusqlite on tokio's blocking pool rather than sqlx. Measured on the store's hot path
//! (a load and a one-key save against a WAL file, 10 000 cycles), rusqlite took about half the
//! time of sqlx's SQLite driver one request at a time and about 30 % less with eight at once, and
//! a third to two thirds less CPU: sqlx hands every query to a per-connection worker thread and
//! back, which costs more than these queries do. Here a read is one hop to a blocking thread
//! that takes an idle connection, and a write is queued for the store's writer thread, which
//! commits whatever writes are waiting in one transaction (see `Pool` below for why).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use serde_json::Value;
use tokio::sync::{Semaphore, oneshot};

use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::store::{Percentiles, Store, StoreStats};
use crate::stores::{StoreUrl, checked_table_name, parse_data};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

const NAME: &str = "sqlite";

/// The table sessions live in unless `?table=` or [`SqliteStore::with_table`] says otherwise.
pub const DEFAULT_TABLE: &str = "cloakroom_sessions";

/// Connections to a database file. Readers run in parallel under WAL; writers queue on SQLite's
/// single write lock whatever the pool size, so more connections would only add threads.
const MAX_CONNECTIONS: usize = 8;

/// How long a statement waits for another connection's write lock before failing. Writes are
/// single short statements, so waiting this long means something else holds the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound parameters per statement: SQLite's default limit is 32 766. A patch that needs more is
/// applied as several statements in one transaction.
const MAX_PARAMS: usize = 30_000;

/// Path/value pairs per `json_set` call and paths per `json_remove` call: SQLite before 3.48
/// allows 127 arguments per function call. Longer lists nest calls.
const SET_PAIRS_PER_CALL: usize = 50;
const REMOVE_PATHS_PER_CALL: usize = 100;

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
        Self::start(Target::File(path.as_ref().to_owned()), DEFAULT_TABLE).await
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
        Self::start(Target::from_url(url)?, table).await
    }

    async fn start(target: Target, table: &str) -> Result<Self, StoreError> {
        let table = checked_table_name(table)?;
        let memory = matches!(target, Target::Memory);
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

    /// Runs a write on the writer thread (see `Pool`).
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
        // A write runs inside the writer's transaction (see `Pool`), so the liveness check in
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
                .query_row((id, now.as_unix_millis()), |row| raw_record(row, 0))
                .optional()
                .map_err(db)?;
            row.map(RawRecord::decode).transpose()
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
                    Ok((row.get::<_, String>(0)?, raw_record(row, 1)?))
                })
                .map_err(db)?;
            rows.map(|row| {
                let (id, raw) = row.map_err(db)?;
                Ok((parse_hash(&id)?, raw.decode()?))
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
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let sql = Arc::clone(&self.sql);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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
        let top_users = i64::try_from(top_users).unwrap_or(i64::MAX);
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

/// Puts the database in WAL mode (a setting stored in the file) and returns the mode it is in.
///
/// Switching needs an exclusive lock that SQLite's busy timeout does not wait for, so when
/// another process (or store) has the file open at that instant, this retries for as long as the
/// busy timeout would have waited.
fn switch_to_wal(conn: &Connection) -> Result<String, StoreError> {
    const PAUSE: Duration = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && waited < BUSY_TIMEOUT =>
            {
                std::thread::sleep(PAUSE);
                waited += PAUSE;
            }
            result => return result.map_err(db),
        }
    }
}

/// The fixed statements, with the (checked) table name spliced in once.
struct Statements {
    table: String,
    schema: String,
    create: String,
    load: String,
    delete: String,
    list_user: String,
    revoke_user: String,
    count: String,
    purge: String,
    stats_totals: String,
    stats_users: String,
    stats_sizes: String,
}

const COLUMNS: &str = "data, user_id, created_at, updated_at, expires_at";

impl Statements {
    fn new(table: &str) -> Self {
        // Quoted, so a checked name that happens to be a keyword (`order`) still works.
        let t = format!("\"{table}\"");
        Self {
            schema: format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    id TEXT PRIMARY KEY NOT NULL,
                    user_id TEXT,
                    data TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS \"{table}_user_id\" ON {t} (user_id, created_at)
                    WHERE user_id IS NOT NULL;
                 CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON {t} (expires_at);"
            ),
            // An expired row that was not purged yet may be replaced, in the same statement:
            // the conflict branch updates only when the row it hit is expired.
            create: format!(
                "INSERT INTO {t} (id, user_id, data, created_at, updated_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET
                    user_id = excluded.user_id, data = excluded.data,
                    created_at = excluded.created_at, updated_at = excluded.updated_at,
                    expires_at = excluded.expires_at
                 WHERE {t}.expires_at <= excluded.created_at"
            ),
            load: format!("SELECT {COLUMNS} FROM {t} WHERE id = ?1 AND expires_at > ?2"),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            list_user: format!(
                "SELECT id, {COLUMNS} FROM {t} WHERE user_id = ?1 AND expires_at > ?2
                 ORDER BY created_at, id"
            ),
            revoke_user: format!("DELETE FROM {t} WHERE user_id = ?1 AND id IS NOT ?2"),
            count: format!("SELECT count(*) FROM {t} WHERE expires_at > ?1"),
            // Walks the expires_at index from the oldest deadline: the cost follows the number
            // of expired rows, not the size of the table.
            purge: format!(
                "DELETE FROM {t} WHERE rowid IN (
                    SELECT rowid FROM {t} WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)"
            ),
            // Operator figures: full scans are fine for an admin command run now and then.
            stats_totals: format!(
                "SELECT sum(expires_at > ?1), sum(expires_at <= ?1),
                    min(CASE WHEN expires_at > ?1 THEN created_at END),
                    max(CASE WHEN expires_at > ?1 THEN created_at END)
                 FROM {t}"
            ),
            stats_users: format!(
                "SELECT user_id, count(*) AS n FROM {t}
                 WHERE user_id IS NOT NULL AND expires_at > ?1
                 GROUP BY user_id ORDER BY n DESC, user_id LIMIT ?2"
            ),
            // Bytes, not characters: length() of TEXT counts characters.
            stats_sizes: format!(
                "SELECT length(CAST(data AS BLOB)) FROM {t} WHERE expires_at > ?1"
            ),
            table: table.to_owned(),
        }
    }
}

/// One generated `UPDATE` and its parameters.
struct Update {
    sql: String,
    params: Vec<Sql>,
}

impl Update {
    fn param(&mut self, value: Sql) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }

    fn execute(self, conn: &Connection) -> Result<usize, StoreError> {
        let mut st = conn.prepare_cached(&self.sql).map_err(db)?;
        st.execute(rusqlite::params_from_iter(self.params))
            .map_err(|e| match e.sqlite_error() {
                // Only a rotation onto a hash that is already taken can hit the primary key.
                Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    StoreError::Collision
                }
                _ => db(e),
            })
    }
}

/// One change to the data, in the order a patch applies them.
enum Op<'a> {
    Remove(&'a str),
    Set(&'a str, &'a Value),
}

impl Op<'_> {
    fn params(&self) -> usize {
        match self {
            Op::Remove(_) => 1,
            Op::Set(..) => 2,
        }
    }
}

/// The statements that apply `patch` to the live row `old` (moving it to `new` when rotating).
///
/// Almost always one `UPDATE … WHERE id = ? AND expires_at > ?`: the data is rewritten by
/// `json_set(json_remove(data, paths…), path, json(value), …)` inside SQLite, so the patch lands
/// on what is stored at that moment. Only a patch with more keys than SQLite binds in one
/// statement continues in further statements, which the caller runs in one transaction.
fn update_statements(
    table: &str,
    old: &SessionHash,
    new: Option<&SessionHash>,
    patch: &Patch,
) -> Vec<Update> {
    let mut ops: Vec<Op<'_>> = Vec::with_capacity(patch.remove.len() + patch.set.len());
    if !patch.clear {
        ops.extend(patch.remove.iter().map(|k| Op::Remove(k)));
    }
    ops.extend(patch.set.iter().map(|(k, v)| Op::Set(k, v)));

    let now = patch.updated_at.as_unix_millis();
    let mut first = Update {
        sql: String::new(),
        params: vec![Sql::Text(old.to_string()), Sql::Integer(now)],
    };
    let mut sets = Vec::new();
    if let Some(new) = new {
        sets.push(format!("id = {}", first.param(Sql::Text(new.to_string()))));
    }
    if let Some(user_id) = &patch.user_id {
        let value = user_id.clone().map_or(Sql::Null, Sql::Text);
        sets.push(format!("user_id = {}", first.param(value)));
    }
    if let Some(expires_at) = patch.expires_at {
        let value = Sql::Integer(expires_at.as_unix_millis());
        sets.push(format!("expires_at = {}", first.param(value)));
    }
    sets.push("updated_at = ?2".to_owned());
    let taken = take_ops(&mut ops, MAX_PARAMS.saturating_sub(first.params.len()));
    if patch.clear || !taken.is_empty() {
        let base = if patch.clear { "'{}'" } else { "data" };
        let data = data_expression(base, &taken, &mut first);
        sets.push(format!("data = {data}"));
    }
    first.sql = format!(
        "UPDATE \"{table}\" SET {} WHERE id = ?1 AND expires_at > ?2",
        sets.join(", ")
    );

    let mut statements = vec![first];
    let id = new.unwrap_or(old).to_string();
    while !ops.is_empty() {
        let mut next = Update {
            sql: String::new(),
            params: vec![Sql::Text(id.clone())],
        };
        let taken = take_ops(&mut ops, MAX_PARAMS - 1);
        let data = data_expression("data", &taken, &mut next);
        next.sql = format!("UPDATE \"{table}\" SET data = {data} WHERE id = ?1");
        statements.push(next);
    }
    statements
}

/// Takes ops from the front of `ops` while they fit in `budget` parameters (at least one, so
/// progress is always made).
fn take_ops<'a>(ops: &mut Vec<Op<'a>>, budget: usize) -> Vec<Op<'a>> {
    let mut used = 0;
    let n = ops
        .iter()
        .take_while(|op| {
            used += op.params();
            used <= budget
        })
        .count()
        .max(1)
        .min(ops.len());
    ops.drain(..n).collect()
}

/// `base` with `ops` applied: removals then sets (the order of a patch), as nested
/// `json_remove`/`json_set` calls small enough for SQLite's argument limit.
fn data_expression(base: &str, ops: &[Op<'_>], update: &mut Update) -> String {
    let mut expr = base.to_owned();
    for run in ops.chunk_by(|a, b| {
        matches!(
            (a, b),
            (Op::Set(..), Op::Set(..)) | (Op::Remove(_), Op::Remove(_))
        )
    }) {
        let per_call = match run[0] {
            Op::Remove(_) => REMOVE_PATHS_PER_CALL,
            Op::Set(..) => SET_PAIRS_PER_CALL,
        };
        for call in run.chunks(per_call) {
            let mut args = vec![expr];
            let function = match call[0] {
                Op::Remove(_) => "json_remove",
                Op::Set(..) => "json_set",
            };
            for op in call {
                match op {
                    Op::Remove(key) => args.push(update.param(Sql::Text(json_path(key)))),
                    Op::Set(key, value) => {
                        args.push(update.param(Sql::Text(json_path(key))));
                        // json() marks the text as JSON, so a string value that looks like JSON
                        // is stored as the string it is, and objects are not stored as strings.
                        let value = update.param(Sql::Text(value.to_string()));
                        args.push(format!("json({value})"));
                    }
                }
            }
            expr = format!("{function}({})", args.join(", "));
        }
    }
    expr
}

/// The SQLite JSON path naming the top-level member `key`, whatever characters it holds.
///
/// The key goes in a quoted label (`$."key"`), so `.`, `[` and `$` are plain characters. Inside
/// the label SQLite decodes JSON escapes, but versions before 3.47 end the label at the first `"`
/// even when escaped, so a quote is written as `\u0022`. Backslashes and control characters are
/// escaped as in JSON; everything else, Unicode included, is copied as is.
fn json_path(key: &str) -> String {
    let mut path = String::with_capacity(key.len() + 4);
    path.push_str("$.\"");
    for c in key.chars() {
        match c {
            '"' => path.push_str("\\u0022"),
            '\\' => path.push_str("\\\\"),
            c if u32::from(c) < 0x20 => path.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => path.push(c),
        }
    }
    path.push('"');
    path
}

/// A row as read, before anything from it is trusted.
struct RawRecord {
    data: rusqlite::Result<String>,
    user_id: rusqlite::Result<Option<String>>,
    created_at: rusqlite::Result<i64>,
    updated_at: rusqlite::Result<i64>,
    expires_at: rusqlite::Result<i64>,
}

/// Reads the record columns (`COLUMNS`, starting at `offset`) without failing the query on a
/// column of the wrong type: that is a corrupt record, reported by [`RawRecord::decode`].
fn raw_record(row: &Row<'_>, offset: usize) -> rusqlite::Result<RawRecord> {
    Ok(RawRecord {
        data: row.get(offset),
        user_id: row.get(offset + 1),
        created_at: row.get(offset + 2),
        updated_at: row.get(offset + 3),
        expires_at: row.get(offset + 4),
    })
}

impl RawRecord {
    fn decode(self) -> Result<Record, StoreError> {
        let column = |name: &str, e: rusqlite::Error| {
            StoreError::corrupt(NAME, format!("column {name} cannot be read: {e}"))
        };
        let time = |name: &str, v: rusqlite::Result<i64>| {
            v.map(Timestamp::from_unix_millis)
                .map_err(|e| column(name, e))
        };
        Ok(Record {
            data: parse_data(NAME, &self.data.map_err(|e| column("data", e))?)?,
            user_id: self.user_id.map_err(|e| column("user_id", e))?,
            created_at: time("created_at", self.created_at)?,
            updated_at: time("updated_at", self.updated_at)?,
            expires_at: time("expires_at", self.expires_at)?,
        })
    }
}

fn parse_hash(text: &str) -> Result<SessionHash, StoreError> {
    text.parse().map_err(|_| {
        StoreError::corrupt(
            NAME,
            format!(
                "id {:?} is not a 64-digit hex session hash",
                text.chars().take(80).collect::<String>()
            ),
        )
    })
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

/// Where the database lives.
#[derive(Clone, Debug)]
enum Target {
    File(PathBuf),
    /// A private in-memory database, alive as long as its one connection.
    Memory,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::File(path) => path.display().fmt(f),
            Target::Memory => f.write_str(":memory:"),
        }
    }
}

/// Creates a missing database file readable by its owner only: it holds session data. SQLite
/// gives its `-wal` and `-shm` files the same permissions. If this fails (say, the directory is
/// missing), opening reports the real problem.
fn create_private(path: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = options.open(path);
}

impl Target {
    fn from_url(url: &StoreUrl) -> Result<Self, StoreError> {
        let rest = url.driver_url.split_once(':').map_or("", |(_, rest)| rest);
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            // `mode=rwc` is what sqlx-style URLs use to ask for creation, which is the default.
            if pair != "mode=rwc" {
                return Err(StoreError::Config(format!(
                    "unknown option {pair:?} in {:?}: sqlite:// URLs take only ?table=name",
                    url.redacted()
                )));
            }
        }
        match path {
            ":memory:" => Ok(Target::Memory),
            "" => Err(StoreError::Config(format!(
                "{:?} names no database file: use sqlite://path/to/sessions.db or sqlite::memory:",
                url.redacted()
            ))),
            path => Ok(Target::File(PathBuf::from(path))),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        if let Target::File(path) = self {
            create_private(path);
        }
        let conn = match self {
            Target::File(path) => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            Target::Memory => Connection::open_in_memory(),
        }
        .map_err(|source| {
            StoreError::unavailable(
                NAME,
                OpenError {
                    target: self.clone(),
                    source,
                },
            )
        })?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // With WAL, NORMAL never corrupts the database; a power cut may lose the last commits,
        // which for sessions means a few users log in again. FULL would fsync every request.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        // Room for the update shapes a busy app produces (one per combination of patch sizes).
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

/// Opening the database failed; names the file, the usual culprit being its directory.
#[derive(Debug)]
struct OpenError {
    target: Target,
    source: rusqlite::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot open SQLite database {}: {} (its directory must exist and be writable)",
            self.target, self.source
        )
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Connections handed to blocking threads one call at a time, and one writer thread.
///
/// SQLite lets one connection write at a time, and a connection that finds the write lock taken
/// sleeps in its busy handler (1 ms, then 2, 5, 10 …) instead of being woken when the lock
/// frees: with writes spread over pooled connections, concurrent requests spent most of their
/// time in those sleeps. So every write of a file database goes to one thread with its own
/// connection, which takes whatever writes are queued (up to [`MAX_BATCH`]) and runs them in
/// one transaction, each in its own savepoint: a failing write is undone alone, and one commit
/// serves the batch. Reads stay on the pool and run in parallel under WAL. Writers in other
/// processes are still covered by the busy timeout.
struct Pool {
    target: Target,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// The writer thread's queue; `None` for an in-memory database, whose only connection is
    /// the pool's.
    writer: Option<mpsc::Sender<WriteJob>>,
}

/// Writes one transaction takes from the queue at most.
const MAX_BATCH: usize = 64;

/// A queued write: given the writer's connection (or why there is none), it runs and says
/// whether it succeeded, returning what delivers its result once the batch has committed.
type WriteJob = Box<dyn FnOnce(Result<&mut Connection, StoreError>) -> (bool, Deliver) + Send>;
/// Hands a write's result to its caller, or the error that failed the whole batch.
type Deliver = Box<dyn FnOnce(Option<StoreError>) + Send>;

impl Pool {
    fn new(target: Target) -> Self {
        // An in-memory database exists only inside its connection: there must be exactly one.
        let (size, writer) = match &target {
            Target::File(_) => (MAX_CONNECTIONS, Some(spawn_writer(target.clone()))),
            Target::Memory => (1, None),
        };
        Self {
            target,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
            writer,
        }
    }

    /// Runs `f` on a pooled connection on a blocking thread.
    async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::unavailable(NAME, e))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let idle = pool.idle.lock().pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => pool.target.open()?,
            };
            let result = f(&mut conn);
            pool.idle.lock().push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::unavailable(NAME, e))?
    }

    /// Queues `f` for the writer thread and waits until its batch has committed.
    async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(writer) = &self.writer else {
            return self.run(f).await;
        };
        let (sender, receiver) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = conn.and_then(f);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |failed| {
                let _ = sender.send(match failed {
                    Some(error) => Err(error),
                    None => result,
                });
            });
            (ok, deliver)
        });
        writer
            .send(job)
            .map_err(|_| StoreError::unavailable(NAME, WriterGone))?;
        receiver
            .await
            .map_err(|_| StoreError::unavailable(NAME, WriterGone))?
    }
}

/// The writer dropped a write unanswered: the write panicked, or the writer thread is gone.
#[derive(Debug, thiserror::Error)]
#[error("the SQLite writer dropped the write (it panicked, or the writer thread has stopped)")]
struct WriterGone;

/// A batch's transaction failed to begin or commit; every write in it failed with this.
#[derive(Debug, thiserror::Error)]
#[error("SQLite transaction failed: {0}")]
struct BatchFailed(String);

fn batch_failed(message: &str) -> StoreError {
    StoreError::unavailable(NAME, BatchFailed(message.to_owned()))
}

fn spawn_writer(target: Target) -> mpsc::Sender<WriteJob> {
    let (sender, jobs) = mpsc::channel::<WriteJob>();
    let spawned = std::thread::Builder::new()
        .name("cloakroom-sqlite-writer".to_owned())
        .spawn(move || write_loop(&target, &jobs));
    if let Err(error) = spawned {
        // The queue's receiver went with the closure, so every write reports WriterGone.
        tracing::error!(%error, "cloakroom: could not start the SQLite writer thread");
    }
    sender
}

/// Runs queued writes in batches until the store is dropped. The connection is opened on
/// first use, and again after a failure to open it.
fn write_loop(target: &Target, jobs: &mpsc::Receiver<WriteJob>) {
    let mut conn: Option<Connection> = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let opened = match conn.take() {
            Some(open) => Ok(open),
            None => target.open(),
        };
        match opened {
            Ok(mut open) => {
                write_batch(&mut open, batch);
                conn = Some(open);
            }
            Err(error) => refuse(batch, &error.to_string()),
        }
    }
}

/// Fails every write of `batch` without running it.
fn refuse(batch: Vec<WriteJob>, message: &str) {
    for job in batch {
        let (_, deliver) = job(Err(batch_failed(message)));
        deliver(None);
    }
}

/// Runs `batch` in one transaction, each write in a savepoint of its own, and delivers the
/// results once the transaction has committed.
fn write_batch(conn: &mut Connection, batch: Vec<WriteJob>) {
    // IMMEDIATE takes the write lock up front, so no write of the batch meets it taken.
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        return refuse(batch, &error.to_string());
    }
    let mut delivers = Vec::with_capacity(batch.len());
    let mut failure = None;
    for job in batch {
        if failure.is_none()
            && let Err(error) = conn.execute_batch("SAVEPOINT cloakroom_write")
        {
            failure = Some(error.to_string());
        }
        // Once the transaction is broken, the rest of the batch is not run: every write of it
        // is answered with the failure below.
        if let Some(message) = &failure {
            let (_, deliver) = job(Err(batch_failed(message)));
            delivers.push(deliver);
            continue;
        }
        // A write that panics is dropped (its caller gets WriterGone) and undone; the thread
        // lives on for the others.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(&mut *conn))));
        let (ok, deliver) = ran.unwrap_or_else(|_| (false, Box::new(|_| {})));
        delivers.push(deliver);
        let closed = if ok {
            conn.execute_batch("RELEASE cloakroom_write")
        } else {
            conn.execute_batch("ROLLBACK TO cloakroom_write; RELEASE cloakroom_write")
        };
        if let Err(error) = closed {
            failure = Some(error.to_string());
        }
    }
    let failure = match failure {
        Some(message) => Some(message),
        None => conn.execute_batch("COMMIT").err().map(|e| e.to_string()),
    };
    if failure.is_some() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for deliver in delivers {
        deliver(failure.as_deref().map(batch_failed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hash(n: u8) -> SessionHash {
        SessionHash::from_bytes([n; 32])
    }

    /// What SQLite plans for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![Sql::Null; st.parameter_count()];
        let steps = st
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        steps.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn lookups_use_the_indexes_not_a_table_scan() {
        let sql = Statements::new("s");
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&sql.schema).unwrap();
        let uses = |statement: &str, index: &str| {
            let plan = plan(&conn, statement);
            assert!(plan.contains(index), "{statement}\n{plan}");
            assert!(!plan.contains("SCAN s"), "{statement}\n{plan}");
        };
        uses(&sql.load, "sqlite_autoindex_s_1");
        uses(&sql.delete, "sqlite_autoindex_s_1");
        uses(&sql.list_user, "s_user_id");
        uses(&sql.revoke_user, "s_user_id");
        uses(&sql.count, "s_expires_at");
        uses(&sql.purge, "s_expires_at");
        let patch = Patch {
            set: vec![("k".into(), json!(1))],
            ..Patch::default()
        };
        uses(
            &update_statements("s", &hash(1), None, &patch)[0].sql,
            "sqlite_autoindex_s_1",
        );
    }

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_lives_on() {
        let dir = std::env::temp_dir().join(format!("cloakroom-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pool = Arc::new(Pool::new(Target::File(dir.join("w.db"))));
        let setup = pool.write(|conn| conn.execute_batch("CREATE TABLE t (n INTEGER)").map_err(db));
        setup.await.unwrap();
        let err = pool
            .write(|conn| -> Result<(), StoreError> {
                conn.execute("INSERT INTO t VALUES (1)", []).map_err(db)?;
                panic!("a write that panics halfway")
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("dropped the write"), "{err}");
        let count = pool
            .write(|conn| {
                conn.execute("INSERT INTO t VALUES (2)", []).map_err(db)?;
                conn.query_row("SELECT group_concat(n) FROM t", [], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(
            count, "2",
            "the panicked write was undone, the next one ran"
        );
        drop(pool);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_quote_every_key() {
        assert_eq!(json_path("a"), r#"$."a""#);
        assert_eq!(json_path("a.b[0]"), r#"$."a.b[0]""#);
        assert_eq!(json_path(r#"say "hi""#), r#"$."say \u0022hi\u0022""#);
        assert_eq!(json_path(r"back\slash"), r#"$."back\\slash""#);
        assert_eq!(json_path("tab\tnul\0"), r#"$."tab\u0009nul\u0000""#);
        assert_eq!(json_path("ключ 🧥"), "$.\"ключ 🧥\"");
        assert_eq!(json_path(""), r#"$."""#);
    }

    #[test]
    fn a_touch_is_one_small_update() {
        let patch = Patch::touch(
            Timestamp::from_unix_millis(9),
            Timestamp::from_unix_millis(1),
        );
        let statements = update_statements("t", &hash(1), None, &patch);
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            r#"UPDATE "t" SET expires_at = ?3, updated_at = ?2 WHERE id = ?1 AND expires_at > ?2"#
        );
    }

    #[test]
    fn a_patch_is_one_update_with_clear_remove_set_in_order() {
        let patch = Patch {
            clear: false,
            set: vec![("b".into(), json!(1))],
            remove: vec!["a".into()],
            user_id: Some(None),
            updated_at: Timestamp::from_unix_millis(1),
            ..Patch::default()
        };
        let statements = update_statements("t", &hash(1), Some(&hash(2)), &patch);
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            "UPDATE \"t\" SET id = ?3, user_id = ?4, updated_at = ?2, \
             data = json_set(json_remove(data, ?5), ?6, json(?7)) \
             WHERE id = ?1 AND expires_at > ?2"
        );
        let cleared = Patch {
            clear: true,
            ..patch
        };
        let statements = update_statements("t", &hash(1), None, &cleared);
        assert!(
            statements[0]
                .sql
                .contains("data = json_set('{}', ?4, json(?5))"),
            "{}",
            statements[0].sql
        );
    }

    #[test]
    fn many_keys_nest_calls_and_split_statements() {
        let patch = Patch {
            set: (0..MAX_PARAMS)
                .map(|i| (format!("k{i}"), json!(i)))
                .collect(),
            remove: (0..120).map(|i| format!("r{i}")).collect(),
            updated_at: Timestamp::from_unix_millis(1),
            ..Patch::default()
        };
        let statements = update_statements("t", &hash(1), None, &patch);
        assert_eq!(statements.len(), 3);
        let params: usize = statements.iter().map(|s| s.params.len()).sum();
        // Each statement rebinds the id; the first also `now`.
        assert_eq!(params, 120 + 2 * MAX_PARAMS + 2 + 2);
        for statement in &statements {
            assert!(statement.params.len() <= MAX_PARAMS);
        }
        assert!(
            statements[0]
                .sql
                .contains("json_remove(json_remove(data, ?3,")
        );
        assert!(statements[1].sql.ends_with("WHERE id = ?1"));
    }
}
