//! MarketKing: semantic document search on PostgreSQL + pgvector, or on an embedded local file,
//! with pluggable embedders and caches.
//!
//! ```no_run
//! use marketking_core::{NewDocument, SearchOptions, VectorStore};
//!
//! # async fn run() -> marketking_core::Result<()> {
//! // No DATABASE_URL: an embedded store in ./marketking.db, the offline embedder and an
//! // in-process cache. With DATABASE_URL / REDIS_URL / OPENAI_API_KEY set, the same code
//! // runs on PostgreSQL + pgvector, Redis and OpenAI.
//! let store = VectorStore::builder().from_env()?.build().await?;
//! store.create(NewDocument::new("Trail shoes", "Light running shoes for rocky trails").with_source("catalog")).await?;
//! for hit in store.search("running shoes", &SearchOptions::top(5)).await? {
//!     println!("{:.3} {}", hit.score, hit.document.title);
//! }
//! # Ok(()) }
//! ```
//!
//! # Module map
//!
//! Which file owns what, for a reader who must change the code:
//!
//! | file | owns |
//! |---|---|
//! | `document.rs` | the public data types, every validation rule and limit (`MAX_*`, ranges, defaults) |
//! | `plan.rs` | the write plan: insert, update or leave each document of a batch |
//! | `store/mod.rs`, `store/builder.rs` | [`VectorStore`] and its configuration (environment, defaults) |
//! | `store/write.rs` | the write path: plan, embed before any lock (the one chunking place), write |
//! | `store/search.rs` | the three searches, through one cached path |
//! | `store/result_cache.rs` | cached embeddings and results, generation bumps, the circuit breaker |
//! | `gate.rs` | [`CommitGate`]: a write its caller gave up on never commits |
//! | `backend/mod.rs` | the internal storage trait and `backend::open` (which storage) |
//! | `backend/postgres/` | PostgreSQL: pool and connection health, schema, reads, writes, indexes, TLS |
//! | `backend/embedded/` | the SQLite file: lock, schema, rows, file operations, memory index, scan |
//! | `embedder/` | [`Embedder`], the hashing embedder and the OpenAI-compatible one (builder, wire, retry) |
//! | `cache/` | [`Cache`], Redis and in-process caches |
//! | `filter.rs` | [`Filter`]: the filter language's JSON form, builder, checks and Rust evaluation (`backend/postgres/filter_sql.rs` compiles it to SQL) |
//! | `error.rs` | the one [`Error`] type |
//! | `vector.rs`, `similarity.rs` | the vector byte codec; cosine and dot kernels |
#![cfg_attr(docsrs, feature(doc_cfg))]
// Nothing that came from storage or the network may panic the caller: no unwrap, expect,
// unchecked indexing or explicit panic in library code (tests may).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod backend;
mod cache;
mod document;
mod embedder;
mod error;
mod filter;
mod gate;
pub mod jobs;
pub mod jsonl;
mod plan;
mod position;
mod search_mode;
#[cfg(feature = "embedded")]
mod simd;
mod similarity;
mod store;
#[cfg(any(feature = "postgres", feature = "openai"))]
mod tls;
mod vector;

/// Re-exported so implementing [`Embedder`] or [`Cache`] needs no extra dependency:
/// `#[marketking_core::async_trait]` on the `impl`.
pub use async_trait::async_trait;
pub use backend::{
    IndexInfo, IndexKind, IndexSpec, PoolStats, Quantization, ReplicaStats, ReplicationStats, SourceCount,
    StorageStats, TunedSettings, DEFAULT_BUILD_MEMORY_MB, DEFAULT_BUILD_WORKERS, DEFAULT_HNSW_EF_CONSTRUCTION,
    DEFAULT_HNSW_M,
};
#[cfg(feature = "redis")]
pub use cache::RedisCache;
pub use cache::{Cache, CacheStats, MemoryCache, NoCache};
pub use document::{
    json_contains, metadata_object, BatchOnce, BatchReport, Document, DocumentPatch, DocumentRef, Metadata,
    NewDocument, ScoredId, SearchHit, SearchOptions, SearchResults, UpsertOutcome, DEFAULT_EF_SEARCH, DEFAULT_PROBES,
    EF_SEARCH_RANGE, MAX_K, MAX_KEY_CHARS, MAX_SOURCE_CHARS, MAX_TIMESTAMP, MAX_TITLE_CHARS, MAX_VECTOR_VALUE,
    MIN_TIMESTAMP, MIN_VECTOR_PEAK, OVERSAMPLE_RANGE, PROBES_RANGE,
};
#[cfg(feature = "local")]
pub use embedder::{
    find_local_model, hf_cache_dir, installed_models, known_model, model_cache_dir, InstalledModel, KnownModel,
    LocalEmbedder, LocalEmbedderBuilder, ModelSource, BGE_QUERY_INSTRUCTION, DEFAULT_LOCAL_MODEL, DEFAULT_TOKEN_BUDGET,
    KNOWN_MODELS,
};
pub use embedder::{Embedder, HashingEmbedder, NoEmbedder};
#[cfg(feature = "openai")]
pub use embedder::{OpenAiEmbedder, OpenAiEmbedderBuilder};
pub use error::{BoxError, Error, Result};
pub use filter::{
    FieldCondition, Filter, FilterFields, MAX_FILTER_DEPTH, MAX_FILTER_IN_VALUES, MAX_FILTER_NODES,
    MAX_FILTER_PATH_SEGMENTS,
};
pub use gate::CommitGate;
pub use position::WritePosition;
pub use search_mode::{Fusion, LegScore, Mmr, SearchMode};
pub use similarity::cosine_similarity;
pub use store::{
    EmbedderStats, ListOptions, Stats, StorageConfig, TuneKnob, TuneOptions, TuneReport, TuneStep, VectorStore,
    VectorStoreBuilder, DEFAULT_DB_PATH, DEFAULT_MAX_REPLICA_LAG, DEFAULT_PAGE_SIZE, DEFAULT_POOL_SIZE, DEFAULT_TABLE,
    DEFAULT_TEXT_CONFIG, MAX_PAGE_SIZE, MAX_TUNE_QUERIES,
};

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// A [`Metadata`] object from JSON object syntax: `metadata!({"brand": "acme", "sizes": [40, 41]})`.
/// Only an object literal compiles (the braces are part of the pattern), so this cannot fail.
///
/// ```
/// let m = marketking_core::metadata!({"brand": "acme", "price": 120});
/// assert_eq!(m["price"], 120);
/// ```
#[macro_export]
macro_rules! metadata {
    ({ $($tt:tt)* }) => {
        match $crate::__private::serde_json::json!({ $($tt)* }) {
            $crate::__private::serde_json::Value::Object(map) => map,
            _ => unreachable!("an object literal is an object"),
        }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}
