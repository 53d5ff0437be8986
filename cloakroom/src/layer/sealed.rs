//! The sealed-cookie mode: the whole session, encrypted, in the cookie; nothing on the server.
//!
//! What the mode can and cannot do is documented on
//! [`SessionLayer::sealed`](crate::SessionLayer::sealed).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::cookie::{BROWSER_COOKIE_LIMIT, Incoming};
use crate::error::Error;
use crate::key::KeyRing;
use crate::record::{Data, Record};
use crate::session::{Origin, Session, State};
use crate::time::Timestamp;

/// Format version, first byte of every sealed cookie, so the format can change later.
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// A sealed-cookie session from the request's cookie, if one opens and is live.
pub(super) fn open(settings: &Settings, cookies: Incoming<'_>, now: Timestamp) -> Option<Session> {
    cookies.values().find_map(|value| {
        let (record, stale_key) = open_value(&settings.keys, &settings.cookie.name, value)?;
        settings.is_live(&record, now).then(|| {
            let stored = Origin {
                id: None,
                created_at: record.created_at,
                expires_at: record.expires_at,
                stale_key,
            };
            Session::loaded(stored, record, settings.max_data_bytes)
        })
    })
}

/// Seals the whole session into the cookie when anything changed; `Ok(None)` when the browser's
/// cookie is still right.
pub(super) fn seal(
    settings: &Settings,
    state: &mut State,
    now: Timestamp,
    had_cookie: bool,
) -> Result<Option<HeaderValue>, Error> {
    let (created_at, expires_at) = match &state.stored {
        None if !state.has_content() => return Ok(had_cookie.then(|| settings.cookie.removal())),
        None => (now, settings.first_deadline(now)),
        Some(stored) => {
            let extended = settings.extended_deadline(stored, now);
            if extended.is_none() && !state.is_modified() && !stored.stale_key {
                return Ok(None);
            }
            (stored.created_at, extended.unwrap_or(stored.expires_at))
        }
    };
    let persistent = state.persistent();
    let record = state.take_record(created_at, now, expires_at);
    let value = seal_value(&settings.keys, &settings.cookie.name, &record)?;
    let header = settings.cookie_for(&value, persistent, expires_at, now);
    if header.len() > BROWSER_COOKIE_LIMIT {
        return Err(Error::CookieTooLarge {
            size: header.len(),
            limit: BROWSER_COOKIE_LIMIT,
        });
    }
    Ok(Some(header))
}

/// What goes inside the seal: a record with short field names, because every byte counts
/// against the browsers' cookie limit.
#[derive(Serialize, Deserialize)]
struct SealedRecord {
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
fn seal_value(keys: &KeyRing, cookie_name: &str, record: &Record) -> Result<String, Error> {
    let plaintext = serde_json::to_vec(&SealedRecord {
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
fn open_value(keys: &KeyRing, cookie_name: &str, value: &str) -> Option<(Record, bool)> {
    if value.len() > BROWSER_COOKIE_LIMIT {
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
        let sealed: SealedRecord = serde_json::from_slice(&plaintext).ok()?;
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
        let value = seal_value(&keys, "id", &record()).unwrap();
        let (opened, stale) = open_value(&keys, "id", &value).unwrap();
        assert_eq!(opened, record());
        assert!(!stale);
        // A fresh nonce every time: the same session never seals to the same cookie.
        assert_ne!(value, seal_value(&keys, "id", &record()).unwrap());
    }

    #[test]
    fn refuses_what_it_did_not_seal() {
        let keys = ring(1);
        let value = seal_value(&keys, "id", &record()).unwrap();
        assert!(open_value(&ring(2), "id", &value).is_none(), "wrong key");
        assert!(
            open_value(&keys, "other", &value).is_none(),
            "moved to another cookie"
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            open_value(&keys, "id", &URL_SAFE_NO_PAD.encode(&bytes)).is_none(),
            "tampered"
        );
        assert!(
            open_value(&keys, "id", &value[..value.len() - 10]).is_none(),
            "truncated"
        );
        assert!(open_value(&keys, "id", "!!not base64!!").is_none());
        assert!(open_value(&keys, "id", "").is_none());
        assert!(open_value(&keys, "id", &"A".repeat(5000)).is_none());
        bytes[0] = 2;
        assert!(
            open_value(&keys, "id", &URL_SAFE_NO_PAD.encode(&bytes)).is_none(),
            "version"
        );
    }

    #[test]
    fn old_keys_open_but_are_flagged() {
        let value = seal_value(&ring(1), "id", &record()).unwrap();
        let rotated = ring(2).with_old_key(Key::from_secret(&[1; 32]).unwrap());
        let (opened, stale) = open_value(&rotated, "id", &value).unwrap();
        assert_eq!(opened, record());
        assert!(stale);
    }
}
