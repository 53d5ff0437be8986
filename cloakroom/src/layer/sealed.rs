//! The sealed-cookie mode: the whole session, encrypted, travels in the cookie.

use http::HeaderValue;

use crate::config::Settings;
use crate::cookie::Incoming;
use crate::error::Error;
use crate::session::{Session, State, Stored};
use crate::time::Timestamp;

/// Browsers ignore cookies whose name, value and attributes exceed this many bytes.
#[cfg_attr(not(feature = "cookie"), allow(dead_code))]
const MAX_SET_COOKIE_BYTES: usize = 4096;

/// A sealed-cookie session from the request's cookie, if one opens and is live.
#[cfg(feature = "cookie")]
pub(super) fn open(settings: &Settings, cookies: Incoming<'_>, now: Timestamp) -> Option<Session> {
    cookies.values().find_map(|value| {
        let (record, stale_key) =
            crate::stores::cookie::open(&settings.keys, &settings.cookie.name, value)?;
        settings.is_live(&record, now).then(|| {
            let stored = Stored {
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
#[cfg(feature = "cookie")]
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
    let value = crate::stores::cookie::seal(&settings.keys, &settings.cookie.name, &record)?;
    let header = settings.cookie_for(&value, persistent, expires_at, now);
    if header.len() > MAX_SET_COOKIE_BYTES {
        return Err(Error::CookieTooLarge {
            size: header.len(),
            limit: MAX_SET_COOKIE_BYTES,
        });
    }
    Ok(Some(header))
}

#[cfg(not(feature = "cookie"))]
pub(super) fn open(_: &Settings, _: Incoming<'_>, _: Timestamp) -> Option<Session> {
    None
}

#[cfg(not(feature = "cookie"))]
pub(super) fn seal(
    _: &Settings,
    _: &mut State,
    _: Timestamp,
    _: bool,
) -> Result<Option<HeaderValue>, Error> {
    Ok(None)
}
