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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use sha2::{Digest, Sha256};
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

/// The directory named by a `file:` URL.
fn dir_from_url(url: &StoreUrl) -> Result<PathBuf, StoreError> {
    let text = url.driver_url.as_str();
    let own = super::OWN_OPTIONS
        .iter()
        .find(|key| url.option(key).is_some())
        .copied();
    let (base, query) = text.split_once('?').unwrap_or((text, ""));
    if let Some(key) = own.or((!query.is_empty()).then_some(query)) {
        return Err(StoreError::Config(format!(
            "the file store takes no options, but {text:?} has {key:?}; remove the query string"
        )));
    }
    let base = base.split_once('#').map_or(base, |(before, _)| before);
    let rest = base.split_once(':').map_or("", |(_, rest)| rest);
    let path = match rest.strip_prefix("//") {
        // An empty or `localhost` authority means an absolute path; anything else is read as
        // the first segment of a relative path (`file://sessions`), which is what people write.
        Some(after) => match after.find('/') {
            Some(slash) if matches!(&after[..slash], "" | "localhost") => &after[slash..],
            _ => after,
        },
        None => rest,
    };
    let path = percent_decode(path).ok_or_else(|| {
        StoreError::Config(format!(
            "{text:?} has a malformed percent escape or is not UTF-8 once decoded"
        ))
    })?;
    // file:///C:/dir names C:/dir on Windows, not a directory called "C:" at the root.
    let path = match path.as_bytes() {
        [b'/', drive, b':', ..] if cfg!(windows) && drive.is_ascii_alphabetic() => &path[1..],
        _ => path.as_str(),
    };
    if path.is_empty() {
        return Err(StoreError::Config(format!(
            "{text:?} names no directory; use file:///absolute/dir or file:relative/dir"
        )));
    }
    Ok(PathBuf::from(path))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Just the expiry of a record: what counting and purging need, without building the data map.
#[derive(Deserialize)]
struct Expiry {
    expires_at: Timestamp,
}

/// What a walk over `sessions/` finds.
enum Found {
    Session(SessionHash, PathBuf),
    Temp(PathBuf),
}

impl Inner {
    fn session_path(&self, hash: &SessionHash) -> PathBuf {
        let hex = hash.to_string();
        self.root
            .join(SESSIONS)
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(format!("{hex}.json"))
    }

    fn user_dir(&self, user_id: &str) -> PathBuf {
        let hex: String = Sha256::digest(user_id.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        self.root.join(USERS).join(&hex[..2]).join(hex)
    }

    /// Blocks this (blocking-pool) thread for the lock of `hash`. Only the maintenance walks use
    /// it; request paths wait asynchronously.
    fn lock_blocking(&self, hash: &SessionHash) -> tokio::sync::MutexGuard<'_, ()> {
        self.locks[lock_index(hash)].blocking_lock()
    }

    fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
        let path = self.session_path(hash);
        let existing = read_record(&path, hash);
        let replaced = match existing {
            Ok(None) => None,
            Ok(Some(old)) if !old.is_live(record.created_at) => Some(old),
            // A record we cannot read is not ours to overwrite.
            Ok(Some(_)) | Err(StoreError::Corrupt { .. }) => return Err(StoreError::Collision),
            Err(error) => return Err(error),
        };
        // The index entry goes first: a crash then leaves a stale entry (pruned later), never a
        // session that revocation cannot find.
        if let Some(user_id) = &record.user_id {
            self.index(user_id, hash)?;
        }
        let dir = parent(&path);
        make_dirs(dir).map_err(|e| io_error("creating a session directory", e))?;
        let temp = write_temp(dir, hash, &encode(record)?)?;
        let placed = match &replaced {
            Some(_) => rename(&temp, &path),
            None => match fs::hard_link(&temp, &path) {
                // The link fails if another process created the hash since we looked: unlike a
                // rename, it never replaces a record.
                Ok(()) => {
                    remove_quietly(&temp);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    remove_quietly(&temp);
                    return Err(StoreError::Collision);
                }
                // Filesystems without hard links; the in-process lock still makes this atomic.
                Err(_) => rename(&temp, &path),
            },
        };
        placed.map_err(|e| io_error(format_args!("writing session {}", hash.short()), e))?;
        if let Some(old) = replaced
            && old.user_id != record.user_id
            && let Some(old_user) = &old.user_id
        {
            self.unindex(old_user, hash);
        }
        Ok(())
    }

    fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        let path = self.session_path(hash);
        let Some(mut record) = read_record(&path, hash)?.filter(|r| r.is_live(patch.updated_at))
        else {
            return Ok(false);
        };
        let old_user = record.user_id.clone();
        patch.apply_to(&mut record);
        let user_changed = old_user != record.user_id;
        if user_changed && let Some(user_id) = &record.user_id {
            self.index(user_id, hash)?;
        }
        let temp = write_temp(parent(&path), hash, &encode(&record)?)?;
        rename(&temp, &path)
            .map_err(|e| io_error(format_args!("writing session {}", hash.short()), e))?;
        if user_changed && let Some(old_user) = &old_user {
            self.unindex(old_user, hash);
        }
        Ok(true)
    }

    fn rotate(
        &self,
        old: &SessionHash,
        new: &SessionHash,
        patch: &Patch,
    ) -> Result<bool, StoreError> {
        if old == new {
            return self.save(old, patch);
        }
        let (old_path, new_path) = (self.session_path(old), self.session_path(new));
        let Some(mut record) = read_record(&old_path, old)?.filter(|r| r.is_live(patch.updated_at))
        else {
            return Ok(false);
        };
        if read_record(&new_path, new)?.is_some_and(|r| r.is_live(patch.updated_at)) {
            return Err(StoreError::Collision);
        }
        let old_user = record.user_id.clone();
        patch.apply_to(&mut record);
        if let Some(user_id) = &record.user_id {
            self.index(user_id, new)?;
        }
        let dir = parent(&new_path);
        make_dirs(dir).map_err(|e| io_error("creating a session directory", e))?;
        let temp = write_temp(dir, new, &encode(&record)?)?;
        // Moving the old file first kills the old ticket in the same instant the new one becomes
        // valid; a crash before the patched copy lands costs the session, never a second valid
        // ticket (which is what rotation exists to prevent).
        match rename(&old_path, &new_path) {
            Ok(()) => {}
            Err(e) => {
                remove_quietly(&temp);
                if e.kind() == io::ErrorKind::NotFound {
                    // Deleted by another process since we read it.
                    return Ok(false);
                }
                return Err(io_error(format_args!("moving session {}", old.short()), e));
            }
        }
        rename(&temp, &new_path)
            .map_err(|e| io_error(format_args!("writing session {}", new.short()), e))?;
        if let Some(old_user) = &old_user {
            self.unindex(old_user, old);
        }
        Ok(true)
    }

    fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
        let path = self.session_path(hash);
        let user_id = match read_record(&path, hash) {
            Ok(Some(record)) => record.user_id,
            Ok(None) => return Ok(false),
            // Deleting is the way out for a corrupt record; its index entry is pruned later.
            Err(StoreError::Corrupt { .. }) => None,
            Err(error) => return Err(error),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(io_error(
                    format_args!("deleting session {}", hash.short()),
                    e,
                ));
            }
        }
        if let Some(user_id) = &user_id {
            self.unindex(user_id, hash);
        }
        Ok(true)
    }

    fn list_user(
        &self,
        user_id: &str,
        now: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        let mut found = Vec::new();
        self.each_indexed(user_id, |hash| {
            let path = self.session_path(&hash);
            match read_record(&path, &hash) {
                Ok(Some(record)) if record.user_id.as_deref() == Some(user_id) => {
                    if record.is_live(now) {
                        found.push((hash, record));
                    }
                }
                Ok(_) => {
                    // The entry looks stale, but a create may be between writing the entry and
                    // the record: decide under the session's lock.
                    let _held = self.lock_blocking(&hash);
                    let current = read_record(&path, &hash);
                    if !matches!(&current, Ok(Some(r)) if r.user_id.as_deref() == Some(user_id)) {
                        self.unindex(user_id, &hash);
                    } else if let Ok(Some(record)) = current
                        && record.is_live(now)
                    {
                        found.push((hash, record));
                    }
                }
                Err(error @ StoreError::Corrupt { .. }) => {
                    tracing::warn!(%error, "cloakroom: skipping a corrupt session file");
                }
                Err(error) => return Err(error),
            }
            Ok(())
        })?;
        found.sort_by_key(|(hash, record)| (record.created_at, *hash));
        Ok(found)
    }

    fn revoke_user(&self, user_id: &str, except: Option<&SessionHash>) -> Result<u64, StoreError> {
        let mut revoked = 0;
        self.each_indexed(user_id, |hash| {
            if Some(&hash) == except {
                return Ok(());
            }
            let path = self.session_path(&hash);
            let _held = self.lock_blocking(&hash);
            let belongs = match read_record(&path, &hash) {
                Ok(Some(record)) => record.user_id.as_deref() == Some(user_id),
                Ok(None) => false,
                Err(error @ StoreError::Corrupt { .. }) => {
                    // Indexed under this user and unusable: revocation errs on the side of removal.
                    tracing::warn!(%error, "cloakroom: revoking a corrupt session file");
                    true
                }
                Err(error) => return Err(error),
            };
            if belongs {
                match fs::remove_file(&path) {
                    Ok(()) => revoked += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(io_error(
                            format_args!("deleting session {}", hash.short()),
                            e,
                        ));
                    }
                }
            }
            self.unindex(user_id, &hash);
            Ok(())
        })?;
        Ok(revoked)
    }

    fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut live = 0;
        self.walk(|found| {
            if let Found::Session(hash, path) = found
                && read_expiry(&path, &hash).is_some_and(|expires_at| now < expires_at)
            {
                live += 1;
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(live)
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut purged = 0;
        if limit == 0 {
            return Ok(0);
        }
        let stale_before = SystemTime::now().checked_sub(STALE_TEMP);
        self.walk(|found| {
            match found {
                Found::Temp(path) => {
                    let modified = fs::metadata(&path).and_then(|m| m.modified());
                    if let (Ok(modified), Some(stale_before)) = (modified, stale_before)
                        && modified < stale_before
                    {
                        remove_quietly(&path);
                    }
                }
                Found::Session(hash, path) => {
                    if read_expiry(&path, &hash).is_some_and(|expires_at| expires_at <= now) {
                        // Re-read under the lock: a touch may have extended it meanwhile.
                        let _held = self.lock_blocking(&hash);
                        match read_record(&path, &hash) {
                            Ok(Some(record)) if !record.is_live(now) => {
                                match fs::remove_file(&path) {
                                    Ok(()) => purged += 1,
                                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                    Err(e) => {
                                        return Err(io_error(
                                            format_args!("deleting session {}", hash.short()),
                                            e,
                                        ));
                                    }
                                }
                                if let Some(user_id) = &record.user_id {
                                    self.unindex(user_id, &hash);
                                }
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "cloakroom: purge skipped a session file");
                            }
                        }
                    }
                }
            }
            Ok(if purged >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(purged as u64)
    }

    /// Adds `hash` to the index of `user_id`, durably: the entry must not be lost in a crash
    /// that keeps the session.
    fn index(&self, user_id: &str, hash: &SessionHash) -> Result<(), StoreError> {
        let dir = self.user_dir(user_id);
        let marker = dir.join(hash.to_string());
        let mut attempts = 0;
        loop {
            make_dirs(&dir).map_err(|e| io_error("updating the user index", e))?;
            match private_file().open(&marker) {
                Ok(_) => break,
                // An unindex emptied and removed the directory between our two calls.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(io_error("updating the user index", e)),
            }
        }
        sync_dir(&dir);
        Ok(())
    }

    /// Removes `hash` from the index of `user_id`. Never fails the caller: the session itself is
    /// already gone or moved, and a leftover entry is pruned by `list_user`.
    fn unindex(&self, user_id: &str, hash: &SessionHash) {
        let dir = self.user_dir(user_id);
        match fs::remove_file(dir.join(hash.to_string())) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(%error, session = %hash.short(),
                    "cloakroom: could not remove a user index entry; it will be pruned later");
            }
        }
        // Fails while other sessions of the user remain, which is the common case and fine.
        let _ = fs::remove_dir(&dir);
    }

    /// Calls `visit` with each session hash in the index of `user_id`.
    fn each_indexed(
        &self,
        user_id: &str,
        mut visit: impl FnMut(SessionHash) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let entries = match fs::read_dir(self.user_dir(user_id)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("reading the user index", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_error("reading the user index", e))?;
            if let Some(hash) = entry.file_name().to_str().and_then(canonical_hash) {
                visit(hash)?;
            }
        }
        Ok(())
    }

    /// Visits every session and temp file under `sessions/`, holding one directory listing at
    /// a time so that memory stays flat however many sessions there are.
    fn walk(
        &self,
        mut visit: impl FnMut(Found) -> Result<ControlFlow<()>, StoreError>,
    ) -> Result<(), StoreError> {
        for top in shard_dirs(&self.root.join(SESSIONS))? {
            for leaf in shard_dirs(&top)? {
                let entries = match fs::read_dir(&leaf) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("listing sessions", e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error("listing sessions", e))?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let found =
                        if let Some(hash) = name.strip_suffix(".json").and_then(canonical_hash) {
                            Found::Session(hash, entry.path())
                        } else if name.starts_with('.') && name.ends_with(".tmp") {
                            Found::Temp(entry.path())
                        } else {
                            continue;
                        };
                    if visit(found)?.is_break() {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
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

/// The record in `path`, `None` if there is no file.
fn read_record(path: &Path, hash: &SessionHash) -> Result<Option<Record>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io_error(
                format_args!("reading session {}", hash.short()),
                e,
            ));
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(hash, e))
}

/// The expiry stored in `path`; `None` (after a warning for anything but a vanished file) when
/// it cannot be read, so one bad file does not stop a count or a purge.
fn read_expiry(path: &Path, hash: &SessionHash) -> Option<Timestamp> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            let error = io_error(format_args!("reading session {}", hash.short()), e);
            tracing::warn!(%error, "cloakroom: skipping an unreadable session file");
            return None;
        }
    };
    match serde_json::from_slice::<Expiry>(&bytes) {
        Ok(expiry) => Some(expiry.expires_at),
        Err(e) => {
            let error = corrupt(hash, e);
            tracing::warn!(%error, "cloakroom: skipping a corrupt session file");
            None
        }
    }
}

fn corrupt(hash: &SessionHash, error: serde_json::Error) -> StoreError {
    let short = hash.short();
    StoreError::corrupt(
        STORE,
        format!(
            "sessions/{}/{}/{short}….json is not a session record ({error}); delete the file to \
             end that session",
            &short[..2],
            &short[2..4]
        ),
    )
}

/// `name` as a session hash, if it is one in the exact spelling the store writes (lowercase),
/// so that the hash leads back to the same file.
fn canonical_hash(name: &str) -> Option<SessionHash> {
    let hash: SessionHash = name.parse().ok()?;
    (hash.to_string() == name).then_some(hash)
}

/// The shard subdirectories (two hex digits) of `dir`: at most 256 paths.
fn shard_dirs(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing sessions", e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing sessions", e))?;
        let name = entry.file_name();
        let is_shard = name.to_str().is_some_and(|n| {
            n.len() == 2
                && n.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if is_shard {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record)
        .map_err(|e| StoreError::corrupt(STORE, format!("record cannot be serialized: {e}")))
}

/// Writes `bytes` to a new temp file in `dir` (the same directory as the target, so the rename
/// that follows stays on one filesystem and is atomic) and flushes it to disk, so that a crash
/// right after the rename cannot leave an empty file where the record was.
fn write_temp(dir: &Path, hash: &SessionHash, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        hash.short(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = private_file()
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_data()
        });
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            remove_quietly(&temp);
            Err(io_error(
                format_args!("writing session {}", hash.short()),
                e,
            ))
        }
    }
}

/// Renames `temp` over `path`, removing the temp file if that fails.
fn rename(temp: &Path, path: &Path) -> io::Result<()> {
    fs::rename(temp, path).inspect_err(|_| remove_quietly(temp))
}

fn remove_quietly(path: &Path) {
    if let Err(error) = fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(%error, path = %path.display(), "cloakroom: could not remove a file");
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

fn make_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes a new directory entry durable. Best effort: some platforms and filesystems cannot
/// open or sync a directory, and the entry is then as durable as the filesystem makes it.
fn sync_dir(dir: &Path) {
    if cfg!(unix) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

fn io_error(doing: impl fmt::Display, error: io::Error) -> StoreError {
    StoreError::unavailable(
        STORE,
        io::Error::new(
            error.kind(),
            format!("{doing}: {error} (check free space and permissions in the session directory)"),
        ),
    )
}
