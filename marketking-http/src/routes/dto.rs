//! Request bodies of the API (with their OpenAPI schemas) and the two response wrappers that
//! are the service's own. Responses are otherwise the core's types, whose schemas the core
//! derives (its `utoipa` feature).
//!
//! utoipa takes only literals for lengths and ranges: the numbers below are the core's
//! `MAX_*` and range constants, and a test (`published_limits_are_the_cores`) fails if they
//! drift apart.

use chrono::{DateTime, Utc};
use marketking_core::{metadata_object, Document, DocumentPatch, Fusion, NewDocument, SearchMode, UpsertOutcome};
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
#[schema(example = json!({"title": "Trail shoes", "content": "Light shoes for rocky paths", "source": "catalog", "metadata": {"price": 120, "tags": ["outdoor"]}, "key": "sku-1"}))]
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

impl TryFrom<NewDocumentBody> for NewDocument {
    type Error = marketking_core::Error;

    fn try_from(b: NewDocumentBody) -> Result<Self, Self::Error> {
        let mut d = NewDocument::new(b.title, b.content);
        d.source = b.source;
        if let Some(m) = b.metadata.filter(|m| !m.is_null()) {
            d.metadata = metadata_object("metadata", m)?;
        }
        d.key = b.key;
        d.embedding = b.embedding;
        Ok(d)
    }
}

/// A document to store under the key in the path (`PUT /v1/documents/by-key/{key}`): a
/// [`NewDocumentBody`] without `key`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Trail shoes", "content": "Light shoes for rocky paths", "metadata": {"price": 99}}))]
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
    pub fn with_key(self, key: String) -> Result<NewDocument, marketking_core::Error> {
        NewDocumentBody {
            title: self.title,
            content: self.content,
            source: self.source,
            metadata: self.metadata,
            key: Some(key),
            embedding: self.embedding,
        }
        .try_into()
    }
}

/// A change to a document; absent fields stay as they are, `"source": null` clears the source.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Trail runners", "source": null}))]
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

impl TryFrom<PatchBody> for DocumentPatch {
    type Error = marketking_core::Error;

    fn try_from(b: PatchBody) -> Result<Self, Self::Error> {
        let mut p = DocumentPatch::new();
        if let Some(t) = b.title {
            p = p.title(t);
        }
        if let Some(c) = b.content {
            p = p.content(c);
        }
        match b.source {
            Some(Some(s)) => p = p.source(s),
            Some(None) => p = p.clear_source(),
            None => {}
        }
        if let Some(m) = b.metadata {
            p = p.metadata(metadata_object("metadata", m)?);
        }
        Ok(p)
    }
}

/// Many documents to store in one transaction.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"documents": [{"title": "Trail shoes", "content": "Light shoes for rocky paths", "key": "sku-1"}, {"title": "Rain jacket", "content": "Keeps you dry"}]}))]
pub struct BatchBody {
    /// The documents; keyed ones upsert.
    #[serde(deserialize_with = "crate::object::vec_of_objects")]
    pub documents: Vec<NewDocumentBody>,
    /// The documents' keys and ids (if any) are not stored yet: written in one binary COPY with
    /// no key lookup (a stored key or id is a 409 and nothing is written). Documents without an
    /// `embedding` are embedded first. For bulk loads of precomputed vectors.
    #[serde(default)]
    pub assume_new: bool,
}

/// The result of an upsert.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UpsertBody {
    /// Created, updated or unchanged.
    pub outcome: UpsertOutcome,
    /// The document as stored.
    pub document: Document,
}

/// A search: exactly one of `query` and `vector`, plus options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": "waterproof boots for hiking", "k": 5, "filter": {"price": {"$lt": 150}}}))]
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
    /// Drop results whose cosine similarity is below this (-1..=1); in `text` mode, whose text
    /// score is below it.
    #[serde(default)]
    #[schema(minimum = -1.0, maximum = 1.0)]
    pub min_score: Option<f32>,
    /// Ranking of a text query: `hybrid` (default: vector and full text fused by RRF),
    /// `vector` or `text`. A `vector` query ranks by vector only.
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// Hybrid fusion settings.
    #[serde(default, deserialize_with = "crate::object::option_of_object")]
    pub fusion: Option<FusionBody>,
    /// Diversify the hits with Maximal Marginal Relevance.
    #[serde(default, deserialize_with = "crate::object::option_of_object")]
    pub mmr: Option<MmrBody>,
    /// See at least the writes up to this write position (read-your-writes across service
    /// instances): the `x-marketking-write-position` header a write's response carried. With
    /// read replicas the search runs on one that has replayed it, or on the primary; without
    /// replicas every search sees every committed write and this has no effect.
    #[serde(default)]
    #[schema(pattern = "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$", example = "0/3000148")]
    pub consistent_after: Option<String>,
    /// Only documents created at or after this instant.
    #[serde(default)]
    pub created_after: Option<DateTime<Utc>>,
    /// Only documents created before this instant.
    #[serde(default)]
    pub created_before: Option<DateTime<Utc>>,
    /// Keep only documents this filter matches (the filter language: see `Filter`); combined
    /// with the other filters by AND. A filter the server cannot read is a 400 naming its path.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// HNSW `ef_search` for this call, 1..=1000.
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 1000)]
    pub ef_search: Option<u32>,
    /// IVFFlat `probes` for this call, 1..=10000.
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 10000)]
    pub probes: Option<u32>,
    /// Candidates per result taken from a quantized vector index before the exact re-rank,
    /// 1..=100 (PostgreSQL: default 4 for a binary index, 1 for halfvec, no effect without one;
    /// embedded store: candidates from its int8 scan, default 4).
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 100)]
    pub oversample: Option<u32>,
    /// Compare every stored vector exactly, bypassing any index (and the embedded store's int8
    /// scan): the ground truth, slower on large stores.
    #[serde(default)]
    pub exact: bool,
}

/// `POST /v1/documents/count`: how many documents a filter matches.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"filter": {"source": "catalog"}}))]
pub struct CountBody {
    /// The filter; absent or null counts every document.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
}

/// A document count.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CountResult {
    /// How many documents matched.
    pub count: u64,
}

/// `POST /v1/documents/delete`: deletes every document a filter matches.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"filter": {"source": "old-catalog"}}))]
pub struct DeleteByFilterBody {
    /// The filter. `{}` matches every document and is refused unless `all` is true.
    #[schema(value_type = Object)]
    pub filter: Value,
    /// Allows a filter that matches every document (`{}`): deletes them all.
    #[serde(default)]
    pub all: bool,
}

/// What a delete by filter did.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct DeletedResult {
    /// How many documents were deleted.
    pub deleted: u64,
}

/// Reciprocal Rank Fusion settings of a hybrid search; each field optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FusionBody {
    /// RRF's `k`, 1..=1000 (default 60): larger flattens the advantage of top ranks.
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 1000)]
    pub rrf_k: Option<u32>,
    /// Weight of the vector leg, 0..=10 (default 1).
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 10.0)]
    pub vector_weight: Option<f32>,
    /// Weight of the full-text leg, 0..=10 (default 1).
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 10.0)]
    pub text_weight: Option<f32>,
    /// Candidates each leg contributes, at most 1000 (default max(4k, 40); a value below k is
    /// raised to k).
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 1000)]
    pub candidates: Option<usize>,
}

impl FusionBody {
    /// The core's settings, defaults filled in.
    pub fn to_fusion(&self) -> Fusion {
        let d = Fusion::default();
        Fusion {
            rrf_k: self.rrf_k.unwrap_or(d.rrf_k),
            vector_weight: self.vector_weight.unwrap_or(d.vector_weight),
            text_weight: self.text_weight.unwrap_or(d.text_weight),
            candidates: self.candidates,
        }
    }
}

/// Maximal Marginal Relevance settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MmrBody {
    /// 1 = relevance only, 0 = diversity only (0..=1; 0.5 is a common choice).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub lambda: f32,
    /// Candidates to choose from, at most 1000 (default max(4k, 40); a value below k is raised
    /// to k).
    #[serde(default, deserialize_with = "integral")]
    #[schema(minimum = 1, maximum = 1000)]
    pub fetch_k: Option<usize>,
}

/// Query string of `GET /v1/search`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
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
    /// Ranking: `hybrid` (default), `vector` or `text`.
    pub mode: Option<SearchMode>,
}

/// Query string of `GET /v1/documents/{id}/similar`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SimilarParams {
    /// Number of results, 1..=1000 (default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
}

/// Query string of `GET /v1/documents/{id}` and `GET /v1/documents/by-key/{key}`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// Include the document's embedding.
    pub with_embedding: Option<bool>,
}

/// Query string of `GET /v1/documents`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Return documents with an id greater than this: the `next_after` of the previous page
    /// (default 0, the first page).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Documents per page, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// A filter in the filter language, as JSON (e.g. `{"source":"catalog"}`); a filter the
    /// server cannot read is a 400 naming its path.
    #[param(example = r#"{"price":{"$lt":100}}"#)]
    pub filter: Option<String>,
    /// Include each document's embedding.
    pub with_embeddings: Option<bool>,
}

/// One page of documents, ascending by id.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct DocumentPage {
    /// The documents.
    pub documents: Vec<Document>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

/// Query string of `GET /v1/export` and `GET /v1/count`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Only the documents this filter (filter language, as JSON) matches.
    #[param(example = r#"{"source":"catalog"}"#)]
    pub filter: Option<String>,
    /// Include each document's embedding (export only; a restore then needs no embedder).
    pub with_embeddings: Option<bool>,
}

/// Query string of `GET /v1/count`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CountParams {
    /// Count only the documents this filter (filter language, as JSON) matches.
    #[param(example = r#"{"source":"catalog"}"#)]
    pub filter: Option<String>,
}

/// Query string of `POST /v1/import`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Keep each line's `id` (restoring an export into an empty store; 409 when the store
    /// holds documents). Otherwise ids are assigned anew; keys and times are always kept.
    pub keep_ids: Option<bool>,
    /// Skip invalid lines (listed in `errors`) instead of stopping at the first one.
    pub skip_invalid: Option<bool>,
    /// Documents per transaction, 1..=10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub batch_size: Option<usize>,
}

/// Query string of `POST /v1/jobs/import`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobImportParams {
    /// Keep each line's `id` (restoring an export into an empty store; 409 when the store
    /// holds documents).
    pub keep_ids: Option<bool>,
    /// Lines per chunk (one transaction each), 1..=10000 (default 500).
    #[param(minimum = 1, maximum = 10000)]
    pub chunk_lines: Option<usize>,
    /// A name to show in listings (default: the file name, or `upload`).
    #[param(max_length = 255)]
    pub name: Option<String>,
    /// Import this server-side file instead of the body: a path relative to the directory the
    /// service allows (`MARKETKING_IMPORT_DIR`); the body must then be empty.
    pub path: Option<String>,
}

/// Query string of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobListParams {
    /// How many, newest first, 1..=1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// `GET /v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<marketking_core::jobs::JobStatus>,
}

/// A rejected import line.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ImportLineError {
    /// Line number, from 1.
    pub line: u64,
    /// The field at fault (`json` for a line that is not a JSON object).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct ImportReport {
    /// Non-blank lines read.
    pub read: u64,
    /// Documents created.
    pub created: u64,
    /// Documents updated (an existing key).
    pub updated: u64,
    /// Lines whose key was stored with the same content.
    pub unchanged: u64,
    /// Invalid lines skipped (with `skip_invalid`).
    pub skipped: u64,
    /// The skipped lines and why (at most 100 are listed).
    pub errors: Vec<ImportLineError>,
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
pub(crate) fn integral<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
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
