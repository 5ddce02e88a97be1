//! pg_terminate_backend on every pooled connection under a bounded read load (issue 10,
//! defect 6): dead pooled connections were handed out unchecked, each costing a 500.
//!
//! More clients than pool slots keep all 8 connections busy, so every one of them is killed
//! while in use or right after. Two rounds: the second one checks the connections that
//! replaced the first ones. Target: 0 failed idempotent reads.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{by_op, reads};
use crate::ctx::Ctx;
use crate::data;
use crate::load::{print_table, Clock, Load, Summary};
use crate::pg;
use crate::report::{info, Checks};
use crate::server::{Cache, Server, ServerOpts, Storage};

/// The server's pool size (also the figure: 8 backends).
const POOL: usize = 8;
/// Load after each round of terminations.
const AFTER: Duration = Duration::from_secs(2);

/// Waits (at most 10 s) for the server to hold `POOL` connections; returns how many it holds.
async fn pool_full(admin: &tokio_postgres::Client) -> Result<i64> {
    let start = Instant::now();
    loop {
        let n = pg::backends(admin).await?;
        if n >= POOL as i64 || start.elapsed() > Duration::from_secs(10) {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn run(ctx: &mut Ctx, checks: &mut Checks) -> Result<()> {
    let (storage, _) = ctx.pg_table_with("fs_terminate", 1000).await?;
    let Storage::Pg { url, table } = &storage else { unreachable!("a PostgreSQL table") };
    let admin = pg::connect(url).await?;
    let ids: Vec<i64> = admin.query(&format!("SELECT id FROM {table}"), &[]).await?.iter().map(|r| r.get(0)).collect();
    let mut opts = ServerOpts::new("pg-terminate-server", storage.clone(), Cache::None);
    opts.env.push(("MARKETKING_POOL_SIZE".into(), POOL.to_string()));
    let server = Server::start(ctx, opts).await?;

    let clients = ctx.clients.max(POOL + 4);
    info(format!("{clients} clients, reads (search, get, similar), pool of {POOL}, cache off"));
    let clock = Clock::start();
    let load = Load::start(&server.http, clients, clock, reads(ids, data::queries(100)));
    // A second of steady load first: the "before" row is the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut marks = Vec::new();
    for round in 1..=2 {
        let open = pool_full(&admin).await?;
        let at = clock.now();
        let killed = pg::terminate_backends(&admin).await?;
        info(format!("round {round} at {at:.2}s: {open} server connections open, {killed} terminated"));
        checks.check(
            format!("round {round}: all {POOL} pooled connections terminated"),
            format!("{killed} terminated"),
            killed >= POOL,
        );
        marks.push(at);
        tokio::time::sleep(AFTER).await;
    }
    let run = load.stop().await;

    let (t1, t2) = (marks.first().copied().unwrap_or(0.0), marks.get(1).copied().unwrap_or(0.0));
    let end = run.samples.iter().map(|s| s.end).fold(t2, f64::max);
    let phase = |a: f64, b: f64| Summary::of(run.samples.iter().filter(|s| s.start >= a && s.start < b), b - a);
    let start = run.samples.first().map_or(0.0, |s| s.start);
    let rows = vec![
        ("before".to_string(), phase(start, t1)),
        ("after round 1".to_string(), phase(t1, t2)),
        ("after round 2".to_string(), phase(t2, f64::INFINITY).with_secs(end - t2)),
    ];
    print_table("reads", &rows);
    print_table("by operation, whole run", &by_op(&run.samples, run.secs));
    let all = Summary::of_run(&run);
    checks.check(
        "0 failed idempotent reads with every pooled connection terminated",
        format!("{} of {} failed {}", all.failed(), all.requests, all.failures_text()),
        all.failed() == 0,
    );
    Ok(())
}
