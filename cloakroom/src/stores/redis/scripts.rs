//! The Lua scripts, one per operation, each run atomically by Redis, and the one Rust function
//! per script that builds its KEYS and ARGV and reads its reply.
//!
//! Every script is a file in `scripts/` whose header lists its KEYS, its ARGV and its reply;
//! the function of the same name below is the only place that builds them, in that order. Change
//! the two together. Scripts that use the shared helpers (`prelude.lua`) and the patch step
//! (`apply.lua`) have those files put in front of them at compile time, so the text Redis runs
//! is exactly the concatenation of the files.

use std::sync::LazyLock;

use redis::{FromRedisValue, Script, ScriptInvocation, Value};

use super::NAME;
use super::connection::store_error;
use super::keys::{CREATED_FIELD, EXPIRES_FIELD, Keys, UPDATED_FIELD, data_field};
use crate::error::StoreError;
use crate::record::{Patch, Record};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

/// A script and its text.
struct Lua {
    script: Script,
    #[cfg(test)]
    text: &'static str,
}

/// A script built from the named files of `scripts/`, in order.
macro_rules! script {
    ($($file:literal),+) => {
        LazyLock::new(|| {
            let text = concat!($(include_str!(concat!("scripts/", $file, ".lua"))),+);
            Lua {
                script: Script::new(text),
                #[cfg(test)]
                text,
            }
        })
    };
}

static CREATE: LazyLock<Lua> = script!("prelude", "create");
static CREATE_PLAIN: LazyLock<Lua> = script!("create_plain");
static SAVE: LazyLock<Lua> = script!("prelude", "apply", "save");
static SAVE_PLAIN: LazyLock<Lua> = script!("save_plain");
static ROTATE: LazyLock<Lua> = script!("prelude", "apply", "rotate");
static DELETE: LazyLock<Lua> = script!("prelude", "delete");
static LIST: LazyLock<Lua> = script!("prelude", "list");
static REVOKE: LazyLock<Lua> = script!("prelude", "revoke");
static COUNT: LazyLock<Lua> = script!("prelude", "count");
static PURGE: LazyLock<Lua> = script!("prelude", "purge");

/// The most data fields `save_plain.lua` may set, or a new session may hold to take
/// `create_plain.lua`, so that their `unpack` stays within Lua's stack.
const PLAIN_MAX_FIELDS: usize = 1000;

/// One script call: its keys and arguments, and what its reply means.
pub(super) struct Call<R> {
    pub(super) invocation: ScriptInvocation<'static>,
    pub(super) reply: fn(Value) -> Result<R, StoreError>,
    /// The script's text and how many KEYS and ARGV were given, for the tests that hold each
    /// call site to its script's header.
    #[cfg(test)]
    given: (&'static str, usize, usize),
}

impl<R> Call<R> {
    fn new(script: &'static Lua, reply: fn(Value) -> Result<R, StoreError>) -> Self {
        Self {
            invocation: script.script.prepare_invoke(),
            reply,
            #[cfg(test)]
            given: (script.text, 0, 0),
        }
    }

    fn key(mut self, key: impl redis::ToRedisArgs) -> Self {
        self.invocation.key(key);
        #[cfg(test)]
        {
            self.given.1 += 1;
        }
        self
    }

    fn arg(mut self, arg: impl redis::ToRedisArgs) -> Self {
        self.invocation.arg(arg);
        #[cfg(test)]
        {
            self.given.2 += 1;
        }
        self
    }

    /// Adds one `d:<key>`, JSON value pair per entry.
    fn data<'a>(
        mut self,
        entries: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
    ) -> Self {
        for (key, value) in entries {
            self = self.arg(data_field(key)).arg(value.to_string());
        }
        self
    }
}

/// An integer reply.
fn int(reply: Value) -> Result<i64, StoreError> {
    i64::from_redis_value(reply).map_err(|e| store_error(e.into()))
}

/// A reply of 1 for yes, anything else for no.
fn one(reply: Value) -> Result<bool, StoreError> {
    Ok(int(reply)? == 1)
}

/// A count, never negative.
fn count_of(reply: Value) -> Result<u64, StoreError> {
    Ok(u64::try_from(int(reply)?).unwrap_or(0))
}

/// `create_plain.lua`, for a record bound to no user with few enough fields; `None` when the
/// record needs [`create`]. Replies whether the session was filed (`false`: a key holds the
/// name, and [`create`] decides between a collision and an expired record).
pub(super) fn create_plain(keys: &Keys, hash: &SessionHash, record: &Record) -> Option<Call<bool>> {
    if record.user_id.is_some() || record.data.len() > PLAIN_MAX_FIELDS {
        return None;
    }
    let call = Call::new(&CREATE_PLAIN, one)
        .key(keys.session(hash)) // KEYS[1]
        .arg(record.expires_at.as_unix_millis()) // ARGV[1]
        // ARGV[2..]: the metadata, then the data.
        .arg(CREATED_FIELD)
        .arg(record.created_at.as_unix_millis())
        .arg(UPDATED_FIELD)
        .arg(record.updated_at.as_unix_millis())
        .arg(EXPIRES_FIELD)
        .arg(record.expires_at.as_unix_millis())
        .data(&record.data);
    Some(call)
}

/// `create.lua`: files `record` under `hash`. Replies whether it was filed (`false`: a live
/// session or a foreign key holds the name).
pub(super) fn create(keys: &Keys, hash: &SessionHash, record: &Record) -> Call<bool> {
    Call::new(&CREATE, one)
        .key(keys.session(hash)) // KEYS[1]
        .arg(record.created_at.as_unix_millis()) // ARGV[1] now: the record's creation
        .arg(record.expires_at.as_unix_millis()) // ARGV[2]
        .arg(record.created_at.as_unix_millis()) // ARGV[3]
        .arg(record.updated_at.as_unix_millis()) // ARGV[4]
        .arg(record.user_id.as_deref().unwrap_or("")) // ARGV[5]
        .arg(if record.user_id.is_some() { "1" } else { "" }) // ARGV[6]
        .arg(keys.index_prefix()) // ARGV[7]
        .arg(hash.to_string()) // ARGV[8]
        .data(&record.data) // ARGV[9..]
}

/// `save_plain.lua`, for a patch that only sets a few keys; `None` when the patch needs
/// [`save`]. Replies whether a live session was there to patch.
pub(super) fn save_plain(keys: &Keys, hash: &SessionHash, patch: &Patch) -> Option<Call<bool>> {
    let plain = !patch.clear
        && patch.remove.is_empty()
        && patch.user_id.is_none()
        && patch.expires_at.is_none()
        && patch.set.len() <= PLAIN_MAX_FIELDS;
    if !plain {
        return None;
    }
    let call = Call::new(&SAVE_PLAIN, one)
        .key(keys.session(hash)) // KEYS[1]
        .arg(patch.updated_at.as_unix_millis()) // ARGV[1]
        .data(patch.set.iter().map(|(key, value)| (key, value))); // ARGV[2..]
    Some(call)
}

/// `save.lua`: applies `patch` to the session filed under `hash`. Replies whether a live
/// session was there to patch.
pub(super) fn save(keys: &Keys, hash: &SessionHash, patch: &Patch) -> Call<bool> {
    patch_args(
        Call::new(&SAVE, one).key(keys.session(hash)), // KEYS[1]
        keys,
        patch,
        hash,
        hash,
    )
}

/// What `rotate.lua` did.
pub(super) enum Rotated {
    Moved,
    /// No live session was there to move.
    Gone,
    /// The new key is taken; nothing changed.
    Taken,
}

/// `rotate.lua`: moves the session filed under `old` to `new` and applies `patch` to it.
pub(super) fn rotate(
    keys: &Keys,
    old: &SessionHash,
    new: &SessionHash,
    patch: &Patch,
) -> Call<Rotated> {
    let rotated = |reply| {
        Ok(match int(reply)? {
            1 => Rotated::Moved,
            -1 => Rotated::Taken,
            _ => Rotated::Gone,
        })
    };
    let call = Call::new(&ROTATE, rotated)
        .key(keys.session(old)) // KEYS[1]
        .key(keys.session(new)); // KEYS[2]
    patch_args(call, keys, patch, new, old)
}

/// The ARGV of `apply.lua`, in the order its header lists them. `member` is the session's hash
/// after the call, `previous` before it (they differ on rotation).
fn patch_args<R>(
    call: Call<R>,
    keys: &Keys,
    patch: &Patch,
    member: &SessionHash,
    previous: &SessionHash,
) -> Call<R> {
    let (user_op, user) = match &patch.user_id {
        None => ("", ""),
        Some(None) => ("-", ""),
        Some(Some(user)) => ("+", user.as_str()),
    };
    let expires = patch.expires_at.map(|t| t.as_unix_millis().to_string());
    let mut call = call
        .arg(patch.updated_at.as_unix_millis()) // ARGV[1]
        .arg(expires.unwrap_or_default()) // ARGV[2]
        .arg(user_op) // ARGV[3]
        .arg(user) // ARGV[4]
        .arg(if patch.clear { "1" } else { "" }) // ARGV[5]
        .arg(keys.index_prefix()) // ARGV[6]
        .arg(member.to_string()) // ARGV[7]
        .arg(previous.to_string()) // ARGV[8]
        .arg(patch.remove.len()); // ARGV[9] = R
    for key in &patch.remove {
        call = call.arg(data_field(key)); // ARGV[10..9+R]
    }
    call.data(patch.set.iter().map(|(key, value)| (key, value))) // ARGV[10+R..]
}

/// `delete.lua`: deletes the session filed under `hash`. Replies whether a key was deleted.
pub(super) fn delete(keys: &Keys, hash: &SessionHash) -> Call<bool> {
    Call::new(&DELETE, |reply| Ok(int(reply)? > 0))
        .key(keys.session(hash)) // KEYS[1]
        .arg(keys.index_prefix()) // ARGV[1]
        .arg(hash.to_string()) // ARGV[2]
}

/// `list.lua`: the live sessions of `user_id`, as (hash, `HGETALL` reply) pairs.
pub(super) fn list(keys: &Keys, user_id: &str, now: Timestamp) -> Call<Vec<(Value, Value)>> {
    let pairs = |reply| {
        let Value::Array(items) = reply else {
            return Err(StoreError::corrupt(
                NAME,
                "the list script returned no array",
            ));
        };
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(member), Some(fields)) = (items.next(), items.next()) {
            pairs.push((member, fields));
        }
        Ok(pairs)
    };
    Call::new(&LIST, pairs)
        .key(keys.index(user_id)) // KEYS[1]
        .arg(now.as_unix_millis()) // ARGV[1]
        .arg(keys.session_prefix()) // ARGV[2]
        .arg(user_id) // ARGV[3]
}

/// `revoke.lua`: deletes the sessions of `user_id` but `except`. Replies how many went.
pub(super) fn revoke(keys: &Keys, user_id: &str, except: Option<&SessionHash>) -> Call<u64> {
    Call::new(&REVOKE, count_of)
        .key(keys.index(user_id)) // KEYS[1]
        .arg(keys.session_prefix()) // ARGV[1]
        .arg(user_id) // ARGV[2]
        .arg(except.map(ToString::to_string).unwrap_or_default()) // ARGV[3]
}

/// `count.lua`: how many of `session_keys` (from one `SCAN` step) are live at `now`.
pub(super) fn count(session_keys: Vec<Vec<u8>>, now: Timestamp) -> Call<u64> {
    let mut call = Call::new(&COUNT, count_of);
    for key in session_keys {
        call = call.key(key);
    }
    call.arg(now.as_unix_millis()) // ARGV[1]
}

/// `purge.lua`: deletes, among `scanned` (session and index keys from one `SCAN` step), up to
/// `limit` sessions expired at `now` and index members whose session is gone. Replies how many
/// went.
pub(super) fn purge(keys: &Keys, scanned: Vec<Vec<u8>>, now: Timestamp, limit: u64) -> Call<u64> {
    let mut call = Call::new(&PURGE, count_of);
    for key in scanned {
        call = call.key(key);
    }
    call.arg(now.as_unix_millis()) // ARGV[1]
        .arg(limit) // ARGV[2]
        .arg(keys.session_prefix()) // ARGV[3]
        .arg(keys.index_prefix()) // ARGV[4]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The highest index a script's header lists as `-- NAME[n]` (ranges such as `ARGV[2..]`
    /// are the variable tail and not counted).
    fn listed(text: &str, name: &str) -> usize {
        let tag = format!("-- {name}[");
        text.lines()
            .filter_map(|line| line.strip_prefix(&tag)?.split_once(']')?.0.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// The highest index a script's code reads as `NAME[n]`.
    fn used(text: &str, name: &str) -> usize {
        let tag = format!("{name}[");
        text.lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .flat_map(|line| {
                line.match_indices(&tag)
                    .map(|(at, _)| &line[at + tag.len()..])
            })
            .filter_map(|rest| rest.split_once(']')?.0.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// Holds a call to its script: the code reads what the header lists, and the call gives
    /// exactly that, plus `tail` arguments of the variable part.
    fn check<R>(name: &str, call: Call<R>, tail: usize) {
        let (text, keys, argv) = call.given;
        assert_eq!(
            used(text, "KEYS"),
            listed(text, "KEYS"),
            "{name}: KEYS in the header"
        );
        assert_eq!(
            used(text, "ARGV"),
            listed(text, "ARGV"),
            "{name}: ARGV in the header"
        );
        assert_eq!(keys, listed(text, "KEYS"), "{name}: KEYS given");
        assert_eq!(argv, listed(text, "ARGV") + tail, "{name}: ARGV given");
    }

    #[test]
    fn every_call_site_gives_what_its_script_lists() {
        let keys = Keys::new("test").unwrap();
        let hash: SessionHash = "ab".repeat(32).parse().unwrap();
        let now = Timestamp::from_unix_millis(1_000);
        let record = Record {
            data: crate::record::Data::new(),
            user_id: None,
            created_at: now,
            updated_at: now,
            expires_at: Timestamp::from_unix_millis(2_000),
        };
        let patch = Patch {
            updated_at: now,
            ..Patch::default()
        };
        // The three metadata pairs come before the data in create_plain's tail.
        check(
            "create_plain",
            create_plain(&keys, &hash, &record).unwrap(),
            6,
        );
        check("create", create(&keys, &hash, &record), 0);
        check("save_plain", save_plain(&keys, &hash, &patch).unwrap(), 0);
        check("save", save(&keys, &hash, &patch), 0);
        check("rotate", rotate(&keys, &hash, &hash, &patch), 0);
        check("delete", delete(&keys, &hash), 0);
        check("list", list(&keys, "u", now), 0);
        check("revoke", revoke(&keys, "u", None), 0);
        check("count", count(Vec::new(), now), 0);
        check("purge", purge(&keys, Vec::new(), now, 10), 0);
    }
}
