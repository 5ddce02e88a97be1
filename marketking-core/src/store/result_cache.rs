//! The store's use of its [`Cache`]: cached query embeddings and search results, the
//! invalidation generation, and a circuit breaker so a dead cache costs almost nothing.
//!
//! Choices made here, and why:
//! - **Generation in the key.** Every committed write bumps a counter kept in the cache, and a
//!   result key contains the generation it was computed under, so results cached before a write
//!   are never read after it, by any process sharing the cache.
//! - **A failed bump is never forgotten.** If the bump after a write fails (the cache is down or
//!   partitioned while it still holds old results), the store stops reading cached results until
//!   a bump succeeds: it retries before every search and in the background until it does. A
//!   search after a write therefore never returns a result cached before that write from this
//!   store; other processes sharing the cache stop reading them within [`BUMP_RETRY`] of the
//!   cache being reachable again (they cannot learn of the write before that).
//! - **Circuit breaker.** After a cache error, the cache is left alone for
//!   [`BREAKER_INTERVAL`]; then a single call probes it. A dead cache costs one timeout per
//!   interval instead of one (or three) per search, and searches run as with no cache at all.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_128;

use crate::cache::{Cache, CacheCounters, CacheStats};
use crate::document::{SearchHit, SearchOptions};
use crate::error::Error;
use crate::position::WritePosition;
use crate::vector;

/// How long the cache is bypassed after an error before one call probes it again.
pub(crate) const BREAKER_INTERVAL: Duration = Duration::from_secs(1);
/// How often a failed generation bump is retried in the background.
const BUMP_RETRY: Duration = Duration::from_millis(200);
/// Query embeddings change only with the model, so they live long.
const EMBEDDING_TTL: Duration = Duration::from_secs(24 * 3600);

/// The cache as the store uses it. Shared (`Arc`) so a background task can retry a failed bump.
#[derive(Debug)]
pub(crate) struct ResultCache {
    cache: Arc<dyn Cache>,
    counters: CacheCounters,
    breaker: Breaker,
    /// Key prefix naming the storage and the model, so stores on other tables, databases or
    /// models that share one Redis never read each other's entries.
    namespace: String,
    result_ttl: Duration,
    cache_results: bool,
    /// A write committed but its generation bump failed: cached results may predate it.
    bump_pending: AtomicBool,
    /// A background task is retrying the bump.
    retrying: AtomicBool,
    /// The store reads from replicas: each generation's write position is kept beside it, and
    /// a search cached under a generation reads at least that far.
    positions: bool,
}

/// What a cached search needs to build its key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultKey<'a> {
    /// `q` text query, `v` vector, `s` similar-to-id.
    pub(crate) kind: &'a [u8],
    /// The query.
    pub(crate) query: Query<'a>,
    /// The resolved options (store defaults filled in).
    pub(crate) opts: &'a SearchOptions,
}

/// A search's query, turned into key bytes only when results are cached.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Query<'a> {
    /// Text (or any bytes).
    Bytes(&'a [u8]),
    /// A query vector.
    Vector(&'a [f32]),
}

impl ResultCache {
    pub(crate) fn new(
        cache: Arc<dyn Cache>,
        namespace: String,
        result_ttl: Duration,
        cache_results: bool,
        positions: bool,
    ) -> Self {
        ResultCache {
            cache,
            counters: CacheCounters::default(),
            breaker: Breaker::new(BREAKER_INTERVAL),
            namespace,
            result_ttl,
            cache_results,
            bump_pending: AtomicBool::new(false),
            retrying: AtomicBool::new(false),
            positions,
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.counters.snapshot(self.cache.kind())
    }

    /// Checks the cache answers (a counter read), bypassing the breaker.
    pub(crate) async fn ping(&self) -> crate::error::Result<()> {
        self.cache.counter(&self.generation_key()).await.map(|_| ())
    }

    /// Search results for `key` from the cache, or computed by `compute` and then cached.
    /// `compute` gets the write position its result must include to be cached (with read
    /// replicas: the generation's; see [`record_position`](Self::record_position)).
    pub(crate) async fn search<F, Fut>(&self, key: ResultKey<'_>, compute: F) -> crate::error::Result<Vec<SearchHit>>
    where
        F: FnOnce(Option<WritePosition>) -> Fut,
        Fut: std::future::Future<Output = crate::error::Result<Vec<SearchHit>>>,
    {
        let generation = self.generation().await;
        let key = generation.map(|generation| self.result_key(generation, key));
        if let Some(hits) = self.cached_results(key.as_deref()).await {
            return Ok(hits);
        }
        let floor = match generation {
            Some(g) if self.positions => Some(self.position_of(g).await),
            _ => None,
        };
        let hits = compute(floor).await?;
        if let Some(key) = key {
            self.store_results(&key, &hits).await;
        }
        Ok(hits)
    }

    /// The embedding of a query text: from the cache, or computed by `compute` and cached.
    pub(crate) async fn embedding<F>(
        &self,
        model: &str,
        dims: usize,
        text: &str,
        compute: F,
    ) -> crate::error::Result<Vec<f32>>
    where
        F: std::future::Future<Output = crate::error::Result<Vec<f32>>>,
    {
        let key = format!("{}:e:{model}:{dims}:{:032x}", self.namespace, xxh3_128(text.as_bytes()));
        match self.call("read embedding", self.cache.get(&key)).await {
            Some(Some(bytes)) => match vector::from_le_bytes(&bytes, dims) {
                Some(v) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(v);
                }
                None => {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                }
            },
            Some(None) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
        let v = compute.await?;
        self.call("write embedding", self.cache.set(&key, &vector::to_le_bytes(&v), Some(EMBEDDING_TTL))).await;
        Ok(v)
    }

    /// After a committed write: bumps the generation so every process sharing the cache stops
    /// reading results cached before it. When the bump fails, it is retried (see module docs).
    /// Returns the new generation, when the bump went through now.
    pub(crate) async fn invalidate(self: &Arc<Self>) -> Option<u64> {
        if let Some(generation) = self.bump().await {
            return Some(generation);
        }
        self.bump_pending.store(true, Ordering::SeqCst);
        if !self.retrying.swap(true, Ordering::SeqCst) {
            let weak = Arc::downgrade(self);
            // Outside a runtime (never the case for an async caller) the retry before the next
            // search still clears the flag.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(retry_bump(weak));
            } else {
                self.retrying.store(false, Ordering::SeqCst);
            }
        }
        None
    }

    /// Keeps `position` (read after the bump that made `generation`) as the generation's: a
    /// result cached under it must have been read on a server that replayed that far.
    pub(crate) async fn record_position(&self, generation: u64, position: WritePosition) {
        let key = format!("{}:pos:{generation}", self.namespace);
        self.call("write position", self.cache.set(&key, &position.as_u64().to_le_bytes(), Some(self.result_ttl)))
            .await;
    }

    /// The write position results cached under `generation` must include: the recorded one;
    /// none for generation 0 (no write bumped it); the primary's (`u64::MAX`: read it there)
    /// when it is unknown (not recorded yet, expired, or the cache failed).
    async fn position_of(&self, generation: u64) -> WritePosition {
        if generation == 0 {
            return WritePosition::default();
        }
        let key = format!("{}:pos:{generation}", self.namespace);
        match self.call("read position", self.cache.get(&key)).await.flatten() {
            Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(b) => WritePosition::from_u64(u64::from_le_bytes(b)),
                Err(_) => WritePosition::from_u64(u64::MAX),
            },
            None => WritePosition::from_u64(u64::MAX),
        }
    }

    fn generation_key(&self) -> String {
        format!("{}:gen", self.namespace)
    }

    /// One bump attempt; the new generation when it went through.
    async fn bump(&self) -> Option<u64> {
        self.call("invalidate", self.cache.incr(&self.generation_key())).await
    }

    /// The generation results are cached under, `None` when results are not cached now: result
    /// caching is off, the cache is failing, or a bump after a write is still owed.
    async fn generation(&self) -> Option<u64> {
        if !self.cache_results {
            return None;
        }
        if self.bump_pending.load(Ordering::SeqCst) {
            // Cleared only once a bump after the write went through: the new generation hides
            // every result cached before it.
            self.bump().await?;
            self.bump_pending.store(false, Ordering::SeqCst);
        }
        self.call("read generation", self.cache.counter(&self.generation_key())).await
    }

    fn result_key(&self, generation: u64, key: ResultKey<'_>) -> String {
        // Everything that changes the answer goes into the hash: the query and every option,
        // with the store defaults already filled in.
        let vector_bytes;
        let query = match key.query {
            Query::Bytes(b) => b,
            Query::Vector(v) => {
                vector_bytes = vector::to_le_bytes(v);
                &vector_bytes
            }
        };
        let mut buf = Vec::with_capacity(query.len() + 256);
        buf.extend_from_slice(key.kind);
        buf.extend_from_slice(&(query.len() as u64).to_le_bytes());
        buf.extend_from_slice(query);
        buf.extend_from_slice(serde_json::to_string(key.opts).unwrap_or_default().as_bytes());
        format!("{}:r:{generation}:{:032x}", self.namespace, xxh3_128(&buf))
    }

    async fn cached_results(&self, key: Option<&str>) -> Option<Vec<SearchHit>> {
        let key = key?;
        match self.call("read results", self.cache.get(key)).await? {
            Some(bytes) => match serde_json::from_slice(&bytes) {
                Ok(hits) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    Some(hits)
                }
                Err(e) => {
                    self.error("decode results", &Error::Cache(e.to_string()));
                    None
                }
            },
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    async fn store_results(&self, key: &str, hits: &[SearchHit]) {
        let Ok(bytes) = serde_json::to_vec(hits) else { return };
        // A bump owed by a write that finished while this search ran makes the result suspect.
        if self.bump_pending.load(Ordering::SeqCst) {
            return;
        }
        self.call("write results", self.cache.set(key, &bytes, Some(self.result_ttl))).await;
    }

    /// Runs one cache operation through the breaker: `None` when it was skipped or failed
    /// (failures are logged and counted, and open the breaker).
    async fn call<T>(&self, what: &str, op: impl std::future::Future<Output = crate::error::Result<T>>) -> Option<T> {
        if !self.breaker.allow() {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match op.await {
            Ok(v) => {
                self.breaker.success();
                Some(v)
            }
            Err(e) => {
                self.breaker.failure();
                self.error(what, &e);
                None
            }
        }
    }

    fn error(&self, what: &str, e: &Error) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(cache = self.cache.kind(), error = %e, "cache {what} failed; continuing without it");
    }
}

/// Retries a failed generation bump in the background until it goes through, so other
/// processes sharing the cache stop serving results that predate the write as soon as the
/// cache is reachable again, even if this store makes no further call.
///
/// It goes around the breaker (on its own cadence, [`BUMP_RETRY`]), so the bump lands within
/// that time of the cache coming back; its failures cost no request any time.
async fn retry_bump(cache: Weak<ResultCache>) {
    loop {
        tokio::time::sleep(BUMP_RETRY).await;
        let Some(cache) = cache.upgrade() else { return };
        let done = !cache.bump_pending.load(Ordering::SeqCst)
            || match cache.cache.incr(&cache.generation_key()).await {
                Ok(_) => {
                    cache.breaker.success();
                    true
                }
                Err(_) => false,
            };
        if done {
            cache.bump_pending.store(false, Ordering::SeqCst);
            cache.retrying.store(false, Ordering::SeqCst);
            return;
        }
    }
}

/// A circuit breaker: closed (calls go through), open for an interval after a failure (calls
/// are skipped), then half-open (one call probes; the others keep being skipped until it
/// succeeds).
#[derive(Debug)]
struct Breaker {
    start: Instant,
    interval: Duration,
    /// Milliseconds since `start` until which the breaker is open; 0 = closed.
    open_until: AtomicU64,
    /// A probe call is in flight.
    probing: AtomicBool,
}

impl Breaker {
    fn new(interval: Duration) -> Self {
        Breaker { start: Instant::now(), interval, open_until: AtomicU64::new(0), probing: AtomicBool::new(false) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if self.now_ms() < until {
            return false;
        }
        // Half-open: exactly one caller probes.
        self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn success(&self) {
        if self.open_until.load(Ordering::Acquire) != 0 {
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            tracing::info!("cache answers again");
        }
    }

    fn failure(&self) {
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        self.open_until.store(self.now_ms().saturating_add(interval), Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_on_failure_and_lets_one_probe_through_after_the_interval() {
        let b = Breaker::new(Duration::from_millis(30));
        assert!(b.allow() && b.allow(), "closed: everything goes through");
        b.failure();
        assert!(!b.allow(), "open right after a failure");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "half-open: one probe");
        assert!(!b.allow(), "and only one");
        b.success();
        assert!(b.allow() && b.allow(), "closed again after the probe succeeded");
    }
}
