//! The read pool: connections handed to tokio's blocking threads one call at a time.
//!
//! Contract: [`Pool::run`] runs a closure on an idle connection (opening one if none is idle) on
//! a blocking thread and returns its result; at most [`MAX_CONNECTIONS`] run at once. Reads run
//! in parallel under WAL. Writes do not belong here: a file database sends them to the writer
//! thread ([`Pool::write`], in `writer.rs`), and only an in-memory database, whose one connection
//! is the pool's, runs them through [`Pool::run`].

use std::sync::{Arc, mpsc};

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::NAME;
use super::connection::Database;
use super::writer::{WriteJob, spawn_writer};
use crate::error::StoreError;

/// Connections to a database file. Readers run in parallel under WAL; writers queue on SQLite's
/// single write lock whatever the pool size, so more connections would only add threads.
const MAX_CONNECTIONS: usize = 8;

/// A database's connections: idle ones handed to blocking threads one call at a time for reads,
/// and (for a file) the queue of the writer thread that runs every write (see `writer.rs`).
pub(super) struct Pool {
    pub(super) target: Database,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// The writer thread's queue; `None` for an in-memory database, whose only connection is
    /// the pool's.
    pub(super) writer: Option<mpsc::Sender<WriteJob>>,
}

impl Pool {
    pub(super) fn new(target: Database) -> Self {
        // An in-memory database exists only inside its connection: there must be exactly one.
        let (size, writer) = match &target {
            Database::File(_) => (MAX_CONNECTIONS, Some(spawn_writer(target.clone()))),
            Database::Memory => (1, None),
        };
        Self {
            target,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
            writer,
        }
    }

    /// Runs `f` on a pooled connection on a blocking thread.
    pub(super) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
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
}
