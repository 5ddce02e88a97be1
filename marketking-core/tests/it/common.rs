//! Fixtures: a private schema per test, counting and failing embedders.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use marketking_core::{Cache, Embedder, Error, HashingEmbedder, NewDocument, NoCache, Result, VectorStore};

/// `DATABASE_URL`, else a testcontainers PostgreSQL when Docker answers, else the local one.
pub fn database_url() -> String {
    marketking_testkit::database_url()
}

/// `REDIS_URL`, else a testcontainers Redis when Docker answers, else the local one.
pub fn redis_url() -> String {
    marketking_testkit::redis_url()
}

/// A name unique to this test run and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

/// A table in a schema of its own; `cleanup` drops the schema (a failing test keeps it).
pub struct PgTable {
    pub schema: String,
    pub table: String,
}

impl PgTable {
    pub fn new() -> Self {
        let schema = unique("mkt");
        PgTable { table: format!("{schema}.docs"), schema }
    }

    pub async fn store(&self, embedder: impl Embedder + 'static, cache: impl Cache + 'static) -> Result<VectorStore> {
        VectorStore::builder()
            .database_url(database_url())
            .table(&self.table)
            .pool_size(4)
            .embedder(embedder)
            .cache(cache)
            .build()
            .await
    }

    pub async fn plain(&self, dims: usize) -> VectorStore {
        self.store(HashingEmbedder::new(dims).unwrap(), NoCache).await.unwrap()
    }

    pub async fn sql(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.simple_query("SELECT 1").await.unwrap();
        client.query(sql, &[]).await.unwrap()
    }

    /// Runs statements (no results).
    pub async fn exec(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }

    pub async fn cleanup(self) {
        let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)).await.unwrap();
    }
}

/// Wraps the hashing embedder: counts calls and texts, fails on the Nth call when asked.
#[derive(Debug, Clone)]
pub struct TestEmbedder {
    inner: HashingEmbedder,
    pub calls: Arc<AtomicUsize>,
    pub texts: Arc<AtomicUsize>,
    fail_on_call: Option<usize>,
    batch: usize,
    delay: std::time::Duration,
}

impl TestEmbedder {
    pub fn new(dims: usize) -> Self {
        TestEmbedder {
            inner: HashingEmbedder::new(dims).unwrap(),
            calls: Default::default(),
            texts: Default::default(),
            fail_on_call: None,
            batch: 64,
            delay: std::time::Duration::ZERO,
        }
    }

    pub fn failing_on_call(mut self, n: usize) -> Self {
        self.fail_on_call = Some(n);
        self
    }

    /// Each call takes at least `delay` (a slow embedding service).
    pub fn slow(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn texts(&self) -> usize {
        self.texts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Embedder for TestEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_on_call == Some(n) {
            return Err(Error::Embedder { message: format!("test embedder fails on call {n}"), status: Some(503) });
        }
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.embed(texts).await
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn max_batch_size(&self) -> usize {
        self.batch
    }
}

/// Deterministic pseudo-random unit vectors (xorshift), clustered around `clusters` centres.
pub fn random_vectors(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..clusters.max(1)).map(|_| (0..dims).map(|_| next()).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.3 * next()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

/// The two storage backends the conformance suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Embedded,
}

/// Private storage for one test on either backend: a schema of its own on PostgreSQL, a
/// directory of its own for the embedded file. `cleanup` removes it (a failing test keeps it).
pub struct Fixture {
    pub kind: Kind,
    pg: PgTable,
    dir: std::path::PathBuf,
}

impl Fixture {
    pub fn new(kind: Kind) -> Self {
        let dir = std::env::temp_dir().join(unique("mk-it"));
        Fixture { kind, pg: PgTable::new(), dir }
    }

    pub async fn store(&self, embedder: impl Embedder + 'static, cache: impl Cache + 'static) -> Result<VectorStore> {
        match self.kind {
            Kind::Postgres => self.pg.store(embedder, cache).await,
            Kind::Embedded => {
                std::fs::create_dir_all(&self.dir).unwrap();
                VectorStore::builder().db_path(self.dir.join("store.db")).embedder(embedder).cache(cache).build().await
            }
        }
    }

    pub async fn plain(&self, dims: usize) -> VectorStore {
        self.store(HashingEmbedder::new(dims).unwrap(), NoCache).await.unwrap()
    }

    pub async fn cleanup(self) {
        if self.kind == Kind::Postgres {
            self.pg.cleanup().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs an async test body once per backend, as two tests named `postgres` and `embedded`
/// inside a module named after the behaviour.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::common::Kind::Postgres).await
            }
            #[tokio::test]
            async fn embedded() {
                super::$name($crate::common::Kind::Embedded).await
            }
        }
    )*};
}

/// `n` small documents, alternating sources `even` and `odd`.
pub fn docs(n: usize, prefix: &str) -> Vec<NewDocument> {
    (0..n)
        .map(|i| {
            NewDocument::new(
                format!("{prefix} title {i}"),
                format!("{prefix} content number {i} about topic {}", i % 7),
            )
            .with_source(if i % 2 == 0 { "even" } else { "odd" })
        })
        .collect()
}

/// The error and its causes, `: `-separated (what the CLI prints).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
