//! What the SQL stores (SQLite, PostgreSQL, MySQL / MariaDB) share, whatever their driver: the
//! default table and the check that makes a table name safe to splice into SQL, how rows are read
//! back (session hashes, JSON data, counts), and how many saves one commit serves.
//!
//! The sqlx-based stores (PostgreSQL, MySQL) share more: connecting, error mapping and row
//! decoding (`driver`), the save batcher (`batch`), and the Store calls whose statements take
//! the same parameters in both dialects (`common`). What differs between the dialects (schemas,
//! how a patch becomes SQL, MariaDB's JSON workarounds) stays in each store's own folder.

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod batch;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod common;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod driver;

use crate::error::StoreError;
use crate::ticket::SessionHash;

/// The table sessions live in unless `?table=` or `with_table` says otherwise.
pub const DEFAULT_TABLE: &str = "cloakroom_sessions";

/// The most saves one commit serves: the writes SQLite's writer thread runs in one transaction,
/// and the saves the PostgreSQL and MySQL batcher sends as one statement. Large enough that a
/// batch holds every request in flight on a busy instance; small enough that one batch's
/// statement stays well inside the engines' parameter limits.
pub(crate) const MAX_BATCH: usize = 128;

/// Checks a table name from configuration before it is spliced into SQL (identifiers cannot be
/// bound as parameters): 1 to 63 ASCII letters, digits or underscores, not starting with a digit,
/// which every engine accepts quoted or not and none truncates.
pub(crate) fn checked_table_name(name: &str) -> Result<&str, StoreError> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(StoreError::Config(format!(
            "table name {name:?} must be 1-63 letters, digits or underscores, not starting with a digit"
        )))
    }
}

/// Parses a session hash read back from an `id` column; anything else is a corrupt row, reported
/// as [`StoreError::Corrupt`] (with at most 80 characters of what was found).
pub(crate) fn parse_hash(store: &'static str, text: &str) -> Result<SessionHash, StoreError> {
    text.parse().map_err(|_| {
        StoreError::corrupt(
            store,
            format!(
                "id {:?} is not a 64-digit hex session hash",
                text.chars().take(80).collect::<String>()
            ),
        )
    })
}

/// Parses stored JSON data, reporting a [`StoreError::Corrupt`] instead of failing the request
/// with a panic.
#[cfg(feature = "sqlite")]
pub(crate) fn parse_data(
    store: &'static str,
    text: &str,
) -> Result<crate::record::Data, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::corrupt(store, format!("data is not a JSON object: {e}")))
}

/// A `COUNT(*)` as cloakroom reports it (a negative count, which no engine returns, as zero).
pub(crate) fn row_count(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

/// A limit (`purge_expired`'s, the top users') as the signed integer SQL `LIMIT` takes.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers() {
        assert!(checked_table_name("cloakroom_sessions").is_ok());
        for bad in ["", "1abc", "a-b", "s; DROP TABLE x", &"a".repeat(64)] {
            assert!(checked_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn corrupt_ids_are_reported_not_parsed() {
        assert!(parse_hash("t", &"ab".repeat(32)).is_ok());
        let err = parse_hash("t", &"x".repeat(200)).unwrap_err();
        assert!(err.to_string().contains("64-digit hex"), "{err}");
    }
}
