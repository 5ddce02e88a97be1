//! `report --quality DATASET_DIR`: search quality on a known-item dataset.
//!
//! Loads the corpus into fresh stores (the embedded store in a temporary folder; PostgreSQL in a
//! schema of its own, dropped afterwards, when `DATABASE_URL` is set), runs every query in every
//! search mode, exact and through an HNSW index, and prints recall@k, MRR@k and latency per
//! backend, index setting and mode. The embedder is the one `VectorStore::builder().from_env()`
//! picks. Writes a JSON result file under `target/mk-bench/` that `--compare` reads back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use marketking_benches::percentile;
use marketking_core::{IndexSpec, SearchMode, SearchOptions, VectorStore};
use serde::{Deserialize, Serialize};

mod backend;
mod dataset;
mod metrics;
mod results;

use backend::BackendKind;
use results::{Agreement, BackendRun, QualityRun, Row};

/// Search quality (recall@k, MRR@k) and latency per search mode and backend on a known-item
/// dataset, e.g. the one `bash scripts/build-devset.sh` writes to target/devset/docstrings.
#[derive(Debug, Parser)]
#[command(name = "report --quality")]
struct Args {
    /// Dataset folder with corpus.jsonl and queries.jsonl.
    #[arg(long = "quality", value_name = "DATASET_DIR")]
    dataset: PathBuf,
    /// Backends to measure (default: embedded, and postgres when DATABASE_URL is set).
    #[arg(long, value_enum, value_delimiter = ',')]
    backend: Vec<BackendKind>,
    /// HNSW ef_search values to measure on PostgreSQL, after building an index with the
    /// default parameters (m 16, ef_construction 64).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    ef_search: Vec<u32>,
    /// Exact search only: build no HNSW index.
    #[arg(long)]
    no_hnsw: bool,
    /// What the HNSW index stores of each vector: none, half or binary (re-ranked exactly).
    #[arg(long, default_value = "none")]
    quantization: marketking_core::Quantization,
    /// Candidates per result taken from a quantized index (default the SDK's: 4 for binary).
    #[arg(long)]
    oversample: Option<u32>,
    /// Use only the first N queries (the file's order is a seeded random sample).
    #[arg(long, value_name = "N")]
    queries: Option<usize>,
    /// Load at most N documents: every document the queries expect, then others in file order.
    #[arg(long, value_name = "N")]
    docs: Option<usize>,
    /// Scale test: load the corpus N times (copies keyed `KEY~2`, `KEY~3`, ...; a copy of an
    /// expected document counts as found). For latency at a size the set does not have; the
    /// copies tie with their originals, so recall and MRR are not comparable with N = 1.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,
    /// Results per query, and the k of recall@k and MRR@k.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Fail (exit 1) when any measured recall@k is below this: a sanity floor for CI.
    #[arg(long, value_name = "RECALL")]
    min_recall: Option<f64>,
    /// Write the JSON result here (default `target/mk-bench/quality-<dataset sha>-<time>.json`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Print a comparison with an earlier JSON result file.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// Keep the corpus vectors in this file: read when it holds vectors of the same embedder
    /// and dataset, written after the first backend embedded them. A local model takes minutes
    /// to embed the whole set; with the file a rerun (other fusion settings, say) does not.
    #[arg(long, value_name = "FILE")]
    vectors: Option<PathBuf>,
    /// Leave the loaded stores (the embedded store's folder, the PostgreSQL schema) in place
    /// and print where they are, to study plans or rankings afterwards.
    #[arg(long)]
    keep: bool,
    /// Hybrid mode: RRF's k (default the SDK's, 60).
    #[arg(long)]
    rrf_k: Option<u32>,
    /// Hybrid mode: weight of the vector leg (default the SDK's, 1).
    #[arg(long)]
    vector_weight: Option<f32>,
    /// Hybrid mode: weight of the full-text leg (default the SDK's, 1).
    #[arg(long)]
    text_weight: Option<f32>,
    /// Hybrid mode: candidates per leg (default the SDK's, max(4k, 40)).
    #[arg(long)]
    candidates: Option<usize>,
}

/// A search mode of the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Vector,
    Text,
    Hybrid,
}

const MODES: [Mode; 3] = [Mode::Vector, Mode::Text, Mode::Hybrid];

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Vector => "vector",
            Mode::Text => "text",
            Mode::Hybrid => "hybrid",
        }
    }

    /// The search options of this mode over `base`, or why the SDK cannot search this way.
    fn options(self, base: &SearchOptions) -> Result<SearchOptions, &'static str> {
        Ok(base.clone().mode(match self {
            Mode::Vector => SearchMode::Vector,
            Mode::Text => SearchMode::Text,
            Mode::Hybrid => SearchMode::Hybrid,
        }))
    }
}

/// Exact search, or approximate search through an HNSW index at one ef_search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexSetting {
    Exact,
    Hnsw { ef_search: u32 },
}

/// Runs the harness. Called from `main` before any async runtime exists.
pub(crate) fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    // The store builder reads DATABASE_URL itself, and the embedded run must not see it: take it
    // out of the environment here, while this is the only thread (as the CLI does for --db-path).
    let database_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty());
    std::env::remove_var("DATABASE_URL");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args, database_url))
}

async fn run(args: Args, database_url: Option<String>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=marketking_core::MAX_K).contains(&args.k),
        "-k must be between 1 and {}",
        marketking_core::MAX_K
    );
    let mut data = dataset::load(&args.dataset, args.queries, args.docs)?;
    if args.repeat > 1 {
        data.repeat(args.repeat as usize);
    }
    anyhow::ensure!(!data.queries.is_empty(), "{} has no queries", args.dataset.display());
    let backends = match (args.backend.is_empty(), &database_url) {
        (false, _) => args.backend.clone(),
        (true, Some(_)) => vec![BackendKind::Embedded, BackendKind::Postgres],
        (true, None) => vec![BackendKind::Embedded],
    };
    anyhow::ensure!(
        database_url.is_some() || !backends.contains(&BackendKind::Postgres),
        "--backend postgres needs DATABASE_URL"
    );
    let info = &data.info;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# MarketKing search quality: {}\n", info.dir.display());
    println!(
        "dataset sha256 {}: {} of {} documents, {} of {} queries; titles: {}; k = {}; {cores} cores. \
         A random ranking would find {:.4} of the answers.\n",
        info.sha256,
        info.documents,
        info.documents_in_files,
        info.queries,
        info.queries_in_files,
        info.title.as_deref().unwrap_or("(no manifest)"),
        args.k,
        args.k as f64 / info.documents as f64
    );
    let expected: Vec<Vec<String>> = data.queries.iter().map(|q| q.expected.clone()).collect();
    let mut vectors: Option<HashMap<String, Vec<f32>>> = None;
    let mut vectors_from_file = false;
    let mut model: Option<(String, usize)> = None;
    let (mut backend_runs, mut rows) = (Vec::new(), Vec::new());
    let mut exact_results: HashMap<BackendKind, HashMap<Mode, Vec<Vec<String>>>> = HashMap::new();
    for kind in backends {
        let opened = backend::open(kind, database_url.as_deref()).await?;
        let this_model = (opened.store.model().to_string(), opened.store.dimensions());
        match &model {
            None => println!("embedder: {} ({} dimensions)\n", this_model.0, this_model.1),
            // The vectors of the first backend are reused: both must have the same embedder.
            Some(m) if *m != this_model => {
                opened.close(false).await;
                anyhow::bail!("the {} got embedder {this_model:?}, the first backend {m:?}", kind.label());
            }
            Some(_) => {}
        }
        if let (Some(path), None) = (&args.vectors, &vectors) {
            vectors = backend::read_vector_file(path, &info.sha256, &this_model.0, this_model.1)?;
            vectors_from_file = vectors.is_some();
            if vectors_from_file {
                println!("vectors: read from {}\n", path.display());
            }
        }
        model = Some(this_model.clone());
        let server = match (kind, &database_url) {
            // The latency report's own description of the server (root of this binary).
            (BackendKind::Postgres, Some(url)) => Some(super::server_info(url).await?),
            _ => None,
        };
        let outcome = measure_backend(&opened.store, kind, server, &data, &expected, &mut vectors, &args).await;
        opened.close(args.keep).await;
        let (backend_run, mut backend_rows, exact) = outcome?;
        if let (Some(path), Some(v), false) = (&args.vectors, &vectors, vectors_from_file) {
            backend::write_vector_file(path, &info.sha256, &this_model.0, this_model.1, v)?;
            vectors_from_file = true;
        }
        backend_runs.push(backend_run);
        rows.append(&mut backend_rows);
        exact_results.insert(kind, exact);
    }
    let mut by_mode = Vec::new();
    if let (Some(e), Some(p)) = (exact_results.get(&BackendKind::Embedded), exact_results.get(&BackendKind::Postgres)) {
        for mode in MODES {
            if let (Some(e), Some(p)) = (e.get(&mode), p.get(&mode)) {
                let (same_top_k, overlap) = metrics::agreement(e, p, args.k);
                println!(
                    "Embedded store against PostgreSQL, exact {} search: the same top {} for {:.1}% of queries \
                     (mean overlap {:.3}).",
                    mode.label(),
                    args.k,
                    100.0 * same_top_k,
                    overlap
                );
                by_mode.push((mode.label().to_string(), Agreement { same_top_k, overlap }));
            }
        }
        println!();
    }
    let cross = by_mode.iter().find(|(m, _)| m == "vector").map(|(_, a)| *a);
    let (model, dimensions) = model.unwrap_or_default();
    let run = QualityRun {
        format: results::FORMAT,
        unix_time: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        git: results::git_describe(),
        cores,
        k: args.k,
        model,
        dimensions,
        dataset: data.info.clone(),
        backends: backend_runs,
        rows,
        embedded_vs_postgres_exact: cross,
        embedded_vs_postgres_by_mode: by_mode,
    };
    if let Some(path) = &args.compare {
        for line in results::compare(&run, path)? {
            println!("{line}");
        }
        println!();
    }
    println!("result file: {}", results::write(&run, args.json.as_deref())?.display());
    Ok(check_floor(&run, args.min_recall))
}

/// The exit code: failure when a measured recall is below the floor.
fn check_floor(run: &QualityRun, floor: Option<f64>) -> ExitCode {
    let Some(floor) = floor else { return ExitCode::SUCCESS };
    let low: Vec<&Row> = run.rows.iter().filter(|r| r.recall.is_some_and(|x| x.is_nan() || x < floor)).collect();
    for r in &low {
        eprintln!(
            "recall@{} {:.3} < floor {floor}: {}, {}, {}",
            run.k,
            r.recall.unwrap_or(f64::NAN),
            r.backend.label(),
            r.setting(),
            r.mode.label()
        );
    }
    let measured = run.rows.iter().filter(|r| r.recall.is_some()).count();
    if low.is_empty() && measured > 0 {
        println!("sanity floor: every recall@{} >= {floor} ({measured} measured)", run.k);
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

type BackendOutcome = (BackendRun, Vec<Row>, HashMap<Mode, Vec<Vec<String>>>);

/// Loads the corpus into `store` and measures every index setting and mode. Returns the
/// backend's figures, its rows, and the exact vector-mode results (for the cross-backend check).
async fn measure_backend(
    store: &VectorStore,
    kind: BackendKind,
    server: Option<String>,
    data: &dataset::Dataset,
    expected: &[Vec<String>],
    vectors: &mut Option<HashMap<String, Vec<f32>>>,
    args: &Args,
) -> anyhow::Result<BackendOutcome> {
    println!("## {}\n", kind.label());
    if let Some(s) = &server {
        println!("server: {s}\n");
    }
    let loaded = backend::load(store, &data.docs, vectors.as_ref()).await?;
    println!(
        "loaded {} documents in {:.1} s ({:.0} docs/s, {})\n",
        data.docs.len(),
        loaded.seconds,
        data.docs.len() as f64 / loaded.seconds,
        if loaded.embedded_here { "embedding included" } else { "vectors from the first backend" }
    );
    if vectors.is_none() {
        *vectors = Some(backend::read_vectors(store).await?);
    }
    let mut settings = vec![IndexSetting::Exact];
    let mut hnsw_build_seconds = None;
    let mut index_note = None;
    match kind {
        BackendKind::Embedded if args.no_hnsw => index_note = Some("hnsw: not measured (--no-hnsw)".to_string()),
        BackendKind::Embedded if args.quantization != marketking_core::Quantization::None => {
            index_note =
                Some("hnsw: the embedded store's graph has no quantized forms (it works on its int8 codes)".into())
        }
        BackendKind::Embedded => {
            settings.extend(args.ef_search.iter().map(|&ef_search| IndexSetting::Hnsw { ef_search }))
        }
        BackendKind::Postgres if args.no_hnsw => index_note = Some("hnsw: not measured (--no-hnsw)".to_string()),
        BackendKind::Postgres => {
            settings.extend(args.ef_search.iter().map(|&ef_search| IndexSetting::Hnsw { ef_search }))
        }
    }
    println!(
        "| index | mode | recall@{k} | MRR@{k} | p50 ms | p95 ms | same top {k} as exact | overlap with exact |",
        k = args.k
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows: Vec<Row> = Vec::new();
    let mut exact: HashMap<Mode, Vec<Vec<String>>> = HashMap::new();
    let probe = store.embedder().embed_one(&data.queries[0].query).await?;
    let hnsw_label = match (args.quantization, args.oversample) {
        (marketking_core::Quantization::None, _) => "hnsw".to_string(),
        (q, Some(o)) => format!("hnsw {q} x{o}"),
        (q, None) => format!("hnsw {q} x{}", q.default_oversample()),
    };
    for setting in settings {
        let (index, ef_search) = match setting {
            IndexSetting::Exact => ("exact", None),
            IndexSetting::Hnsw { ef_search } => (hnsw_label.as_str(), Some(ef_search)),
        };
        if matches!(setting, IndexSetting::Hnsw { .. }) && hnsw_build_seconds.is_none() {
            let t = Instant::now();
            store.create_index(IndexSpec { quantization: args.quantization, ..Default::default() }).await?;
            hnsw_build_seconds = Some(t.elapsed().as_secs_f64());
            store.analyze().await?;
        }
        let mut base = SearchOptions { ef_search, oversample: args.oversample, ..SearchOptions::top(args.k) };
        if let Some(k) = args.rrf_k {
            base.fusion.rrf_k = k;
        }
        if let Some(w) = args.vector_weight {
            base.fusion.vector_weight = w;
        }
        if let Some(w) = args.text_weight {
            base.fusion.text_weight = w;
        }
        base.fusion.candidates = args.candidates.or(base.fusion.candidates);
        let plan_uses_index = match kind {
            BackendKind::Postgres => Some(store.explain_search(&probe, &base).await?.contains("Index Scan")),
            BackendKind::Embedded => Some(store.explain_search(&probe, &base).await?.starts_with("HNSW")),
        };
        for mode in MODES {
            let mut row = Row {
                backend: kind,
                index: index.to_string(),
                ef_search,
                mode,
                note: None,
                recall: None,
                mrr: None,
                p50_ms: None,
                p95_ms: None,
                mean_ms: None,
                plan_uses_index,
                vs_exact: None,
                ranks: Vec::new(),
            };
            let opts = match mode.options(&base) {
                Ok(opts) => opts,
                Err(why) => {
                    println!("| {} | {} | not available: {why} | | | | | |", row.setting(), mode.label());
                    row.note = Some(why.to_string());
                    rows.push(row);
                    continue;
                }
            };
            let (results, mut lat) = search_all(store, &data.queries, &opts).await?;
            row.recall = Some(metrics::recall_at(&results, expected, args.k));
            row.mrr = Some(metrics::mrr_at(&results, expected, args.k));
            row.mean_ms = Some(lat.iter().sum::<f64>() / lat.len() as f64);
            row.p50_ms = Some(percentile(&mut lat, 50.0));
            row.p95_ms = Some(percentile(&mut lat, 95.0));
            row.ranks = results
                .iter()
                .zip(expected)
                .map(|(got, want)| metrics::first_hit(got, want, args.k).unwrap_or(0) as u32)
                .collect();
            match setting {
                IndexSetting::Exact => {
                    exact.insert(mode, results);
                }
                IndexSetting::Hnsw { .. } => {
                    if let Some(e) = exact.get(&mode) {
                        let (same_top_k, overlap) = metrics::agreement(e, &results, args.k);
                        row.vs_exact = Some(Agreement { same_top_k, overlap });
                    }
                }
            }
            println!(
                "| {} | {} | {:.3} | {:.3} | {:.2} | {:.2} | {} | {} |",
                row.setting(),
                mode.label(),
                row.recall.unwrap_or(f64::NAN),
                row.mrr.unwrap_or(f64::NAN),
                row.p50_ms.unwrap_or(f64::NAN),
                row.p95_ms.unwrap_or(f64::NAN),
                row.vs_exact.map_or("".into(), |a| format!("{:.1}%", 100.0 * a.same_top_k)),
                row.vs_exact.map_or("".into(), |a| format!("{:.3}", a.overlap)),
            );
            rows.push(row);
        }
    }
    println!();
    if let Some(note) = index_note {
        println!("{note}\n");
    }
    if let Some(s) = hnsw_build_seconds {
        let uses = rows.iter().find(|r| r.index == "hnsw").and_then(|r| r.plan_uses_index);
        println!(
            "HNSW (m 16, ef_construction 64) built in {s:.1} s; the search plan {} the index.\n",
            if uses == Some(true) { "uses" } else { "does NOT use" }
        );
    }
    let run = BackendRun {
        backend: kind,
        load_seconds: loaded.seconds,
        embedded_by_this_backend: loaded.embedded_here,
        hnsw_build_seconds,
        server,
    };
    Ok((run, rows, exact))
}

/// Runs every query once untimed for the first five (warm-up), then all of them timed, one at
/// a time. Returns each query's result keys and its latency in ms (query embedding included).
async fn search_all(
    store: &VectorStore,
    queries: &[dataset::Query],
    opts: &SearchOptions,
) -> anyhow::Result<(Vec<Vec<String>>, Vec<f64>)> {
    for q in queries.iter().take(5) {
        store.search(&q.query, opts).await?;
    }
    let (mut results, mut lat) = (Vec::with_capacity(queries.len()), Vec::with_capacity(queries.len()));
    for q in queries {
        let t = Instant::now();
        let hits = store.search(&q.query, opts).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        // A copy made by --repeat stands for its original.
        results.push(
            hits.into_iter()
                .filter_map(|h| h.document.key)
                .map(|k| match k.split_once('~') {
                    Some((base, _)) => base.to_string(),
                    None => k,
                })
                .collect(),
        );
    }
    Ok((results, lat))
}
