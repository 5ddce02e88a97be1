//! Run with: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p marketking-benches --bench search`
//!
//! Search latency per backend and index at `MK_BENCH_SIZES` documents (default `1000,10000`;
//! add 100000 for the full run) x `MK_BENCH_DIMS` dimensions (default 1536): the embedded store,
//! and with `DATABASE_URL` set, PostgreSQL without an index (exact), with HNSW (m 16,
//! ef_construction 64; ef_search 40 and 100) and with IVFFlat (lists rows/1000, probes
//! sqrt(lists)); cached vs uncached search; and batch ingest throughput with precomputed
//! vectors. Data comes from the seeded generator shared with the `report` binary. No network
//! beyond the local database.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use marketking_benches::{clustered, queries};
use marketking_core::{
    HashingEmbedder, IndexKind, IndexSpec, MemoryCache, NewDocument, NoCache, SearchOptions, VectorStore,
};
use tokio::runtime::Runtime;

fn sizes() -> Vec<usize> {
    // `cargo test` runs each benchmark once as a smoke test: keep that small.
    let default = if std::env::args().any(|a| a == "--bench") { "1000,10000" } else { "1000" };
    std::env::var("MK_BENCH_SIZES")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn dims() -> usize {
    std::env::var("MK_BENCH_DIMS").ok().and_then(|s| s.parse().ok()).unwrap_or(1536)
}

fn docs(data: &[Vec<f32>]) -> Vec<NewDocument> {
    data.iter()
        .enumerate()
        .map(|(i, v)| NewDocument::new(format!("doc {i}"), format!("content {i}")).with_embedding(v.clone()))
        .collect()
}

async fn embedded_store(dir: &std::path::Path, dims: usize, cached: bool) -> VectorStore {
    std::fs::create_dir_all(dir).unwrap();
    let b = VectorStore::builder().db_path(dir.join("bench.db")).embedder(HashingEmbedder::new(dims).unwrap());
    let b = if cached { b.cache(MemoryCache::default()) } else { b.cache(NoCache).cache_results(false) };
    b.build().await.unwrap()
}

async fn pg_store(url: &str, table: &str, dims: usize) -> VectorStore {
    VectorStore::builder()
        .database_url(url)
        .table(table)
        .embedder(HashingEmbedder::new(dims).unwrap())
        .cache(NoCache)
        .cache_results(false)
        .build()
        .await
        .unwrap()
}

async fn drop_schema(url: &str, schema: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await.unwrap();
}

fn search(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dims = dims();
    let qs = queries(64, dims, 100, 42);
    let url = std::env::var("DATABASE_URL").ok();
    for n in sizes() {
        let data = clustered(n, dims, 100, 42);
        let mut g = c.benchmark_group(format!("search_{n}x{dims}"));
        g.sample_size(30);

        let dir = std::env::temp_dir().join(format!("mk-crit-{}-{n}", std::process::id()));
        let store = rt.block_on(async {
            let s = embedded_store(&dir, dims, false).await;
            s.batch(docs(&data)).await.unwrap();
            s
        });
        let mut i = 0;
        g.bench_function("embedded_exact", |b| {
            b.to_async(&rt).iter(|| {
                i += 1;
                let (s, q) = (store.clone(), qs[i % qs.len()].clone());
                async move { s.search_by_vector(&q, &SearchOptions::top(10)).await.unwrap() }
            })
        });
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);

        let Some(url) = url.as_deref() else { continue };
        let schema = format!("mk_crit_{}_{n}", std::process::id());
        let store = rt.block_on(async {
            let s = pg_store(url, &format!("{schema}.docs"), dims).await;
            for part in data.chunks(10_000) {
                s.batch(docs(part)).await.unwrap();
            }
            s.analyze().await.unwrap();
            s
        });
        let mut bench_pg = |name: String, opts: SearchOptions| {
            let mut i = 0;
            g.bench_function(name, |b| {
                b.to_async(&rt).iter(|| {
                    i += 1;
                    let (s, q, o) = (store.clone(), qs[i % qs.len()].clone(), opts.clone());
                    async move { s.search_by_vector(&q, &o).await.unwrap() }
                })
            });
        };
        bench_pg("postgres_exact".into(), SearchOptions::top(10));
        rt.block_on(store.create_index(IndexSpec::default())).unwrap();
        for ef in [40, 100] {
            bench_pg(format!("postgres_hnsw_ef{ef}"), SearchOptions { ef_search: Some(ef), ..SearchOptions::top(10) });
        }
        let lists = ((n / 1000) as u32).max(1);
        rt.block_on(store.create_index(IndexSpec {
            kind: IndexKind::IvfFlat { lists: None },
            concurrently: false,
            ..Default::default()
        }))
        .unwrap();
        let probes = (lists as f64).sqrt().ceil() as u32;
        bench_pg(
            format!("postgres_ivfflat_probes{probes}"),
            SearchOptions { probes: Some(probes), ..SearchOptions::top(10) },
        );
        g.finish();
        drop(store);
        rt.block_on(drop_schema(url, &schema));
    }
}

fn cached_vs_uncached(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dims = dims();
    let data = clustered(10_000, dims, 100, 7);
    let mut g = c.benchmark_group("text_search_10000");
    for cached in [false, true] {
        let dir = std::env::temp_dir().join(format!("mk-crit-cache-{}-{cached}", std::process::id()));
        let store = rt.block_on(async {
            let s = embedded_store(&dir, dims, cached).await;
            s.batch(docs(&data)).await.unwrap();
            s
        });
        g.bench_function(if cached { "cached" } else { "uncached" }, |b| {
            b.to_async(&rt).iter(|| {
                let s = store.clone();
                async move { s.search("content of a popular query", &SearchOptions::top(10)).await.unwrap() }
            })
        });
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dims = dims();
    let n = 2000;
    let data = clustered(n, dims, 100, 9);
    let mut g = c.benchmark_group(format!("batch_ingest_{n}x{dims}"));
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let schema = format!("mk_crit_ingest_{}", std::process::id());
        let store = rt.block_on(pg_store(&url, &format!("{schema}.docs"), dims));
        g.bench_with_input(BenchmarkId::new("postgres_copy", n), &n, |b, _| {
            b.to_async(&rt).iter_batched(
                || docs(&data),
                |d| {
                    let s = store.clone();
                    async move { s.batch(d).await.unwrap() }
                },
                BatchSize::PerIteration,
            )
        });
        drop(store);
        rt.block_on(drop_schema(&url, &schema));
    }
    let dir = std::env::temp_dir().join(format!("mk-crit-ingest-{}", std::process::id()));
    let store = rt.block_on(embedded_store(&dir, dims, false));
    g.bench_with_input(BenchmarkId::new("embedded", n), &n, |b, _| {
        b.to_async(&rt).iter_batched(
            || docs(&data),
            |d| {
                let s = store.clone();
                async move { s.batch(d).await.unwrap() }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, search, cached_vs_uncached, ingest);
criterion_main!(benches);
