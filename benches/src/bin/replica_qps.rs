//! Read throughput with the primary alone and with primary + one streaming replica, in one run
//! on the local topology (`scripts/topology.sh start`; its URLs from `topology.sh env`):
//!
//! ```text
//! eval "$(bash scripts/topology.sh start)"
//! cargo run --release -p marketking-benches --bin replica_qps -- --docs 20000 --seconds 20
//! ```
//!
//! Vector searches (k 10, HNSW) from `--clients` tasks, no result cache, the two setups
//! alternating `--rounds` times so drift on a shared machine hits both. On one machine the
//! replica shares the cores with the primary: this measures the routing's cost and the spread
//! of reads, not the capacity a second server would add.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use marketking_benches::{clustered, percentile, queries};
use marketking_core::{DocumentRef, IndexSpec, NoCache, SearchOptions, VectorStore};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    docs: usize,
    #[arg(long, default_value_t = 384)]
    dims: usize,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

async fn store(table: &str, dims: usize, replicas: &[String]) -> Result<VectorStore> {
    Ok(VectorStore::builder()
        .database_url(std::env::var("MK_TOPOLOGY_PRIMARY_URL").context("MK_TOPOLOGY_PRIMARY_URL (topology.sh env)")?)
        .read_replicas(replicas.to_vec())
        .table(table)
        .pool_size(16)
        .no_embedder("bench", dims)
        .cache(NoCache)
        .build()
        .await?)
}

/// Searches from `clients` tasks for `seconds`: (searches per second, p50 ms, p95 ms, errors).
async fn run(store: &VectorStore, qs: &Arc<Vec<Vec<f32>>>, clients: usize, seconds: u64) -> (f64, f64, f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (store, qs, stop, errors) = (store.clone(), qs.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            let opts = SearchOptions::top(10);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match store.search_ids_by_vector(&qs[i % qs.len()], &opts).await {
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += clients;
            }
            lat
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let qps = all.len() as f64 / started.elapsed().as_secs_f64();
    let p50 = percentile(&mut all, 50.0);
    let p95 = percentile(&mut all, 95.0);
    (qps, p50, p95, errors.load(Ordering::Relaxed))
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let replica = std::env::var("MK_TOPOLOGY_REPLICA_URL").context("MK_TOPOLOGY_REPLICA_URL (topology.sh env)")?;
    let table = format!("bench_replica_{}.docs", std::process::id());
    let loader = store(&table, a.dims, &[]).await?;
    let data = clustered(a.docs, a.dims, 50, 7);
    let titles: Vec<String> = (0..a.docs).map(|i| format!("doc {i}")).collect();
    for (chunk_t, chunk_v) in titles.chunks(2000).zip(data.chunks(2000)) {
        loader.insert_new(chunk_t.iter().zip(chunk_v).map(|(t, v)| DocumentRef::new(t, t, v))).await?;
    }
    loader.create_index(IndexSpec::default()).await?;
    let qs = Arc::new(queries(2000, a.dims, 50, 11));
    let alone = store(&table, a.dims, &[]).await?;
    let routed = store(&table, a.dims, &[replica]).await?;
    // Until the replica has replayed the load and the index.
    let start = Instant::now();
    while !routed.replication_stats().is_some_and(|r| r.replicas.iter().all(|x| x.in_rotation && x.lag_ms == Some(0))) {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "replica_qps: {} docs x {} dims, HNSW, k 10, {} clients, {} s per run, {} rounds, no result cache",
        a.docs, a.dims, a.clients, a.seconds, a.rounds
    );
    // Warm both servers' caches.
    run(&alone, &qs, a.clients, 2).await;
    run(&routed, &qs, a.clients, 2).await;
    let mut ratios = Vec::new();
    for round in 1..=a.rounds {
        let (q1, p50_1, p95_1, e1) = run(&alone, &qs, a.clients, a.seconds).await;
        let (q2, p50_2, p95_2, e2) = run(&routed, &qs, a.clients, a.seconds).await;
        let r = routed.replication_stats().unwrap_or_else(|| unreachable!());
        println!(
            "round {round}: primary alone {q1:.0}/s (p50 {p50_1:.2} ms, p95 {p95_1:.2} ms, {e1} errors); \
             primary + replica {q2:.0}/s (p50 {p50_2:.2} ms, p95 {p95_2:.2} ms, {e2} errors); ratio {:.2}; \
             reads so far: replica {}, primary {}",
            q2 / q1,
            r.replicas[0].reads,
            r.primary_reads
        );
        ratios.push(q2 / q1);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio (primary + replica / primary alone): {:.2}", ratios[ratios.len() / 2]);
    loader.close().await?;
    alone.close().await?;
    routed.close().await?;
    let (client, conn) =
        tokio_postgres::connect(&std::env::var("MK_TOPOLOGY_PRIMARY_URL")?, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP SCHEMA {} CASCADE", table.split('.').next().unwrap_or_default())).await?;
    Ok(())
}
