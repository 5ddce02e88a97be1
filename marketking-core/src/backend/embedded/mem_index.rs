//! Every vector in memory (unit length, one contiguous buffer) next to the per-row data the
//! search filters need; in step with committed data.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The vector scaled to unit length (norm computed in f64). Callers pass validated, non-zero
/// vectors; a zero vector stays zero (and then scores 0 against everything).
pub(super) fn normalize(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if n == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| (f64::from(*x) / n) as f32).collect()
}

/// A document's in-memory change, applied after its transaction committed.
pub(super) struct Pending {
    /// The document.
    pub(super) id: i64,
    /// New unit vector, if the vector changed (always set for inserts).
    pub(super) unit: Option<Vec<f32>>,
    /// Source after the write.
    pub(super) source: Option<String>,
    /// Metadata after the write.
    pub(super) metadata: Value,
    /// Set for inserts only.
    pub(super) created_at: Option<DateTime<Utc>>,
    /// Caller key after the write.
    pub(super) key: Option<String>,
    /// Last change, after the write.
    pub(super) updated_at: DateTime<Utc>,
}

/// Per-row data the search filters need.
#[derive(Debug, Clone)]
pub(super) struct RowFilter {
    /// For `SearchOptions::sources`.
    pub(super) source: Option<String>,
    /// For the metadata containment filter (parsed once, at load or write).
    pub(super) metadata: Value,
    /// For `created_after` / `created_before`.
    pub(super) created_at: DateTime<Utc>,
    /// For filters on `key`.
    pub(super) key: Option<String>,
    /// For filters on `updated_at`.
    pub(super) updated_at: DateTime<Utc>,
}

impl RowFilter {
    /// Whether this row passes the options' row filters.
    pub(super) fn passes(&self, opts: &crate::document::SearchOptions) -> bool {
        opts.matches_fields(self.fields())
    }

    /// The row's fields as a filter reads them.
    pub(super) fn fields(&self) -> crate::filter::FilterFields<'_> {
        crate::filter::FilterFields {
            source: self.source.as_deref(),
            key: self.key.as_deref(),
            metadata: &self.metadata,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Stores with at most this many vector values (rows x dims; 16 MB of f32) also keep their
/// unit vectors in memory.
pub(super) const RESIDENT_MAX_VALUES: usize = 1 << 22;

/// Every vector as int8 codes of its unit-length form (row-major, contiguous) with parallel
/// scales, ids and filter data. Row order is arbitrary (deletes swap the last row in).
///
/// Why int8 with one scale per vector: a quarter of the memory of f32 and of the bytes a scan
/// reads (the f32 scan was memory-bound: 614 MB per query at 100k x 1536), and a scale per
/// vector needs no statistics over the whole store, so a write never re-quantizes other rows.
/// The scan ranks by the codes; the best candidates are then scored exactly from the f32
/// vectors in the file (`file.rs`), so every returned score is exact.
#[derive(Debug, Default)]
pub(super) struct MemIndex {
    /// Values per vector.
    pub(super) dims: usize,
    /// Document id of each row.
    pub(super) ids: Vec<i64>,
    /// `ids.len() * dims` codes: row `i` is `codes[i * dims..(i + 1) * dims]`.
    pub(super) codes: Vec<i8>,
    /// The scale of each row's codes (unit vector ~ scale * codes).
    pub(super) scales: Vec<f32>,
    /// The unit vectors themselves while the store is small (up to [`RESIDENT_MAX_VALUES`]):
    /// the re-rank then reads them here instead of from the file, which at 1k x 1536 was most
    /// of a search (0.6 ms against 0.35 ms). Dropped for good once the store outgrows it.
    pub(super) vectors: Option<Vec<f32>>,
    /// Filter data of each row.
    pub(super) rows: Vec<RowFilter>,
    /// Row of each id.
    pub(super) pos: HashMap<i64, usize>,
    /// Whether a write changed the index since it was read from saved codes (`snapshot.rs`),
    /// so a close saves them again.
    pub(super) changed: bool,
    /// The approximate index over the codes, once built or loaded (`ann.rs`); every vector
    /// change below is applied to it too.
    pub(super) ann: Option<super::ann::Ann>,
    /// Set while a graph is built from a copy of the codes: the ids written meanwhile, replayed
    /// into the graph before it is installed.
    pub(super) ann_journal: Option<Vec<i64>>,
    /// Whether the graph changed since it was saved or loaded, so a close saves it.
    pub(super) ann_changed: bool,
}

impl MemIndex {
    pub(super) fn with_capacity(dims: usize, n: usize) -> Self {
        MemIndex {
            dims,
            ids: Vec::with_capacity(n),
            codes: Vec::with_capacity(n * dims),
            scales: Vec::with_capacity(n),
            vectors: (n.saturating_mul(dims) <= RESIDENT_MAX_VALUES).then(|| Vec::with_capacity(n * dims)),
            rows: Vec::with_capacity(n),
            pos: HashMap::with_capacity(n),
            changed: false,
            ann: None,
            ann_journal: None,
            ann_changed: false,
        }
    }

    /// The codes of row `row`.
    pub(super) fn codes_of(&self, row: usize) -> &[i8] {
        self.codes.get(row * self.dims..(row + 1) * self.dims).unwrap_or_default()
    }

    /// Fingerprint of the rows (`ann::fingerprint`).
    pub(super) fn fingerprint(&self) -> u64 {
        super::ann::fingerprint(self.ids.iter().zip(&self.rows).map(|(&id, r)| (id, r.updated_at.timestamp_micros())))
    }

    /// Brings the graph (and a build's journal) up to date with document `id`'s vector: its
    /// current codes, or its removal. A graph that cannot take the change is dropped, so no
    /// search uses a graph that disagrees with the rows (searches then scan).
    fn vector_changed(&mut self, id: i64) {
        if let Some(journal) = self.ann_journal.as_mut() {
            journal.push(id);
        }
        let Some(ann) = self.ann.as_ref() else {
            return;
        };
        self.ann_changed = true;
        let result = match self.pos.get(&id) {
            Some(&row) => ann.upsert(id, self.codes_of(row)),
            None => ann.remove(id),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the vector index could not follow a write; searches scan until it is rebuilt");
            self.ann = None;
        }
    }

    /// Installs a graph built from the rows as they were when `ann_journal` was started,
    /// after replaying the writes journaled since.
    pub(super) fn install_ann(&mut self, ann: super::ann::Ann, changed: bool) {
        let journal = self.ann_journal.take().unwrap_or_default();
        self.ann = Some(ann);
        self.ann_changed = changed || !journal.is_empty();
        for id in journal {
            self.vector_changed(id);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Inserts a new row or updates an existing one.
    pub(super) fn apply(&mut self, p: Pending) {
        self.changed = true;
        match self.pos.get(&p.id) {
            Some(&row) => {
                let d = self.dims;
                let vector_changed = p.unit.is_some();
                if let (Some(unit), Some(slot)) = (p.unit, self.codes.get_mut(row * d..(row + 1) * d)) {
                    let scale = crate::similarity::quantize_i8(&unit, slot);
                    if let Some(s) = self.scales.get_mut(row) {
                        *s = scale;
                    }
                    if let Some(slot) = self.vectors.as_mut().and_then(|v| v.get_mut(row * d..(row + 1) * d)) {
                        slot.copy_from_slice(&unit);
                    }
                }
                if let Some(r) = self.rows.get_mut(row) {
                    r.source = p.source;
                    r.metadata = p.metadata;
                    r.key = p.key;
                    r.updated_at = p.updated_at;
                    if let Some(c) = p.created_at {
                        r.created_at = c;
                    }
                }
                if vector_changed {
                    self.vector_changed(p.id);
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
                let start = self.codes.len();
                self.codes.resize(start + self.dims, 0);
                let scale = self.codes.get_mut(start..).map_or(0.0, |slot| crate::similarity::quantize_i8(&unit, slot));
                self.scales.push(scale);
                if self.ids.len().saturating_mul(self.dims) > RESIDENT_MAX_VALUES {
                    self.vectors = None;
                }
                if let Some(v) = self.vectors.as_mut() {
                    v.extend_from_slice(&unit);
                }
                self.rows.push(RowFilter {
                    source: p.source,
                    metadata: p.metadata,
                    created_at,
                    key: p.key,
                    updated_at: p.updated_at,
                });
                self.vector_changed(p.id);
            }
        }
    }

    /// Whether document `id` is here, is not `exclude` and passes the options' row filters.
    pub(super) fn passes(&self, id: i64, opts: &crate::document::SearchOptions, exclude: Option<i64>) -> bool {
        exclude != Some(id)
            && self
                .pos
                .get(&id)
                .and_then(|&row| self.rows.get(row))
                .is_some_and(|r| !opts.has_filters() || r.passes(opts))
    }

    /// Removes a row by moving the last row into its place.
    pub(super) fn remove(&mut self, id: i64) -> bool {
        let Some(row) = self.pos.remove(&id) else {
            return false;
        };
        self.changed = true;
        let last = self.ids.len().saturating_sub(1);
        if row != last {
            let d = self.dims;
            self.codes.copy_within(last * d..(last + 1) * d, row * d);
            if let Some(v) = self.vectors.as_mut() {
                v.copy_within(last * d..(last + 1) * d, row * d);
            }
            if let Some(&moved) = self.ids.last() {
                self.pos.insert(moved, row);
            }
        }
        self.ids.swap_remove(row);
        self.rows.swap_remove(row);
        self.scales.swap_remove(row);
        self.codes.truncate(last * self.dims);
        if let Some(v) = self.vectors.as_mut() {
            v.truncate(last * self.dims);
        }
        self.vector_changed(id);
        true
    }

    /// Cosine similarity of document `id` to the unit vector `unit` from the resident vectors
    /// (the same dot product as a file read gives); `None` when they are not kept or `id` is not
    /// here.
    pub(super) fn resident_similarity(&self, id: i64, unit: &[f32]) -> Option<f32> {
        let row = *self.pos.get(&id)?;
        let v = self.vectors.as_ref()?.get(row * self.dims..(row + 1) * self.dims)?;
        Some(crate::similarity::dot(unit, v))
    }

    /// Whether the unit vectors are kept in memory.
    pub(super) fn is_resident(&self) -> bool {
        self.vectors.is_some()
    }
}
