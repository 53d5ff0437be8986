//! # cloakroom
//!
//! Server-side sessions for tower and axum. A cloakroom keeps your coat and hands you a ticket:
//! the server keeps each visitor's data, the browser holds only a signed, opaque ticket.
//!
//! - [`Session`]: the handle handlers use (`get`, `insert`, `flash`, `cycle_id`, `destroy`, …).
//! - [`SessionLayer`]: the tower layer that loads sessions lazily and persists what changed.
//! - [`Store`]: the contract every store fulfils; [`MemoryStore`] is the in-process one.
//!
//! ```
//! use axum::{Router, routing::get};
//! use cloakroom::{Key, MemoryStore, Session, SessionLayer};
//!
//! async fn visits(session: Session) -> Result<String, cloakroom::Error> {
//!     let n: u64 = session.get_or("visits", 0)? + 1;
//!     session.insert("visits", n)?;
//!     Ok(format!("You have visited {n} times"))
//! }
//!
//! let layer = SessionLayer::builder(MemoryStore::default())
//!     .key(Key::from_secret(b"load me from your secret manager, 32+ bytes").unwrap())
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new().route("/", get(visits)).layer(layer);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod cookie;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod key;
mod layer;
mod observe;
#[cfg(feature = "purge")]
mod purge;
mod record;
mod session;
mod store;
pub mod stores;
mod ticket;
mod time;

pub use config::{
    DEFAULT_ABSOLUTE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_DATA_BYTES, SessionLayerBuilder,
};
pub use cookie::{CookieConfig, SameSite};
pub use error::{Error, StoreError};
#[cfg(feature = "axum")]
pub use extract::SessionRejection;
pub use key::{Key, KeyRing, MIN_SECRET_BYTES};
pub use layer::{
    DiscardChanges, LazySession, LoadError, ResponseFuture, SessionLayer, SessionService,
};
#[cfg(feature = "purge")]
pub use purge::{
    DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_PURGE_BATCH, DEFAULT_PURGE_INTERVAL,
    PurgeHandle, Purger,
};
pub use record::{Data, Patch, Record};
pub use session::{Flash, Session};
pub use store::{Percentiles, Store, StoreStats};
pub use stores::Backend;
#[cfg(feature = "file")]
pub use stores::file::FileStore;
#[cfg(feature = "memory")]
pub use stores::memory::MemoryStore;
#[cfg(feature = "mysql")]
pub use stores::mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use stores::postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use stores::redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use stores::sqlite::SqliteStore;
pub use ticket::SessionHash;
pub use time::{Clock, ManualClock, SystemClock, Timestamp};

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
