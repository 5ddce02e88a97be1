//! Where jobs live: the [`Queue`] operations a job needs, and the in-process queue. The Redis
//! Streams queue (`redis_queue.rs`) implements the same operations across processes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::Result;

/// One chunk of a job, as the queue hands it to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    /// The queue's id of this delivery (a stream entry id in Redis).
    pub(crate) entry: String,
    /// The job.
    pub(crate) job: String,
    /// The chunk's index in the job (0-based).
    pub(crate) chunk: u64,
    /// The input line number of the chunk's first line (1-based).
    pub(crate) first_line: u64,
    /// Taken over from a worker that left it pending too long.
    pub(crate) claimed: bool,
}

/// The storage of jobs: a record per job (string fields), its chunks' data and results, and
/// the task queue with at-least-once delivery: a task stays pending with its worker until
/// [`finish`](Queue::finish), and one pending longer than `claim_after` without a
/// [`keep`](Queue::keep) is handed to another worker.
#[async_trait]
pub(crate) trait Queue: Send + Sync + Debug {
    /// Sets fields of the job's record (creating it).
    async fn set(&self, job: &str, fields: &[(&str, String)]) -> Result<()>;
    /// Sets a field that is unset; true when it was set now.
    async fn set_new(&self, job: &str, field: &str, value: &str) -> Result<bool>;
    /// Adds `by` to an integer field.
    async fn add(&self, job: &str, field: &str, by: i64) -> Result<()>;
    /// Removes a field.
    async fn clear(&self, job: &str, field: &str) -> Result<()>;
    /// The job's record (empty: no such job).
    async fn record(&self, job: &str) -> Result<HashMap<String, String>>;
    /// The recorded chunk results, by chunk index.
    async fn results(&self, job: &str) -> Result<BTreeMap<u64, String>>;
    /// Adds the job to the list of jobs, at `at_ms`.
    async fn index(&self, job: &str, at_ms: i64) -> Result<()>;
    /// Up to `limit` job ids, newest first.
    async fn ids(&self, limit: usize) -> Result<Vec<String>>;
    /// Stores a chunk's input.
    async fn put_chunk(&self, job: &str, chunk: u64, data: Vec<u8>) -> Result<()>;
    /// A chunk's input; `None` once its result is recorded (or the job is gone).
    async fn chunk(&self, job: &str, chunk: u64) -> Result<Option<Vec<u8>>>;
    /// Queues tasks.
    async fn push(&self, tasks: &[Task]) -> Result<()>;
    /// The next task for `worker`: one another worker left pending for longer than
    /// `claim_after`, else a new one. Waits up to about a second for one.
    async fn next(&self, worker: &str, claim_after: Duration) -> Result<Option<Task>>;
    /// Tells the queue `worker` still works on `task` (resets its idle time).
    async fn keep(&self, worker: &str, task: &Task) -> Result<()>;
    /// Done with `task`: records `result` for its chunk unless one is recorded already (the
    /// first result stands), deletes the chunk's input and the task; once every chunk has a
    /// result, sets the record's `finished_at` to `now` and keeps the job for `retention`.
    /// Without a result (a cancelled job), only the input and the task go.
    async fn finish(&self, task: &Task, result: Option<&str>, now: &str, retention: Duration) -> Result<()>;
    /// Keeps the job's record for `ttl`, then forgets it.
    async fn expire(&self, job: &str, ttl: Duration) -> Result<()>;
    /// Deletes a chunk's input (an upload that did not finish).
    async fn delete_chunk(&self, job: &str, chunk: u64) -> Result<()>;
    /// Deletes the job's record and results (a finished job: no input or task is left).
    async fn delete(&self, job: &str) -> Result<()>;
    /// `redis` or `in-process`.
    fn kind(&self) -> &'static str;
}

/// The in-process queue: jobs live as long as the process.
#[derive(Debug, Default)]
pub(crate) struct MemoryQueue {
    state: Mutex<MemState>,
    ready: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct MemState {
    records: HashMap<String, HashMap<String, String>>,
    results: HashMap<String, BTreeMap<u64, String>>,
    chunks: HashMap<(String, u64), Vec<u8>>,
    order: Vec<(i64, String)>,
    waiting: VecDeque<Task>,
    /// Delivered tasks: the worker and when it last said it works on it.
    pending: HashMap<String, (Task, String, Instant)>,
    next_entry: u64,
}

impl MemoryQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        // A panic while the lock was held leaves plain data behind: go on with it.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn set(&self, job: &str, fields: &[(&str, String)]) -> Result<()> {
        let mut s = self.state();
        let record = s.records.entry(job.to_string()).or_default();
        for (k, v) in fields {
            record.insert((*k).to_string(), v.clone());
        }
        Ok(())
    }

    async fn set_new(&self, job: &str, field: &str, value: &str) -> Result<bool> {
        let mut s = self.state();
        let record = s.records.entry(job.to_string()).or_default();
        if record.contains_key(field) {
            return Ok(false);
        }
        record.insert(field.to_string(), value.to_string());
        Ok(true)
    }

    async fn add(&self, job: &str, field: &str, by: i64) -> Result<()> {
        let mut s = self.state();
        let record = s.records.entry(job.to_string()).or_default();
        let now: i64 = record.get(field).and_then(|v| v.parse().ok()).unwrap_or(0);
        record.insert(field.to_string(), (now + by).to_string());
        Ok(())
    }

    async fn clear(&self, job: &str, field: &str) -> Result<()> {
        if let Some(r) = self.state().records.get_mut(job) {
            r.remove(field);
        }
        Ok(())
    }

    async fn record(&self, job: &str) -> Result<HashMap<String, String>> {
        Ok(self.state().records.get(job).cloned().unwrap_or_default())
    }

    async fn results(&self, job: &str) -> Result<BTreeMap<u64, String>> {
        Ok(self.state().results.get(job).cloned().unwrap_or_default())
    }

    async fn index(&self, job: &str, at_ms: i64) -> Result<()> {
        self.state().order.push((at_ms, job.to_string()));
        Ok(())
    }

    async fn ids(&self, limit: usize) -> Result<Vec<String>> {
        let s = self.state();
        let mut order = s.order.clone();
        order.sort_by(|a, b| b.cmp(a));
        Ok(order.into_iter().map(|(_, id)| id).filter(|id| s.records.contains_key(id)).take(limit).collect())
    }

    async fn put_chunk(&self, job: &str, chunk: u64, data: Vec<u8>) -> Result<()> {
        self.state().chunks.insert((job.to_string(), chunk), data);
        Ok(())
    }

    async fn chunk(&self, job: &str, chunk: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.state().chunks.get(&(job.to_string(), chunk)).cloned())
    }

    async fn push(&self, tasks: &[Task]) -> Result<()> {
        {
            let mut s = self.state();
            for t in tasks {
                s.next_entry += 1;
                let mut t = t.clone();
                t.entry = s.next_entry.to_string();
                s.waiting.push_back(t);
            }
        }
        self.ready.notify_waiters();
        Ok(())
    }

    async fn next(&self, worker: &str, claim_after: Duration) -> Result<Option<Task>> {
        for round in 0..2 {
            let notified = self.ready.notified();
            {
                let mut s = self.state();
                let stale = s
                    .pending
                    .iter()
                    .filter(|(_, (_, _, seen))| seen.elapsed() >= claim_after)
                    .map(|(entry, _)| entry.clone())
                    .min();
                if let Some(entry) = stale {
                    if let Some(p) = s.pending.get_mut(&entry) {
                        p.1 = worker.to_string();
                        p.2 = Instant::now();
                        let mut task = p.0.clone();
                        task.claimed = true;
                        return Ok(Some(task));
                    }
                }
                if let Some(t) = s.waiting.pop_front() {
                    s.pending.insert(t.entry.clone(), (t.clone(), worker.to_string(), Instant::now()));
                    return Ok(Some(t));
                }
            }
            if round == 0 {
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            }
        }
        Ok(None)
    }

    async fn keep(&self, worker: &str, task: &Task) -> Result<()> {
        if let Some(p) = self.state().pending.get_mut(&task.entry) {
            p.1 = worker.to_string();
            p.2 = Instant::now();
        }
        Ok(())
    }

    async fn finish(&self, task: &Task, result: Option<&str>, now: &str, _retention: Duration) -> Result<()> {
        let mut s = self.state();
        s.pending.remove(&task.entry);
        s.chunks.remove(&(task.job.clone(), task.chunk));
        if let Some(result) = result {
            let results = s.results.entry(task.job.clone()).or_default();
            results.entry(task.chunk).or_insert_with(|| result.to_string());
            let done = results.len() as u64;
            if let Some(record) = s.records.get_mut(&task.job) {
                let chunks: Option<u64> = record.get("chunks").and_then(|c| c.parse().ok());
                if chunks.is_some_and(|c| done >= c) {
                    record.entry("finished_at".into()).or_insert_with(|| now.to_string());
                }
            }
        }
        Ok(())
    }

    async fn expire(&self, _job: &str, _ttl: Duration) -> Result<()> {
        // In process: jobs live as long as the process.
        Ok(())
    }

    async fn delete_chunk(&self, job: &str, chunk: u64) -> Result<()> {
        self.state().chunks.remove(&(job.to_string(), chunk));
        Ok(())
    }

    async fn delete(&self, job: &str) -> Result<()> {
        let mut s = self.state();
        s.records.remove(job);
        s.results.remove(job);
        s.order.retain(|(_, id)| id != job);
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }
}
