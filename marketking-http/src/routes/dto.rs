//! Request and response bodies of the API, mirroring the core types with OpenAPI schemas.

use chrono::{DateTime, Utc};
use marketking_core::{BatchReport, Document, DocumentPatch, NewDocument, SearchHit, Stats, UpsertOutcome};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// Largest magnitude of one value of a query vector or embedding, published in the schema:
/// the core's own limit, so what the schema allows is what the server accepts.
pub(crate) const VECTOR_VALUE_MAX: f64 = marketking_core::MAX_VECTOR_VALUE as f64;
/// The magnitude at least one value of a vector must reach, published in the schema (the
/// core's limit: below it, cosine similarity is undefined in 32-bit arithmetic).
pub(crate) const VECTOR_PEAK_MIN: f64 = marketking_core::MIN_VECTOR_PEAK as f64;

/// A document to store.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocumentBody {
    /// Title, 1..=255 characters, not blank.
    #[schema(min_length = 1, max_length = 255, pattern = r"\S")]
    pub title: String,
    /// Content, not blank.
    #[schema(min_length = 1, pattern = r"\S")]
    pub content: String,
    /// Where the document came from, 1..=255 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub source: Option<String>,
    /// A JSON object (default `{}`); searches filter on it by containment.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Caller key, unique per store; a write with a known key updates that document.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 512)]
    pub key: Option<String>,
    /// A precomputed embedding with the store's dimensions; computed when absent.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
}

impl From<NewDocumentBody> for NewDocument {
    fn from(b: NewDocumentBody) -> Self {
        let mut d = NewDocument::new(b.title, b.content);
        d.source = b.source;
        if let Some(m) = b.metadata {
            d.metadata = m;
        }
        d.key = b.key;
        d.embedding = b.embedding;
        d
    }
}

/// A document to store under the key in the path (`PUT /v1/documents/by-key/{key}`): a
/// [`NewDocumentBody`] without `key`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertDocumentBody {
    /// Title, 1..=255 characters, not blank.
    #[schema(min_length = 1, max_length = 255, pattern = r"\S")]
    pub title: String,
    /// Content, not blank.
    #[schema(min_length = 1, pattern = r"\S")]
    pub content: String,
    /// Where the document came from, 1..=255 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub source: Option<String>,
    /// A JSON object (default `{}`); searches filter on it by containment.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// A precomputed embedding with the store's dimensions; computed when absent.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
}

impl UpsertDocumentBody {
    /// The document to store under `key`.
    pub fn with_key(self, key: String) -> NewDocument {
        NewDocumentBody {
            title: self.title,
            content: self.content,
            source: self.source,
            metadata: self.metadata,
            key: Some(key),
            embedding: self.embedding,
        }
        .into()
    }
}

/// A stored document.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct DocumentBody {
    /// Store-assigned id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Content.
    pub content: String,
    /// Source, if any.
    pub source: Option<String>,
    /// Metadata object.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Caller key, if any.
    pub key: Option<String>,
    /// When the document was first stored.
    pub created_at: DateTime<Utc>,
    /// When the document last changed.
    pub updated_at: DateTime<Utc>,
    /// The embedding, only when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

impl From<Document> for DocumentBody {
    fn from(d: Document) -> Self {
        DocumentBody {
            id: d.id,
            title: d.title,
            content: d.content,
            source: d.source,
            metadata: d.metadata,
            key: d.key,
            created_at: d.created_at,
            updated_at: d.updated_at,
            embedding: d.embedding,
        }
    }
}

/// A change to a document; absent fields stay as they are, `"source": null` clears the source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// New title (re-embeds).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = r"\S")]
    pub title: Option<String>,
    /// New content (re-embeds).
    #[serde(default)]
    #[schema(min_length = 1, pattern = r"\S")]
    pub content: Option<String>,
    /// New source; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    pub source: Option<Option<String>>,
    /// New metadata object (replaces the old one).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl From<PatchBody> for DocumentPatch {
    fn from(b: PatchBody) -> Self {
        DocumentPatch { title: b.title, content: b.content, source: b.source, metadata: b.metadata }
    }
}

/// Many documents to store in one transaction.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The documents; keyed ones upsert.
    #[serde(deserialize_with = "crate::object::vec_of_objects")]
    pub documents: Vec<NewDocumentBody>,
}

/// What a batch did.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct BatchReportBody {
    /// Ids of the input documents, in input order.
    pub ids: Vec<i64>,
    /// Documents inserted.
    pub created: usize,
    /// Keyed documents that existed and changed.
    pub updated: usize,
    /// Keyed documents that existed unchanged.
    pub unchanged: usize,
    /// Texts sent to the embedder.
    pub embedded: usize,
}

impl From<BatchReport> for BatchReportBody {
    fn from(r: BatchReport) -> Self {
        BatchReportBody {
            ids: r.ids,
            created: r.created,
            updated: r.updated,
            unchanged: r.unchanged,
            embedded: r.embedded,
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new document was inserted.
    Created,
    /// An existing document changed.
    Updated,
    /// The document existed unchanged.
    Unchanged,
}

impl From<UpsertOutcome> for Outcome {
    fn from(o: UpsertOutcome) -> Self {
        match o {
            UpsertOutcome::Created => Outcome::Created,
            UpsertOutcome::Updated => Outcome::Updated,
            UpsertOutcome::Unchanged => Outcome::Unchanged,
        }
    }
}

/// The result of an upsert.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UpsertBody {
    /// Created, updated or unchanged.
    pub outcome: Outcome,
    /// The document as stored.
    pub document: DocumentBody,
}

/// A search: exactly one of `query` and `vector`, plus options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// Text query, not blank.
    #[serde(default)]
    #[schema(min_length = 1, pattern = r"\S")]
    pub query: Option<String>,
    /// Query vector with the store's dimensions.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// Number of results, 1..=1000 (default 10).
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// Keep only documents with one of these sources (each 1..=255 characters).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Keep only documents whose metadata contains this object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Drop results scoring below this (cosine similarity, -1..=1).
    #[serde(default)]
    #[schema(minimum = -1.0, maximum = 1.0)]
    pub min_score: Option<f32>,
    /// Only documents created at or after this instant.
    #[serde(default)]
    pub created_after: Option<DateTime<Utc>>,
    /// Only documents created before this instant.
    #[serde(default)]
    pub created_before: Option<DateTime<Utc>>,
    /// HNSW `ef_search` for this call, 1..=1000.
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 1000)]
    pub ef_search: Option<u32>,
    /// IVFFlat `probes` for this call, 1..=10000.
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 10000)]
    pub probes: Option<u32>,
}

/// Query string of `GET /v1/search`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Text query, not blank.
    #[param(min_length = 1, pattern = r"\S")]
    pub q: String,
    /// Number of results, 1..=1000 (default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// Keep only documents with this source.
    #[param(min_length = 1, max_length = 255)]
    pub source: Option<String>,
}

/// Query string of `GET /v1/documents/{id}/similar`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SimilarParams {
    /// Number of results, 1..=1000 (default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
}

/// One search result.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct HitBody {
    /// Cosine similarity to the query.
    pub score: f32,
    /// The document.
    pub document: DocumentBody,
}

/// Search results, best first.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct SearchResponse {
    /// The hits.
    pub hits: Vec<HitBody>,
}

impl From<Vec<SearchHit>> for SearchResponse {
    fn from(hits: Vec<SearchHit>) -> Self {
        SearchResponse {
            hits: hits.into_iter().map(|h| HitBody { score: h.score, document: h.document.into() }).collect(),
        }
    }
}

/// Cache counters of this process's store.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CacheStatsBody {
    /// Cache kind (`redis`, `memory`, `none`).
    pub kind: String,
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Errors.
    pub errors: u64,
    /// hits / (hits + misses).
    pub hit_rate: f64,
}

/// Embedder counters of this process's store.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EmbedderStatsBody {
    /// Calls.
    pub calls: u64,
    /// Texts embedded.
    pub texts: u64,
    /// Failed calls.
    pub errors: u64,
    /// Total time in the embedder, milliseconds.
    pub total_ms: f64,
}

/// Store statistics.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct StatsBody {
    /// Storage counts, sizes and index (backend-specific object).
    #[schema(value_type = Object)]
    pub storage: Value,
    /// Embedding model id.
    pub model: String,
    /// Vector dimensions.
    pub dimensions: usize,
    /// Cache counters.
    pub cache: CacheStatsBody,
    /// Embedder counters.
    pub embedder: EmbedderStatsBody,
}

impl From<Stats> for StatsBody {
    fn from(s: Stats) -> Self {
        StatsBody {
            storage: serde_json::to_value(&s.storage).unwrap_or(Value::Null),
            model: s.model,
            dimensions: s.dimensions,
            cache: CacheStatsBody {
                kind: s.cache.kind,
                hits: s.cache.hits,
                misses: s.cache.misses,
                errors: s.cache.errors,
                hit_rate: s.cache.hit_rate,
            },
            embedder: EmbedderStatsBody {
                calls: s.embedder.calls,
                texts: s.embedder.texts,
                errors: s.embedder.errors,
                total_ms: s.embedder.total_ms,
            },
        }
    }
}

/// Readiness.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready` or `unavailable`.
    pub status: String,
    /// `ok` or `degraded` (the store works without its cache).
    pub cache: String,
}

/// An optional integer that also accepts a JSON number with a zero fraction (`352.0`): JSON
/// Schema's `integer` does, and serde's integer types do not.
fn integral<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error as _;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    let whole = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Some(u),
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Some(f as u64),
        _ => None,
    };
    whole
        .and_then(|u| T::try_from(u).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a non-negative whole number, got {n}")))
}
