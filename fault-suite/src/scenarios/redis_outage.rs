//! Redis killed, restarted and frozen under a bounded search load (issue 10, defect 5).
//!
//! Two servers on the same table: one with the suite's Redis, one with `MARKETKING_CACHE=none`.
//! During each outage the load alternates between them in short slices, so the no-cache
//! baseline is measured at the same moments, under the same background noise of this shared
//! machine, as the Redis-backed server without its Redis. Target: no failed search, and the
//! Redis-backed server keeps at least 80% of the no-cache throughput.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hyper::Method;
use serde_json::json;

use crate::ctx::Ctx;
use crate::data;
use crate::http::Http;
use crate::load::{print_table, run_for, Clock, Load, MakeReq, Req, Run, Summary};
use crate::report::{info, Checks};
use crate::server::{Cache, Server, ServerOpts};

/// Distinct queries the clients cycle through: repeats make the cache matter when Redis is up.
const QUERIES: usize = 200;
/// One slice of an interleaved measurement.
/// Short slices, many of them: background load on this shared machine comes and goes within
/// seconds, and alternating often spreads it over both servers alike.
const SLICE: Duration = Duration::from_millis(500);
/// Slices per server per outage (4 s each, an 8 s outage).
const SLICES: usize = 8;
/// How long to wait for the cache to be used again after Redis is back (a figure, not a target).
const RECOVERY_LIMIT: Duration = Duration::from_secs(8);
/// Throughput during the outage over the no-cache throughput (issue 10 acceptance).
const MIN_RATIO: f64 = 0.8;

/// One server's figures during an outage.
#[derive(Debug)]
struct Outage {
    /// Every request, tails included (for the failure counts).
    all: Summary,
    /// Requests answered within the fixed slice windows, over their total length (throughput).
    windowed: Summary,
}

/// Alternates slices on `a` and `b` and prints each slice's throughput (the first `a` slice
/// carries the cost of noticing the outage). Throughput is over fixed windows: a request still
/// waiting on a cache timeout when a slice ends is not counted, and does not stretch the slice.
async fn interleaved(a: &Http, b: &Http, clients: usize, clock: Clock, make: &MakeReq) -> (Outage, Outage) {
    let mut acc: [(Run, Run, Vec<String>); 2] = Default::default();
    for _ in 0..SLICES {
        for (http, (all, windowed, per)) in [a, b].into_iter().zip(acc.iter_mut()) {
            let run = run_for(http, clients, clock, make.clone(), SLICE).await;
            let win = run.window(SLICE.as_secs_f64());
            per.push(format!("{:.0}", Summary::of_run(&win).ok_per_sec()));
            all.samples.extend(run.samples);
            all.secs += run.secs;
            windowed.samples.extend(win.samples);
            windowed.secs += win.secs;
        }
    }
    let [(a_all, a_win, a_per), (b_all, b_win, b_per)] = acc;
    info(format!("ok/s per slice: with Redis down {}; no cache {}", a_per.join(" "), b_per.join(" ")));
    let outage = |all: &Run, win: &Run| Outage { all: Summary::of_run(all), windowed: Summary::of_run(win) };
    (outage(&a_all, &a_win), outage(&b_all, &b_win))
}

/// Load on `server` until its cache counts a hit again; returns the run and the seconds from
/// the start of the load to that hit, `None` if it did not come within [`RECOVERY_LIMIT`].
async fn until_cache_hit(server: &Server, clients: usize, clock: Clock, make: &MakeReq) -> Result<(Run, Option<f64>)> {
    let start = clock.now();
    let hits = server.metric("marketking_cache_hits_total").await?;
    let load = Load::start(&server.http, clients, clock, make.clone());
    let mut back = None;
    while clock.now() - start < RECOVERY_LIMIT.as_secs_f64() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if server.metric("marketking_cache_hits_total").await.unwrap_or(hits) > hits {
            back = Some(clock.now() - start);
            break;
        }
    }
    // A little more load with the cache back, so the row shows the recovered throughput too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((load.stop().await, back))
}

fn ratio(outage: &Summary, baseline: &Summary) -> f64 {
    if baseline.ok_per_sec() > 0.0 {
        outage.ok_per_sec() / baseline.ok_per_sec()
    } else {
        0.0
    }
}

pub(crate) async fn run(ctx: &mut Ctx, checks: &mut Checks) -> Result<()> {
    let (storage, _) = ctx.pg_table_with("fs_redis_outage", 1000).await?;
    let mut redis = ctx.redis("redis-outage-redis").await?;
    let none = Server::start(ctx, ServerOpts::new("redis-outage-nocache", storage.clone(), Cache::None)).await?;
    let cached = Server::start(ctx, ServerOpts::new("redis-outage-redis", storage, Cache::Redis(redis.url()))).await?;
    let queries = Arc::new(data::queries(QUERIES));
    let make: MakeReq = Arc::new(move |w, seq| {
        let q = queries.get((w * 37 + seq as usize) % QUERIES).cloned().unwrap_or_default();
        Req::json("search", Method::POST, "/v1/search", &json!({"query": q, "k": 10}))
    });
    let n = ctx.clients;
    let clock = Clock::start();
    info(format!("{n} clients, POST /v1/search over {QUERIES} queries; outage slices {SLICES} x {SLICE:?} per server"));

    for http in [&cached.http, &none.http] {
        run_for(http, n, clock, make.clone(), Duration::from_millis(800)).await;
        // warm-up
    }
    let mut rows = Vec::new();
    let up = run_for(&cached.http, n, clock, make.clone(), Duration::from_secs(2)).await;
    rows.push(("redis up".to_string(), Summary::of_run(&up)));

    redis.kill().await?;
    let (killed, base_killed) = interleaved(&cached.http, &none.http, n, clock, &make).await;
    rows.push(("redis killed".into(), killed.windowed.clone()));
    rows.push(("  no cache, same slices".into(), base_killed.windowed.clone()));

    redis.restart().await?;
    let (restarted, back_after_restart) = until_cache_hit(&cached, n, clock, &make).await?;
    let restarted = Summary::of_run(&restarted);
    rows.push(("redis restarted (empty)".into(), restarted.clone()));

    redis.signal("STOP")?;
    let (frozen, base_frozen) = interleaved(&cached.http, &none.http, n, clock, &make).await;
    redis.signal("CONT")?;
    rows.push(("redis paused (SIGSTOP)".into(), frozen.windowed.clone()));
    rows.push(("  no cache, same slices".into(), base_frozen.windowed.clone()));
    let (resumed, back_after_cont) = until_cache_hit(&cached, n, clock, &make).await?;
    let resumed = Summary::of_run(&resumed);
    rows.push(("redis resumed (SIGCONT)".into(), resumed.clone()));

    print_table("POST /v1/search (outage rows: requests answered within the slice windows)", &rows);
    let secs = |b: Option<f64>| b.map_or(format!("not within {RECOVERY_LIMIT:?}"), |s| format!("{s:.2}s"));
    info(format!(
        "cache hits again {} after the restart, {} after SIGCONT",
        secs(back_after_restart),
        secs(back_after_cont)
    ));

    for (phase, s) in
        [("killed", &killed.all), ("restarted", &restarted), ("paused", &frozen.all), ("resumed", &resumed)]
    {
        checks.check(
            format!("Redis {phase}: 0 failed searches"),
            format!("{} of {} failed {}", s.failed(), s.requests, s.failures_text()),
            s.failed() == 0 && s.requests > 0,
        );
    }
    for (phase, s, b) in [("killed", &killed, &base_killed), ("paused", &frozen, &base_frozen)] {
        let (s, b) = (&s.windowed, &b.windowed);
        let r = ratio(s, b);
        checks.check(
            format!("Redis {phase}: throughput >= {:.0}% of MARKETKING_CACHE=none", MIN_RATIO * 100.0),
            format!("{:.1} vs {:.1} ok/s = {:.0}%", s.ok_per_sec(), b.ok_per_sec(), r * 100.0),
            r >= MIN_RATIO,
        );
    }
    Ok(())
}
