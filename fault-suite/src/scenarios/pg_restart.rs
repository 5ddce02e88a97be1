//! PostgreSQL stopped for 3 s and started again under a bounded load (issue 10, defects 6, 7).
//!
//! The suite's own cluster is restarted (`pg_ctl stop -m fast`, 3 s down, `pg_ctl start`),
//! never the shared one. Reads plus one client upserting by key; `/readyz` is probed every
//! 100 ms on connections of its own, as an orchestrator would. Targets: only 503s with
//! Retry-After during the outage (no 500, no dropped connection), every request succeeding
//! again within 2 s of PostgreSQL being back, and `/readyz` answering not-ready within 1 s of
//! the outage. Clients pause 50 ms after a failure (`load::FAILURE_PAUSE`), so recovery is
//! measured to within that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hyper::Method;
use serde_json::json;
use tokio::task::JoinHandle;

use super::{by_op, reads};
use crate::ctx::Ctx;
use crate::data;
use crate::http::{Http, Transport};
use crate::load::{print_table, Clock, Load, MakeReq, Req, Sample, Summary};
use crate::pg;
use crate::report::{info, Checks};
use crate::server::{Cache, Server, ServerOpts, Storage};

const STEADY: Duration = Duration::from_secs(2);
/// How long PostgreSQL stays down (issue 10: a 3 s restart).
const DOWN: Duration = Duration::from_secs(3);
/// Load after PostgreSQL is back: the 2 s target plus margin to see it hold.
const AFTER: Duration = Duration::from_secs(5);
const MAX_RECOVERY: f64 = 2.0;
const MAX_READYZ: f64 = 1.0;

/// One `/readyz` probe.
#[derive(Debug, Clone, Copy)]
struct Probe {
    start: f64,
    end: f64,
    result: Result<u16, Transport>,
}

/// Sends `/readyz` every 100 ms (without waiting for the previous answer) until stopped.
fn prober(http: Http, clock: Clock, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Probe>> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let http = http.clone();
            tasks.push(tokio::spawn(async move {
                let start = clock.now();
                let result = http.get("/readyz").await.map(|r| r.status).map_err(|(k, _)| k);
                Probe { start, end: clock.now(), result }
            }));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(p) = t.await {
                out.push(p);
            }
        }
        out
    })
}

/// Seconds from `back` until requests succeed for good: the end of the first successful request
/// sent after the last failure, `None` if there is none.
fn recovery(samples: &[Sample], back: f64) -> Option<f64> {
    let last_failure = samples.iter().filter(|s| !s.ok()).map(|s| s.end).fold(back, f64::max);
    samples.iter().filter(|s| s.ok() && s.start >= last_failure).map(|s| s.end - back).reduce(f64::min)
}

pub(crate) async fn run(ctx: &mut Ctx, checks: &mut Checks) -> Result<()> {
    let (storage, _) = ctx.pg_table_with("fs_restart", 1000).await?;
    let Storage::Pg { url, table } = &storage else { unreachable!("a PostgreSQL table") };
    let ids: Vec<i64> = {
        let admin = pg::connect(url).await?;
        admin.query(&format!("SELECT id FROM {table}"), &[]).await?.iter().map(|r| r.get(0)).collect()
    };
    let mut opts = ServerOpts::new("pg-restart-server", storage.clone(), Cache::None);
    opts.env.push(("MARKETKING_POOL_SIZE".into(), "8".into()));
    let server = Server::start(ctx, opts).await?;

    let clients = ctx.clients.max(12);
    let read = reads(ids, data::queries(100));
    // Client 0 writes (keyed upserts, idempotent), the others read.
    let make: MakeReq = Arc::new(move |w, seq| {
        if w == 0 {
            let body = json!({"title": format!("restart write {}", seq % 20), "content": format!("written during the restart, {seq}")});
            Req::json("upsert", Method::PUT, &format!("/v1/documents/by-key/restart-{}", seq % 20), &body)
        } else {
            read(w, seq)
        }
    });
    info(format!("{clients} clients (1 upserting, the rest reading), cache off, pool of 8"));
    let clock = Clock::start();
    let load = Load::start(&server.http, clients, clock, make);
    let stop = Arc::new(AtomicBool::new(false));
    let probes = prober(Http::new_like(&server.http).with_timeout(Duration::from_secs(15)), clock, stop.clone());

    tokio::time::sleep(STEADY).await;
    let t_stop = clock.now();
    ctx.pg().await?.stop("fast").await?;
    let t_down = clock.now();
    tokio::time::sleep(DOWN).await;
    ctx.pg().await?;
    let t_back = clock.now();
    info(format!("PostgreSQL: stop at {t_stop:.2}s, down at {t_down:.2}s, back at {t_back:.2}s"));
    tokio::time::sleep(AFTER).await;
    let run = load.stop().await;
    stop.store(true, Ordering::Relaxed);
    let probes = probes.await.unwrap_or_default();

    let end = run.samples.iter().map(|s| s.end).fold(t_back, f64::max);
    let phase = |a: f64, b: f64| Summary::of(run.samples.iter().filter(|s| s.start >= a && s.start < b), b - a);
    let start = run.samples.first().map_or(0.0, |s| s.start);
    let rows = vec![
        ("before".to_string(), phase(start, t_stop)),
        ("outage (stop..back)".to_string(), phase(t_stop, t_back)),
        ("after back".to_string(), phase(t_back, f64::INFINITY).with_secs(end - t_back)),
    ];
    print_table("requests", &rows);
    let outage: Vec<&Sample> = run.samples.iter().filter(|s| s.start >= t_stop).collect();
    print_table("by operation, from the stop on", &by_op(outage.iter().copied(), end - t_stop));

    // Probes sent once PostgreSQL is down; a 503 while it is still shutting down says nothing
    // about whether /readyz notices an outage.
    let not_ready =
        probes.iter().filter(|p| p.start >= t_down && p.result == Ok(503)).map(|p| p.end - t_down).reduce(f64::min);
    let ready_again =
        probes.iter().filter(|p| p.start >= t_back && p.result == Ok(200)).map(|p| p.end - t_back).reduce(f64::min);
    let tally = |from: f64, to: f64| {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for p in probes.iter().filter(|p| p.start >= from && p.start < to) {
            *by.entry(p.result.map_or_else(|t| t.to_string(), |s| s.to_string())).or_default() += 1;
        }
        by.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" ")
    };
    let slowest = probes.iter().map(|p| p.end - p.start).fold(0.0, f64::max);
    info(format!(
        "/readyz probes: before {}; sent while down {}; after {}; slowest answer {slowest:.2}s",
        tally(f64::MIN, t_down),
        tally(t_down, t_back),
        tally(t_back, f64::MAX)
    ));
    let fmt = |x: Option<f64>| x.map_or("never".to_string(), |s| format!("{s:.2}s"));

    let all = Summary::of(&run.samples, run.secs);
    let count = |f: &dyn Fn(&Sample) -> bool| run.samples.iter().filter(|s| f(s)).count();
    let five_hundreds = count(&|s| matches!(s.result, Ok((500, _))));
    let transport = count(&|s| s.result.is_err());
    let other = count(&|s| !s.ok() && !matches!(s.result, Ok((503, true))));
    checks.check(
        "no 500 during the restart",
        format!("{five_hundreds} x 500 ({})", all.failures_text()),
        five_hundreds == 0,
    );
    checks.check("no dropped connection or unanswered request", format!("{transport}"), transport == 0);
    checks.check("every failure is a 503 with Retry-After", format!("{other} other failures"), other == 0);
    let rec = recovery(&run.samples, t_back);
    checks.check(
        format!("requests succeed again within {MAX_RECOVERY} s of PostgreSQL being back"),
        fmt(rec),
        rec.is_some_and(|r| r <= MAX_RECOVERY),
    );
    checks.check(
        format!("/readyz answers not-ready within {MAX_READYZ} s of the outage"),
        format!(
            "first 503 {} after PostgreSQL went down; ready again {} after it was back",
            fmt(not_ready),
            fmt(ready_again)
        ),
        not_ready.is_some_and(|r| r <= MAX_READYZ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::recovery;
    use crate::http::Transport;
    use crate::load::Sample;

    fn sample(start: f64, end: f64, result: Result<(u16, bool), Transport>) -> Sample {
        Sample { op: "get", start, end, result }
    }

    #[test]
    fn recovery_waits_for_the_last_failure_even_if_a_success_came_earlier() {
        let back = 10.0;
        let samples = [
            sample(9.0, 9.1, Ok((503, true))),
            sample(10.1, 10.2, Ok((200, false))),
            // A request that hung through the outage and failed late: recovery is after it.
            sample(8.0, 11.5, Ok((500, false))),
            sample(11.6, 11.7, Ok((200, false))),
        ];
        let r = recovery(&samples, back).unwrap_or(f64::NAN);
        assert!((r - 1.7).abs() < 1e-9, "{r}");
    }

    #[test]
    fn no_success_after_the_last_failure_is_no_recovery() {
        let samples = [sample(10.1, 10.2, Ok((200, false))), sample(10.3, 10.4, Err(Transport::Dropped))];
        assert_eq!(recovery(&samples, 10.0), None);
    }
}
