//! Saves of concurrent requests, grouped so that one statement serves many (PostgreSQL and
//! MySQL).
//!
//! Invariants: a batch holds at most [`MAX_BATCH`] saves of distinct sessions (a second save of
//! one session waits for the next batch, so patches to one session apply one after the other);
//! rows are locked in id order; a batch that fails is retried save by save, so one bad save fails
//! only itself; a save is answered only once its statement has committed.

use std::collections::{HashSet, VecDeque};
use std::sync::OnceLock;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::record::Patch;
use crate::ticket::SessionHash;

use super::MAX_BATCH;

/// Groups the saves of concurrent requests, so that one round trip and one commit serve many.
///
/// One task per store takes every save queued when it is free (at most [`MAX_BATCH`], distinct
/// sessions only: a second save of the same session waits for the next batch, so patches to one
/// session still apply one after the other). Two or more go to the store's
/// [`SaveMany::save_many`], one statement; if that fails, or for a lone save, which goes out at
/// once, each runs as its own [`SaveMany::save_one`], so that one session's bad data fails only
/// its own save.
///
/// A batch is one statement, not one transaction of single-row updates, whose updates would wait
/// on each other's round trips (measured in `docs/design.md`, "SQL stores").
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<QueuedSave>,
    engine: &'static str,
}

/// A save waiting for its batch, and where its answer goes.
pub(crate) struct QueuedSave {
    pub(crate) hash: SessionHash,
    pub(crate) patch: Patch,
    pub(crate) done: oneshot::Sender<Result<bool, StoreError>>,
}

/// What a store does with a batch.
#[async_trait]
pub(crate) trait SaveMany: Send + Sync + Sized + 'static {
    /// The store's name, for errors.
    const ENGINE: &'static str;

    /// Where the store keeps its batcher, started by the first save (it needs a runtime).
    fn batcher(&self) -> &OnceLock<Batcher>;

    /// This store with a batcher of its own, not started: for the batch task, which must not
    /// hold the batcher that feeds it (the task ends when the last store holding that goes).
    fn without_batcher(&self) -> Self;

    /// Runs two or more saves of distinct sessions, sorted by hash, as one statement: whether
    /// each found its live session.
    async fn save_many(&self, batch: &[QueuedSave]) -> Result<Vec<bool>, StoreError>;

    /// Runs one save on its own.
    async fn save_one(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError>;

    /// [`Store::save`](crate::Store::save): through the batcher, or on its own when the batch
    /// task is gone.
    async fn save_batched(&self, hash: &SessionHash, patch: &Patch) -> Result<bool, StoreError> {
        let batcher = self
            .batcher()
            .get_or_init(|| Batcher::start(Self::ENGINE, self.without_batcher()));
        match batcher.save(hash, patch).await {
            Some(result) => result,
            None => self.save_one(hash, patch).await,
        }
    }
}

/// Runs one batch and answers each of its saves.
async fn answer(store: &impl SaveMany, batch: Vec<QueuedSave>) {
    if batch.len() > 1 {
        match store.save_many(&batch).await {
            Ok(saved) if saved.len() == batch.len() => {
                for (save, saved) in batch.into_iter().zip(saved) {
                    let _ = save.done.send(Ok(saved));
                }
                return;
            }
            Ok(_) => tracing::warn!("cloakroom: a batch of saves lost count; retrying one by one"),
            Err(error) => tracing::debug!(
                %error, saves = batch.len(),
                "cloakroom: a batch of saves failed; retrying them one by one"
            ),
        }
    }
    for save in batch {
        let _ = save
            .done
            .send(store.save_one(&save.hash, &save.patch).await);
    }
}

/// The batch task ended before answering (its runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the save batcher stopped before the save was answered")]
struct BatchGone;

impl Batcher {
    /// Starts the task on the current tokio runtime. `store` must not hold this batcher: the
    /// task ends when the last sender goes.
    pub(crate) fn start(engine: &'static str, store: impl SaveMany) -> Self {
        let (queue, mut incoming) = mpsc::unbounded_channel::<QueuedSave>();
        tokio::spawn(async move {
            let mut waiting = VecDeque::new();
            loop {
                if waiting.is_empty() {
                    match incoming.recv().await {
                        Some(save) => waiting.push_back(save),
                        None => return,
                    }
                }
                while let Ok(save) = incoming.try_recv() {
                    waiting.push_back(save);
                }
                let mut batch = Vec::new();
                let mut seen = HashSet::new();
                let mut later = VecDeque::new();
                for save in waiting.drain(..) {
                    if batch.len() < MAX_BATCH && seen.insert(save.hash) {
                        batch.push(save);
                    } else {
                        later.push_back(save);
                    }
                }
                waiting = later;
                // Rows are locked in id order, whatever order the saves came in, so that two
                // app instances saving the same sessions at once take their locks alike.
                batch.sort_by_key(|save| save.hash);
                answer(&store, batch).await;
            }
        });
        Self { queue, engine }
    }

    /// Queues a save and waits for its answer; `None` if the task is gone (the caller then
    /// saves on its own).
    pub(crate) async fn save(
        &self,
        hash: &SessionHash,
        patch: &Patch,
    ) -> Option<Result<bool, StoreError>> {
        let (done, answer) = oneshot::channel();
        let queued = QueuedSave {
            hash: *hash,
            patch: patch.clone(),
            done,
        };
        self.queue.send(queued).ok()?;
        Some(
            answer
                .await
                .unwrap_or_else(|_| Err(StoreError::unavailable(self.engine, BatchGone))),
        )
    }
}
