//! Where a SQLite database lives and how a connection to it is opened.
//!
//! Invariants: a database file is created readable by its owner only (it holds session data);
//! every connection has the busy timeout and `synchronous = NORMAL`; a private in-memory database
//! exists only inside its one connection, so whoever opens [`Database::Memory`] must keep exactly
//! one connection open for the store's lifetime.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{NAME, db};
use crate::error::StoreError;
use crate::stores::StoreUrl;

/// How long a statement waits for another connection's write lock before failing. Writes are
/// single short statements, so waiting this long means something else holds the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Puts the database in WAL mode (a setting stored in the file) and returns the mode it is in.
///
/// Switching needs an exclusive lock that SQLite's busy timeout does not wait for, so when
/// another process (or store) has the file open at that instant, this retries for as long as the
/// busy timeout would have waited.
pub(super) fn switch_to_wal(conn: &Connection) -> Result<String, StoreError> {
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

/// Where the database lives.
#[derive(Clone, Debug)]
pub(super) enum Database {
    File(PathBuf),
    /// A private in-memory database, alive as long as its one connection.
    Memory,
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::File(path) => path.display().fmt(f),
            Database::Memory => f.write_str(":memory:"),
        }
    }
}

/// Creates a missing database file readable by its owner only: it holds session data. SQLite
/// gives its `-wal` and `-shm` files the same permissions. If this fails (say, the directory is
/// missing), opening reports the real problem.
fn create_private(path: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    crate::stores::owner_only(&mut options);
    let _ = options.open(path);
}

impl Database {
    pub(super) fn from_url(url: &StoreUrl) -> Result<Self, StoreError> {
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
            ":memory:" => Ok(Database::Memory),
            "" => Err(StoreError::Config(format!(
                "{:?} names no database file: use sqlite://path/to/sessions.db or sqlite::memory:",
                url.redacted()
            ))),
            path => Ok(Database::File(PathBuf::from(path))),
        }
    }

    pub(super) fn open(&self) -> Result<Connection, StoreError> {
        if let Database::File(path) = self {
            create_private(path);
        }
        let conn = match self {
            Database::File(path) => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            Database::Memory => Connection::open_in_memory(),
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
    target: Database,
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
