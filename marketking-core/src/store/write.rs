//! The write path of a batch, in one place: validate once, plan against the stored rows of the
//! batch's keys, embed only what changed (in the embedder's batch size, before any database lock
//! is taken), then let the backend write it in one transaction.

use super::VectorStore;
use crate::backend::Written;
use crate::document::{BatchOnce, BatchReport, NewDocument};
use crate::embedder::embed_checked;
use crate::error::{Error, Result};
use crate::plan::{missing_vectors, needs_stored_vectors, plan_batch};

/// How often a batch is re-embedded because concurrent writers changed its keys' rows between
/// planning and locking, before it gives up with [`Error::Conflict`].
const MAX_REPLANS: usize = 3;

impl VectorStore {
    /// Plans, embeds and writes a validated batch (see [`batch`](Self::batch)).
    pub(super) async fn write_planned(&self, docs: Vec<NewDocument>) -> Result<BatchReport> {
        match self.write_planned_once(docs, None).await? {
            BatchOnce::Written(report) | BatchOnce::Replayed(report) => Ok(report),
        }
    }

    /// [`write_planned`](Self::write_planned) under an optional checkpoint (see
    /// [`batch_once`](Self::batch_once)).
    pub(super) async fn write_planned_once(
        &self,
        mut docs: Vec<NewDocument>,
        checkpoint: Option<&str>,
    ) -> Result<BatchOnce> {
        if let Some(name) = checkpoint {
            // Read first, so a batch written before costs no embedder call; the write checks
            // again under the checkpoint's lock.
            if let Some(report) = self.inner.backend.checkpoint(name).await? {
                return Ok(BatchOnce::Replayed(report));
            }
        }
        let keys: Vec<String> = docs.iter().filter_map(|d| d.key.clone()).collect();
        let mut need = if keys.is_empty() {
            (0..docs.len()).filter(|&i| docs.get(i).is_some_and(|d| d.embedding.is_none())).collect()
        } else {
            // An unlocked read: the backend checks the plan again under its locks.
            let existing = self.inner.backend.existing(&keys, needs_stored_vectors(&docs)).await?;
            let actions = plan_batch(&docs, &existing)?;
            missing_vectors(&docs, &actions)
        };
        let mut embedded = 0;
        for _ in 0..=MAX_REPLANS {
            embedded += self.embed_into(&mut docs, &need).await?;
            match self.inner.backend.write_batch(docs, checkpoint).await? {
                Written::Done(mut report) => {
                    report.embedded = embedded;
                    return Ok(BatchOnce::Written(report));
                }
                Written::Replayed(report) => return Ok(BatchOnce::Replayed(report)),
                Written::NeedVectors(back, missing) => {
                    tracing::debug!(
                        documents = missing.len(),
                        "rows changed while the batch was embedded; embedding again"
                    );
                    docs = back;
                    need = missing;
                }
            }
        }
        Err(Error::Conflict {
            reason: format!("the batch's keys kept changing under concurrent writers ({MAX_REPLANS} attempts); retry"),
        })
    }

    /// Embeds the documents that have no embedding yet (title and content, as
    /// [`batch`](Self::batch) does, in the embedder's batch size) and returns how many: for
    /// [`insert_new`](Self::insert_new) callers with documents still to embed. Every document is
    /// validated first (errors name the index, `documents[3].title`).
    pub async fn embed_missing(&self, docs: &mut [NewDocument]) -> Result<usize> {
        self.writable("embed_missing")?;
        let dims = self.dimensions();
        for (i, d) in docs.iter().enumerate() {
            d.validate(dims).map_err(|e| super::index_field(e, i))?;
        }
        let need: Vec<usize> =
            (0..docs.len()).filter(|&i| docs.get(i).is_some_and(|d| d.embedding.is_none())).collect();
        self.embed_into(docs, &need).await
    }

    /// Embeds the documents at `indexes` (title and content), storing the vectors in them.
    async fn embed_into(&self, docs: &mut [NewDocument], indexes: &[usize]) -> Result<usize> {
        if indexes.is_empty() {
            return Ok(0);
        }
        let texts: Vec<String> = indexes.iter().filter_map(|&i| docs.get(i)).map(NewDocument::embedding_text).collect();
        let vectors = embed_checked(&self.inner.embedder, &texts).await?;
        for (&i, v) in indexes.iter().zip(vectors) {
            if let Some(d) = docs.get_mut(i) {
                d.embedding = Some(v);
            }
        }
        Ok(indexes.len())
    }
}
