//! The vector index's lifecycle on an open store: create, drop, rebuild, and the build or load
//! an open starts in the background (the graph itself is `ann.rs`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use rusqlite::OptionalExtension;

use super::ann::{self, Ann, AnnSpec, AUTO_MIN_VALUES};
use super::file::Shared;
use crate::backend::{IndexInfo, IndexKind, IndexSpec, Quantization};
use crate::error::{Error, Result};

/// `marketking_meta` key of the index the store keeps: `hnsw m=.. ef_construction=..`, or `off`
/// after `drop_index` (no automatic build either). Unset: automatic above [`AUTO_MIN_VALUES`].
const META_KEY: &str = "vector_index";

/// What the file records about the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    /// Nothing: built automatically for large stores.
    Unset,
    /// Dropped by the user: never built automatically.
    Off,
    /// Created by the user with this spec.
    On(AnnSpec),
}

/// Threads a build uses when the spec does not say (`parallel_workers` + 1).
fn build_threads(spec: Option<&IndexSpec>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    spec.and_then(|s| s.parallel_workers).map_or(cores, |w| w as usize + 1).clamp(1, 64)
}

impl Shared {
    fn declared(&self) -> Result<Declared> {
        let value: Option<String> = self
            .conn()
            .query_row("SELECT value FROM marketking_meta WHERE key = ?1", [META_KEY], |r| r.get(0))
            .optional()?;
        Ok(match value.as_deref() {
            None => Declared::Unset,
            Some("off") => Declared::Off,
            Some(v) => match AnnSpec::from_meta(v) {
                Some(spec) => Declared::On(spec),
                None => {
                    tracing::warn!(value = v, "unreadable vector index setting in marketking_meta; ignored");
                    Declared::Unset
                }
            },
        })
    }

    fn declare(&self, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO marketking_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [META_KEY, value],
        )?;
        Ok(())
    }

    /// Waits until no other build runs, then holds the build flag until the guard drops.
    fn build_slot(&self) -> Result<BuildSlot<'_>> {
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            if self.ann_building.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return Ok(BuildSlot(&self.ann_building));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Starts a build's journal and returns the rows' fingerprint and count at that moment.
    fn begin_build(&self) -> (u64, usize) {
        let mut mem = self.mem_mut();
        mem.ann_journal = Some(Vec::new());
        (mem.fingerprint(), mem.len())
    }

    /// A copy of every row's id and codes (writes after [`begin_build`](Self::begin_build) are
    /// journaled, so the copy may be newer than the journal's start: replaying is idempotent).
    fn copy_codes(&self) -> (Vec<i64>, Vec<i8>) {
        let mem = self.mem();
        (mem.ids.clone(), mem.codes.clone())
    }

    fn abandon_build(&self) {
        self.mem_mut().ann_journal = None;
    }

    /// The index as [`IndexInfo`], if there is one.
    pub(super) fn index_info(&self) -> Option<IndexInfo> {
        let mem = self.mem();
        let ann = mem.ann.as_ref()?;
        Some(IndexInfo {
            name: ann::paths(&self.path).0.file_name().map_or_else(|| "hnsw".into(), |n| n.to_string_lossy().into()),
            kind: ann.spec.kind(),
            quantization: Quantization::None,
            bytes: ann.bytes(),
            tuned: None,
        })
    }

    /// Builds the graph with `spec` now (writes go on meanwhile), installs it and records it.
    /// With `reuse`, a graph of the same spec that is already there is kept.
    fn build_now(&self, spec: AnnSpec, threads: usize, reuse: bool) -> Result<IndexInfo> {
        let _slot = self.build_slot()?;
        let current = self.mem().ann.as_ref().map(|a| a.spec);
        if !(reuse && current == Some(spec)) {
            self.begin_build();
            let (ids, codes) = self.copy_codes();
            let keep_going = || !self.closed.load(Ordering::SeqCst);
            match Ann::build(self.dims, spec, &ids, &codes, threads, &keep_going) {
                Ok(graph) => self.mem_mut().install_ann(graph, true),
                Err(e) => {
                    self.abandon_build();
                    return Err(e);
                }
            }
        }
        self.declare(&spec.to_meta())?;
        self.index_info().ok_or_else(|| Error::storage("the vector index disappeared while it was built"))
    }

    /// `create_index`: an HNSW graph (the only kind the embedded store builds), over the vectors
    /// as they are. `concurrently` changes nothing: the build never blocks writes.
    pub(super) fn create_index(&self, spec: &IndexSpec) -> Result<IndexInfo> {
        let IndexKind::Hnsw { m, ef_construction } = spec.kind else {
            return Err(Error::Unsupported {
                operation: "IVFFlat indexes on the embedded store (it builds HNSW: use IndexKind::hnsw)".into(),
            });
        };
        if spec.quantization != Quantization::None {
            return Err(Error::invalid(
                "quantization",
                "the embedded store's index always works on its int8 codes (re-ranked exactly); use Quantization::None",
            ));
        }
        self.build_now(AnnSpec { m, ef_construction }, build_threads(Some(spec)), true)
    }

    /// `rebuild_index`: builds the current (or recorded) graph again from the rows.
    pub(super) fn rebuild_index(&self) -> Result<IndexInfo> {
        let spec = match (self.mem().ann.as_ref().map(|a| a.spec), self.declared()?) {
            (Some(spec), _) | (None, Declared::On(spec)) => spec,
            _ => return Err(Error::invalid("index", "there is no vector index to rebuild; create one first")),
        };
        self.build_now(spec, build_threads(None), false)
    }

    /// `drop_index`: removes the graph and its saved files, and records that the store keeps
    /// none (not even automatically). False when there was none.
    pub(super) fn drop_index(&self) -> Result<bool> {
        let _slot = self.build_slot()?;
        let had = {
            let mut mem = self.mem_mut();
            mem.ann_changed = false;
            mem.ann.take().is_some()
        };
        let declared = self.declared()?;
        ann::forget(&self.path);
        if declared != Declared::Off {
            self.declare("off")?;
        }
        Ok(had || matches!(declared, Declared::On(_)))
    }
}

/// Holds [`Shared::ann_building`] set until dropped.
struct BuildSlot<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for BuildSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// After an open, when the store keeps an index (recorded by `create_index`, or automatic for
/// a large store): loads the saved graph if it is for these rows, else builds one on a
/// background thread (searches scan until it is installed). The thread holds the store only
/// between steps, so dropping the store stops it. Blocking: call it off the async threads.
pub(super) fn start_at_open(shared: &Arc<Shared>) {
    if shared.reader.is_some() {
        return;
    }
    let spec = match shared.declared() {
        Ok(Declared::On(spec)) => spec,
        Ok(Declared::Unset) if shared.mem().len().saturating_mul(shared.dims) >= AUTO_MIN_VALUES => AnnSpec::AUTO,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the vector index setting; searches scan");
            return;
        }
    };
    // A saved graph for these very rows is loaded now (the open waits: 0.6 s at 1M x 384), so
    // the first search and `stats` see it; anything else is built in the background.
    if shared.ann_building.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        let (fingerprint, rows) = shared.begin_build();
        let loaded = Ann::load(&shared.path, shared.dims, spec, fingerprint, rows);
        match loaded {
            Some(graph) => shared.mem_mut().install_ann(graph, false),
            None => shared.abandon_build(),
        }
        shared.ann_building.store(false, Ordering::SeqCst);
        if shared.mem().ann.is_some() {
            return;
        }
    }
    let weak = Arc::downgrade(shared);
    let started =
        std::thread::Builder::new().name("marketking-vector-index".into()).spawn(move || background(weak, spec));
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the vector index thread; searches scan");
    }
}

fn background(weak: Weak<Shared>, spec: AnnSpec) {
    let Some(shared) = weak.upgrade() else {
        return;
    };
    // Another build (a create_index call) may have started first: it wins. From here this
    // thread owns the build flag and clears it on every way out.
    if shared.ann_building.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        return;
    }
    let (fingerprint, rows) = shared.begin_build();
    let (path, dims) = (shared.path.clone(), shared.dims);
    let started = std::time::Instant::now();
    if let Some(graph) = Ann::load(&path, dims, spec, fingerprint, rows) {
        shared.mem_mut().install_ann(graph, false);
        shared.ann_building.store(false, Ordering::SeqCst);
        tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "loaded the saved vector index");
        return;
    }
    let (ids, codes) = shared.copy_codes();
    // The build runs without holding the store, so dropping it stops the build.
    drop(shared);
    let keep_going = || weak.upgrade().is_some_and(|s| !s.closed.load(Ordering::SeqCst));
    let built = Ann::build(dims, spec, &ids, &codes, build_threads(None), &keep_going);
    drop((ids, codes));
    let Some(shared) = weak.upgrade() else {
        return;
    };
    match built {
        Ok(graph) if !shared.closed.load(Ordering::SeqCst) => {
            shared.mem_mut().install_ann(graph, true);
            tracing::info!(rows, seconds = started.elapsed().as_secs(), "built the vector index");
        }
        Ok(_) | Err(Error::Closed) => shared.abandon_build(),
        Err(e) => {
            shared.abandon_build();
            tracing::warn!(error = %e, "could not build the vector index; searches scan");
        }
    }
    shared.ann_building.store(false, Ordering::SeqCst);
}
