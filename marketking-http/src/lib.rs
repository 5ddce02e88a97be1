//! `marketking-http`: the REST service of MarketKing.
//!
//! [`app`] builds the whole [`Router`] from an [`AppState`]: the `/v1` API (documents, search,
//! stats) behind API keys and a per-client rate limit, plus open `/healthz`, `/readyz`,
//! `/metrics`, `/openapi.json` and `/docs`. Errors answer `{"error": {"code", "message"}}`.
// Nothing that came from a file, the network or storage may panic the tool: no unwrap, expect,
// unchecked indexing or explicit panic outside tests.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use marketking_core::{CommitGate, VectorStore};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;
use tracing::Level;

pub mod auth;
mod config;
mod cors;
pub mod error;
pub mod metrics;
mod object;
pub mod routes;

pub use auth::ApiKeys;
pub use config::ConfigError;
pub use cors::CorsOrigins;
pub use routes::ApiDoc;

/// Default request body limit: 10 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default rate limit, requests per second per client.
pub const DEFAULT_RATE_LIMIT: u32 = 50;
/// Default time `/readyz` waits for the storage (and, at the same time, the cache) before it
/// answers not-ready: well under the 1 s a probe usually allows, far above a healthy ping.
pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_millis(500);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Service settings (everything but the store).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// API keys; empty = no authentication.
    pub api_keys: ApiKeys,
    /// Requests per second per client (key, or IP without keys); 0 = off.
    pub rate_limit: u32,
    /// Failed API-key attempts per second per client address (IPv6: per /64), also the
    /// burst, before it is answered 429 with `Retry-After`; 0 = off.
    pub auth_failure_limit: u32,
    /// Origins allowed by CORS (default none: no CORS headers).
    pub cors: CorsOrigins,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// How long `/readyz` waits for the storage before answering 503. It has its own short
    /// limit so a hung or restarting PostgreSQL shows up as not-ready at once, instead of after
    /// the pool's connection timeout (10 s).
    pub readiness_timeout: Duration,
    /// Where the rate limit is kept: `Some` shares it (per key, or per IP) across every
    /// instance using this Redis; `None` counts in this process only.
    pub shared_rate_limit: Option<marketking_core::RedisCache>,
    /// The directory whose files `POST /v1/jobs/import?path=...` may import; `None`: only
    /// request bodies.
    pub import_dir: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            api_keys: ApiKeys::none(),
            rate_limit: DEFAULT_RATE_LIMIT,
            auth_failure_limit: auth::DEFAULT_AUTH_FAILURE_LIMIT,
            cors: CorsOrigins::None,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            readiness_timeout: DEFAULT_READINESS_TIMEOUT,
            shared_rate_limit: None,
            import_dir: None,
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: VectorStore,
    /// The settings.
    pub config: Arc<HttpConfig>,
    /// API keys (a copy of `config.api_keys`).
    pub(crate) keys: ApiKeys,
    /// The per-client limiter, `None` when off.
    pub(crate) limiter: Option<auth::Limiter>,
    /// The failed-key throttle, `None` when off.
    pub(crate) auth_throttle: Option<auth::AuthThrottle>,
    /// Request metrics.
    pub metrics: metrics::Metrics,
    /// Background jobs of the store (in this process unless [`with_jobs`](Self::with_jobs)
    /// gives others).
    pub jobs: marketking_core::jobs::Jobs,
}

impl AppState {
    /// State over `store` with `config`.
    pub fn new(store: VectorStore, config: HttpConfig) -> Self {
        AppState {
            metrics: metrics::Metrics::new(&store),
            keys: config.api_keys.clone(),
            limiter: auth::Limiter::shared(config.rate_limit, config.shared_rate_limit.clone()),
            auth_throttle: auth::AuthThrottle::new(config.auth_failure_limit),
            config: Arc::new(config),
            jobs: marketking_core::jobs::Jobs::in_process(store.clone()),
            store,
        }
    }

    /// The same state with these jobs (a shared queue, see
    /// [`Jobs::builder`](marketking_core::jobs::Jobs::builder)).
    pub fn with_jobs(mut self, jobs: marketking_core::jobs::Jobs) -> Self {
        self.jobs = jobs;
        self
    }
}

/// Refuses a non-loopback bind address without API keys unless explicitly allowed.
pub fn check_bind(addr: &SocketAddr, keys: &ApiKeys, allow_unauthenticated: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || !keys.is_empty() || allow_unauthenticated {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {addr} without API keys: set MARKETKING_API_KEYS (or --api-keys), \
         bind to a loopback address, or pass --allow-unauthenticated"
    ))
}

/// The request timeout. Not tower-http's `TimeoutLayer`, which drops the handler: a write can be
/// past its commit when its future is dropped (on the server, or on the embedded store's
/// blocking thread), and the client would be told "timed out" about a write that happened, then
/// retry it and write it twice. Here the handler runs under a [`CommitGate`]: on timeout the
/// gate is cancelled, which guarantees no write of the request commits, and only then is the
/// timeout answered; if a write is already committing, its real answer is awaited instead.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let gate = CommitGate::new();
    let handler = gate.scope(next.run(req));
    tokio::pin!(handler);
    tokio::select! {
        resp = &mut handler => resp,
        () = tokio::time::sleep(limit) => {
            if gate.cancel() {
                tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out; nothing was written");
                error::AppError::Timeout.into_response()
            } else {
                tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out while committing; waiting for the commit");
                handler.await
            }
        }
    }
}

/// The response header a write's response carries on a store with read replicas: where the
/// store's writes are in the primary's history, for `consistent_after` in a search through
/// another instance.
pub const WRITE_POSITION: &str = "x-marketking-write-position";

/// Adds [`WRITE_POSITION`] to successful writes' responses (a position at or past the write).
async fn write_position(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let mut resp = next.run(req).await;
    if write && resp.status().is_success() {
        let position = state.store.write_position().and_then(|p| HeaderValue::from_str(&p.to_string()).ok());
        if let Some(value) = position {
            resp.headers_mut().insert(WRITE_POSITION, value);
        }
    }
    resp
}

async fn no_route() -> error::AppError {
    error::AppError::NoRoute
}

/// The whole service.
pub fn app(state: AppState) -> Router {
    let config = state.config.clone();
    // One INFO line per response (status, latency) inside a span carrying the request id; the
    // query string and headers (Authorization) are not logged.
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Micros));
    let mut router = Router::new()
        .nest("/v1", routes::v1(&state))
        .merge(routes::open())
        .fallback(no_route)
        .layer(from_fn_with_state(config.request_timeout, timeout))
        .merge(routes::v1_streaming(&state))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn_with_state(state.clone(), write_position))
        .layer(DefaultBodyLimit::max(config.body_limit));
    if let Some(c) = config.cors.layer(REQUEST_ID) {
        router = router.layer(c);
    }
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
