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
