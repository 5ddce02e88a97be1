//! Index management, ANALYZE and query plans: the store's maintenance operations, behind the
//! same API keys as every `/v1` route.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use marketking_core::{IndexInfo, IndexKind, IndexSpec, Quantization, TuneOptions, TuneReport};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::SearchBody;
use super::search::search_options;
use crate::error::{ApiJson, AppError, ErrorBody};
use crate::AppState;

/// The index to build: `{"kind": "hnsw", ...}` or `{"kind": "ivfflat", ...}`, each with its own
/// parameters.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[schema(example = json!({"kind": "hnsw", "m": 16, "ef_construction": 64}))]
pub enum IndexBody {
    /// HNSW graph: best recall and latency, slower to build.
    Hnsw {
        /// Max links per node, 2..=100 (default 16).
        #[serde(default, deserialize_with = "super::dto::integral")]
        #[schema(minimum = 2, maximum = 100)]
        m: Option<u32>,
        /// Build candidate list size, 4..=1000 (default max(64, 2*m); a value below 2*m is
        /// raised to 2*m).
        #[serde(default, deserialize_with = "super::dto::integral")]
        #[schema(minimum = 4, maximum = 1000)]
        ef_construction: Option<u32>,
        /// What the index stores of each vector (default `none`).
        #[serde(default)]
        quantization: Quantization,
        /// Build without blocking writes (slower).
        #[serde(default)]
        concurrently: bool,
        /// Memory for the build in MiB, 16..=1048576 (PostgreSQL `maintenance_work_mem`;
        /// default 1024).
        #[serde(default, deserialize_with = "super::dto::integral")]
        #[schema(minimum = 16, maximum = 1048576)]
        build_memory_mb: Option<u32>,
        /// Parallel workers besides the leader, 0..=64 (default 1).
        #[serde(default, deserialize_with = "super::dto::integral")]
        #[schema(minimum = 0, maximum = 64)]
        parallel_workers: Option<u32>,
        /// Run ANALYZE after the build (default true; `POST /v1/analyze` runs it later).
        #[serde(default = "yes")]
        analyze: bool,
    },
    /// IVFFlat lists: fast to build; build after loading data.
    Ivfflat {
        /// Number of lists, 1..=32768 (default rows / 1000).
        #[serde(default, deserialize_with = "super::dto::integral")]
        #[schema(minimum = 1, maximum = 32768)]
        lists: Option<u32>,
        /// What the index stores of each vector (default `none`).
        #[serde(default)]
        quantization: Quantization,
        /// Build without blocking writes (slower).
        #[serde(default)]
        concurrently: bool,
        /// Memory for the build in MiB, 16..=1048576 (PostgreSQL `maintenance_work_mem`;
        /// default 1024).
        #[serde(default, deserialize_with = "super::dto::integral")]
        #[schema(minimum = 16, maximum = 1048576)]
        build_memory_mb: Option<u32>,
        /// Parallel workers besides the leader, 0..=64 (default 1).
        #[serde(default, deserialize_with = "super::dto::integral")]
        #[schema(minimum = 0, maximum = 64)]
        parallel_workers: Option<u32>,
        /// Run ANALYZE after the build (default true; `POST /v1/analyze` runs it later).
        #[serde(default = "yes")]
        analyze: bool,
    },
}

fn yes() -> bool {
    true
}

/// Rebuild options.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildBody {
    /// Rebuild without blocking writes (slower).
    #[serde(default)]
    pub concurrently: bool,
}

/// Whether an index was dropped.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct DroppedResult {
    /// False when there was no index.
    pub dropped: bool,
}

/// A query plan.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct PlanResult {
    /// The plan as text (PostgreSQL: `EXPLAIN` of the exact statement a search runs).
    pub plan: String,
}

/// Builds (or replaces) the vector index: pgvector's on PostgreSQL; on the embedded store an
/// HNSW graph over its int8 codes, saved next to its file (IVFFlat there: 400).
#[utoipa::path(post, path = "/v1/index", tag = "admin", operation_id = "index_create", request_body = IndexBody,
    responses((status = 200, description = "The index", body = IndexInfo),
              (status = 400, description = "The backend does not build this kind of index", body = ErrorBody),
              (status = 422, description = "Invalid parameters", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_index(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<IndexBody>,
) -> Result<Json<IndexInfo>, AppError> {
    let spec = match b {
        IndexBody::Hnsw {
            m,
            ef_construction,
            quantization,
            concurrently,
            build_memory_mb,
            parallel_workers,
            analyze,
        } => {
            // Raised to 2*m (pgvector's own floor): a rule across two fields no schema states.
            // (Below 4 it stays, and is refused: the minimum is 4.)
            let floor = m.unwrap_or(marketking_core::DEFAULT_HNSW_M).saturating_mul(2);
            let ef = ef_construction.map(|ef| if ef >= 4 { ef.max(floor) } else { ef });
            IndexSpec {
                kind: IndexKind::hnsw(m, ef),
                concurrently,
                quantization,
                build_memory_mb,
                parallel_workers,
                skip_analyze: !analyze,
            }
        }
        IndexBody::Ivfflat { lists, quantization, concurrently, build_memory_mb, parallel_workers, analyze } => {
            IndexSpec {
                kind: IndexKind::IvfFlat { lists },
                concurrently,
                quantization,
                build_memory_mb,
                parallel_workers,
                skip_analyze: !analyze,
            }
        }
    };
    Ok(Json(s.store.create_index(spec).await?))
}

/// Drops the vector index.
#[utoipa::path(delete, path = "/v1/index", tag = "admin", operation_id = "index_drop",
    responses((status = 200, description = "Whether there was one", body = DroppedResult)),
    security(("bearer" = [])))]
pub async fn drop_index(State(s): State<AppState>) -> Result<Json<DroppedResult>, AppError> {
    Ok(Json(DroppedResult { dropped: s.store.drop_index().await? }))
}

/// Rebuilds the existing vector index.
#[utoipa::path(post, path = "/v1/index/rebuild", tag = "admin", operation_id = "index_rebuild",
    request_body = RebuildBody,
    responses((status = 200, description = "The rebuilt index", body = IndexInfo),
              (status = 400, description = "The backend cannot rebuild this index", body = ErrorBody),
              (status = 404, description = "There is no index to rebuild", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rebuild_index(
    State(s): State<AppState>,
    ApiJson(b): ApiJson<RebuildBody>,
) -> Result<Json<IndexInfo>, AppError> {
    Ok(Json(no_index_is_404(s.store.rebuild_index(b.concurrently).await)?))
}

/// What to tune for: every field optional.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"target": 0.95, "k": 10, "queries": 200}))]
pub struct TuneBody {
    /// The recall@k to reach against exact search, in (0, 1] (default 0.95).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub target: Option<f64>,
    /// The k of recall@k, 1..=999 (default 10).
    #[serde(default, deserialize_with = "super::dto::integral")]
    #[schema(minimum = 1, maximum = 999)]
    pub k: Option<usize>,
    /// How many stored documents serve as queries, 1..=10000 (default 200).
    #[serde(default, deserialize_with = "super::dto::integral")]
    #[schema(minimum = 1, maximum = 10000)]
    pub queries: Option<usize>,
    /// Measure and report only; keep nothing with the index.
    #[serde(default)]
    pub dry_run: bool,
    /// Query texts to measure with instead of stored documents (a sample of real queries),
    /// at most 10000.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub query_texts: Vec<String>,
}

/// "There is no index" is a missing resource on these routes, not bad input.
fn no_index_is_404<T>(r: marketking_core::Result<T>) -> Result<T, AppError> {
    match r {
        Err(marketking_core::Error::InvalidInput { field, reason }) if field == "index" => {
            Err(AppError::Rejected { status: StatusCode::NOT_FOUND, code: "not_found", message: reason })
        }
        other => Ok(other?),
    }
}

/// Measures recall@k of the vector index against exact search on the store's own documents and
/// keeps the smallest search setting (ef_search, probes or oversample) that reaches the target
/// with the index, where every search that does not set it uses it. Runs outside the request
/// timeout (it runs a few thousand searches).
#[utoipa::path(post, path = "/v1/index/tune", tag = "admin", operation_id = "index_tune",
    request_body = TuneBody,
    responses((status = 200, description = "What was measured and kept", body = TuneReport),
              (status = 400, description = "The backend cannot tune its index", body = ErrorBody),
              (status = 404, description = "There is no index to tune", body = ErrorBody),
              (status = 422, description = "Invalid parameters", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn tune(State(s): State<AppState>, ApiJson(b): ApiJson<TuneBody>) -> Result<Json<TuneReport>, AppError> {
    let d = TuneOptions::default();
    let opts = TuneOptions::target(b.target.unwrap_or(d.target))
        .k(b.k.unwrap_or(d.k))
        .queries(b.queries.unwrap_or(d.queries))
        .dry_run(b.dry_run)
        .query_texts(b.query_texts);
    Ok(Json(no_index_is_404(s.store.tune_recall(&opts).await)?))
}

/// Forgets the tuned settings kept with the vector index.
#[utoipa::path(delete, path = "/v1/index/tune", tag = "admin", operation_id = "index_untune",
    responses((status = 200, description = "The index, untuned", body = IndexInfo),
              (status = 400, description = "The backend keeps no tuned settings", body = ErrorBody),
              (status = 404, description = "There is no index", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn clear_tuning(State(s): State<AppState>) -> Result<Json<IndexInfo>, AppError> {
    Ok(Json(no_index_is_404(s.store.clear_tuning().await)?))
}

/// Refreshes the planner's (and the full-text ranking's) statistics: `ANALYZE`.
#[utoipa::path(post, path = "/v1/analyze", tag = "admin", operation_id = "store_analyze",
    responses((status = 204, description = "Done")),
    security(("bearer" = [])))]
pub async fn analyze(State(s): State<AppState>) -> Result<StatusCode, AppError> {
    s.store.analyze().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The plan the search in the body would run (PostgreSQL; the embedded store has none: 400).
#[utoipa::path(post, path = "/v1/search/explain", tag = "search", operation_id = "search_explain",
    request_body = SearchBody,
    responses((status = 200, description = "The plan", body = PlanResult),
              (status = 400, description = "The backend has no query plans", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn explain(State(s): State<AppState>, ApiJson(b): ApiJson<SearchBody>) -> Result<Json<PlanResult>, AppError> {
    let (opts, query, vector) = search_options(b)?;
    let plan = match (query, vector) {
        (Some(q), None) => s.store.explain_query(&q, &opts).await?,
        (None, Some(v)) => s.store.explain_search(&v, &opts).await?,
        _ => return Err(AppError::invalid("query", "give exactly one of `query` and `vector`")),
    };
    Ok(Json(PlanResult { plan }))
}
