//! Search handlers.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use marketking_core::{Mmr, SearchOptions};

use marketking_core::SearchResults;

use super::dto::{SearchBody, SearchParams, SimilarParams};
use crate::error::{ApiJson, ApiPath, ApiQuery, AppError, ErrorBody};
use crate::AppState;

const DEFAULT_K: usize = 10;

/// Semantic search by text (`query`) or by vector (`vector`), with filters.
#[utoipa::path(post, path = "/v1/search", tag = "search", operation_id = "search_post", request_body = SearchBody,
    responses((status = 200, description = "Hits, best first", body = SearchResults),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SearchBody>,
) -> Result<Json<SearchResults>, AppError> {
    let hits = match with_position(search_options(b)?, &headers)? {
        (opts, Some(q), None) => s.store.search(&q, &opts).await?,
        (opts, None, Some(v)) => s.store.search_by_vector(&v, &opts).await?,
        _ => return Err(AppError::invalid("query", "give exactly one of `query` and `vector`")),
    };
    Ok(Json(hits.into()))
}

/// Ids and scores, best first.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct ScoredIds {
    /// The hits, without documents.
    pub hits: Vec<marketking_core::ScoredId>,
}

/// The search of `POST /v1/search` returning only ids and scores: no document column is read.
#[utoipa::path(post, path = "/v1/search/ids", tag = "search", operation_id = "search_ids", request_body = SearchBody,
    responses((status = 200, description = "Ids and scores, best first", body = ScoredIds),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search_ids(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SearchBody>,
) -> Result<Json<ScoredIds>, AppError> {
    let hits = match with_position(search_options(b)?, &headers)? {
        (opts, Some(q), None) => s.store.search_ids(&q, &opts).await?,
        (opts, None, Some(v)) => s.store.search_ids_by_vector(&v, &opts).await?,
        _ => return Err(AppError::invalid("query", "give exactly one of `query` and `vector`")),
    };
    Ok(Json(ScoredIds { hits }))
}

/// The request header a search may carry instead of the body's `consistent_after`: the
/// `x-marketking-write-position` a write's response carried (a load balancer or client can pass
/// it on without touching bodies).
pub const CONSISTENT_AFTER_HEADER: &str = "x-marketking-consistent-after";

/// The search with `x-marketking-consistent-after` applied (the body's field wins).
fn with_position(mut parsed: ParsedSearch, headers: &HeaderMap) -> Result<ParsedSearch, AppError> {
    if parsed.0.consistent_after.is_none() {
        if let Some(v) = headers.get(CONSISTENT_AFTER_HEADER) {
            let text = v.to_str().map_err(|_| AppError::invalid(CONSISTENT_AFTER_HEADER, "is not ASCII"))?;
            let position = text.parse().map_err(|_| {
                AppError::invalid(CONSISTENT_AFTER_HEADER, "is not a write position (like 16/B374D848)")
            })?;
            parsed.0.consistent_after = Some(position);
        }
    }
    Ok(parsed)
}

/// A search body's options, text query and query vector.
pub(crate) type ParsedSearch = (SearchOptions, Option<String>, Option<Vec<f32>>);

/// The options of a search body, and its query and vector.
pub(crate) fn search_options(b: SearchBody) -> Result<ParsedSearch, AppError> {
    let mut opts = SearchOptions::top(b.k.unwrap_or(DEFAULT_K));
    opts.sources = b.sources;
    opts.metadata = b.metadata.map(|m| marketking_core::metadata_object("metadata", m)).transpose()?;
    opts.min_score = b.min_score;
    opts.created_after = b.created_after;
    opts.created_before = b.created_before;
    opts.ef_search = b.ef_search;
    opts.probes = b.probes;
    opts.oversample = b.oversample;
    opts.exact = b.exact;
    opts.filter = b.filter.as_ref().map(marketking_core::Filter::from_json).transpose()?;
    opts.mode = b.mode;
    opts.consistent_after = b.consistent_after.as_deref().map(str::parse).transpose()?;
    if let Some(f) = &b.fusion {
        opts.fusion = f.to_fusion();
    }
    // A `fetch_k` below `k` is raised to `k`: MMR then chooses among the k best, which is what
    // a smaller pool could mean (a rule across two fields no schema can state).
    // (0 stays 0, and is refused: the minimum is 1.) The same for fusion's `candidates`.
    let k = opts.k;
    let at_least_k = |n: usize| if n == 0 { 0 } else { n.max(k) };
    opts.mmr = b.mmr.map(|m| Mmr { lambda: m.lambda, fetch_k: m.fetch_k.map_or(Mmr::default_fetch_k(k), at_least_k) });
    opts.fusion.candidates = opts.fusion.candidates.map(at_least_k);
    Ok((opts, b.query, b.vector))
}

/// Semantic search by text from the query string.
#[utoipa::path(get, path = "/v1/search", tag = "search", operation_id = "search_get", params(SearchParams),
    responses((status = 200, description = "Hits, best first", body = SearchResults),
              (status = 400, description = "Bad query string", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search_get(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Json<SearchResults>, AppError> {
    let mut opts = SearchOptions::top(p.k.unwrap_or(DEFAULT_K));
    if let Some(src) = p.source {
        opts = opts.source(src);
    }
    opts.mode = p.mode;
    let (opts, _, _) = with_position((opts, None, None), &headers)?;
    Ok(Json(s.store.search(&p.q, &opts).await?.into()))
}

/// Documents most similar to document `id`, excluding it.
#[utoipa::path(get, path = "/v1/documents/{id}/similar", tag = "search", operation_id = "search_similar",
    params(("id" = i64, Path, description = "Document id"), SimilarParams),
    responses((status = 200, description = "Hits, best first", body = SearchResults),
              (status = 404, description = "No such document", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn similar(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(p): ApiQuery<SimilarParams>,
) -> Result<Json<SearchResults>, AppError> {
    let opts = SearchOptions::top(p.k.unwrap_or(DEFAULT_K));
    Ok(Json(s.store.find_similar(id, &opts).await?.into()))
}
