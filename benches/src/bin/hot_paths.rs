//! The hot paths of issue 15 measured against raw statements in one run (see
//! `scripts/bench-hot-paths.sh`, which sets up the Python harness):
//!
//! - ingest of precomputed vectors into an unindexed table: `insert_new` (borrowed rows, one
//!   binary COPY) and `batch` (owned `NewDocument`s, the general path) against raw psycopg
//!   `COPY ... FORMAT BINARY` from numpy arrays (pgvector-python's own bulk-load recipe), each
//!   into a fresh table made by the store (the same DDL: `STORAGE PLAIN`, the full-text trigger),
//!   in rotating order per round; wall time and the client process's CPU time;
//! - searches through an HNSW index: `search_ids_by_vector` against the raw
//!   `SELECT id, embedding <=> $1 ... LIMIT k`, and `search_by_vector` against the raw
//!   full-row statement, interleaved per query in rotating order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use marketking_benches::{clustered, percentile, queries};
use marketking_core::{DocumentRef, IndexKind, IndexSpec, NewDocument, SearchOptions, VectorStore};

#[derive(Parser)]
struct Args {
    /// Rows per ingest.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Dimensions.
    #[arg(long, default_value_t = 1536)]
    dims: usize,
    /// Ingest rounds (each runs every variant once, in rotating order).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Search queries (each run once per variant per measured round).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// The Python with psycopg, numpy and pgvector.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Skip the search part (no index build).
    #[arg(long)]
    no_search: bool,
    /// Run only these ingest variants (0 insert_new, 1 batch, 2 raw psycopg COPY, 3 raw
    /// tokio-postgres COPY), e.g. `0,2`.
    #[arg(long, value_delimiter = ',', default_values_t = [0usize, 1, 2])]
    variants: Vec<usize>,
}

/// This process's CPU time (user + system, every thread) in seconds, from /proc (USER_HZ 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU time (user + system) of every `postgres` process on this machine, in seconds: the
/// server's share of a run (its backends, WAL writer and checkpointer).
fn server_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(postgres)"))
        .map(|stat| {
            let rest = stat.rsplit_once(')').map(|(_, r)| r.to_string()).unwrap_or_default();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / 100.0
        })
        .sum()
}

#[derive(Default)]
struct Runs {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Runs {
    fn push(&mut self, wall: f64, cpu: f64) {
        self.wall.push(wall);
        self.cpu.push(cpu);
    }
    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        percentile(&mut v, 50.0)
    }
}

async fn open(url: &str, table: &str, dims: usize) -> anyhow::Result<VectorStore> {
    Ok(VectorStore::builder()
        .database_url(url)
        .table(table)
        .no_embedder("bench-vectors", dims)
        .cache_results(false)
        .build()
        .await?)
}

async fn drop_schema(client: &tokio_postgres::Client, schema: &str) -> anyhow::Result<()> {
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await?;
    Ok(())
}

fn vectors_file(data: &[Vec<f32>], rows: usize, dims: usize) -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mk-bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("hot-{rows}x{dims}.f32"));
    let mut bytes = Vec::with_capacity(rows * dims * 4);
    for v in data {
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(&path, bytes)?;
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL must point at PostgreSQL with pgvector")?;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let data = clustered(a.rows, a.dims, 100, 42);
    let file = vectors_file(&data, a.rows, a.dims)?;
    let titles: Vec<String> = (0..a.rows).map(|i| format!("doc {i}")).collect();
    println!("# Hot paths: {} rows x {} dims, {} rounds", a.rows, a.dims, a.rounds);
    println!();
    println!("| round | variant | wall s | docs/s | client CPU s | server CPU s |");
    println!("|---|---|---|---|---|---|");
    let names = ["insert_new (borrowed)", "batch (owned)", "raw psycopg COPY", "raw tokio-postgres COPY"];
    let mut runs: [Runs; 4] = Default::default();
    let pid = std::process::id();
    for round in 0..a.rounds {
        for j in 0..4 {
            let which = (round + j) % 4;
            if !a.variants.contains(&which) {
                continue;
            }
            let schema = format!("mk_hot_{pid}_{round}_{which}");
            let table = format!("{schema}.docs");
            drop_schema(&client, &schema).await?;
            let store = open(&url, &table, a.dims).await?;
            let server = server_cpu_seconds();
            let mut raw_server: Option<f64> = None;
            let (wall, cpu) = match which {
                0 => {
                    let (t, c) = (Instant::now(), cpu_seconds());
                    let rows = titles.iter().zip(&data).map(|(title, v)| DocumentRef::new(title, "body", v));
                    let r = store.insert_new(rows).await?;
                    anyhow::ensure!(r.created == a.rows);
                    (t.elapsed().as_secs_f64(), cpu_seconds() - c)
                }
                1 => {
                    let (t, c) = (Instant::now(), cpu_seconds());
                    // What a caller of `batch` does: owned documents, each with its own vector.
                    let docs: Vec<NewDocument> = titles
                        .iter()
                        .zip(&data)
                        .map(|(title, v)| NewDocument::new(title.as_str(), "body").with_embedding(v.clone()))
                        .collect();
                    let r = store.batch(docs).await?;
                    anyhow::ensure!(r.created == a.rows);
                    (t.elapsed().as_secs_f64(), cpu_seconds() - c)
                }
                3 => {
                    // Diagnostic: tokio-postgres' own BinaryCopyInWriter, three columns.
                    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                    tokio::spawn(conn);
                    let (t, cpu0) = (Instant::now(), cpu_seconds());
                    let ty = c.prepare(&format!("SELECT embedding FROM {table} LIMIT 0")).await?.columns()[0]
                        .type_()
                        .clone();
                    let sink = c
                        .copy_in(&format!("COPY {table} (title, content, embedding) FROM STDIN (FORMAT binary)"))
                        .await?;
                    let w = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
                        sink,
                        &[tokio_postgres::types::Type::VARCHAR, tokio_postgres::types::Type::TEXT, ty],
                    );
                    futures_util::pin_mut!(w);
                    for (title, v) in titles.iter().zip(&data) {
                        let v = pgvector::Vector::from(v.clone());
                        w.as_mut().write(&[title, &"body", &v]).await?;
                    }
                    w.finish().await?;
                    (t.elapsed().as_secs_f64(), cpu_seconds() - cpu0)
                }
                _ => {
                    let out = Command::new(&a.python)
                        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_copy.py"))
                        .args([&url, &format!("\"{schema}\".\"docs\""), &file.display().to_string()])
                        .args([a.rows.to_string(), a.dims.to_string()])
                        .output()?;
                    anyhow::ensure!(out.status.success(), "bench_copy.py: {}", String::from_utf8_lossy(&out.stderr));
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                    raw_server = v["server_cpu_s"].as_f64();
                    (v["wall_s"].as_f64().unwrap_or(f64::NAN), v["cpu_s"].as_f64().unwrap_or(f64::NAN))
                }
            };
            // Every postgres process's CPU over the run (WAL writer, checkpointer, autovacuum and
            // the backends); the raw harness's backend exited before this reading, so its own
            // measurement of it is added.
            let server = server_cpu_seconds() - server + raw_server.take().unwrap_or(0.0);
            let n: i64 = client.query_one(&format!("SELECT count(*) FROM \"{schema}\".docs"), &[]).await?.get(0);
            anyhow::ensure!(n as usize == a.rows, "{} wrote {n} rows", names[which]);
            store.close().await?;
            println!(
                "| {round} | {} | {wall:.2} | {:.0} | {cpu:.2} | {server:.2} |",
                names[which],
                a.rows as f64 / wall
            );
            runs[which].push(wall, cpu);
            // The last round's insert_new table stays for the search part.
            if !(round + 1 == a.rounds && which == 0 && !a.no_search) {
                drop_schema(&client, &schema).await?;
            }
        }
    }
    let raw = Runs::median(&runs[2].wall);
    println!();
    println!("| variant | median wall s | docs/s | speed vs raw COPY | median client CPU s |");
    println!("|---|---|---|---|---|");
    for (name, r) in names.iter().zip(&runs) {
        let w = Runs::median(&r.wall);
        println!("| {name} | {w:.2} | {:.0} | **{:.2}x** | {:.2} |", a.rows as f64 / w, raw / w, Runs::median(&r.cpu));
    }
    if !a.no_search {
        search(&a, &url, &format!("mk_hot_{pid}_{}_0", a.rounds - 1)).await?;
        drop_schema(&client, &format!("mk_hot_{pid}_{}_0", a.rounds - 1)).await?;
    }
    Ok(())
}

/// Ids-only and full searches: the SDK against the raw statements, interleaved.
async fn search(a: &Args, url: &str, schema: &str) -> anyhow::Result<()> {
    let store = open(url, &format!("{schema}.docs"), a.dims).await?;
    let t = Instant::now();
    store.create_index(IndexSpec { kind: IndexKind::hnsw(None, None), ..Default::default() }).await?;
    println!();
    println!("HNSW index (m 16, ef_construction 64) built in {:.1} s", t.elapsed().as_secs_f64());
    let qs = queries(a.queries, a.dims, 100, 42);
    let t = format!("\"{schema}\".\"docs\"");
    let ids_sql = format!("SELECT id, embedding <=> $1 AS distance FROM {t} ORDER BY embedding <=> $1 LIMIT $2");
    let full_sql = format!(
        "SELECT id, title, content, source, metadata, key, created_at, updated_at, embedding <=> $1 AS distance \
         FROM {t} ORDER BY embedding <=> $1 LIMIT $2"
    );
    let settings = "SET hnsw.ef_search = 100; SET ivfflat.probes = 10; SET hnsw.iterative_scan = off; \
                    SET ivfflat.iterative_scan = off; SET jit = off; SET plan_cache_mode = force_custom_plan";
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client.batch_execute(settings).await?;
        clients.push(client);
    }
    let raw_ids = clients[0].prepare(&ids_sql).await?;
    let raw_full = clients[1].prepare(&full_sql).await?;
    let opts = SearchOptions { ef_search: Some(100), ..SearchOptions::top(10) };
    let mut lat: [Vec<f64>; 4] = Default::default();
    for round in 0..5 {
        for (i, q) in qs.iter().enumerate() {
            let v = pgvector::Vector::from(q.clone());
            for j in 0..4 {
                let which = (i + j + round) % 4;
                let t = Instant::now();
                match which {
                    0 => drop(std::hint::black_box(store.search_ids_by_vector(q, &opts).await?)),
                    1 => drop(std::hint::black_box(clients[0].query(&raw_ids, &[&v, &10i64]).await?)),
                    2 => drop(std::hint::black_box(store.search_by_vector(q, &opts).await?)),
                    _ => drop(std::hint::black_box(clients[1].query(&raw_full, &[&v, &10i64]).await?)),
                }
                if round > 0 {
                    lat[which].push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
    }
    let [sdk_ids, raw_ids, sdk_full, raw_full] = lat.map(|mut l| percentile(&mut l, 50.0));
    println!();
    println!("| search (HNSW, ef_search 100, k 10, uncached) | SDK p50 ms | raw p50 ms | SDK / raw |");
    println!("|---|---|---|---|");
    println!("| ids and scores only | {sdk_ids:.3} | {raw_ids:.3} | **{:.3}x** |", sdk_ids / raw_ids);
    println!("| full documents | {sdk_full:.3} | {raw_full:.3} | {:.3}x |", sdk_full / raw_full);
    println!(
        "\nids-only against full rows: SDK {:.3}x, raw {:.3}x of the full search's p50",
        sdk_ids / sdk_full,
        raw_ids / raw_full
    );
    store.close().await?;
    Ok(())
}
