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

/// Appends the store's cache and embedder counters (from `stats()`, which queries the storage;
/// skipped with a comment line if that fails).
pub(crate) async fn store_counters(state: &AppState, out: &mut String) {
    match state.store.stats().await {
        Ok(s) => {
            let kind = &s.cache.kind;
            let lines: [(&str, &str, String); 7] = [
                ("marketking_cache_hits_total", "Cache hits", format!("{{cache=\"{kind}\"}} {}", s.cache.hits)),
                ("marketking_cache_misses_total", "Cache misses", format!("{{cache=\"{kind}\"}} {}", s.cache.misses)),
                ("marketking_cache_errors_total", "Cache errors", format!("{{cache=\"{kind}\"}} {}", s.cache.errors)),
                ("marketking_embedder_calls_total", "Embedder calls", format!(" {}", s.embedder.calls)),
                ("marketking_embedder_texts_total", "Texts embedded", format!(" {}", s.embedder.texts)),
                ("marketking_embedder_errors_total", "Embedder errors", format!(" {}", s.embedder.errors)),
                ("marketking_documents", "Documents stored", format!(" {}", s.storage.documents)),
            ];
            for (name, help, value) in lines {
                let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{value}");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "stats for /metrics failed");
            out.push_str("# store counters unavailable\n");
        }
    }
}
