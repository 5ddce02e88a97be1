//! Storage backends behind [`VectorStore`](crate::VectorStore): PostgreSQL + pgvector and the
//! embedded local file. The trait is internal; the store validates input before calling it.

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::{BatchReport, Document, DocumentPatch, NewDocument, SearchHit, SearchOptions};
use crate::embedder::{embed_checked, Embedder};
use crate::error::{Error, Result};

#[cfg(feature = "embedded")]
pub(crate) mod embedded;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

/// Which approximate index a table has (or should get).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum IndexKind {
    /// HNSW graph: best recall/latency, slower to build.
    Hnsw {
        /// Max links per node (2..=100, default 16).
        m: u32,
        /// Candidate list size while building (4..=1000, at least 2*m, default 64).
        ef_construction: u32,
    },
    /// IVFFlat: fast to build, needs data before building.
    IvfFlat {
        /// Number of lists; `None` = rows / 1000 (at least 1).
        lists: Option<u32>,
    },
}

impl Default for IndexKind {
    fn default() -> Self {
        IndexKind::Hnsw { m: 16, ef_construction: 64 }
    }
}

impl IndexKind {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            IndexKind::Hnsw { m, ef_construction } => {
                if !(2..=100).contains(&m) {
                    return Err(Error::invalid("m", format!("must be between 2 and 100, got {m}")));
                }
                if !(4..=1000).contains(&ef_construction) || ef_construction < 2 * m {
                    return Err(Error::invalid(
                        "ef_construction",
                        format!("must be between 4 and 1000 and at least 2*m ({}), got {ef_construction}", 2 * m),
                    ));
                }
            }
            IndexKind::IvfFlat { lists } => {
                if let Some(l) = lists {
                    if !(1..=32768).contains(&l) {
                        return Err(Error::invalid("lists", format!("must be between 1 and 32768, got {l}")));
                    }
                }
            }
        }
        Ok(())
    }
}

/// How to build an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IndexSpec {
    /// Kind and parameters.
    pub kind: IndexKind,
    /// Build with `CREATE INDEX CONCURRENTLY` (does not block writes; slower).
    pub concurrently: bool,
}

/// The index a table has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Index name.
    pub name: String,
    /// Kind and parameters (IVFFlat lists resolved to the built value).
    pub kind: IndexKind,
    /// Size on disk in bytes.
    pub bytes: u64,
}

/// Document count for one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    /// The source (`None` for documents without one).
    pub source: Option<String>,
    /// How many documents.
    pub count: u64,
}

/// What the storage layer knows about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageStats {
    /// `postgres` or `embedded`.
    pub backend: String,
    /// Table name (Postgres) or file path (embedded).
    pub location: String,
    /// Number of documents.
    pub documents: u64,
    /// Up to 20 sources with the most documents, largest first.
    pub sources: Vec<SourceCount>,
    /// Table (or file) size in bytes.
    pub table_bytes: u64,
    /// The vector index, if any.
    pub index: Option<IndexInfo>,
}

/// Connection pool figures (PostgreSQL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// Largest number of connections the pool opens.
    pub max_size: u32,
    /// Connections open now.
    pub connections: u32,
    /// Of those, idle.
    pub idle: u32,
    /// Checkouts that had to wait for a connection, since start.
    pub waited: u64,
    /// Checkouts that timed out, since start.
    pub timed_out: u64,
}

/// A storage backend. Every method gets validated input.
#[async_trait]
pub(crate) trait Backend: Send + Sync + Debug {
    /// Writes `docs` in one transaction: all or nothing. Documents with a key upsert through it
    /// (no embedder call when title and content are unchanged); documents without an embedding
    /// are embedded through `embedder` in chunks of its batch size (see [`fill_embeddings`]).
    async fn write_batch(&self, docs: Vec<NewDocument>, embedder: &dyn Embedder) -> Result<BatchReport>;

    /// One document by id.
    async fn get(&self, id: i64, with_embedding: bool) -> Result<Option<Document>>;

    /// One document by caller key.
    async fn get_by_key(&self, key: &str, with_embedding: bool) -> Result<Option<Document>>;

    /// Applies `patch` (already validated); `embedding` replaces the vector when given.
    /// Returns the updated document, `None` if the id does not exist.
    async fn update(&self, id: i64, patch: &DocumentPatch, embedding: Option<Vec<f32>>) -> Result<Option<Document>>;

    /// Deletes by id; false when it did not exist.
    async fn delete(&self, id: i64) -> Result<bool>;

    /// Top `opts.k` documents by cosine similarity to `query`, best first, with filters applied
    /// and `min_score` honoured; `exclude` leaves one id out (find_similar).
    async fn search(&self, query: &[f32], opts: &SearchOptions, exclude: Option<i64>) -> Result<Vec<SearchHit>>;

    /// The query plan `search` would use, as text (EXPLAIN); backends without a planner
    /// describe their scan.
    async fn explain(&self, _query: &[f32], _opts: &SearchOptions) -> Result<String> {
        Ok("exact scan over all stored vectors".into())
    }

    /// Documents with id > `after_id`, ascending, at most `limit` (for export).
    async fn list(&self, after_id: i64, limit: usize, with_embedding: bool) -> Result<Vec<Document>>;

    /// Counts and sizes.
    async fn stats(&self) -> Result<StorageStats>;

    /// Builds (or replaces) the vector index.
    async fn create_index(&self, spec: &IndexSpec) -> Result<IndexInfo>;

    /// Drops the vector index; false when there was none.
    async fn drop_index(&self) -> Result<bool>;

    /// Rebuilds the existing index (REINDEX); error if there is none.
    async fn rebuild_index(&self, concurrently: bool) -> Result<IndexInfo>;

    /// Refreshes planner statistics (after bulk loads).
    async fn analyze(&self) -> Result<()>;

    /// Checks the storage is reachable and migrated.
    async fn ping(&self) -> Result<()>;

    /// Connection pool figures, for backends with a pool.
    fn pool(&self) -> Option<PoolStats> {
        None
    }

    /// A string naming this storage (server, database, table) for cache key namespacing.
    fn identity(&self) -> String;

    /// `postgres` or `embedded`.
    fn kind(&self) -> &'static str;
}

/// A stored document's fields that decide what an upsert does.
#[derive(Debug, Clone)]
pub(crate) struct Existing {
    pub(crate) id: i64,
    pub(crate) title: String,
    pub(crate) content: String,
    pub(crate) source: Option<String>,
    pub(crate) metadata: Value,
    /// The stored vector: read only when the batch brings precomputed vectors for existing
    /// keys, to tell an unchanged vector from a new one.
    pub(crate) embedding: Option<Vec<f32>>,
}

/// Whether a batch needs the stored vectors of its keys (see [`Existing::embedding`]).
pub(crate) fn needs_stored_vectors(docs: &[NewDocument]) -> bool {
    docs.iter().any(|d| d.key.is_some() && d.embedding.is_some())
}

/// What to do with one input document of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// New row.
    Insert,
    /// Existing key, same text (and, for a precomputed vector, the same vector): keep the
    /// stored vector, maybe update source/metadata.
    Touch { id: i64, changed: bool },
    /// Existing key, new text or a different precomputed vector: rewrite with a new vector.
    Rewrite { id: i64 },
}

/// Decides the action for each document, given the existing rows of the batch's keys.
/// Rejects a key used twice in one batch.
pub(crate) fn plan_batch(docs: &[NewDocument], existing: &HashMap<String, Existing>) -> Result<Vec<Action>> {
    let mut seen = std::collections::HashSet::new();
    docs.iter()
        .map(|d| {
            let Some(key) = &d.key else { return Ok(Action::Insert) };
            if !seen.insert(key.as_str()) {
                return Err(Error::Conflict { reason: format!("key {key:?} appears more than once in the batch") });
            }
            Ok(match existing.get(key) {
                None => Action::Insert,
                Some(e)
                    if e.title == d.title
                        && e.content == d.content
                        && d.embedding.as_ref().is_none_or(|v| e.embedding.as_ref() == Some(v)) =>
                {
                    Action::Touch { id: e.id, changed: e.source != d.source || e.metadata != d.metadata }
                }
                Some(e) => Action::Rewrite { id: e.id },
            })
        })
        .collect()
}

/// Embeds the documents of `chunk` that have no embedding and need one (per `actions`), in one
/// embedder call, and stores the vectors in the documents. Returns how many texts were embedded.
pub(crate) async fn fill_embeddings(
    embedder: &dyn Embedder,
    chunk: &mut [NewDocument],
    actions: &[Action],
) -> Result<usize> {
    let need: Vec<usize> = chunk
        .iter()
        .zip(actions)
        .enumerate()
        .filter(|(_, (d, a))| d.embedding.is_none() && !matches!(a, Action::Touch { .. }))
        .map(|(i, _)| i)
        .collect();
    if need.is_empty() {
        return Ok(0);
    }
    let texts: Vec<String> = need.iter().map(|&i| chunk[i].embedding_text()).collect();
    let vectors = embed_checked(embedder, &texts).await?;
    for (i, v) in need.iter().zip(vectors) {
        chunk[*i].embedding = Some(v);
    }
    Ok(need.len())
}

/// Sorts hits best first (ties by id) and applies `min_score` and `k`.
pub(crate) fn finish_hits(mut hits: Vec<SearchHit>, opts: &SearchOptions) -> Vec<SearchHit> {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.document.id.cmp(&b.document.id)));
    if let Some(min) = opts.min_score {
        hits.retain(|h| h.score >= min);
    }
    hits.truncate(opts.k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_detects_unchanged_changed_and_duplicates() {
        let mut existing = HashMap::new();
        existing.insert(
            "a".to_string(),
            Existing {
                id: 1,
                title: "t".into(),
                content: "c".into(),
                source: None,
                metadata: serde_json::json!({}),
                embedding: Some(vec![0.6, 0.8]),
            },
        );
        let same = NewDocument::new("t", "c").with_key("a");
        let meta = NewDocument::new("t", "c").with_key("a").with_source("s");
        let text = NewDocument::new("t", "c2").with_key("a");
        let fresh = NewDocument::new("t", "c").with_key("b");
        assert_eq!(
            plan_batch(std::slice::from_ref(&same), &existing).unwrap(),
            vec![Action::Touch { id: 1, changed: false }]
        );
        assert_eq!(plan_batch(&[meta], &existing).unwrap(), vec![Action::Touch { id: 1, changed: true }]);
        assert_eq!(plan_batch(&[text], &existing).unwrap(), vec![Action::Rewrite { id: 1 }]);
        assert_eq!(plan_batch(&[fresh], &existing).unwrap(), vec![Action::Insert]);
        // A precomputed vector equal to the stored one keeps the row; a different one rewrites.
        let same_vector = NewDocument::new("t", "c").with_key("a").with_embedding(vec![0.6, 0.8]);
        let new_vector = NewDocument::new("t", "c").with_key("a").with_embedding(vec![0.8, 0.6]);
        assert_eq!(plan_batch(&[same_vector], &existing).unwrap(), vec![Action::Touch { id: 1, changed: false }]);
        assert_eq!(plan_batch(&[new_vector], &existing).unwrap(), vec![Action::Rewrite { id: 1 }]);
        let err = plan_batch(&[same.clone(), same], &existing).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
    }
}
