//! [`VectorStore`]: the public API over a backend, an embedder and a cache.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::backend::{Backend, IndexInfo, IndexSpec, PoolStats, StorageStats};
use crate::cache::{Cache, CacheStats};
use crate::document::{
    validate_key, BatchOnce, BatchReport, Document, DocumentPatch, DocumentRef, NewDocument, SearchOptions,
    UpsertOutcome,
};
use crate::embedder::{embed_checked, Embedder};
use crate::error::{Error, Result};

mod builder;
mod by_filter;
mod counted;
mod list;
mod result_cache;
mod search;
mod select;
mod tune;
mod tune_options;
mod write;

use builder::Config;
pub use builder::{
    StorageConfig, VectorStoreBuilder, DEFAULT_DB_PATH, DEFAULT_MAX_REPLICA_LAG, DEFAULT_POOL_SIZE, DEFAULT_TABLE,
    DEFAULT_TEXT_CONFIG,
};
use counted::Counted;
pub use counted::EmbedderStats;
pub use list::{ListOptions, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use result_cache::ResultCache;
pub use tune_options::{TuneKnob, TuneOptions, TuneReport, TuneStep, MAX_TUNE_QUERIES};

/// Everything `stats` reports.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Storage counts and sizes.
    pub storage: StorageStats,
    /// Embedding model id.
    pub model: String,
    /// Vector dimensions.
    pub dimensions: usize,
    /// Cache counters of this store instance.
    pub cache: CacheStats,
    /// Embedder counters of this store instance.
    pub embedder: EmbedderStats,
    /// Read replicas: health, lag and share of reads (PostgreSQL with read replicas only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::ReplicationStats>,
}

/// A document store with semantic search. Cheap to clone (shared inside an `Arc`).
///
/// Scores are cosine similarity (`1 - cosine distance`), from -1 to 1, higher is closer.
#[derive(Clone, Debug)]
pub struct VectorStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Box<dyn Backend>,
    embedder: Counted,
    cache: Arc<ResultCache>,
    /// Set by the builder or environment (else the index's tuning or the default applies).
    ef_search: Option<u32>,
    probes: Option<u32>,
    /// Opened with [`VectorStoreBuilder::read_only`]: every write is refused.
    read_only: bool,
    /// Set by [`VectorStore::close`]: every later call is [`Error::Closed`] (searches too,
    /// cached ones included).
    closed: std::sync::atomic::AtomicBool,
}

impl VectorStore {
    /// A builder; see [`VectorStoreBuilder`].
    pub fn builder() -> VectorStoreBuilder {
        VectorStoreBuilder::default()
    }

    pub(crate) async fn open(
        config: Config,
        storage: StorageConfig,
        embedder: Arc<dyn Embedder>,
        cache: Arc<dyn Cache>,
    ) -> Result<Self> {
        let dims = embedder.dimensions();
        let model = embedder.model_id().to_string();
        let backend = crate::backend::open(
            storage,
            &model,
            dims,
            &config.text_config,
            config.rum,
            config.read_only,
            &config.replicas,
        )
        .await?;
        let positions = backend.replication().is_some();
        // Cache key prefix: names the storage and the model, so stores on other tables,
        // databases or models that share one Redis never read each other's entries. In braces,
        // a Redis Cluster hash tag: every key of the store is in one slot, so its generation and
        // the results cached under it are on one master and fail over together.
        let namespace =
            format!("mk:{{{:016x}}}", xxh3_128(format!("{}|{}|{}", backend.identity(), model, dims).as_bytes()) as u64);
        Ok(VectorStore {
            inner: Arc::new(Inner {
                backend,
                embedder: Counted::new(embedder),
                // A read-only store caches no results: the writer is another process, whose
                // writes would not invalidate them.
                cache: Arc::new(ResultCache::new(
                    cache,
                    namespace,
                    config.result_ttl,
                    config.cache_results && !config.read_only,
                    positions,
                )),
                ef_search: config.ef_search,
                probes: config.probes,
                read_only: config.read_only,
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The key prefix of this store's background jobs: names the storage (not the model, so
    /// a job outlives a model change).
    #[cfg(feature = "redis")]
    pub(crate) fn jobs_namespace(&self) -> String {
        format!("{:016x}", xxh3_128(self.inner.backend.identity().as_bytes()) as u64)
    }

    /// The embedder's vector size.
    pub fn dimensions(&self) -> usize {
        self.inner.embedder.dimensions()
    }

    /// The embedder's model id.
    pub fn model(&self) -> &str {
        self.inner.embedder.model_id()
    }

    /// `postgres` or `embedded`.
    pub fn backend_kind(&self) -> &'static str {
        self.inner.backend.kind()
    }

    /// Whether the store was opened with [`VectorStoreBuilder::read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// [`Error::Unsupported`] naming `operation` when the store is read-only. Checked before
    /// anything else, so a refused write costs no embedder call.
    pub(crate) fn writable(&self, operation: &str) -> Result<()> {
        self.not_closed()?;
        match self.inner.read_only {
            false => Ok(()),
            true => Err(Error::Unsupported {
                operation: format!(
                    "{operation} on a store opened read-only ({}); open it without read_only to write",
                    self.inner.backend.identity()
                ),
            }),
        }
    }

    /// The embedder (wrapped in this store's counters).
    pub fn embedder(&self) -> &dyn Embedder {
        &self.inner.embedder
    }

    /// Stores one document and returns it as stored. With a key, behaves like [`upsert`](Self::upsert).
    pub async fn create(&self, doc: NewDocument) -> Result<Document> {
        self.writable("create")?;
        // Validated here too so a single document's errors name the bare field (`title`).
        doc.validate(self.dimensions())?;
        let report = self.batch(vec![doc]).await?;
        self.get(only_id(&report)?).await
    }

    /// Stores many documents in one transaction (all or nothing), embedding in chunks of the
    /// embedder's batch size and writing with the backend's bulk path. Keyed documents upsert;
    /// unchanged ones cost no embedder call. Field errors name the document's index,
    /// e.g. `documents[3].title`.
    pub async fn batch(&self, docs: Vec<NewDocument>) -> Result<BatchReport> {
        self.writable("batch")?;
        if docs.is_empty() {
            return Ok(BatchReport::default());
        }
        let dims = self.dimensions();
        for (i, d) in docs.iter().enumerate() {
            d.validate(dims).map_err(|e| index_field(e, i))?;
        }
        let report = self.write_planned(docs).await?;
        self.invalidate().await;
        Ok(report)
    }

    /// [`batch`](Self::batch), at most once per `checkpoint` name: the transaction that writes
    /// the documents also records the name and the batch's report, and a batch whose name is
    /// already recorded writes nothing (and costs no embedder call) and answers
    /// [`BatchOnce::Replayed`] with the recorded report. Two writers of the same name at once:
    /// the second waits for the first to commit (then is answered its report) or roll back
    /// (then writes). This makes a retried chunk of an import (after a crash, a lost
    /// connection, a timeout) exact: no document twice, whether or not it has a key.
    ///
    /// Names are per store (table or file), 1 to 200 characters; they stay recorded until
    /// [`forget_checkpoints`](Self::forget_checkpoints) deletes them.
    pub async fn batch_once(&self, checkpoint: &str, docs: Vec<NewDocument>) -> Result<BatchOnce> {
        self.writable("batch_once")?;
        validate_checkpoint(checkpoint)?;
        let dims = self.dimensions();
        for (i, d) in docs.iter().enumerate() {
            d.validate(dims).map_err(|e| index_field(e, i))?;
        }
        let outcome = self.write_planned_once(docs, Some(checkpoint)).await?;
        if let BatchOnce::Written(_) = outcome {
            self.invalidate().await;
        }
        Ok(outcome)
    }

    /// Deletes the recorded checkpoints whose names start with `prefix` (see
    /// [`batch_once`](Self::batch_once)); how many. A batch retried after this is written again.
    pub async fn forget_checkpoints(&self, prefix: &str) -> Result<u64> {
        self.writable("forget_checkpoints")?;
        if prefix.is_empty() {
            return Err(Error::invalid("prefix", "must not be empty"));
        }
        self.inner.backend.forget_checkpoints(prefix).await
    }

    /// The fast path for callers who bring vectors and know their documents are new: inserts
    /// `rows` (borrowed, see [`DocumentRef`]) in one transaction, all or nothing, with no key
    /// lookup, no lock and no embedder call. On PostgreSQL the rows go from the caller's
    /// buffers into one binary COPY without being copied; the embedded store copies them once.
    ///
    /// Every row is validated before anything is written (errors name the row:
    /// `documents[3].embedding`); a key or id given twice is an [`Error::InvalidInput`]; a key
    /// or id already stored is an [`Error::Conflict`] and nothing is written. Use
    /// [`batch`](Self::batch) for keys that may exist (upsert) or documents to embed.
    ///
    /// ```no_run
    /// # async fn run(store: marketking_core::VectorStore, vectors: Vec<Vec<f32>>) -> marketking_core::Result<()> {
    /// use marketking_core::DocumentRef;
    /// let titles: Vec<String> = (0..vectors.len()).map(|i| format!("doc {i}")).collect();
    /// let rows = titles.iter().zip(&vectors).map(|(t, v)| DocumentRef::new(t, "body", v));
    /// let report = store.insert_new(rows).await?;
    /// assert_eq!(report.created, vectors.len());
    /// # Ok(()) }
    /// ```
    pub async fn insert_new<'a, I>(&self, rows: I) -> Result<BatchReport>
    where
        I: IntoIterator<Item = DocumentRef<'a>>,
    {
        self.writable("insert_new")?;
        let rows: Vec<DocumentRef<'a>> = rows.into_iter().collect();
        if rows.is_empty() {
            return Ok(BatchReport::default());
        }
        let dims = self.dimensions();
        let mut keys = std::collections::HashMap::new();
        let mut ids = std::collections::HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            r.validate(dims).map_err(|e| index_field(e, i))?;
            if let Some(first) = r.key.and_then(|k| keys.insert(k, i)) {
                return Err(index_field(Error::invalid("key", format!("is the key of documents[{first}] too")), i));
            }
            if let Some(first) = r.id.and_then(|id| ids.insert(id, i)) {
                return Err(index_field(Error::invalid("id", format!("is the id of documents[{first}] too")), i));
            }
        }
        let report = self.inner.backend.insert_new(&rows).await;
        // A failed write may still have committed (a lost connection during COMMIT): the
        // cached results are dropped either way.
        self.invalidate().await;
        report
    }

    /// Inserts or updates the document with `doc.key` (required). Unchanged title and content
    /// make no embedder call.
    pub async fn upsert(&self, doc: NewDocument) -> Result<(Document, UpsertOutcome)> {
        self.writable("upsert")?;
        match &doc.key {
            None => return Err(Error::invalid("key", "is required for upsert")),
            Some(k) => validate_key(k)?,
        }
        doc.validate(self.dimensions())?;
        let report = self.batch(vec![doc]).await?;
        let outcome = if report.created == 1 {
            UpsertOutcome::Created
        } else if report.updated == 1 {
            UpsertOutcome::Updated
        } else {
            UpsertOutcome::Unchanged
        };
        Ok((self.get(only_id(&report)?).await?, outcome))
    }

    /// The document with this id (without its embedding).
    pub async fn get(&self, id: i64) -> Result<Document> {
        self.inner.backend.get(id, false).await?.ok_or(Error::NotFound { id })
    }

    /// The document with this id, with its embedding.
    pub async fn get_with_embedding(&self, id: i64) -> Result<Document> {
        self.inner.backend.get(id, true).await?.ok_or(Error::NotFound { id })
    }

    /// The document with this caller key.
    pub async fn get_by_key(&self, key: &str) -> Result<Document> {
        validate_key(key)?;
        self.inner.backend.get_by_key(key, false).await?.ok_or_else(|| Error::KeyNotFound { key: key.to_string() })
    }

    /// Changes a document; re-embeds only when the title or content change.
    pub async fn update(&self, id: i64, patch: DocumentPatch) -> Result<Document> {
        self.writable("update")?;
        patch.validate()?;
        let current = self.get(id).await?;
        if patch.is_empty() {
            return Ok(current);
        }
        let title = patch.title.as_deref().unwrap_or(&current.title);
        let content = patch.content.as_deref().unwrap_or(&current.content);
        let embedding = if title != current.title || content != current.content {
            let text = crate::document::embedding_text(title, content);
            Some(embed_checked(&self.inner.embedder, &[text]).await?.remove(0))
        } else {
            None
        };
        let doc = self.inner.backend.update(id, &patch, embedding).await?.ok_or(Error::NotFound { id })?;
        self.invalidate().await;
        Ok(doc)
    }

    /// Deletes a document; [`Error::NotFound`] if there is none with this id.
    pub async fn delete(&self, id: i64) -> Result<()> {
        self.writable("delete")?;
        if !self.inner.backend.delete(id).await? {
            return Err(Error::NotFound { id });
        }
        self.invalidate().await;
        Ok(())
    }

    /// Counts, sizes, index, cache and embedder counters.
    pub async fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            storage: self.inner.backend.stats().await?,
            model: self.model().to_string(),
            dimensions: self.dimensions(),
            cache: self.inner.cache.stats(),
            embedder: self.inner.embedder.snapshot(),
            replication: self.inner.backend.replication(),
        })
    }

    /// Read routing figures of a store with read replicas (no storage query); `None` without.
    pub fn replication_stats(&self) -> Option<crate::ReplicationStats> {
        self.inner.backend.replication()
    }

    /// This store's cache counters (no storage query; cheap enough to call per request).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Connection pool figures (PostgreSQL; `None` for the embedded store).
    pub fn pool_stats(&self) -> Option<PoolStats> {
        self.inner.backend.pool()
    }

    /// This store's embedder counters (no storage query).
    pub fn embedder_stats(&self) -> EmbedderStats {
        self.inner.embedder.snapshot()
    }

    /// Builds (or replaces) the vector index with the spec's build settings, then refreshes
    /// planner statistics (unless `spec.skip_analyze`).
    pub async fn create_index(&self, spec: IndexSpec) -> Result<IndexInfo> {
        self.writable("create_index")?;
        spec.validate()?;
        let info = self.inner.backend.create_index(&spec).await?;
        if !spec.skip_analyze {
            self.inner.backend.analyze().await?;
        }
        self.invalidate().await;
        Ok(info)
    }

    /// Drops the vector index; false when there was none.
    pub async fn drop_index(&self) -> Result<bool> {
        self.writable("drop_index")?;
        let dropped = self.inner.backend.drop_index().await?;
        self.invalidate().await;
        Ok(dropped)
    }

    /// Rebuilds the existing vector index.
    pub async fn rebuild_index(&self, concurrently: bool) -> Result<IndexInfo> {
        self.writable("rebuild_index")?;
        let info = self.inner.backend.rebuild_index(concurrently).await?;
        self.invalidate().await;
        Ok(info)
    }

    /// Refreshes planner statistics (`ANALYZE`); run after bulk loads.
    pub async fn analyze(&self) -> Result<()> {
        self.writable("analyze")?;
        self.inner.backend.analyze().await
    }

    /// Closes the store, for every clone of it: the storage's connections (PostgreSQL) or the
    /// file and its process lock (embedded, after its write-ahead log is checkpointed into the
    /// file) are released now, instead of whenever the last clone is dropped, and a failure
    /// to do so is returned instead of logged. Operations in flight finish; every later call
    /// is [`Error::Closed`]. Closing twice is fine. Dropping the store without closing it is
    /// safe too (nothing is lost): `close` is for releasing early and for seeing errors.
    pub async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.backend.close().await
    }

    /// Checks the storage is reachable and migrated.
    pub async fn ping(&self) -> Result<()> {
        self.inner.backend.ping().await
    }

    /// Checks the cache answers (a counter read). The store works without it.
    pub async fn ping_cache(&self) -> Result<()> {
        self.inner.cache.ping().await
    }

    /// After a committed write: invalidates cached results (see [`ResultCache::invalidate`]);
    /// with read replicas, then reads where the write is in the primary's history, so this
    /// store's later reads see it and results cached under the new generation are read at
    /// least that far (the position is read after the bump, so it is past every write the
    /// generation hides).
    async fn invalidate(&self) {
        let generation = self.inner.cache.invalidate().await;
        if let Some(position) = self.inner.backend.after_write().await {
            if let Some(generation) = generation {
                self.inner.cache.record_position(generation, position).await;
            }
        }
    }

    /// Where this store's last write is in the primary's history, for
    /// [`SearchOptions::consistent_after`] in another process (or through another store).
    /// `None` without read replicas (every read sees every committed write) and before the
    /// first write. This store's own reads always see its writes.
    pub fn write_position(&self) -> Option<crate::WritePosition> {
        self.inner.backend.write_position()
    }

    /// The options with the store's configured ef_search and probes filled in (the backend
    /// fills what is still unset from the index's tuning, then the defaults).
    fn resolve(&self, opts: &SearchOptions) -> Result<SearchOptions> {
        self.not_closed()?;
        let mut o = opts.clone();
        o.ef_search = o.ef_search.or(self.inner.ef_search);
        o.probes = o.probes.or(self.inner.probes);
        Ok(o)
    }

    /// [`Error::Closed`] once [`close`](Self::close) was called.
    fn not_closed(&self) -> Result<()> {
        match self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            true => Err(Error::Closed),
            false => Ok(()),
        }
    }
}

/// The id of a one-document batch.
fn only_id(report: &BatchReport) -> Result<i64> {
    report.ids.first().copied().ok_or_else(|| Error::storage("a one-document write reported no id"))
}

/// Longest checkpoint name of [`VectorStore::batch_once`].
const MAX_CHECKPOINT_CHARS: usize = 200;

fn validate_checkpoint(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0 || n > MAX_CHECKPOINT_CHARS {
        return Err(Error::invalid("checkpoint", format!("must be 1 to {MAX_CHECKPOINT_CHARS} characters, got {n}")));
    }
    Ok(())
}

/// Prefixes a field error with the document's position in a batch.
fn index_field(e: Error, i: usize) -> Error {
    match e {
        Error::InvalidInput { field, reason } => {
            Error::InvalidInput { field: format!("documents[{i}].{field}"), reason }
        }
        other => other,
    }
}
