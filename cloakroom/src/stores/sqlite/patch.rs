//! The patch compiler: a [`Patch`] as the SQL statements that apply it to a stored row.
//!
//! Contract: [`update_statements`] returns one `UPDATE … WHERE id = ? AND expires_at > ?` that
//! applies the patch to the live row inside SQLite (`json_set(json_remove(data, paths…), …)`),
//! so the patch lands on what is stored when the statement runs, never on a copy read earlier.
//! Only a patch with more keys than one statement binds continues in further statements; the
//! caller runs them all in one transaction and treats "no row" from the first as "session gone".
//! Removals apply before sets, as [`Patch::apply_to`] does; every key is quoted, so no key is
//! read as JSON path syntax.

use rusqlite::Connection;
use rusqlite::types::Value as Sql;
use serde_json::Value;

use super::db;
use crate::error::StoreError;
use crate::record::Patch;
use crate::ticket::SessionHash;

/// Bound parameters per statement: SQLite's default limit is 32 766. A patch that needs more is
/// applied as several statements in one transaction.
const MAX_PARAMS: usize = 30_000;

/// Path/value pairs per `json_set` call and paths per `json_remove` call: SQLite before 3.48
/// allows 127 arguments per function call. Longer lists nest calls.
const SET_PAIRS_PER_CALL: usize = 50;
const REMOVE_PATHS_PER_CALL: usize = 100;

/// One generated `UPDATE` and its parameters.
pub(super) struct Update {
    pub(super) sql: String,
    params: Vec<Sql>,
}

impl Update {
    fn param(&mut self, value: Sql) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }

    pub(super) fn execute(self, conn: &Connection) -> Result<usize, StoreError> {
        let mut st = conn.prepare_cached(&self.sql).map_err(db)?;
        st.execute(rusqlite::params_from_iter(self.params))
            .map_err(|e| match e.sqlite_error() {
                // Only a rotation onto a hash that is already taken can hit the primary key.
                Some(f) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    StoreError::Collision
                }
                _ => db(e),
            })
    }
}

/// One change to the data, in the order a patch applies them.
enum Op<'a> {
    Remove(&'a str),
    Set(&'a str, &'a Value),
}

impl Op<'_> {
    fn params(&self) -> usize {
        match self {
            Op::Remove(_) => 1,
            Op::Set(..) => 2,
        }
    }
}

/// The statements that apply `patch` to the live row `old` (moving it to `new` when rotating).
///
/// Almost always one `UPDATE … WHERE id = ? AND expires_at > ?`: the data is rewritten by
/// `json_set(json_remove(data, paths…), path, json(value), …)` inside SQLite, so the patch lands
/// on what is stored at that moment. Only a patch with more keys than SQLite binds in one
/// statement continues in further statements, which the caller runs in one transaction.
pub(super) fn update_statements(
    table: &str,
    old: &SessionHash,
    new: Option<&SessionHash>,
    patch: &Patch,
) -> Vec<Update> {
    let mut ops: Vec<Op<'_>> = Vec::with_capacity(patch.remove.len() + patch.set.len());
    if !patch.clear {
        ops.extend(patch.remove.iter().map(|k| Op::Remove(k)));
    }
    ops.extend(patch.set.iter().map(|(k, v)| Op::Set(k, v)));

    let now = patch.updated_at.as_unix_millis();
    let mut first = Update {
        sql: String::new(),
        params: vec![Sql::Text(old.to_string()), Sql::Integer(now)],
    };
    let mut sets = Vec::new();
    if let Some(new) = new {
        sets.push(format!("id = {}", first.param(Sql::Text(new.to_string()))));
    }
    if let Some(user_id) = &patch.user_id {
        let value = user_id.clone().map_or(Sql::Null, Sql::Text);
        sets.push(format!("user_id = {}", first.param(value)));
    }
    if let Some(expires_at) = patch.expires_at {
        let value = Sql::Integer(expires_at.as_unix_millis());
        sets.push(format!("expires_at = {}", first.param(value)));
    }
    sets.push("updated_at = ?2".to_owned());
    let taken = take_ops(&mut ops, MAX_PARAMS.saturating_sub(first.params.len()));
    if patch.clear || !taken.is_empty() {
        let base = if patch.clear { "'{}'" } else { "data" };
        let data = data_expression(base, &taken, &mut first);
        sets.push(format!("data = {data}"));
    }
    first.sql = format!(
        "UPDATE \"{table}\" SET {} WHERE id = ?1 AND expires_at > ?2",
        sets.join(", ")
    );

    let mut statements = vec![first];
    let id = new.unwrap_or(old).to_string();
    while !ops.is_empty() {
        let mut next = Update {
            sql: String::new(),
            params: vec![Sql::Text(id.clone())],
        };
        let taken = take_ops(&mut ops, MAX_PARAMS - 1);
        let data = data_expression("data", &taken, &mut next);
        next.sql = format!("UPDATE \"{table}\" SET data = {data} WHERE id = ?1");
        statements.push(next);
    }
    statements
}

/// Takes ops from the front of `ops` while they fit in `budget` parameters (at least one, so
/// progress is always made).
fn take_ops<'a>(ops: &mut Vec<Op<'a>>, budget: usize) -> Vec<Op<'a>> {
    let mut used = 0;
    let n = ops
        .iter()
        .take_while(|op| {
            used += op.params();
            used <= budget
        })
        .count()
        .max(1)
        .min(ops.len());
    ops.drain(..n).collect()
}

/// `base` with `ops` applied: removals then sets (the order of a patch), as nested
/// `json_remove`/`json_set` calls small enough for SQLite's argument limit.
fn data_expression(base: &str, ops: &[Op<'_>], update: &mut Update) -> String {
    let mut expr = base.to_owned();
    for run in ops.chunk_by(|a, b| {
        matches!(
            (a, b),
            (Op::Set(..), Op::Set(..)) | (Op::Remove(_), Op::Remove(_))
        )
    }) {
        let per_call = match run[0] {
            Op::Remove(_) => REMOVE_PATHS_PER_CALL,
            Op::Set(..) => SET_PAIRS_PER_CALL,
        };
        for call in run.chunks(per_call) {
            let mut args = vec![expr];
            let function = match call[0] {
                Op::Remove(_) => "json_remove",
                Op::Set(..) => "json_set",
            };
            for op in call {
                match op {
                    Op::Remove(key) => args.push(update.param(Sql::Text(json_path(key)))),
                    Op::Set(key, value) => {
                        args.push(update.param(Sql::Text(json_path(key))));
                        // json() marks the text as JSON, so a string value that looks like JSON
                        // is stored as the string it is, and objects are not stored as strings.
                        let value = update.param(Sql::Text(value.to_string()));
                        args.push(format!("json({value})"));
                    }
                }
            }
            expr = format!("{function}({})", args.join(", "));
        }
    }
    expr
}

/// The SQLite JSON path naming the top-level member `key`, whatever characters it holds.
///
/// The key goes in a quoted label (`$."key"`), so `.`, `[` and `$` are plain characters. Inside
/// the label SQLite decodes JSON escapes, but versions before 3.47 end the label at the first `"`
/// even when escaped, so a quote is written as `\u0022`. Backslashes and control characters are
/// escaped as in JSON; everything else, Unicode included, is copied as is.
fn json_path(key: &str) -> String {
    let mut path = String::with_capacity(key.len() + 4);
    path.push_str("$.\"");
    for c in key.chars() {
        match c {
            '"' => path.push_str("\\u0022"),
            '\\' => path.push_str("\\\\"),
            c if u32::from(c) < 0x20 => path.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => path.push(c),
        }
    }
    path.push('"');
    path
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::time::Timestamp;

    fn hash(n: u8) -> SessionHash {
        SessionHash::from_bytes([n; 32])
    }

    #[test]
    fn paths_quote_every_key() {
        assert_eq!(json_path("a"), r#"$."a""#);
        assert_eq!(json_path("a.b[0]"), r#"$."a.b[0]""#);
        assert_eq!(json_path(r#"say "hi""#), r#"$."say \u0022hi\u0022""#);
        assert_eq!(json_path(r"back\slash"), r#"$."back\\slash""#);
        assert_eq!(json_path("tab\tnul\0"), r#"$."tab\u0009nul\u0000""#);
        assert_eq!(json_path("ключ 🧥"), "$.\"ключ 🧥\"");
        assert_eq!(json_path(""), r#"$."""#);
    }

    #[test]
    fn a_touch_is_one_small_update() {
        let patch = Patch::touch(
            Timestamp::from_unix_millis(9),
            Timestamp::from_unix_millis(1),
        );
        let statements = update_statements("t", &hash(1), None, &patch);
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            r#"UPDATE "t" SET expires_at = ?3, updated_at = ?2 WHERE id = ?1 AND expires_at > ?2"#
        );
    }

    #[test]
    fn a_patch_is_one_update_with_clear_remove_set_in_order() {
        let patch = Patch {
            clear: false,
            set: vec![("b".into(), json!(1))],
            remove: vec!["a".into()],
            user_id: Some(None),
            updated_at: Timestamp::from_unix_millis(1),
            ..Patch::default()
        };
        let statements = update_statements("t", &hash(1), Some(&hash(2)), &patch);
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            "UPDATE \"t\" SET id = ?3, user_id = ?4, updated_at = ?2, \
             data = json_set(json_remove(data, ?5), ?6, json(?7)) \
             WHERE id = ?1 AND expires_at > ?2"
        );
        let cleared = Patch {
            clear: true,
            ..patch
        };
        let statements = update_statements("t", &hash(1), None, &cleared);
        assert!(
            statements[0]
                .sql
                .contains("data = json_set('{}', ?4, json(?5))"),
            "{}",
            statements[0].sql
        );
    }

    #[test]
    fn many_keys_nest_calls_and_split_statements() {
        let patch = Patch {
            set: (0..MAX_PARAMS)
                .map(|i| (format!("k{i}"), json!(i)))
                .collect(),
            remove: (0..120).map(|i| format!("r{i}")).collect(),
            updated_at: Timestamp::from_unix_millis(1),
            ..Patch::default()
        };
        let statements = update_statements("t", &hash(1), None, &patch);
        assert_eq!(statements.len(), 3);
        let params: usize = statements.iter().map(|s| s.params.len()).sum();
        // Each statement rebinds the id; the first also `now`.
        assert_eq!(params, 120 + 2 * MAX_PARAMS + 2 + 2);
        for statement in &statements {
            assert!(statement.params.len() <= MAX_PARAMS);
        }
        assert!(
            statements[0]
                .sql
                .contains("json_remove(json_remove(data, ?3,")
        );
        assert!(statements[1].sql.ends_with("WHERE id = ?1"));
    }
}
