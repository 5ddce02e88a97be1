//! kill -9 of `marketking import` in the middle of a file, on both backends.
//!
//! The CLI writes the file in transactions of `--batch-size` rows, in file order, so after a
//! kill the table must hold exactly the first `n * batch` rows of the file: never part of a
//! batch. The rows are keyed, so re-running the same import must end with exactly the file's
//! documents, however many runs were killed before.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::data::{self, Doc};
use crate::pg;
use crate::procs::Proc;
use crate::report::{info, Checks};
use crate::server::{cli, import, run_cli, Storage};

/// Documents in the file: enough that the kills land well before its end.
const DOCS: usize = 12_000;
/// Rows per transaction.
const BATCH: usize = 250;

pub(crate) async fn run(ctx: &mut Ctx, checks: &mut Checks) -> Result<()> {
    let docs = data::corpus("ki", DOCS);
    let file = ctx.file("kill-import.jsonl");
    data::write_jsonl(&file, &docs)?;
    let url = ctx.pg().await?.url();
    let pg = Storage::Pg { url, table: "fs_kill_import.docs".into() };
    backend(ctx, checks, "postgres", &pg, &file, &docs).await?;
    let embedded = Storage::Embedded(ctx.file("kill-import.db"));
    backend(ctx, checks, "embedded", &embedded, &file, &docs).await
}

async fn backend(
    ctx: &Ctx,
    checks: &mut Checks,
    name: &str,
    storage: &Storage,
    file: &Path,
    docs: &[Doc],
) -> Result<()> {
    println!("  -- {name}: {DOCS} keyed documents, --batch-size {BATCH}");
    let mut committed = 0;
    for round in 1..=2 {
        // Each run is killed once it has committed two more batches than the previous one had,
        // so the kill lands while a later batch is being embedded or written.
        let (at_kill, how, elapsed) = killed_import(ctx, storage, file, committed + 2 * BATCH).await?;
        let keys = stored_keys(storage).await?;
        let n = keys.len();
        let prefix: HashSet<&str> = docs.iter().take(n).map(|d| d.key.as_str()).collect();
        let exact = keys.len() == prefix.len() && keys.iter().all(|k| prefix.contains(k.as_str()));
        info(format!(
            "run {round}: killed after {:.2}s, {how}, with {at_kill} rows seen committed; {n} rows in the table after",
            elapsed.as_secs_f64()
        ));
        checks.check(
            format!("{name}, kill {round}: whole batches only, the first rows of the file"),
            format!("{n} rows = {} batches + {} rows; exactly the file's first {n}: {exact}", n / BATCH, n % BATCH),
            n % BATCH == 0 && exact && n >= committed,
        );
        committed = n;
    }
    let started = Instant::now();
    let summary = import(ctx, storage, file).await.map(|s| s.trim().to_string());
    info(format!(
        "run 3 (to the end) in {:.2}s: {}",
        started.elapsed().as_secs_f64(),
        match &summary {
            Ok(s) => s.clone(),
            Err(e) => format!("{e:#}"),
        }
    ));
    let ran = summary.is_ok();
    checks.check(format!("{name}: re-running the import exits 0"), if ran { "exit 0" } else { "failed" }, ran);

    let out = run_cli(ctx, storage, &["export"]).await?;
    if !out.status.success() {
        bail!("marketking export: {}: {}", out.status, out.stderr.trim());
    }
    let exported: Vec<Value> = out.stdout.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let mut got: Vec<(String, String, String)> =
        exported.iter().map(|v| (s(&v["key"]), s(&v["title"]), s(&v["content"]))).collect();
    got.sort();
    let mut want: Vec<(String, String, String)> =
        docs.iter().map(|d| (d.key.clone(), d.title.clone(), d.content.clone())).collect();
    want.sort();
    let missing = want.iter().filter(|w| got.binary_search(w).is_err()).count();
    let extra = got.len().saturating_sub(want.len() - missing);
    checks.check(
        format!("{name}: after the re-run the store holds exactly the file's documents"),
        format!("{} exported, {DOCS} in the file, {missing} missing, {extra} extra or duplicated", got.len()),
        got == want,
    );
    Ok(())
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Starts an import and kill -9s it once `threshold` rows are committed and the next batch is
/// being written; returns the count seen then, how the kill landed, and the run time. Fails if
/// the import ends on its own first.
///
/// On PostgreSQL "being written" is observed: the importer's backend holds a transaction with an
/// xid, i.e. uncommitted rows. The embedded store cannot be watched from outside, so the kill
/// comes half a batch interval (measured between the commits seen) after the threshold.
async fn killed_import(
    ctx: &Ctx,
    storage: &Storage,
    file: &Path,
    threshold: usize,
) -> Result<(usize, String, Duration)> {
    let mut cmd = cli(ctx, storage);
    cmd.arg("import").arg(file).args(["--batch-size", &BATCH.to_string()]);
    let mut child = Proc::spawn("marketking import", cmd, &ctx.file("kill-import.log"))?;
    let started = Instant::now();
    let admin = match storage {
        Storage::Pg { url, .. } => Some(pg::connect(url).await?),
        Storage::Embedded(_) => None,
    };
    let (mut last, mut last_change, mut interval) = (0, Instant::now(), Duration::from_millis(20));
    loop {
        if let Some(status) = child.exited()? {
            bail!(
                "the import ended ({status}) before {threshold} rows were committed: raise DOCS\n{}",
                child.log_tail(5)
            );
        }
        let n = stored_keys(storage).await.map(|k| k.len()).unwrap_or(0);
        if n != last {
            interval = last_change.elapsed();
            (last, last_change) = (n, Instant::now());
        }
        if n >= threshold {
            let how = match &admin {
                Some(admin) if writing(admin).await? => "while its transaction held uncommitted rows".to_string(),
                Some(_) => String::new(),
                None => {
                    tokio::time::sleep(interval / 2).await;
                    format!("{:.0} ms into the next batch", (interval / 2).as_secs_f64() * 1000.0)
                }
            };
            if !how.is_empty() {
                child.kill9().await?;
                return Ok((n, how, started.elapsed()));
            }
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("no progress: {n} rows after 120 s");
        }
        // Polling a committed count; 2 ms is well under the time one batch takes.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether a backend other than `admin`'s has a transaction with an xid (uncommitted writes).
async fn writing(admin: &tokio_postgres::Client) -> Result<bool> {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL",
            &[],
        )
        .await?;
    Ok(row.get::<_, i64>(0) > 0)
}

/// The keys of the committed rows (none when the table or file does not exist yet).
async fn stored_keys(storage: &Storage) -> Result<Vec<String>> {
    match storage {
        Storage::Pg { url, table } => {
            let c = pg::connect(url).await?;
            let rows = match c.query(&format!("SELECT key FROM {table}"), &[]).await {
                Ok(rows) => rows,
                Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "42P01") => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            Ok(rows.iter().map(|r| r.get::<_, Option<String>>(0).unwrap_or_default()).collect())
        }
        Storage::Embedded(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
                if !path.exists() {
                    return Ok(Vec::new());
                }
                // Read-only, beside the importer: WAL mode lets a reader see the last commit.
                let c = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                c.busy_timeout(Duration::from_secs(5))?;
                let mut st = match c.prepare("SELECT key FROM documents") {
                    Ok(st) => st,
                    Err(e) if e.to_string().contains("no such table") => return Ok(Vec::new()),
                    Err(e) => return Err(e.into()),
                };
                let keys = st.query_map([], |r| r.get::<_, Option<String>>(0))?;
                Ok(keys.map(|k| k.map(Option::unwrap_or_default)).collect::<Result<_, _>>()?)
            })
            .await
            .context("sqlite reader")?
        }
    }
}
