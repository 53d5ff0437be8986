//! The session handle handlers work with.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::record::{Data, FLASH_KEY, PERSISTENT_KEY, Patch, Record};
use crate::ticket::{SessionHash, Ticket};
use crate::time::Timestamp;

/// A one-time message for the next page the visitor sees ("Saved!", "Wrong password").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// A label for styling, e.g. `"success"`, `"warning"`.
    pub category: String,
    /// The text.
    pub message: String,
}

/// One visitor's session.
///
/// Loaded at most once per request (when a handler first asks for it), then every call is a plain
/// synchronous operation on an in-memory view. The layer persists what changed after the handler
/// returns, as a patch: only the keys this request set or removed are written, so concurrent
/// requests changing different keys do not overwrite each other.
///
/// Cloning is cheap; clones share the same session.
///
/// ```
/// # async fn handler(session: cloakroom::Session) -> Result<String, cloakroom::Error> {
/// let visits: u64 = session.get_or("visits", 0)?;
/// session.insert("visits", visits + 1)?;
/// if visits == 0 {
///     session.flash("info", "Welcome, first-time visitor!");
/// }
/// Ok(format!("visit number {}", visits + 1))
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    state: Arc<Mutex<State>>,
}

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

/// The stored session this one was loaded from.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    /// `None` for a sealed-cookie session, which has no server-side identity.
    pub(crate) id: Option<Id>,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    /// The cookie was signed by an old key and must be re-signed.
    pub(crate) stale_key: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) stored: Option<Stored>,
    data: Data,
    /// Keys this request set or removed, in key order (the patch lists them sorted).
    changes: BTreeMap<String, Change>,
    cleared: bool,
    user: Option<String>,
    user_changed: bool,
    persistent: bool,
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
    fn fresh(max_bytes: usize) -> Self {
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

    fn loaded(stored: Stored, mut record: Record, max_bytes: usize) -> Self {
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

    fn size(&mut self) -> usize {
        *self.size.get_or_insert_with(|| {
            2 + self
                .data
                .iter()
                .map(|(k, v)| entry_len(k, v))
                .sum::<usize>()
        })
    }

    /// Sets `key`, already checked, and records the change.
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

    fn check_writable(key: &str) -> Result<(), Error> {
        if key.starts_with("__") {
            return Err(Error::ReservedKey(key.to_owned()));
        }
        Ok(())
    }

    fn flashes_after(&self) -> Vec<Flash> {
        let kept = if self.flashes_taken {
            &[][..]
        } else {
            &self.flashes_in[..]
        };
        kept.iter().chain(&self.flashes_out).cloned().collect()
    }

    fn flashes_changed(&self) -> bool {
        !self.flashes_out.is_empty() || (self.flashes_taken && !self.flashes_in.is_empty())
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
        !self.data.is_empty() || self.user.is_some() || !self.flashes_after().is_empty()
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

impl Session {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self::from_state(State::fresh(max_bytes))
    }

    pub(crate) fn loaded(stored: Stored, record: Record, max_bytes: usize) -> Self {
        Self::from_state(State::loaded(stored, record, max_bytes))
    }

    fn from_state(state: State) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// The value under `key`, deserialized into `T`; `None` when the key is absent.
    ///
    /// Fails with [`Error::Deserialize`] when the stored value does not fit `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let state = self.state.lock();
        match state.data.get(key) {
            None => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|source| Error::Deserialize {
                    key: key.to_owned(),
                    source,
                }),
        }
    }

    /// The value under `key`, or `default` when the key is absent.
    ///
    /// ```
    /// # fn demo(session: cloakroom::Session) -> Result<(), cloakroom::Error> {
    /// let cart: Vec<u32> = session.get_or("cart", Vec::new())?;
    /// # Ok(()) }
    /// ```
    pub fn get_or<T: DeserializeOwned>(&self, key: &str, default: T) -> Result<T, Error> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.state.lock().data.get(key).cloned()
    }

    /// Sets `key` to `value`.
    ///
    /// Fails, changing nothing, when the value cannot be serialized, the key is reserved (starts
    /// with `__`), or the session would exceed its size limit.
    pub fn insert(&self, key: impl Into<String>, value: impl Serialize) -> Result<(), Error> {
        let key = key.into();
        State::check_writable(&key)?;
        let value = serde_json::to_value(value).map_err(|source| Error::Serialize {
            key: key.clone(),
            source,
        })?;
        let mut state = self.state.lock();
        let size = grown_size(&mut state, &key, &value)?;
        state.size = Some(size);
        state.set(key, value);
        Ok(())
    }

    /// Sets several keys at once: either all of them or, on error, none.
    ///
    /// ```
    /// # fn demo(session: cloakroom::Session) -> Result<(), cloakroom::Error> {
    /// session.extend([("theme", "dark"), ("language", "en")])?;
    /// # Ok(()) }
    /// ```
    pub fn extend<K, V, I>(&self, pairs: I) -> Result<(), Error>
    where
        K: Into<String>,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut values = Vec::new();
        for (key, value) in pairs {
            let key = key.into();
            State::check_writable(&key)?;
            let value = serde_json::to_value(value).map_err(|source| Error::Serialize {
                key: key.clone(),
                source,
            })?;
            values.push((key, value));
        }
        let mut state = self.state.lock();
        let before = state.size();
        let mut size = before;
        let mut seen = HashMap::new();
        for (key, value) in &values {
            let old = seen
                .insert(key.as_str(), value)
                .or_else(|| state.data.get(key))
                .map_or(0, |old| entry_len(key, old));
            size = size - old + entry_len(key, value);
        }
        if size > state.max_bytes {
            return Err(Error::TooLarge {
                size,
                limit: state.max_bytes,
            });
        }
        state.size = Some(size);
        for (key, value) in values {
            state.set(key, value);
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        let mut state = self.state.lock();
        match state.data.remove(key) {
            Some(old) => {
                if let Some(size) = state.size.as_mut() {
                    *size -= entry_len(key, &old);
                }
                state.changes.insert(key.to_owned(), Change::Removed);
                true
            }
            None => false,
        }
    }

    /// Removes `key` and returns its value as `T`.
    ///
    /// When the value does not fit `T` the key is kept and [`Error::Deserialize`] returned.
    pub fn pop<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let value = self.get(key)?;
        if value.is_some() {
            self.remove(key);
        }
        Ok(value)
    }

    /// Removes every key but keeps the session (its ticket, user and flash messages).
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.data.clear();
        state.changes.clear();
        state.cleared = true;
        state.size = Some(2);
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.state.lock().data.contains_key(key)
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> Vec<String> {
        self.state.lock().data.keys().cloned().collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.state.lock().data.len()
    }

    /// Whether the session holds no keys.
    pub fn is_empty(&self) -> bool {
        self.state.lock().data.is_empty()
    }

    /// A copy of all keys and values.
    pub fn to_map(&self) -> Map<String, Value> {
        self.state.lock().data.clone()
    }

    /// Adds a flash message, shown on a later request by [`Session::take_flashes`].
    pub fn flash(&self, category: impl Into<String>, message: impl Into<String>) {
        self.state.lock().flashes_out.push(Flash {
            category: category.into(),
            message: message.into(),
        });
    }

    /// The flash messages left by earlier requests, removed from the session.
    ///
    /// Messages flashed during this request stay for the next one.
    pub fn take_flashes(&self) -> Vec<Flash> {
        let mut state = self.state.lock();
        if state.flashes_taken {
            return Vec::new();
        }
        state.flashes_taken = true;
        state.flashes_in.clone()
    }

    /// The flash messages left by earlier requests, without consuming them.
    pub fn peek_flashes(&self) -> Vec<Flash> {
        let state = self.state.lock();
        if state.flashes_taken {
            Vec::new()
        } else {
            state.flashes_in.clone()
        }
    }

    /// Drops every flash message, earlier and new.
    pub fn clear_flashes(&self) {
        let mut state = self.state.lock();
        state.flashes_taken = true;
        state.flashes_out.clear();
    }

    /// Whether the session was created by this request (nothing was stored before).
    pub fn is_new(&self) -> bool {
        self.state.lock().stored.is_none()
    }

    /// Whether this request changed anything that will be saved.
    pub fn is_modified(&self) -> bool {
        self.state.lock().is_modified()
    }

    /// Ends the session: the record is deleted and the cookie removed (logout).
    ///
    /// Anything written afterwards in the same request goes to a brand-new session with a new
    /// ticket, e.g. a "you have been logged out" flash.
    pub fn destroy(&self) {
        let mut state = self.state.lock();
        let max_bytes = state.max_bytes;
        let destroyed = state
            .stored
            .take()
            .and_then(|stored| stored.id)
            .map(|id| id.hash)
            .or(state.destroyed);
        *state = State {
            destroyed,
            ..State::fresh(max_bytes)
        };
    }

    /// Gives the session a new ticket, keeping its data; the old ticket stops working at once.
    ///
    /// Call it when privileges change, above all at login, so that a ticket planted before login
    /// (session fixation) is worthless after it. The absolute lifetime is not extended.
    pub fn cycle_id(&self) {
        self.state.lock().cycle = true;
    }

    /// `true` for a persistent cookie that survives closing the browser ("remember me"); `false`
    /// (the default) for a cookie that lasts until the browser closes. Either way the server's
    /// idle and absolute timeouts apply.
    pub fn set_persistent(&self, persistent: bool) {
        let mut state = self.state.lock();
        if state.persistent != persistent {
            state.persistent = persistent;
            state.persistent_changed = true;
        }
    }

    /// Whether the session uses a persistent cookie.
    pub fn is_persistent(&self) -> bool {
        self.state.lock().persistent
    }

    /// Binds the session to a user, so it can be listed and revoked with the user's other
    /// sessions.
    pub fn set_user(&self, user_id: impl Into<String>) {
        let mut state = self.state.lock();
        state.user = Some(user_id.into());
        state.user_changed = true;
    }

    /// Unbinds the session from its user.
    pub fn clear_user(&self) {
        let mut state = self.state.lock();
        if state.user.is_some() {
            state.user = None;
            state.user_changed = true;
        }
    }

    /// The user the session is bound to.
    pub fn user(&self) -> Option<String> {
        self.state.lock().user.clone()
    }

    /// The hash the session is stored under; `None` for a new session, and for sealed-cookie
    /// sessions, which are not stored on the server. Compare it with the hashes from
    /// [`Store::list_user`](crate::Store::list_user) to mark "this device".
    pub fn hash(&self) -> Option<SessionHash> {
        let state = self.state.lock();
        state.stored.as_ref()?.id.as_ref().map(|id| id.hash)
    }

    /// When the session was first stored; `None` for a new session.
    pub fn created_at(&self) -> Option<Timestamp> {
        self.state.lock().stored.as_ref().map(|s| s.created_at)
    }

    /// When the stored session expires unless activity extends it; `None` for a new session.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.state.lock().stored.as_ref().map(|s| s.expires_at)
    }
}

/// The size the data would have with `key` set to `value`, or [`Error::TooLarge`].
fn grown_size(state: &mut State, key: &str, value: &Value) -> Result<usize, Error> {
    let old = state.data.get(key).map_or(0, |old| entry_len(key, old));
    let size = state.size() - old + entry_len(key, value);
    if size > state.max_bytes {
        return Err(Error::TooLarge {
            size,
            limit: state.max_bytes,
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored_session() -> Session {
        let ticket = Ticket::generate().unwrap();
        let hash = ticket.hash();
        let record = Record {
            data: json!({"a": 1, "b": "two", "__flash": [{"category": "info", "message": "hi"}]})
                .as_object()
                .unwrap()
                .clone(),
            user_id: Some("7".into()),
            created_at: Timestamp::from_unix_millis(1),
            updated_at: Timestamp::from_unix_millis(1),
            expires_at: Timestamp::from_unix_millis(1_000),
        };
        let stored = Stored {
            id: Some(Id { ticket, hash }),
            created_at: record.created_at,
            expires_at: record.expires_at,
            stale_key: false,
        };
        Session::loaded(stored, record, 1024)
    }

    #[test]
    fn typed_round_trip() {
        let session = Session::new(1024);
        session.insert("n", 5u8).unwrap();
        session.insert("v", vec!["x", "y"]).unwrap();
        assert_eq!(session.get::<u8>("n").unwrap(), Some(5));
        assert_eq!(
            session.get::<Vec<String>>("v").unwrap().unwrap(),
            ["x", "y"]
        );
        assert_eq!(session.get::<u8>("missing").unwrap(), None);
        assert_eq!(session.get_or("missing", 9).unwrap(), 9);
        let err = session.get::<u8>("v").unwrap_err();
        assert!(matches!(err, Error::Deserialize { ref key, .. } if key == "v"));
    }

    #[test]
    fn reserved_keys_are_refused_and_hidden() {
        let session = stored_session();
        assert!(matches!(
            session.insert("__flash", 1),
            Err(Error::ReservedKey(_))
        ));
        assert_eq!(session.keys(), ["a", "b"]);
        assert!(!session.contains("__flash"));
    }

    #[test]
    fn size_limit_is_checked_before_anything_changes() {
        let session = Session::new(40);
        session.insert("k", "0123456789").unwrap();
        let err = session.insert("big", "x".repeat(100)).unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: 40, .. }), "{err}");
        assert!(!session.contains("big"));
        // Replacing a value counts the old one out.
        session.insert("k", "9876543210").unwrap();
        let err = session
            .extend([("p", "x".repeat(10)), ("q", "y".repeat(10))])
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }));
        assert_eq!(session.keys(), ["k"]);
    }

    #[test]
    fn patch_names_only_what_changed() {
        let session = stored_session();
        session.insert("c", 3).unwrap();
        session.remove("a");
        assert!(!session.remove("nope"));
        let patch = session.lock().take_patch(Timestamp::from_unix_millis(5));
        assert_eq!(patch.set, vec![("c".to_owned(), json!(3))]);
        assert_eq!(patch.remove, vec!["a".to_owned()]);
        assert!(!patch.clear);
        assert_eq!(patch.user_id, None);
    }

    #[test]
    fn clear_keeps_flashes_and_persistence() {
        let session = stored_session();
        session.set_persistent(true);
        session.clear();
        session.insert("z", true).unwrap();
        let patch = session.lock().take_patch(Timestamp::default());
        assert!(patch.clear);
        assert!(patch.remove.is_empty());
        let keys: Vec<&str> = patch.set.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "__flash", "__persistent"]);
    }

    #[test]
    fn flashes_are_consumed_once() {
        let session = stored_session();
        session.flash("success", "saved");
        let taken = session.take_flashes();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].message, "hi");
        assert!(session.take_flashes().is_empty());
        let patch = session.lock().take_patch(Timestamp::default());
        assert_eq!(
            patch.set,
            vec![(
                "__flash".to_owned(),
                json!([{"category": "success", "message": "saved"}])
            )]
        );
    }

    #[test]
    fn destroy_forgets_everything_and_remembers_the_old_hash() {
        let session = stored_session();
        let hash = session.hash().unwrap();
        session.destroy();
        assert!(session.is_new());
        assert!(session.is_empty());
        assert_eq!(session.user(), None);
        assert!(session.peek_flashes().is_empty());
        assert_eq!(session.lock().destroyed, Some(hash));
        assert!(!session.lock().has_content());
        session.flash("info", "bye");
        assert!(session.lock().has_content());
    }
}
