//! Errors: what went wrong, and what to do about it.

use std::error::Error as StdError;

/// Errors from the session API, the configuration and the keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value could not be turned into JSON.
    #[error("session value for key {key:?} cannot be serialized to JSON: {source}")]
    Serialize {
        /// The key being written.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },

    /// A stored value does not have the type asked for.
    #[error(
        "session value for key {key:?} does not deserialize into the requested type: {source}; \
         read it as serde_json::Value to see what is stored"
    )]
    Deserialize {
        /// The key being read.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },

    /// The session would grow beyond the configured limit; nothing was changed.
    #[error(
        "session data would be {size} bytes, over the limit of {limit} bytes; store large data \
         elsewhere and keep a reference in the session, or raise the limit with \
         SessionLayer::builder(..).max_data_bytes(..)"
    )]
    TooLarge {
        /// Serialized size the data would have had.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// Keys starting with `__` are cloakroom's own (flash messages, the persistence flag).
    #[error("session key {0:?} is reserved: keys starting with \"__\" belong to cloakroom")]
    ReservedKey(String),

    /// A secret key was too short to be safe.
    #[error("secret key is {len} bytes; it must be at least {min} bytes of random data")]
    WeakKey {
        /// Length given.
        len: usize,
        /// Minimum length.
        min: usize,
    },

    /// A key ring needs a key to sign with.
    #[error("a key ring needs at least one key")]
    NoKeys,

    /// The layer's configuration contradicts itself or the cookie rules.
    #[error("invalid session configuration: {0}")]
    Config(String),

    /// Text that should be a 64-digit hex session hash is not.
    #[error("{0:?} is not a session hash: expected 64 hex digits")]
    InvalidHash(String),

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),

    /// A sealed-cookie session grew beyond what browsers store; nothing was sent, so the
    /// browser keeps its previous cookie.
    #[error(
        "the sealed session cookie would be {size} bytes, over the browsers' limit of {limit} \
         bytes; keep less in the session, or use a server-side store"
    )]
    CookieTooLarge {
        /// Bytes of the `Set-Cookie` value (name, value and attributes).
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or failed to answer; retrying later may work.
    #[error("the {store} store is unavailable: {source}; check that it is running and reachable")]
    Unavailable {
        /// The store's name.
        store: &'static str,
        /// The driver's error.
        source: Box<dyn StdError + Send + Sync>,
    },

    /// `create` found a record under the same hash already.
    #[error("a session with this hash already exists")]
    Collision,

    /// A stored record could not be read back.
    #[error("the {store} store holds a record that cannot be decoded: {detail}")]
    Corrupt {
        /// The store's name.
        store: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// The store URL or options are wrong.
    #[error("{0}")]
    Config(String),

    /// The operation needs server-side state that this store does not keep.
    #[error("{operation} is not supported by the {store} store: {why}")]
    Unsupported {
        /// The store's name.
        store: &'static str,
        /// What was asked for.
        operation: &'static str,
        /// Why it cannot be done.
        why: &'static str,
    },
}

impl StoreError {
    /// Wraps a driver error as [`StoreError::Unavailable`].
    pub fn unavailable(store: &'static str, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable {
            store,
            source: Box::new(source),
        }
    }

    /// A [`StoreError::Corrupt`] with a description.
    pub fn corrupt(store: &'static str, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            store,
            detail: detail.into(),
        }
    }
}
