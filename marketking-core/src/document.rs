//! Documents, search options and search hits, with their validation rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::filter::{Filter, FilterFields};
use crate::position::WritePosition;
use crate::search_mode::{Fusion, LegScore, Mmr, SearchMode};

/// Longest title and source, in characters (the seed schema's `varchar(255)`).
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest source, in characters.
pub const MAX_SOURCE_CHARS: usize = 255;
/// Longest caller key, in characters.
pub const MAX_KEY_CHARS: usize = 512;
/// Largest `k` a search accepts.
pub const MAX_K: usize = 1000;
/// HNSW `ef_search` when neither the call nor the store sets one.
pub const DEFAULT_EF_SEARCH: u32 = 100;
/// Valid HNSW `ef_search` values (pgvector's range).
pub const EF_SEARCH_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
/// IVFFlat `probes` when neither the call nor the store sets one.
pub const DEFAULT_PROBES: u32 = 10;
/// Valid IVFFlat `probes` values.
pub const PROBES_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
/// Valid `oversample` values (candidates per result from a quantized index).
pub const OVERSAMPLE_RANGE: std::ops::RangeInclusive<u32> = 1..=100;

/// Why `value` is outside `range`, if it is (the one wording of range errors).
pub(crate) fn out_of_range(value: u32, range: &std::ops::RangeInclusive<u32>) -> Option<String> {
    (!range.contains(&value)).then(|| format!("must be between {} and {}, got {value}", range.start(), range.end()))
}

/// A JSON object: the type of a document's metadata. Build one with [`metadata!`](crate::metadata)
/// (`metadata!({"brand": "acme"})`), `serde_json::Map::from_iter`, or take one out of a
/// `serde_json::Value::Object`.
pub type Metadata = Map<String, Value>;

/// A document to store. Build with [`NewDocument::new`] and the `with_*` methods.
///
/// `id`, `created_at` and `updated_at` are for restoring an export: left unset (the normal case),
/// the store assigns the id and stamps both times with the time of the write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewDocument {
    /// Title, at most 255 characters.
    pub title: String,
    /// Content, non-empty.
    pub content: String,
    /// Where the document came from, at most 255 characters.
    #[serde(default)]
    pub source: Option<String>,
    /// A JSON object; searches can filter on it.
    #[serde(default)]
    pub metadata: Metadata,
    /// Optional caller key, unique per table; writes with a known key update that document.
    #[serde(default)]
    pub key: Option<String>,
    /// A precomputed embedding; when absent the store's embedder computes it.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    /// The id to store a new document under (restoring an export into an empty store); the
    /// store assigns one when unset. An id already taken is a [`Error::Conflict`], and so is an
    /// id given with a key that is stored under another id.
    #[serde(default)]
    pub id: Option<i64>,
    /// The creation time to store for a new document, instead of the time of the write.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// The last-change time to store, instead of the time of the write.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl NewDocument {
    /// A document with a title and content, no source, empty metadata and no key.
    pub fn new(title: impl Into<String>, content: impl Into<String>) -> Self {
        NewDocument {
            title: title.into(),
            content: content.into(),
            source: None,
            metadata: Metadata::new(),
            key: None,
            embedding: None,
            id: None,
            created_at: None,
            updated_at: None,
        }
    }

    /// Sets the source.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the metadata object (see [`metadata!`](crate::metadata)).
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the caller key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets a precomputed embedding.
    pub fn with_embedding(mut self, embedding: Vec<f32>) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// Stores a new document under this id (see [`NewDocument::id`]).
    pub fn with_id(mut self, id: i64) -> Self {
        self.id = Some(id);
        self
    }

    /// Stores these times instead of the time of the write (see [`NewDocument::created_at`]).
    pub fn with_timestamps(mut self, created_at: DateTime<Utc>, updated_at: DateTime<Utc>) -> Self {
        self.created_at = Some(created_at);
        self.updated_at = Some(updated_at);
        self
    }

    /// The document an export of `doc` restores: every field, the id, key, times and (when
    /// the export carried it) the embedding.
    pub fn restore(doc: Document) -> Self {
        let metadata = match doc.metadata {
            Value::Object(m) => m,
            // Unreachable for a stored document; an empty object rather than a panic.
            _ => Metadata::new(),
        };
        NewDocument {
            title: doc.title,
            content: doc.content,
            source: doc.source,
            metadata,
            key: doc.key,
            embedding: doc.embedding,
            id: Some(doc.id),
            created_at: Some(doc.created_at),
            updated_at: Some(doc.updated_at),
        }
    }

    /// Checks every field; `dimensions` is the store's vector size.
    pub fn validate(&self, dimensions: usize) -> Result<()> {
        validate_title(&self.title)?;
        validate_content(&self.content)?;
        if let Some(source) = &self.source {
            validate_source(source)?;
        }
        validate_metadata_object("metadata", &self.metadata)?;
        if let Some(key) = &self.key {
            validate_key(key)?;
        }
        if let Some(v) = &self.embedding {
            validate_vector("embedding", v, dimensions)?;
        }
        if let Some(id) = self.id {
            if id < 1 {
                return Err(Error::invalid("id", format!("must be a positive integer, got {id}")));
            }
        }
        validate_times(self.created_at.as_ref(), self.updated_at.as_ref())
    }

    /// The text the embedder sees: title and content.
    pub(crate) fn embedding_text(&self) -> String {
        embedding_text(&self.title, &self.content)
    }
}

/// A new document borrowed from the caller's own buffers, for
/// [`VectorStore::insert_new`](crate::VectorStore::insert_new): nothing is copied on the way to
/// the database (PostgreSQL), the vector included. It always brings its embedding.
///
/// ```
/// use marketking_core::{metadata, DocumentRef};
/// let vector = vec![0.1_f32; 4];
/// let meta = metadata!({"lang": "en"});
/// let row = DocumentRef::new("Title", "Body", &vector).key("doc-1").source("feed").metadata(&meta);
/// assert_eq!(row.embedding.len(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct DocumentRef<'a> {
    /// Title, at most 255 characters.
    pub title: &'a str,
    /// Content, non-empty.
    pub content: &'a str,
    /// The embedding: exactly the store's dimensions, finite, not all zero.
    pub embedding: &'a [f32],
    /// Where the document came from.
    pub source: Option<&'a str>,
    /// A JSON object (none: `{}`).
    pub metadata: Option<&'a Metadata>,
    /// Caller key: must not be stored yet (a stored one is a [`Error::Conflict`]).
    pub key: Option<&'a str>,
    /// The id to store it under (must be free); the store assigns one when unset.
    pub id: Option<i64>,
    /// The creation time to store (restores); the time of the write when unset.
    pub created_at: Option<DateTime<Utc>>,
    /// The last-change time to store (restores); the time of the write when unset.
    pub updated_at: Option<DateTime<Utc>>,
}

impl<'a> DocumentRef<'a> {
    /// A row with a title, content and embedding.
    pub fn new(title: &'a str, content: &'a str, embedding: &'a [f32]) -> Self {
        DocumentRef {
            title,
            content,
            embedding,
            source: None,
            metadata: None,
            key: None,
            id: None,
            created_at: None,
            updated_at: None,
        }
    }

    /// Sets the source.
    pub fn source(mut self, source: &'a str) -> Self {
        self.source = Some(source);
        self
    }

    /// Sets the metadata object.
    pub fn metadata(mut self, metadata: &'a Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Sets the caller key (asserted new).
    pub fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the id (asserted free).
    pub fn id(mut self, id: i64) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the stored creation and last-change times (a restore).
    pub fn times(mut self, created_at: DateTime<Utc>, updated_at: DateTime<Utc>) -> Self {
        self.created_at = Some(created_at);
        self.updated_at = Some(updated_at);
        self
    }

    /// Checks every field, as [`NewDocument::validate`] does.
    pub fn validate(&self, dimensions: usize) -> Result<()> {
        validate_title(self.title)?;
        validate_content(self.content)?;
        if let Some(source) = self.source {
            validate_source(source)?;
        }
        if let Some(m) = self.metadata {
            validate_metadata_object("metadata", m)?;
        }
        if let Some(key) = self.key {
            validate_key(key)?;
        }
        validate_vector("embedding", self.embedding, dimensions)?;
        if let Some(id) = self.id {
            if id < 1 {
                return Err(Error::invalid("id", format!("must be a positive integer, got {id}")));
            }
        }
        validate_times(self.created_at.as_ref(), self.updated_at.as_ref())
    }

    /// An owned copy (the embedded store's write path owns its rows).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub(crate) fn to_owned_document(self) -> NewDocument {
        NewDocument {
            title: self.title.to_string(),
            content: self.content.to_string(),
            source: self.source.map(str::to_string),
            metadata: self.metadata.cloned().unwrap_or_default(),
            key: self.key.map(str::to_string),
            embedding: Some(self.embedding.to_vec()),
            id: self.id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A restored creation / last-change time pair: each in range, and not changed before made.
fn validate_times(created: Option<&DateTime<Utc>>, updated: Option<&DateTime<Utc>>) -> Result<()> {
    if let Some(t) = created {
        validate_timestamp("created_at", t)?;
    }
    if let Some(t) = updated {
        validate_timestamp("updated_at", t)?;
    }
    if let (Some(c), Some(u)) = (created, updated) {
        if u < c {
            return Err(Error::invalid(
                "updated_at",
                format!("must not be before created_at ({} < {})", u.to_rfc3339(), c.to_rfc3339()),
            ));
        }
    }
    Ok(())
}

pub(crate) fn embedding_text(title: &str, content: &str) -> String {
    let mut s = String::with_capacity(title.len() + content.len() + 2);
    s.push_str(title);
    s.push_str("\n\n");
    s.push_str(content);
    s
}

/// A stored document.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Store-assigned id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Content.
    pub content: String,
    /// Source, if any.
    pub source: Option<String>,
    /// Metadata object.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub metadata: Value,
    /// Caller key, if any.
    pub key: Option<String>,
    /// When the document was first stored.
    pub created_at: DateTime<Utc>,
    /// When the document last changed.
    pub updated_at: DateTime<Utc>,
    /// The embedding, only when asked for (it is large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

impl Document {
    /// A stand-in carrying only `id`, for the hits of an ids-only search inside the crate
    /// (never returned to a caller: the store turns those hits into [`ScoredId`]s).
    #[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
    pub(crate) fn id_only(id: i64) -> Self {
        Document {
            id,
            title: String::new(),
            content: String::new(),
            source: None,
            metadata: Value::Null,
            key: None,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            embedding: None,
        }
    }
}

/// A change to a stored document: the fields it sets change, the others stay.
///
/// ```
/// use marketking_core::{metadata, DocumentPatch};
/// let patch = DocumentPatch::new().title("Trail shoes").clear_source().metadata(metadata!({"price": 99}));
/// assert_eq!(patch.get_title(), Some("Trail shoes"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentPatch {
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) content: Option<String>,
    /// `Some(None)` clears the source; in JSON, `"source": null`.
    #[serde(default, with = "double_option")]
    pub(crate) source: Option<Option<String>>,
    #[serde(default)]
    pub(crate) metadata: Option<Metadata>,
}

mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

impl DocumentPatch {
    /// A patch that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a new title (the document is re-embedded).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets new content (the document is re-embedded).
    pub fn content(mut self, content: impl Into<String>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// Sets a new source.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(Some(source.into()));
        self
    }

    /// Removes the source.
    pub fn clear_source(mut self) -> Self {
        self.source = Some(None);
        self
    }

    /// Replaces the metadata object.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The new title, if the patch sets one.
    pub fn get_title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The new content, if the patch sets it.
    pub fn get_content(&self) -> Option<&str> {
        self.content.as_deref()
    }

    /// What happens to the source: `None` keeps it, `Some(None)` clears it, `Some(Some(s))`
    /// sets it.
    pub fn get_source(&self) -> Option<Option<&str>> {
        self.source.as_ref().map(Option::as_deref)
    }

    /// The new metadata, if the patch sets it.
    pub fn get_metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// Checks the fields that are set.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.title {
            validate_title(t)?;
        }
        if let Some(c) = &self.content {
            validate_content(c)?;
        }
        if let Some(Some(s)) = &self.source {
            validate_source(s)?;
        }
        if let Some(m) = &self.metadata {
            validate_metadata_object("metadata", m)?;
        }
        Ok(())
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.content.is_none() && self.source.is_none() && self.metadata.is_none()
    }
}

/// How a search runs: result count, ranking mode, minimum score and filters.
///
/// A text search ranks by [`SearchMode::Hybrid`] unless `mode` says otherwise (the store's full
/// text index is always there); vector and similar-document searches rank by cosine similarity,
/// `1 - cosine distance`, in `[-1, 1]` (1 = same direction). `min_score` is a floor on the
/// cosine similarity in vector and hybrid modes (a fused score has no absolute meaning), and on
/// the text score in text mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchOptions {
    /// Number of results, 1..=1000. Default 10.
    pub k: usize,
    /// Drop results whose score is below this.
    pub min_score: Option<f32>,
    /// Keep only documents whose source is one of these (empty = any source).
    pub sources: Vec<String>,
    /// Keep only documents whose metadata contains this JSON object (`@>` semantics).
    pub metadata: Option<Metadata>,
    /// Keep only documents created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Keep only documents created strictly before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// Keep only documents this filter matches (see [`Filter`]); combined with the other
    /// filters by AND.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// HNSW `ef_search` for this call (1..=1000); default from the store config.
    pub ef_search: Option<u32>,
    /// IVFFlat `probes` for this call (1..=10000); default from the store config.
    pub probes: Option<u32>,
    /// Candidates per result taken from a quantized vector index (1..=100) before the exact
    /// re-rank; default [`Quantization::default_oversample`](crate::Quantization::default_oversample)
    /// (4 for binary) on PostgreSQL, where it has no effect without a quantized index. The
    /// embedded store always scans int8 codes first: it re-ranks `max(k * oversample, k + 30)`
    /// candidates exactly (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oversample: Option<u32>,
    /// Search exactly (every stored vector compared), bypassing any vector index: the ground
    /// truth an approximate index is measured against. Slower on large tables.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exact: bool,
    /// Return each hit's embedding too.
    pub include_embedding: bool,
    /// Ranking of a text search; `None` = hybrid. Vector and similar searches are vector-only.
    pub mode: Option<SearchMode>,
    /// Fusion settings of hybrid search.
    pub fusion: Fusion,
    /// Diversify the hits with Maximal Marginal Relevance.
    pub mmr: Option<Mmr>,
    /// See the documents as of this write position at least (read-your-writes across
    /// processes): on a store with read replicas, the search runs on a replica that has
    /// replayed it, or on the primary. Without replicas every search sees every committed
    /// write and this has no effect. Not part of a cached result's key (it does not change
    /// the answer, only where it is read).
    #[serde(skip_serializing)]
    pub consistent_after: Option<WritePosition>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 10,
            min_score: None,
            sources: Vec::new(),
            metadata: None,
            created_after: None,
            created_before: None,
            filter: None,
            ef_search: None,
            probes: None,
            oversample: None,
            exact: false,
            include_embedding: false,
            mode: None,
            fusion: Fusion::default(),
            mmr: None,
            consistent_after: None,
        }
    }
}

impl SearchOptions {
    /// Options returning the top `k`.
    pub fn top(k: usize) -> Self {
        SearchOptions { k, ..Default::default() }
    }

    /// Adds a source filter value.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.sources.push(source.into());
        self
    }

    /// Sets the number of results (1..=1000).
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Keeps only documents with one of these sources (replacing any set before).
    pub fn sources<S: Into<String>>(mut self, sources: impl IntoIterator<Item = S>) -> Self {
        self.sources = sources.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the metadata containment filter (see [`metadata!`](crate::metadata)).
    pub fn metadata(mut self, contains: Metadata) -> Self {
        self.metadata = Some(contains);
        self
    }

    /// Keeps only documents created at or after this instant.
    pub fn created_after(mut self, t: DateTime<Utc>) -> Self {
        self.created_after = Some(t);
        self
    }

    /// Keeps only documents created strictly before this instant.
    pub fn created_before(mut self, t: DateTime<Utc>) -> Self {
        self.created_before = Some(t);
        self
    }

    /// Sets the filter (see [`Filter`]).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets the minimum score.
    pub fn min_score(mut self, min: f32) -> Self {
        self.min_score = Some(min);
        self
    }

    /// Sets HNSW `ef_search` for this call (1..=1000).
    pub fn ef_search(mut self, ef: u32) -> Self {
        self.ef_search = Some(ef);
        self
    }

    /// Sets IVFFlat `probes` for this call (1..=10000).
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = Some(probes);
        self
    }

    /// Sets the candidates per result taken from a quantized index (1..=100).
    pub fn oversample(mut self, oversample: u32) -> Self {
        self.oversample = Some(oversample);
        self
    }

    /// Searches exactly, bypassing any vector index (see [`exact`](Self::exact)).
    pub fn exact(mut self, yes: bool) -> Self {
        self.exact = yes;
        self
    }

    /// Returns each hit's embedding too.
    pub fn include_embedding(mut self, yes: bool) -> Self {
        self.include_embedding = yes;
        self
    }

    /// Sets the ranking mode of a text search.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets the fusion settings of a hybrid search.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }

    /// Diversifies the hits with MMR (`lambda` 0..=1, choosing among `fetch_k` candidates).
    pub fn mmr(mut self, lambda: f32, fetch_k: usize) -> Self {
        self.mmr = Some(Mmr { lambda, fetch_k });
        self
    }

    /// Sees at least the writes up to `position` (see [`consistent_after`](Self::consistent_after)).
    pub fn consistent_after(mut self, position: WritePosition) -> Self {
        self.consistent_after = Some(position);
        self
    }

    /// True when any row filter (source, metadata, dates, filter) is set.
    pub fn has_filters(&self) -> bool {
        !self.sources.is_empty()
            || self.metadata.is_some()
            || self.filter.is_some()
            || self.created_after.is_some()
            || self.created_before.is_some()
    }

    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.k > MAX_K {
            return Err(Error::invalid("k", format!("must be between 1 and {MAX_K}, got {}", self.k)));
        }
        if let Some(m) = self.min_score {
            if !m.is_finite() || !(-1.0..=1.0).contains(&m) {
                return Err(Error::invalid("min_score", format!("must be a number in [-1, 1], got {m}")));
            }
        }
        for s in &self.sources {
            validate_source(s).map_err(|_| Error::invalid("sources", "each source must be 1..=255 characters"))?;
        }
        if let Some(m) = &self.metadata {
            validate_metadata_object("metadata filter", m)?;
            // `{"price": {"$lt": 100}}` here would be containment of a literal key `$lt`, and
            // match nothing: operators belong in `filter`.
            if m.iter().any(|(k, v)| k.starts_with('$') || has_operator_key(v)) {
                return Err(Error::invalid(
                    "metadata",
                    "is JSON containment and takes no operators ($lt, $in...); put conditions with operators in `filter`",
                ));
            }
        }
        // An empty or inverted range is valid and matches nothing (like SQL's `>= a AND < b`).
        if let Some(a) = &self.created_after {
            validate_timestamp("created_after", a)?;
        }
        if let Some(b) = &self.created_before {
            validate_timestamp("created_before", b)?;
        }
        if let Some(f) = &self.filter {
            f.validate()?;
        }
        if let Some(reason) = self.ef_search.and_then(|ef| out_of_range(ef, &EF_SEARCH_RANGE)) {
            return Err(Error::invalid("ef_search", reason));
        }
        if let Some(reason) = self.probes.and_then(|p| out_of_range(p, &PROBES_RANGE)) {
            return Err(Error::invalid("probes", reason));
        }
        if let Some(reason) = self.oversample.and_then(|o| out_of_range(o, &OVERSAMPLE_RANGE)) {
            return Err(Error::invalid("oversample", reason));
        }
        self.fusion.validate(self.k)?;
        if let Some(m) = &self.mmr {
            m.validate(self.k)?;
        }
        Ok(())
    }

    /// Whether a document with this source, metadata and creation time passes the row filters.
    /// A [`filter`](Self::filter) sees it without a key and as last changed when created; use
    /// [`matches_document`](Self::matches_document) for a stored document.
    pub fn matches(&self, source: Option<&str>, metadata: &Value, created_at: DateTime<Utc>) -> bool {
        self.matches_fields(FilterFields { source, key: None, metadata, created_at, updated_at: created_at })
    }

    /// Whether a stored document passes the row filters.
    pub fn matches_document(&self, doc: &Document) -> bool {
        self.matches_fields(FilterFields::from(doc))
    }

    /// Whether a document with these fields passes the row filters (the embedded store's check).
    pub fn matches_fields(&self, fields: FilterFields<'_>) -> bool {
        let FilterFields { source, metadata, created_at, .. } = fields;
        if self.filter.as_ref().is_some_and(|f| !f.matches(fields)) {
            return false;
        }
        if !self.sources.is_empty() && !source.is_some_and(|s| self.sources.iter().any(|f| f == s)) {
            return false;
        }
        if let Some(filter) = &self.metadata {
            let Value::Object(doc) = metadata else { return false };
            if !filter.iter().all(|(k, fv)| doc.get(k).is_some_and(|dv| json_contains(dv, fv))) {
                return false;
            }
        }
        if self.created_after.is_some_and(|a| created_at < a) {
            return false;
        }
        if self.created_before.is_some_and(|b| created_at >= b) {
            return false;
        }
        true
    }
}

/// PostgreSQL `jsonb @>` containment on `serde_json` values.
pub fn json_contains(doc: &Value, filter: &Value) -> bool {
    match (doc, filter) {
        (Value::Object(d), Value::Object(f)) => {
            f.iter().all(|(k, fv)| d.get(k).is_some_and(|dv| json_contains(dv, fv)))
        }
        (Value::Array(d), Value::Array(f)) => f.iter().all(|fv| d.iter().any(|dv| json_contains(dv, fv))),
        // A top-level array contains a primitive that is one of its elements.
        (Value::Array(d), f) if !f.is_object() => d.iter().any(|dv| dv == f),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// One search result.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The mode's score (see [`SearchMode`]): cosine similarity, full-text rank or fused score.
    pub score: f32,
    /// The document (embedding only when asked for).
    pub document: Document,
    /// Hybrid search: the hit's cosine similarity to the query, and its rank in the vector leg
    /// when that leg nominated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<LegScore>,
    /// The full-text leg's rank and score (hybrid search; absent if only the vector leg found it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<LegScore>,
}

/// One search result without its document: [`VectorStore::search_ids`](crate::VectorStore::search_ids)
/// and [`search_ids_by_vector`](crate::VectorStore::search_ids_by_vector), which read no document
/// column (the cheapest search).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredId {
    /// The document's id.
    pub id: i64,
    /// The mode's score, as [`SearchHit::score`].
    pub score: f32,
    /// Hybrid search: as [`SearchHit::vector`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<LegScore>,
    /// Hybrid search: as [`SearchHit::text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<LegScore>,
}

impl From<SearchHit> for ScoredId {
    fn from(h: SearchHit) -> Self {
        ScoredId { id: h.document.id, score: h.score, vector: h.vector, text: h.text }
    }
}

/// Search results, best first: the one shape of results on the wire (the HTTP service's
/// answer and the CLI's `search --json`).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    /// The hits.
    pub hits: Vec<SearchHit>,
}

impl From<Vec<SearchHit>> for SearchResults {
    fn from(hits: Vec<SearchHit>) -> Self {
        SearchResults { hits }
    }
}

/// What a [`batch`](crate::VectorStore::batch) did.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    /// Ids of the input documents, in input order.
    pub ids: Vec<i64>,
    /// Documents inserted.
    pub created: usize,
    /// Keyed documents that existed and changed.
    pub updated: usize,
    /// Keyed documents that existed and did not change (no embedder call).
    pub unchanged: usize,
    /// Texts sent to the embedder.
    pub embedded: usize,
}

/// What [`VectorStore::batch_once`](crate::VectorStore::batch_once) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOnce {
    /// The batch was written now (and its checkpoint recorded with it).
    Written(BatchReport),
    /// Nothing was written: the checkpoint was recorded by an earlier write, whose report
    /// this is (`embedded` is 0: that count is not recorded).
    Replayed(BatchReport),
}

impl BatchOnce {
    /// The report, either way.
    pub fn report(&self) -> &BatchReport {
        match self {
            BatchOnce::Written(r) | BatchOnce::Replayed(r) => r,
        }
    }
}

/// Outcome of a single upsert.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    /// A new document was inserted.
    Created,
    /// An existing document changed.
    Updated,
    /// The document existed with the same title, content, source and metadata.
    Unchanged,
}

pub(crate) fn validate_title(title: &str) -> Result<()> {
    if title.trim().is_empty() {
        return Err(Error::invalid("title", "must not be empty"));
    }
    let n = title.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(Error::invalid("title", format!("must be at most {MAX_TITLE_CHARS} characters, got {n}")));
    }
    check_nul("title", title)
}

pub(crate) fn validate_content(content: &str) -> Result<()> {
    if content.trim().is_empty() {
        return Err(Error::invalid("content", "must not be empty"));
    }
    check_nul("content", content)
}

pub(crate) fn validate_source(source: &str) -> Result<()> {
    if source.is_empty() {
        return Err(Error::invalid("source", "must not be empty when given"));
    }
    let n = source.chars().count();
    if n > MAX_SOURCE_CHARS {
        return Err(Error::invalid("source", format!("must be at most {MAX_SOURCE_CHARS} characters, got {n}")));
    }
    check_nul("source", source)
}

pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("key", "must not be empty when given"));
    }
    let n = key.chars().count();
    if n > MAX_KEY_CHARS {
        return Err(Error::invalid("key", format!("must be at most {MAX_KEY_CHARS} characters, got {n}")));
    }
    check_nul("key", key)
}

pub(crate) fn validate_metadata_object(field: &str, metadata: &Metadata) -> Result<()> {
    if metadata.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// `value` as a metadata object, or an [`Error::InvalidInput`] naming `field` when it is not a
/// JSON object: for callers that receive metadata as untyped JSON (an HTTP body, a file).
pub fn metadata_object(field: &str, value: Value) -> Result<Metadata> {
    match value {
        Value::Object(m) => Ok(m),
        other => Err(Error::invalid(field, format!("must be a JSON object, got {}", json_kind(&other)))),
    }
}

/// `null`, `a boolean`, ...: how an error names the JSON it got.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn has_operator_key(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_operator_key),
        Value::Object(o) => o.iter().any(|(k, v)| k.starts_with('$') || has_operator_key(v)),
        _ => false,
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Earliest instant a date filter accepts: RFC 3339's first year (PostgreSQL goes back to 4713
/// BC, chrono further; one range for both backends).
pub const MIN_TIMESTAMP: &str = "0000-01-01T00:00:00Z";
/// Latest instant a date filter accepts: RFC 3339's last year.
pub const MAX_TIMESTAMP: &str = "9999-12-31T23:59:59.999999Z";

fn validate_timestamp(field: &str, t: &DateTime<Utc>) -> Result<()> {
    use chrono::Datelike;
    if !(0..=9999).contains(&t.year()) {
        return Err(Error::invalid(
            field,
            format!("must be between {MIN_TIMESTAMP} and {MAX_TIMESTAMP}, got {}", t.to_rfc3339()),
        ));
    }
    Ok(())
}

/// Largest magnitude of one vector value. pgvector computes norms and dot products in 32-bit
/// floats: with at most 16,000 dimensions of at most 1e16 each, a squared norm stays below
/// `f32::MAX` (3.4e38), so a distance is never infinite or NaN.
pub const MAX_VECTOR_VALUE: f32 = 1e16;
/// A vector needs at least one value at least this large in magnitude, so its squared norm
/// (at least 1e-30) does not underflow to zero in 32-bit floats (cosine would be undefined).
pub const MIN_VECTOR_PEAK: f32 = 1e-15;

/// Checks a vector's length, that every value is finite and at most [`MAX_VECTOR_VALUE`] in
/// magnitude, and that one value reaches [`MIN_VECTOR_PEAK`] (so it is not all zeros).
pub(crate) fn validate_vector(field: &str, v: &[f32], dimensions: usize) -> Result<()> {
    if v.len() != dimensions {
        return Err(Error::DimensionMismatch { expected: dimensions, actual: v.len() });
    }
    if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite() || x.abs() > MAX_VECTOR_VALUE) {
        return Err(Error::invalid(
            field,
            format!("value at index {i} must be a finite number between -{MAX_VECTOR_VALUE:e} and {MAX_VECTOR_VALUE:e}, got {x}"),
        ));
    }
    if v.iter().all(|x| x.abs() < MIN_VECTOR_PEAK) {
        return Err(Error::invalid(
            field,
            format!("must not be all zeros: at least one value must be at least {MIN_VECTOR_PEAK:e} in magnitude (cosine similarity is undefined otherwise)"),
        ));
    }
    Ok(())
}

fn check_nul(field: &str, s: &str) -> Result<()> {
    if s.contains('\0') {
        return Err(Error::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}
