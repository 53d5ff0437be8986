//! The fixed statements of one table, built once per table.
//!
//! Identifiers cannot be bound as parameters, so the (checked) table name is spliced in here and
//! nowhere else. `save` and `rotate` apply a patch on the server
//! (`(data - removed) || set`) to whatever the row holds when the statement runs; row locking
//! makes concurrent patches to one session queue up instead of overwriting each other.

use serde::ser::{Serialize, Serializer};
use serde_json::Value;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// The statements for one table, built once: identifiers cannot be bound as parameters, so the
/// (checked) table name is spliced in here and nowhere else.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) load: SqlStr,
    pub(super) create: SqlStr,
    pub(super) save: SqlStr,
    pub(super) save_many: SqlStr,
    pub(super) rotate: SqlStr,
    pub(super) delete: SqlStr,
    pub(super) list_user: SqlStr,
    pub(super) revoke_user: SqlStr,
    pub(super) count: SqlStr,
    pub(super) purge: SqlStr,
    pub(super) stats: SqlStr,
    pub(super) top_users: SqlStr,
}

impl Statements {
    pub(super) fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        // $1 = id (old id for rotate), $2 = whether the data changes, $3 = clear, $4 = removed
        // keys, $5 = keys to set, $6 = whether user_id changes, $7 = new user_id, $8 = new expiry,
        // $9 = now. The data expression is guarded by $2 so that a touch leaves the (possibly
        // TOASTed) JSONB untouched instead of rewriting an identical copy.
        let set = "data = CASE WHEN $2 \
                THEN (CASE WHEN $3 THEN '{}'::jsonb ELSE data END - $4::text[]) || $5::jsonb \
                ELSE data END, \
             user_id = CASE WHEN $6 THEN $7::text ELSE user_id END, \
             expires_at = COALESCE($8::bigint, expires_at), \
             updated_at = $9";
        let columns = "user_id, data, created_at, updated_at, expires_at";
        Self {
            load: sql(format!(
                "SELECT {columns} FROM {t} WHERE id = $1 AND expires_at > $2"
            )),
            // Only an expired row may be replaced, and only in this same statement; a live one
            // makes the upsert update nothing, which `create` reports as a collision.
            create: sql(format!(
                "INSERT INTO {t} AS s (id, {columns}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, data = EXCLUDED.data, \
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
                 expires_at = EXCLUDED.expires_at \
                 WHERE s.expires_at <= EXCLUDED.created_at"
            )),
            save: sql(format!(
                "UPDATE {t} SET {set} WHERE id = $1 AND expires_at > $9"
            )),
            rotate: sql(format!(
                "UPDATE {t} SET id = $10, {set} WHERE id = $1 AND expires_at > $9"
            )),
            // `save` for many sessions at once: one row of arrays per save, the same columns as
            // `save`'s parameters (removed keys and set keys as JSON text). Ids are distinct.
            save_many: sql(format!(
                "UPDATE {t} AS s SET \
                 data = CASE WHEN p.changes \
                    THEN (CASE WHEN p.clear THEN '{{}}'::jsonb ELSE s.data END \
                          - ARRAY(SELECT jsonb_array_elements_text(p.remove::jsonb))) \
                         || p.set::jsonb \
                    ELSE s.data END, \
                 user_id = CASE WHEN p.user_changes THEN p.user_id ELSE s.user_id END, \
                 expires_at = COALESCE(p.expires_at, s.expires_at), \
                 updated_at = p.now \
                 FROM unnest($1::text[], $2::bool[], $3::bool[], $4::text[], $5::text[], \
                    $6::bool[], $7::text[], $8::int8[], $9::int8[]) \
                    AS p(id, changes, clear, remove, set, user_changes, user_id, expires_at, now) \
                 WHERE s.id = p.id AND s.expires_at > p.now \
                 RETURNING s.id"
            )),
            delete: sql(format!("DELETE FROM {t} WHERE id = $1")),
            list_user: sql(format!(
                "SELECT id, {columns} FROM {t} WHERE user_id = $1 AND expires_at > $2 \
                 ORDER BY created_at, id"
            )),
            revoke_user: sql(format!(
                "DELETE FROM {t} WHERE user_id = $1 AND id IS DISTINCT FROM $2"
            )),
            count: sql(format!("SELECT COUNT(*) FROM {t} WHERE expires_at > $1")),
            // SKIP LOCKED lets several instances purge at once without queueing on each other's
            // rows; the outer condition is checked again on the row as it is when deleted, so a
            // row that `create` replaced meanwhile survives.
            purge: sql(format!(
                "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE expires_at <= $1 \
                 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) AND expires_at <= $1"
            )),
            // One pass over the table; sizes are of the text PostgreSQL renders, which is close
            // to (a little larger than) cloakroom's compact JSON.
            stats: sql(format!(
                "SELECT COUNT(*) FILTER (WHERE expires_at > $1), \
                 COUNT(*) FILTER (WHERE expires_at <= $1), \
                 MIN(created_at) FILTER (WHERE expires_at > $1), \
                 MAX(created_at) FILTER (WHERE expires_at > $1), \
                 percentile_disc(ARRAY[0.5, 0.9, 0.99]::float8[]) \
                 WITHIN GROUP (ORDER BY octet_length(data::text)) FILTER (WHERE expires_at > $1), \
                 MAX(octet_length(data::text)) FILTER (WHERE expires_at > $1) \
                 FROM {t}"
            )),
            top_users: sql(format!(
                "SELECT user_id, COUNT(*) FROM {t} WHERE user_id IS NOT NULL AND expires_at > $1 \
                 GROUP BY user_id ORDER BY COUNT(*) DESC, user_id LIMIT $2"
            )),
        }
    }
}

/// The keys a patch sets, serialized as one JSON object without copying the values.
pub(super) struct SetObject<'a>(pub(super) &'a [(String, Value)]);

impl Serialize for SetObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A key set twice keeps its last value, as `Patch::apply_to` would.
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}
