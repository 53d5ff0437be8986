//! Secret keys and the key ring that signs session cookies.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Error;
use crate::ticket::{TICKET_CHARS, Ticket};

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;
const MAC_CHARS: usize = 43;

/// One secret key. Purpose-bound sub-keys are derived from it, so the same secret can sign
/// tickets and seal cookie sessions without the two uses ever sharing a key.
///
/// `Debug` never prints key material.
#[derive(Clone)]
pub struct Key {
    /// HMAC already keyed: cloning it skips the two key-block compressions on every request.
    sign: HmacSha256,
    seal: [u8; 32],
}

impl Key {
    /// A key from a secret of at least [`MIN_SECRET_BYTES`] bytes (e.g. the bytes of a long random
    /// string from your secret manager).
    ///
    /// ```
    /// use cloakroom::Key;
    ///
    /// assert!(Key::from_secret(b"0123456789abcdef0123456789abcdef").is_ok());
    /// let err = Key::from_secret(b"hunter2").unwrap_err();
    /// assert!(err.to_string().contains("at least 32 bytes"));
    /// ```
    pub fn from_secret(secret: &[u8]) -> Result<Self, Error> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::WeakKey {
                len: secret.len(),
                min: MIN_SECRET_BYTES,
            });
        }
        let sign = derive(secret, b"cloakroom/v1/sign-ticket");
        Ok(Self {
            sign: HmacSha256::new_from_slice(&sign).expect("HMAC takes keys of any length"),
            seal: derive(secret, b"cloakroom/v1/seal-session"),
        })
    }

    /// A random key from the operating system's CSPRNG. Sessions signed with it do not survive a
    /// restart of the process.
    pub fn generate() -> Result<Self, Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Random(e.to_string()))?;
        Self::from_secret(&secret)
    }

    /// The sub-key for sealed-cookie sessions.
    #[cfg_attr(not(feature = "cookie"), allow(dead_code))]
    pub(crate) fn seal_key(&self) -> &[u8; 32] {
        &self.seal
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The keys that sign and verify session cookies.
///
/// The first key signs; every key verifies. To rotate, put the new key first and keep the old one
/// behind it until every session signed with it has expired: nobody is logged out, and each cookie
/// is re-signed with the new key on its next response.
///
/// ```
/// use cloakroom::{Key, KeyRing};
///
/// let new = Key::from_secret(&[7u8; 32]).unwrap();
/// let old = Key::from_secret(&[3u8; 32]).unwrap();
/// let ring = KeyRing::new(new).with_old_key(old);
/// assert_eq!(ring.len(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Arc<[Key]>,
}

/// A verified cookie value: the ticket, and whether it was signed by an old key.
pub(crate) struct Verified {
    pub(crate) ticket: Ticket,
    pub(crate) stale_key: bool,
}

impl KeyRing {
    /// A ring with one key, which signs and verifies.
    pub fn new(primary: Key) -> Self {
        Self {
            keys: Arc::from(vec![primary]),
        }
    }

    /// Adds a key that still verifies but no longer signs.
    #[must_use]
    pub fn with_old_key(self, old: Key) -> Self {
        let mut keys = self.keys.to_vec();
        keys.push(old);
        Self {
            keys: Arc::from(keys),
        }
    }

    /// A ring from keys, newest first. Fails when there is none.
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Result<Self, Error> {
        let keys: Vec<Key> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(Error::NoKeys);
        }
        Ok(Self {
            keys: Arc::from(keys),
        })
    }

    /// The number of keys in the ring.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn primary(&self) -> &Key {
        &self.keys[0]
    }

    #[cfg_attr(not(feature = "cookie"), allow(dead_code))]
    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The cookie value for `ticket`: `<ticket>.<mac>`, both base64url. The MAC also covers the
    /// cookie name, so a value cannot be moved from one cookie to another.
    pub(crate) fn sign(&self, cookie_name: &str, ticket: &Ticket) -> String {
        let tag = mac(&self.primary().sign, cookie_name, ticket).finalize();
        let mut value = ticket.encode();
        value.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.into_bytes(), &mut value);
        value
    }

    /// Checks a cookie value against every key; `None` for anything not signed by one of them.
    /// Length checks come first so hostile values cost almost nothing.
    pub(crate) fn verify(&self, cookie_name: &str, value: &str) -> Option<Verified> {
        if value.len() != TICKET_CHARS + 1 + MAC_CHARS {
            return None;
        }
        let (ticket_text, tag_text) = value.split_once('.')?;
        let ticket = Ticket::decode(ticket_text)?;
        let mut tag = [0u8; 32];
        if URL_SAFE_NO_PAD.decode_slice(tag_text, &mut tag).ok()? != 32 {
            return None;
        }
        self.keys.iter().enumerate().find_map(|(i, key)| {
            mac(&key.sign, cookie_name, &ticket)
                .verify_slice(&tag)
                .ok()
                .map(|()| Verified {
                    ticket: ticket.clone(),
                    stale_key: i > 0,
                })
        })
    }
}

fn mac(keyed: &HmacSha256, cookie_name: &str, ticket: &Ticket) -> HmacSha256 {
    let mut mac = keyed.clone();
    mac.update(cookie_name.as_bytes());
    mac.update(&[0]);
    mac.update(ticket.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_secret(&[byte; 32]).unwrap()
    }

    #[test]
    fn signs_and_verifies() {
        let ring = KeyRing::new(key(1));
        let ticket = Ticket::generate().unwrap();
        let value = ring.sign("id", &ticket);
        let verified = ring.verify("id", &value).unwrap();
        assert_eq!(verified.ticket, ticket);
        assert!(!verified.stale_key);
    }

    #[test]
    fn rejects_tampering_other_names_and_other_keys() {
        let ring = KeyRing::new(key(1));
        let ticket = Ticket::generate().unwrap();
        let value = ring.sign("id", &ticket);
        assert!(ring.verify("other", &value).is_none());
        assert!(KeyRing::new(key(2)).verify("id", &value).is_none());
        let mut flipped = value.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        assert!(
            ring.verify("id", std::str::from_utf8(&flipped).unwrap())
                .is_none()
        );
        assert!(ring.verify("id", &value[..value.len() - 1]).is_none());
        assert!(ring.verify("id", "").is_none());
        assert!(ring.verify("id", &"é".repeat(44)).is_none());
    }

    #[test]
    fn old_keys_verify_but_are_flagged() {
        let ticket = Ticket::generate().unwrap();
        let old_value = KeyRing::new(key(1)).sign("id", &ticket);
        let ring = KeyRing::new(key(2)).with_old_key(key(1));
        let verified = ring.verify("id", &old_value).unwrap();
        assert_eq!(verified.ticket, ticket);
        assert!(verified.stale_key);
        assert_ne!(ring.sign("id", &ticket), old_value);
    }

    #[test]
    fn debug_hides_key_material() {
        assert_eq!(format!("{:?}", key(9)), "Key(<redacted>)");
    }
}
