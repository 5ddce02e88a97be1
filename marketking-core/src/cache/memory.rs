//! In-process cache over moka.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::future::Cache as Moka;
use moka::Expiry;

use super::Cache;
use crate::error::Result;

/// An in-process cache (moka), bounded by total bytes. Shared only inside one process: for several
/// processes or hosts use [`RedisCache`](crate::RedisCache).
#[derive(Debug, Clone)]
pub struct MemoryCache {
    inner: Moka<String, (Vec<u8>, Option<Duration>)>,
    counters: std::sync::Arc<Mutex<HashMap<String, u64>>>,
}

struct PerEntryTtl;

impl Expiry<String, (Vec<u8>, Option<Duration>)> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &(Vec<u8>, Option<Duration>),
        _now: Instant,
    ) -> Option<Duration> {
        value.1
    }
    fn expire_after_update(
        &self,
        _key: &String,
        value: &(Vec<u8>, Option<Duration>),
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        value.1
    }
}

impl Default for MemoryCache {
    /// 64 MiB.
    fn default() -> Self {
        MemoryCache::new(64 * 1024 * 1024)
    }
}

impl MemoryCache {
    /// A cache holding at most about `max_bytes` of keys and values.
    pub fn new(max_bytes: u64) -> Self {
        let inner = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &(Vec<u8>, Option<Duration>)| {
                (k.len() + v.0.len() + 32).min(u32::MAX as usize) as u32
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryCache { inner, counters: Default::default() }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.get(key).await.map(|(v, _)| v))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.inner.insert(key.to_string(), (value.to_vec(), ttl)).await;
        Ok(())
    }

    async fn incr(&self, key: &str) -> Result<u64> {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let v = c.entry(key.to_string()).or_default();
        *v += 1;
        Ok(*v)
    }

    async fn counter(&self, key: &str) -> Result<u64> {
        Ok(self.counters.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied().unwrap_or(0))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
