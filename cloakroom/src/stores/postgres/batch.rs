//! How PostgreSQL runs a batch of saves: one `UPDATE … FROM unnest(…)` on a connection of its own.
//!
//! Contract ([`SaveMany`]): the saves of a batch are distinct sessions, sorted by hash; the
//! statement returns the ids of the rows it updated, so each save learns whether it found its live
//! session. The batch connection is taken out of the pool once and replaced only after an error
//! that may have left it unusable; it plans the batch statement on every run (see
//! `open_batch_connection` for why).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use sqlx::postgres::PgConnection;

use super::statements::SetObject;
use super::{ENGINE, PostgresStore};
use crate::error::StoreError;
use crate::record::Patch;
use crate::stores::sql::batch::{Batcher, QueuedSave, SaveMany};
use crate::ticket::SessionHash;
use crate::time::Timestamp;

#[async_trait]
impl SaveMany for PostgresStore {
    const ENGINE: &'static str = ENGINE.name;

    fn batcher(&self) -> &OnceLock<Batcher> {
        &self.batcher
    }

    fn without_batcher(&self) -> Self {
        Self {
            batcher: Arc::new(OnceLock::new()),
            batch_connection: Arc::default(),
            ..self.clone()
        }
    }

    async fn save_many(&self, batch: &[QueuedSave]) -> Result<Vec<bool>, StoreError> {
        fn column<'a, T>(batch: &'a [QueuedSave], f: impl Fn(&'a Patch) -> T) -> Vec<T> {
            batch.iter().map(|save| f(&save.patch)).collect()
        }
        let ids: Vec<String> = batch.iter().map(|save| save.hash.to_string()).collect();
        // Strings and JSON values always serialize; the fallbacks are never used.
        let remove = column(batch, |p| {
            serde_json::to_string(&p.remove).unwrap_or_else(|_| "[]".into())
        });
        let set = column(batch, |p| {
            serde_json::to_string(&SetObject(&p.set)).unwrap_or_else(|_| "{}".into())
        });
        let mut slot = self.batch_connection.lock().await;
        let connection = match &mut *slot {
            Some(connection) => connection,
            empty => empty.insert(self.open_batch_connection().await?),
        };
        let saved = sqlx::query_scalar(self.sql.save_many.clone())
            .bind(&ids)
            .bind(column(batch, Patch::changes_data))
            .bind(column(batch, |p| p.clear))
            .bind(remove)
            .bind(set)
            .bind(column(batch, |p| p.user_id.is_some()))
            .bind(column(batch, |p| {
                p.user_id.as_ref().and_then(Option::as_deref)
            }))
            .bind(column(batch, |p| {
                p.expires_at.map(Timestamp::as_unix_millis)
            }))
            .bind(column(batch, |p| p.updated_at.as_unix_millis()))
            .fetch_all(&mut *connection)
            .await;
        let saved: HashSet<String> = match saved {
            Ok(saved) => saved.into_iter().collect(),
            Err(error) => {
                // Anything but the database refusing the statement may have left the
                // connection unusable: the next batch opens another.
                if !matches!(error, sqlx::Error::Database(_)) {
                    *slot = None;
                }
                return Err(self.error(error));
            }
        };
        Ok(ids.iter().map(|id| saved.contains(id)).collect())
    }

    async fn save_one(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        self.update(&self.sql.save, hash, None, patch).await
    }
}

impl PostgresStore {
    /// A connection for the batch task alone, taken out of the pool (which may open another in
    /// its place): batches then never wait behind loads for a connection.
    ///
    /// It plans the batch statement on every run. Otherwise, after five runs, PostgreSQL would
    /// cache a generic plan made for the table as it was then, and a plan made while the table
    /// was small (a hash join over a full scan) stays in use as the table grows, until
    /// statistics are refreshed (never, with autovacuum off), many times slower than a plan of
    /// its own (an index lookup per id; measurements in `docs/design.md`, "SQL stores").
    /// Setting this for the one connection keeps the statement prepared (one round trip per
    /// batch) without changing how the pool's connections plan the app's own queries.
    async fn open_batch_connection(&self) -> Result<PgConnection, StoreError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.error(e))?
            .detach();
        sqlx::query("SET plan_cache_mode = force_custom_plan")
            .execute(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(connection)
    }
}
