//! `stats`, `index ...`, `migrate`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use marketking_core::{IndexInfo, IndexKind, IndexSpec, Quantization, VectorStore};

use crate::args::{IndexCommand, IndexKindArg};
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
        IndexCommand::Create { kind, m, ef_construction, lists, quantization, concurrently } => Some(IndexSpec {
            kind: index_kind(*kind, *m, *ef_construction, *lists),
            concurrently: *concurrently,
            quantization: (*quantization).into(),
        }),
        _ => None,
    };
    if store.backend_kind() == "embedded" {
        bail!("the embedded store has no vector index (it searches exactly); index commands need PostgreSQL (set --database-url or DATABASE_URL)");
    }
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
