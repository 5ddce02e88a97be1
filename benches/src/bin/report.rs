//! Run with: `cargo run --release -p marketking-benches --bin report -- [--sizes 1000,10000] [--dims 1536]`
//!
//! Prints a Markdown latency/recall report: the embedded store (exact search vs a naive
//! single-threaded loop) and, when `DATABASE_URL` is set, PostgreSQL + pgvector (ingest, exact
//! scan, HNSW at several ef_search values with recall@10, and the SDK's overhead over the same
//! SQL issued directly with tokio-postgres). All figures come from one run on this machine.

use std::time::Instant;

use anyhow::Context;
use marketking_benches::{clustered, exact_top_k, percentile, queries};
use marketking_core::{HashingEmbedder, IndexSpec, NewDocument, NoCache, SearchOptions, VectorStore};

const QUERIES: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let sizes: Vec<usize> = opt("--sizes")
        .unwrap_or_else(|| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .context("--sizes")?;
    let dims: usize = opt("--dims").unwrap_or_else(|| "1536".into()).parse().context("--dims")?;
    let only = opt("--backend");
    println!("# MarketKing report: {dims} dims, {QUERIES} queries, top-10, {} cores", num_cpus());
    for &n in &sizes {
        let data = clustered(n, dims, 100, 42);
        let qs = queries(QUERIES, dims, 100, 42);
        let truth: Vec<Vec<usize>> = qs.iter().map(|q| exact_top_k(&data, q, 10)).collect();
        if only.as_deref().is_none_or(|b| b == "embedded") {
            embedded(n, dims, &data, &qs, &truth).await?;
        }
        if std::env::var("DATABASE_URL").is_ok() && only.as_deref().is_none_or(|b| b == "postgres") {
            postgres(n, dims, &data, &qs, &truth).await?;
        }
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn docs(data: &[Vec<f32>]) -> Vec<NewDocument> {
    data.iter()
        .enumerate()
        .map(|(i, v)| {
            NewDocument::new(format!("doc {i}"), format!("content of document {i}"))
                .with_source(format!("s{}", i % 10))
                .with_embedding(v.clone())
        })
        .collect()
}

async fn timed_searches(
    store: &VectorStore,
    qs: &[Vec<f32>],
    opts: &SearchOptions,
) -> anyhow::Result<(Vec<f64>, Vec<Vec<i64>>)> {
    let mut lat = Vec::new();
    let mut ids = Vec::new();
    // One warm-up pass, then the measured pass.
    for q in qs.iter().take(5) {
        store.search_by_vector(q, opts).await?;
    }
    for q in qs {
        let t = Instant::now();
        let hits = store.search_by_vector(q, opts).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        ids.push(hits.into_iter().map(|h| h.document.id).collect());
    }
    Ok((lat, ids))
}

fn recall(ids: &[Vec<i64>], truth: &[Vec<usize>], id_of: &[i64]) -> f64 {
    let mut hit = 0;
    let mut total = 0;
    for (got, want) in ids.iter().zip(truth) {
        total += want.len();
        hit += want.iter().filter(|w| got.contains(&id_of[**w])).count();
    }
    hit as f64 / total as f64
}

async fn embedded(
    n: usize,
    dims: usize,
    data: &[Vec<f32>],
    qs: &[Vec<f32>],
    truth: &[Vec<usize>],
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mk-report-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = VectorStore::builder()
        .db_path(dir.join("report.db"))
        .embedder(HashingEmbedder::new(dims)?)
        .cache(NoCache)
        .cache_results(false)
        .build()
        .await?;
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in docs(data).chunks(5000) {
        ids.extend(store.batch(chunk.to_vec()).await?.ids);
    }
    let ingest = n as f64 / t.elapsed().as_secs_f64();
    let (mut lat, got) = timed_searches(&store, qs, &SearchOptions::top(10)).await?;
    let r = recall(&got, truth, &ids);
    // The naive reference: one thread, one cosine per row, full sort.
    let mut naive = Vec::new();
    for q in qs.iter().take(10) {
        let t = Instant::now();
        std::hint::black_box(exact_top_k(data, q, 10));
        naive.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = percentile(&mut lat, 50.0);
    let naive50 = percentile(&mut naive, 50.0);
    println!("\n## embedded, {n} docs\n");
    println!("| ingest docs/s | search p50 ms | p95 ms | p99 ms | recall@10 | naive 1-thread p50 ms | speed-up |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {ingest:.0} | {p50:.2} | {:.2} | {:.2} | {r:.3} | {naive50:.2} | {:.1}x |",
        percentile(&mut lat, 95.0),
        percentile(&mut lat, 99.0),
        naive50 / p50
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn postgres(
    n: usize,
    dims: usize,
    data: &[Vec<f32>],
    qs: &[Vec<f32>],
    truth: &[Vec<usize>],
) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")?;
    let schema = format!("mk_report_{}_{n}", std::process::id());
    let table = format!("{schema}.docs");
    let store = VectorStore::builder()
        .database_url(&url)
        .table(&table)
        .embedder(HashingEmbedder::new(dims)?)
        .cache(NoCache)
        .cache_results(false)
        .build()
        .await?;
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in docs(data).chunks(10_000) {
        ids.extend(store.batch(chunk.to_vec()).await?.ids);
    }
    let ingest = n as f64 / t.elapsed().as_secs_f64();
    store.analyze().await?;
    let (mut exact, _) = timed_searches(&store, qs, &SearchOptions::top(10)).await?;
    let t = Instant::now();
    store.create_index(IndexSpec::default()).await?;
    let build = t.elapsed().as_secs_f64();
    println!("\n## postgres + pgvector, {n} docs\n");
    println!(
        "ingest (batch, binary COPY): {ingest:.0} docs/s; exact scan p50 {:.2} ms; HNSW build {build:.1} s\n",
        percentile(&mut exact, 50.0)
    );
    println!("| ef_search | p50 ms | p95 ms | p99 ms | QPS (1 client) | recall@10 |");
    println!("|---|---|---|---|---|---|");
    for ef in [40u32, 100, 200] {
        let opts = SearchOptions { ef_search: Some(ef), ..SearchOptions::top(10) };
        let (mut lat, got) = timed_searches(&store, qs, &opts).await?;
        let mean = lat.iter().sum::<f64>() / lat.len() as f64;
        println!(
            "| {ef} | {:.2} | {:.2} | {:.2} | {:.0} | {:.3} |",
            percentile(&mut lat, 50.0),
            percentile(&mut lat, 95.0),
            percentile(&mut lat, 99.0),
            1000.0 / mean,
            recall(&got, truth, &ids)
        );
    }
    // Raw SQL: the same statement prepared once, same settings, same data, one connection.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute("SET hnsw.ef_search = 100").await?;
    let stmt = client
        .prepare(&format!(
            "SELECT id, title, content, source, metadata, key, created_at, updated_at, embedding <=> $1 AS distance \
             FROM \"{schema}\".\"docs\" ORDER BY embedding <=> $1 LIMIT 10"
        ))
        .await?;
    let mut raw = Vec::new();
    let mut sdk = Vec::new();
    let opts = SearchOptions { ef_search: Some(100), ..SearchOptions::top(10) };
    for round in 0..2 {
        for q in qs {
            let v = pgvector::Vector::from(q.clone());
            let t = Instant::now();
            std::hint::black_box(client.query(&stmt, &[&v]).await?);
            if round == 1 {
                raw.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let t = Instant::now();
            std::hint::black_box(store.search_by_vector(q, &opts).await?);
            if round == 1 {
                sdk.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let (r50, s50) = (percentile(&mut raw, 50.0), percentile(&mut sdk, 50.0));
    println!("\nSDK vs raw SQL (HNSW, ef_search 100, interleaved): SDK p50 {s50:.3} ms, raw p50 {r50:.3} ms, overhead {:.2}x", s50 / r50);
    client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await?;
    Ok(())
}
