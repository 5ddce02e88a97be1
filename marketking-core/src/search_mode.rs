//! How a search ranks: the vector leg, the full-text leg, or both fused (Reciprocal Rank
//! Fusion), optionally diversified by MMR. Part of [`SearchOptions`](crate::SearchOptions).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which ranking a text search uses.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SearchMode {
    /// Cosine similarity of embeddings only; `score` is the similarity in `[-1, 1]`.
    Vector,
    /// Full text only: BM25 over the query's words OR-ed, documents with all of them first, on
    /// both backends (PostgreSQL in SQL over `tsvector`, the embedded store with FTS5);
    /// `score` is `1` for having every word plus `s / (s + 1)` of the BM25 relevance `s`, in
    /// `[0, 2)` (higher is better). No embedder call.
    Text,
    /// Both legs, fused by Reciprocal Rank Fusion; `score` is the fused score
    /// `sum(weight / (rrf_k + rank))`. Each hit carries its cosine similarity (`vector`, with
    /// its rank when the vector leg nominated it) and, when the text leg nominated it, its text
    /// rank and score. `min_score` applies to the cosine similarity, as in vector mode.
    Hybrid,
}

/// Characters PostgreSQL's text parser keeps inside a token (`os.path.join`, `foo-bar`, `2.5`,
/// `a/b`, `x@y.com`, `http://...` are one token each, beside their parts at best) but that
/// separate words in the text people search: a query "join path" should find `os.path.join`.
/// Replaced by spaces before parsing, in the documents and in the queries alike, on both backends
/// (PostgreSQL's `translate` before `to_tsvector`, the embedded store's lexer), so both see the
/// same words.
#[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
pub(crate) const WORD_BREAKS: &str = ".-/@:";

/// BM25's term-frequency saturation, the same on both backends (SQLite FTS5's `bm25()` uses it).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const BM25_K1: f64 = 1.2;
/// BM25's length normalisation, the same on both backends (FTS5's value).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const BM25_B: f64 = 0.75;
/// How much more a word in the title counts than one in the content, in the text leg's BM25
/// on both backends (PostgreSQL weight `A` against `B`, FTS5 column weights).
#[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
pub(crate) const TITLE_WEIGHT: f64 = 2.5;

/// Reciprocal Rank Fusion settings of [`SearchMode::Hybrid`].
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fusion {
    /// RRF's `k` (1..=1000, default 60): larger flattens the advantage of top ranks.
    pub rrf_k: u32,
    /// Weight of the vector leg (0..=10, default 1).
    pub vector_weight: f32,
    /// Weight of the full-text leg (0..=10, default 1).
    pub text_weight: f32,
    /// Candidates each leg contributes (k..=1000); default `max(4 * k, 40)`.
    pub candidates: Option<usize>,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion { rrf_k: 60, vector_weight: 1.0, text_weight: 1.0, candidates: None }
    }
}

impl Fusion {
    /// The candidates each leg contributes for `k` results.
    #[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
    pub(crate) fn candidates_for(&self, k: usize) -> usize {
        self.candidates.unwrap_or((4 * k).max(40)).max(k).min(crate::document::MAX_K)
    }

    pub(crate) fn validate(&self, k: usize) -> Result<()> {
        if !(1..=1000).contains(&self.rrf_k) {
            return Err(Error::invalid("fusion.rrf_k", format!("must be between 1 and 1000, got {}", self.rrf_k)));
        }
        for (field, w) in [("fusion.vector_weight", self.vector_weight), ("fusion.text_weight", self.text_weight)] {
            if !w.is_finite() || !(0.0..=10.0).contains(&w) {
                return Err(Error::invalid(field, format!("must be a number in [0, 10], got {w}")));
            }
        }
        if let Some(c) = self.candidates {
            if c < k || c > crate::document::MAX_K {
                return Err(Error::invalid(
                    "fusion.candidates",
                    format!("must be between k ({k}) and {}, got {c}", crate::document::MAX_K),
                ));
            }
        }
        Ok(())
    }

    /// The fused score of a document at these ranks (1-based) in each leg.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub(crate) fn score(&self, vector_rank: Option<usize>, text_rank: Option<usize>) -> f64 {
        let k = f64::from(self.rrf_k);
        let leg = |w: f32, rank: Option<usize>| rank.map_or(0.0, |r| f64::from(w) / (k + r as f64));
        leg(self.vector_weight, vector_rank) + leg(self.text_weight, text_rank)
    }
}

/// Maximal Marginal Relevance: re-ranks the best `fetch_k` candidates so each next hit is
/// relevant and unlike the hits already picked (computed from the candidates' vectors).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mmr {
    /// 1 = relevance only, 0 = diversity only (0..=1; 0.5 is a common choice).
    pub lambda: f32,
    /// Candidates to choose from (k..=1000).
    pub fetch_k: usize,
}

impl Mmr {
    /// MMR choosing among the default candidate count for `k` results, `max(4 * k, 40)`.
    pub fn new(lambda: f32, k: usize) -> Self {
        Mmr { lambda, fetch_k: Self::default_fetch_k(k) }
    }

    /// The default candidate count for `k` results: `max(4 * k, 40)`, at most 1000.
    pub fn default_fetch_k(k: usize) -> usize {
        (4 * k).clamp(40, crate::document::MAX_K)
    }

    pub(crate) fn validate(&self, k: usize) -> Result<()> {
        if !self.lambda.is_finite() || !(0.0..=1.0).contains(&self.lambda) {
            return Err(Error::invalid("mmr.lambda", format!("must be a number in [0, 1], got {}", self.lambda)));
        }
        if self.fetch_k < k || self.fetch_k > crate::document::MAX_K {
            return Err(Error::invalid(
                "mmr.fetch_k",
                format!("must be between k ({k}) and {}, got {}", crate::document::MAX_K, self.fetch_k),
            ));
        }
        Ok(())
    }
}

/// One leg's view of a hit: its rank there (1 = best) and its score in that leg.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LegScore {
    /// Rank among that leg's candidates, from 1; absent when the leg did not nominate the hit
    /// (the vector leg's similarity is reported for every hybrid hit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    /// The leg's own score: cosine similarity, or the full-text rank.
    pub score: f32,
}
