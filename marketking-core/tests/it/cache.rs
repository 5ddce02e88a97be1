//! The cache in front of the store: Redis shared by several stores, and a Redis that dies.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use marketking_core::{Cache, MemoryCache, NewDocument, RedisCache, SearchOptions};

use crate::common::{redis_url, PgTable, TestEmbedder};

#[tokio::test]
async fn repeated_search_is_served_by_redis_and_writes_from_another_store_invalidate_it() {
    let t = PgTable::new();
    let emb = TestEmbedder::new(64);
    let a = t.store(emb.clone(), RedisCache::new(&redis_url()).unwrap()).await.unwrap();
    let b = t.store(TestEmbedder::new(64), RedisCache::new(&redis_url()).unwrap()).await.unwrap();
    a.batch(vec![
        NewDocument::new("Red trail shoes", "grippy running shoes"),
        NewDocument::new("Tent", "two person tent"),
    ])
    .await
    .unwrap();

    let opts = SearchOptions::top(5);
    let first = a.search("running shoes", &opts).await.unwrap();
    let calls = emb.calls();
    // Proof that the repeat runs no SQL: with the table renamed away, any query would fail.
    t.sql(&format!("ALTER TABLE {} RENAME TO docs_away", t.table)).await;
    let second = a.search("running shoes", &opts).await.unwrap();
    t.sql(&format!("ALTER TABLE {}.docs_away RENAME TO docs", t.schema)).await;
    assert_eq!(first, second);
    assert_eq!(emb.calls(), calls, "a repeated search makes no embedder call");
    let stats = a.stats().await.unwrap();
    assert!(stats.cache.hits >= 1 && stats.cache.errors == 0, "{:?}", stats.cache);
    assert_eq!(stats.cache.kind, "redis");

    // A write through the second store (another process, same Redis) invalidates the first's
    // cached results.
    let new = b.create(NewDocument::new("Trail running shoes v2", "new running shoes")).await.unwrap();
    let third = a.search("running shoes", &opts).await.unwrap();
    assert!(third.iter().any(|h| h.document.id == new.id), "search after a write sees the new document");
    b.delete(new.id).await.unwrap();
    let fourth = a.search("running shoes", &opts).await.unwrap();
    assert!(fourth.iter().all(|h| h.document.id != new.id), "and stops seeing it after a delete");
    t.cleanup().await;
}

struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        #[allow(clippy::zombie_processes)] // waited for in Drop
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test");
        // Wait until it accepts connections (bounded).
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return PrivateRedis { child, port };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("private redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn redis_stopped_mid_test_degrades_to_no_cache() {
    let mut redis = PrivateRedis::start();
    let t = PgTable::new();
    let cache = RedisCache::new(&redis.url()).unwrap().with_timeout(Duration::from_millis(200));
    cache.ping().await.unwrap();
    let store = t.store(TestEmbedder::new(32), cache).await.unwrap();
    store.create(NewDocument::new("before", "written while redis is up")).await.unwrap();
    assert_eq!(store.search("redis", &SearchOptions::top(3)).await.unwrap().len(), 1);
    assert_eq!(store.stats().await.unwrap().cache.errors, 0);

    redis.child.kill().unwrap();
    redis.child.wait().unwrap();

    let doc = store.create(NewDocument::new("after", "written while redis is down")).await.unwrap();
    let hits = store.search("written while redis", &SearchOptions::top(3)).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().any(|h| h.document.id == doc.id));
    let stats = store.stats().await.unwrap();
    assert!(stats.cache.errors > 0, "cache errors are counted: {:?}", stats.cache);
    assert!(store.ping_cache().await.is_err());
    t.cleanup().await;
}

#[tokio::test]
async fn memory_cache_counts_hits_and_misses() {
    let t = PgTable::new();
    let emb = TestEmbedder::new(32);
    let store = t.store(emb.clone(), MemoryCache::default()).await.unwrap();
    store.create(NewDocument::new("a", "alpha beta")).await.unwrap();
    for _ in 0..5 {
        store.search("alpha", &SearchOptions::top(1)).await.unwrap();
    }
    let s = store.stats().await.unwrap();
    assert_eq!(s.cache.kind, "memory");
    assert_eq!(s.cache.hits, 4);
    assert!(s.cache.hit_rate > 0.5 && s.cache.hit_rate < 1.0, "{:?}", s.cache);
    assert_eq!(s.embedder.calls, 2, "one for the document, one for the query");
    t.cleanup().await;
}

#[tokio::test]
async fn cache_trait_round_trips_on_redis() {
    let c = RedisCache::new(&redis_url()).unwrap();
    let key = crate::common::unique("mkt-cache");
    assert_eq!(c.get(&key).await.unwrap(), None);
    c.set(&key, b"value", Some(Duration::from_secs(30))).await.unwrap();
    assert_eq!(c.get(&key).await.unwrap().as_deref(), Some(&b"value"[..]));
    let ctr = format!("{key}:n");
    assert_eq!(c.counter(&ctr).await.unwrap(), 0);
    assert_eq!(c.incr(&ctr).await.unwrap(), 1);
    assert_eq!(c.incr(&ctr).await.unwrap(), 2);
    assert_eq!(c.counter(&ctr).await.unwrap(), 2);
    let dbg = format!("{:?}", RedisCache::new("redis://:sekrit@127.0.0.1:6379/0").unwrap());
    assert!(!dbg.contains("sekrit"), "{dbg}");
}

/// A Redis partition that keeps the cached data: `CLIENT PAUSE ... WRITE` blocks the generation
/// bump (an INCR) while reads still answer. The write's bump times out; the search after it
/// must not be served the result cached before it, although Redis still holds that result.
#[tokio::test]
async fn a_write_whose_bump_failed_is_never_followed_by_a_stale_cached_result() {
    let redis = PrivateRedis::start();
    let t = PgTable::new();
    let cache = RedisCache::new(&redis.url()).unwrap().with_timeout(Duration::from_millis(150));
    let store = t.store(TestEmbedder::new(32), cache).await.unwrap();
    let first = store.create(NewDocument::new("first", "partition test document")).await.unwrap();
    let opts = SearchOptions::top(10);
    let before = store.search("partition test document", &opts).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(store.search("partition test document", &opts).await.unwrap(), before, "served from Redis");
    assert!(store.cache_stats().hits >= 1);

    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("WRITE").query_async(&mut admin).await.unwrap();
    let second = store.create(NewDocument::new("second", "partition test document too")).await.unwrap();
    let errors_after_write = store.cache_stats().errors;
    assert!(errors_after_write >= 1, "the bump failed: {:?}", store.cache_stats());

    // During the pause (reads still answer) and after it: never the stale single hit.
    for _ in 0..3 {
        let hits = store.search("partition test document", &opts).await.unwrap();
        let ids: Vec<i64> = hits.iter().map(|h| h.document.id).collect();
        assert!(ids.contains(&second.id) && ids.contains(&first.id), "stale result: {ids:?}");
    }
    tokio::time::sleep(Duration::from_millis(1700)).await; // the pause ends
    let hits = store.search("partition test document", &opts).await.unwrap();
    assert_eq!(hits.len(), 2);
    // Once the bump went through, results are cached again.
    let again = store.search("partition test document", &opts).await.unwrap();
    assert_eq!(again, hits);
    let hits_before = store.cache_stats().hits;
    store.search("partition test document", &opts).await.unwrap();
    assert!(store.cache_stats().hits > hits_before, "{:?}", store.cache_stats());
    t.cleanup().await;
}

/// A cache that always fails, counting how often it is asked.
#[derive(Debug, Default)]
struct DeadCache {
    calls: std::sync::atomic::AtomicUsize,
}

#[marketking_core::async_trait]
impl Cache for DeadCache {
    async fn get(&self, _key: &str) -> marketking_core::Result<Option<Vec<u8>>> {
        self.fail()
    }
    async fn set(&self, _key: &str, _value: &[u8], _ttl: Option<Duration>) -> marketking_core::Result<()> {
        self.fail()
    }
    async fn incr(&self, _key: &str) -> marketking_core::Result<u64> {
        self.fail()
    }
    async fn counter(&self, _key: &str) -> marketking_core::Result<u64> {
        self.fail()
    }
    fn kind(&self) -> &'static str {
        "dead"
    }
}

impl DeadCache {
    fn fail<T>(&self) -> marketking_core::Result<T> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(marketking_core::Error::Cache("connection refused".into()))
    }
}

/// A dead cache costs one failed call per breaker interval, not three per search.
#[tokio::test]
async fn a_dead_cache_is_left_alone_between_probes() {
    let t = PgTable::new();
    let cache = std::sync::Arc::new(DeadCache::default());
    let store = t.store(TestEmbedder::new(32), cache.clone()).await.unwrap();
    store.create(NewDocument::new("doc", "dead cache document")).await.unwrap();
    for _ in 0..20 {
        assert_eq!(store.search("dead cache document", &SearchOptions::top(1)).await.unwrap().len(), 1);
    }
    // Failed calls made by searches and writes (the background retry of the failed bump is not
    // counted: it costs no request anything).
    let stats = store.cache_stats();
    assert!(stats.errors <= 2, "the breaker opened after the first failure: {stats:?}");
    assert!(stats.bypassed >= 40, "{stats:?}");
    assert!(cache.calls.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    t.cleanup().await;
}
