//! The session handle handlers work with.

mod state;

use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::record::Record;
use crate::ticket::SessionHash;
use crate::time::Timestamp;

pub(crate) use state::{Id, Origin, State};

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
///     session.flash("info", "Welcome, first-time visitor!")?;
/// }
/// Ok(format!("visit number {}", visits + 1))
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    state: Arc<Mutex<State>>,
}

impl Session {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self::from_state(State::fresh(max_bytes))
    }

    pub(crate) fn loaded(stored: Origin, record: Record, max_bytes: usize) -> Self {
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
    /// with `__`), or the session would exceed its size limit (its data and pending flash
    /// messages together).
    pub fn insert(&self, key: impl Into<String>, value: impl Serialize) -> Result<(), Error> {
        let key = key.into();
        let value = to_value(&key, value)?;
        self.state.lock().insert(key, value)
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
        let values = pairs
            .into_iter()
            .map(|(key, value)| {
                let key = key.into();
                let value = to_value(&key, value)?;
                Ok((key, value))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.state.lock().extend(values)
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        self.state.lock().remove(key)
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
        self.state.lock().clear();
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
    ///
    /// A message identical to one already waiting (same category and text) is not added again,
    /// so a page that flashes on every visit ("Please log in first.") shows it once. Flash
    /// messages are stored with the data and count toward the same size limit: when the message
    /// does not fit, this fails with [`Error::TooLarge`] and nothing is added.
    ///
    /// ```
    /// # fn demo(session: cloakroom::Session) -> Result<(), cloakroom::Error> {
    /// session.flash("success", "Saved!")?;
    /// # Ok(()) }
    /// ```
    pub fn flash(
        &self,
        category: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<(), Error> {
        self.state.lock().flash(Flash {
            category: category.into(),
            message: message.into(),
        })
    }

    /// The flash messages left by earlier requests, removed from the session.
    ///
    /// Messages flashed during this request stay for the next one.
    pub fn take_flashes(&self) -> Vec<Flash> {
        self.state.lock().take_flashes()
    }

    /// The flash messages left by earlier requests, without consuming them.
    pub fn peek_flashes(&self) -> Vec<Flash> {
        self.state.lock().peek_flashes()
    }

    /// Drops every flash message, earlier and new.
    pub fn clear_flashes(&self) {
        self.state.lock().clear_flashes();
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
        self.state.lock().destroy();
    }

    /// Gives the session a new ticket, keeping its data; the old ticket stops working at once.
    ///
    /// Call it when privileges change, so that a ticket planted before (session fixation) is
    /// worthless after it. For a login, [`Session::log_in`] does this and more. The absolute
    /// lifetime is not extended.
    pub fn cycle_id(&self) {
        self.state.lock().cycle = true;
    }

    /// Logs `user_id` in, the safe way: a new ticket ([`cycle_id`](Session::cycle_id)) and the
    /// session bound to the user ([`set_user`](Session::set_user)).
    ///
    /// Unless the session already belongs to `user_id`, it starts over empty: the data, the
    /// flash messages of earlier requests and the "remember me" choice are dropped, so nothing a
    /// previous user left behind (their cart, a half-filled form) and nothing an attacker planted
    /// in a visitor's browser reaches the new user. When the session was anonymous, the keys
    /// named in `keep` are carried over, such as a cart the visitor filled before logging in.
    /// Flash messages added during this request are kept.
    ///
    /// ```
    /// # fn demo(session: cloakroom::Session) -> Result<(), cloakroom::Error> {
    /// // (check the password first)
    /// session.log_in("42", &["cart"]);
    /// session.set_persistent(true); // "remember me", if ticked
    /// session.flash("success", "Welcome back!")?;
    /// # Ok(()) }
    /// ```
    pub fn log_in(&self, user_id: impl Into<String>, keep: &[&str]) {
        self.state.lock().log_in(user_id.into(), keep);
    }

    /// `true` for a persistent cookie that survives closing the browser ("remember me"); `false`
    /// (the default) for a cookie that lasts until the browser closes. Either way the server's
    /// idle and absolute timeouts apply.
    pub fn set_persistent(&self, persistent: bool) {
        self.state.lock().set_persistent(persistent);
    }

    /// Whether the session uses a persistent cookie.
    pub fn is_persistent(&self) -> bool {
        self.state.lock().persistent
    }

    /// Binds the session to a user, so it can be listed and revoked with the user's other
    /// sessions. At login, prefer [`Session::log_in`], which also renews the ticket and drops
    /// what another user left in the session.
    pub fn set_user(&self, user_id: impl Into<String>) {
        self.state.lock().set_user(Some(user_id.into()));
    }

    /// Unbinds the session from its user.
    pub fn clear_user(&self) {
        self.state.lock().set_user(None);
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

/// `value` as JSON for `key`, which must not be one of cloakroom's own.
fn to_value(key: &str, value: impl Serialize) -> Result<Value, Error> {
    State::check_writable(key)?;
    serde_json::to_value(value).map_err(|source| Error::Serialize {
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
