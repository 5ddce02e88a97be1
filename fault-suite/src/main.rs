//! `fault-suite`: the fault-injection suite of MarketKing (issue 10).
//!
//! Drives the release binaries (`marketking-http`, `marketking`) on loopback against a
//! PostgreSQL cluster and redis-servers of its own, injects faults (kill -9, Redis stopped,
//! frozen, paused or partitioned, PostgreSQL backends terminated and the server restarted, a
//! request timeout during a write, out-of-range numbers), prints the figures of every scenario
//! and exits 1 when a target is missed.
//!
//! Run with: `bash scripts/fault-suite.sh [SCENARIO...]` (builds the release binaries first), or
//! `target/release/fault-suite --list`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;

mod ctx;
mod data;
mod http;
mod load;
mod pg;
mod procs;
mod proxy;
mod redis;
mod report;
mod scenarios;
mod server;

use ctx::Ctx;
use report::Checks;

/// Fault-injection suite: runs the named scenarios (all by default) and checks their targets.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Scenarios to run, in the order given (default: all). `--list` names them.
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Directory holding the release binaries `marketking-http` and `marketking`
    /// (default: this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Work directory for logs, files and the throwaway cluster (default: a new temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// PostgreSQL bin directory with initdb and pg_ctl (default: newest /usr/lib/postgresql/*/bin).
    #[arg(long)]
    pg_bin: Option<PathBuf>,
    /// redis-server binary.
    #[arg(long, default_value = "redis-server")]
    redis_bin: PathBuf,
    /// Concurrent clients of the bounded loads.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Documents in the timeout-then-retry batch (large enough to take over 1 s to write).
    #[arg(long, default_value_t = 50_000)]
    timeout_docs: usize,
    /// Keep the work directory even when every target held.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    if args.list {
        for s in scenarios::ALL {
            println!("{:<14} {}", s.name, s.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let selected = select(&args.scenarios)?;
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().map(PathBuf::from).unwrap_or_default(),
    };
    let work =
        args.work_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("marketking-fault-{}", std::process::id())));
    let pg_bin = pg::find_bin(args.pg_bin.as_deref())?;
    let mut ctx = Ctx::new(&bin_dir, args.redis_bin, pg_bin, work, args.clients.max(1), args.timeout_docs)?;
    println!("fault-suite: work dir {}", ctx.work.display());
    procs::record_pids_in(ctx.work.join("pids"));

    let mut checks = Checks::default();
    let started = Instant::now();
    // A Ctrl-C or SIGTERM ends the run through the same path as an error, so the guards
    // (servers, redis-servers, the cluster) are dropped and their processes killed.
    let interrupted = tokio::select! {
        () = run_scenarios(&mut ctx, &mut checks, &selected) => false,
        () = interrupt() => true,
    };
    ctx.shutdown().await;
    checks.print_summary();
    println!("fault-suite: {:.1}s", started.elapsed().as_secs_f64());
    let failed = checks.failed() > 0 || interrupted;
    if failed || args.keep {
        println!("fault-suite: logs kept in {}", ctx.work.display());
    } else {
        let _ = std::fs::remove_dir_all(&ctx.work);
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn select(names: &[String]) -> Result<Vec<&'static scenarios::Scenario>> {
    if names.is_empty() {
        return Ok(scenarios::ALL.iter().collect());
    }
    names
        .iter()
        .map(|n| match scenarios::ALL.iter().find(|s| s.name == n) {
            Some(s) => Ok(s),
            None => bail!("no scenario named {n:?}; `fault-suite --list` names them"),
        })
        .collect()
}

async fn run_scenarios(ctx: &mut Ctx, checks: &mut Checks, selected: &[&scenarios::Scenario]) {
    for s in selected {
        println!("\n== {}: {}", s.name, s.about);
        checks.begin(s.name);
        let started = Instant::now();
        if let Err(e) = (s.run)(ctx, checks).await {
            checks.check("scenario runs to the end", format!("{e:#}"), false);
        }
        println!("  ({:.1}s)", started.elapsed().as_secs_f64());
    }
}

async fn interrupt() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    eprintln!("fault-suite: interrupted; stopping its processes");
}
