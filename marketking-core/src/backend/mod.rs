//! Storage backends behind [`VectorStore`](crate::VectorStore): PostgreSQL + pgvector and the
//! embedded local file. The trait is internal; the store validates input before calling it.

use std::collections::HashMap;
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::document::{BatchReport, Document, DocumentPatch, DocumentRef, NewDocument, SearchHit, SearchOptions};
use crate::error::{Error, Result};
use crate::plan::Existing;
use crate::position::WritePosition;
use crate::store::StorageConfig;

#[cfg(feature = "embedded")]
pub(crate) mod embedded;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

/// Which approximate index a table has (or should get).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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

/// HNSW `m` when none is given (pgvector's default).
pub const DEFAULT_HNSW_M: u32 = 16;
/// HNSW `ef_construction` when none is given (pgvector's default; raised to `2 * m`).
pub const DEFAULT_HNSW_EF_CONSTRUCTION: u32 = 64;

impl Default for IndexKind {
    fn default() -> Self {
        IndexKind::hnsw(None, None)
    }
}

impl IndexKind {
    /// HNSW with the given parameters, defaults for the others: `m` 16, `ef_construction` 64
    /// or `2 * m`, whichever is larger.
    pub fn hnsw(m: Option<u32>, ef_construction: Option<u32>) -> Self {
        let m = m.unwrap_or(DEFAULT_HNSW_M);
        IndexKind::Hnsw {
            m,
            ef_construction: ef_construction.unwrap_or(DEFAULT_HNSW_EF_CONSTRUCTION.max(m.saturating_mul(2))),
        }
    }

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

/// What a vector index stores of each vector (PostgreSQL). The table keeps the full-precision
/// vectors either way; a quantized index ranks candidates by its smaller copy and the search
/// re-ranks them by exact cosine distance in the same statement.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Quantization {
    /// The vectors as stored (`vector`, 4 bytes per dimension; HNSW up to 2,000 dimensions).
    #[default]
    None,
    /// Half precision (`halfvec`, 2 bytes per dimension; up to 4,000 dimensions): an index
    /// about half the size, distances within about 1e-3 of exact.
    Half,
    /// One bit per dimension (`binary_quantize`, Hamming distance; up to 64,000 dimensions): an
    /// index about 1/32 of the vectors' size. Each search takes `k * oversample` candidates
    /// from it (see [`SearchOptions::oversample`](crate::SearchOptions::oversample)) and keeps
    /// the `k` nearest by exact cosine distance.
    Binary,
}

impl Quantization {
    /// The largest dimension count pgvector indexes in this form.
    pub fn max_dimensions(self) -> usize {
        match self {
            Quantization::None => 2000,
            Quantization::Half => 4000,
            Quantization::Binary => 64000,
        }
    }

    /// The candidates per result a search takes from an index in this form when the caller
    /// sets none: binary codes rank coarsely, so 4 per result; the others re-rank what they
    /// find only to report exact distances.
    pub fn default_oversample(self) -> u32 {
        match self {
            Quantization::Binary => 4,
            _ => 1,
        }
    }
}

/// By hand, so a wrong value's error names the field (serde's own names only the variant).
impl<'de> Deserialize<'de> for Quantization {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Quantization {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Quantization::None),
            "half" => Ok(Quantization::Half),
            "binary" => Ok(Quantization::Binary),
            other => Err(Error::invalid("quantization", format!("must be none, half or binary, got {other:?}"))),
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quantization::None => "none",
            Quantization::Half => "half",
            Quantization::Binary => "binary",
        })
    }
}

/// How to build an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IndexSpec {
    /// Kind and parameters.
    pub kind: IndexKind,
    /// Build with `CREATE INDEX CONCURRENTLY` (does not block writes; slower).
    pub concurrently: bool,
    /// What the index stores of each vector (default: the vectors as they are).
    #[serde(default)]
    pub quantization: Quantization,
    /// Memory for the build in MiB (PostgreSQL `maintenance_work_mem`, 16..=1048576; default
    /// [`DEFAULT_BUILD_MEMORY_MB`]). A build is much faster when the graph fits: a 100k x 1536
    /// HNSW graph needs about 800 MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_memory_mb: Option<u32>,
    /// Parallel workers besides the leader (PostgreSQL `max_parallel_maintenance_workers`,
    /// 0..=64; default [`DEFAULT_BUILD_WORKERS`]); the server's own limits still apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_workers: Option<u32>,
    /// Leave out the `ANALYZE` that follows the build (run [`analyze`](crate::VectorStore::analyze)
    /// later, e.g. after building several indexes or loading more data).
    #[serde(default)]
    pub skip_analyze: bool,
}

/// Default `maintenance_work_mem` of an index build, in MiB.
pub const DEFAULT_BUILD_MEMORY_MB: u32 = 1024;
/// Default parallel workers of an index build: with the leader, both cores of a small machine.
pub const DEFAULT_BUILD_WORKERS: u32 = 1;

impl IndexSpec {
    /// Checks the kind's parameters and the build settings; errors name the field.
    pub fn validate(&self) -> Result<()> {
        self.kind.validate()?;
        if let Some(mb) = self.build_memory_mb {
            if !(16..=1_048_576).contains(&mb) {
                return Err(Error::invalid("build_memory_mb", format!("must be between 16 and 1048576, got {mb}")));
            }
        }
        if let Some(w) = self.parallel_workers {
            if w > 64 {
                return Err(Error::invalid("parallel_workers", format!("must be between 0 and 64, got {w}")));
            }
        }
        Ok(())
    }
}

/// Search settings measured for one index by
/// [`VectorStore::tune_recall`](crate::VectorStore::tune_recall) and kept with it (PostgreSQL:
/// in the index's comment, so they go when the index is dropped or replaced). Searches use them
/// unless the call or the store's configuration sets the value.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TunedSettings {
    /// HNSW `ef_search` that reached the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_search: Option<u32>,
    /// IVFFlat `probes` that reached the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    /// Candidates per result of a binary-quantized index that reached the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversample: Option<u32>,
    /// The recall@k aimed at.
    pub target: f64,
    /// The recall@k measured with these settings against exact search.
    pub recall: f64,
    /// The `k` of recall@k.
    pub k: usize,
    /// How many stored documents were used as queries.
    pub queries: usize,
}

/// The index a table has.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Index name.
    pub name: String,
    /// Kind and parameters (IVFFlat lists resolved to the built value).
    pub kind: IndexKind,
    /// What the index stores of each vector.
    #[serde(default)]
    pub quantization: Quantization,
    /// Size on disk in bytes.
    pub bytes: u64,
    /// The search settings tuned for this index, if it was tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<TunedSettings>,
}

/// Document count for one source.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    /// The source (`None` for documents without one).
    pub source: Option<String>,
    /// How many documents.
    pub count: u64,
}

/// What the storage layer knows about itself.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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

/// One read replica's state, as `stats` and `/metrics` show it.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStats {
    /// `host:port` (never the user or password).
    pub name: String,
    /// In rotation now: reachable, a standby, and within the lag bound.
    pub in_rotation: bool,
    /// Replay lag in milliseconds at the last sample (`None` before the first one, or while it
    /// cannot be reached).
    pub lag_ms: Option<u64>,
    /// The replay position at the last sample.
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, example = "0/3000148"))]
    pub replayed: Option<WritePosition>,
    /// Reads served, since start.
    pub reads: u64,
    /// Reads that failed on it and were served by the primary, since start.
    pub failed_reads: u64,
    /// Why it is out of rotation, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Read routing of a PostgreSQL store with read replicas.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStats {
    /// Each replica, in configuration order.
    pub replicas: Vec<ReplicaStats>,
    /// Reads the primary served because no replica could (none in rotation, none that had
    /// replayed the read's position, or the replica failed), since start.
    pub primary_reads: u64,
    /// The lag bound: a replica further behind is out of rotation.
    pub max_lag_ms: u64,
    /// Where this store's last write is in the primary's history: its reads see at least it.
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, example = "0/3000148"))]
    pub write_position: Option<WritePosition>,
}

/// Where a PostgreSQL store sends reads besides its primary.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct ReplicaConfig {
    /// Connection strings of the read replicas.
    pub(crate) urls: Vec<String>,
    /// A replica further behind than this is out of rotation.
    pub(crate) max_lag: std::time::Duration,
}

impl Debug for ReplicaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URLs: they may hold passwords.
        f.debug_struct("ReplicaConfig").field("replicas", &self.urls.len()).field("max_lag", &self.max_lag).finish()
    }
}

/// Connection pool figures (PostgreSQL).
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
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
    /// The stored rows of these keys, read without taking any lock (the store plans with them
    /// before it embeds). `with_vectors` reads the stored vectors too.
    async fn existing(&self, keys: &[String], with_vectors: bool) -> Result<HashMap<String, Existing>>;

    /// Writes `docs` in one transaction: all or nothing. Under the locks that keep the batch's
    /// keys from changing until commit, re-reads their rows and plans again
    /// ([`plan_batch`](crate::plan::plan_batch)); when that plan needs a vector a document does
    /// not have (its stored row changed since the store planned), writes nothing and answers
    /// [`Written::NeedVectors`]. The commit point checks the caller's
    /// [`CommitGate`](crate::CommitGate). `report.embedded` is left at 0 (the store counts).
    ///
    /// With a `checkpoint` name, the transaction also records the name and the batch's report,
    /// and a batch whose checkpoint is already recorded writes nothing and answers
    /// [`Written::Replayed`] with the recorded report (a second writer of the same name waits
    /// for the first to commit or roll back).
    async fn write_batch(&self, docs: Vec<NewDocument>, checkpoint: Option<&str>) -> Result<Written>;

    /// The report of the batch written under checkpoint `name`, once committed.
    async fn checkpoint(&self, name: &str) -> Result<Option<BatchReport>>;

    /// Deletes the checkpoints whose names start with `prefix`; how many.
    async fn forget_checkpoints(&self, prefix: &str) -> Result<u64>;

    /// Inserts validated rows that bring their vectors and whose keys and ids the caller
    /// asserts are new, in one transaction (all or nothing): no key lookup, no lock; a key or
    /// id that is taken is an [`Error::Conflict`] and nothing is written.
    async fn insert_new(&self, rows: &[DocumentRef<'_>]) -> Result<BatchReport>;

    /// One document by id.
    async fn get(&self, id: i64, with_embedding: bool) -> Result<Option<Document>>;

    /// One document by caller key.
    async fn get_by_key(&self, key: &str, with_embedding: bool) -> Result<Option<Document>>;

    /// Applies `patch` (already validated); `embedding` replaces the vector when given.
    /// Returns the updated document, `None` if the id does not exist.
    async fn update(&self, id: i64, patch: &DocumentPatch, embedding: Option<Vec<f32>>) -> Result<Option<Document>>;

    /// Deletes by id; false when it did not exist.
    async fn delete(&self, id: i64) -> Result<bool>;

    /// Top `opts.k` documents for `query`, best first, with filters applied and `min_score`
    /// honoured; `exclude` leaves one id out (find_similar). A vector alone ranks by cosine
    /// similarity, a text alone by full text, both by RRF of the two (see
    /// [`SearchMode`](crate::SearchMode)).
    async fn search(
        &self,
        query: SearchQuery<'_>,
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Result<Vec<SearchHit>>;

    /// How many documents `filter` (validated) matches.
    async fn count(&self, filter: &crate::filter::Filter) -> Result<u64>;

    /// Deletes the documents `filter` (validated) matches, in one transaction; how many. The
    /// commit point checks the caller's [`CommitGate`](crate::CommitGate).
    async fn delete_where(&self, filter: &crate::filter::Filter) -> Result<u64>;

    /// The query plan `search` would use, as text (EXPLAIN); backends without a planner
    /// describe their scan.
    async fn explain(&self, _query: SearchQuery<'_>, _opts: &SearchOptions) -> Result<String> {
        Ok("exact scan over all stored vectors".into())
    }

    /// Documents with id > `after_id`, ascending, at most `limit` (for export).
    async fn list(
        &self,
        after_id: i64,
        limit: usize,
        with_embedding: bool,
        filter: &crate::filter::Filter,
    ) -> Result<Vec<Document>>;

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

    /// Up to `n` stored documents' ids and vectors, spread over the table and the same on
    /// every call for the same rows (the queries of [`tune_recall`](crate::VectorStore::tune_recall)).
    async fn sample_vectors(&self, _n: usize) -> Result<Vec<(i64, Vec<f32>)>> {
        Err(Error::Unsupported { operation: format!("sampling stored vectors on the {} store", self.kind()) })
    }

    /// Keeps `tuned` with the vector index (or clears it); error when there is no index.
    async fn set_tuned(&self, _tuned: Option<&TunedSettings>) -> Result<IndexInfo> {
        Err(Error::Unsupported { operation: format!("keeping tuned settings on the {} store", self.kind()) })
    }

    /// Closes the storage: connections (PostgreSQL) or the file and its lock (embedded) are
    /// released now, in-flight operations finish, and every later call is [`Error::Closed`].
    /// Idempotent.
    async fn close(&self) -> Result<()>;

    /// Checks the storage is reachable and migrated.
    async fn ping(&self) -> Result<()>;

    /// Connection pool figures, for backends with a pool.
    fn pool(&self) -> Option<PoolStats> {
        None
    }

    /// After a committed write (and its cache generation bump): where the write is in the
    /// primary's history, which this store's later reads will see. `None` without read
    /// replicas (every read sees every committed write).
    async fn after_write(&self) -> Option<WritePosition> {
        None
    }

    /// Where this store's last write is (`None`: no write yet, or no read replicas).
    fn write_position(&self) -> Option<WritePosition> {
        None
    }

    /// Read routing figures, for a store with read replicas.
    fn replication(&self) -> Option<ReplicationStats> {
        None
    }

    /// A string naming this storage (server, database, table) for cache key namespacing.
    fn identity(&self) -> String;

    /// `postgres` or `embedded`.
    fn kind(&self) -> &'static str;
}

/// Opens the backend `storage` names, for `model` with `dims` dimensions (connects, migrates,
/// checks the model guard). `read_only` (embedded only; the builder refuses it for PostgreSQL)
/// opens the file without the process lock, never migrating or writing it.
#[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(unused_variables, unreachable_code))]
pub(crate) async fn open(
    storage: StorageConfig,
    model: &str,
    dims: usize,
    text_config: &str,
    rum: bool,
    read_only: bool,
    replicas: &ReplicaConfig,
) -> Result<Box<dyn Backend>> {
    Ok(match storage {
        #[cfg(feature = "postgres")]
        StorageConfig::Postgres { url, table, pool_size } => Box::new(
            postgres::PgBackend::connect(&url, &table, pool_size, model, dims, text_config, rum, replicas).await?,
        ),
        #[cfg(not(feature = "postgres"))]
        StorageConfig::Postgres { .. } => {
            let _ = (rum, replicas);
            return Err(Error::config("DATABASE_URL", "is set but the `postgres` feature is off"));
        }
        #[cfg(feature = "embedded")]
        StorageConfig::Embedded { path } => {
            Box::new(embedded::EmbeddedBackend::open(&path, model, dims, text_config, read_only).await?)
        }
        #[cfg(not(feature = "embedded"))]
        StorageConfig::Embedded { .. } => {
            let _ = read_only;
            return Err(Error::config(
                "DATABASE_URL",
                "is not set and the `embedded` feature is off: set DATABASE_URL",
            ));
        }
    })
}

/// What a search ranks by: a query vector, a query text, or both (hybrid).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
pub(crate) struct SearchQuery<'a> {
    /// The query vector (vector leg).
    pub(crate) vector: Option<&'a [f32]>,
    /// The query text (full-text leg).
    pub(crate) text: Option<&'a str>,
    /// Return ids and scores only: each hit's document is [`Document::id_only`], no document
    /// column is read (the store turns the hits into [`ScoredId`](crate::ScoredId)s).
    pub(crate) ids_only: bool,
}

impl<'a> SearchQuery<'a> {
    /// A vector-only search.
    pub(crate) fn vector(v: &'a [f32]) -> Self {
        SearchQuery { vector: Some(v), text: None, ids_only: false }
    }
}

/// What [`Backend::write_batch`] did.
#[derive(Debug)]
#[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
pub(crate) enum Written {
    /// Committed.
    Done(BatchReport),
    /// Nothing written: these documents (indexes into the batch) need a vector first. The
    /// batch is handed back, unchanged, for the store to embed them and try again.
    NeedVectors(Vec<NewDocument>, Vec<usize>),
    /// Nothing written: the batch's checkpoint was recorded by an earlier write, whose report
    /// this is.
    Replayed(BatchReport),
}

/// Sorts hits best first (ties by id) and applies `min_score` and `k`.
#[cfg_attr(not(any(feature = "postgres", feature = "embedded")), allow(dead_code))]
pub(crate) fn finish_hits(mut hits: Vec<SearchHit>, opts: &SearchOptions) -> Vec<SearchHit> {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.document.id.cmp(&b.document.id)));
    if let Some(min) = opts.min_score {
        // Hybrid hits carry their cosine similarity; the floor applies to it, not the fused score.
        hits.retain(|h| h.vector.map_or(h.score, |v| v.score) >= min);
    }
    hits.truncate(opts.k);
    hits
}
