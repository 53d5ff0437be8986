//! JSON as MariaDB takes it, the same for MySQL.
//!
//! MariaDB needs three precautions, each covered by the tests:
//! - `JSON` is an alias of `LONGTEXT` there, so values are passed through `JSON_EXTRACT(?, '$')`,
//!   which makes the server treat them as JSON; a plain string parameter would be stored as a JSON
//!   *string* holding the text (see `patch.rs`).
//! - `JSON_REMOVE` with several paths from statement parameters misses non-ASCII names after an
//!   odd number of removals (seen on 10.11; its source suggests it rescans its intermediate result
//!   in a buffer whose character set was never set). All JSON that cloakroom writes is therefore
//!   pure ASCII ([`ascii_json`]), with other characters as `\uXXXX` escapes, which every charset
//!   reads alike. MySQL parses it into its binary format and is unaffected either way.
//! - A quoted path name starting with `-` is rejected as a syntax error, so that `-` is escaped
//!   ([`member_path`]).

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

use crate::error::StoreError;

/// The JSON path of the top-level member `key`: `$."key"`, with the key escaped as a JSON string.
/// Quoting makes keys like `a.b`, `a[0]` or `*` plain names rather than path syntax.
pub(super) fn member_path(key: &str) -> Result<String, StoreError> {
    let quoted = ascii_json(key)?;
    Ok(match quoted.strip_prefix("\"-") {
        // MariaDB takes a quoted name starting with '-' for its negative array index syntax and
        // fails; the escaped '-' parses, and names are compared unescaped.
        Some(rest) => format!("$.\"\\u002d{rest}"),
        None => format!("$.{quoted}"),
    })
}

/// `value` as JSON text in pure ASCII (see the module docs for why).
pub(super) fn ascii_json<T: Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    let mut out = Vec::new();
    value
        .serialize(&mut Serializer::with_formatter(&mut out, AsciiFormatter))
        .map_err(|e| StoreError::Config(format!("session data cannot be written as JSON: {e}")))?;
    // Only ASCII was written.
    String::from_utf8(out)
        .map_err(|e| StoreError::Config(format!("session data cannot be written as JSON: {e}")))
}

/// serde_json's compact output, except that strings escape every non-ASCII character.
struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for run in fragment.split_inclusive(|c: char| !c.is_ascii()) {
            let (ascii, last) = match run.chars().next_back() {
                Some(c) if !c.is_ascii() => (&run[..run.len() - c.len_utf8()], Some(c)),
                _ => (run, None),
            };
            writer.write_all(ascii.as_bytes())?;
            if let Some(c) = last {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}
