//! Embedded single-file store: documents in a SQLite file, every vector in memory, exact search.
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
//! * **One process at a time.** Opening takes an exclusive advisory lock on a sidecar file
//!   `<path>.lock` (holding the owner's pid) for the backend's whole lifetime. The vectors are
//!   cached in memory, so a second writer would make the first one's cache silently stale:
//!   a second open fails at once with a clear [`Error::Storage`] instead (see `lock.rs`).
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
//! * **Writers are serialised** by an async mutex, so the existing rows a batch plans against
//!   cannot change before it writes. The store embeds before it calls the backend, so neither
//!   that mutex nor a SQLite lock is held during (possibly slow, remote) embedder calls. All
//!   SQLite work runs on the blocking thread pool.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;

use crate::backend::{finish_hits, Backend, IndexInfo, IndexSpec, SourceCount, StorageStats, Written};
use crate::document::{BatchReport, Document, DocumentPatch, NewDocument, SearchHit, SearchOptions};
use crate::error::{Error, Result};
use crate::gate::CommitGate;
use crate::plan::{missing_vectors, needs_stored_vectors, plan_batch, Action, Existing};
use crate::similarity::dot;

mod lock;
mod schema;

/// Scans with more floats than this use several threads.
const PARALLEL_MIN_FLOATS: usize = 2_000_000;
/// Upper bound on scan threads.
const MAX_SCAN_THREADS: usize = 8;

/// Document columns, in the order [`read_document`] expects.
const DOC_COLUMNS: &str = "id, title, content, source, metadata, key, created_at, updated_at";

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
            .field("documents", &self.shared.mem.try_read().map(|m| m.len()).ok())
            .finish_non_exhaustive()
    }
}

/// State shared with blocking tasks. Field order matters: the lock file is dropped (and the
/// lock released) only after the connection is closed.
struct Shared {
    /// Canonical path of the database file.
    path: PathBuf,
    /// Vector dimensions.
    dims: usize,
    /// The one SQLite connection. Lock order: `conn` before `mem`, never the reverse.
    conn: Mutex<Connection>,
    /// Every vector and the per-row filter data, in step with committed data.
    mem: RwLock<MemIndex>,
    /// Exclusive advisory lock on `<path>.lock`, held for the backend's lifetime.
    _lock: lock::ProcessLock,
}

impl EmbeddedBackend {
    /// Opens (or creates) the store at `path` for `model` with `dims` dimensions: takes the
    /// process lock, configures SQLite, migrates, checks the model and loads every vector.
    pub(crate) async fn open(path: &Path, model: &str, dims: usize) -> Result<Self> {
        let path = path.to_path_buf();
        let model = model.to_string();
        let shared = blocking(move || Shared::open(&path, &model, dims)).await?;
        Ok(EmbeddedBackend { shared: Arc::new(shared), writer: tokio::sync::Mutex::new(()) })
    }

    /// Runs `f` on the blocking pool with the shared state.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
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
        Err(e) => Err(Error::Storage(format!("embedded store task was cancelled: {e}"))),
    }
}

fn storage(msg: impl Into<String>) -> Error {
    Error::Storage(msg.into())
}

/// The current time, truncated to microseconds (the stored precision), so a document read back
/// equals the one returned by a write.
fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn from_micros(m: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| conversion(format!("timestamp {m} is out of range")))
}

fn conversion(msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Null, msg.into())
}

use crate::vector::{from_le_bytes as decode_vector, to_le_bytes as encode_vector};

/// The vector scaled to unit length (norm computed in f64). Callers pass validated, non-zero
/// vectors; a zero vector stays zero (and then scores 0 against everything).
fn normalize(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if n == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| (f64::from(*x) / n) as f32).collect()
}

fn metadata_text(v: &Value) -> String {
    v.to_string()
}

fn parse_metadata(s: &str) -> rusqlite::Result<Value> {
    serde_json::from_str(s).map_err(|e| conversion(format!("metadata is not valid JSON: {e}")))
}

/// Reads a document from a row selected with [`DOC_COLUMNS`] (plus `embedding` when asked).
fn read_document(row: &Row<'_>, with_embedding: bool, dims: usize) -> rusqlite::Result<Document> {
    let id: i64 = row.get(0)?;
    let embedding = if with_embedding {
        let blob = row.get_ref(8)?.as_blob()?;
        Some(decode_vector(blob, dims).ok_or_else(|| bad_blob(id, blob.len(), dims))?)
    } else {
        None
    };
    Ok(Document {
        id,
        title: row.get(1)?,
        content: row.get(2)?,
        source: row.get(3)?,
        metadata: parse_metadata(row.get_ref(4)?.as_str()?)?,
        key: row.get(5)?,
        created_at: from_micros(row.get(6)?)?,
        updated_at: from_micros(row.get(7)?)?,
        embedding,
    })
}

fn bad_blob(id: i64, len: usize, dims: usize) -> rusqlite::Error {
    conversion(format!("document {id} has a {len}-byte embedding, expected {} ({dims} f32)", 4 * dims))
}

/// `SELECT` of the document columns (and the embedding when asked) with a `WHERE` clause.
fn select_sql(with_embedding: bool, rest: &str) -> String {
    let emb = if with_embedding { ", embedding" } else { "" };
    format!("SELECT {DOC_COLUMNS}{emb} FROM documents {rest}")
}

/// A document's in-memory change, applied after its transaction committed.
struct Pending {
    /// The document.
    id: i64,
    /// New unit vector, if the vector changed (always set for inserts).
    unit: Option<Vec<f32>>,
    /// Source after the write.
    source: Option<String>,
    /// Metadata after the write.
    metadata: Value,
    /// Set for inserts only.
    created_at: Option<DateTime<Utc>>,
}

impl Shared {
    fn open(path: &Path, model: &str, dims: usize) -> Result<Shared> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| storage(format!("cannot create directory {}: {e}", parent.display())))?;
        }
        let lock = lock::acquire(path)?;
        let mut conn = Connection::open(path)
            .map_err(|e| storage(format!("cannot open embedded store {}: {e}", path.display())))?;
        schema::check_owner(&conn, path)?;
        schema::configure(&conn).map_err(|e| storage(format!("cannot open embedded store {}: {e}", path.display())))?;
        schema::migrate(&mut conn, path, model, dims)?;
        let canonical = path.canonicalize().map_err(|e| storage(format!("cannot resolve {}: {e}", path.display())))?;
        let mem = load(&conn, dims)?;
        tracing::debug!(path = %canonical.display(), documents = mem.len(), "opened embedded store");
        Ok(Shared { path: canonical, dims, conn: Mutex::new(conn), mem: RwLock::new(mem), _lock: lock })
    }

    /// The connection. A panic while it was held cannot leave a transaction open (the
    /// `Transaction` guard rolls back on drop), so a poisoned lock is still usable.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mem(&self) -> RwLockReadGuard<'_, MemIndex> {
        self.mem.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mem_mut(&self) -> RwLockWriteGuard<'_, MemIndex> {
        self.mem.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored rows of these keys (with their vectors when `with_vectors`).
    fn existing(&self, keys: &[String], with_vectors: bool) -> Result<HashMap<String, Existing>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(if with_vectors {
            "SELECT id, title, content, source, metadata, embedding FROM documents WHERE key = ?1"
        } else {
            "SELECT id, title, content, source, metadata FROM documents WHERE key = ?1"
        })?;
        let mut out = HashMap::new();
        for key in keys {
            let found = stmt
                .query_row([key], |r| {
                    Ok(Existing {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        content: r.get(2)?,
                        source: r.get(3)?,
                        metadata: parse_metadata(r.get_ref(4)?.as_str()?)?,
                        embedding: match with_vectors {
                            true => decode_vector(r.get_ref(5)?.as_blob()?, self.dims),
                            false => None,
                        },
                    })
                })
                .optional()?;
            if let Some(e) = found {
                out.insert(key.clone(), e);
            }
        }
        Ok(out)
    }

    /// Writes a planned, embedded batch in one transaction, then updates memory. `gate` is the
    /// caller's [`CommitGate`]: this runs on a blocking thread that goes on when the caller's
    /// future is dropped, so it must check itself whether the caller still wants the write.
    fn write(&self, docs: Vec<NewDocument>, actions: Vec<Action>, gate: Option<&CommitGate>) -> Result<BatchReport> {
        let mut conn = self.conn();
        let now = now_micros();
        let now_dt = from_micros(now)?;
        let mut report = BatchReport { ids: Vec::with_capacity(docs.len()), ..Default::default() };
        let mut pending = Vec::with_capacity(docs.len());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO documents (title, content, source, metadata, key, embedding, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            )?;
            let mut touch =
                tx.prepare_cached("UPDATE documents SET source = ?2, metadata = ?3, updated_at = ?4 WHERE id = ?1")?;
            let mut rewrite = tx.prepare_cached(
                "UPDATE documents SET title = ?2, content = ?3, source = ?4, metadata = ?5, embedding = ?6,
                 updated_at = ?7 WHERE id = ?1",
            )?;
            // Consumes the documents one by one, so raw vectors are freed as their unit copies
            // are made: the batch never holds all its vectors twice.
            for (n, (doc, action)) in docs.into_iter().zip(actions).enumerate() {
                if n % 1024 == 1023 {
                    gate.map_or(Ok(()), CommitGate::check)?;
                }
                let meta = metadata_text(&doc.metadata);
                let (id, unit, created_at) = match action {
                    Action::Insert => {
                        let v = vector_of(&doc)?;
                        insert.execute(params![
                            doc.title,
                            doc.content,
                            doc.source,
                            meta,
                            doc.key,
                            encode_vector(v),
                            now
                        ])?;
                        report.created += 1;
                        (tx.last_insert_rowid(), Some(normalize(v)), Some(now_dt))
                    }
                    Action::Touch { id, changed: false } => {
                        report.unchanged += 1;
                        report.ids.push(id);
                        continue;
                    }
                    Action::Touch { id, changed: true } => {
                        expect_one(touch.execute(params![id, doc.source, meta, now])?, id)?;
                        report.updated += 1;
                        (id, None, None)
                    }
                    Action::Rewrite { id } => {
                        let v = vector_of(&doc)?;
                        let n = rewrite.execute(params![
                            id,
                            doc.title,
                            doc.content,
                            doc.source,
                            meta,
                            encode_vector(v),
                            now
                        ])?;
                        expect_one(n, id)?;
                        report.updated += 1;
                        (id, Some(normalize(v)), None)
                    }
                };
                report.ids.push(id);
                pending.push(Pending { id, unit, source: doc.source, metadata: doc.metadata, created_at });
            }
        }
        gate.map_or(Ok(()), CommitGate::enter_commit)?;
        tx.commit()?;
        let mut mem = self.mem_mut();
        for p in pending {
            mem.apply(p);
        }
        Ok(report)
    }

    fn get(&self, id: i64, with_embedding: bool) -> Result<Option<Document>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&select_sql(with_embedding, "WHERE id = ?1"))?;
        Ok(stmt.query_row([id], |r| read_document(r, with_embedding, self.dims)).optional()?)
    }

    fn get_by_key(&self, key: &str, with_embedding: bool) -> Result<Option<Document>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&select_sql(with_embedding, "WHERE key = ?1"))?;
        Ok(stmt.query_row([key], |r| read_document(r, with_embedding, self.dims)).optional()?)
    }

    fn update(
        &self,
        id: i64,
        patch: &DocumentPatch,
        embedding: Option<Vec<f32>>,
        gate: Option<&CommitGate>,
    ) -> Result<Option<Document>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = tx
            .query_row(&select_sql(false, "WHERE id = ?1"), [id], |r| read_document(r, false, self.dims))
            .optional()?;
        let Some(mut doc) = current else {
            return Ok(None);
        };
        if let Some(t) = &patch.title {
            doc.title = t.clone();
        }
        if let Some(c) = &patch.content {
            doc.content = c.clone();
        }
        if let Some(s) = &patch.source {
            doc.source = s.clone();
        }
        if let Some(m) = &patch.metadata {
            doc.metadata = m.clone();
        }
        let now = now_micros();
        doc.updated_at = from_micros(now)?;
        let meta = metadata_text(&doc.metadata);
        let n = match &embedding {
            Some(v) => tx.execute(
                "UPDATE documents SET title = ?2, content = ?3, source = ?4, metadata = ?5, updated_at = ?6,
                 embedding = ?7 WHERE id = ?1",
                params![id, doc.title, doc.content, doc.source, meta, now, encode_vector(v)],
            )?,
            None => tx.execute(
                "UPDATE documents SET title = ?2, content = ?3, source = ?4, metadata = ?5, updated_at = ?6
                 WHERE id = ?1",
                params![id, doc.title, doc.content, doc.source, meta, now],
            )?,
        };
        expect_one(n, id)?;
        gate.map_or(Ok(()), CommitGate::enter_commit)?;
        tx.commit()?;
        self.mem_mut().apply(Pending {
            id,
            unit: embedding.as_deref().map(normalize),
            source: doc.source.clone(),
            metadata: doc.metadata.clone(),
            created_at: None,
        });
        Ok(Some(doc))
    }

    fn delete(&self, id: i64, gate: Option<&CommitGate>) -> Result<bool> {
        let conn = self.conn();
        gate.map_or(Ok(()), CommitGate::enter_commit)?;
        // A single statement commits atomically on its own.
        let n = conn.execute("DELETE FROM documents WHERE id = ?1", [id])?;
        if n > 0 {
            self.mem_mut().remove(id);
        }
        Ok(n > 0)
    }

    fn search(&self, query: &[f32], opts: &SearchOptions, exclude: Option<i64>) -> Result<Vec<SearchHit>> {
        if query.len() != self.dims {
            return Err(Error::DimensionMismatch { expected: self.dims, actual: query.len() });
        }
        let unit = normalize(query);
        // The memory lock is released before the connection is taken (lock order: conn, mem).
        let candidates = {
            let mem = self.mem();
            let threads = scan_threads(mem.len(), self.dims);
            scan(&mem, &unit, opts, exclude, threads)
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&select_sql(opts.include_embedding, "WHERE id = ?1"))?;
        let mut hits = Vec::with_capacity(candidates.len());
        for c in candidates {
            // A row deleted between the scan and this read is skipped.
            if let Some(document) =
                stmt.query_row([c.id], |r| read_document(r, opts.include_embedding, self.dims)).optional()?
            {
                hits.push(SearchHit { score: c.score, document });
            }
        }
        Ok(finish_hits(hits, opts))
    }

    fn list(&self, after_id: i64, limit: usize, with_embedding: bool) -> Result<Vec<Document>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&select_sql(with_embedding, "WHERE id > ?1 ORDER BY id LIMIT ?2"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![after_id, limit], |r| read_document(r, with_embedding, self.dims))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn stats(&self) -> Result<StorageStats> {
        let conn = self.conn();
        let documents: i64 = conn.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached(
            "SELECT source, COUNT(*) AS n FROM documents GROUP BY source
             ORDER BY n DESC, source IS NULL, source LIMIT 20",
        )?;
        let sources = stmt
            .query_map([], |r| Ok(SourceCount { source: r.get(0)?, count: r.get::<_, i64>(1)?.max(0) as u64 }))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(StorageStats {
            backend: "embedded".into(),
            location: self.path.display().to_string(),
            documents: documents.max(0) as u64,
            sources,
            table_bytes: size(&self.path) + size(Path::new(&wal)),
            index: None,
        })
    }
}

/// The vector of a document about to be written (always set once the batch was embedded).
fn vector_of(d: &NewDocument) -> Result<&[f32]> {
    d.embedding.as_deref().ok_or_else(|| storage("internal error: a document reached the write without an embedding"))
}

/// Checks an `UPDATE` by id touched its row (writers are serialised, so it must exist).
fn expect_one(changed: usize, id: i64) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(storage(format!("document {id} disappeared during the write")))
    }
}

/// Reads every vector and the filter data into memory.
fn load(conn: &Connection, dims: usize) -> Result<MemIndex> {
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))?;
    let mut mem = MemIndex::with_capacity(dims, usize::try_from(count).unwrap_or(0));
    let mut stmt = conn.prepare("SELECT id, source, metadata, created_at, embedding FROM documents ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        mem.apply(load_row(r, dims)?);
    }
    Ok(mem)
}

/// One row of [`load`]'s query as an insert into memory.
fn load_row(r: &Row<'_>, dims: usize) -> rusqlite::Result<Pending> {
    let id: i64 = r.get(0)?;
    let blob = r.get_ref(4)?.as_blob()?;
    let v = decode_vector(blob, dims).ok_or_else(|| bad_blob(id, blob.len(), dims))?;
    Ok(Pending {
        id,
        unit: Some(normalize(&v)),
        source: r.get(1)?,
        metadata: parse_metadata(r.get_ref(2)?.as_str()?)?,
        created_at: Some(from_micros(r.get(3)?)?),
    })
}

/// Per-row data the search filters need.
#[derive(Debug, Clone)]
struct RowFilter {
    /// For `SearchOptions::sources`.
    source: Option<String>,
    /// For the metadata containment filter (parsed once, at load or write).
    metadata: Value,
    /// For `created_after` / `created_before`.
    created_at: DateTime<Utc>,
}

/// Every vector (unit length, row-major, contiguous) with parallel ids and filter data.
/// Row order is arbitrary (deletes swap the last row in); results are ordered by score and id.
#[derive(Debug, Default)]
struct MemIndex {
    /// Floats per vector.
    dims: usize,
    /// Document id of each row.
    ids: Vec<i64>,
    /// `ids.len() * dims` floats: row `i` is `vectors[i * dims..(i + 1) * dims]`.
    vectors: Vec<f32>,
    /// Filter data of each row.
    rows: Vec<RowFilter>,
    /// Row of each id.
    pos: HashMap<i64, usize>,
}

impl MemIndex {
    fn with_capacity(dims: usize, n: usize) -> Self {
        MemIndex {
            dims,
            ids: Vec::with_capacity(n),
            vectors: Vec::with_capacity(n * dims),
            rows: Vec::with_capacity(n),
            pos: HashMap::with_capacity(n),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Inserts a new row or updates an existing one.
    fn apply(&mut self, p: Pending) {
        match self.pos.get(&p.id) {
            Some(&row) => {
                let d = self.dims;
                if let (Some(unit), Some(slot)) = (p.unit, self.vectors.get_mut(row * d..(row + 1) * d)) {
                    slot.copy_from_slice(&unit);
                }
                if let Some(r) = self.rows.get_mut(row) {
                    r.source = p.source;
                    r.metadata = p.metadata;
                    if let Some(c) = p.created_at {
                        r.created_at = c;
                    }
                }
            }
            None => {
                let (Some(unit), Some(created_at)) = (p.unit, p.created_at) else {
                    // Unreachable: updates only name rows that exist.
                    tracing::error!(id = p.id, "embedded store: update of a row missing from memory");
                    return;
                };
                debug_assert_eq!(unit.len(), self.dims);
                self.pos.insert(p.id, self.ids.len());
                self.ids.push(p.id);
                self.vectors.extend_from_slice(&unit);
                self.rows.push(RowFilter { source: p.source, metadata: p.metadata, created_at });
            }
        }
    }

    /// Removes a row by moving the last row into its place.
    fn remove(&mut self, id: i64) -> bool {
        let Some(row) = self.pos.remove(&id) else {
            return false;
        };
        let last = self.ids.len().saturating_sub(1);
        if row != last {
            let d = self.dims;
            self.vectors.copy_within(last * d..(last + 1) * d, row * d);
            if let Some(&moved) = self.ids.last() {
                self.pos.insert(moved, row);
            }
        }
        self.ids.swap_remove(row);
        self.rows.swap_remove(row);
        self.vectors.truncate(last * self.dims);
        true
    }
}

/// A scored row. Ordered so that greater is better: higher score, then lower id.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Dot product of unit vectors = cosine similarity.
    score: f32,
    /// Document id.
    id: i64,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// How many threads a scan of `rows` vectors of `dims` floats should use.
fn scan_threads(rows: usize, dims: usize) -> usize {
    if rows.saturating_mul(dims) <= PARALLEL_MIN_FLOATS {
        return 1;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, MAX_SCAN_THREADS)
}

/// Exact top-`opts.k` rows for the unit vector `query`, best first (ties by id), with the row
/// filters, `exclude` and `min_score` applied, using `threads` threads.
fn scan(mem: &MemIndex, query: &[f32], opts: &SearchOptions, exclude: Option<i64>, threads: usize) -> Vec<Candidate> {
    let n = mem.len();
    let mut all = if threads <= 1 || n < 2 * threads {
        scan_range(mem, 0..n, query, opts, exclude)
    } else {
        let chunk = n.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                    s.spawn(move || scan_range(mem, range, query, opts, exclude))
                })
                .collect();
            let mut merged = Vec::with_capacity(threads * opts.k);
            for h in handles {
                merged.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            merged
        })
    };
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.truncate(opts.k);
    all
}

/// Top-k of one range of rows (unordered), kept in a bounded min-heap.
fn scan_range(
    mem: &MemIndex,
    range: Range<usize>,
    query: &[f32],
    opts: &SearchOptions,
    exclude: Option<i64>,
) -> Vec<Candidate> {
    let k = opts.k;
    if k == 0 {
        return Vec::new();
    }
    let filtered = opts.has_filters();
    let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(k + 1);
    let d = mem.dims.max(1);
    let ids = mem.ids.get(range.clone()).unwrap_or_default();
    let rows = mem.rows.get(range.clone()).unwrap_or_default();
    let vectors = mem.vectors.get(range.start * d..range.end * d).unwrap_or_default().chunks_exact(d);
    for ((&id, r), vector) in ids.iter().zip(rows).zip(vectors) {
        if exclude == Some(id) {
            continue;
        }
        if filtered && !opts.matches(r.source.as_deref(), &r.metadata, r.created_at) {
            continue;
        }
        let score = dot(query, vector);
        if opts.min_score.is_some_and(|m| score < m) {
            continue;
        }
        let c = Candidate { score, id };
        if heap.len() < k {
            heap.push(Reverse(c));
        } else if heap.peek().is_some_and(|worst| c > worst.0) {
            heap.pop();
            heap.push(Reverse(c));
        }
    }
    heap.into_iter().map(|r| r.0).collect()
}

#[async_trait]
impl Backend for EmbeddedBackend {
    async fn existing(&self, keys: &[String], with_vectors: bool) -> Result<HashMap<String, Existing>> {
        let keys = keys.to_vec();
        self.run(move |s| s.existing(&keys, with_vectors)).await
    }

    async fn write_batch(&self, docs: Vec<NewDocument>) -> Result<Written> {
        // Writers are serialised, so the rows read here cannot change before the write.
        let _writer = self.writer.lock().await;
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
        Ok(Written::Done(self.run(move |s| s.write(docs, actions, gate.as_ref())).await?))
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

    async fn search(&self, query: &[f32], opts: &SearchOptions, exclude: Option<i64>) -> Result<Vec<SearchHit>> {
        let query = query.to_vec();
        let opts = opts.clone();
        self.run(move |s| s.search(&query, &opts, exclude)).await
    }

    async fn list(&self, after_id: i64, limit: usize, with_embedding: bool) -> Result<Vec<Document>> {
        self.run(move |s| s.list(after_id, limit, with_embedding)).await
    }

    async fn stats(&self) -> Result<StorageStats> {
        self.run(|s| s.stats()).await
    }

    async fn create_index(&self, _spec: &IndexSpec) -> Result<IndexInfo> {
        Err(no_index())
    }

    async fn drop_index(&self) -> Result<bool> {
        Ok(false)
    }

    async fn rebuild_index(&self, _concurrently: bool) -> Result<IndexInfo> {
        Err(no_index())
    }

    async fn analyze(&self) -> Result<()> {
        self.run(|s| Ok(s.conn().execute_batch("ANALYZE")?)).await
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

/// The error for index operations: the embedded store has nothing to index.
fn no_index() -> Error {
    Error::invalid("index", "the embedded store always searches exactly; vector indexes are a PostgreSQL feature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::cosine_similarity;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use serde_json::json;

    const SOURCES: [&str; 4] = ["a", "b", "c", "d"];

    /// A memory index of `n` random rows plus the raw vectors, for reference checks.
    fn random_index(n: usize, dims: usize, seed: u64) -> (MemIndex, Vec<(i64, Vec<f32>, RowFilter)>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut mem = MemIndex::with_capacity(dims, n);
        let mut raw = Vec::new();
        for i in 0..n {
            let id = (i as i64) * 3 + 1;
            let v: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let source = (!i.is_multiple_of(5)).then(|| SOURCES[i % 4].to_string());
            let metadata = json!({"group": i % 7, "tags": if i.is_multiple_of(2) { json!(["even"]) } else { json!(["odd", "x"]) }});
            let filter = RowFilter {
                source: source.clone(),
                metadata: metadata.clone(),
                created_at: base + chrono::Duration::seconds(i as i64),
            };
            mem.apply(Pending { id, unit: Some(normalize(&v)), source, metadata, created_at: Some(filter.created_at) });
            raw.push((id, v, filter));
        }
        (mem, raw)
    }

    fn reference(
        raw: &[(i64, Vec<f32>, RowFilter)],
        q: &[f32],
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Vec<(i64, f32)> {
        let mut v: Vec<(i64, f32)> = raw
            .iter()
            .filter(|(id, _, f)| Some(*id) != exclude && opts.matches(f.source.as_deref(), &f.metadata, f.created_at))
            .map(|(id, v, _)| (*id, cosine_similarity(q, v).unwrap()))
            .filter(|(_, s)| opts.min_score.is_none_or(|m| *s >= m))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(opts.k);
        v
    }

    fn option_sets() -> Vec<(SearchOptions, Option<i64>)> {
        let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        vec![
            (SearchOptions::top(10), None),
            (SearchOptions::top(1), Some(4)),
            (SearchOptions::top(50).source("a").source("c"), None),
            (SearchOptions::top(20).metadata(json!({"group": 3})), Some(10)),
            (SearchOptions::top(20).metadata(json!({"tags": ["odd"]})), None),
            (
                SearchOptions {
                    created_after: Some(base + chrono::Duration::seconds(500)),
                    created_before: Some(base + chrono::Duration::seconds(900)),
                    ..SearchOptions::top(30)
                },
                None,
            ),
            (SearchOptions::top(1000).min_score(0.1), None),
            (SearchOptions::top(1000).source("b").metadata(json!({"group": 1})).min_score(0.0), Some(7)),
            (SearchOptions::top(5).source("nope"), None),
        ]
    }

    #[test]
    fn scan_matches_exact_reference() {
        let dims = 64;
        let (mem, raw) = random_index(2000, dims, 7);
        let mut rng = StdRng::seed_from_u64(99);
        for (opts, exclude) in option_sets() {
            for _ in 0..3 {
                let q: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let got = scan(&mem, &normalize(&q), &opts, exclude, 1);
                let want = reference(&raw, &q, &opts, exclude);
                let got_ids: Vec<i64> = got.iter().map(|c| c.id).collect();
                let want_ids: Vec<i64> = want.iter().map(|w| w.0).collect();
                assert_eq!(got_ids, want_ids, "options {opts:?} exclude {exclude:?}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.score - w.1).abs() < 1e-5, "{} vs {}", g.score, w.1);
                }
            }
        }
    }

    #[test]
    fn parallel_scan_equals_single_threaded() {
        let dims = 64;
        let (mem, _) = random_index(2000, dims, 3);
        let mut rng = StdRng::seed_from_u64(5);
        for (opts, exclude) in option_sets() {
            let q: Vec<f32> = normalize(&(0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>());
            let single = scan(&mem, &q, &opts, exclude, 1);
            for threads in [2, 3, 4, 7] {
                let par = scan(&mem, &q, &opts, exclude, threads);
                assert_eq!(par.len(), single.len());
                for (p, s) in par.iter().zip(&single) {
                    assert_eq!((p.id, p.score.to_bits()), (s.id, s.score.to_bits()));
                }
            }
        }
        assert_eq!(scan_threads(10, 64), 1);
        assert!(scan_threads(100_000, 64) >= 1);
    }

    #[test]
    fn ties_are_broken_by_id_and_k_keeps_the_lowest_ids() {
        let dims = 4;
        let mut mem = MemIndex::with_capacity(dims, 0);
        let at = Utc::now();
        // Same direction for every id, inserted out of order; one better row.
        for id in [9, 3, 7, 1, 5] {
            mem.apply(Pending {
                id,
                unit: Some(normalize(&[1.0, 1.0, 0.0, 0.0])),
                source: None,
                metadata: json!({}),
                created_at: Some(at),
            });
        }
        mem.apply(Pending {
            id: 8,
            unit: Some(normalize(&[1.0, 0.0, 0.0, 0.0])),
            source: None,
            metadata: json!({}),
            created_at: Some(at),
        });
        let q = normalize(&[1.0, 1.0, 0.0, 0.0]);
        for threads in [1, 2, 3] {
            let got: Vec<i64> = scan(&mem, &q, &SearchOptions::top(4), None, threads).iter().map(|c| c.id).collect();
            assert_eq!(got, vec![1, 3, 5, 7]);
            let got: Vec<i64> =
                scan(&mem, &q, &SearchOptions::top(10), Some(3), threads).iter().map(|c| c.id).collect();
            assert_eq!(got, vec![1, 5, 7, 9, 8]);
        }
    }

    #[test]
    fn remove_keeps_rows_consistent() {
        let (mut mem, raw) = random_index(50, 8, 1);
        assert!(mem.remove(raw[10].0));
        assert!(mem.remove(raw[49].0));
        assert!(!mem.remove(raw[10].0));
        assert_eq!(mem.len(), 48);
        assert_eq!(mem.vectors.len(), 48 * 8);
        for (id, v, _) in raw.iter().filter(|r| r.0 != raw[10].0 && r.0 != raw[49].0) {
            let row = mem.pos[id];
            assert_eq!(mem.ids[row], *id);
            assert_eq!(&mem.vectors[row * 8..(row + 1) * 8], normalize(v).as_slice());
        }
    }

    #[test]
    fn vectors_round_trip_through_blobs() {
        let v = vec![1.5f32, -0.25, 3.0e-7, f32::MAX];
        assert_eq!(decode_vector(&encode_vector(&v), 4), Some(v));
        assert_eq!(decode_vector(&[0; 12], 4), None);
        let u = normalize(&[3.0, 4.0]);
        assert!((u[0] - 0.6).abs() < 1e-7 && (u[1] - 0.8).abs() < 1e-7);
    }
}
