//! Files: reading a record or just its expiry, writing one atomically (temp file, fsync,
//! rename), naming and listing them.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use crate::error::StoreError;
use crate::record::Record;
use crate::ticket::SessionHash;
use crate::time::Timestamp;

use super::STORE;

/// Just the expiry of a record: what counting and purging need, without building the data map.
#[derive(Deserialize)]
pub(super) struct Expiry {
    pub(super) expires_at: Timestamp,
}

/// The record in `path`, `None` if there is no file.
pub(super) fn read_record(path: &Path, hash: &SessionHash) -> Result<Option<Record>, StoreError> {
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
pub(super) fn read_expiry(path: &Path, hash: &SessionHash) -> Option<Timestamp> {
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

pub(super) fn corrupt(hash: &SessionHash, error: serde_json::Error) -> StoreError {
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
pub(super) fn canonical_hash(name: &str) -> Option<SessionHash> {
    let hash: SessionHash = name.parse().ok()?;
    (hash.to_string() == name).then_some(hash)
}

/// The shard subdirectories (two hex digits) of `dir`: at most 256 paths.
pub(super) fn shard_dirs(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
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

pub(super) fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record)
        .map_err(|e| StoreError::corrupt(STORE, format!("record cannot be serialized: {e}")))
}

/// Writes `bytes` to a new temp file in `dir` (the same directory as the target, so the rename
/// that follows stays on one filesystem and is atomic) and flushes it to disk, so that a crash
/// right after the rename cannot leave an empty file where the record was.
pub(super) fn write_temp(
    dir: &Path,
    hash: &SessionHash,
    bytes: &[u8],
) -> Result<PathBuf, StoreError> {
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
pub(super) fn rename(temp: &Path, path: &Path) -> io::Result<()> {
    fs::rename(temp, path).inspect_err(|_| remove_quietly(temp))
}

pub(super) fn remove_quietly(path: &Path) {
    if let Err(error) = fs::remove_file(path)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(%error, path = %path.display(), "cloakroom: could not remove a file");
    }
}

pub(super) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

pub(super) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    crate::stores::owner_only(&mut options);
    options
}

pub(super) fn make_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Makes a new directory entry durable. Best effort: some platforms and filesystems cannot
/// open or sync a directory, and the entry is then as durable as the filesystem makes it.
pub(super) fn sync_dir(dir: &Path) {
    if cfg!(unix) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

pub(super) fn io_error(doing: impl fmt::Display, error: io::Error) -> StoreError {
    StoreError::unavailable(
        STORE,
        io::Error::new(
            error.kind(),
            format!("{doing}: {error} (check free space and permissions in the session directory)"),
        ),
    )
}
