//! f64::MAX in metadata on PostgreSQL (issue 10, defect 1).
//!
//! jsonb keeps `1.7976931348623157e308` as a numeric and prints it back as a 309-digit integer,
//! which the row decoder could not read: it panicked, the HTTP connection dropped and the CLI
//! exited 101. Two ways in: through the API (which may store the number or refuse it with 422),
//! and a row that is already in the table (written by hand, or by an older version), which every
//! read must survive.

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use super::hit_ids;
use crate::ctx::Ctx;
use crate::http::{Failure, Reply};
use crate::pg;
use crate::report::{info, Checks};
use crate::server::{run_cli, Cache, Server, ServerOpts, Storage};

const HUGE: &str = "1.7976931348623157e308";

fn answer(r: &Result<Reply, Failure>) -> String {
    match r {
        Ok(reply) => reply.describe(),
        Err((kind, msg)) => format!("{kind}: {msg}"),
    }
}

fn status(r: &Result<Reply, Failure>) -> Option<u16> {
    r.as_ref().ok().map(|r| r.status)
}

fn is_2xx(r: &Result<Reply, Failure>) -> bool {
    status(r).is_some_and(|s| (200..300).contains(&s))
}

pub(crate) async fn run(ctx: &mut Ctx, checks: &mut Checks) -> Result<()> {
    let (storage, docs) = ctx.pg_table_with("fs_f64_max", 50).await?;
    let Storage::Pg { url, table } = &storage else { unreachable!("pg_table_with gives a PostgreSQL table") };
    let mut server = Server::start(ctx, ServerOpts::new("f64-max-server", storage.clone(), Cache::None)).await?;
    let http = server.http.clone();

    // 1. Through the API. The raw text keeps the literal exactly as a client sends it.
    let content = "a document whose metadata holds the largest finite double";
    let body = format!(r#"{{"title":"huge number","content":"{content}","key":"f64-api","metadata":{{"a":{HUGE}}}}}"#);
    let created = http.send(Method::POST, "/v1/documents", Some(Bytes::from(body.clone()))).await;
    info(format!("POST /v1/documents with metadata a={HUGE}: {}", answer(&created)));
    checks.check(
        "create answers 201 (stored) or 422 (refused), never a 5xx or a dropped connection",
        answer(&created),
        matches!(status(&created), Some(201 | 422)),
    );
    if let Some(id) = created.as_ref().ok().filter(|r| r.status == 201).and_then(|r| r.json().ok()?["id"].as_i64()) {
        let got = http.get(&format!("/v1/documents/{id}")).await;
        let value = got.as_ref().ok().and_then(|r| r.json().ok()).and_then(|v| v["metadata"]["a"].as_f64());
        checks.check(
            "stored through the API: get answers 200 with a = f64::MAX",
            format!("{} (a = {value:?})", answer(&got)),
            is_2xx(&got) && value == Some(f64::MAX),
        );
        let found = http.post("/v1/search", &json!({"query": content, "k": 5})).await;
        let hit = found.as_ref().ok().and_then(|r| r.json().ok()).is_some_and(|v| hit_ids(&v).contains(&id));
        checks.check(
            "stored through the API: search answers 200 and finds it",
            format!("{} (found: {hit})", answer(&found)),
            is_2xx(&found) && hit,
        );
        let similar = http.get(&format!("/v1/documents/{id}/similar?k=3")).await;
        checks.check("stored through the API: similar answers 200", answer(&similar), is_2xx(&similar));
        let body = json!({"title": "huge number", "content": content});
        let upsert = http.put("/v1/documents/by-key/f64-api", &body).await;
        checks.check("stored through the API: upsert of the same key answers 200", answer(&upsert), is_2xx(&upsert));
    }

    // 2. A row already in the table: same content and vector as the first corpus document, so
    //    searches for that content must decode it next to a healthy row.
    let first = docs.first().context("empty corpus")?;
    let admin = pg::connect(url).await?;
    let row = admin
        .query_one(
            &format!(
                "INSERT INTO {table} (title, content, source, metadata, key, embedding) \
                 SELECT 'stored huge number', content, 'suite', '{{\"a\": {HUGE}}}'::jsonb, 'f64-sql', embedding \
                 FROM {table} WHERE key = $1 RETURNING id, (SELECT id FROM {table} WHERE key = $1)"
            ),
            &[&first.key],
        )
        .await?;
    let (bad, good): (i64, i64) = (row.get(0), row.get(1));
    info(format!("row {bad} inserted with SQL, metadata {{\"a\": {HUGE}}}; healthy twin {good}"));
    let reads = [
        ("get", http.get(&format!("/v1/documents/{bad}")).await),
        ("search", http.post("/v1/search", &json!({"query": first.content, "k": 5})).await),
        ("similar (of the row)", http.get(&format!("/v1/documents/{bad}/similar?k=3")).await),
        ("similar (of its twin)", http.get(&format!("/v1/documents/{good}/similar?k=3")).await),
        ("upsert (same key)", http.put("/v1/documents/by-key/f64-sql", &json!({"title": "t", "content": "c"})).await),
    ];
    for (op, r) in &reads {
        checks.check(
            format!("stored row: {op} gets an HTTP answer (no panic, no dropped connection)"),
            answer(r),
            r.is_ok(),
        );
    }
    let other = docs.get(1).context("corpus too small")?;
    let r = http.post("/v1/search", &json!({"query": other.content, "k": 3})).await;
    checks.check("stored row: searches for other documents answer 200", answer(&r), is_2xx(&r));

    let out = run_cli(ctx, &storage, &["export"]).await?;
    let lines = out.stdout.lines().count();
    checks.check(
        "stored row: `marketking export` does not panic (exit code not 101)",
        format!(
            "{} with {lines} lines; stderr: {}",
            out.status,
            out.stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or_default()
        ),
        out.status.code() != Some(101),
    );

    let alive = server.alive() && http.get("/healthz").await.is_ok_and(|r| r.status == 200);
    let panics = server.log_text().matches("panicked").count();
    checks.check(
        "server still up, no panic in its log",
        format!("alive: {alive}, panics logged: {panics}"),
        alive && panics == 0,
    );
    Ok(())
}
