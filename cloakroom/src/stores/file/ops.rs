//! The store's operations on its directory tree, each run on the blocking pool under the
//! session's lock where it writes.

use std::fs::{self};
use std::io::{self};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

use super::disk::*;
use super::*;

/// What a walk over `sessions/` finds.
pub(super) enum WalkEntry {
    Session(SessionHash, PathBuf),
    Temp(PathBuf),
}

impl Inner {
    pub(super) fn session_path(&self, hash: &SessionHash) -> PathBuf {
        let hex = hash.to_string();
        self.root
            .join(SESSIONS)
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(format!("{hex}.json"))
    }

    pub(super) fn user_dir(&self, user_id: &str) -> PathBuf {
        let hex = crate::ticket::hex(&Sha256::digest(user_id.as_bytes()));
        self.root.join(USERS).join(&hex[..2]).join(hex)
    }

    /// Blocks this (blocking-pool) thread for the lock of `hash`. Only the maintenance walks use
    /// it; request paths wait asynchronously.
    pub(super) fn lock_blocking(&self, hash: &SessionHash) -> tokio::sync::MutexGuard<'_, ()> {
        self.locks[lock_index(hash)].blocking_lock()
    }

    pub(super) fn create(&self, hash: &SessionHash, record: &Record) -> Result<(), StoreError> {
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

    pub(super) fn save(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
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

    pub(super) fn rotate(
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

    pub(super) fn delete(&self, hash: &SessionHash) -> Result<bool, StoreError> {
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

    pub(super) fn list_user(
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

    pub(super) fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionHash>,
    ) -> Result<u64, StoreError> {
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

    pub(super) fn count(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut live = 0;
        self.walk(|found| {
            if let WalkEntry::Session(hash, path) = found
                && read_expiry(&path, &hash).is_some_and(|expires_at| now < expires_at)
            {
                live += 1;
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(live)
    }

    pub(super) fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut purged = 0;
        if limit == 0 {
            return Ok(0);
        }
        let stale_before = SystemTime::now().checked_sub(STALE_TEMP);
        self.walk(|found| {
            match found {
                WalkEntry::Temp(path) => {
                    let modified = fs::metadata(&path).and_then(|m| m.modified());
                    if let (Ok(modified), Some(stale_before)) = (modified, stale_before)
                        && modified < stale_before
                    {
                        remove_quietly(&path);
                    }
                }
                WalkEntry::Session(hash, path) => {
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
    pub(super) fn index(&self, user_id: &str, hash: &SessionHash) -> Result<(), StoreError> {
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
    pub(super) fn unindex(&self, user_id: &str, hash: &SessionHash) {
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
    pub(super) fn each_indexed(
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
    pub(super) fn walk(
        &self,
        mut visit: impl FnMut(WalkEntry) -> Result<ControlFlow<()>, StoreError>,
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
                            WalkEntry::Session(hash, entry.path())
                        } else if name.starts_with('.') && name.ends_with(".tmp") {
                            WalkEntry::Temp(entry.path())
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
