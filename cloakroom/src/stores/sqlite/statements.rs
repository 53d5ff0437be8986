//! The fixed statements of one table, and rows read back from them.
//!
//! Identifiers cannot be bound as parameters, so the (checked) table name is spliced in here, once
//! per table, and nowhere else except the generated patch statements (`patch.rs`). Every lookup
//! uses an index (tested below), so a call costs the same whatever the table's size.

use rusqlite::Row;

use super::NAME;
use crate::error::StoreError;
use crate::record::Record;
use crate::stores::sql::parse_data;
use crate::time::Timestamp;

/// The fixed statements, with the (checked) table name spliced in once.
pub(super) struct Statements {
    pub(super) table: String,
    pub(super) schema: String,
    pub(super) create: String,
    pub(super) load: String,
    pub(super) delete: String,
    pub(super) list_user: String,
    pub(super) revoke_user: String,
    pub(super) count: String,
    pub(super) purge: String,
    pub(super) stats_totals: String,
    pub(super) stats_users: String,
    pub(super) stats_sizes: String,
}

const COLUMNS: &str = "data, user_id, created_at, updated_at, expires_at";

impl Statements {
    pub(super) fn new(table: &str) -> Self {
        // Quoted, so a checked name that happens to be a keyword (`order`) still works.
        let t = format!("\"{table}\"");
        Self {
            schema: format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    id TEXT PRIMARY KEY NOT NULL,
                    user_id TEXT,
                    data TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS \"{table}_user_id\" ON {t} (user_id, created_at)
                    WHERE user_id IS NOT NULL;
                 CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON {t} (expires_at);"
            ),
            // An expired row that was not purged yet may be replaced, in the same statement:
            // the conflict branch updates only when the row it hit is expired.
            create: format!(
                "INSERT INTO {t} (id, user_id, data, created_at, updated_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET
                    user_id = excluded.user_id, data = excluded.data,
                    created_at = excluded.created_at, updated_at = excluded.updated_at,
                    expires_at = excluded.expires_at
                 WHERE {t}.expires_at <= excluded.created_at"
            ),
            load: format!("SELECT {COLUMNS} FROM {t} WHERE id = ?1 AND expires_at > ?2"),
            delete: format!("DELETE FROM {t} WHERE id = ?1"),
            list_user: format!(
                "SELECT id, {COLUMNS} FROM {t} WHERE user_id = ?1 AND expires_at > ?2
                 ORDER BY created_at, id"
            ),
            revoke_user: format!("DELETE FROM {t} WHERE user_id = ?1 AND id IS NOT ?2"),
            count: format!("SELECT count(*) FROM {t} WHERE expires_at > ?1"),
            // Walks the expires_at index from the oldest deadline: the cost follows the number
            // of expired rows, not the size of the table.
            purge: format!(
                "DELETE FROM {t} WHERE rowid IN (
                    SELECT rowid FROM {t} WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)"
            ),
            // Operator figures: full scans are fine for an admin command run now and then.
            stats_totals: format!(
                "SELECT sum(expires_at > ?1), sum(expires_at <= ?1),
                    min(CASE WHEN expires_at > ?1 THEN created_at END),
                    max(CASE WHEN expires_at > ?1 THEN created_at END)
                 FROM {t}"
            ),
            stats_users: format!(
                "SELECT user_id, count(*) AS n FROM {t}
                 WHERE user_id IS NOT NULL AND expires_at > ?1
                 GROUP BY user_id ORDER BY n DESC, user_id LIMIT ?2"
            ),
            // Bytes, not characters: length() of TEXT counts characters.
            stats_sizes: format!(
                "SELECT length(CAST(data AS BLOB)) FROM {t} WHERE expires_at > ?1"
            ),
            table: table.to_owned(),
        }
    }
}

/// A row as read, before anything from it is trusted.
pub(super) struct RecordRow {
    data: rusqlite::Result<String>,
    user_id: rusqlite::Result<Option<String>>,
    created_at: rusqlite::Result<i64>,
    updated_at: rusqlite::Result<i64>,
    expires_at: rusqlite::Result<i64>,
}

/// Reads the record columns (`COLUMNS`, starting at `offset`) without failing the query on a
/// column of the wrong type: that is a corrupt record, reported by [`RecordRow::decode`].
pub(super) fn record_row(row: &Row<'_>, offset: usize) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        data: row.get(offset),
        user_id: row.get(offset + 1),
        created_at: row.get(offset + 2),
        updated_at: row.get(offset + 3),
        expires_at: row.get(offset + 4),
    })
}

impl RecordRow {
    pub(super) fn decode(self) -> Result<Record, StoreError> {
        let column = |name: &str, e: rusqlite::Error| {
            StoreError::corrupt(NAME, format!("column {name} cannot be read: {e}"))
        };
        let time = |name: &str, v: rusqlite::Result<i64>| {
            v.map(Timestamp::from_unix_millis)
                .map_err(|e| column(name, e))
        };
        Ok(Record {
            data: parse_data(NAME, &self.data.map_err(|e| column("data", e))?)?,
            user_id: self.user_id.map_err(|e| column("user_id", e))?,
            created_at: time("created_at", self.created_at)?,
            updated_at: time("updated_at", self.updated_at)?,
            expires_at: time("expires_at", self.expires_at)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use rusqlite::types::Value as Sql;
    use serde_json::json;

    use super::*;
    use crate::record::Patch;
    use crate::stores::sqlite::patch::update_statements;
    use crate::ticket::SessionHash;

    fn hash(n: u8) -> SessionHash {
        SessionHash::from_bytes([n; 32])
    }

    /// What SQLite plans for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![Sql::Null; st.parameter_count()];
        let steps = st
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        steps.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn lookups_use_the_indexes_not_a_table_scan() {
        let sql = Statements::new("s");
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&sql.schema).unwrap();
        let uses = |statement: &str, index: &str| {
            let plan = plan(&conn, statement);
            assert!(plan.contains(index), "{statement}\n{plan}");
            assert!(!plan.contains("SCAN s"), "{statement}\n{plan}");
        };
        uses(&sql.load, "sqlite_autoindex_s_1");
        uses(&sql.delete, "sqlite_autoindex_s_1");
        uses(&sql.list_user, "s_user_id");
        uses(&sql.revoke_user, "s_user_id");
        uses(&sql.count, "s_expires_at");
        uses(&sql.purge, "s_expires_at");
        let patch = Patch {
            set: vec![("k".into(), json!(1))],
            ..Patch::default()
        };
        uses(
            &update_statements("s", &hash(1), None, &patch)[0].sql,
            "sqlite_autoindex_s_1",
        );
    }
}
