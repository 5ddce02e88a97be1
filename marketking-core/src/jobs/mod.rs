//! Background jobs: a JSONL import is split into chunks and queued; workers (in this process or
//! in others) embed and write the chunks, each chunk once.
//!
//! * **Where jobs live.** With Redis (`MARKETKING_QUEUE_URL`, else `REDIS_URL`'s server in
//!   database 2, the design's queue database), in a Redis stream read by a consumer group, so
//!   workers in any process share the work, and a chunk whose worker died is taken over by
//!   another once it has been pending for [`JobsBuilder::claim_after`]. Without Redis, in this
//!   process ([`Jobs::in_process`]), with the same API. For jobs to survive a Redis restart,
//!   its persistence (AOF) must be on.
//! * **Each chunk once.** A chunk is written with [`VectorStore::batch_once`], whose
//!   checkpoint (`job:<id>:<chunk>`) commits in the chunk's own transaction: a chunk run again
//!   after a crash writes nothing twice, keys or not, and its report is the recorded one.
//! * **Pauses.** When the storage or the queue cannot be reached, workers wait and retry:
//!   nothing is skipped and nothing lost. The job's status says why it waits (`paused`), and
//!   how often and how long it waited.
//!
//! ```no_run
//! # async fn run(store: marketking_core::VectorStore) -> marketking_core::Result<()> {
//! use marketking_core::jobs::{ImportJobOptions, Jobs};
//! let jobs = Jobs::builder(store).from_env()?.build()?;
//! let workers = jobs.spawn_workers(1);
//! let mut upload = jobs.import(ImportJobOptions::default()).await?;
//! upload.push(b"{\"title\":\"Trail shoes\",\"content\":\"Light shoes for rocky paths\"}\n").await?;
//! let job = upload.finish().await?;
//! let status = jobs.wait(&job.id, std::time::Duration::from_secs(60)).await?;
//! assert_eq!(status.done, 1);
//! workers.stop().await;
//! # Ok(()) }
//! ```
//!
//! With several workers, chunks run in parallel: when one key is on lines of different chunks,
//! which line's version is stored last is not defined (within a chunk, the last line wins).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::VectorStore;

mod queue;
#[cfg(feature = "redis")]
mod redis_queue;
mod worker;

use queue::{MemoryQueue, Queue, Task};
pub use worker::Workers;

/// Default lines per chunk (one transaction each).
pub const DEFAULT_CHUNK_LINES: usize = 500;
/// Largest `chunk_lines`.
pub const MAX_CHUNK_LINES: usize = 10_000;
/// A chunk is cut at this many bytes even before it has `chunk_lines` lines.
pub const MAX_CHUNK_BYTES: usize = 8 << 20;
/// Longest input line.
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// Per-line errors a job's status lists (the count is always exact).
pub const MAX_LISTED_ERRORS: usize = 100;
/// How long a chunk may be pending without its worker's sign of life before another worker
/// takes it over, by default.
pub const DEFAULT_CLAIM_AFTER: Duration = Duration::from_secs(30);
/// How long a finished job's status is kept (Redis), by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Where a job is.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Its input is still arriving; no chunk runs before it is complete.
    Uploading,
    /// Complete and queued; no worker has started it.
    Queued,
    /// Workers are on it (see `paused` for a job that waits).
    Running,
    /// Every chunk is done (some lines may have failed: see `failed`).
    Done,
    /// Cancelled: chunks not started then are not written.
    Cancelled,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Uploading => "uploading",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        })
    }
}

/// A line that was not written, and why.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLineError {
    /// The input line (1-based).
    pub line: u64,
    /// The field at fault (`json` for a line that is not a JSON object, `chunk` when a whole
    /// chunk could not be written).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// How to run an import job.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportJobOptions {
    /// Keep each line's `id` (restoring into an empty store).
    pub keep_ids: bool,
    /// Lines per chunk (one transaction each), 1 to [`MAX_CHUNK_LINES`].
    pub chunk_lines: usize,
    /// A name to show in listings (a file name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Default for ImportJobOptions {
    fn default() -> Self {
        ImportJobOptions { keep_ids: false, chunk_lines: DEFAULT_CHUNK_LINES, name: None }
    }
}

impl ImportJobOptions {
    /// Checks the options; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_CHUNK_LINES).contains(&self.chunk_lines) {
            return Err(Error::invalid(
                "chunk_lines",
                format!("must be between 1 and {MAX_CHUNK_LINES}, got {}", self.chunk_lines),
            ));
        }
        if let Some(n) = &self.name {
            if n.chars().count() > 255 {
                return Err(Error::invalid("name", "must be at most 255 characters"));
            }
        }
        Ok(())
    }
}

/// A job's status and report.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: String,
    /// `import`.
    pub kind: String,
    /// Where it is.
    pub state: JobState,
    /// The options it runs with.
    pub options: ImportJobOptions,
    /// Input lines (blank lines not counted); known once the upload is complete.
    pub total: u64,
    /// Lines written (created, updated or unchanged, and lines a later line of the same key
    /// in the same chunk replaced).
    pub done: u64,
    /// Lines not written (invalid, or in a chunk that could not be written).
    pub failed: u64,
    /// Documents created.
    pub created: u64,
    /// Documents that existed (by key) and changed.
    pub updated: u64,
    /// Documents that existed (by key) and did not change.
    pub unchanged: u64,
    /// Chunks of the input.
    pub chunks: u64,
    /// Chunks done.
    pub chunks_done: u64,
    /// The first [`MAX_LISTED_ERRORS`] lines not written, by line.
    pub errors: Vec<JobLineError>,
    /// When it was queued (its upload began).
    pub created_at: DateTime<Utc>,
    /// When a worker began its first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When its last chunk was done, or it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// From start to finish (or to now), in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// Lines per second so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines_per_second: Option<f64>,
    /// Time left at that rate, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<u64>,
    /// Why a worker waits on this job now (the storage cannot be reached...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// How often it waited (storage or queue unreachable), and for how long in all.
    pub pauses: u64,
    /// Milliseconds spent waiting.
    pub paused_ms: u64,
    /// Why it waited last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pause: Option<String>,
    /// Chunks a worker took over from another that stopped answering.
    pub chunks_taken_over: u64,
    /// Why a cancelled job was cancelled (on request, or its upload ended before its input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl JobStatus {
    /// Done or cancelled: nothing more will happen.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, JobState::Done | JobState::Cancelled)
    }
}

/// What a worker records for a chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ChunkResult {
    pub(crate) lines: u64,
    pub(crate) created: u64,
    pub(crate) updated: u64,
    pub(crate) unchanged: u64,
    pub(crate) superseded: u64,
    pub(crate) failed: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<JobLineError>,
    pub(crate) ms: u64,
    /// Taken from the store's checkpoint (the chunk was written before, by a worker that
    /// stopped before recording it).
    #[serde(default)]
    pub(crate) replayed: bool,
    /// Run by a worker that took it over from another.
    #[serde(default)]
    pub(crate) taken_over: bool,
}

/// Background jobs of one store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Jobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: VectorStore,
    queue: Box<dyn Queue>,
    claim_after: Duration,
    retention: Duration,
}

/// Configures [`Jobs`].
#[derive(Debug)]
pub struct JobsBuilder {
    store: VectorStore,
    queue_url: Option<String>,
    claim_after: Duration,
    retention: Duration,
}

impl JobsBuilder {
    /// Reads `MARKETKING_QUEUE_URL` (a Redis server for jobs; `in-process` for none), else
    /// `REDIS_URL` (its server, database 2), and `MARKETKING_JOB_CLAIM_AFTER_MS`. Without
    /// either URL, jobs run in this process.
    pub fn from_env(mut self) -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        self.queue_url = match (var("MARKETKING_QUEUE_URL"), var("REDIS_URL")) {
            (Some(q), _) if q == "in-process" => None,
            (Some(q), _) => Some(q),
            (None, Some(r)) if is_cluster(&r) => {
                // A cluster cache keeps working as it did: jobs stay in this process until a
                // queue server is named.
                tracing::warn!(
                    "REDIS_URL names a Redis Cluster and jobs need one Redis server: background jobs run in \
                     this process; set MARKETKING_QUEUE_URL to share them"
                );
                None
            }
            (None, Some(r)) => Some(queue_database(&r)?),
            (None, None) => None,
        };
        if let Some(ms) = var("MARKETKING_JOB_CLAIM_AFTER_MS") {
            let ms: u64 = ms.parse().map_err(|_| {
                Error::config("MARKETKING_JOB_CLAIM_AFTER_MS", format!("must be a number of milliseconds, got {ms:?}"))
            })?;
            self = self.claim_after(Duration::from_millis(ms));
        }
        Ok(self)
    }

    /// Jobs in database 2 (the design's queue database) of the Redis server `cache_url` names
    /// (the cache's URL, whatever its database). A cluster URL is an [`Error::Config`].
    pub fn queue_beside_cache(mut self, cache_url: &str) -> Result<Self> {
        self.queue_url = Some(queue_database(cache_url)?);
        Ok(self)
    }

    /// Jobs in this Redis server and database (`redis://host:port/db`).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.queue_url = Some(url.into());
        self
    }

    /// Jobs in this process, whatever the environment says.
    pub fn in_process(mut self) -> Self {
        self.queue_url = None;
        self
    }

    /// How long a chunk may be pending without a sign of life from its worker (workers give
    /// one every third of this) before another worker takes it over (at least 100 ms).
    pub fn claim_after(mut self, after: Duration) -> Self {
        self.claim_after = after.max(Duration::from_millis(100));
        self
    }

    /// How long a finished job's status is kept (Redis; at least a second).
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = keep.max(Duration::from_secs(1));
        self
    }

    /// The jobs. Connects lazily: a queue that is down now is retried when used.
    pub fn build(self) -> Result<Jobs> {
        let queue: Box<dyn Queue> = match &self.queue_url {
            None => Box::new(MemoryQueue::default()),
            #[cfg(feature = "redis")]
            Some(url) => Box::new(redis_queue::RedisQueue::new(url, &self.store.jobs_namespace())?),
            #[cfg(not(feature = "redis"))]
            Some(_) => return Err(Error::config("MARKETKING_QUEUE_URL", "is set but the `redis` feature is off")),
        };
        Ok(Jobs {
            inner: Arc::new(Inner {
                store: self.store,
                queue,
                claim_after: self.claim_after,
                retention: self.retention,
            }),
        })
    }
}

/// A Redis Cluster URL (several nodes, or the `+cluster` scheme).
fn is_cluster(url: &str) -> bool {
    url.contains(',') || url.contains("+cluster://")
}

/// Without the `redis` feature, any queue URL is refused by [`JobsBuilder::build`].
#[cfg(not(feature = "redis"))]
fn queue_database(url: &str) -> Result<String> {
    Ok(url.to_string())
}

/// `url` with database 2 (the queue database of the design).
#[cfg(feature = "redis")]
fn queue_database(url: &str) -> Result<String> {
    if is_cluster(url) {
        return Err(Error::config(
            "MARKETKING_QUEUE_URL",
            "is needed: REDIS_URL names a Redis Cluster, and jobs run on one Redis server",
        ));
    }
    let mut parsed =
        url::Url::parse(url).map_err(|e| Error::config("REDIS_URL", format!("is not a valid Redis URL: {e}")))?;
    parsed.set_path("/2");
    Ok(parsed.to_string())
}

impl Jobs {
    /// A builder: jobs in this process unless configured otherwise.
    pub fn builder(store: VectorStore) -> JobsBuilder {
        JobsBuilder { store, queue_url: None, claim_after: DEFAULT_CLAIM_AFTER, retention: DEFAULT_RETENTION }
    }

    /// Jobs in this process, run by [`spawn_workers`](Self::spawn_workers).
    pub fn in_process(store: VectorStore) -> Jobs {
        // Infallible: the in-process queue needs no configuration.
        Jobs {
            inner: Arc::new(Inner {
                store,
                queue: Box::new(MemoryQueue::default()),
                claim_after: DEFAULT_CLAIM_AFTER,
                retention: DEFAULT_RETENTION,
            }),
        }
    }

    /// `redis` or `in-process`.
    pub fn queue_kind(&self) -> &'static str {
        self.inner.queue.kind()
    }

    /// The store the jobs write to.
    pub fn store(&self) -> &VectorStore {
        &self.inner.store
    }

    /// Starts an import job: push its JSONL input with [`ImportUpload::push`], then
    /// [`ImportUpload::finish`] queues it. `keep_ids` needs an empty store
    /// ([`Error::Conflict`] otherwise).
    pub async fn import(&self, options: ImportJobOptions) -> Result<ImportUpload> {
        self.inner.store.writable("an import job")?;
        options.validate()?;
        if options.keep_ids {
            let n = self.inner.store.count(&crate::Filter::everything()).await?;
            if n > 0 {
                return Err(Error::Conflict {
                    reason: format!("keep_ids restores ids into an empty store, and this one holds {n} documents"),
                });
            }
        }
        let now = Utc::now();
        let id = new_id(now);
        let options_json = serde_json::to_string(&options).map_err(|e| Error::storage(e.to_string()))?;
        self.inner
            .queue
            .set(
                &id,
                &[
                    ("kind", "import".into()),
                    ("state", "uploading".into()),
                    ("options", options_json),
                    ("created_at", now.to_rfc3339()),
                ],
            )
            .await?;
        // An upload that never finishes is forgotten after a day.
        self.inner.queue.expire(&id, Duration::from_secs(86_400)).await?;
        self.inner.queue.index(&id, now.timestamp_millis()).await?;
        Ok(ImportUpload {
            jobs: self.clone(),
            finished: false,
            id,
            chunk_lines: options.chunk_lines,
            buf: Vec::new(),
            chunk: Vec::new(),
            chunk_first: 0,
            chunk_count: 0,
            line: 0,
            total: 0,
            tasks: Vec::new(),
        })
    }

    /// Queues an import of the JSONL file at `path` (read now, into the queue).
    pub async fn import_file(&self, path: &std::path::Path, mut options: ImportJobOptions) -> Result<JobStatus> {
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::invalid("path", format!("{} cannot be read: {e}", path.display())))?;
        if options.name.is_none() {
            options.name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        }
        let mut upload = self.import(options).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| Error::invalid("path", format!("{} cannot be read: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            upload.push(buf.get(..n).unwrap_or_default()).await?;
        }
        upload.finish().await
    }

    /// A job's status and report; [`Error::JobNotFound`] for an unknown id (or one past its
    /// retention).
    pub async fn status(&self, id: &str) -> Result<JobStatus> {
        validate_id(id)?;
        let record = self.inner.queue.record(id).await?;
        if record.is_empty() {
            return Err(Error::JobNotFound { id: id.to_string() });
        }
        let results = self.inner.queue.results(id).await?;
        status_of(id, &record, results.values())
    }

    /// The newest jobs first, at most `limit` (up to 1,000).
    pub async fn list(&self, limit: usize) -> Result<Vec<JobStatus>> {
        let mut out = Vec::new();
        for id in self.inner.queue.ids(limit.min(1000)).await? {
            match self.status(&id).await {
                Ok(s) => out.push(s),
                Err(Error::JobNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Cancels a job: chunks not started are not written (those done stay). Cancelling a
    /// finished job changes nothing.
    pub async fn cancel(&self, id: &str) -> Result<JobStatus> {
        let status = self.status(id).await?;
        if status.is_finished() {
            return Ok(status);
        }
        let now = Utc::now().to_rfc3339();
        self.inner.queue.set(id, &[("state", "cancelled".into()), ("reason", "cancelled on request".into())]).await?;
        self.inner.queue.set_new(id, "finished_at", &now).await?;
        self.inner.queue.expire(id, self.inner.retention).await?;
        self.status(id).await
    }

    /// Forgets a finished (done or cancelled) job: its status, and the checkpoints its chunks
    /// recorded in the store (see [`VectorStore::batch_once`]); the documents stay. A job still
    /// running is an [`Error::Conflict`] (cancel it first). Finished jobs are otherwise kept for
    /// their retention (Redis), their checkpoints until forgotten.
    pub async fn forget(&self, id: &str) -> Result<u64> {
        let status = self.status(id).await?;
        if !status.is_finished() {
            return Err(Error::Conflict { reason: format!("job {id} is {}: cancel it first", status.state) });
        }
        let checkpoints = self.inner.store.forget_checkpoints(&format!("job:{id}:")).await?;
        self.inner.queue.delete(id).await?;
        Ok(checkpoints)
    }

    /// Polls a job's status until it is finished or `timeout` passes (then its status as it is).
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<JobStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status(id).await?;
            if status.is_finished() || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `n` workers on the current tokio runtime; [`Workers::stop`] stops them (each
    /// finishes its chunk first).
    pub fn spawn_workers(&self, n: usize) -> Workers {
        worker::spawn(self.clone(), n)
    }

    /// Runs one worker until `shutdown` completes (the chunk in hand is finished first).
    pub async fn run_worker(&self, name: Option<String>, shutdown: impl std::future::Future<Output = ()>) {
        worker::run(self.clone(), name.unwrap_or_else(worker::default_name), shutdown).await
    }
}

/// An import job's input on its way into the queue (see [`Jobs::import`]).
#[derive(Debug)]
pub struct ImportUpload {
    jobs: Jobs,
    /// Set by `finish`: an upload dropped before it is cancelled, its input deleted.
    finished: bool,
    id: String,
    chunk_lines: usize,
    /// Bytes of a line not complete yet.
    buf: Vec<u8>,
    /// The chunk being filled: whole lines, blank ones too (so line numbers stay right).
    chunk: Vec<u8>,
    chunk_first: u64,
    chunk_count: usize,
    /// Lines read.
    line: u64,
    /// Non-blank lines read.
    total: u64,
    tasks: Vec<Task>,
}

impl ImportUpload {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds input bytes (any split; lines end at `\n`). Full chunks go to the queue now.
    pub async fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        while let Some(n) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(n + 1);
            if self.buf.is_empty() {
                self.add_line(line).await?;
            } else {
                let mut whole = std::mem::take(&mut self.buf);
                whole.extend_from_slice(line);
                self.add_line(&whole).await?;
            }
            bytes = rest;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(Error::invalid(
                format!("line {}", self.line + 1),
                format!("is longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    async fn add_line(&mut self, line: &[u8]) -> Result<()> {
        self.line += 1;
        if self.chunk.is_empty() {
            self.chunk_first = self.line;
        }
        self.chunk.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            self.chunk.push(b'\n');
        }
        if !line.trim_ascii().is_empty() {
            self.total += 1;
            self.chunk_count += 1;
        }
        if self.chunk_count >= self.chunk_lines || self.chunk.len() >= MAX_CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.chunk_count == 0 {
            // Blank lines only: nothing to do for them.
            self.chunk.clear();
            return Ok(());
        }
        let index = self.tasks.len() as u64;
        let data = std::mem::take(&mut self.chunk);
        self.jobs.inner.queue.put_chunk(&self.id, index, data).await?;
        self.tasks.push(Task {
            entry: String::new(),
            job: self.id.clone(),
            chunk: index,
            first_line: self.chunk_first,
            claimed: false,
        });
        self.chunk_count = 0;
        Ok(())
    }

    /// Ends the input and queues the job. An input without a line is an
    /// [`Error::InvalidInput`] (`input`) and queues nothing.
    pub async fn finish(mut self) -> Result<JobStatus> {
        self.finished = true;
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            self.add_line(&last).await?;
        }
        self.flush().await?;
        let q = &self.jobs.inner.queue;
        if self.tasks.is_empty() {
            q.set(
                &self.id,
                &[
                    ("state", "cancelled".into()),
                    ("reason", "the input has no lines".into()),
                    ("finished_at", Utc::now().to_rfc3339()),
                ],
            )
            .await?;
            return Err(Error::invalid("input", "has no lines: nothing to import"));
        }
        // Cancelled while its input was arriving (its id is listed from the start): it stays
        // cancelled and its input goes.
        if q.record(&self.id).await?.get("state").is_some_and(|s| s == "cancelled") {
            for chunk in 0..self.tasks.len() as u64 {
                q.delete_chunk(&self.id, chunk).await?;
            }
            return Err(Error::Conflict { reason: format!("job {} was cancelled during its upload", self.id) });
        }
        q.set(
            &self.id,
            &[("state", "queued".into()), ("total", self.total.to_string()), ("chunks", self.tasks.len().to_string())],
        )
        .await?;
        // Kept until done (then for the retention).
        q.expire(&self.id, Duration::from_secs(365 * 86_400)).await?;
        q.push(&self.tasks).await?;
        self.jobs.status(&self.id).await
    }
}

impl Drop for ImportUpload {
    /// An upload that ends before [`finish`](ImportUpload::finish) (a client that went away, an
    /// error) queues nothing: the job is marked cancelled and the input it left is deleted.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (jobs, id, chunks) = (self.jobs.clone(), self.id.clone(), self.tasks.len() as u64);
        runtime.spawn(async move {
            let q = &jobs.inner.queue;
            let now = Utc::now().to_rfc3339();
            let reason = "the upload ended before its input did: nothing was queued".to_string();
            let marked = q.set(&id, &[("state", "cancelled".into()), ("reason", reason), ("finished_at", now)]).await;
            for chunk in 0..chunks {
                let _ = q.delete_chunk(&id, chunk).await;
            }
            if marked.is_ok() {
                let _ = q.expire(&id, jobs.inner.retention).await;
            }
        });
    }
}

/// A new job id: the time and a random part, lowercase hex (sorts by creation).
fn new_id(now: DateTime<Utc>) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let noise = xxhash_rust::xxh3::xxh3_64(
        format!(
            "{}|{}|{n}|{:?}",
            now.timestamp_nanos_opt().unwrap_or_default(),
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    format!("{:011x}{:08x}", now.timestamp_millis(), noise as u32)
}

/// Ids are what [`new_id`] makes: lowercase hex, 1 to 40 characters.
fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 40 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Error::invalid("id", format!("is not a job id (lowercase hex), got {id:?}")));
    }
    Ok(())
}

/// The status from a job's record and its chunks' results.
fn status_of<'a>(
    id: &str,
    record: &HashMap<String, String>,
    results: impl Iterator<Item = &'a String>,
) -> Result<JobStatus> {
    let get = |k: &str| record.get(k).map(String::as_str);
    let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let time = |k: &str| get(k).and_then(|v| DateTime::parse_from_rfc3339(v).ok()).map(|t| t.with_timezone(&Utc));
    let options: ImportJobOptions = get("options").and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default();
    let created_at = time("created_at").ok_or_else(|| Error::storage(format!("job {id} has no created_at")))?;
    let (started_at, finished_at) = (time("started_at"), time("finished_at"));
    let mut s = JobStatus {
        id: id.to_string(),
        kind: get("kind").unwrap_or("import").to_string(),
        state: JobState::Queued,
        options,
        total: num("total"),
        done: 0,
        failed: 0,
        created: 0,
        updated: 0,
        unchanged: 0,
        chunks: num("chunks"),
        chunks_done: 0,
        errors: Vec::new(),
        created_at,
        started_at,
        finished_at,
        elapsed_ms: None,
        lines_per_second: None,
        eta_ms: None,
        paused: get("paused").map(str::to_string),
        pauses: num("pauses"),
        paused_ms: num("paused_ms"),
        last_pause: get("last_pause").map(str::to_string),
        chunks_taken_over: 0,
        reason: get("reason").map(str::to_string),
    };
    for raw in results {
        let r: ChunkResult = serde_json::from_str(raw)
            .map_err(|e| Error::storage(format!("job {id}: a chunk result is unreadable: {e}")))?;
        s.chunks_done += 1;
        s.created += r.created;
        s.updated += r.updated;
        s.unchanged += r.unchanged;
        s.done += r.created + r.updated + r.unchanged + r.superseded;
        s.failed += r.failed;
        s.chunks_taken_over += u64::from(r.taken_over);
        s.errors.extend(r.errors);
    }
    s.errors.sort_by_key(|e| e.line);
    s.errors.truncate(MAX_LISTED_ERRORS);
    s.state = match get("state") {
        Some("cancelled") => JobState::Cancelled,
        Some("uploading") => JobState::Uploading,
        _ if finished_at.is_some() => JobState::Done,
        _ if started_at.is_some() => JobState::Running,
        _ => JobState::Queued,
    };
    if let Some(start) = started_at {
        let end = finished_at.unwrap_or_else(Utc::now);
        let ms = (end - start).num_milliseconds().max(0) as u64;
        s.elapsed_ms = Some(ms);
        let handled = s.done + s.failed;
        if ms > 0 && handled > 0 {
            let rate = handled as f64 * 1000.0 / ms as f64;
            s.lines_per_second = Some(rate);
            if s.state == JobState::Running {
                s.eta_ms = Some((s.total.saturating_sub(handled) as f64 / rate * 1000.0) as u64);
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_sorted_by_time_and_checked() {
        let a = new_id(Utc::now());
        std::thread::sleep(Duration::from_millis(2));
        let b = new_id(Utc::now());
        assert!(a < b, "{a} {b}");
        validate_id(&a).unwrap();
        for bad in ["", "XYZ", "../etc", &"a".repeat(41)] {
            assert!(matches!(validate_id(bad), Err(Error::InvalidInput { field, .. }) if field == "id"), "{bad}");
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn queue_url_defaults_to_database_two_and_refuses_clusters() {
        assert_eq!(queue_database("redis://127.0.0.1:6379/0").unwrap(), "redis://127.0.0.1:6379/2");
        assert_eq!(queue_database("redis://:pw@h:7000").unwrap(), "redis://:pw@h:7000/2");
        let e = queue_database("redis://a:7000,redis://b:7001").unwrap_err();
        assert!(matches!(e, Error::Config { ref field, .. } if field == "MARKETKING_QUEUE_URL"), "{e}");
    }

    #[test]
    fn options_name_their_field() {
        let e = ImportJobOptions { chunk_lines: 0, ..Default::default() }.validate().unwrap_err();
        assert!(matches!(e, Error::InvalidInput { ref field, .. } if field == "chunk_lines"), "{e}");
    }

    #[test]
    fn status_sums_chunks_and_derives_state() {
        let mut record = HashMap::new();
        record.insert("created_at".to_string(), "2026-01-01T00:00:00Z".to_string());
        record.insert("started_at".to_string(), "2026-01-01T00:00:01Z".to_string());
        record.insert("total".to_string(), "10".to_string());
        record.insert("chunks".to_string(), "2".to_string());
        let r = ChunkResult {
            lines: 5,
            created: 4,
            failed: 1,
            errors: vec![JobLineError { line: 3, field: "title".into(), reason: "is empty".into() }],
            ..Default::default()
        };
        let one = serde_json::to_string(&r).unwrap();
        let s = status_of("ab", &record, [&one].into_iter()).unwrap();
        assert_eq!((s.state, s.done, s.failed, s.chunks_done), (JobState::Running, 4, 1, 1));
        assert!(s.eta_ms.is_some());
        record.insert("finished_at".to_string(), "2026-01-01T00:00:03Z".to_string());
        let s = status_of("ab", &record, [&one, &one].into_iter()).unwrap();
        assert_eq!((s.state, s.done, s.failed, s.errors.len(), s.elapsed_ms), (JobState::Done, 8, 2, 2, Some(2000)));
    }
}
