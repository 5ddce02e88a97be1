//! The JSON result file of a quality run (`target/mk-bench/quality-*.json`) and the comparison
//! of a run with an earlier one (`--compare FILE`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::backend::BackendKind;
use super::dataset::DatasetInfo;
use super::Mode;

/// Bumped when a field changes meaning, so `--compare` can refuse an older layout.
pub(crate) const FORMAT: u32 = 1;

/// Everything one run measured.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct QualityRun {
    pub(crate) format: u32,
    pub(crate) unix_time: u64,
    /// `git describe --always --dirty` of the working tree, when git is there.
    pub(crate) git: Option<String>,
    pub(crate) cores: usize,
    pub(crate) k: usize,
    pub(crate) model: String,
    pub(crate) dimensions: usize,
    pub(crate) dataset: DatasetInfo,
    pub(crate) backends: Vec<BackendRun>,
    pub(crate) rows: Vec<Row>,
    /// Vector mode, exact search: embedded store against PostgreSQL, when both ran.
    pub(crate) embedded_vs_postgres_exact: Option<Agreement>,
    /// Every mode, exact search: embedded store against PostgreSQL (the text legs rank with
    /// same BM25 over different tokenizers and stemmers), keyed by mode.
    #[serde(default)]
    pub(crate) embedded_vs_postgres_by_mode: Vec<(String, Agreement)>,
}

/// Loading and indexing one backend.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BackendRun {
    pub(crate) backend: BackendKind,
    pub(crate) load_seconds: f64,
    /// False when the documents came with the vectors the first backend computed.
    pub(crate) embedded_by_this_backend: bool,
    pub(crate) hnsw_build_seconds: Option<f64>,
    /// PostgreSQL and pgvector versions and memory settings.
    pub(crate) server: Option<String>,
}

/// One (backend, index setting, mode) measurement. Metrics are `None` when the mode is not
/// available; `note` then says why.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) backend: BackendKind,
    /// `exact` or `hnsw`.
    pub(crate) index: String,
    pub(crate) ef_search: Option<u32>,
    pub(crate) mode: Mode,
    pub(crate) note: Option<String>,
    pub(crate) recall: Option<f64>,
    pub(crate) mrr: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) mean_ms: Option<f64>,
    /// Whether PostgreSQL's plan for this setting scans the vector index.
    pub(crate) plan_uses_index: Option<bool>,
    /// Against the exact search of the same backend and mode.
    pub(crate) vs_exact: Option<Agreement>,
    /// Per query, in the dataset's order: 1-based rank of the first expected key, 0 = not in the top k.
    pub(crate) ranks: Vec<u32>,
}

impl Row {
    fn same_setting(&self, other: &Row) -> bool {
        self.backend == other.backend
            && self.index == other.index
            && self.ef_search == other.ef_search
            && self.mode == other.mode
    }

    /// `exact` or `hnsw ef_search 100`.
    pub(crate) fn setting(&self) -> String {
        match self.ef_search {
            Some(ef) => format!("{} ef_search {ef}", self.index),
            None => self.index.clone(),
        }
    }
}

/// How far two result lists of the same queries agree.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Agreement {
    /// Share of queries with the same top-k set.
    pub(crate) same_top_k: f64,
    /// Mean share of the top k in common.
    pub(crate) overlap: f64,
}

fn bench_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("mk-bench")
}

/// Writes the run to `path`, or to `target/mk-bench/quality-<dataset sha>-<unix time>.json`.
pub(crate) fn write(run: &QualityRun, path: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => bench_dir().join(format!("quality-{}-{}.json", &run.dataset.sha256[..12], run.unix_time)),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(run)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The output of `git describe --always --dirty`, if there is a repository and a git.
pub(crate) fn git_describe() -> Option<String> {
    let out = std::process::Command::new("git").args(["describe", "--always", "--dirty"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Markdown lines comparing `run` with the earlier run in `path`: recall and MRR then and now
/// per setting and, on the same dataset and queries, how many queries were won and lost.
pub(crate) fn compare(run: &QualityRun, path: &Path) -> anyhow::Result<Vec<String>> {
    let old: QualityRun =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{} is not a quality result file", path.display()))?;
    anyhow::ensure!(old.format == FORMAT, "{} has format {}, this build writes {FORMAT}", path.display(), old.format);
    // Ranks are per query in file order: comparable whenever the queries are the same, even on
    // another corpus (the two title variants of the dev set share their queries).
    let same_queries =
        old.dataset.queries_sha256 == run.dataset.queries_sha256 && old.dataset.queries == run.dataset.queries;
    let same_corpus =
        old.dataset.corpus_sha256 == run.dataset.corpus_sha256 && old.dataset.documents == run.dataset.documents;
    let what = match (same_queries, same_corpus) {
        (true, true) => "the same dataset",
        (true, false) => "the same queries on a DIFFERENT corpus",
        (false, _) => "DIFFERENT queries: only the totals compare",
    };
    let mut lines = vec![
        format!(
            "Compared with {} ({}, model {}, {} documents; {what}):\n",
            path.display(),
            old.git.as_deref().unwrap_or("unknown commit"),
            old.model,
            old.dataset.documents,
        ),
        "| backend | index | mode | recall@k then | now | MRR@k then | now | queries won | lost |".into(),
        "|---|---|---|---|---|---|---|---|---|".into(),
    ];
    for row in run.rows.iter().filter(|r| r.recall.is_some()) {
        let Some(prev) = old.rows.iter().find(|o| o.same_setting(row) && o.recall.is_some()) else { continue };
        let (won, lost) = if same_queries {
            let won = row.ranks.iter().zip(&prev.ranks).filter(|(n, o)| **n > 0 && **o == 0).count();
            let lost = row.ranks.iter().zip(&prev.ranks).filter(|(n, o)| **n == 0 && **o > 0).count();
            (won.to_string(), lost.to_string())
        } else {
            ("-".into(), "-".into())
        };
        lines.push(format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {won} | {lost} |",
            row.backend.label(),
            row.setting(),
            row.mode.label(),
            prev.recall.unwrap_or(f64::NAN),
            row.recall.unwrap_or(f64::NAN),
            prev.mrr.unwrap_or(f64::NAN),
            row.mrr.unwrap_or(f64::NAN),
        ));
    }
    Ok(lines)
}
