//! Fixtures: a store on a private Postgres schema per test, and request helpers.

#![allow(dead_code, unreachable_pub)]

pub mod proxy;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use marketking_core::{Cache, HashingEmbedder, RedisCache, VectorStore};
use marketking_http::{app, AppState, HttpConfig};
use serde_json::Value;
use tower::ServiceExt;

pub const DIMS: usize = 64;

/// `DATABASE_URL`, else a testcontainers PostgreSQL when Docker answers, else the local one.
pub fn database_url() -> String {
    marketking_testkit::database_url()
}

/// `REDIS_URL`, else a testcontainers Redis when Docker answers, else the local one.
pub fn redis_url() -> String {
    marketking_testkit::redis_url()
}

fn unique_schema() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("mkh_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

/// An app over a fresh table; call `cleanup` at the end.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub store: VectorStore,
    pub schema: String,
}

/// Test defaults: no keys, no rate limit.
pub fn config() -> HttpConfig {
    HttpConfig { rate_limit: 0, ..HttpConfig::default() }
}

impl TestApp {
    pub async fn new(config: HttpConfig) -> Self {
        Self::with_cache(config, RedisCache::new(&redis_url()).unwrap()).await
    }

    pub async fn with_cache(config: HttpConfig, cache: impl Cache + 'static) -> Self {
        Self::build(&database_url(), config, cache).await
    }

    /// An app whose store connects through `url` (e.g. a [`proxy::PgProxy`]); the table is
    /// still cleaned up through the direct URL.
    pub async fn over(url: &str, config: HttpConfig) -> Self {
        Self::build(url, config, RedisCache::new(&redis_url()).unwrap()).await
    }

    async fn build(url: &str, config: HttpConfig, cache: impl Cache + 'static) -> Self {
        let schema = unique_schema();
        let store = VectorStore::builder()
            .database_url(url)
            .table(format!("{schema}.docs"))
            .pool_size(4)
            .embedder(HashingEmbedder::new(DIMS).unwrap())
            .cache(cache)
            .build()
            .await
            .unwrap();
        let state = AppState::new(store.clone(), config);
        let router = app(state.clone());
        TestApp { router, state, store, schema }
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        send(&self.router, req).await
    }

    /// The app's metric registry in text format (what any exporter over it would publish).
    pub fn state_metrics(&self) -> String {
        self.state.metrics.render()
    }

    pub async fn sql(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }

    pub async fn cleanup(self) {
        let schema = self.schema.clone();
        self.sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
    }
}

/// A finished response.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the JSON error shape and returns the code.
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "no error message in {v}");
        v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code in {v}")).to_string()
    }
}

pub async fn send(router: &Router, req: Request<Body>) -> Resp {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Resp { status, headers, body }
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn delete(uri: &str) -> Request<Body> {
    Request::delete(uri).body(Body::empty()).unwrap()
}

pub fn json(method: &str, uri: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// `req` as if it came from `ip` (what `into_make_service_with_connect_info` adds in the binary).
pub fn from_ip(mut req: Request<Body>, ip: &str) -> Request<Body> {
    let addr = SocketAddr::new(ip.parse().unwrap(), 40000);
    req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    req
}

/// `req` with `Authorization: Bearer <key>`.
pub fn bearer(mut req: Request<Body>, key: &str) -> Request<Body> {
    req.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    req
}

/// The shared PostgreSQL's address, from `DATABASE_URL`.
pub fn postgres_addr() -> SocketAddr {
    let url = database_url();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("a TCP host is needed for the proxy, got {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let ip = if host == "localhost" { "127.0.0.1".to_string() } else { host };
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// The database name in `DATABASE_URL`.
pub fn database_name() -> String {
    let config: tokio_postgres::Config = database_url().parse().unwrap();
    config.get_dbname().unwrap_or("postgres").to_string()
}

/// Runs the `marketking-http` binary with `args` and `env` over an embedded store in a temp
/// directory, expecting it to refuse to start: returns its exit code and stderr. A server that
/// starts anyway is killed after 20 s and fails the test.
pub fn refused_start(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    use std::io::Read;
    let dir = std::env::temp_dir().join(format!("mkh_refuse_{}_{}", std::process::id(), unique_schema()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_marketking-http"));
    cmd.args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("MARKETKING_API_KEYS")
        .env_remove("MARKETKING_CORS_ORIGINS")
        .env("MARKETKING_DB_PATH", dir.join("r.db"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            panic!("the server started (still running after 20 s) with {args:?} {env:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (status.code(), stderr)
}

pub fn raw(method: &str, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).unwrap()
}
