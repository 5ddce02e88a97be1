//! The [`Cache`] trait and its implementations: Redis, in-process and none.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::RedisCache;
pub use memory::MemoryCache;

/// A byte-oriented key/value cache with counters, shared by every store that uses it.
///
/// The store never fails a call because of the cache: errors returned here are logged and
/// counted. Implementations should therefore fail fast (short timeouts) rather than hang.
#[async_trait]
pub trait Cache: Send + Sync + Debug {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key` for `ttl` (or the implementation's default when `None`).
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()>;

    /// Atomically increments the integer counter under `key` (missing = 0) and returns the new
    /// value. Counters never expire: they are the store's cross-process invalidation generation.
    async fn incr(&self, key: &str) -> Result<u64>;

    /// Reads the counter under `key` (missing = 0).
    async fn counter(&self, key: &str) -> Result<u64>;

    /// A short name for logs and stats (`redis`, `memory`, `none`).
    fn kind(&self) -> &'static str;
}

#[async_trait]
impl<T: Cache + ?Sized> Cache for Arc<T> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        (**self).get(key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        (**self).set(key, value, ttl).await
    }
    async fn incr(&self, key: &str) -> Result<u64> {
        (**self).incr(key).await
    }
    async fn counter(&self, key: &str) -> Result<u64> {
        (**self).counter(key).await
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

#[async_trait]
impl<T: Cache + ?Sized> Cache for Box<T> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        (**self).get(key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        (**self).set(key, value, ttl).await
    }
    async fn incr(&self, key: &str) -> Result<u64> {
        (**self).incr(key).await
    }
    async fn counter(&self, key: &str) -> Result<u64> {
        (**self).counter(key).await
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

/// A cache that stores nothing: every `get` misses.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCache;

#[async_trait]
impl Cache for NoCache {
    async fn get(&self, _key: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    async fn set(&self, _key: &str, _value: &[u8], _ttl: Option<Duration>) -> Result<()> {
        Ok(())
    }
    async fn incr(&self, _key: &str) -> Result<u64> {
        Ok(0)
    }
    async fn counter(&self, _key: &str) -> Result<u64> {
        Ok(0)
    }
    fn kind(&self) -> &'static str {
        "none"
    }
}

/// Cache counters as seen by one store.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Which cache (`redis`, `memory`, `none`).
    pub kind: String,
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Cache operations that failed (the call went on without the cache).
    pub errors: u64,
    /// Cache operations skipped because the cache failed recently (circuit breaker open).
    pub bypassed: u64,
    /// `hits / (hits + misses)`, 0 when there were no lookups.
    pub hit_rate: f64,
}

#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) bypassed: AtomicU64,
}

impl CacheCounters {
    pub(crate) fn snapshot(&self, kind: &'static str) -> CacheStats {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        let total = hits + misses;
        CacheStats {
            kind: kind.to_string(),
            hits,
            misses,
            errors: self.errors.load(Ordering::Relaxed),
            bypassed: self.bypassed.load(Ordering::Relaxed),
            hit_rate: if total == 0 { 0.0 } else { hits as f64 / total as f64 },
        }
    }
}
