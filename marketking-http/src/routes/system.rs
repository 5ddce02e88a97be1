//! Health, readiness, metrics, stats and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::OpenApi;

use marketking_core::Stats;

use super::dto::ReadyBody;
use crate::error::{AppError, ErrorBody};
use crate::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", operation_id = "system_healthz", responses((status = 200, description = "ok", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the storage answers within the readiness timeout; a down cache is reported as
/// `degraded` (still ready). Both are checked at the same time, each within the timeout, so the
/// answer comes within it whatever PostgreSQL or Redis do.
#[utoipa::path(get, path = "/readyz", tag = "system", operation_id = "system_readyz",
    responses((status = 200, description = "Ready", body = ReadyBody),
              (status = 503, description = "Storage unavailable or not answering in time", body = ReadyBody)))]
pub async fn readyz(State(s): State<AppState>) -> (StatusCode, Json<ReadyBody>) {
    let limit = s.config.readiness_timeout;
    let (cache, storage) =
        tokio::join!(tokio::time::timeout(limit, s.store.ping_cache()), tokio::time::timeout(limit, s.store.ping()));
    let cache = match cache {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: cache down");
            "degraded"
        }
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "readiness: cache did not answer in time");
            "degraded"
        }
    };
    let ready = match storage {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "readiness: storage down");
            false
        }
        Err(_) => {
            tracing::error!(timeout_ms = limit.as_millis() as u64, "readiness: storage did not answer in time");
            false
        }
    };
    let (status, word) =
        if ready { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    (status, Json(ReadyBody { status: word.into(), cache: cache.into() }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "system_metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> Response {
    let out = s.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

/// Store statistics: counts, sizes, index, cache and embedder counters.
#[utoipa::path(get, path = "/v1/stats", tag = "system", operation_id = "system_stats",
    responses((status = 200, description = "Statistics", body = Stats),
              (status = 500, description = "Storage error", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stats(State(s): State<AppState>) -> Result<Json<Stats>, AppError> {
    Ok(Json(s.store.stats().await?))
}

/// The OpenAPI document of this API, completed with the store's input rules (see
/// `routes/schema.rs`) so that the published schema and the server agree.
pub async fn openapi(State(s): State<AppState>) -> Response {
    let mut spec = serde_json::to_value(super::ApiDoc::openapi()).unwrap_or_default();
    super::schema::complete(&mut spec, s.store.dimensions());
    Json(spec).into_response()
}
