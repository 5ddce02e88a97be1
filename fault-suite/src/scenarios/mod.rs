//! The scenarios, by name. Each one sets up what it needs (its own table, Redis, servers),
//! injects its fault, prints its figures and records its targets in [`Checks`].

use std::future::Future;
use std::pin::Pin;

use anyhow::Result;

use crate::ctx::Ctx;
use crate::report::Checks;

mod f64_max;
mod kill_import;
mod pg_restart;
mod pg_terminate;
mod redis_outage;
mod stale_cache;
mod timeout_retry;

/// A scenario's entry point.
pub(crate) type RunFn = for<'a> fn(&'a mut Ctx, &'a mut Checks) -> Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// A named scenario.
#[derive(Debug)]
pub(crate) struct Scenario {
    /// Name on the command line.
    pub(crate) name: &'static str,
    /// One line on what it does.
    pub(crate) about: &'static str,
    /// Runs it.
    pub(crate) run: RunFn,
}

/// Every scenario, in the default order: the quick data-safety ones first, then the loads.
pub(crate) static ALL: &[Scenario] = &[
    Scenario {
        name: "f64-max",
        about: "metadata {\"a\": 1.7976931348623157e308} on PostgreSQL: create, get, search, similar, upsert, export",
        run: |c, k| Box::pin(f64_max::run(c, k)),
    },
    Scenario {
        name: "kill-import",
        about: "kill -9 of `marketking import` mid-file on PostgreSQL and the embedded store, then re-run",
        run: |c, k| Box::pin(kill_import::run(c, k)),
    },
    Scenario {
        name: "timeout-retry",
        about: "embedded store, --request-timeout 1: a large batch answered as timed out, then retried",
        run: |c, k| Box::pin(timeout_retry::run(c, k)),
    },
    Scenario {
        name: "stale-cache",
        about: "writes whose Redis generation bump fails (partition proxy, CLIENT PAUSE WRITE): no stale search",
        run: |c, k| Box::pin(stale_cache::run(c, k)),
    },
    Scenario {
        name: "redis-outage",
        about: "Redis killed, restarted and frozen under bounded search load vs the same load with no cache",
        run: |c, k| Box::pin(redis_outage::run(c, k)),
    },
    Scenario {
        name: "pg-terminate",
        about: "pg_terminate_backend on every pooled connection, twice, under bounded read load",
        run: |c, k| Box::pin(pg_terminate::run(c, k)),
    },
    Scenario {
        name: "pg-restart",
        about: "PostgreSQL stopped for 3 s and started again under bounded load; /readyz probed",
        run: |c, k| Box::pin(pg_restart::run(c, k)),
    },
];

/// The ids in a search answer's hits.
pub(crate) fn hit_ids(v: &serde_json::Value) -> Vec<i64> {
    v["hits"].as_array().map(|a| a.iter().filter_map(|h| h["document"]["id"].as_i64()).collect()).unwrap_or_default()
}

/// The titles in a search answer's hits.
pub(crate) fn hit_titles(v: &serde_json::Value) -> Vec<String> {
    v["hits"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["document"]["title"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The idempotent read mix of the PostgreSQL scenarios: text search (POST and GET), get by id
/// and similar, over the table's `ids`.
pub(crate) fn reads(ids: Vec<i64>, queries: Vec<String>) -> crate::load::MakeReq {
    use crate::load::Req;
    std::sync::Arc::new(move |w, seq| {
        let i = w * 7919 + seq as usize;
        let id = ids.get(i % ids.len().max(1)).copied().unwrap_or(1);
        let q = queries.get(i % queries.len().max(1)).cloned().unwrap_or_default();
        match seq % 4 {
            0 => Req::json("search", hyper::Method::POST, "/v1/search", &serde_json::json!({"query": q, "k": 10})),
            1 => Req::get("get", format!("/v1/documents/{id}")),
            2 => Req::get("similar", format!("/v1/documents/{id}/similar?k=5")),
            _ => Req::get("search (GET)", format!("/v1/search?q={}&k=5", q.replace(' ', "+"))),
        }
    })
}

/// Summaries per operation of `samples`.
pub(crate) fn by_op<'a>(
    samples: impl IntoIterator<Item = &'a crate::load::Sample> + Clone,
    secs: f64,
) -> Vec<(String, crate::load::Summary)> {
    let mut ops: Vec<&'static str> = samples.clone().into_iter().map(|s| s.op).collect();
    ops.sort_unstable();
    ops.dedup();
    ops.into_iter()
        .map(|op| (op.to_string(), crate::load::Summary::of(samples.clone().into_iter().filter(|s| s.op == op), secs)))
        .collect()
}
