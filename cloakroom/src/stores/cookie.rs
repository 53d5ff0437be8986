//! Sealed-cookie sessions: the whole session, encrypted, in the cookie; nothing on the server.
//!
//! For apps that want no server state at all (Flask's default, Masonite's cookie driver). Use it
//! like any store; the layer notices and seals instead of storing:
//!
//! ```
//! use cloakroom::{CookieStore, Key, SessionLayer};
//!
//! let layer = SessionLayer::builder(CookieStore::new())
//!     .key(Key::from_secret(b"a secret of at least thirty-two bytes!").unwrap())
//!     .build()
//!     .unwrap();
//! ```
//!
//! # What it does
//!
//! The session (data, flash messages, user, creation time, expiry) is serialized and sealed with
//! XChaCha20-Poly1305 under a sub-key of the layer's key ring: the first key seals, every key
//! opens, and a cookie sealed with an old key is re-sealed with the new one on the next response.
//! Each seal uses a fresh random 192-bit nonce, and the cookie name is bound in as associated
//! data. The idle and absolute deadlines are inside the sealed payload and checked when it is
//! opened, so a cookie replayed after expiry is refused even if the browser kept it.
//!
//! # What it cannot do
//!
//! - **Revocation.** The server keeps nothing, so it cannot end a session: [`Session::destroy`]
//!   and [`Session::cycle_id`] only replace the cookie in *this* browser. A copy of an earlier
//!   cookie stays valid until its own idle or absolute deadline. Keep the idle timeout short if
//!   that matters, or use a server-side store.
//! - **Per-user listing and revocation, counting, purging.** These `Store` methods return
//!   [`StoreError::Unsupported`].
//! - **Concurrent writes.** Every response carries the whole session, so when two requests of
//!   one visitor change it at the same time, the last response wins (server-side stores merge
//!   them).
//! - **Size.** Browsers keep cookies up to 4096 bytes (name, value and attributes). A session
//!   that would seal larger fails with [`Error::CookieTooLarge`]:
//!   the handler's response is replaced by a 500, no cookie is sent, and the browser keeps its
//!   previous one. Sealing adds 41 bytes, and base64 a third, so about 2.9 KB of JSON fits.
//!
//! [`Session::destroy`]: crate::Session::destroy
//! [`Session::cycle_id`]: crate::Session::cycle_id

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::{Error, StoreError};
use crate::key::KeyRing;
use crate::record::{Data, Patch, Record};
use crate::store::Store;
use crate::stores::StoreUrl;
use crate::ticket::SessionHash;
use crate::time::Timestamp;

/// Format version, first byte of every sealed cookie, so the format can change later.
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Cookies longer than this cannot have come from us; they are not even decoded.
const MAX_VALUE_CHARS: usize = 4096;

/// The sealed-cookie "store": sessions live encrypted in the cookie. See the [module
/// documentation](self) for what that can and cannot do.
#[derive(Clone, Copy, Debug, Default)]
pub struct CookieStore;

impl CookieStore {
    /// The sealed-cookie store.
    pub fn new() -> Self {
        Self
    }
}

pub(crate) async fn open_url(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    if !url
        .driver_url
        .trim_start_matches("cookie:")
        .trim_start_matches("//")
        .is_empty()
    {
        return Err(StoreError::Config(format!(
            "the cookie store takes no address or options: use \"cookie://\", not {:?}",
            url.redacted()
        )));
    }
    Ok(Arc::new(CookieStore))
}

const WHY: &str = "a sealed-cookie session lives only in the browser, so the server can neither \
                   find nor end it; a copied cookie stays valid until it expires";

fn unsupported(operation: &'static str) -> StoreError {
    StoreError::Unsupported {
        store: "cookie",
        operation,
        why: WHY,
    }
}

#[async_trait]
impl Store for CookieStore {
    fn name(&self) -> &'static str {
        "cookie"
    }

    fn keeps_state_in_cookie(&self) -> bool {
        true
    }

    async fn create(&self, _: &SessionHash, _: &Record) -> Result<(), StoreError> {
        Err(unsupported("create"))
    }

    async fn load(&self, _: &SessionHash, _: Timestamp) -> Result<Option<Record>, StoreError> {
        Err(unsupported("load"))
    }

    async fn save(&self, _: &SessionHash, _: &Patch) -> Result<bool, StoreError> {
        Err(unsupported("save"))
    }

    async fn rotate(
        &self,
        _: &SessionHash,
        _: &SessionHash,
        _: &Patch,
    ) -> Result<bool, StoreError> {
        Err(unsupported("rotate"))
    }

    async fn delete(&self, _: &SessionHash) -> Result<bool, StoreError> {
        Err(unsupported("delete"))
    }

    async fn list_user(
        &self,
        _: &str,
        _: Timestamp,
    ) -> Result<Vec<(SessionHash, Record)>, StoreError> {
        Err(unsupported("listing a user's sessions"))
    }

    async fn revoke_user(&self, _: &str, _: Option<&SessionHash>) -> Result<u64, StoreError> {
        Err(unsupported("revoking a user's sessions"))
    }

    async fn count(&self, _: Timestamp) -> Result<u64, StoreError> {
        Err(unsupported("counting sessions"))
    }

    async fn purge_expired(&self, _: Timestamp, _: usize) -> Result<u64, StoreError> {
        Err(unsupported("purging sessions"))
    }
}

/// What goes inside the seal: a record with short field names, because every byte counts
/// against the 4 KB cookie limit.
#[derive(Serialize, Deserialize)]
struct Sealed {
    #[serde(rename = "d")]
    data: Data,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(rename = "c")]
    created_at: Timestamp,
    #[serde(rename = "e")]
    expires_at: Timestamp,
}

/// The cookie value holding `record`, sealed with the ring's first key.
pub(crate) fn seal(keys: &KeyRing, cookie_name: &str, record: &Record) -> Result<String, Error> {
    let plaintext = serde_json::to_vec(&Sealed {
        data: record.data.clone(),
        user_id: record.user_id.clone(),
        created_at: record.created_at,
        expires_at: record.expires_at,
    })
    .map_err(|source| Error::Serialize {
        key: "(sealed session)".into(),
        source,
    })?;
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| Error::Random(e.to_string()))?;
    let cipher = XChaCha20Poly1305::new(keys.primary().seal_key().into());
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: cookie_name.as_bytes(),
            },
        )
        .map_err(|_| Error::Config("sealing failed: payload too large for the cipher".into()))?;
    let mut bytes = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
    bytes.push(VERSION);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Opens a cookie value with any key of the ring: the record, and whether an old key sealed it.
/// `None` for anything we did not seal, whatever it is.
pub(crate) fn open(keys: &KeyRing, cookie_name: &str, value: &str) -> Option<(Record, bool)> {
    if value.len() > MAX_VALUE_CHARS {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    let (&version, rest) = bytes.split_first()?;
    if version != VERSION || rest.len() < NONCE_BYTES + TAG_BYTES {
        return None;
    }
    let (nonce, sealed) = rest.split_at(NONCE_BYTES);
    keys.keys().iter().enumerate().find_map(|(i, key)| {
        let payload = Payload {
            msg: sealed,
            aad: cookie_name.as_bytes(),
        };
        let plaintext = XChaCha20Poly1305::new(key.seal_key().into())
            .decrypt(XNonce::from_slice(nonce), payload)
            .ok()?;
        let sealed: Sealed = serde_json::from_slice(&plaintext).ok()?;
        let record = Record {
            data: sealed.data,
            user_id: sealed.user_id,
            created_at: sealed.created_at,
            updated_at: sealed.created_at,
            expires_at: sealed.expires_at,
        };
        Some((record, i > 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;
    use serde_json::json;

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(Key::from_secret(&[byte; 32]).unwrap())
    }

    fn record() -> Record {
        Record {
            data: json!({"cart": [1, 2], "ключ": "значение"})
                .as_object()
                .unwrap()
                .clone(),
            user_id: Some("7".into()),
            created_at: Timestamp::from_unix_millis(1_000),
            updated_at: Timestamp::from_unix_millis(1_000),
            expires_at: Timestamp::from_unix_millis(9_000),
        }
    }

    #[test]
    fn seals_and_opens() {
        let keys = ring(1);
        let value = seal(&keys, "id", &record()).unwrap();
        let (opened, stale) = open(&keys, "id", &value).unwrap();
        assert_eq!(opened, record());
        assert!(!stale);
        // A fresh nonce every time: the same session never seals to the same cookie.
        assert_ne!(value, seal(&keys, "id", &record()).unwrap());
    }

    #[test]
    fn refuses_what_it_did_not_seal() {
        let keys = ring(1);
        let value = seal(&keys, "id", &record()).unwrap();
        assert!(open(&ring(2), "id", &value).is_none(), "wrong key");
        assert!(
            open(&keys, "other", &value).is_none(),
            "moved to another cookie"
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            open(&keys, "id", &URL_SAFE_NO_PAD.encode(&bytes)).is_none(),
            "tampered"
        );
        assert!(
            open(&keys, "id", &value[..value.len() - 10]).is_none(),
            "truncated"
        );
        assert!(open(&keys, "id", "!!not base64!!").is_none());
        assert!(open(&keys, "id", "").is_none());
        assert!(open(&keys, "id", &"A".repeat(5000)).is_none());
        bytes[0] = 2;
        assert!(
            open(&keys, "id", &URL_SAFE_NO_PAD.encode(&bytes)).is_none(),
            "version"
        );
    }

    #[test]
    fn old_keys_open_but_are_flagged() {
        let value = seal(&ring(1), "id", &record()).unwrap();
        let rotated = ring(2).with_old_key(Key::from_secret(&[1; 32]).unwrap());
        let (opened, stale) = open(&rotated, "id", &value).unwrap();
        assert_eq!(opened, record());
        assert!(stale);
    }

    #[test]
    fn server_side_operations_say_they_are_unsupported() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = runtime
            .block_on(CookieStore.list_user("7", Timestamp::default()))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not supported by the cookie store"), "{text}");
        assert!(text.contains("copied cookie stays valid"), "{text}");
    }
}
