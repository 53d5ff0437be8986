//! The patch compiler: a [`Patch`] as the MySQL `UPDATE` that applies it on the server.
//!
//! Contract: a patch becomes one `UPDATE` that rewrites `data` with `JSON_REMOVE`/`JSON_SET`
//! on the server, so it applies to whatever the row holds when the statement runs; a batch of
//! saves becomes one `UPDATE … SET column = CASE id WHEN … END … WHERE id IN (…)`. Both are
//! refused before any I/O when they would need more placeholders than MySQL's protocol counts, and
//! the parameter counts here must match the placeholders pushed exactly (tested below). Every
//! key and value goes through [`super::json`], which works around MariaDB's JSON quirks.

use sqlx::QueryBuilder;
use sqlx::mysql::MySql;

use super::check_user_id;
use super::json::{ascii_json, member_path};
use crate::error::StoreError;
use crate::record::Patch;
use crate::stores::sql::batch::QueuedSave;
use crate::ticket::SessionHash;
use crate::time::Timestamp;

/// The most placeholders one prepared statement may have (the protocol counts them in 16 bits).
const MAX_PARAMETERS: usize = 65_535;

/// `save`'s or `rotate`'s `UPDATE` (`rotate` when `new` is given) for the live row `id`: one
/// statement whatever the patch, refused (before any I/O) when it would need more parameters than
/// MySQL allows or the user id is too long.
pub(super) fn update_statement(
    table: &str,
    id: &SessionHash,
    new: Option<&SessionHash>,
    patch: &Patch,
) -> Result<QueryBuilder<MySql>, StoreError> {
    if let Some(Some(user_id)) = &patch.user_id {
        check_user_id(user_id)?;
    }
    let parameters = usize::from(new.is_some()) + parameters(patch) + 2;
    if parameters > MAX_PARAMETERS {
        return Err(StoreError::Config(format!(
            "a patch changing {} keys needs {parameters} statement parameters, more than \
             MySQL's {MAX_PARAMETERS}; change fewer keys per request",
            patch.set.len() + if patch.clear { 0 } else { patch.remove.len() }
        )));
    }

    let mut query = QueryBuilder::<MySql>::new("UPDATE ");
    query.push(table).push(" SET updated_at = ");
    query.push_bind(patch.updated_at.as_unix_millis());
    if let Some(new) = new {
        query.push(", id = ").push_bind(new.to_string());
    }
    if patch.changes_data() {
        query.push(", data = ");
        push_data(&mut query, patch)?;
    }
    if let Some(user_id) = &patch.user_id {
        query
            .push(", user_id = ")
            .push_bind(user_id.as_deref().map(str::as_bytes));
    }
    if let Some(expires_at) = patch.expires_at {
        query
            .push(", expires_at = ")
            .push_bind(expires_at.as_unix_millis());
    }
    query.push(" WHERE id = ").push_bind(id.to_string());
    query
        .push(" AND expires_at > ")
        .push_bind(patch.updated_at.as_unix_millis());
    Ok(query)
}

/// The statement parameters a patch takes in [`update_statement`], besides the ids.
fn parameters(patch: &Patch) -> usize {
    let removed = if patch.clear { 0 } else { patch.remove.len() };
    1 + removed
        + 2 * patch.set.len()
        + usize::from(patch.user_id.is_some())
        + usize::from(patch.expires_at.is_some())
}

/// Pushes the patched `data`, built inside out: the start (`data`, or an empty object when the
/// patch clears), `JSON_REMOVE` around it, then `JSON_SET` around that.
fn push_data(query: &mut QueryBuilder<MySql>, patch: &Patch) -> Result<(), StoreError> {
    let removed: &[String] = if patch.clear { &[] } else { &patch.remove };
    if !patch.set.is_empty() {
        query.push("JSON_SET(");
    }
    if !removed.is_empty() {
        query.push("JSON_REMOVE(");
    }
    query.push(if patch.clear { "JSON_OBJECT()" } else { "data" });
    if !removed.is_empty() {
        for key in removed {
            query.push(", ").push_bind(member_path(key)?);
        }
        query.push(")");
    }
    if !patch.set.is_empty() {
        for (key, value) in &patch.set {
            query.push(", ").push_bind(member_path(key)?);
            query
                .push(", JSON_EXTRACT(")
                .push_bind(ascii_json(value)?)
                .push(", '$')");
        }
        query.push(")");
    }
    Ok(())
}

/// The statement parameters one save takes in `save_many`: its id and value in each `CASE` it
/// appears in (`updated_at`, the expiry check, and `data`, `user_id`, `expires_at` when it
/// changes them), the data expression's own, and its id in `IN (…)`.
fn batch_parameters(patch: &Patch) -> usize {
    let removed = if patch.clear { 0 } else { patch.remove.len() };
    let data = if patch.changes_data() {
        1 + removed + 2 * patch.set.len()
    } else {
        0
    };
    2 + 2
        + data
        + 2 * usize::from(patch.user_id.is_some())
        + 2 * usize::from(patch.expires_at.is_some())
        + 1
}

/// Pushes `CASE id WHEN <id> THEN <then> … ELSE <otherwise> END` over the saves `wanted` picks;
/// `ids` are the saves' ids as bound, in batch order.
fn push_case(
    query: &mut QueryBuilder<MySql>,
    batch: &[QueuedSave],
    ids: &[String],
    otherwise: &str,
    wanted: impl Fn(&Patch) -> bool,
    mut then: impl FnMut(&mut QueryBuilder<MySql>, &Patch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    query.push("CASE id");
    for (save, id) in batch.iter().zip(ids) {
        if !wanted(&save.patch) {
            continue;
        }
        query.push(" WHEN ").push_bind(id.clone()).push(" THEN ");
        then(query, &save.patch)?;
    }
    query.push(" ELSE ").push(otherwise).push(" END");
    Ok(())
}

/// Pushes ` WHERE` for the rows of `batch` still live at their save's `updated_at`.
pub(super) fn push_live_rows(
    query: &mut QueryBuilder<MySql>,
    batch: &[QueuedSave],
    ids: &[String],
) -> Result<(), StoreError> {
    query.push(" WHERE id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(id.clone());
    }
    query.push(") AND expires_at > ");
    push_case(query, batch, ids, "NULL", |_| true, push_updated_at)
}

fn push_updated_at(query: &mut QueryBuilder<MySql>, patch: &Patch) -> Result<(), StoreError> {
    query.push_bind(patch.updated_at.as_unix_millis());
    Ok(())
}

/// `save_many`'s `UPDATE`: `SET column = CASE id WHEN … END` for each column a save changes,
/// over the rows of `batch` still live. Refused (before any I/O) when it would need more
/// parameters than MySQL allows or a save's user id is too long.
pub(super) fn save_many_statement(
    table: &str,
    batch: &[QueuedSave],
    ids: &[String],
) -> Result<QueryBuilder<MySql>, StoreError> {
    let parameters: usize = batch.iter().map(|save| batch_parameters(&save.patch)).sum();
    if parameters > MAX_PARAMETERS {
        return Err(StoreError::Config(format!(
            "{} saves need {parameters} statement parameters, more than MySQL's \
             {MAX_PARAMETERS}",
            batch.len()
        )));
    }
    let mut query = QueryBuilder::<MySql>::new("UPDATE ");
    query.push(table).push(" SET updated_at = ");
    push_case(
        &mut query,
        batch,
        ids,
        "updated_at",
        |_| true,
        push_updated_at,
    )?;
    if batch.iter().any(|save| save.patch.changes_data()) {
        query.push(", data = ");
        push_case(
            &mut query,
            batch,
            ids,
            "data",
            Patch::changes_data,
            push_data,
        )?;
    }
    if batch.iter().any(|save| save.patch.user_id.is_some()) {
        query.push(", user_id = ");
        push_case(
            &mut query,
            batch,
            ids,
            "user_id",
            |p| p.user_id.is_some(),
            |query, p| {
                let user_id = p.user_id.as_ref().and_then(Option::as_deref);
                if let Some(user_id) = user_id {
                    check_user_id(user_id)?;
                }
                query.push_bind(user_id.map(str::as_bytes));
                Ok(())
            },
        )?;
    }
    if batch.iter().any(|save| save.patch.expires_at.is_some()) {
        query.push(", expires_at = ");
        push_case(
            &mut query,
            batch,
            ids,
            "expires_at",
            |p| p.expires_at.is_some(),
            |query, p| {
                query.push_bind(p.expires_at.map(Timestamp::as_unix_millis));
                Ok(())
            },
        )?;
    }
    push_live_rows(&mut query, batch, ids)?;
    Ok(query)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn queued(seed: u8, patch: Patch) -> QueuedSave {
        let (done, _) = tokio::sync::oneshot::channel();
        QueuedSave {
            hash: SessionHash::from_bytes([seed; 32]),
            patch,
            done,
        }
    }

    /// The refusal of an oversized batch rests on `batch_parameters`: it must count exactly the
    /// placeholders the statement binds, for every kind of save.
    #[test]
    fn batch_parameters_count_every_placeholder() {
        let at = Timestamp::from_unix_millis(1_000);
        let set = vec![("a".to_owned(), json!(1)), ("b".to_owned(), json!([2]))];
        let patches = [
            Patch {
                set: set.clone(),
                updated_at: at,
                ..Patch::default()
            },
            Patch {
                remove: vec!["x".to_owned(), "y".to_owned()],
                user_id: Some(Some("ann".to_owned())),
                updated_at: at,
                ..Patch::default()
            },
            Patch {
                clear: true,
                remove: vec!["ignored when clearing".to_owned()],
                set,
                user_id: Some(None),
                expires_at: Some(at),
                updated_at: at,
            },
            Patch::touch(at, at),
        ];
        let batch: Vec<_> = patches
            .into_iter()
            .zip(1..)
            .map(|(patch, seed)| queued(seed, patch))
            .collect();
        let ids: Vec<String> = batch.iter().map(|save| save.hash.to_string()).collect();
        for n in 1..=batch.len() {
            let statement = save_many_statement("t", &batch[..n], &ids[..n]).unwrap();
            let placeholders = statement.sql().as_str().matches('?').count();
            let counted: usize = batch[..n].iter().map(|s| batch_parameters(&s.patch)).sum();
            assert_eq!(placeholders, counted, "first {n} saves");
        }
    }
}
