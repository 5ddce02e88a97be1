//! Run with: `cargo run -p marketking-examples --example custom_cache`
//!
//! Plugs your own cache into a store by implementing [`Cache`]: get/set of bytes with a TTL and
//! an atomic counter (the store's invalidation generation). This one wraps the in-process
//! [`MemoryCache`] and counts the calls, which shows what the store caches: the query embedding
//! and the search results, and a generation bump after every write so no stale result is served.
//!
//! Runs on a throwaway embedded store, no services needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use marketking_core::{async_trait, Cache, MemoryCache, NewDocument, Result, SearchOptions, VectorStore};

#[derive(Debug, Default)]
struct CountingCache {
    inner: MemoryCache,
    gets: AtomicU64,
    sets: AtomicU64,
    bumps: AtomicU64,
}

#[async_trait]
impl Cache for CountingCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.sets.fetch_add(1, Ordering::Relaxed);
        self.inner.set(key, value, ttl).await
    }

    async fn incr(&self, key: &str) -> Result<u64> {
        self.bumps.fetch_add(1, Ordering::Relaxed);
        self.inner.incr(key).await
    }

    async fn counter(&self, key: &str) -> Result<u64> {
        self.inner.counter(key).await
    }

    fn kind(&self) -> &'static str {
        "counting"
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("marketking-custom-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cache = Arc::new(CountingCache::default());
    let store = VectorStore::builder().db_path(dir.join("store.db")).cache(cache.clone()).build().await?;

    store.create(NewDocument::new("Trail shoes", "Grippy shoes for rocky trails")).await?;
    let opts = SearchOptions::top(3);
    let first = store.search("trail shoes", &opts).await?;
    let second = store.search("trail shoes", &opts).await?; // served from the cache
    assert_eq!(first, second);
    store.create(NewDocument::new("Road shoes", "Cushioned shoes for city roads")).await?;
    let third = store.search("trail shoes", &opts).await?; // the write invalidated the result
    assert_eq!(third.len(), 2, "a search after a write sees it");

    let stats = store.cache_stats();
    println!(
        "cache gets {}, sets {}, generation bumps {}; store counters: {} hits, {} misses",
        cache.gets.load(Ordering::Relaxed),
        cache.sets.load(Ordering::Relaxed),
        cache.bumps.load(Ordering::Relaxed),
        stats.hits,
        stats.misses
    );
    assert_eq!(cache.bumps.load(Ordering::Relaxed), 2, "one bump per write");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
