//! Jobs in Redis: records and chunk results in hashes, chunk inputs in strings, tasks in a
//! stream read by a consumer group (XREADGROUP / XACK), and tasks a dead worker left pending
//! taken over with XAUTOCLAIM. Every key of a store's jobs has one hash tag, so the finishing
//! script's keys are in one slot.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bb8_redis::RedisConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{FromRedisValue, Value};

use super::queue::{Queue, Task};
use crate::error::{Error, Result};

/// The consumer group every worker of a store reads in.
const GROUP: &str = "workers";
/// A call that takes longer fails (a stopped Redis must not hang a worker).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the input of an upload that is not finished is kept.
pub(crate) const UPLOAD_TTL_SECS: u64 = 86_400;
/// How long a read waits for a new task.
const BLOCK_MS: u64 = 1000;

/// Records a chunk's result (the first one stands), acknowledges and deletes its task and its
/// input, and marks the job finished once every chunk has a result. KEYS: record, results,
/// stream, chunk input. ARGV: chunk, result ('' for none), entry id, group, now, retention (s).
const FINISH: &str = r"
if ARGV[2] ~= '' then redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) end
redis.call('XACK', KEYS[3], ARGV[4], ARGV[3])
redis.call('XDEL', KEYS[3], ARGV[3])
redis.call('DEL', KEYS[4])
if ARGV[2] ~= '' then
  local chunks = tonumber(redis.call('HGET', KEYS[1], 'chunks') or '-1')
  if chunks >= 0 and redis.call('HLEN', KEYS[2]) >= chunks then
    if redis.call('HSETNX', KEYS[1], 'finished_at', ARGV[5]) == 1 then
      redis.call('EXPIRE', KEYS[1], ARGV[6])
      redis.call('EXPIRE', KEYS[2], ARGV[6])
    end
  end
end
return 1";

/// A store's jobs in one Redis database.
pub(crate) struct RedisQueue {
    pool: bb8::Pool<RedisConnectionManager>,
    /// `mk:jobs:{<hex>}`: names the store.
    prefix: String,
    /// `host:port/db`, for messages (never the password).
    target: String,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").field("target", &self.target).field("prefix", &self.prefix).finish()
    }
}

impl RedisQueue {
    /// A queue in the Redis database `url` names, for the store `namespace` names. Connects
    /// lazily.
    pub(crate) fn new(url: &str, namespace: &str) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::config("MARKETKING_QUEUE_URL", format!("is not a Redis URL: {e}")))?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(Error::config(
                "MARKETKING_QUEUE_URL",
                format!(
                    "must be one redis:// or rediss:// server (jobs do not run on a cluster), got {}://",
                    parsed.scheme()
                ),
            ));
        }
        let target = format!(
            "{}:{}{}",
            parsed.host_str().unwrap_or("?"),
            parsed.port().unwrap_or(6379),
            match parsed.path() {
                "" | "/" => "/0",
                p => p,
            }
        );
        let manager = RedisConnectionManager::new(url)
            .map_err(|e| Error::config("MARKETKING_QUEUE_URL", format!("is not a valid Redis URL: {e}")))?;
        let pool = bb8::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(2))
            .retry_connection(false)
            .build_unchecked(manager);
        Ok(RedisQueue { pool, prefix: format!("mk:jobs:{{{namespace}}}"), target })
    }

    fn record_key(&self, job: &str) -> String {
        format!("{}:job:{job}", self.prefix)
    }
    fn results_key(&self, job: &str) -> String {
        format!("{}:job:{job}:results", self.prefix)
    }
    fn chunk_key(&self, job: &str, chunk: u64) -> String {
        format!("{}:job:{job}:chunk:{chunk}", self.prefix)
    }
    fn stream_key(&self) -> String {
        format!("{}:tasks", self.prefix)
    }
    fn index_key(&self) -> String {
        format!("{}:index", self.prefix)
    }

    /// Runs a command with the call deadline; errors are [`Error::Unavailable`] naming the
    /// queue.
    async fn run<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let work = async {
            let mut conn = self.pool.get().await.map_err(|e| self.down(e.to_string()))?;
            cmd.query_async::<T>(&mut *conn).await.map_err(|e| self.down(e.to_string()))
        };
        match tokio::time::timeout(CALL_TIMEOUT + Duration::from_millis(BLOCK_MS), work).await {
            Ok(r) => r,
            Err(_) => Err(self.down(format!("no answer in {}s", CALL_TIMEOUT.as_secs()))),
        }
    }

    fn down(&self, why: String) -> Error {
        Error::unavailable(format!("job queue (Redis at {}) unavailable: {why}", self.target))
    }

    /// Creates the consumer group (and the stream) unless it exists.
    async fn ensure_group(&self) -> Result<()> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(self.stream_key()).arg(GROUP).arg("0").arg("MKSTREAM");
        match self.run::<Value>(&cmd).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn task_of(&self, entry: &StreamId) -> Option<Task> {
        let field = |name: &str| -> Option<String> {
            match entry.map.get(name)? {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            }
        };
        Some(Task {
            entry: entry.id.clone(),
            job: field("job")?,
            chunk: field("chunk")?.parse().ok()?,
            first_line: field("line")?.parse().ok()?,
            claimed: false,
        })
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn set(&self, job: &str, fields: &[(&str, String)]) -> Result<()> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.record_key(job));
        for (k, v) in fields {
            cmd.arg(*k).arg(v);
        }
        self.run::<Value>(&cmd).await.map(drop)
    }

    async fn set_new(&self, job: &str, field: &str, value: &str) -> Result<bool> {
        self.run::<bool>(redis::cmd("HSETNX").arg(self.record_key(job)).arg(field).arg(value)).await
    }

    async fn add(&self, job: &str, field: &str, by: i64) -> Result<()> {
        self.run::<Value>(redis::cmd("HINCRBY").arg(self.record_key(job)).arg(field).arg(by)).await.map(drop)
    }

    async fn clear(&self, job: &str, field: &str) -> Result<()> {
        self.run::<Value>(redis::cmd("HDEL").arg(self.record_key(job)).arg(field)).await.map(drop)
    }

    async fn record(&self, job: &str) -> Result<HashMap<String, String>> {
        self.run(redis::cmd("HGETALL").arg(self.record_key(job))).await
    }

    async fn results(&self, job: &str) -> Result<BTreeMap<u64, String>> {
        let raw: HashMap<String, String> = self.run(redis::cmd("HGETALL").arg(self.results_key(job))).await?;
        Ok(raw.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect())
    }

    async fn index(&self, job: &str, at_ms: i64) -> Result<()> {
        self.run::<Value>(redis::cmd("ZADD").arg(self.index_key()).arg(at_ms).arg(job)).await.map(drop)
    }

    async fn ids(&self, limit: usize) -> Result<Vec<String>> {
        let ids: Vec<String> =
            self.run(redis::cmd("ZREVRANGE").arg(self.index_key()).arg(0).arg(limit.saturating_sub(1))).await?;
        // Jobs past their retention are gone: drop them from the list too.
        let mut live = Vec::with_capacity(ids.len());
        for id in ids {
            let exists: bool = self.run(redis::cmd("EXISTS").arg(self.record_key(&id))).await?;
            match exists {
                true => live.push(id),
                false => {
                    let _ = self.run::<Value>(redis::cmd("ZREM").arg(self.index_key()).arg(&id)).await;
                }
            }
        }
        Ok(live)
    }

    async fn put_chunk(&self, job: &str, chunk: u64, data: Vec<u8>) -> Result<()> {
        // Kept a day while the upload goes on; the job's submission makes it permanent (until
        // its chunk is done), so an abandoned upload leaves nothing behind.
        let cmd = redis::cmd("SET").arg(self.chunk_key(job, chunk)).arg(data).arg("EX").arg(UPLOAD_TTL_SECS).clone();
        self.run::<Value>(&cmd).await.map(drop)
    }

    async fn chunk(&self, job: &str, chunk: u64) -> Result<Option<Vec<u8>>> {
        self.run(redis::cmd("GET").arg(self.chunk_key(job, chunk))).await
    }

    async fn push(&self, tasks: &[Task]) -> Result<()> {
        self.ensure_group().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for t in tasks {
            pipe.cmd("PERSIST").arg(self.chunk_key(&t.job, t.chunk)).ignore();
            pipe.cmd("XADD")
                .arg(self.stream_key())
                .arg("*")
                .arg("job")
                .arg(&t.job)
                .arg("chunk")
                .arg(t.chunk)
                .arg("line")
                .arg(t.first_line)
                .ignore();
        }
        let work = async {
            let mut conn = self.pool.get().await.map_err(|e| self.down(e.to_string()))?;
            pipe.query_async::<()>(&mut *conn).await.map_err(|e| self.down(e.to_string()))
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(self.down(format!("no answer in {}s", CALL_TIMEOUT.as_secs()))))
    }

    async fn next(&self, worker: &str, claim_after: Duration) -> Result<Option<Task>> {
        let stream = self.stream_key();
        // A task another worker left pending too long first (that worker died or hangs).
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim.arg(&stream).arg(GROUP).arg(worker).arg(claim_after.as_millis() as u64).arg("0-0").arg("COUNT").arg(1);
        let claimed = match self.run::<StreamAutoClaimReply>(&claim).await {
            Ok(reply) => reply.claimed,
            Err(e) if e.to_string().contains("NOGROUP") => {
                // No job was ever queued for this store (or the Redis lost its data): nothing to
                // take. The stream and its group are made by the first `push`, so an idle
                // worker leaves no key behind.
                tokio::time::sleep(Duration::from_millis(BLOCK_MS)).await;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if let Some(entry) = claimed.first() {
            if let Some(mut task) = self.task_of(entry) {
                task.claimed = true;
                tracing::info!(job = %task.job, chunk = task.chunk, worker, "took over a chunk another worker left pending");
                return Ok(Some(task));
            }
        }
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(worker)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">");
        let reply: Option<StreamReadReply> = self.run(&read).await?;
        Ok(reply.and_then(|r| r.keys.into_iter().flat_map(|k| k.ids).find_map(|e| self.task_of(&e))))
    }

    async fn keep(&self, worker: &str, task: &Task) -> Result<()> {
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(self.stream_key()).arg(GROUP).arg(worker).arg(0).arg(&task.entry).arg("JUSTID");
        self.run::<Value>(&cmd).await.map(drop)
    }

    async fn finish(&self, task: &Task, result: Option<&str>, now: &str, retention: Duration) -> Result<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(FINISH)
            .arg(4)
            .arg(self.record_key(&task.job))
            .arg(self.results_key(&task.job))
            .arg(self.stream_key())
            .arg(self.chunk_key(&task.job, task.chunk))
            .arg(task.chunk)
            .arg(result.unwrap_or(""))
            .arg(&task.entry)
            .arg(GROUP)
            .arg(now)
            .arg(retention.as_secs().max(1));
        self.run::<Value>(&cmd).await.map(drop)
    }

    async fn expire(&self, job: &str, ttl: Duration) -> Result<()> {
        let secs = ttl.as_secs().max(1);
        self.run::<Value>(redis::cmd("EXPIRE").arg(self.record_key(job)).arg(secs)).await?;
        self.run::<Value>(redis::cmd("EXPIRE").arg(self.results_key(job)).arg(secs)).await.map(drop)
    }

    async fn delete_chunk(&self, job: &str, chunk: u64) -> Result<()> {
        self.run::<Value>(redis::cmd("DEL").arg(self.chunk_key(job, chunk))).await.map(drop)
    }

    async fn delete(&self, job: &str) -> Result<()> {
        self.run::<Value>(redis::cmd("DEL").arg(self.record_key(job)).arg(self.results_key(job))).await?;
        self.run::<Value>(redis::cmd("ZREM").arg(self.index_key()).arg(job)).await.map(drop)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
