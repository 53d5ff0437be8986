//! Small helpers for what the commands print.

use std::io::{self, Write};
use std::time::Duration;

use cloakroom::{Record, SessionHash, Timestamp};
use serde_json::{Value, json};

/// Writes JSON, pretty, followed by a newline.
pub fn write_json(out: &mut impl Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// A record's metadata (not its data) as JSON, timestamps in Unix milliseconds.
pub fn record_meta(hash: &SessionHash, record: &Record) -> Value {
    json!({
        "hash": hash.to_string(),
        "user_id": record.user_id,
        "created_at": record.created_at.as_unix_millis(),
        "updated_at": record.updated_at.as_unix_millis(),
        "expires_at": record.expires_at.as_unix_millis(),
        "data_bytes": data_bytes(record),
    })
}

/// Bytes of the record's data serialized as JSON, as the stores count it.
pub fn data_bytes(record: &Record) -> usize {
    serde_json::to_vec(&record.data).map_or(0, |bytes| bytes.len())
}

/// `text` with control characters escaped, so that a hostile user id cannot drive the terminal.
pub fn clean(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            escaped
                .into_iter()
                .flatten()
                .chain((!c.is_control()).then_some(c))
        })
        .collect()
}

/// `2026-11-22T10:04:05Z`: RFC 3339 to the second, for tables.
pub fn time(at: Timestamp) -> String {
    let mut text = at.to_string();
    // Drop the milliseconds: "….123Z" → "…Z".
    if let Some(dot) = text.rfind('.') {
        text.replace_range(dot.., "Z");
    }
    text
}

/// `in 29m`, `3h ago`: how far `at` is from `now`, roughly.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    if at >= now {
        format!("in {}", span(now.until(at)))
    } else {
        format!("{} ago", span(at.until(now)))
    }
}

fn span(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        let t = Timestamp::from_unix_millis(1_795_000_000_123);
        assert_eq!(time(t), "2026-11-18T11:06:40Z");
        let later = t.saturating_add(Duration::from_secs(29 * 60 + 5));
        assert_eq!(relative(later, t), "in 29m");
        assert_eq!(relative(t, later), "29m ago");
        assert_eq!(span(Duration::from_secs(90_000)), "1d01h");
        assert_eq!(span(Duration::from_secs(3_700)), "1h01m");
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(clean("al\u{1b}[2Jice\n"), "al\\u{1b}[2Jice\\n");
        assert_eq!(clean("zoë"), "zoë");
    }
}
