//! The routes and the OpenAPI document.

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;

pub mod documents;
pub mod dto;
pub mod search;
pub mod system;

/// The OpenAPI description, generated from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "MarketKing API", description = "Semantic document search over PostgreSQL + pgvector or an embedded file."),
    paths(
        documents::create, documents::batch, documents::get, documents::update, documents::delete,
        documents::upsert, search::search, search::search_get, search::similar, system::stats,
        system::healthz, system::readyz, system::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/v1` routes, guarded by the API key check and the rate limiter.
pub(crate) fn v1(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/documents", post(documents::create))
        .route("/documents/batch", post(documents::batch))
        .route("/documents/{id}", get(documents::get).put(documents::update).delete(documents::delete))
        .route("/documents/by-key/{key}", put(documents::upsert))
        .route("/documents/{id}/similar", get(search::similar))
        .route("/search", post(search::search).get(search::search_get))
        .route("/stats", get(system::stats))
        .route_layer(from_fn_with_state(state.clone(), crate::auth::guard))
}

/// The open routes: health, readiness, metrics, spec and docs.
pub(crate) fn open() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .route("/docs", get(system::docs))
}
