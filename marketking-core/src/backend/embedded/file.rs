//! The SQLite file: the one connection and the memory index behind it, and every blocking
//! operation on them. Called on tokio's blocking pool by the backend in `mod.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use super::ann;
use super::mem_index::{normalize, MemIndex, Pending};
use super::reader::{Pass, Prepared};
use super::rows::{from_micros, load, metadata_text, now_micros, parse_metadata, read_document, select_sql};
use super::scan::{scan, scan_threads};
use super::{lock, schema, snapshot, storage};
use crate::backend::{finish_hits, SourceCount, StorageStats};
use crate::document::{BatchReport, Document, DocumentPatch, NewDocument, SearchHit, SearchOptions};
use crate::error::{Error, Result};
use crate::gate::CommitGate;
use crate::plan::{Action, Existing};
use crate::search_mode::LegScore;
use crate::vector::{from_le_bytes as decode_vector, to_le_bytes as encode_vector};

/// State shared with blocking tasks. Field order matters: the lock file is dropped (and the
/// lock released) only after the connection is closed.
pub(super) struct Shared {
    /// Canonical path of the database file.
    pub(super) path: PathBuf,
    /// Vector dimensions.
    pub(super) dims: usize,
    /// The one SQLite connection. Lock order: `conn` before `mem`, never the reverse.
    pub(super) conn: Mutex<Connection>,
    /// Every vector and the per-row filter data, in step with committed data.
    pub(super) mem: RwLock<MemIndex>,
    /// The `english` text configuration: queries leave out its stop words.
    pub(super) english: bool,
    /// Set on a read-only store (`reader.rs`): the memory index follows another process's commits.
    pub(super) reader: Option<super::reader::Reader>,
    /// Exclusive advisory lock on `<path>.lock`, held until the backend is dropped or closed
    /// (none when read-only).
    pub(super) lock: Mutex<Option<lock::ProcessLock>>,
    /// Set by `close`: every later call is [`Error::Closed`].
    pub(super) closed: std::sync::atomic::AtomicBool,
    /// Set once the first write removed the saved codes ([`Shared::forget_codes`]).
    pub(super) codes_forgotten: std::sync::atomic::AtomicBool,
    /// Set while a vector index is built or loaded: one at a time.
    pub(super) ann_building: std::sync::atomic::AtomicBool,
}

impl Drop for Shared {
    /// A store dropped without [`close`](Shared::close) saves its codes too (the process lock is
    /// still held: fields drop after this).
    fn drop(&mut self) {
        if !self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            self.save_codes();
        }
    }
}

impl Shared {
    pub(super) fn open(path: &Path, model: &str, dims: usize, text_config: &str) -> Result<Shared> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::storage_with(format!("cannot create directory {}", parent.display()), e))?;
        }
        let lock = lock::acquire(path)?;
        let mut conn = Connection::open(path)
            .map_err(|e| Error::storage_with(format!("cannot open embedded store {}", path.display()), e))?;
        schema::check_owner(&conn, path)?;
        schema::register_functions(&conn)?;
        schema::configure(&conn)
            .map_err(|e| Error::storage_with(format!("cannot open embedded store {}", path.display()), e))?;
        schema::migrate(&mut conn, path, model, dims, text_config)?;
        let canonical =
            path.canonicalize().map_err(|e| Error::storage_with(format!("cannot resolve {}", path.display()), e))?;
        // A large store's codes saved at its last close, when they match the table; else every
        // vector is read and quantized.
        let mem = match snapshot::load(&canonical, &conn, dims)? {
            Some(mem) => mem,
            None => load(&conn, dims)?,
        };
        tracing::debug!(path = %canonical.display(), documents = mem.len(), "opened embedded store");
        let english = text_config == "english";
        Ok(Shared {
            path: canonical,
            dims,
            conn: Mutex::new(conn),
            mem: RwLock::new(mem),
            english,
            reader: None,
            lock: Mutex::new(Some(lock)),
            closed: std::sync::atomic::AtomicBool::new(false),
            codes_forgotten: std::sync::atomic::AtomicBool::new(false),
            ann_building: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Closes the file: checkpoints the write-ahead log into it (a writer), closes the
    /// connection (an in-memory one takes its place, so the file handles go now) and releases
    /// the process lock; memory is freed. Later calls see `closed` first.
    pub(super) fn close(&self) -> Result<()> {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.save_codes();
        let mut conn = self.conn();
        let checkpoint = match self.reader {
            None => conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"),
            Some(_) => Ok(()),
        };
        let old = std::mem::replace(&mut *conn, Connection::open_in_memory()?);
        let closed = old.close().map_err(|(_, e)| e);
        drop(conn);
        *self.mem_mut() = MemIndex::with_capacity(self.dims, 0);
        // The lock goes last: another process may open the file as soon as it is released.
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        checkpoint?;
        closed?;
        Ok(())
    }

    /// A writer saves the codes of a large store for its next open (`snapshot.rs`). A failure
    /// costs only that open's speed, so it is logged, not returned.
    fn save_codes(&self) {
        if self.reader.is_some() {
            return;
        }
        let mem = self.mem();
        if let Err(e) = snapshot::save(&self.path, &mem) {
            tracing::warn!(error = %e, "could not save the codes of the memory index; the next open reads every vector");
        }
        if let (Some(ann), true) = (&mem.ann, mem.ann_changed) {
            if let Err(e) = ann.save(&self.path, mem.fingerprint()) {
                tracing::warn!(error = %e, "could not save the vector index; the next open builds it again");
                ann::forget(&self.path);
            }
        }
    }

    /// Removes the saved codes before a write commits (`snapshot.rs`): after it they would be
    /// older than the table, and a crash before the next save must not leave them looking
    /// current. Costs one file check per store lifetime: the flag remembers it was done.
    pub(super) fn forget_codes(&self) {
        if self.reader.is_none() && !self.codes_forgotten.swap(true, std::sync::atomic::Ordering::SeqCst) {
            snapshot::forget(&self.path);
            ann::forget(&self.path);
        }
    }

    /// The connection. A panic while it was held cannot leave a transaction open (the
    /// `Transaction` guard rolls back on drop), so a poisoned lock is still usable.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn mem(&self) -> RwLockReadGuard<'_, MemIndex> {
        self.mem.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn mem_mut(&self) -> RwLockWriteGuard<'_, MemIndex> {
        self.mem.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored rows of these keys (with their vectors when `with_vectors`).
    pub(super) fn existing(&self, keys: &[String], with_vectors: bool) -> Result<HashMap<String, Existing>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(if with_vectors {
            "SELECT id, title, content, source, metadata, updated_at, embedding FROM documents WHERE key = ?1"
        } else {
            "SELECT id, title, content, source, metadata, updated_at FROM documents WHERE key = ?1"
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
                        updated_at: from_micros(r.get(5)?)?,
                        embedding: match with_vectors {
                            true => decode_vector(r.get_ref(6)?.as_blob()?, self.dims),
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

    /// Inserts rows whose keys the caller asserts are new ([`write`](Self::write) with every
    /// action an insert), refusing a key that is stored already: without this check the
    /// insert would fail on the unique index with a less helpful message.
    pub(super) fn write_new(
        &self,
        docs: Vec<NewDocument>,
        actions: Vec<Action>,
        gate: Option<&CommitGate>,
    ) -> Result<BatchReport> {
        {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached("SELECT id FROM documents WHERE key = ?1")?;
            for key in docs.iter().filter_map(|d| d.key.as_deref()) {
                if let Some(id) = stmt.query_row([key], |r| r.get::<_, i64>(0)).optional()? {
                    return Err(Error::Conflict { reason: format!("key {key:?} is already stored (document {id})") });
                }
            }
        }
        self.write(docs, actions, gate, None)
    }

    /// Writes a planned, embedded batch in one transaction, then updates memory. `gate` is the
    /// caller's [`CommitGate`]: this runs on a blocking thread that goes on when the caller's
    /// future is dropped, so it must check itself whether the caller still wants the write.
    pub(super) fn write(
        &self,
        docs: Vec<NewDocument>,
        actions: Vec<Action>,
        gate: Option<&CommitGate>,
        checkpoint: Option<&str>,
    ) -> Result<BatchReport> {
        let mut conn = self.conn();
        let now = now_micros();
        let now_dt = from_micros(now)?;
        let mut report = BatchReport { ids: Vec::with_capacity(docs.len()), ..Default::default() };
        let mut pending = Vec::with_capacity(docs.len());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            // A restored id must be free: the row it names would otherwise be overwritten by
            // nothing and the insert fail on the primary key with a less helpful message.
            let mut taken = tx.prepare_cached("SELECT 1 FROM documents WHERE id = ?1")?;
            for (doc, action) in docs.iter().zip(&actions) {
                if let (Some(id), Action::Insert) = (doc.id, action) {
                    if taken.exists([id])? {
                        return Err(Error::Conflict { reason: format!("id {id} is already taken") });
                    }
                }
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO documents (id, title, content, source, metadata, key, embedding, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
                let (created, updated) = crate::plan::stamps(&doc, now_dt);
                let updated_micros = updated.timestamp_micros();
                let (id, unit, created_at) = match action {
                    Action::Insert => {
                        let v = vector_of(&doc)?;
                        insert.execute(params![
                            doc.id,
                            doc.title,
                            doc.content,
                            doc.source,
                            meta,
                            doc.key,
                            encode_vector(v),
                            created.timestamp_micros(),
                            updated_micros
                        ])?;
                        report.created += 1;
                        (tx.last_insert_rowid(), Some(normalize(v)), Some(created))
                    }
                    Action::Touch { id, changed: false } => {
                        report.unchanged += 1;
                        report.ids.push(id);
                        continue;
                    }
                    Action::Touch { id, changed: true } => {
                        expect_one(touch.execute(params![id, doc.source, meta, updated_micros])?, id)?;
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
                            updated_micros
                        ])?;
                        expect_one(n, id)?;
                        report.updated += 1;
                        (id, Some(normalize(v)), None)
                    }
                };
                report.ids.push(id);
                pending.push(Pending {
                    id,
                    unit,
                    source: doc.source,
                    metadata: Value::Object(doc.metadata),
                    created_at,
                    key: doc.key,
                    updated_at: updated,
                });
            }
        }
        if let Some(name) = checkpoint {
            let text = serde_json::to_string(&report)
                .map_err(|e| Error::storage(format!("a checkpoint's report could not be written: {e}")))?;
            tx.execute("INSERT INTO marketking_checkpoints (name, report) VALUES (?1, ?2)", params![name, text])?;
        }
        gate.map_or(Ok(()), CommitGate::enter_commit)?;
        self.forget_codes();
        tx.commit()?;
        let mut mem = self.mem_mut();
        for p in pending {
            mem.apply(p);
        }
        Ok(report)
    }

    /// The report recorded under checkpoint `name`, if any.
    pub(super) fn checkpoint(&self, name: &str) -> Result<Option<BatchReport>> {
        let conn = self.conn();
        let text: Option<String> = conn
            .query_row("SELECT report FROM marketking_checkpoints WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| Error::storage(format!("a checkpoint's report is unreadable: {e}")))
        })
        .transpose()
    }

    /// Deletes the checkpoints whose names start with `prefix`.
    pub(super) fn forget_checkpoints(&self, prefix: &str) -> Result<u64> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM marketking_checkpoints WHERE substr(name, 1, length(?1)) = ?1", [prefix])?;
        Ok(n as u64)
    }

    pub(super) fn get(&self, id: i64, with_embedding: bool) -> Result<Option<Document>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&select_sql(with_embedding, "WHERE id = ?1"))?;
        Ok(stmt.query_row([id], |r| read_document(r, with_embedding, self.dims)).optional()?)
    }

    pub(super) fn get_by_key(&self, key: &str, with_embedding: bool) -> Result<Option<Document>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&select_sql(with_embedding, "WHERE key = ?1"))?;
        Ok(stmt.query_row([key], |r| read_document(r, with_embedding, self.dims)).optional()?)
    }

    pub(super) fn update(
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
            doc.metadata = Value::Object(m.clone());
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
        self.forget_codes();
        tx.commit()?;
        self.mem_mut().apply(Pending {
            id,
            unit: embedding.as_deref().map(normalize),
            source: doc.source.clone(),
            metadata: doc.metadata.clone(),
            created_at: None,
            key: doc.key.clone(),
            updated_at: doc.updated_at,
        });
        Ok(Some(doc))
    }

    pub(super) fn delete(&self, id: i64, gate: Option<&CommitGate>) -> Result<bool> {
        let conn = self.conn();
        gate.map_or(Ok(()), CommitGate::enter_commit)?;
        self.forget_codes();
        // A single statement commits atomically on its own.
        let n = conn.execute("DELETE FROM documents WHERE id = ?1", [id])?;
        if n > 0 {
            self.mem_mut().remove(id);
        }
        Ok(n > 0)
    }

    /// A vector search (cosine), a text search (FTS5) or both fused (RRF), like PostgreSQL's.
    pub(super) fn search(
        &self,
        vector: Option<&[f32]>,
        text: Option<&str>,
        opts: &SearchOptions,
        exclude: Option<i64>,
        ids_only: bool,
    ) -> Result<Vec<SearchHit>> {
        if let Some(v) = vector {
            if v.len() != self.dims {
                return Err(Error::DimensionMismatch { expected: self.dims, actual: v.len() });
            }
        }
        let legs = vector.is_some() && text.is_some();
        let leg_k = if legs { opts.fusion.candidates_for(opts.k) } else { opts.k };
        let unit = vector.map(normalize);
        // A read-only store may answer from one pass over the file instead (`reader.rs`); an
        // exact search is one pass over the file's f32 vectors, bypassing the codes.
        let pass = match (opts.exact, self.prepare_search()?) {
            (false, Prepared::Memory) => None,
            (true, _) | (false, Prepared::Pass) => {
                Some(Pass::run(&self.conn(), self.dims, unit.as_deref(), opts, exclude)?)
            }
        };
        // A leg of a fused search keeps its candidates whatever their score.
        let leg_opts = SearchOptions { k: leg_k, min_score: if legs { None } else { opts.min_score }, ..opts.clone() };
        // The memory lock is released before the connection is taken (lock order: conn, mem).
        // The codes nominate `oversample` candidates per row wanted; their exact scores (from
        // the file's f32 vectors, read after the memory lock is released) pick the rows.
        let nominated = match (&unit, &pass) {
            (Some(unit), None) => {
                let pool = candidate_pool(&leg_opts);
                let mem = self.mem();
                match nominate_from_graph(&mem, unit, pool, &leg_opts, exclude) {
                    Some(candidates) => Some(candidates),
                    None => {
                        let threads = scan_threads(mem.len(), self.dims);
                        Some(scan(&mem, unit, pool, &leg_opts, exclude, threads))
                    }
                }
            }
            _ => None,
        };
        let conn = self.conn();
        let vector_leg = match (&unit, &pass, nominated) {
            (Some(_), Some(pass), _) => pass.top(&leg_opts),
            (Some(unit), None, Some(candidates)) => {
                // Lock order conn, then mem: the memory lock is taken again after the connection.
                let mem = self.mem();
                match mem.is_resident() {
                    true => rerank(unit, &candidates, &leg_opts, |id, q| Ok(mem.resident_similarity(id, q)))?,
                    false => {
                        drop(mem);
                        rerank(unit, &candidates, &leg_opts, |id, q| exact_similarity(&conn, self.dims, id, q))?
                    }
                }
            }
            _ => Vec::new(),
        };
        let text_leg = match text {
            Some(t) => {
                let mem = self.mem();
                let passes = |id: i64| match &pass {
                    Some(pass) => pass.passes(id),
                    None => mem.passes(id, opts, exclude),
                };
                super::text::candidates(&conn, t, self.english, leg_k, &passes)?
            }
            None => Vec::new(),
        };
        let ranked: Vec<super::text::Fused> = match (vector.is_some(), text.is_some()) {
            (true, true) => super::text::fuse(&vector_leg, &text_leg, &opts.fusion, opts.k),
            (true, false) => vector_leg
                .iter()
                .map(|c| super::text::Fused { id: c.id, score: c.score, vector: None, text: None })
                .collect(),
            _ => text_leg
                .iter()
                .map(|c| super::text::Fused { id: c.id, score: c.score, vector: None, text: None })
                .collect(),
        };
        let mut stmt = conn.prepare_cached(&select_sql(opts.include_embedding, "WHERE id = ?1"))?;
        let mut hits = Vec::with_capacity(ranked.len());
        for f in ranked {
            // A row deleted between the scan and this read is skipped. (An ids-only search reads
            // no row: the scan ran on committed data.)
            let document = match ids_only {
                true => Some(Document::id_only(f.id)),
                false => stmt.query_row([f.id], |r| read_document(r, opts.include_embedding, self.dims)).optional()?,
            };
            if let Some(document) = document {
                let (vector_leg, text_leg) = if legs {
                    // Every hybrid hit has its cosine similarity, as on PostgreSQL.
                    let similarity = match (f.vector, &unit) {
                        (Some((_, s)), _) => Some(s),
                        (None, Some(q)) => match &pass {
                            Some(pass) => pass.similarity(f.id),
                            None => match self.mem().resident_similarity(f.id, q) {
                                Some(s) => Some(s),
                                None => exact_similarity(&conn, self.dims, f.id, q)?,
                            },
                        },
                        (None, None) => None,
                    };
                    (
                        similarity.map(|score| LegScore { rank: f.vector.map(|v| v.0), score }),
                        f.text.map(|(rank, score)| LegScore { rank: Some(rank), score }),
                    )
                } else {
                    (None, None)
                };
                hits.push(SearchHit { score: f.score, document, vector: vector_leg, text: text_leg });
            }
        }
        Ok(finish_hits(hits, opts))
    }

    pub(super) fn list(
        &self,
        after_id: i64,
        limit: usize,
        with_embedding: bool,
        filter: &crate::filter::Filter,
    ) -> Result<Vec<Document>> {
        if !filter.is_empty() {
            // The filter runs over the memory index (as a filtered search does), then the page's
            // rows are read by id.
            let node = filter.node()?;
            self.refresh()?;
            let mut ids: Vec<i64> = {
                let mem = self.mem();
                mem.ids
                    .iter()
                    .zip(&mem.rows)
                    .filter(|(id, r)| **id > after_id && node.matches(&r.fields()))
                    .map(|(id, _)| *id)
                    .collect()
            };
            ids.sort_unstable();
            ids.truncate(limit);
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(&select_sql(with_embedding, "WHERE id = ?1"))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                // A row deleted since the memory read is skipped, as a later page would skip it.
                if let Some(d) = stmt.query_row([id], |r| read_document(r, with_embedding, self.dims)).optional()? {
                    out.push(d);
                }
            }
            return Ok(out);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&select_sql(with_embedding, "WHERE id > ?1 ORDER BY id LIMIT ?2"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![after_id, limit], |r| read_document(r, with_embedding, self.dims))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub(super) fn stats(&self) -> Result<StorageStats> {
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
            index: self.index_info(),
        })
    }
}

/// The vector of a document about to be written (always set once the batch was embedded).
pub(super) fn vector_of(d: &NewDocument) -> Result<&[f32]> {
    d.embedding.as_deref().ok_or_else(|| storage("internal error: a document reached the write without an embedding"))
}

/// Checks an `UPDATE` by id touched its row (writers are serialised, so it must exist).
pub(super) fn expect_one(changed: usize, id: i64) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(storage(format!("document {id} disappeared during the write")))
    }
}

/// Candidates the int8 scan nominates per row a search wants, by default: enough for a
/// recall@10 of 0.99+ against exact search (BENCHMARKS.md, "Embedded store").
const DEFAULT_OVERSAMPLE: usize = 4;
/// At least this many candidates beyond the rows wanted, for small k.
const MIN_EXTRA_CANDIDATES: usize = 30;

/// How many candidates the int8 scan nominates for a vector leg of `opts.k` rows.
pub(super) fn candidate_pool(opts: &SearchOptions) -> usize {
    let oversample = opts.oversample.map_or(DEFAULT_OVERSAMPLE, |o| o as usize);
    opts.k.saturating_mul(oversample).max(opts.k + MIN_EXTRA_CANDIDATES)
}

/// Cosine similarity of the unit vector `unit` to document `id`'s stored vector (normalised as
/// the memory index normalises it, and the same dot product as a [`Pass`]), or `None` when
/// the row is gone.
fn exact_similarity(conn: &Connection, dims: usize, id: i64, unit: &[f32]) -> Result<Option<f32>> {
    let mut stmt = conn.prepare_cached("SELECT embedding FROM documents WHERE id = ?1")?;
    let v = stmt
        .query_row([id], |r| {
            let blob = r.get_ref(0)?.as_blob()?;
            decode_vector(blob, dims).ok_or_else(|| super::rows::bad_blob(id, blob.len(), dims))
        })
        .optional()?;
    Ok(v.map(|v| crate::similarity::dot(unit, &normalize(&v))))
}

/// The `pool` best candidates from the vector index (`ann.rs`), when there is one: it explores
/// `max(pool, ef_search)` rows and keeps the nearest `pool` by the codes. `None` when there is
/// no index, or it could not serve the call, or a filter left it fewer candidates than the
/// scan would find (the caller scans then, so a filter never costs results).
fn nominate_from_graph(
    mem: &MemIndex,
    unit: &[f32],
    pool: usize,
    opts: &SearchOptions,
    exclude: Option<i64>,
) -> Option<Vec<super::scan::Candidate>> {
    let graph = mem.ann.as_ref()?;
    let mut query = vec![0i8; unit.len()];
    crate::similarity::quantize_i8(unit, &mut query);
    let explore = pool.max(opts.ef_search.map_or(ann::DEFAULT_EF, |e| e as usize));
    let filtered = opts.has_filters() || exclude.is_some();
    let keep = |id: i64| mem.passes(id, opts, exclude);
    let mut found = graph.nominate(&query, explore, filtered.then_some(&keep as &dyn Fn(i64) -> bool))?;
    if found.len() < pool.min(mem.len()) && filtered {
        return None;
    }
    found.truncate(pool);
    Some(found)
}

/// The best `opts.k` of the scan's candidates by exact cosine similarity (`exact`: from the
/// resident vectors or the file), best first (ties by
/// id), with `opts.min_score` applied to the exact scores. A row deleted since the scan is gone.
fn rerank(
    unit: &[f32],
    candidates: &[super::scan::Candidate],
    opts: &SearchOptions,
    exact: impl Fn(i64, &[f32]) -> Result<Option<f32>>,
) -> Result<Vec<super::scan::Candidate>> {
    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        if let Some(score) = exact(c.id, unit)? {
            if opts.min_score.is_none_or(|m| score >= m) {
                out.push(super::scan::Candidate { score, id: c.id });
            }
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.truncate(opts.k);
    Ok(out)
}
