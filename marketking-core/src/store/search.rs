//! The three search entry points, all through one cached path
//! ([`ResultCache::search`](super::result_cache::ResultCache::search)), and MMR.

use super::result_cache::{Query, ResultKey};
use super::VectorStore;
use crate::backend::SearchQuery;
use crate::document::{validate_vector, ScoredId, SearchHit, SearchOptions};
use crate::embedder::embed_checked;
use crate::embedder::Embedder as _;
use crate::error::{Error, Result};
use crate::position::WritePosition;
use crate::search_mode::SearchMode;
use crate::similarity::cosine_similarity;

impl VectorStore {
    /// Documents best matching a text query, best first: hybrid (vector and full text fused)
    /// unless `opts.mode` says [`SearchMode::Vector`] or [`SearchMode::Text`].
    pub async fn search(&self, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        self.text_search(query, opts, false).await
    }

    /// [`search`](Self::search) returning ids and scores only: no document column is read or
    /// sent, the cheapest search for callers who keep the documents elsewhere.
    pub async fn search_ids(&self, query: &str, opts: &SearchOptions) -> Result<Vec<ScoredId>> {
        Ok(self.text_search(query, opts, true).await?.into_iter().map(ScoredId::from).collect())
    }

    /// Documents most similar to a vector, best first (vector ranking only).
    pub async fn search_by_vector(&self, vector: &[f32], opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        self.vector_search(vector, opts, false).await
    }

    /// [`search_by_vector`](Self::search_by_vector) returning ids and scores only (PostgreSQL:
    /// `SELECT id, embedding <=> $1 ... ORDER BY ... LIMIT k`, no document column read).
    pub async fn search_ids_by_vector(&self, vector: &[f32], opts: &SearchOptions) -> Result<Vec<ScoredId>> {
        Ok(self.vector_search(vector, opts, true).await?.into_iter().map(ScoredId::from).collect())
    }

    async fn text_search(&self, query: &str, opts: &SearchOptions, ids_only: bool) -> Result<Vec<SearchHit>> {
        opts.validate()?;
        if query.trim().is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        ids_only_fits(opts, ids_only)?;
        let opts = self.resolve(opts)?;
        let mode = opts.mode.unwrap_or(SearchMode::Hybrid);
        // Ids-only results are cached under their own kind: their hits carry no documents.
        let kind: &[u8] = if ids_only { b"Q" } else { b"q" };
        let key = ResultKey { kind, query: Query::Bytes(query.as_bytes()), opts: &opts };
        let opts = &opts;
        self.inner
            .cache
            .search(key, |floor| async move {
                // A text-only search makes no embedder call.
                let vector = match mode {
                    SearchMode::Text => None,
                    _ => Some(self.query_embedding(query).await?),
                };
                // The text leg reads words: a NUL (which PostgreSQL text cannot hold) separates
                // words like any other control character.
                let words = query.replace('\0', " ");
                let text = (mode != SearchMode::Vector).then_some(words.as_str());
                self.ranked(SearchQuery { vector: vector.as_deref(), text, ids_only }, opts, None, floor).await
            })
            .await
    }

    async fn vector_search(&self, vector: &[f32], opts: &SearchOptions, ids_only: bool) -> Result<Vec<SearchHit>> {
        opts.validate()?;
        vector_only(opts)?;
        ids_only_fits(opts, ids_only)?;
        validate_vector("vector", vector, self.dimensions())?;
        let opts = self.resolve(opts)?;
        let kind: &[u8] = if ids_only { b"V" } else { b"v" };
        let key = ResultKey { kind, query: Query::Vector(vector), opts: &opts };
        let query = SearchQuery { ids_only, ..SearchQuery::vector(vector) };
        self.inner.cache.search(key, |floor| self.ranked(query, &opts, None, floor)).await
    }

    /// Documents most similar to document `id`, excluding it (vector ranking only).
    pub async fn find_similar(&self, id: i64, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        opts.validate()?;
        vector_only(opts)?;
        let opts = self.resolve(opts)?;
        // The document is read first, so a missing id is NotFound even when results are cached.
        let doc = self.get_with_embedding(id).await?;
        let vector = doc.embedding.ok_or(Error::NotFound { id })?;
        let id_bytes = id.to_le_bytes();
        let key = ResultKey { kind: b"s", query: Query::Bytes(&id_bytes), opts: &opts };
        self.inner.cache.search(key, |floor| self.ranked(SearchQuery::vector(&vector), &opts, Some(id), floor)).await
    }

    /// The plan a vector search with these options would run, as text (PostgreSQL: `EXPLAIN`
    /// of the exact statement and settings a search uses). For checking that an index is used.
    pub async fn explain_search(&self, vector: &[f32], opts: &SearchOptions) -> Result<String> {
        opts.validate()?;
        validate_vector("vector", vector, self.dimensions())?;
        self.inner.backend.explain(SearchQuery::vector(vector), &self.resolve(opts)?).await
    }

    /// The plan a text search with these options would run, as text: [`search`](Self::search)'s
    /// statement in its mode (the query embedded as a search embeds it).
    pub async fn explain_query(&self, query: &str, opts: &SearchOptions) -> Result<String> {
        opts.validate()?;
        if query.trim().is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        let opts = self.resolve(opts)?;
        let mode = opts.mode.unwrap_or(SearchMode::Hybrid);
        let vector = match mode {
            SearchMode::Text => None,
            _ => Some(self.query_embedding(query).await?),
        };
        let words = query.replace('\0', " ");
        let text = (mode != SearchMode::Vector).then_some(words.as_str());
        self.inner.backend.explain(SearchQuery { vector: vector.as_deref(), text, ids_only: false }, &opts).await
    }

    /// The backend's ranking, re-ranked by MMR when asked. With `floor` (the write position a
    /// result cached under the current generation must include) the read sees at least it.
    async fn ranked(
        &self,
        query: SearchQuery<'_>,
        opts: &SearchOptions,
        exclude: Option<i64>,
        floor: Option<WritePosition>,
    ) -> Result<Vec<SearchHit>> {
        let raised;
        let opts = match floor {
            Some(f) if opts.consistent_after.is_none_or(|c| c < f) => {
                raised = SearchOptions { consistent_after: Some(f), ..opts.clone() };
                &raised
            }
            _ => opts,
        };
        let Some(mmr) = opts.mmr else {
            return self.inner.backend.search(query, opts, exclude).await;
        };
        // MMR compares the candidates' vectors: they are read even for an ids-only search.
        let wide = SearchOptions { k: mmr.fetch_k, include_embedding: true, ..opts.clone() };
        let candidates = self.inner.backend.search(SearchQuery { ids_only: false, ..query }, &wide, exclude).await?;
        let mut hits = mmr_select(candidates, mmr.lambda, opts.k);
        if !opts.include_embedding {
            hits.iter_mut().for_each(|h| h.document.embedding = None);
        }
        Ok(hits)
    }

    /// The query's embedding (with the embedder's query instruction in front, when it has one),
    /// cached by model, dimensions and text.
    pub(super) async fn query_embedding(&self, text: &str) -> Result<Vec<f32>> {
        let e = &self.inner.embedder;
        let text = match e.query_instruction() {
            Some(prefix) => format!("{prefix}{text}"),
            None => text.to_string(),
        };
        self.inner
            .cache
            .embedding(e.model_id(), e.dimensions(), &text, async {
                let mut v = embed_checked(e, std::slice::from_ref(&text)).await?;
                v.pop().ok_or_else(|| Error::Embedder { message: "no vector for the query".into(), status: None })
            })
            .await
    }
}

/// An ids-only search returns no document, so it cannot return an embedding either.
fn ids_only_fits(opts: &SearchOptions, ids_only: bool) -> Result<()> {
    if ids_only && opts.include_embedding {
        return Err(Error::invalid("include_embedding", "an ids-only search returns no documents, so no embeddings"));
    }
    Ok(())
}

/// Vector and similar-document searches rank by vector only.
fn vector_only(opts: &SearchOptions) -> Result<()> {
    match opts.mode {
        None | Some(SearchMode::Vector) => Ok(()),
        Some(_) => Err(Error::invalid(
            "mode",
            "a search by vector or by similar document ranks by vector only; text and hybrid modes need a text query",
        )),
    }
}

/// Maximal Marginal Relevance over `candidates` (best first, with embeddings): repeatedly picks
/// the candidate maximising `lambda * relevance - (1 - lambda) * max similarity to the picked`,
/// relevance being the candidate's score scaled to `[0, 1]` over the candidates (so it works for
/// every mode) and similarity the cosine of the two documents' vectors.
pub(crate) fn mmr_select(candidates: Vec<SearchHit>, lambda: f32, k: usize) -> Vec<SearchHit> {
    let (lo, hi) =
        candidates.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| (lo.min(h.score), hi.max(h.score)));
    let span = hi - lo;
    let relevance = |h: &SearchHit| if span > 0.0 { (h.score - lo) / span } else { 1.0 };
    let mut rest: Vec<(f32, SearchHit)> = candidates.into_iter().map(|h| (relevance(&h), h)).collect();
    let mut picked: Vec<SearchHit> = Vec::with_capacity(k);
    while picked.len() < k && !rest.is_empty() {
        let mut best: Option<(usize, f32)> = None;
        for (i, (rel, h)) in rest.iter().enumerate() {
            let redundancy = picked
                .iter()
                .filter_map(|p| match (&h.document.embedding, &p.document.embedding) {
                    (Some(a), Some(b)) => cosine_similarity(a, b),
                    _ => None,
                })
                .fold(0.0f32, f32::max);
            let value = lambda * rel - (1.0 - lambda) * redundancy;
            if best.is_none_or(|(_, b)| value > b) {
                best = Some((i, value));
            }
        }
        match best {
            Some((i, _)) => picked.push(rest.remove(i).1),
            None => break,
        }
    }
    picked
}
