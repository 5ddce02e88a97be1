//! Embedded single-file store: documents in a SQLite file, every vector in memory, exact scores.
//!
//! # Design
//!
//! * **SQLite for durability.** The file is a SQLite database (bundled through `rusqlite`, so there
//!   is nothing to install) in WAL mode with `synchronous=FULL`: a committed batch survives a
//!   crash or power loss, and a process killed in the middle of a batch leaves a file that opens
//!   with none of that batch (each batch is one transaction). A small `marketking_meta` table
//!   records the schema version, the embedding model and the dimension count; migrations are
//!   versioned and idempotent, and a file made for another model or dimension count is refused
//!   with [`Error::SchemaMismatch`].
//! * **One writing process at a time.** Opening takes an exclusive advisory lock on a sidecar
//!   file `<path>.lock` (holding the owner's pid) for the backend's whole lifetime. The vectors
//!   are cached in memory, so a second writer would make the first one's cache silently stale:
//!   a second open fails at once with a clear [`Error::Locked`] instead (see `lock.rs`). A
//!   read-only open takes no lock and follows the writer's commits (see `reader.rs`).
//! * **Only our own files.** A file that is not SQLite, or is another program's SQLite
//!   database, is refused before anything is written to it (see `schema.rs`).
//! * **A write its caller gave up on does not commit.** The SQLite work of a write runs on a
//!   blocking thread that outlives a dropped future; it checks the caller's
//!   [`CommitGate`](crate::CommitGate) before committing.
//! * **Vectors in one contiguous buffer.** At open, every vector is loaded into a single
//!   row-major `Vec<f32>`, normalised to unit length, next to parallel arrays of ids and per-row
//!   filter data (source, metadata, creation time). Search is an exact brute-force scan: the score
//!   of a row is the dot product of two unit vectors, which equals the cosine similarity of the
//!   stored vectors (up to float rounding), so results match PostgreSQL's exact `<=>` ordering.
//!   A contiguous buffer scans at memory bandwidth without pointer chasing, and large stores are
//!   scanned on all cores with `std::thread::scope`, merging per-thread top-k heaps. The memory
//!   state changes only after the SQLite commit succeeded, so it never shows uncommitted data.
//!   Stored vectors are kept as written (f32 little-endian blobs); the normalised copies live only
//!   in memory, and `include_embedding` returns the stored vector.
//! * **Saved codes for large stores.** A writer of a store over 4M values saves the int8 codes
//!   of its memory index next to the file when it closes (`snapshot.rs`); the next open reads
//!   them after checking them row by row against the table, instead of quantizing every vector.
//! * **An approximate index for large stores.** An HNSW graph (usearch) over the same int8
//!   codes nominates candidates instead of the scan once it exists (`create_index`, or on its own
//!   for stores of at least 2^28 values); it follows every write, is saved next to the file at
//!   close and loaded by the next open when the rows still match, else rebuilt in the
//!   background (`ann.rs`, `index.rs`). Candidates are re-ranked exactly either way.
//! * **Writers are serialised** by an async mutex, so the existing rows a batch plans against
//!   cannot change before it writes. The store embeds before it calls the backend, so neither
//!   that mutex nor a SQLite lock is held during (possibly slow, remote) embedder calls. All
//!   SQLite work runs on the blocking thread pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{Backend, IndexInfo, IndexSpec, SearchQuery, StorageStats, Written};
use crate::document::{Document, DocumentPatch, NewDocument, SearchHit, SearchOptions};
use crate::error::{Error, Result};
use crate::gate::CommitGate;
use crate::plan::{missing_vectors, needs_stored_vectors, plan_batch, Action, Existing};

mod ann;
mod by_filter;
mod file;
mod index;
mod lexemes;
mod lock;
mod mem_index;
mod reader;
mod rows;
mod scan;
mod schema;
mod snapshot;
mod text;

use file::Shared;

/// The embedded backend. Cheap to share: the state lives behind an `Arc` so blocking work can
/// run on tokio's blocking pool.
pub(crate) struct EmbeddedBackend {
    shared: Arc<Shared>,
    /// Serialises writers (batch, update, delete) across their async steps.
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("path", &self.shared.path)
            .field("dims", &self.shared.dims)
            .field("read_only", &self.shared.reader.is_some())
            .field("documents", &self.shared.mem.try_read().map(|m| m.len()).ok())
            .finish_non_exhaustive()
    }
}

impl EmbeddedBackend {
    /// Opens (or creates) the store at `path` for `model` with `dims` dimensions: takes the
    /// process lock, configures SQLite, migrates, checks the model and loads every vector.
    /// `read_only` opens an existing, current file without the lock and loads nothing yet
    /// (`reader.rs`).
    pub(crate) async fn open(
        path: &Path,
        model: &str,
        dims: usize,
        text_config: &str,
        read_only: bool,
    ) -> Result<Self> {
        let path = path.to_path_buf();
        let model = model.to_string();
        let text_config = text_config.to_string();
        let shared = blocking(move || match read_only {
            true => Shared::open_read_only(&path, &model, dims, &text_config),
            false => Shared::open(&path, &model, dims, &text_config),
        })
        .await?;
        let shared = Arc::new(shared);
        let opened = shared.clone();
        blocking(move || {
            index::start_at_open(&opened);
            Ok(())
        })
        .await?;
        Ok(EmbeddedBackend { shared, writer: tokio::sync::Mutex::new(()) })
    }

    /// Runs `f` on the blocking pool with the shared state.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
        if self.shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let shared = self.shared.clone();
        blocking(move || f(&shared)).await
    }
}

/// Runs blocking work off the async threads; panics propagate.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::storage_with("embedded store task was cancelled", e)),
    }
}

fn storage(msg: impl Into<String>) -> Error {
    Error::storage(msg)
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn existing(&self, keys: &[String], with_vectors: bool) -> Result<HashMap<String, Existing>> {
        let keys = keys.to_vec();
        self.run(move |s| s.existing(&keys, with_vectors)).await
    }

    async fn write_batch(&self, docs: Vec<NewDocument>, checkpoint: Option<&str>) -> Result<Written> {
        // Writers are serialised, so the rows read here cannot change before the write.
        let _writer = self.writer.lock().await;
        let checkpoint = checkpoint.map(str::to_string);
        if let Some(name) = checkpoint.clone() {
            if let Some(report) = self.run(move |s| s.checkpoint(&name)).await? {
                return Ok(Written::Replayed(report));
            }
        }
        let keys: Vec<String> = docs.iter().filter_map(|d| d.key.clone()).collect();
        let with_vectors = needs_stored_vectors(&docs);
        let existing =
            if keys.is_empty() { HashMap::new() } else { self.run(move |s| s.existing(&keys, with_vectors)).await? };
        let actions = plan_batch(&docs, &existing)?;
        drop(existing);
        let missing = missing_vectors(&docs, &actions);
        if !missing.is_empty() {
            return Ok(Written::NeedVectors(docs, missing));
        }
        let gate = CommitGate::current();
        Ok(Written::Done(self.run(move |s| s.write(docs, actions, gate.as_ref(), checkpoint.as_deref())).await?))
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<crate::document::BatchReport>> {
        let name = name.to_string();
        self.run(move |s| s.checkpoint(&name)).await
    }

    async fn forget_checkpoints(&self, prefix: &str) -> Result<u64> {
        let _writer = self.writer.lock().await;
        let prefix = prefix.to_string();
        self.run(move |s| s.forget_checkpoints(&prefix)).await
    }

    async fn insert_new(&self, rows: &[crate::document::DocumentRef<'_>]) -> Result<crate::document::BatchReport> {
        // The write runs on a blocking thread, which needs the rows it writes: here they are
        // copied (the memory index keeps its own unit-length copy of each vector anyway).
        let docs: Vec<NewDocument> = rows.iter().map(|r| r.to_owned_document()).collect();
        let _writer = self.writer.lock().await;
        let gate = CommitGate::current();
        self.run(move |s| {
            let actions = vec![Action::Insert; docs.len()];
            s.write_new(docs, actions, gate.as_ref())
        })
        .await
    }

    async fn get(&self, id: i64, with_embedding: bool) -> Result<Option<Document>> {
        self.run(move |s| s.get(id, with_embedding)).await
    }

    async fn get_by_key(&self, key: &str, with_embedding: bool) -> Result<Option<Document>> {
        let key = key.to_string();
        self.run(move |s| s.get_by_key(&key, with_embedding)).await
    }

    async fn update(&self, id: i64, patch: &DocumentPatch, embedding: Option<Vec<f32>>) -> Result<Option<Document>> {
        let _writer = self.writer.lock().await;
        let patch = patch.clone();
        let gate = CommitGate::current();
        self.run(move |s| s.update(id, &patch, embedding, gate.as_ref())).await
    }

    async fn delete(&self, id: i64) -> Result<bool> {
        let _writer = self.writer.lock().await;
        let gate = CommitGate::current();
        self.run(move |s| s.delete(id, gate.as_ref())).await
    }

    async fn search(
        &self,
        query: SearchQuery<'_>,
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Result<Vec<SearchHit>> {
        let vector = query.vector.map(<[f32]>::to_vec);
        let text = query.text.map(str::to_string);
        let opts = opts.clone();
        let ids_only = query.ids_only;
        self.run(move |s| s.search(vector.as_deref(), text.as_deref(), &opts, exclude, ids_only)).await
    }

    async fn count(&self, filter: &crate::filter::Filter) -> Result<u64> {
        let filter = filter.clone();
        self.run(move |s| s.count(&filter)).await
    }

    async fn delete_where(&self, filter: &crate::filter::Filter) -> Result<u64> {
        let _writer = self.writer.lock().await;
        let gate = CommitGate::current();
        let filter = filter.clone();
        self.run(move |s| s.delete_where(&filter, gate.as_ref())).await
    }

    async fn list(
        &self,
        after_id: i64,
        limit: usize,
        with_embedding: bool,
        filter: &crate::filter::Filter,
    ) -> Result<Vec<Document>> {
        let filter = filter.clone();
        self.run(move |s| s.list(after_id, limit, with_embedding, &filter)).await
    }

    async fn stats(&self) -> Result<StorageStats> {
        self.run(|s| s.stats()).await
    }

    async fn create_index(&self, spec: &IndexSpec) -> Result<IndexInfo> {
        let spec = *spec;
        self.run(move |s| s.create_index(&spec)).await
    }

    async fn drop_index(&self) -> Result<bool> {
        self.run(|s| s.drop_index()).await
    }

    async fn rebuild_index(&self, _concurrently: bool) -> Result<IndexInfo> {
        self.run(|s| s.rebuild_index()).await
    }

    async fn analyze(&self) -> Result<()> {
        self.run(|s| Ok(s.conn().execute_batch("ANALYZE")?)).await
    }

    async fn explain(&self, query: SearchQuery<'_>, opts: &SearchOptions) -> Result<String> {
        let (n, graph) = match self.shared.mem.read() {
            Ok(m) => (m.len(), m.ann.as_ref().map(|a| a.spec)),
            Err(_) => (0, None),
        };
        let pool = file::candidate_pool(opts);
        Ok(match (query.vector.is_some(), opts.exact, graph) {
            (false, _, _) => "full-text search (FTS5), no vector scan".to_string(),
            (true, true, _) => "exact pass over every stored f32 vector in the file".to_string(),
            (true, false, Some(spec)) => format!(
                "HNSW graph over the int8 codes of {n} rows (m {}, ef_construction {}) exploring {} candidates, then exact re-rank of the best {pool} from the file's f32 vectors (an int8 scan instead when a filter leaves the graph too few)",
                spec.m,
                spec.ef_construction,
                pool.max(opts.ef_search.map_or(ann::DEFAULT_EF, |e| e as usize)),
            ),
            (true, false, None) => format!(
                "int8 scan of {n} rows in memory, then exact re-rank of the best {pool} candidates from the file's f32 vectors"
            ),
        })
    }

    async fn close(&self) -> Result<()> {
        // Writers finish first: a write in flight commits (or not) before the file closes.
        let _writer = self.writer.lock().await;
        let shared = self.shared.clone();
        blocking(move || shared.close()).await
    }

    async fn ping(&self) -> Result<()> {
        self.run(|s| {
            let v: String =
                s.conn()
                    .query_row("SELECT value FROM marketking_meta WHERE key = 'schema_version'", [], |r| r.get(0))?;
            if v == schema::SCHEMA_VERSION.to_string() {
                Ok(())
            } else {
                Err(storage(format!("schema version is {v}, expected {}", schema::SCHEMA_VERSION)))
            }
        })
        .await
    }

    fn identity(&self) -> String {
        format!("embedded:{}", self.shared.path.display())
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}
