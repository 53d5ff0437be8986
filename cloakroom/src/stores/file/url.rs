//! The `file:` URL form: which directory a URL names.

use std::path::PathBuf;

use crate::error::StoreError;
use crate::stores::StoreUrl;

/// The directory named by a `file:` URL.
pub(super) fn dir_from_url(url: &StoreUrl) -> Result<PathBuf, StoreError> {
    let text = url.driver_url.as_str();
    let own = crate::stores::OWN_OPTIONS
        .iter()
        .find(|key| url.option(key).is_some())
        .copied();
    let (base, query) = text.split_once('?').unwrap_or((text, ""));
    if let Some(key) = own.or((!query.is_empty()).then_some(query)) {
        return Err(StoreError::Config(format!(
            "the file store takes no options, but {text:?} has {key:?}; remove the query string"
        )));
    }
    let base = base.split_once('#').map_or(base, |(before, _)| before);
    let rest = base.split_once(':').map_or("", |(_, rest)| rest);
    let path = match rest.strip_prefix("//") {
        // An empty or `localhost` authority means an absolute path; anything else is read as
        // the first segment of a relative path (`file://sessions`), which is what people write.
        Some(after) => match after.find('/') {
            Some(slash) if matches!(&after[..slash], "" | "localhost") => &after[slash..],
            _ => after,
        },
        None => rest,
    };
    let path = percent_decode(path).ok_or_else(|| {
        StoreError::Config(format!(
            "{text:?} has a malformed percent escape or is not UTF-8 once decoded"
        ))
    })?;
    // file:///C:/dir names C:/dir on Windows, not a directory called "C:" at the root.
    let path = match path.as_bytes() {
        [b'/', drive, b':', ..] if cfg!(windows) && drive.is_ascii_alphabetic() => &path[1..],
        _ => path.as_str(),
    };
    if path.is_empty() {
        return Err(StoreError::Config(format!(
            "{text:?} names no directory; use file:///absolute/dir or file:relative/dir"
        )));
    }
    Ok(PathBuf::from(path))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
