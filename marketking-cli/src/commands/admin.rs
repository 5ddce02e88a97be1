//! `stats`, `index ...`, `migrate`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use marketking_core::{IndexInfo, IndexKind, IndexSpec, Quantization, TuneOptions, VectorStore};

use crate::args::{IndexCommand, IndexKindArg, TuneArgs};
use crate::output::{human_bytes, print_json, print_stats};

pub(super) async fn stats(store: &VectorStore, out: &mut impl Write, json: bool) -> anyhow::Result<ExitCode> {
    let stats = store.stats().await?;
    if json {
        print_json(out, &stats)?;
    } else {
        print_stats(out, &stats)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(info: &IndexInfo) -> String {
    let kind = match info.kind {
        IndexKind::Hnsw { m, ef_construction } => format!("hnsw (m={m}, ef_construction={ef_construction})"),
        IndexKind::IvfFlat { lists } => format!("ivfflat (lists={})", lists.map_or("auto".into(), |l| l.to_string())),
        _ => "unknown kind".to_string(),
    };
    let quantization = match info.quantization {
        Quantization::None => String::new(),
        q => format!(", quantization {q}"),
    };
    format!("{} {kind}{quantization}, {}", info.name, human_bytes(info.bytes))
}

/// Turns the clap flags into an index kind; wrong combinations are usage errors (exit 2).
fn index_kind(kind: IndexKindArg, m: Option<u32>, ef: Option<u32>, lists: Option<u32>) -> IndexKind {
    fn usage(msg: &str) -> ! {
        use clap::CommandFactory;
        crate::args::Cli::command().error(clap::error::ErrorKind::ArgumentConflict, msg).exit()
    }
    match kind {
        IndexKindArg::Hnsw => {
            if lists.is_some() {
                usage("--lists applies to --kind ivfflat only");
            }
            IndexKind::hnsw(m, ef)
        }
        IndexKindArg::Ivfflat => {
            if m.is_some() || ef.is_some() {
                usage("--m and --ef-construction apply to --kind hnsw only");
            }
            IndexKind::IvfFlat { lists }
        }
    }
}

pub(super) async fn index(store: &VectorStore, out: &mut impl Write, cmd: IndexCommand) -> anyhow::Result<ExitCode> {
    // Validate the flags before anything else, so usage errors are reported the same everywhere.
    let spec = match &cmd {
        IndexCommand::Create {
            kind,
            m,
            ef_construction,
            lists,
            quantization,
            concurrently,
            build_memory_mb,
            parallel_workers,
            no_analyze,
        } => Some(IndexSpec {
            kind: index_kind(*kind, *m, *ef_construction, *lists),
            concurrently: *concurrently,
            quantization: (*quantization).into(),
            build_memory_mb: *build_memory_mb,
            parallel_workers: *parallel_workers,
            skip_analyze: *no_analyze,
        }),
        _ => None,
    };
    match cmd {
        IndexCommand::Create { .. } => {
            let spec = spec.unwrap_or_default();
            let info = store.create_index(spec).await?;
            writeln!(out, "created index {}", describe(&info))?;
        }
        IndexCommand::Drop => {
            if store.drop_index().await? {
                writeln!(out, "dropped the vector index")?;
            } else {
                writeln!(out, "there was no vector index")?;
            }
        }
        IndexCommand::Rebuild { concurrently } => {
            let info = store.rebuild_index(concurrently).await?;
            writeln!(out, "rebuilt index {}", describe(&info))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `marketking tune`: measures, prints every step, keeps the chosen value (unless `--dry-run`);
/// exit 1 when no value reaches the target.
pub(super) async fn tune(store: &VectorStore, out: &mut impl Write, a: TuneArgs) -> anyhow::Result<ExitCode> {
    if a.clear {
        let info = store.clear_tuning().await?;
        if a.json {
            print_json(out, &info)?;
        } else {
            writeln!(out, "cleared the tuned settings of {}", describe(&info))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut opts = TuneOptions::target(a.target).k(a.k).queries(a.queries).dry_run(a.dry_run);
    if let Some(path) = &a.query_file {
        opts = opts.query_texts(read_queries(path)?);
    }
    let report = store.tune_recall(&opts).await?;
    if a.json {
        print_json(out, &report)?;
    } else {
        let knob = report.knob;
        writeln!(out, "index {}", describe(&report.index))?;
        let queries = match report.query_texts {
            0 => format!("{} stored documents", report.query_ids.len()),
            n => format!("{n} query texts"),
        };
        writeln!(out, "{queries} as queries, recall@{} against exact search:", report.k)?;
        let recall = format!("recall@{}", report.k);
        writeln!(out, "  {knob:>10}  {recall:>10}  {:>7}", "p50 ms")?;
        for s in &report.steps {
            let mark = if report.chosen.is_some_and(|c| c.value == s.value) { "  <- chosen" } else { "" };
            let scan = if s.uses_index { "" } else { "  (exact scan: the planner left the index)" };
            writeln!(out, "  {:>10}  {:>10.3}  {:>7.2}{mark}{scan}", s.value, s.recall, s.p50_ms)?;
        }
        writeln!(out, "before: {knob} {} gave recall@{} {:.3}", report.before.value, report.k, report.before.recall)?;
        if let Some(c) = report.chosen {
            let what = if report.applied { "kept with the index" } else { "dry run: nothing kept" };
            writeln!(out, "chosen: {knob} {} gives recall@{} {:.3} ({what})", c.value, report.k, c.recall)?;
            if !c.uses_index {
                writeln!(
                    out,
                    "note: at this value the planner scans the table exactly instead of reading the index; \
                     a denser index (--m, --ef-construction) reaches the target through the index"
                )?;
            }
            if report.applied && report.overridden_by_config {
                writeln!(
                    out,
                    "note: this process sets {knob} itself (MARKETKING_EF_SEARCH / MARKETKING_PROBES), which wins over the kept value"
                )?;
            }
        }
    }
    out.flush()?;
    if report.chosen.is_none() {
        let best = report.steps.iter().map(|s| s.recall).fold(0.0, f64::max);
        bail!(
            "no {} reaches recall@{} {} on this index (best {best:.3}): rebuild it with more links (--m, --ef-construction) or without quantization",
            report.knob,
            report.k,
            report.target
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One query per non-empty line: the line itself, or its "query" field when it is a JSON object.
fn read_queries(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(o)) => match o.get("query") {
                Some(serde_json::Value::String(q)) => out.push(q.clone()),
                _ => bail!("{}:{}: a JSON line needs a \"query\" string", path.display(), n + 1),
            },
            _ => out.push(line.to_string()),
        }
    }
    if out.is_empty() {
        bail!("{}: no queries", path.display());
    }
    Ok(out)
}

pub(super) async fn migrate(store: &VectorStore, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    // Opening the store created or upgraded the table; `stats` checks it answers. (Not
    // `ping`: in the core it fails on an empty PostgreSQL table.)
    let stats = store.stats().await?;
    writeln!(
        out,
        "ok: {} store {} is up to date ({} documents)",
        store.backend_kind(),
        stats.storage.location,
        stats.storage.documents
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn analyze(store: &VectorStore, out: &mut impl Write, quiet: bool) -> anyhow::Result<ExitCode> {
    store.analyze().await?;
    if !quiet {
        writeln!(out, "analyzed")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn ping(store: &VectorStore, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    store.ping().await.map_err(|e| anyhow::Error::new(e).context("storage"))?;
    store.ping_cache().await.map_err(|e| anyhow::Error::new(e).context("cache"))?;
    writeln!(out, "ok: {} storage and cache answer", store.backend_kind())?;
    Ok(ExitCode::SUCCESS)
}
