//! The read-only open: reading a file that another process (the HTTP service, an import) has
//! open for writing.
//!
//! * **No process lock.** The lock keeps out a second *writer*, whose commits would make the
//!   first one's memory index stale; a reader never writes, and notices the writer's commits
//!   itself (below), so it takes no lock and never touches `<path>.lock`.
//! * **A read-only SQLite connection.** In WAL mode a reader sees every committed transaction
//!   and never blocks the writer (nor is blocked by it). Nothing is created or migrated: the file
//!   must exist and be at this release's schema version (see `schema::check_current`).
//! * **The memory index follows the writer.** SQLite's `PRAGMA data_version` changes when
//!   another connection commits; it is read before every search or count, and the memory index is
//!   reloaded when it moved. Nothing is loaded at open, so reads that need no vectors (get,
//!   list, stats) never pay for it.
//! * **A first search needs no index.** Building the index (every vector, normalised, in one
//!   buffer, with every row's filter data) costs more than one search over the file: at 20k
//!   documents most of a one-shot CLI search went into it. So the first search at a file
//!   version is answered by one [`Pass`] over the file that keeps only what that search needs
//!   (each passing row's score); a second search at the same version loads the index, which
//!   then serves every search until the file changes. Scores are computed exactly as the index
//!   computes them, so both answer the same.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use rusqlite::{Connection, OpenFlags};

use super::file::Shared;
use super::mem_index::{normalize, MemIndex, RowFilter};
use super::rows::{bad_blob, load, load_row};
use super::scan::Candidate;
use super::schema;
use crate::document::SearchOptions;
use crate::error::{Error, Result};
use crate::similarity::dot;
use crate::vector::from_le_bytes as decode_vector;

/// What a read-only store knows about the file versions it has seen.
#[derive(Debug, Default)]
pub(super) struct Reader {
    state: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// The `data_version` of the snapshot the memory index was loaded from; `None` until loaded.
    loaded: Option<i64>,
    /// The `data_version` at which the last search made a [`Pass`] instead of loading.
    passed: Option<i64>,
}

/// How a search reads the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prepared {
    /// From the memory index, which is current.
    Memory,
    /// By one [`Pass`] over the file.
    Pass,
}

/// One search's view of the file from a single pass: every row that passes its filters (and is
/// not excluded), with its cosine similarity to the query when the search has a vector.
#[derive(Debug)]
pub(super) struct Pass {
    rows: HashMap<i64, Option<f32>>,
}

impl Pass {
    /// Reads the rows a search with `unit` (the normalised query vector, if any), `opts` and
    /// `exclude` needs: the vectors only when there is a query vector, the filter columns only
    /// when there are filters.
    pub(super) fn run(
        conn: &Connection,
        dims: usize,
        unit: Option<&[f32]>,
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Result<Pass> {
        let filtered = opts.has_filters();
        let sql = match (filtered, unit.is_some()) {
            (true, _) => "SELECT id, source, metadata, created_at, embedding, key, updated_at FROM documents",
            (false, true) => "SELECT id, embedding FROM documents",
            (false, false) => "SELECT id FROM documents",
        };
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if exclude == Some(id) {
                continue;
            }
            // The same normalisation and dot product as the memory index, so the same scores.
            let score = if filtered {
                let p = load_row(r, dims)?;
                let row = RowFilter {
                    source: p.source,
                    metadata: p.metadata,
                    created_at: p.created_at.unwrap_or(p.updated_at),
                    key: p.key,
                    updated_at: p.updated_at,
                };
                if !row.passes(opts) {
                    continue;
                }
                unit.zip(p.unit.as_deref()).map(|(q, v)| dot(q, v))
            } else if let Some(q) = unit {
                let blob = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                let v = decode_vector(blob, dims).ok_or_else(|| bad_blob(id, blob.len(), dims))?;
                Some(dot(q, &normalize(&v)))
            } else {
                None
            };
            out.insert(id, score);
        }
        Ok(Pass { rows: out })
    }

    /// The best `opts.k` scored rows (with `opts.min_score`), best first, ties by id: what
    /// `scan` gives on the memory index.
    pub(super) fn top(&self, opts: &SearchOptions) -> Vec<Candidate> {
        let mut all: Vec<Candidate> = self
            .rows
            .iter()
            .filter_map(|(&id, score)| score.map(|score| Candidate { score, id }))
            .filter(|c| opts.min_score.is_none_or(|m| c.score >= m))
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(opts.k);
        all
    }

    /// Whether document `id` passed the search's filters.
    pub(super) fn passes(&self, id: i64) -> bool {
        self.rows.contains_key(&id)
    }

    /// Document `id`'s cosine similarity to the query, if it passed and there is a query vector.
    pub(super) fn similarity(&self, id: i64) -> Option<f32> {
        self.rows.get(&id).copied().flatten()
    }
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

impl Shared {
    /// Opens the existing store at `path` for reading only (see the module docs).
    pub(super) fn open_read_only(path: &Path, model: &str, dims: usize, text_config: &str) -> Result<Shared> {
        if !path.is_file() {
            return Err(Error::config(
                "db_path",
                format!("{} does not exist; a read-only store never creates one", path.display()),
            ));
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| {
                    Error::storage_with(format!("cannot open embedded store {} read-only", path.display()), e)
                })?;
        schema::check_owner(&conn, path)?;
        schema::check_current(&conn, path, model, dims, text_config)?;
        let canonical =
            path.canonicalize().map_err(|e| Error::storage_with(format!("cannot resolve {}", path.display()), e))?;
        tracing::debug!(path = %canonical.display(), "opened embedded store read-only");
        Ok(Shared {
            path: canonical,
            dims,
            conn: Mutex::new(conn),
            mem: RwLock::new(MemIndex::with_capacity(dims, 0)),
            english: text_config == "english",
            reader: Some(Reader::default()),
            lock: Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
            codes_forgotten: std::sync::atomic::AtomicBool::new(false),
            ann_building: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Before a search: how it reads the rows. A writer's memory index is always current; a
    /// reader's is used when current, loaded at the second search at one file version, and
    /// skipped for one [`Pass`] at the first (see the module docs).
    pub(super) fn prepare_search(&self) -> Result<Prepared> {
        let Some(reader) = &self.reader else {
            return Ok(Prepared::Memory);
        };
        let mut conn = self.conn();
        let mut seen = reader.state.lock().unwrap_or_else(|e| e.into_inner());
        let version = data_version(&conn)?;
        if seen.loaded == Some(version) {
            return Ok(Prepared::Memory);
        }
        if seen.passed != Some(version) {
            seen.passed = Some(version);
            return Ok(Prepared::Pass);
        }
        self.load_index(&mut conn, &mut seen)?;
        Ok(Prepared::Memory)
    }

    /// Before a read of the memory index other than a search: on a read-only store, loads it
    /// when it was never loaded or another process committed since it was.
    pub(super) fn refresh(&self) -> Result<()> {
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let mut conn = self.conn();
        let mut seen = reader.state.lock().unwrap_or_else(|e| e.into_inner());
        if seen.loaded.is_some() && seen.loaded == Some(data_version(&conn)?) {
            return Ok(());
        }
        self.load_index(&mut conn, &mut seen)
    }

    /// Loads the memory index from one snapshot and records its version.
    fn load_index(&self, conn: &mut Connection, seen: &mut Seen) -> Result<()> {
        // One read transaction: the version recorded is that of the snapshot loaded, so a
        // commit that lands during the load is seen by the next check.
        let tx = conn.transaction()?;
        let version = data_version(&tx)?;
        let mem = load(&tx, self.dims)?;
        drop(tx);
        tracing::debug!(path = %self.path.display(), documents = mem.len(), version, "loaded the memory index");
        *self.mem_mut() = mem;
        seen.loaded = Some(version);
        Ok(())
    }
}
