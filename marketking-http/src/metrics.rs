//! Prometheus metrics: request counts and latency per method, route template and status, plus
//! the store's cache, embedder and connection-pool counters.
//!
//! Every label value comes from a closed set, so clients cannot grow the exposition: methods
//! outside the standard ones count as `other`, routes are the router's templates (`unmatched`
//! when none matched), and statuses are the ones this server answers with.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use marketking_core::VectorStore;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::AppState;

/// Request metrics of one app instance (its own registry, so several apps can coexist).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

/// Unwraps the result of defining a metric from constant names, help texts and label names.
/// Only a typo in those constants makes it fail, and then every app built by the tests fails at
/// once, so a panic here cannot be caused by input.
#[allow(clippy::expect_used)] // justified above: constant definitions, checked by every test
fn defined<T>(metric: prometheus::Result<T>) -> T {
    metric.expect("metric definitions are constant and valid")
}

impl Metrics {
    /// Fresh request counters, and a collector reading `store`'s in-process counters at each
    /// scrape.
    pub fn new(store: &VectorStore) -> Self {
        let registry = Registry::new();
        let requests = defined(IntCounterVec::new(
            Opts::new("marketking_http_requests_total", "HTTP requests by route template, method and status"),
            &["method", "route", "status"],
        ));
        let latency = defined(HistogramVec::new(
            HistogramOpts::new("marketking_http_request_duration_seconds", "HTTP request latency in seconds")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route", "status"],
        ));
        defined(registry.register(Box::new(requests.clone())));
        defined(registry.register(Box::new(latency.clone())));
        defined(registry.register(Box::new(StoreCollector::new(store.clone()))));
        Metrics { registry, requests, latency }
    }

    /// Records one finished request. `route` must be a route template (or `unmatched`).
    pub fn observe(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method_label(method), route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// Everything in the registry (request metrics and store counters) in Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }

    /// The registry, for exporting it some other way.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The method as a label: the standard methods by name, any other token as `other` (HTTP allows
/// any token as a method, so naming them would give clients unbounded label values).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware recording every request under its matched route template (`unmatched` when none;
/// a template is one of the router's, never the request's path).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let resp = next.run(req).await;
    let route = route.as_deref().unwrap_or("unmatched");
    state.metrics.observe(&method, route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

/// The store's cache, embedder and connection-pool figures as a collector. It reads the store's
/// in-process counters when scraped (so a scrape never queries the database) and builds the
/// metrics from them then: they are owned by the store, this only reports them.
#[derive(Debug)]
struct StoreCollector {
    store: VectorStore,
    descs: Vec<Desc>,
}

const CACHE_COUNTERS: [(&str, &str); 3] = [
    ("marketking_cache_hits_total", "Cache hits"),
    ("marketking_cache_misses_total", "Cache misses"),
    ("marketking_cache_errors_total", "Cache errors"),
];
const EMBEDDER_COUNTERS: [(&str, &str); 3] = [
    ("marketking_embedder_calls_total", "Embedder calls"),
    ("marketking_embedder_texts_total", "Texts embedded"),
    ("marketking_embedder_errors_total", "Embedder errors"),
];
const EMBEDDER_SECONDS: (&str, &str) = ("marketking_embedder_seconds_total", "Time spent in embedder calls");
const POOL_GAUGES: [(&str, &str); 3] = [
    ("marketking_pool_max_connections", "Pool size limit"),
    ("marketking_pool_connections", "Open pool connections"),
    ("marketking_pool_idle_connections", "Idle pool connections"),
];
const POOL_COUNTERS: [(&str, &str); 2] = [
    ("marketking_pool_waited_total", "Checkouts that waited for a connection"),
    ("marketking_pool_timed_out_total", "Checkouts that timed out"),
];

const REPLICA_IN_ROTATION: (&str, &str) =
    ("marketking_replica_in_rotation", "1 while the read replica serves reads (reachable, within the lag bound)");
const REPLICA_LAG: (&str, &str) =
    ("marketking_replica_lag_seconds", "Replay lag of the read replica at its last sample");
const REPLICA_COUNTERS: [(&str, &str); 2] = [
    ("marketking_replica_reads_total", "Reads the read replica served"),
    ("marketking_replica_failed_reads_total", "Reads that failed on the read replica and were served by the primary"),
];
const PRIMARY_READS: (&str, &str) =
    ("marketking_primary_reads_total", "Reads the primary served because no read replica could");

fn cache_counter(name: &str, help: &str) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), &["cache"])
}

impl StoreCollector {
    fn new(store: VectorStore) -> Self {
        let mut descs = Vec::new();
        for (name, help) in CACHE_COUNTERS {
            descs.extend(defined(cache_counter(name, help)).desc().into_iter().cloned());
        }
        for (name, help) in EMBEDDER_COUNTERS.into_iter().chain(POOL_COUNTERS) {
            descs.extend(defined(IntCounter::new(name, help)).desc().into_iter().cloned());
        }
        descs.extend(defined(Counter::new(EMBEDDER_SECONDS.0, EMBEDDER_SECONDS.1)).desc().into_iter().cloned());
        for (name, help) in POOL_GAUGES {
            descs.extend(defined(IntGauge::new(name, help)).desc().into_iter().cloned());
        }
        if store.replication_stats().is_some() {
            let (name, help) = REPLICA_IN_ROTATION;
            descs.extend(defined(IntGaugeVec::new(Opts::new(name, help), &["replica"])).desc().into_iter().cloned());
            let (name, help) = REPLICA_LAG;
            descs.extend(defined(GaugeVec::new(Opts::new(name, help), &["replica"])).desc().into_iter().cloned());
            for (name, help) in REPLICA_COUNTERS {
                descs.extend(
                    defined(IntCounterVec::new(Opts::new(name, help), &["replica"])).desc().into_iter().cloned(),
                );
            }
            descs.extend(defined(IntCounter::new(PRIMARY_READS.0, PRIMARY_READS.1)).desc().into_iter().cloned());
        }
        StoreCollector { store, descs }
    }
}

/// Per-replica health, lag and reads (label `replica`: `host:port`), and the primary's reads.
fn replica_metrics(r: &marketking_core::ReplicationStats) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let (Ok(rotation), Ok(lag), Ok(reads), Ok(failed)) = (
        IntGaugeVec::new(Opts::new(REPLICA_IN_ROTATION.0, REPLICA_IN_ROTATION.1), &["replica"]),
        GaugeVec::new(Opts::new(REPLICA_LAG.0, REPLICA_LAG.1), &["replica"]),
        IntCounterVec::new(Opts::new(REPLICA_COUNTERS[0].0, REPLICA_COUNTERS[0].1), &["replica"]),
        IntCounterVec::new(Opts::new(REPLICA_COUNTERS[1].0, REPLICA_COUNTERS[1].1), &["replica"]),
    ) else {
        return out;
    };
    for replica in &r.replicas {
        let label = [replica.name.as_str()];
        rotation.with_label_values(&label).set(i64::from(replica.in_rotation));
        if let Some(ms) = replica.lag_ms {
            lag.with_label_values(&label).set(ms as f64 / 1000.0);
        }
        reads.with_label_values(&label).inc_by(replica.reads);
        failed.with_label_values(&label).inc_by(replica.failed_reads);
    }
    out.extend(rotation.collect());
    out.extend(lag.collect());
    out.extend(reads.collect());
    out.extend(failed.collect());
    out.extend(int_counter(PRIMARY_READS.0, PRIMARY_READS.1, r.primary_reads));
    out
}

fn int_counter(name: &str, help: &str, value: u64) -> Vec<MetricFamily> {
    IntCounter::new(name, help)
        .map(|c| {
            c.inc_by(value);
            c.collect()
        })
        .unwrap_or_default()
}

fn int_gauge(name: &str, help: &str, value: u32) -> Vec<MetricFamily> {
    IntGauge::new(name, help)
        .map(|g| {
            g.set(i64::from(value));
            g.collect()
        })
        .unwrap_or_default()
}

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let cache = self.store.cache_stats();
        let emb = self.store.embedder_stats();
        let mut out = Vec::new();
        for ((name, help), value) in CACHE_COUNTERS.into_iter().zip([cache.hits, cache.misses, cache.errors]) {
            if let Ok(c) = cache_counter(name, help) {
                c.with_label_values(&[cache.kind.as_str()]).inc_by(value);
                out.extend(c.collect());
            }
        }
        for ((name, help), value) in EMBEDDER_COUNTERS.into_iter().zip([emb.calls, emb.texts, emb.errors]) {
            out.extend(int_counter(name, help, value));
        }
        if let Ok(c) = Counter::new(EMBEDDER_SECONDS.0, EMBEDDER_SECONDS.1) {
            c.inc_by((emb.total_ms / 1000.0).max(0.0));
            out.extend(c.collect());
        }
        if let Some(pool) = self.store.pool_stats() {
            for ((name, help), value) in POOL_GAUGES.into_iter().zip([pool.max_size, pool.connections, pool.idle]) {
                out.extend(int_gauge(name, help, value));
            }
            for ((name, help), value) in POOL_COUNTERS.into_iter().zip([pool.waited, pool.timed_out]) {
                out.extend(int_counter(name, help, value));
            }
        }
        if let Some(replication) = self.store.replication_stats() {
            out.extend(replica_metrics(&replication));
        }
        out
    }
}
