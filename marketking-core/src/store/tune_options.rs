//! The options and the report of [`VectorStore::tune_recall`](crate::VectorStore::tune_recall)(crate::VectorStore::tune_recall).

use serde::{Deserialize, Serialize};

use crate::backend::IndexInfo;
use crate::document::MAX_K;
use crate::error::{Error, Result};

/// Most stored documents one tuning run uses as queries.
pub const MAX_TUNE_QUERIES: usize = 10_000;

/// Which search-time setting a tuning run varies: the one that trades speed for recall on the
/// table's index.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TuneKnob {
    /// HNSW `ef_search` (full-precision and half-precision indexes).
    EfSearch,
    /// IVFFlat `probes`.
    Probes,
    /// Candidates per result of a binary-quantized HNSW index (its `ef_search` follows).
    Oversample,
}

impl std::fmt::Display for TuneKnob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            TuneKnob::EfSearch => "ef_search",
            TuneKnob::Probes => "probes",
            TuneKnob::Oversample => "oversample",
        })
    }
}

/// What [`VectorStore::tune_recall`](crate::VectorStore::tune_recall) aims at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TuneOptions {
    /// The recall@k to reach against exact search, in (0, 1]. Default 0.95.
    pub target: f64,
    /// The `k` of recall@k (1..=1000). Default 10.
    pub k: usize,
    /// How many stored documents to use as queries (1..=10000). Default 200.
    pub queries: usize,
    /// Measure and report only; keep nothing with the index.
    pub dry_run: bool,
    /// Query texts to measure with instead of stored documents (e.g. a sample of the
    /// application's real queries), embedded as a search embeds its query; at most
    /// [`MAX_TUNE_QUERIES`]. Short queries can need a larger `ef_search` than documents do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_texts: Vec<String>,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions { target: 0.95, k: 10, queries: 200, dry_run: false, query_texts: Vec::new() }
    }
}

impl TuneOptions {
    /// Options aiming at recall@10 `target`.
    pub fn target(target: f64) -> Self {
        TuneOptions { target, ..Default::default() }
    }

    /// Sets the `k` of recall@k.
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Sets how many stored documents serve as queries.
    pub fn queries(mut self, n: usize) -> Self {
        self.queries = n;
        self
    }

    /// Measures with these query texts instead of stored documents.
    pub fn query_texts(mut self, texts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.query_texts = texts.into_iter().map(Into::into).collect();
        self
    }

    /// Measures and reports without keeping the result.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        if !(self.target.is_finite() && self.target > 0.0 && self.target <= 1.0) {
            return Err(Error::invalid("target", format!("must be a recall in (0, 1], got {}", self.target)));
        }
        // One more row is searched than k (the query's own row is left out).
        if self.k == 0 || self.k >= MAX_K {
            return Err(Error::invalid("k", format!("must be between 1 and {}, got {}", MAX_K - 1, self.k)));
        }
        if self.query_texts.len() > MAX_TUNE_QUERIES {
            return Err(Error::invalid(
                "query_texts",
                format!("at most {MAX_TUNE_QUERIES} texts, got {}", self.query_texts.len()),
            ));
        }
        if let Some(i) = self.query_texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::invalid(format!("query_texts[{i}]"), "must not be blank"));
        }
        if self.queries == 0 || self.queries > MAX_TUNE_QUERIES {
            return Err(Error::invalid(
                "queries",
                format!("must be between 1 and {MAX_TUNE_QUERIES}, got {}", self.queries),
            ));
        }
        Ok(())
    }
}

/// One measured setting.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TuneStep {
    /// The knob's value.
    pub value: u32,
    /// Mean recall@k against exact search over the sampled queries.
    pub recall: f64,
    /// Median latency of one search at this value, in milliseconds (sequential, this process).
    pub p50_ms: f64,
    /// Whether the first query's plan at this value reads the vector index. PostgreSQL's
    /// planner costs a scan by ef_search too: past some value it scans the table exactly
    /// instead (recall 1, and the latency of an exact search).
    pub uses_index: bool,
}

/// What [`VectorStore::tune_recall`](crate::VectorStore::tune_recall) measured and did.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneReport {
    /// The index, as it is after the run (with its tuned settings when they were kept).
    pub index: IndexInfo,
    /// The setting varied.
    pub knob: TuneKnob,
    /// The recall aimed at.
    pub target: f64,
    /// The `k` of recall@k.
    pub k: usize,
    /// The stored documents used as queries (their ids); empty when the run measured with
    /// query texts.
    pub query_ids: Vec<i64>,
    /// How many query texts the run measured with (0: stored documents were the queries).
    #[serde(default)]
    pub query_texts: usize,
    /// The value searches used before this run, and its recall.
    pub before: TuneStep,
    /// Every value measured, ascending.
    pub steps: Vec<TuneStep>,
    /// The smallest value measured that reaches the target; `None` when none does (the
    /// largest value tried falls short: build the index with more links or use another form).
    pub chosen: Option<TuneStep>,
    /// Whether `chosen` was kept with the index (not a dry run, and a value was found).
    pub applied: bool,
    /// The store's configuration sets this knob (builder or environment), which wins over the
    /// kept value in this store; other stores without it use the kept value.
    pub overridden_by_config: bool,
}
