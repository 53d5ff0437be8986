//! Tickets (what the browser holds) and their hashes (what the store is keyed by).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Bytes of entropy in a ticket: 256 bits, twice OWASP's 128-bit floor.
pub(crate) const TICKET_BYTES: usize = 32;
/// Length of a ticket once base64url-encoded without padding.
pub(crate) const TICKET_CHARS: usize = 43;

/// The secret a browser presents to prove it owns a session.
///
/// It is random, carries no structure, and is never stored or logged: stores see only its
/// [`SessionHash`]. `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Ticket([u8; TICKET_BYTES]);

impl Ticket {
    /// A new ticket from the operating system's CSPRNG.
    pub(crate) fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; TICKET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// Parses the base64url text form; `None` for anything that is not exactly a ticket.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        if text.len() != TICKET_CHARS {
            return None;
        }
        let mut bytes = [0u8; TICKET_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(TICKET_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key under which the session is stored.
    pub(crate) fn hash(&self) -> SessionHash {
        SessionHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ticket(<redacted>)")
    }
}

/// The SHA-256 of a session's ticket: the key every store files the session under.
///
/// A leaked store therefore yields no cookie anyone can use. Its text form is 64 lowercase hex
/// digits; logs show only [`SessionHash::short`], the first 8.
///
/// ```
/// use cloakroom::SessionHash;
///
/// let text = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// let hash: SessionHash = text.parse().unwrap();
/// assert_eq!(hash.to_string(), text);
/// assert_eq!(hash.short(), "9f86d081");
/// assert!("not-a-hash".parse::<SessionHash>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHash([u8; 32]);

impl SessionHash {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes, e.g. read back from a `BYTEA` column.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The first 8 hex digits: enough to tell sessions apart in logs and admin listings, useless
    /// for finding the session.
    pub fn short(&self) -> String {
        self.prefix().to_string()
    }
}

impl SessionHash {
    /// [`SessionHash::short`] without allocating, for span fields that are built on every
    /// request whether or not anything records them.
    pub(crate) fn prefix(&self) -> impl fmt::Display + '_ {
        struct Prefix<'a>(&'a [u8; 32]);
        impl fmt::Display for Prefix<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0[..4])
            }
        }
        Prefix(&self.0)
    }
}

/// Writes up to 32 bytes as lowercase hex. Stores and spans format hashes on every request, so
/// this fills a stack buffer instead of allocating or formatting byte by byte.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, &byte) in text.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    let used = 2 * bytes.len().min(32);
    // Only ASCII hex digits were written.
    f.write_str(std::str::from_utf8(&text[..used]).unwrap_or_default())
}

/// Lowercase hex of up to 32 bytes (a SHA-256 digest or part of one), for names derived from
/// hashes: the file store's user directories, PostgreSQL's shortened index names.
#[cfg(any(feature = "file", feature = "postgres"))]
pub(crate) fn hex(bytes: &[u8]) -> String {
    struct Hex<'a>(&'a [u8]);
    impl fmt::Display for Hex<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_hex(f, self.0)
        }
    }
    Hex(bytes).to_string()
}

impl fmt::Display for SessionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHash({})", self.short())
    }
}

impl FromStr for SessionHash {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidHash(text.chars().take(80).collect());
        let text_bytes = text.as_bytes();
        if text_bytes.len() != 64 {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        for (i, pair) in text_bytes.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(invalid)?;
            let lo = hex_value(pair[1]).ok_or_else(invalid)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Self(out))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_random_and_round_trip() {
        let a = Ticket::generate().unwrap();
        let b = Ticket::generate().unwrap();
        assert_ne!(a, b);
        let text = a.encode();
        assert_eq!(text.len(), TICKET_CHARS);
        assert!(
            text.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(Ticket::decode(&text), Some(a));
    }

    #[test]
    fn decode_rejects_everything_else() {
        let good = Ticket::generate().unwrap().encode();
        for bad in [
            "",
            "abc",
            &good[..42],
            &format!("{good}A"),
            &good.replacen(&good[..1], "+", 1),
            "'; DROP TABLE sessions; --aaaaaaaaaaaaaaaaa",
            "../../../../etc/passwd/aaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(Ticket::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_ticket() {
        let ticket = Ticket::generate().unwrap();
        assert!(!format!("{ticket:?}").contains(&ticket.encode()));
    }

    #[test]
    fn prefix_matches_short() {
        let hash = Ticket::generate().unwrap().hash();
        assert_eq!(hash.prefix().to_string(), hash.short());
        assert_eq!(hash.short(), hash.to_string()[..8]);
    }

    #[test]
    fn hash_is_sha256_of_the_bytes() {
        let ticket = Ticket([0u8; 32]);
        assert_eq!(
            ticket.hash().to_string(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }
}
