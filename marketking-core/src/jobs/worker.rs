//! The worker loop: take a chunk, write it once (under its checkpoint), record its result.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::queue::Task;
use super::{ChunkResult, JobLineError, Jobs};
use crate::document::{BatchOnce, NewDocument};
use crate::error::Error;
use crate::jsonl::{self, LineOptions};

/// Failures of a chunk (other than the storage or queue being unreachable, which are waited
/// out) before its lines are reported failed.
const MAX_ATTEMPTS: u32 = 3;
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Workers started by [`Jobs::spawn_workers`].
#[derive(Debug)]
pub struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True when none runs.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Stops the workers: each finishes the chunk in hand, then returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = h.await;
        }
    }
}

pub(super) fn spawn(jobs: Jobs, n: usize) -> Workers {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let base = default_name();
    let handles = (0..n)
        .map(|i| {
            let (jobs, mut rx, name) = (jobs.clone(), rx.clone(), format!("{base}-{i}"));
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                };
                run(jobs, name, shutdown).await
            })
        })
        .collect();
    Workers { stop, handles }
}

/// `host-pid-random`: unique among the workers of a queue.
pub(super) fn default_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
    let noise =
        xxhash_rust::xxh3::xxh3_64(format!("{:?}|{:?}", Instant::now(), std::thread::current().id()).as_bytes());
    format!("{host}-{}-{:04x}", std::process::id(), noise as u16)
}

pub(super) async fn run(jobs: Jobs, name: String, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let queue = &jobs.inner.queue;
    tracing::info!(worker = %name, queue = queue.kind(), "job worker started");
    // Since when the queue cannot be reached, and the job this worker was on then.
    let mut outage: Option<(Instant, String)> = None;
    let mut last_job: Option<String> = None;
    loop {
        let next = tokio::select! {
            _ = &mut shutdown => break,
            next = queue.next(&name, jobs.inner.claim_after) => next,
        };
        match next {
            Err(e) => {
                if outage.is_none() {
                    tracing::warn!(worker = %name, error = %e, "job queue unavailable: jobs are paused until it is back");
                    outage = Some((Instant::now(), e.to_string()));
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Ok(task) => {
                if let Some((since, why)) = outage.take() {
                    tracing::info!(worker = %name, seconds = since.elapsed().as_secs_f64(), "job queue is back; jobs resume");
                    if let Some(job) = &last_job {
                        note_pause(&jobs, job, since.elapsed(), &why).await;
                    }
                }
                if let Some(task) = task {
                    last_job = Some(task.job.clone());
                    run_task(&jobs, &name, task).await;
                }
            }
        }
    }
    tracing::info!(worker = %name, "job worker stopped");
}

/// Adds a pause to the job's record (best effort: the record is a report).
async fn note_pause(jobs: &Jobs, job: &str, took: Duration, why: &str) {
    let q = &jobs.inner.queue;
    if q.record(job).await.map(|r| r.is_empty() || r.contains_key("finished_at")).unwrap_or(true) {
        return;
    }
    let _ = q.add(job, "pauses", 1).await;
    let _ = q.add(job, "paused_ms", took.as_millis() as i64).await;
    let _ = q.set(job, &[("last_pause", format!("{why} (waited {:.1}s)", took.as_secs_f64()))]).await;
}

/// Runs one chunk to its recorded result (or drops it, for a cancelled or forgotten job).
async fn run_task(jobs: &Jobs, worker: &str, task: Task) {
    let q = &jobs.inner.queue;
    let retention = jobs.inner.retention;
    let record = match q.record(&task.job).await {
        Ok(r) => r,
        // Left pending: taken again once the queue answers.
        Err(_) => return,
    };
    let cancelled = record.get("state").is_some_and(|s| s == "cancelled");
    if record.is_empty() || cancelled {
        let _ = q.finish(&task, None, &Utc::now().to_rfc3339(), retention).await;
        return;
    }
    let _ = q.set_new(&task.job, "started_at", &Utc::now().to_rfc3339()).await;
    let data = match q.chunk(&task.job, task.chunk).await {
        Ok(Some(d)) => d,
        // Its result is recorded (another worker finished it): only the task is left.
        Ok(None) => {
            let _ = q.finish(&task, None, &Utc::now().to_rfc3339(), retention).await;
            return;
        }
        Err(_) => return,
    };
    let taken_over = task.claimed;
    let started = Instant::now();
    // Signs of life while the chunk runs, so no other worker takes it over.
    let keep_every = jobs.inner.claim_after / 3;
    let work = write_chunk(jobs, &task, &data);
    tokio::pin!(work);
    let mut result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(keep_every) => {
                let _ = q.keep(worker, &task).await;
            }
        }
    };
    result.ms = started.elapsed().as_millis() as u64;
    result.taken_over = taken_over;
    let text = match serde_json::to_string(&result) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "a chunk result could not be written as JSON");
            return;
        }
    };
    // The chunk is written: its result must be recorded, however long the queue is away.
    let mut down: Option<(Instant, String)> = None;
    loop {
        match q.finish(&task, Some(&text), &Utc::now().to_rfc3339(), retention).await {
            Ok(()) => break,
            Err(e) => {
                if down.is_none() {
                    tracing::warn!(job = %task.job, chunk = task.chunk, error = %e, "chunk written; recording its result waits for the job queue");
                    down = Some((Instant::now(), e.to_string()));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    if let Some((since, why)) = down {
        note_pause(jobs, &task.job, since.elapsed(), &why).await;
    }
}

/// Parses the chunk, writes its documents once, and reports on every line.
async fn write_chunk(jobs: &Jobs, task: &Task, data: &[u8]) -> ChunkResult {
    let store = &jobs.inner.store;
    let q = &jobs.inner.queue;
    let options = q
        .record(&task.job)
        .await
        .ok()
        .and_then(|r| r.get("options").and_then(|o| serde_json::from_str::<super::ImportJobOptions>(o).ok()))
        .unwrap_or_default();
    let line_opts = LineOptions::default().keep_ids(options.keep_ids);
    let mut result = ChunkResult::default();
    let mut docs: Vec<Option<(u64, NewDocument)>> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let number = task.first_line + i as u64;
        let bytes = line.trim_ascii();
        if bytes.is_empty() {
            continue;
        }
        result.lines += 1;
        match jsonl::parse_line(bytes, store.dimensions(), line_opts) {
            Ok(doc) => {
                // One transaction may not write a key twice: the last line of a key wins,
                // as it would written line by line.
                if let Some(k) = &doc.key {
                    if let Some(earlier) = by_key.insert(k.clone(), docs.len()) {
                        if let Some(slot) = docs.get_mut(earlier) {
                            *slot = None;
                            result.superseded += 1;
                        }
                    }
                }
                docs.push(Some((number, doc)));
            }
            Err(bad) => {
                result.failed += 1;
                result.errors.push(JobLineError { line: number, field: bad.field, reason: bad.reason });
            }
        }
    }
    let (lines, docs): (Vec<u64>, Vec<NewDocument>) = docs.into_iter().flatten().unzip();
    if docs.is_empty() {
        return result;
    }
    let checkpoint = format!("job:{}:{}", task.job, task.chunk);
    let mut attempts = 0;
    let mut waiting: Option<Instant> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        match store.batch_once(&checkpoint, docs.clone()).await {
            Ok(outcome) => {
                if let Some(since) = waiting {
                    let _ = q.clear(&task.job, "paused").await;
                    let _ = q.add(&task.job, "pauses", 1).await;
                    let _ = q.add(&task.job, "paused_ms", since.elapsed().as_millis() as i64).await;
                }
                result.replayed = matches!(outcome, BatchOnce::Replayed(_));
                let r = outcome.report();
                result.created = r.created as u64;
                result.updated = r.updated as u64;
                result.unchanged = r.unchanged as u64;
                return result;
            }
            Err(e) if transient(&e) => {
                if waiting.is_none() {
                    tracing::warn!(job = %task.job, chunk = task.chunk, error = %e, "chunk waits: retrying until the storage answers");
                    waiting = Some(Instant::now());
                    let why = e.to_string();
                    let _ = q.set(&task.job, &[("paused", why.clone()), ("last_pause", why)]).await;
                }
            }
            Err(e) => {
                attempts += 1;
                if e.is_client_error() || attempts >= MAX_ATTEMPTS {
                    tracing::warn!(job = %task.job, chunk = task.chunk, error = %e, "chunk not written");
                    if waiting.is_some() {
                        let _ = q.clear(&task.job, "paused").await;
                    }
                    result.failed += docs.len() as u64;
                    let (first, last) = (lines.first().copied().unwrap_or(0), lines.last().copied().unwrap_or(0));
                    result.errors.push(JobLineError {
                        line: first,
                        field: "chunk".into(),
                        reason: format!(
                            "lines {first}-{last} ({} documents) not written: {}",
                            docs.len(),
                            field_error(&e)
                        ),
                    });
                    return result;
                }
                tracing::warn!(job = %task.job, chunk = task.chunk, attempt = attempts, error = %e, "chunk failed; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Worth waiting out: the storage, the embedding service or a lock will be back.
fn transient(e: &Error) -> bool {
    match e {
        Error::Unavailable { .. } | Error::RateLimited { .. } | Error::Locked { .. } => true,
        Error::Embedder { status, .. } => status.is_none_or(|s| s >= 500 || s == 429),
        _ => false,
    }
}

/// An error as a report line: a batch's field errors name the document's place in the chunk,
/// which says nothing to the reader of a file; the message is enough.
fn field_error(e: &Error) -> String {
    match e {
        Error::InvalidInput { field, reason } => format!("{field}: {reason}"),
        other => other.to_string(),
    }
}
