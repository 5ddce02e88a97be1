//! Run with: `cargo run --release -p marketking-benches --bin report -- [--sizes 1000,10000] [--dims 1536]`
//!
//! Prints (and writes to `target/mk-bench/report.md`) a Markdown latency/recall report made in
//! one run on this machine:
//! - the embedded store: ingest, search p50/p95/p99 (int8 scan + exact re-rank), QPS with 1 and
//!   8 clients, recall@10, and the speed-up over a naive single-threaded exact loop;
//! - with `DATABASE_URL` set, PostgreSQL + pgvector: ingest through `batch` (binary COPY), exact
//!   scan, HNSW (m 16, ef_construction 64) at ef_search 40/100/150/200 and IVFFlat (lists rows/1000,
//!   probes sqrt(lists)) with recall@10 against exact search, and the SDK's overhead over the
//!   same SQL prepared once and run directly with tokio-postgres;
//! - a cache run: 10,000 text queries drawn from 1,000 distinct texts with a Zipf(1.0)
//!   distribution (Redis when `REDIS_URL` is set, else the in-process cache).
//!
//! Flags: `--sizes`, `--dims`, `--queries` (default 50), `--backend embedded|postgres`,
//! `--no-cache-run`. Exact ground truth is computed once and cached under `target/mk-bench/`.
//!
//! `report --quality DATASET_DIR [--help]` measures search quality instead (recall@10, MRR@10
//! and latency per search mode and backend on a known-item dataset): see `report/quality/`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use marketking_benches::{clustered, exact_top_k, percentile, queries, zipf_sampler};
use marketking_core::{
    HashingEmbedder, IndexKind, IndexSpec, MemoryCache, NewDocument, NoCache, RedisCache, SearchOptions, VectorStore,
};

/// HNSW ef_search values the report measures (the recall/latency trade-off).
const EF_LADDER: [u32; 4] = [40, 100, 150, 200];
/// The recall@10 the recommended ef_search must reach...
const RECALL_TARGET: f64 = 0.95;
/// ...with this margin: parallel HNSW builds are not deterministic, and recall at one ef_search
/// moved by up to 0.03 between builds of the same data here (0.928 to 0.958 at 100k, ef 100;
/// 0.975 to 0.980 at ef 200).
const RECALL_MARGIN: f64 = 0.02;

struct Report {
    text: String,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }
}

struct Args {
    sizes: Vec<usize>,
    dims: usize,
    queries: usize,
    backend: Option<String>,
    cache_run: bool,
}

fn args() -> anyhow::Result<Args> {
    let raw: Vec<String> = std::env::args().collect();
    let opt = |name: &str| raw.iter().position(|a| a == name).and_then(|i| raw.get(i + 1)).cloned();
    Ok(Args {
        sizes: opt("--sizes")
            .unwrap_or_else(|| "1000,10000".into())
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .context("--sizes")?,
        dims: opt("--dims").unwrap_or_else(|| "1536".into()).parse().context("--dims")?,
        queries: opt("--queries").unwrap_or_else(|| "50".into()).parse().context("--queries")?,
        backend: opt("--backend"),
        cache_run: !raw.iter().any(|a| a == "--no-cache-run"),
    })
}

fn bench_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("mk-bench")
}

/// Exact top-10 for each query, cached on disk (computing it at 100k x 1536 takes a while).
fn ground_truth(data: &[Vec<f32>], qs: &[Vec<f32>], n: usize, dims: usize) -> anyhow::Result<Vec<Vec<usize>>> {
    let path = bench_dir().join(format!("truth-v1-{n}-{dims}-{}.txt", qs.len()));
    if let Ok(text) = std::fs::read_to_string(&path) {
        let parsed: Result<Vec<Vec<usize>>, _> =
            text.lines().map(|l| l.split(',').map(str::parse).collect::<Result<Vec<usize>, _>>()).collect();
        if let Ok(t) = parsed {
            if t.len() == qs.len() {
                return Ok(t);
            }
        }
    }
    let truth: Vec<Vec<usize>> = qs.iter().map(|q| exact_top_k(data, q, 10)).collect();
    std::fs::create_dir_all(bench_dir())?;
    let text: Vec<String> =
        truth.iter().map(|t| t.iter().map(usize::to_string).collect::<Vec<_>>().join(",")).collect();
    std::fs::write(&path, text.join("\n"))?;
    Ok(truth)
}

// In a folder of its own: a file directly under src/bin/ would be a binary of its own.
#[path = "report/quality/mod.rs"]
mod quality;

fn main() -> anyhow::Result<std::process::ExitCode> {
    if std::env::args().any(|a| a == "--quality" || a.starts_with("--quality=")) {
        return quality::main();
    }
    latency_report()?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[tokio::main]
async fn latency_report() -> anyhow::Result<()> {
    let a = args()?;
    let mut r = Report { text: String::new() };
    let pg = std::env::var("DATABASE_URL").ok();
    r.line(format!(
        "# MarketKing report: {} dims, {} queries per size, top-10, {} cores\n",
        a.dims,
        a.queries,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    for &n in &a.sizes {
        let data = clustered(n, a.dims, 100, 42);
        let qs = queries(a.queries, a.dims, 100, 42);
        let truth = ground_truth(&data, &qs, n, a.dims)?;
        if a.backend.as_deref().is_none_or(|b| b == "embedded") {
            embedded(&mut r, n, a.dims, &data, &qs, &truth).await?;
        }
        if let (Some(url), true) = (&pg, a.backend.as_deref().is_none_or(|b| b == "postgres")) {
            postgres(&mut r, url, n, a.dims, &data, &qs, &truth).await?;
        }
    }
    if a.cache_run {
        cache_run(&mut r, pg.as_deref(), a.dims).await?;
    }
    std::fs::create_dir_all(bench_dir())?;
    std::fs::write(bench_dir().join("report.md"), &r.text)?;
    Ok(())
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

struct Run {
    lat: Vec<f64>,
    ids: Vec<Vec<i64>>,
}

async fn timed(store: &VectorStore, qs: &[Vec<f32>], opts: &SearchOptions) -> anyhow::Result<Run> {
    for q in qs.iter().take(5) {
        store.search_by_vector(q, opts).await?;
    }
    let mut run = Run { lat: Vec::new(), ids: Vec::new() };
    for q in qs {
        let t = Instant::now();
        let hits = store.search_by_vector(q, opts).await?;
        run.lat.push(t.elapsed().as_secs_f64() * 1000.0);
        run.ids.push(hits.into_iter().map(|h| h.document.id).collect());
    }
    Ok(run)
}

/// Queries per second with `clients` tasks sharing one store, each running every query.
async fn qps(store: &VectorStore, qs: &[Vec<f32>], opts: &SearchOptions, clients: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (store, opts) = (store.clone(), opts.clone());
            let qs: Vec<Vec<f32>> = qs.iter().cycle().skip(c).take(qs.len()).cloned().collect();
            tokio::spawn(async move {
                for q in &qs {
                    store.search_by_vector(q, &opts).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((clients * qs.len()) as f64 / t.elapsed().as_secs_f64())
}

fn recall(ids: &[Vec<i64>], truth: &[Vec<usize>], id_of: &[i64]) -> f64 {
    let total: usize = truth.iter().map(Vec::len).sum();
    let hit: usize =
        ids.iter().zip(truth).map(|(got, want)| want.iter().filter(|w| got.contains(&id_of[**w])).count()).sum();
    hit as f64 / total as f64
}

async fn ingest(store: &VectorStore, data: &[Vec<f32>], chunk: usize) -> anyhow::Result<(f64, Vec<i64>)> {
    let t = Instant::now();
    let mut ids = Vec::with_capacity(data.len());
    for part in data.chunks(chunk) {
        ids.extend(store.batch(docs(part)).await?.ids);
    }
    Ok((data.len() as f64 / t.elapsed().as_secs_f64(), ids))
}

async fn embedded(
    r: &mut Report,
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
    let (ingest, ids) = ingest(&store, data, 5000).await?;
    let opts = SearchOptions::top(10);
    let mut run = timed(&store, qs, &opts).await?;
    let q8 = qps(&store, qs, &opts, 8).await?;
    let mean = run.lat.iter().sum::<f64>() / run.lat.len() as f64;
    // The naive reference: one thread, one cosine per row, full sort.
    let mut naive = Vec::new();
    for q in qs.iter().take(10) {
        let t = Instant::now();
        std::hint::black_box(exact_top_k(data, q, 10));
        naive.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = percentile(&mut run.lat, 50.0);
    let naive50 = percentile(&mut naive, 50.0);
    r.line(format!("## embedded store, {n} docs\n"));
    r.line("| ingest docs/s | search p50 ms | p95 ms | p99 ms | QPS 1 client | QPS 8 clients | recall@10 | naive 1-thread p50 ms | speed-up |");
    r.line("|---|---|---|---|---|---|---|---|---|");
    r.line(format!(
        "| {ingest:.0} | {p50:.2} | {:.2} | {:.2} | {:.0} | {q8:.0} | {:.3} | {naive50:.2} | {:.1}x |\n",
        percentile(&mut run.lat, 95.0),
        percentile(&mut run.lat, 99.0),
        1000.0 / mean,
        recall(&run.ids, truth, &ids),
        naive50 / p50
    ));
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn postgres(
    r: &mut Report,
    url: &str,
    n: usize,
    dims: usize,
    data: &[Vec<f32>],
    qs: &[Vec<f32>],
    truth: &[Vec<usize>],
) -> anyhow::Result<()> {
    let schema = format!("mk_report_{}_{n}", std::process::id());
    let store = VectorStore::builder()
        .database_url(url)
        .table(format!("{schema}.docs"))
        .pool_size(8)
        .embedder(HashingEmbedder::new(dims)?)
        .cache(NoCache)
        .cache_results(false)
        .build()
        .await?;
    let (ingest, ids) = ingest(&store, data, 10_000).await?;
    store.analyze().await?;
    let mut exact = timed(&store, qs, &SearchOptions::top(10)).await?;
    r.line(format!("## PostgreSQL + pgvector, {n} docs\n"));
    r.line(format!("server: {}\n", server_info(url).await?));
    r.line(format!(
        "ingest through `batch` (binary COPY, precomputed vectors): **{ingest:.0} docs/s**; exact scan p50 {:.2} ms, recall {:.3}\n",
        percentile(&mut exact.lat, 50.0),
        recall(&exact.ids, truth, &ids)
    ));
    let t = Instant::now();
    let full = store.create_index(IndexSpec::default()).await?;
    let build = t.elapsed().as_secs_f64();
    r.line(format!("HNSW (m 16, ef_construction 64) build: {build:.1} s, {:.1} MB\n", full.bytes as f64 / 1e6));
    r.line("| index | setting | p50 ms | p95 ms | p99 ms | QPS 1 client | QPS 8 clients | recall@10 |");
    r.line("|---|---|---|---|---|---|---|---|");
    let mut recommended = None;
    for ef in EF_LADDER {
        let opts = SearchOptions { ef_search: Some(ef), ..SearchOptions::top(10) };
        let (p50, rec) = row(r, &store, qs, &opts, truth, &ids, "hnsw", &format!("ef_search {ef}")).await?;
        if rec >= RECALL_TARGET + RECALL_MARGIN && recommended.is_none() {
            recommended = Some((ef, p50, rec));
        }
    }
    let overhead = overhead_vs_raw(url, &schema, &store, qs).await?;
    quantized(r, &store, qs, truth, &ids, build, full.bytes, recommended.map(|(ef, p50, _)| (ef, p50))).await?;
    let lists = ((n / 1000) as u32).max(1);
    let t = Instant::now();
    store
        .create_index(IndexSpec { kind: IndexKind::IvfFlat { lists: None }, concurrently: false, ..Default::default() })
        .await?;
    let ivf_build = t.elapsed().as_secs_f64();
    let probes = (lists as f64).sqrt().ceil() as u32;
    let opts = SearchOptions { probes: Some(probes), ..SearchOptions::top(10) };
    row(r, &store, qs, &opts, truth, &ids, "ivfflat", &format!("lists {lists}, probes {probes}")).await?;
    r.line(format!("\nIVFFlat build: {ivf_build:.1} s\n"));
    match recommended {
        Some((ef, p50, rec)) => r.line(format!(
            "Recommended HNSW ef_search at this size: **{ef}**: the smallest with recall@10 >= {RECALL_TARGET} \
             plus a {RECALL_MARGIN} margin for build-to-build variation ({rec:.3}, p50 {p50:.2} ms)\n"
        )),
        None => r.line(format!(
            "No ef_search up to {} reached recall@10 {RECALL_TARGET} plus a {RECALL_MARGIN} margin at this size.\n",
            EF_LADDER[EF_LADDER.len() - 1]
        )),
    }
    r.line(format!("{overhead}\n"));
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await?;
    Ok(())
}

/// HNSW over half-precision and binary-quantized copies of the vectors, re-ranked by exact
/// distance, against the full-precision index just measured: build time, size, recall, latency.
#[allow(clippy::too_many_arguments)]
async fn quantized(
    r: &mut Report,
    store: &VectorStore,
    qs: &[Vec<f32>],
    truth: &[Vec<usize>],
    ids: &[i64],
    full_build: f64,
    full_bytes: u64,
    recommended: Option<(u32, f64)>,
) -> anyhow::Result<()> {
    use marketking_core::Quantization;
    let mut builds = Vec::new();
    r.line(
        "\nQuantized HNSW (m 16, ef_construction 64; candidates re-ranked by exact cosine in the same statement):\n",
    );
    r.line("| index | setting | p50 ms | p95 ms | p99 ms | QPS 1 client | QPS 8 clients | recall@10 |");
    r.line("|---|---|---|---|---|---|---|---|");
    for (q, settings) in [
        (Quantization::Half, vec![(40, 1), (100, 1), (200, 1)]),
        (Quantization::Binary, vec![(40, 4), (100, 4), (100, 10), (200, 20), (400, 40)]),
    ] {
        let t = Instant::now();
        let info = store.create_index(IndexSpec { quantization: q, ..Default::default() }).await?;
        builds.push((q, t.elapsed().as_secs_f64(), info.bytes));
        for (ef, oversample) in settings {
            let opts = SearchOptions { ef_search: Some(ef), oversample: Some(oversample), ..SearchOptions::top(10) };
            row(
                r,
                store,
                qs,
                &opts,
                truth,
                ids,
                &format!("hnsw {q}"),
                &format!("ef_search {ef}, oversample {oversample}"),
            )
            .await?;
        }
    }
    r.line("");
    r.line("| index | build s | build vs full | size MB | full / size |");
    r.line("|---|---|---|---|---|");
    r.line(format!("| hnsw none | {full_build:.1} | 1.00x | {:.1} | 1.00x |", full_bytes as f64 / 1e6));
    for (q, secs, bytes) in builds {
        r.line(format!(
            "| hnsw {q} | {secs:.1} | {:.2}x faster | {:.1} | {:.2}x smaller |",
            full_build / secs,
            bytes as f64 / 1e6,
            full_bytes as f64 / bytes.max(1) as f64
        ));
    }
    if let Some((ef, p50)) = recommended {
        r.line(format!("\nFull-precision HNSW at its recommended ef_search {ef}: p50 {p50:.2} ms.\n"));
    }
    Ok(())
}

/// Server and pgvector versions and the memory settings that decide whether an index fits in
/// PostgreSQL's buffers.
async fn server_info(url: &str) -> anyhow::Result<String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), \
                    (SELECT extversion FROM pg_extension WHERE extname = 'vector'), \
                    current_setting('shared_buffers'), current_setting('effective_cache_size')",
            &[],
        )
        .await?;
    Ok(format!(
        "PostgreSQL {}, pgvector {}, shared_buffers {}, effective_cache_size {}",
        row.get::<_, String>(0),
        row.get::<_, Option<String>>(1).unwrap_or_default(),
        row.get::<_, String>(2),
        row.get::<_, String>(3)
    ))
}

#[allow(clippy::too_many_arguments)]
async fn row(
    r: &mut Report,
    store: &VectorStore,
    qs: &[Vec<f32>],
    opts: &SearchOptions,
    truth: &[Vec<usize>],
    ids: &[i64],
    index: &str,
    setting: &str,
) -> anyhow::Result<(f64, f64)> {
    let mut run = timed(store, qs, opts).await?;
    let mean = run.lat.iter().sum::<f64>() / run.lat.len() as f64;
    let q8 = qps(store, qs, opts, 8).await?;
    let (p50, rec) = (percentile(&mut run.lat, 50.0), recall(&run.ids, truth, ids));
    r.line(format!(
        "| {index} | {setting} | {p50:.2} | {:.2} | {:.2} | {:.0} | {q8:.0} | {rec:.3} |",
        percentile(&mut run.lat, 95.0),
        percentile(&mut run.lat, 99.0),
        1000.0 / mean,
    ));
    Ok((p50, rec))
}

/// The same statement the SDK runs for an unfiltered search, prepared once and run directly with
/// tokio-postgres, interleaved with SDK calls (the order rotates every query, so no variant
/// always runs first on a cold cache) so all of them see the same machine load.
///
/// Baselines: the statement prepared on a connection with the SDK's session settings
/// (`plan_cache_mode = force_custom_plan`, the same ef_search); the same with the server's
/// default plan cache mode (a generic plan after five executions); and the unnamed statement
/// (parsed and planned on every call).
async fn overhead_vs_raw(url: &str, schema: &str, store: &VectorStore, qs: &[Vec<f32>]) -> anyhow::Result<String> {
    let sql = format!(
        "SELECT id, title, content, source, metadata, key, created_at, updated_at, embedding <=> $1 AS distance \
         FROM \"{schema}\".\"docs\" ORDER BY embedding <=> $1 LIMIT $2"
    );
    let settings = "SET hnsw.ef_search = 100; SET ivfflat.probes = 10; SET hnsw.iterative_scan = off; \
                    SET ivfflat.iterative_scan = off";
    // One connection per baseline, as the SDK's searches have one of their own: a server
    // process that runs two of every four queries would stay warmer than one that runs one.
    let mut clients = Vec::new();
    for plan_mode in ["force_custom_plan", "auto", "force_custom_plan"] {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(&format!("{settings}; SET plan_cache_mode = {plan_mode}")).await?;
        clients.push(client);
    }
    let custom = clients[0].prepare(&sql).await?;
    let generic = clients[1].prepare(&sql).await?;
    let vector_type = custom.params()[0].clone();
    let opts = SearchOptions { ef_search: Some(100), ..SearchOptions::top(10) };
    let mut lat: [Vec<f64>; 4] = Default::default();
    // One warm-up round, then four measured ones: at 30 queries that is still 120 samples of each.
    for round in 0..5 {
        for (i, q) in qs.iter().enumerate() {
            let v = pgvector::Vector::from(q.clone());
            for j in 0..4 {
                let which = (i + j + round) % 4;
                let t = Instant::now();
                match which {
                    0 => drop(std::hint::black_box(store.search_by_vector(q, &opts).await?)),
                    1 => drop(std::hint::black_box(clients[0].query(&custom, &[&v, &10i64]).await?)),
                    2 => drop(std::hint::black_box(clients[1].query(&generic, &[&v, &10i64]).await?)),
                    _ => drop(std::hint::black_box(
                        clients[2]
                            .query_typed(
                                &sql,
                                &[(&v, vector_type.clone()), (&10i64, tokio_postgres::types::Type::INT8)],
                            )
                            .await?,
                    )),
                }
                // The first round warms every connection and statement.
                if round > 0 {
                    lat[which].push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
    }
    let [sdk, custom, generic, unnamed] = lat.map(|mut l| percentile(&mut l, 50.0));
    Ok(format!(
        "SDK vs raw SQL (HNSW, ef_search 100, uncached, interleaved in rotating order): SDK p50 {sdk:.3} ms; \
         the same statement prepared, same session settings: {custom:.3} ms (**{:.2}x**); prepared with the \
         server's default plan cache mode: {generic:.3} ms ({:.2}x); unnamed, parsed and planned per call: \
         {unnamed:.3} ms ({:.2}x)",
        sdk / custom,
        sdk / generic,
        sdk / unnamed
    ))
}

async fn cache_run(r: &mut Report, pg: Option<&str>, dims: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mk-report-cache-{}", std::process::id()));
    let schema = format!("mk_report_cache_{}", std::process::id());
    let mut b = VectorStore::builder().embedder(HashingEmbedder::new(dims)?);
    b = match pg {
        Some(url) => b.database_url(url).table(format!("{schema}.docs")),
        None => {
            std::fs::create_dir_all(&dir)?;
            b.db_path(dir.join("cache.db"))
        }
    };
    let (b, cache_kind) = match std::env::var("REDIS_URL") {
        Ok(url) => (b.cache(RedisCache::new(&url)?), "redis"),
        Err(_) => (b.cache(MemoryCache::default()), "memory"),
    };
    let store = b.build().await?;
    let words = ["shoes", "tent", "refund", "boots", "jacket", "shipping", "headphones", "lamp", "desk", "bike"];
    let corpus: Vec<NewDocument> = (0..2000)
        .map(|i| {
            NewDocument::new(
                format!("{} {}", words[i % 10], i),
                format!("{} for {} number {i}", words[i % 10], words[(i / 10) % 10]),
            )
        })
        .collect();
    store.batch(corpus).await?;
    let texts: Vec<String> =
        (0..1000).map(|i| format!("{} {} query {i}", words[i % 10], words[(i / 7) % 10])).collect();
    let mut sample = zipf_sampler(texts.len(), 1.0, 7);
    let (mut hit_ms, mut miss_ms) = (Vec::new(), Vec::new());
    let before = store.cache_stats();
    let opts = SearchOptions::top(10);
    for _ in 0..10_000 {
        let text = &texts[sample()];
        let h0 = store.cache_stats().hits;
        let t = Instant::now();
        store.search(text, &opts).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if store.cache_stats().hits > h0 {
            hit_ms.push(ms);
        } else {
            miss_ms.push(ms);
        }
    }
    let after = store.cache_stats();
    let searches = hit_ms.len() + miss_ms.len();
    r.line(format!(
        "## Cache run ({cache_kind} cache, {} storage)\n",
        if pg.is_some() { "PostgreSQL" } else { "embedded" }
    ));
    r.line("10,000 searches over 1,000 distinct texts drawn with Zipf(1.0), 2,000 documents.\n");
    r.line("| searches served from cache | cache hit rate (all lookups) | p50 hit ms | p50 miss ms | cache errors |");
    r.line("|---|---|---|---|---|");
    let lookups = (after.hits - before.hits) + (after.misses - before.misses);
    r.line(format!(
        "| {:.1}% | {:.1}% | {:.3} | {:.3} | {} |\n",
        100.0 * hit_ms.len() as f64 / searches as f64,
        100.0 * (after.hits - before.hits) as f64 / lookups.max(1) as f64,
        percentile(&mut hit_ms, 50.0),
        percentile(&mut miss_ms, 50.0),
        after.errors - before.errors
    ));
    drop(store);
    if pg.is_some() {
        let (client, conn) = tokio_postgres::connect(pg.unwrap_or_default(), tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
