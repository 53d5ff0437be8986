//! The file store: one JSON file per session under a directory, for one machine without a
//! database.
//!
//! Layout under the store's directory:
//!
//! ```text
//! sessions/1a/2b/1a2b…(64 hex digits).json   one record per session, named by its hash
//! users/9f/9f86…(sha256 of the user id)/1a2b…  empty marker files: the per-user index
//! ```
//!
//! Two levels of 256 shard directories keep a million sessions at about fifteen files per
//! directory. User ids are hashed so that any string is a safe directory name.

//!
//! The code: this module holds the store and its `Store` impl; `ops` the operations on the
//! directory tree (one method each, run on the blocking pool); `disk` reading, writing and
//! naming files; `url` the `file:` URL form.

mod disk;
use disk::{make_dirs, read_record};
use url::dir_from_url;
mod ops;
mod url;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::store::Store;
use crate::stores::StoreUrl;
use crate::ticket::SessionHash;
use crate::time::Timestamp;

const STORE: &str = "file";
const SESSIONS: &str = "sessions";
const USERS: &str = "users";
/// Enough that unrelated sessions rarely wait for each other; each lock costs a few bytes.
const LOCKS: usize = 1024;
/// A temp file is a write in progress for milliseconds; one this old was left by a crash.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Keeps each session in its own file under a directory, so sessions survive restarts on one
/// machine without a database.
///
/// - **Atomic writes.** A record is written to a temp file in the same directory, flushed to
///   disk, and renamed over the old one: a reader or a crash sees the old record or the new one,
///   never half of either.
/// - **Patches merge.** Writers to one session take a per-session lock (1024 lock shards keyed by
///   the hash), then read, patch and write back, so concurrent requests that change different
///   keys all keep their change.
/// - **Per-user index** in `users/`, kept on disk so revocation works after a restart; stale
///   entries left by a crash are pruned when the user's sessions are listed.
/// - **Expired files** are removed by [`Store::purge_expired`], which streams through the
///   directories instead of loading them; run it periodically.
///
/// The locks live in this process. `create` is safe across processes sharing the directory (it
/// never replaces a live record), but concurrent writes to *one* session from two processes can
/// lose a patch, and a logout in one process can race a write in the other. Give each directory
/// to one process, or use the SQLite store for several processes on one machine.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cloakroom::StoreError> {
/// # let dir = std::env::temp_dir().join(format!("cloakroom-doc-{}", std::process::id()));
/// use cloakroom::FileStore;
///
/// let store = FileStore::open(&dir).await?;
/// assert_eq!(store.root(), dir);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    locks: Box<[Arc<Mutex<()>>]>,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Opens the store kept in `dir`, creating the directory (and its parents) if missing.
    ///
    /// Directories the store creates are private to the user running the process (mode 0700 on
    /// Unix) and so are the session files (0600): they hold session data.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = dir.as_ref().to_path_buf();
        let inner = Arc::new(Inner {
            root,
            locks: (0..LOCKS).map(|_| Arc::new(Mutex::new(()))).collect(),
        });
        let setup = Arc::clone(&inner);
        blocking(move || {
            for sub in [SESSIONS, USERS] {
                let dir = setup.root.join(sub);
                make_dirs(&dir).map_err(|e| {
                    StoreError::unavailable(
                        STORE,
                        io::Error::new(
                            e.kind(),
                            format!(
                                "cannot create the session directory {}: {e}; create it or \
                                 give this process write access to it",
                                dir.display()
                            ),
                        ),
                    )
                })?;
            }
            Ok(())
        })
        .await?;
        Ok(Self { inner })
    }

    /// Opens the store named by a `file:` URL: `file:///var/lib/app/sessions` (absolute),
    /// `file://localhost/var/lib/app/sessions`, or `file:sessions` and `file://sessions` (relative
    /// to the working directory). `%20` and other percent escapes are decoded.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let parsed = StoreUrl::parse(url)?;
        if parsed.scheme != "file" {
            return Err(StoreError::Config(format!(
                "{:?} is not a file store URL; use file:///absolute/dir or file:relative/dir",
                parsed.redacted()
            )));
        }
        Self::open(dir_from_url(&parsed)?).await
    }

    /// The directory the store keeps its files in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Runs `work` on the blocking pool: every file operation of the store goes through here, so
    /// that a whole read-patch-write sequence costs one hop instead of one per system call.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || work(&inner)).await
    }

    /// The lock for `hash`, owned so that it can travel into the blocking task: if the request
    /// is cancelled mid-write, the lock stays held until the write has finished.
    async fn lock(&self, hash: &SessionHash) -> OwnedMutexGuard<()> {
        Arc::clone(&self.inner.locks[lock_index(hash)])
            .lock_owned()
            .await
    }
}

/// Opens the store for [`connect`](crate::stores::connect).
pub(crate) async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(FileStore::open(dir_from_url(url)?).await?))
}

async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        // A JoinError holds the panic payload, which is not Sync; keep only its text.
        StoreError::unavailable(STORE, io::Error::other(format!("file task failed: {e}")))
    })?
}

fn lock_index(hash: &SessionHash) -> usize {
    let bytes = hash.as_bytes();
    usize::from(u16::from_le_bytes([bytes[30], bytes[31]])) % LOCKS
}

#[async_trait]
impl Store for FileStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        let held = self.lock(hash).await;
        let (hash, record) = (*hash, record.clone());
        self.run(move |inner| {
            let _held = held;
            inner.create(&hash, &record)
        })
        .await
    }

    async fn load(&self, hash: &SessionHash, now: Timestamp) -> Result<Option<Record>, StoreError> {
        // No lock: writes replace the file by renaming, so a read sees one whole version.
        let hash = *hash;
        self.run(move |inner| {
            Ok(read_record(&inner.session_path(&hash), &hash)?.filter(|r| r.is_live(now)))
        })
        .await
    }

    async fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        let held = self.lock(hash).await;
        let (hash, patch) = (*hash, patch.clone());
        self.run(move |inner| {
            let _held = held;
            inner.save(&hash, &patch)
        })
        .await
    }

    async fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        let (a, b) = (lock_index(old), lock_index(new));
        // Always in index order, so two rotations over the same pair of shards cannot deadlock.
        let (first, second) = if a <= b { (old, new) } else { (new, old) };
        let first = self.lock(first).await;
        let second = if a == b {
            None
        } else {
            Some(self.lock(second).await)
        };
        let (old, new, patch) = (*old, *new, patch.clone());
        self.run(move |inner| {
            let _held = (first, second);
            inner.rotate(&old, &new, &patch)
        })
        .await
    }

    async fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        let held = self.lock(hash).await;
        let hash = *hash;
        self.run(move |inner| {
            let _held = held;
            inner.delete(&hash)
        })
        .await
    }

    async fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        let user_id = user_id.to_owned();
        self.run(move |inner| inner.list_user(&user_id, now)).await
    }

    async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
        let (user_id, except) = (user_id.to_owned(), except.copied());
        self.run(move |inner| inner.revoke_user(&user_id, except.as_ref()))
            .await
    }

    async fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.run(move |inner| inner.count(now)).await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.run(move |inner| inner.purge_expired(now, limit)).await
    }
}
