//! The three search entry points, all through one cached path
//! ([`ResultCache::search`](super::result_cache::ResultCache::search)).

use super::result_cache::{Query, ResultKey};
use super::VectorStore;
use crate::document::{validate_vector, SearchHit, SearchOptions};
use crate::embedder::embed_checked;
use crate::embedder::Embedder as _;
use crate::error::{Error, Result};

impl VectorStore {
    /// Documents most similar to a text query, best first.
    pub async fn search(&self, query: &str, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        opts.validate()?;
        if query.trim().is_empty() {
            return Err(Error::invalid("query", "must not be empty"));
        }
        let opts = self.resolve(opts);
        let key = ResultKey { kind: b"q", query: Query::Bytes(query.as_bytes()), opts: &opts };
        self.inner
            .cache
            .search(key, async {
                let vector = self.query_embedding(query).await?;
                self.inner.backend.search(&vector, &opts, None).await
            })
            .await
    }

    /// Documents most similar to a vector, best first.
    pub async fn search_by_vector(&self, vector: &[f32], opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        opts.validate()?;
        validate_vector("vector", vector, self.dimensions())?;
        let opts = self.resolve(opts);
        let key = ResultKey { kind: b"v", query: Query::Vector(vector), opts: &opts };
        self.inner.cache.search(key, self.inner.backend.search(vector, &opts, None)).await
    }

    /// Documents most similar to document `id`, excluding it.
    pub async fn find_similar(&self, id: i64, opts: &SearchOptions) -> Result<Vec<SearchHit>> {
        opts.validate()?;
        let opts = self.resolve(opts);
        // The document is read first, so a missing id is NotFound even when results are cached.
        let doc = self.get_with_embedding(id).await?;
        let vector = doc.embedding.ok_or(Error::NotFound { id })?;
        let id_bytes = id.to_le_bytes();
        let key = ResultKey { kind: b"s", query: Query::Bytes(&id_bytes), opts: &opts };
        self.inner.cache.search(key, self.inner.backend.search(&vector, &opts, Some(id))).await
    }

    /// The plan a search with these options would run, as text (PostgreSQL: `EXPLAIN` of the
    /// exact statement and settings a search uses). For checking that an index is used.
    pub async fn explain_search(&self, vector: &[f32], opts: &SearchOptions) -> Result<String> {
        opts.validate()?;
        validate_vector("vector", vector, self.dimensions())?;
        self.inner.backend.explain(vector, &self.resolve(opts)).await
    }

    /// The query's embedding, cached by model, dimensions and text.
    async fn query_embedding(&self, text: &str) -> Result<Vec<f32>> {
        let e = &self.inner.embedder;
        self.inner
            .cache
            .embedding(e.model_id(), e.dimensions(), text, async {
                let mut v = embed_checked(e, &[text.to_string()]).await?;
                v.pop().ok_or_else(|| Error::Embedder { message: "no vector for the query".into(), status: None })
            })
            .await
    }
}
