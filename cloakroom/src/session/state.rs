//! What one request did to its session: the data it sees, the changes to persist, and the size
//! rule every write is checked against.

use std::collections::{BTreeMap, HashMap};
use std::io;

use serde::Serialize;
use serde_json::Value;

use super::Flash;
use crate::error::Error;
use crate::record::{Data, FLASH_KEY, PERSISTENT_KEY, Patch, Record};
use crate::ticket::{SessionHash, Ticket};
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Set,
    Removed,
}

/// A server-side session's ticket and the hash it is stored under.
#[derive(Clone, Debug)]
pub(crate) struct Id {
    pub(crate) ticket: Ticket,
    pub(crate) hash: SessionHash,
}

/// Where a loaded session came from: its identity in the store and its deadlines, as they were
/// when the request loaded it. (The session's data and user are in [`State`]; the whole stored
/// session is a [`Record`].)
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    /// `None` for a sealed-cookie session, which has no server-side identity.
    pub(crate) id: Option<Id>,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    /// The cookie was signed by an old key and must be re-signed.
    pub(crate) stale_key: bool,
}

/// One request's view of its session.
///
/// Invariant: the serialized size of `data` plus the pending flash messages never exceeds
/// `max_bytes` through a write of this request; a write that would break it fails and changes
/// nothing. Flash messages count because they are stored with the data: a client that repeats a
/// request which flashes must not grow the record without bound.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) stored: Option<Origin>,
    pub(super) data: Data,
    /// Keys this request set or removed, in key order (the patch lists them sorted).
    changes: BTreeMap<String, Change>,
    cleared: bool,
    pub(super) user: Option<String>,
    user_changed: bool,
    pub(super) persistent: bool,
    persistent_changed: bool,
    flashes_in: Vec<Flash>,
    flashes_out: Vec<Flash>,
    flashes_taken: bool,
    pub(crate) cycle: bool,
    /// A stored session that `destroy` ended; the layer deletes it.
    pub(crate) destroyed: Option<SessionHash>,
    /// Serialized size of `data`, computed on the first write.
    size: Option<usize>,
    max_bytes: usize,
}

impl State {
    pub(super) fn fresh(max_bytes: usize) -> Self {
        Self {
            stored: None,
            data: Data::new(),
            changes: BTreeMap::new(),
            cleared: false,
            user: None,
            user_changed: false,
            persistent: false,
            persistent_changed: false,
            flashes_in: Vec::new(),
            flashes_out: Vec::new(),
            flashes_taken: false,
            cycle: false,
            destroyed: None,
            size: None,
            max_bytes,
        }
    }

    pub(super) fn loaded(stored: Origin, mut record: Record, max_bytes: usize) -> Self {
        // A reserved key that does not parse is dropped; the next save rewrites it.
        let flashes_in = record
            .data
            .remove(FLASH_KEY)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let persistent = record.data.remove(PERSISTENT_KEY) == Some(Value::Bool(true));
        Self {
            stored: Some(stored),
            data: record.data,
            user: record.user_id,
            persistent,
            flashes_in,
            ..Self::fresh(max_bytes)
        }
    }

    /// Serialized size of the data alone.
    fn data_size(&mut self) -> usize {
        *self.size.get_or_insert_with(|| {
            2 + self
                .data
                .iter()
                .map(|(k, v)| entry_len(k, v))
                .sum::<usize>()
        })
    }

    /// Fails with [`Error::TooLarge`] unless data of `data_size` bytes and the pending flash
    /// messages fit the limit together.
    fn check_fits(&self, data_size: usize) -> Result<(), Error> {
        let size = data_size + self.flashes_len();
        if size > self.max_bytes {
            return Err(Error::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    pub(super) fn check_writable(key: &str) -> Result<(), Error> {
        if key.starts_with("__") {
            return Err(Error::ReservedKey(key.to_owned()));
        }
        Ok(())
    }

    /// Sets `key`, already checked and counted, and records the change.
    fn set(&mut self, key: String, value: Value) {
        // Updating a key keeps the stored one; only a new key needs a copy for the data map.
        match self.data.get_mut(&key) {
            Some(slot) => *slot = value,
            None => {
                self.data.insert(key.clone(), value);
            }
        }
        self.changes.insert(key, Change::Set);
    }

    /// Sets `key` to `value` if the session stays within its limit.
    pub(super) fn insert(&mut self, key: String, value: Value) -> Result<(), Error> {
        let old = self.data.get(&key).map_or(0, |old| entry_len(&key, old));
        let size = self.data_size() - old + entry_len(&key, &value);
        self.check_fits(size)?;
        self.size = Some(size);
        self.set(key, value);
        Ok(())
    }

    /// Sets every pair, or none of them when they do not fit together.
    pub(super) fn extend(&mut self, values: Vec<(String, Value)>) -> Result<(), Error> {
        let mut size = self.data_size();
        let mut seen = HashMap::new();
        for (key, value) in &values {
            let old = seen
                .insert(key.as_str(), value)
                .or_else(|| self.data.get(key))
                .map_or(0, |old| entry_len(key, old));
            size = size - old + entry_len(key, value);
        }
        self.check_fits(size)?;
        self.size = Some(size);
        for (key, value) in values {
            self.set(key, value);
        }
        Ok(())
    }

    pub(super) fn remove(&mut self, key: &str) -> bool {
        match self.data.remove(key) {
            Some(old) => {
                if let Some(size) = self.size.as_mut() {
                    *size -= entry_len(key, &old);
                }
                self.changes.insert(key.to_owned(), Change::Removed);
                true
            }
            None => false,
        }
    }

    pub(super) fn clear(&mut self) {
        self.data.clear();
        self.changes.clear();
        self.cleared = true;
        self.size = Some(2);
    }

    /// Adds a flash message unless the same one is already waiting to be shown.
    pub(super) fn flash(&mut self, flash: Flash) -> Result<(), Error> {
        if self.pending_flashes().any(|pending| *pending == flash) {
            return Ok(());
        }
        self.flashes_out.push(flash);
        let data_size = self.data_size();
        if let Err(error) = self.check_fits(data_size) {
            self.flashes_out.pop();
            return Err(error);
        }
        Ok(())
    }

    pub(super) fn take_flashes(&mut self) -> Vec<Flash> {
        if self.flashes_taken {
            return Vec::new();
        }
        self.flashes_taken = true;
        self.flashes_in.clone()
    }

    pub(super) fn peek_flashes(&self) -> Vec<Flash> {
        if self.flashes_taken {
            Vec::new()
        } else {
            self.flashes_in.clone()
        }
    }

    pub(super) fn clear_flashes(&mut self) {
        self.flashes_taken = true;
        self.flashes_out.clear();
    }

    /// Flash messages the session will hold after this request: those of earlier requests not
    /// taken, then this request's.
    fn pending_flashes(&self) -> impl Iterator<Item = &Flash> {
        let kept = if self.flashes_taken {
            &[][..]
        } else {
            &self.flashes_in[..]
        };
        kept.iter().chain(&self.flashes_out)
    }

    fn flashes_after(&self) -> Vec<Flash> {
        self.pending_flashes().cloned().collect()
    }

    /// Bytes the pending flash messages add to the stored data: `"__flash":[…],`, or nothing.
    fn flashes_len(&self) -> usize {
        let (count, bytes) = self
            .pending_flashes()
            .fold((0, 0), |(count, bytes), flash| {
                // {"category":…,"message":…}
                let len = json_len(&flash.category) + json_len(&flash.message) + 24;
                (count + 1, bytes + len)
            });
        if count == 0 {
            return 0;
        }
        // The key, `:[`, the objects with a comma between each, `],`.
        json_len(FLASH_KEY) + 2 + bytes + (count - 1) + 2
    }

    fn flashes_changed(&self) -> bool {
        !self.flashes_out.is_empty() || (self.flashes_taken && !self.flashes_in.is_empty())
    }

    pub(super) fn destroy(&mut self) {
        let destroyed = self
            .stored
            .take()
            .and_then(|stored| stored.id)
            .map(|id| id.hash)
            .or(self.destroyed);
        *self = State {
            destroyed,
            ..State::fresh(self.max_bytes)
        };
    }

    /// Binds the session to `user` under a new ticket. Unless it already belonged to that user,
    /// the session starts over: nothing of another user's session, or planted in an anonymous
    /// one, survives the login but the keys an anonymous session was told to keep.
    pub(super) fn log_in(&mut self, user: String, keep: &[&str]) {
        if self.user.as_deref() != Some(user.as_str()) {
            let carried: Vec<(String, Value)> = if self.user.is_none() {
                keep.iter()
                    .filter_map(|&key| Some((key.to_owned(), self.data.get(key)?.clone())))
                    .collect()
            } else {
                Vec::new()
            };
            self.clear();
            self.flashes_taken = true;
            self.set_persistent(false);
            for (key, value) in carried {
                // Each value fitted in the old session, so together they fit in the new one.
                self.size = self.size.map(|size| size + entry_len(&key, &value));
                self.set(key, value);
            }
        }
        self.set_user(Some(user));
        self.cycle = true;
    }

    pub(super) fn set_persistent(&mut self, persistent: bool) {
        if self.persistent != persistent {
            self.persistent = persistent;
            self.persistent_changed = true;
        }
    }

    pub(super) fn set_user(&mut self, user: Option<String>) {
        if self.user != user {
            self.user = user;
            self.user_changed = true;
        }
    }

    pub(crate) fn is_modified(&self) -> bool {
        !self.changes.is_empty()
            || self.cleared
            || self.user_changed
            || self.persistent_changed
            || self.flashes_changed()
            || self.cycle
            || self.destroyed.is_some()
    }

    pub(crate) fn persistent(&self) -> bool {
        self.persistent
    }

    pub(crate) fn persistent_changed(&self) -> bool {
        self.persistent_changed
    }

    /// Whether a new session has anything worth storing.
    pub(crate) fn has_content(&self) -> bool {
        !self.data.is_empty() || self.user.is_some() || self.pending_flashes().next().is_some()
    }

    /// The whole session as a record, taking the data out of the state.
    pub(crate) fn take_record(
        &mut self,
        created_at: Timestamp,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Record {
        let mut data = std::mem::take(&mut self.data);
        let flashes = self.flashes_after();
        if !flashes.is_empty() {
            data.insert(FLASH_KEY.into(), flash_value(flashes));
        }
        if self.persistent {
            data.insert(PERSISTENT_KEY.into(), Value::Bool(true));
        }
        Record {
            data,
            user_id: self.user.take(),
            created_at,
            updated_at: now,
            expires_at,
        }
    }

    /// What this request changed in a stored session, taking the values out of the state.
    pub(crate) fn take_patch(&mut self, now: Timestamp) -> Patch {
        let mut patch = Patch {
            clear: self.cleared,
            updated_at: now,
            ..Patch::default()
        };
        for (key, change) in std::mem::take(&mut self.changes) {
            match change {
                Change::Set => {
                    if let Some(value) = self.data.remove(&key) {
                        patch.set.push((key, value));
                    }
                }
                Change::Removed if !self.cleared => patch.remove.push(key),
                Change::Removed => {}
            }
        }
        if self.cleared || self.flashes_changed() {
            let flashes = self.flashes_after();
            if !flashes.is_empty() {
                patch.set.push((FLASH_KEY.into(), flash_value(flashes)));
            } else if !self.cleared {
                patch.remove.push(FLASH_KEY.into());
            }
        }
        if self.cleared || self.persistent_changed {
            if self.persistent {
                patch.set.push((PERSISTENT_KEY.into(), Value::Bool(true)));
            } else if !self.cleared {
                patch.remove.push(PERSISTENT_KEY.into());
            }
        }
        if self.user_changed {
            patch.user_id = Some(self.user.clone());
        }
        patch
    }
}

fn flash_value(flashes: Vec<Flash>) -> Value {
    Value::Array(
        flashes
            .into_iter()
            .map(|f| serde_json::json!({"category": f.category, "message": f.message}))
            .collect(),
    )
}

/// Bytes `"key":value,` takes in the serialized object.
fn entry_len(key: &str, value: &Value) -> usize {
    json_len(&key) + json_len(value) + 2
}

fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing an in-memory `Value` or `str` cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size rule counts exactly what a store keeps: the serialized data with its flashes.
    #[test]
    fn counted_size_is_the_serialized_size() {
        let mut state = State::fresh(10_000);
        state.insert("k".into(), serde_json::json!("v\"x")).unwrap();
        for (category, message) in [("info", "hi"), ("warn", "é \"quoted\"")] {
            state
                .flash(Flash {
                    category: category.into(),
                    message: message.into(),
                })
                .unwrap();
        }
        let counted = state.data_size() + state.flashes_len();
        let record = state.take_record(
            Timestamp::default(),
            Timestamp::default(),
            Timestamp::default(),
        );
        let stored = serde_json::to_string(&record.data).unwrap();
        // The counted size has a trailing comma per entry where JSON has one fewer.
        assert_eq!(counted, stored.len() + 1, "{stored}");
    }
}
