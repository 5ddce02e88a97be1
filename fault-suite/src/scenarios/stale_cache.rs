//! Stale results after a write whose generation bump failed (issue 10, defect 4).
//!
//! Search results are cached under the store's generation; a write bumps it. If the bump is
//! lost while Redis keeps its data, results cached before the write would be served until their
//! TTL. Two ways to lose it, both with the suite's own Redis:
//! * a partition (a proxy between the server and Redis drops every byte, then resets the
//!   connections): the INCR never runs;
//! * `CLIENT PAUSE <ms> WRITE`: reads go on, the INCR waits past the client's timeout.
//!
//! Each probe writes a document whose content is the query itself (the top hit of the next
//! search) and then searches again: a hit list without it is a result cached before the write.

use anyhow::{bail, Result};
use serde_json::json;

use super::hit_titles;
use crate::ctx::Ctx;
use crate::http::Http;
use crate::proxy::Proxy;
use crate::redis::Redis;
use crate::report::{info, Checks};
use crate::server::{Cache, Server, ServerOpts};

/// Searches after the fault ends: enough to get past reconnects to the first cached answer.
const SEARCHES_AFTER: usize = 12;

/// What a series of searches saw.
#[derive(Debug, Default)]
struct Seen {
    fresh: usize,
    stale: usize,
    failed: usize,
}

impl Seen {
    fn text(&self) -> String {
        format!("{} fresh, {} stale, {} failed", self.fresh, self.stale, self.failed)
    }
}

async fn search(http: &Http, query: &str, probe: &str, seen: &mut Seen) {
    match http.post_json("/v1/search", &json!({"query": query, "k": 5})).await {
        Ok(v) if hit_titles(&v).iter().any(|t| t == probe) => seen.fresh += 1,
        Ok(_) => seen.stale += 1,
        Err(_) => seen.failed += 1,
    }
}

/// Searches `query` twice, so its result is cached, and checks Redis holds result keys.
async fn prime(http: &Http, redis: &Redis, query: &str) -> Result<()> {
    for _ in 0..2 {
        http.post_json("/v1/search", &json!({"query": query, "k": 5})).await?;
    }
    let keys = redis.command(&["KEYS", "*:r:*"]).await?;
    let n: usize = keys.trim_start_matches('*').parse().unwrap_or(0);
    if n == 0 {
        bail!("no cached search result in Redis after two searches (KEYS *:r:* = {keys}); caching is off?");
    }
    Ok(())
}

async fn write_probe(server: &Server, title: &str, query: &str) -> Result<String> {
    let errors = server.metric("marketking_cache_errors_total").await?;
    let r = server.http.post("/v1/documents", &json!({"title": title, "content": query})).await;
    let errors_after = server.metric("marketking_cache_errors_total").await?;
    let answer = match r {
        Ok(reply) => reply.status.to_string(),
        Err((kind, _)) => kind.to_string(),
    };
    Ok(format!("write answered {answer}; cache errors during it: {}", errors_after - errors))
}

pub(crate) async fn run(ctx: &mut Ctx, checks: &mut Checks) -> Result<()> {
    let (storage, _) = ctx.pg_table_with("fs_stale_cache", 300).await?;
    let redis = ctx.redis("stale-cache-redis").await?;
    let proxy = Proxy::start(redis.port()).await?;
    let url = format!("redis://127.0.0.1:{}/0", proxy.port());
    let server = Server::start(ctx, ServerOpts::new("stale-cache-server", storage, Cache::Redis(url))).await?;
    let http = server.http.clone();

    // Control: with Redis healthy, the search after a write sees it.
    let q = "zephyr quokka control probe";
    prime(&http, &redis, q).await?;
    http.post_json("/v1/documents", &json!({"title": "probe-control", "content": q})).await?;
    let mut control = Seen::default();
    search(&http, q, "probe-control", &mut control).await;
    checks.check("control (no fault): the search after a write sees it", control.text(), control.fresh == 1);

    // Partition: the INCR is lost.
    let q = "zephyr quokka partition probe";
    prime(&http, &redis, q).await?;
    proxy.partition();
    info(format!("partition: {}", write_probe(&server, "probe-partition", q).await?));
    let mut during = Seen::default();
    for _ in 0..2 {
        search(&http, q, "probe-partition", &mut during).await;
    }
    proxy.heal();
    let mut after = Seen::default();
    for _ in 0..SEARCHES_AFTER {
        search(&http, q, "probe-partition", &mut after).await;
    }
    info(format!("partition: searches during it: {}; after it healed: {}", during.text(), after.text()));
    checks.check(
        "partition: no search returns a result cached before the write",
        format!("during: {}; after: {}", during.text(), after.text()),
        during.stale + after.stale == 0 && after.fresh > 0,
    );

    // CLIENT PAUSE WRITE: reads still answer, the INCR waits past the client's timeout. The
    // pause is sent to Redis directly, not through the proxy. Lifted by UNPAUSE, not by time.
    let q = "zephyr quokka pause probe";
    prime(&http, &redis, q).await?;
    redis.command(&["CLIENT", "PAUSE", "10000", "WRITE"]).await?;
    info(format!("CLIENT PAUSE WRITE: {}", write_probe(&server, "probe-pause", q).await?));
    let mut during = Seen::default();
    for _ in 0..4 {
        search(&http, q, "probe-pause", &mut during).await;
    }
    redis.command(&["CLIENT", "UNPAUSE"]).await?;
    let mut after = Seen::default();
    for _ in 0..SEARCHES_AFTER {
        search(&http, q, "probe-pause", &mut after).await;
    }
    info(format!("pause: searches during it: {}; after UNPAUSE: {}", during.text(), after.text()));
    checks.check(
        "CLIENT PAUSE WRITE: no search returns a result cached before the write",
        format!("during: {}; after: {}", during.text(), after.text()),
        during.stale + after.stale == 0 && after.fresh > 0,
    );
    Ok(())
}
