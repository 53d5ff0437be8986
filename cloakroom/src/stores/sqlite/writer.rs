//! The writer thread: every write of a file database, committed in groups.
//!
//! SQLite lets one connection write at a time, and a connection that finds the write lock taken
//! sleeps in its busy handler (1 ms, then 2, 5, 10 …) instead of being woken when the lock
//! frees: with writes spread over pooled connections, concurrent requests would spend their time
//! in those sleeps. So each store has one thread with its own connection, which takes whatever
//! writes are queued (up to [`MAX_BATCH`]) and runs them in one `BEGIN IMMEDIATE` transaction.
//!
//! Invariants:
//! - Each write runs in a savepoint of its own: a write that fails (or panics) is undone alone,
//!   and the others of its batch still commit.
//! - A caller gets its result only after the batch has committed; if the commit fails, every
//!   write of the batch fails with that error, never with a success that was rolled back.
//! - Once the transaction is broken, the rest of the batch is not run.
//! - The thread ends when the last sender (the store's pool) is dropped.
//!
//! Writers in other processes are covered by the busy timeout.

use std::sync::{Arc, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::NAME;
use super::connection::Database;
use super::pool::Pool;
use crate::error::StoreError;
use crate::stores::sql::MAX_BATCH;

/// A queued write: given the writer's connection (or why there is none), it runs and says
/// whether it succeeded, returning what delivers its result once the batch has committed.
pub(super) type WriteJob =
    Box<dyn FnOnce(Result<&mut Connection, StoreError>) -> (bool, Deliver) + Send>;
/// Hands a write's result to its caller, or the error that failed the whole batch.
type Deliver = Box<dyn FnOnce(Option<StoreError>) + Send>;

impl Pool {
    /// Queues `f` for the writer thread and waits until its batch has committed.
    pub(super) async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
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

pub(super) fn spawn_writer(target: Database) -> mpsc::Sender<WriteJob> {
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
fn write_loop(target: &Database, jobs: &mpsc::Receiver<WriteJob>) {
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
    use crate::stores::sqlite::db;

    #[tokio::test]
    async fn a_panicking_write_fails_alone_and_the_writer_lives_on() {
        let dir = std::env::temp_dir().join(format!("cloakroom-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pool = Arc::new(Pool::new(Database::File(dir.join("w.db"))));
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
}
