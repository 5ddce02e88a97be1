//! Prometheus metrics: request counts and latency per route template and status, plus the
//! store's cache and embedder counters.

use std::fmt::Write as _;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::AppState;

/// Request metrics of one app instance (its own registry, so several apps can coexist).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("marketking_http_requests_total", "HTTP requests by route template, method and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("marketking_http_request_duration_seconds", "HTTP request latency in seconds")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("register");
        registry.register(Box::new(latency.clone())).expect("register");
        Metrics { registry, requests, latency }
    }

    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// The request metrics in Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// Middleware recording every request under its matched route template (`unmatched` when none).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let resp = next.run(req).await;
    let route = route.as_deref().unwrap_or("unmatched");
    state.metrics.observe(&method, route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

/// Appends the store's cache, embedder and connection-pool figures. These are in-process
/// counters: a scrape never queries the database.
pub(crate) async fn store_counters(state: &AppState, out: &mut String) {
    let store = &state.store;
    let cache = store.cache_stats();
    let emb = store.embedder_stats();
    let kind = &cache.kind;
    let mut lines: Vec<(&str, &str, &str, String)> = vec![
        ("marketking_cache_hits_total", "Cache hits", "counter", format!("{{cache=\"{kind}\"}} {}", cache.hits)),
        ("marketking_cache_misses_total", "Cache misses", "counter", format!("{{cache=\"{kind}\"}} {}", cache.misses)),
        ("marketking_cache_errors_total", "Cache errors", "counter", format!("{{cache=\"{kind}\"}} {}", cache.errors)),
        ("marketking_embedder_calls_total", "Embedder calls", "counter", format!(" {}", emb.calls)),
        ("marketking_embedder_texts_total", "Texts embedded", "counter", format!(" {}", emb.texts)),
        ("marketking_embedder_errors_total", "Embedder errors", "counter", format!(" {}", emb.errors)),
        (
            "marketking_embedder_seconds_total",
            "Time spent in embedder calls",
            "counter",
            format!(" {}", emb.total_ms / 1000.0),
        ),
    ];
    if let Some(pool) = store.pool_stats() {
        lines.extend([
            ("marketking_pool_max_connections", "Pool size limit", "gauge", format!(" {}", pool.max_size)),
            ("marketking_pool_connections", "Open pool connections", "gauge", format!(" {}", pool.connections)),
            ("marketking_pool_idle_connections", "Idle pool connections", "gauge", format!(" {}", pool.idle)),
            (
                "marketking_pool_waited_total",
                "Checkouts that waited for a connection",
                "counter",
                format!(" {}", pool.waited),
            ),
            ("marketking_pool_timed_out_total", "Checkouts that timed out", "counter", format!(" {}", pool.timed_out)),
        ]);
    }
    for (name, help, kind, value) in lines {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{value}");
    }
}
