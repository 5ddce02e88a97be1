//! Fixtures: a store on a private Postgres schema per test, and request helpers.

#![allow(dead_code, unreachable_pub)]

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

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn unique_schema() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("mkh_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

/// An app over a fresh table; call `cleanup` at the end.
pub struct TestApp {
    pub router: Router,
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
        let schema = unique_schema();
        let store = VectorStore::builder()
            .database_url(database_url())
            .table(format!("{schema}.docs"))
            .pool_size(4)
            .embedder(HashingEmbedder::new(DIMS).unwrap())
            .cache(cache)
            .build()
            .await
            .unwrap();
        let router = app(AppState::new(store.clone(), config));
        TestApp { router, store, schema }
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        send(&self.router, req).await
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

pub fn raw(method: &str, uri: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).unwrap()
}
