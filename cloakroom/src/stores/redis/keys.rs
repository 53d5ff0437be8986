//! The key layout: where a store's sessions and user indexes live, and the fields of a session
//! hash. The [module documentation](super) shows it as a table.

use crate::error::StoreError;
use crate::ticket::SessionHash;

/// The prefix of a data field: `d:<key>` holds the value of `key` as JSON text.
pub(super) const DATA_FIELD: &str = "d:";
/// When the session was created (Unix milliseconds).
pub(super) const CREATED_FIELD: &str = "m:created";
/// When the session was last written (Unix milliseconds).
pub(super) const UPDATED_FIELD: &str = "m:updated";
/// When the session expires (Unix milliseconds); Redis deletes the key then too.
pub(super) const EXPIRES_FIELD: &str = "m:expires";
/// The user the session is bound to, absent when none.
pub(super) const USER_FIELD: &str = "m:user";

/// The field that holds the value of the data key `key`.
pub(super) fn data_field(key: &str) -> String {
    format!("{DATA_FIELD}{key}")
}

/// The key names of one store, all tagged with its prefix: `{prefix}:s:<hash>` for sessions,
/// `{prefix}:u:<user id>` for user indexes.
#[derive(Debug)]
pub(super) struct Keys {
    prefix: String,
    /// `{prefix}:s:`
    session_prefix: String,
    /// `{prefix}:u:`
    index_prefix: String,
}

impl Keys {
    /// The layout under `prefix`, which must be 1 to 64 ASCII letters, digits, `_`, `-`, `.`
    /// or `:`, so it can neither end the hash tag early nor act as a wildcard in `SCAN`
    /// patterns.
    pub(super) fn new(prefix: &str) -> Result<Self, StoreError> {
        let valid = (1..=64).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !valid {
            return Err(StoreError::Config(format!(
                "Redis key prefix {prefix:?} must be 1-64 ASCII letters, digits, '_', '-', '.' \
                 or ':' (it becomes the Redis Cluster hash tag {{{prefix}}})"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            session_prefix: format!("{{{prefix}}}:s:"),
            index_prefix: format!("{{{prefix}}}:u:"),
        })
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:s:`, which a session's hash follows.
    pub(super) fn session_prefix(&self) -> &str {
        &self.session_prefix
    }

    /// `{prefix}:u:`, which a user id follows.
    pub(super) fn index_prefix(&self) -> &str {
        &self.index_prefix
    }

    /// The key of the session filed under `hash`.
    pub(super) fn session(&self, hash: &SessionHash) -> String {
        format!("{}{hash}", self.session_prefix)
    }

    /// The key of the index of `user_id`'s sessions.
    pub(super) fn index(&self, user_id: &str) -> String {
        format!("{}{user_id}", self.index_prefix)
    }

    /// The `SCAN` pattern of every session key.
    pub(super) fn sessions_pattern(&self) -> String {
        format!("{}*", self.session_prefix)
    }

    /// The `SCAN` pattern of every session and index key.
    pub(super) fn sessions_and_indexes_pattern(&self) -> String {
        format!("{{{}}}:[su]:*", self.prefix)
    }
}
