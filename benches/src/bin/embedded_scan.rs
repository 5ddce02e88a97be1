//! Embedded store search: latency, recall against exact search and resident memory of one
//! process that opens a store file and searches it. Written against the public API only, so the
//! same file builds against an older release of the core: `scripts/bench-embedded.sh` runs it
//! for this tree and for a baseline commit on the same file, in turns.
//!
//! `embedded_scan --create --rows N --dims D DIR` writes DIR/store.db (clustered synthetic
//! vectors), DIR/queries.json and the exact top 10 of each query; without `--create` it opens
//! DIR/store.db, searches every query `--rounds` times and prints one JSON line.
//!
//! `--index off` drops the store's vector index first (searches scan), `--index create` builds
//! one (`--m`, `--ef-construction`; timed as `build_s`), and `--index wait` waits for the index
//! the store loads or builds in the background after an open (a recorded or automatic one) and
//! reports `ready_s`, seconds from the open until it serves searches.
//! `--ef-search` sets the graph's search breadth.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use marketking_benches::{clustered, exact_top_k, percentile, queries};
use marketking_core::{IndexKind, IndexSpec, NewDocument, SearchOptions, VectorStore};

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.last().context("the store folder")?);
    let rows: usize = flag(&args, "--rows").map_or(Ok(100_000), |v| v.parse())?;
    let dims: usize = flag(&args, "--dims").map_or(Ok(1536), |v| v.parse())?;
    let nq: usize = flag(&args, "--queries").map_or(Ok(200), |v| v.parse())?;
    let rounds: usize = flag(&args, "--rounds").map_or(Ok(3), |v| v.parse())?;
    let oversample: Option<u32> = flag(&args, "--oversample").map(|v| v.parse()).transpose()?;
    let db = dir.join("store.db");
    if args.iter().any(|a| a == "--create") {
        std::fs::create_dir_all(&dir)?;
        let data = clustered(rows, dims, 100, 7);
        let qs = queries(nq, dims, 100, 7);
        let truth: Vec<Vec<i64>> =
            qs.iter().map(|q| exact_top_k(&data, q, 10).into_iter().map(|i| i as i64 + 1).collect()).collect();
        let store = VectorStore::builder().db_path(&db).no_embedder("bench-vectors", dims).build().await?;
        for (c, chunk) in data.chunks(10_000).enumerate() {
            let docs = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| NewDocument::new(format!("doc {}", c * 10_000 + i), "body").with_embedding(v.clone()))
                .collect();
            store.batch(docs).await?;
        }
        std::fs::write(
            dir.join("queries.json"),
            serde_json::to_vec(&serde_json::json!({"queries": qs, "truth": truth}))?,
        )?;
        eprintln!("wrote {} ({rows} x {dims}) and {nq} queries with their exact top 10", db.display());
        return Ok(());
    }
    let q: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("queries.json"))?)?;
    let qs: Vec<Vec<f32>> = serde_json::from_value(q["queries"].clone())?;
    let truth: Vec<Vec<i64>> = serde_json::from_value(q["truth"].clone())?;
    let rss_before = rss_mb();
    let t = Instant::now();
    let store =
        VectorStore::builder().db_path(&db).no_embedder("bench-vectors", dims).cache_results(false).build().await?;
    let open_s = t.elapsed().as_secs_f64();
    let mut opts = SearchOptions::top(10);
    opts.oversample = oversample;
    opts.ef_search = flag(&args, "--ef-search").map(|v| v.parse()).transpose()?;
    let mut build_s = None;
    match flag(&args, "--index").as_deref() {
        Some("off") => {
            store.drop_index().await?;
        }
        Some("create") => {
            let m = flag(&args, "--m").map(|v| v.parse()).transpose()?;
            let efc = flag(&args, "--ef-construction").map(|v| v.parse()).transpose()?;
            let t = Instant::now();
            store.create_index(IndexSpec { kind: IndexKind::hnsw(m, efc), ..IndexSpec::default() }).await?;
            build_s = Some(t.elapsed().as_secs_f64());
        }
        Some("wait") => {}
        Some(other) => anyhow::bail!("--index takes off, create or wait, not {other}"),
        None => {}
    }
    // A recorded (or automatic) index loads or builds in the background after the open.
    let mut ready_s = None;
    if flag(&args, "--index").as_deref() == Some("wait") {
        for _ in 0..12_000 {
            if store.explain_search(&qs[0], &opts).await?.starts_with("HNSW") {
                ready_s = Some(t.elapsed().as_secs_f64());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let plan = store.explain_search(&qs[0], &opts).await?;
    let mut lat = Vec::new();
    let mut found = 0usize;
    for round in 0..=rounds {
        for (v, want) in qs.iter().zip(&truth) {
            let t = Instant::now();
            let hits = store.search_by_vector(v, &opts).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            // Round 0 warms the caches and is not counted.
            if round > 0 {
                lat.push(ms);
                if round == 1 {
                    found += hits.iter().filter(|h| want.contains(&h.document.id)).count();
                }
            }
        }
    }
    let p50 = percentile(&mut lat.clone(), 50.0);
    let p95 = percentile(&mut lat, 95.0);
    println!(
        "{}",
        serde_json::json!({
            "open_s": open_s,
            "build_s": build_s,
            "ready_s": ready_s,
            "plan": plan,
            "p50_ms": p50,
            "p95_ms": p95,
            "recall_at_10": found as f64 / (10 * qs.len()) as f64,
            "rss_mb": rss_mb(),
            "rss_before_open_mb": rss_before,
        })
    );
    Ok(())
}
