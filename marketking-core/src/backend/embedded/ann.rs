//! The embedded store's approximate index: an HNSW graph (usearch) over the memory index's
//! int8 codes, for stores too large to scan per query.
//!
//! - What it holds: each row's int8 codes (the same ones the scan reads) under the document
//!   id, compared by cosine (scale-free, so the per-row scales are not needed). It nominates
//!   candidates; `file.rs` scores them exactly from the f32 vectors, as it does for the scan,
//!   so every returned score is exact and only recall is approximate.
//! - Upkeep: every write that changes a vector updates the graph in the same memory-index
//!   write (`MemIndex::apply` / `remove`), so a search never sees a row the table does not
//!   have. A build runs from a copy of the codes without blocking writes: writes during it are
//!   journaled and replayed into the graph before it is installed.
//! - Persistence: a writer saves the graph next to its file at close (`<file>.hnsw`, plus
//!   `<file>.hnsw.meta` with the rows' fingerprint); the first write of a process removes both
//!   before it commits, like the saved codes (`snapshot.rs`). The next open loads the graph
//!   only if the fingerprint of the rows (id and `updated_at` of each) still matches; otherwise
//!   it builds a new one in the background. Searches scan until a graph is ready.
//! - When it exists: after [`create_index`](crate::VectorStore::create_index) (recorded in the
//!   file, so later opens rebuild it when needed, until `drop_index`), and on its own for stores
//!   of at least [`AUTO_MIN_VALUES`] vector values. `SearchOptions::exact` still bypasses it.

use std::path::{Path, PathBuf};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::scan::Candidate;
use crate::backend::IndexKind;
use crate::error::{Error, Result};

/// Stores with at least this many vector values (rows x dims; e.g. 700k x 384) build the
/// index at open without being asked: the scan then takes tens of milliseconds per query.
pub(super) const AUTO_MIN_VALUES: usize = 1 << 28;

/// Candidates an approximate search explores (its `ef_search`) unless the call or the store
/// sets one. On 1M x 384 clustered vectors (BENCHMARKS.md, "Embedded 1M x 384 with its HNSW
/// graph") recall@10 after the exact re-rank was 0.778 at 200, 0.918 at 500, 0.951 at 700 and
/// 0.960 at 800 (p50 5.2-6.4 ms, against 47 ms for the scan); real embeddings need less.
pub(super) const DEFAULT_EF: usize = 800;

/// Searches that can run on the graph at once; more fall back to the scan for that call.
const SEARCH_SLOTS: usize = 64;

/// Build settings of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AnnSpec {
    /// Links per node.
    pub(super) m: u32,
    /// Candidates explored per insertion.
    pub(super) ef_construction: u32,
}

impl AnnSpec {
    /// The spec for automatic builds: pgvector's defaults raised for a large store.
    pub(super) const AUTO: AnnSpec = AnnSpec { m: 16, ef_construction: 128 };

    pub(super) fn kind(self) -> IndexKind {
        IndexKind::Hnsw { m: self.m, ef_construction: self.ef_construction }
    }

    fn options(self, dims: usize) -> IndexOptions {
        IndexOptions {
            dimensions: dims,
            metric: MetricKind::Cos,
            quantization: ScalarKind::I8,
            connectivity: self.m as usize,
            expansion_add: self.ef_construction as usize,
            expansion_search: 16,
            multi: false,
        }
    }

    /// The recorded form in `marketking_meta` (`hnsw m=16 ef_construction=128`).
    pub(super) fn to_meta(self) -> String {
        format!("hnsw m={} ef_construction={}", self.m, self.ef_construction)
    }

    pub(super) fn from_meta(s: &str) -> Option<AnnSpec> {
        let rest = s.strip_prefix("hnsw m=")?;
        let (m, efc) = rest.split_once(" ef_construction=")?;
        Some(AnnSpec { m: m.parse().ok()?, ef_construction: efc.parse().ok()? })
    }
}

/// The graph and the settings it was built with.
pub(super) struct Ann {
    index: Index,
    pub(super) spec: AnnSpec,
}

impl std::fmt::Debug for Ann {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ann").field("spec", &self.spec).field("rows", &self.index.size()).finish()
    }
}

fn ann_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::storage_with(format!("vector index: {what}"), e)
}

/// Document ids are positive; the graph keys them as u64.
fn key(id: i64) -> u64 {
    id as u64
}

impl Ann {
    fn empty(dims: usize, spec: AnnSpec, capacity: usize, threads: usize) -> Result<Ann> {
        let index = Index::new(&spec.options(dims)).map_err(|e| ann_error("cannot create the graph", e))?;
        index
            .reserve_capacity_and_threads(capacity.max(64), threads.max(SEARCH_SLOTS))
            .map_err(|e| ann_error("cannot reserve memory for the graph", e))?;
        Ok(Ann { index, spec })
    }

    /// A graph of the rows `ids` with codes `codes` (`ids.len() * dims`), inserted by
    /// `threads` threads. `keep_going` is asked now and then; when it says no, the build stops
    /// with [`Error::Closed`] (the store was closed or dropped meanwhile).
    pub(super) fn build(
        dims: usize,
        spec: AnnSpec,
        ids: &[i64],
        codes: &[i8],
        threads: usize,
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<Ann> {
        let ann = Ann::empty(dims, spec, ids.len() + ids.len() / 8, threads)?;
        let threads = threads.clamp(1, 64);
        let failed = std::sync::Mutex::new(None);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (ann, failed, stop) = (&ann, &failed, &stop);
                s.spawn(move || {
                    for (n, i) in (t..ids.len()).step_by(threads).enumerate() {
                        if n % 1024 == 0 && (stop.load(std::sync::atomic::Ordering::Relaxed) || !keep_going()) {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                        let (Some(&id), Some(v)) = (ids.get(i), codes.get(i * dims..(i + 1) * dims)) else {
                            continue;
                        };
                        if let Err(e) = ann.index.add(key(id), v) {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(ann_error("cannot insert into the graph", e));
        }
        if stop.into_inner() {
            return Err(Error::Closed);
        }
        Ok(ann)
    }

    /// Rows in the graph.
    pub(super) fn len(&self) -> usize {
        self.index.size()
    }

    /// Memory the graph takes, in bytes.
    pub(super) fn bytes(&self) -> u64 {
        self.index.memory_usage() as u64
    }

    /// Puts (or replaces) the codes of document `id`.
    pub(super) fn upsert(&self, id: i64, codes: &[i8]) -> Result<()> {
        if self.index.contains(key(id)) {
            self.index.remove(key(id)).map_err(|e| ann_error("cannot remove a row", e))?;
        }
        if self.index.size() + 1 > self.index.capacity() {
            let grown = (self.index.capacity() * 3 / 2).max(self.index.size() + 1024);
            self.index
                .reserve_capacity_and_threads(grown, SEARCH_SLOTS)
                .map_err(|e| ann_error("cannot grow the graph", e))?;
        }
        self.index.add(key(id), codes).map_err(|e| ann_error("cannot insert a row", e))
    }

    /// Takes document `id` out.
    pub(super) fn remove(&self, id: i64) -> Result<()> {
        self.index.remove(key(id)).map(drop).map_err(|e| ann_error("cannot remove a row", e))
    }

    /// The nearest `count` rows to the query codes that pass `keep`, nearest first, with
    /// their approximate similarity; `None` when the graph cannot serve this call (every
    /// search slot busy, say): the caller scans instead.
    pub(super) fn nominate(
        &self,
        query: &[i8],
        count: usize,
        keep: Option<&dyn Fn(i64) -> bool>,
    ) -> Option<Vec<Candidate>> {
        let found = match keep {
            None => self.index.search(query, count),
            Some(keep) => self.index.filtered_search(query, count, |k: u64| keep(k as i64)),
        };
        match found {
            Ok(m) => Some(
                m.keys.iter().zip(&m.distances).map(|(&k, &d)| Candidate { id: k as i64, score: 1.0 - d }).collect(),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "vector index search failed; scanning instead");
                None
            }
        }
    }

    /// Saves the graph and its meta file next to the store `db` (each through a temporary
    /// file and a rename; the meta file last, so a graph without it is never used).
    pub(super) fn save(&self, db: &Path, fingerprint: u64) -> Result<()> {
        let (graph, meta) = paths(db);
        let tmp = with_suffix(&graph, ".tmp");
        let Some(tmp_str) = tmp.to_str() else {
            return Err(Error::storage(format!("cannot save the vector index: {} is not UTF-8", tmp.display())));
        };
        self.index.save(tmp_str).map_err(|e| ann_error("cannot save the graph", e))?;
        let io = |e: std::io::Error| {
            Error::storage_with(format!("cannot save the vector index next to {}", db.display()), e)
        };
        std::fs::rename(&tmp, &graph).map_err(io)?;
        let text = format!(
            "{MAGIC}\nfingerprint={fingerprint}\nrows={}\ndims={}\nspec={}\n",
            self.len(),
            self.index.dimensions(),
            self.spec.to_meta()
        );
        let meta_tmp = with_suffix(&meta, ".tmp");
        std::fs::write(&meta_tmp, text).map_err(io)?;
        std::fs::rename(&meta_tmp, &meta).map_err(io)?;
        Ok(())
    }

    /// The graph saved next to `db`, if there is one for rows with this fingerprint and
    /// count, of this dimension and spec; a file that does not match is removed.
    pub(super) fn load(db: &Path, dims: usize, spec: AnnSpec, fingerprint: u64, rows: usize) -> Option<Ann> {
        let (graph, meta) = paths(db);
        let text = std::fs::read_to_string(&meta).ok()?;
        let expected =
            format!("{MAGIC}\nfingerprint={fingerprint}\nrows={rows}\ndims={dims}\nspec={}\n", spec.to_meta());
        if text != expected {
            tracing::debug!(path = %meta.display(), "the saved vector index is for other rows; building a new one");
            forget(db);
            return None;
        }
        let loaded = graph.to_str().and_then(|g| {
            let ann = Ann::empty(dims, spec, 0, SEARCH_SLOTS).ok()?;
            ann.index.load(g).ok()?;
            ann.index.reserve_capacity_and_threads(ann.index.capacity().max(rows + 64), SEARCH_SLOTS).ok()?;
            (ann.len() == rows && ann.index.dimensions() == dims).then_some(ann)
        });
        if loaded.is_none() {
            tracing::warn!(path = %graph.display(), "the saved vector index could not be read; building a new one");
            forget(db);
        }
        loaded
    }
}

const MAGIC: &str = "MKHNSW1";

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The graph file and its meta file for the store `db`.
pub(super) fn paths(db: &Path) -> (PathBuf, PathBuf) {
    (with_suffix(db, ".hnsw"), with_suffix(db, ".hnsw.meta"))
}

/// Removes the saved graph of `db` (the meta file first: a graph without it is never used).
pub(super) fn forget(db: &Path) {
    let (graph, meta) = paths(db);
    for p in [meta, graph] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "could not remove the saved vector index"),
        }
    }
}

/// A fingerprint of the rows (each row's id and `updated_at`, in any order): the saved graph
/// is used only for the rows it was saved with.
pub(super) fn fingerprint(rows: impl Iterator<Item = (i64, i64)>) -> u64 {
    rows.fold(0u64, |acc, (id, stamp)| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&id.to_le_bytes());
        b[8..].copy_from_slice(&stamp.to_le_bytes());
        acc.wrapping_add(xxhash_rust::xxh3::xxh3_64(&b))
    })
}
