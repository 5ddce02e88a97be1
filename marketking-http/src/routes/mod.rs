//! The routes and the OpenAPI document.

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::AppState;

pub mod admin;
mod docs;
pub mod documents;
pub mod dto;
pub mod jobs;
mod schema;
pub mod search;
pub mod system;
pub mod transfer;

/// The OpenAPI description, generated from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "MarketKing API", description = "Semantic document search over PostgreSQL + pgvector or an embedded file."),
    paths(
        documents::create, documents::batch, documents::list, documents::get, documents::update, documents::delete,
        documents::upsert, documents::get_by_key, documents::delete_by_key, documents::count, documents::count_get,
        documents::delete_by_filter, transfer::export, transfer::import,
        search::search, search::search_get, search::search_ids, search::similar, admin::explain, system::stats,
        admin::create_index, admin::drop_index, admin::rebuild_index, admin::tune, admin::clear_tuning, admin::analyze,
        jobs::import, jobs::list, jobs::get, jobs::cancel, jobs::forget,
        system::healthz, system::readyz, system::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme, and the error answers every `/v1` operation can give
/// (auth, rate limit, malformed input, server errors) to each of them.
#[derive(Debug)]
struct BearerAuth;

fn error_response(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let common = [
            ("400", "Malformed path, query string or JSON"),
            ("401", "Missing or wrong API key"),
            ("422", "Invalid input"),
            ("429", "Rate limited (see Retry-After)"),
            ("500", "Internal error (generic message)"),
            ("503", "A backing service is unavailable, or the request timed out"),
        ];
        let with_body = [("413", "Request body too large"), ("415", "Content-Type is not application/json")];
        for (_, item) in openapi.paths.paths.iter_mut().filter(|(p, _)| p.starts_with("/v1/")) {
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                let has_body = op.request_body.is_some();
                let extra = if has_body { &with_body[..] } else { &[][..] };
                for (code, description) in common.iter().chain(extra) {
                    op.responses.responses.entry((*code).to_string()).or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

/// The `/v1` routes, guarded by the API key check and the rate limiter.
pub(crate) fn v1(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/documents", post(documents::create).get(documents::list))
        .route("/documents/batch", post(documents::batch))
        .route("/documents/count", post(documents::count))
        .route("/documents/delete", post(documents::delete_by_filter))
        .route("/documents/{id}", get(documents::get).put(documents::update).delete(documents::delete))
        .route(
            "/documents/by-key/{key}",
            put(documents::upsert).get(documents::get_by_key).delete(documents::delete_by_key),
        )
        .route("/count", get(documents::count_get))
        .route("/export", get(transfer::export))
        .route("/documents/{id}/similar", get(search::similar))
        .route("/search", post(search::search).get(search::search_get))
        .route("/search/ids", post(search::search_ids))
        .route("/search/explain", post(admin::explain))
        .route("/index", post(admin::create_index).delete(admin::drop_index))
        .route("/index/rebuild", post(admin::rebuild_index))
        .route("/analyze", post(admin::analyze))
        .route("/stats", get(system::stats))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::get).delete(jobs::forget))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(from_fn_with_state(state.clone(), crate::auth::guard))
}

/// The `/v1` routes that stream a long request body (import): guarded like [`v1`], and
/// mounted outside the request timeout, which would otherwise cut a large import mid-way.
/// Each batch of an import is its own transaction, so there is no single write to cancel.
pub(crate) fn v1_streaming(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/import", post(transfer::import))
        // Queuing reads the whole input into the queue before it answers.
        .route("/v1/jobs/import", post(jobs::import))
        // Tuning runs thousands of searches (the exact ones scan the table): it may take longer
        // than a request may, and cutting it off only loses the measurement.
        .route("/v1/index/tune", post(admin::tune).delete(admin::clear_tuning))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(from_fn_with_state(state.clone(), crate::auth::guard))
}

/// The open routes: health, readiness, metrics, spec and the API page (`/docs` and its files).
pub(crate) fn open() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .merge(docs::routes())
        .method_not_allowed_fallback(method_not_allowed)
}

async fn method_not_allowed() -> crate::error::AppError {
    crate::error::AppError::MethodNotAllowed
}
