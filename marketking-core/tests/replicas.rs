//! Read replicas against a real PostgreSQL primary and streaming replica: the local topology
//! of `scripts/topology.sh` (`bash scripts/test.sh` starts it and exports its URLs). Missing
//! URLs fail the tests; nothing is skipped.
//!
//! The tests pause, stop and restart the one replica, so they run one at a time.
#![allow(missing_docs, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use marketking_core::{
    Cache, Error, HashingEmbedder, NewDocument, NoCache, RedisCache, SearchMode, SearchOptions, VectorStore,
};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the topology with `eval \"$(bash scripts/topology.sh start)\"` or run `bash scripts/test.sh`")
    })
}

fn primary_url() -> String {
    var("MK_TOPOLOGY_PRIMARY_URL")
}

fn replica_url() -> String {
    var("MK_TOPOLOGY_REPLICA_URL")
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

async fn sql(url: &str, statement: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query(statement, &[]).await.unwrap()
}

/// The topology script's `replica stop|start`.
fn replica(action: &str) {
    let status = std::process::Command::new("bash").arg(var("MK_TOPOLOGY_SCRIPT")).args(["replica", action]).status();
    assert!(status.unwrap().success(), "topology.sh replica {action} failed");
}

/// Resumes replay however a test ends, so a failed test does not leave the replica paused.
struct Resume;
impl Drop for Resume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([replica_url().as_str(), "-qAtc", "SELECT pg_wal_replay_resume()"])
            .output();
    }
}

struct Fixture {
    schema: String,
    table: String,
}

impl Fixture {
    fn new() -> Self {
        let schema = unique("mkr");
        Fixture { table: format!("{schema}.docs"), schema }
    }

    async fn store_with(&self, cache: impl Cache + 'static, max_lag: Duration) -> VectorStore {
        VectorStore::builder()
            .database_url(primary_url())
            .read_replicas([replica_url()])
            .max_replica_lag(max_lag)
            .table(&self.table)
            .pool_size(8)
            .embedder(HashingEmbedder::new(64).unwrap())
            .cache(cache)
            .build()
            .await
            .unwrap()
    }

    async fn store(&self) -> VectorStore {
        self.store_with(NoCache, Duration::from_secs(5)).await
    }

    async fn cleanup(self) {
        sql(&primary_url(), &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)).await;
    }
}

fn doc(word: &str) -> NewDocument {
    NewDocument::new(format!("note {word}"), format!("the word is {word}"))
}

fn text_only() -> SearchOptions {
    SearchOptions::default().mode(SearchMode::Text).k(5)
}

/// Ids a text search for `word` finds.
async fn found(store: &VectorStore, word: &str, opts: &SearchOptions) -> Vec<i64> {
    store.search_ids(word, opts).await.unwrap().into_iter().map(|h| h.id).collect()
}

/// Waits until the store's first replica is in rotation (replicas sample every 200 ms).
async fn in_rotation(store: &VectorStore, want: bool, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        let r = store.replication_stats().unwrap();
        if r.replicas[0].in_rotation == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Eight clients searching (text mode) for the words `{prefix}{n}`, `n < words`, each of which
/// one stored document holds, until [`finish`](Self::finish): every error, and every answer
/// other than one hit, is a failure. Client `c` asks for words `c`, `c + step`, `c + 2 * step`...
/// with `pause` between its searches.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    reads: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(store: &VectorStore, prefix: &'static str, words: usize, step: usize, pause: Duration) -> Load {
        let load = Load {
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            failures: Arc::new(Mutex::new(Vec::new())),
            reads: Arc::new(AtomicUsize::new(0)),
            clients: Vec::new(),
        };
        let clients = (0..8)
            .map(|c| {
                let (store, stop, failures, reads) =
                    (store.clone(), load.stop.clone(), load.failures.clone(), load.reads.clone());
                tokio::spawn(async move {
                    let mut i = c;
                    while !stop.load(Ordering::SeqCst) {
                        let word = format!("{prefix}{}", i % words);
                        match store.search_ids(&word, &text_only()).await {
                            Ok(hits) if hits.len() == 1 => {}
                            Ok(hits) => failures.lock().await.push(format!("{word}: {} hits", hits.len())),
                            Err(e) => failures.lock().await.push(format!("{word}: {e}")),
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                        i += step;
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load { clients, ..load }
    }

    /// Stops the clients: the searches made, and the failures.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            c.await.unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().await);
        (self.reads.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn searches_and_reads_go_to_the_replica_and_see_the_stores_own_writes() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new();
    let store = fx.store().await;
    assert!(in_rotation(&store, true, Duration::from_secs(5)).await, "{:?}", store.replication_stats());
    let report = store.batch((0..40).map(|i| doc(&format!("alpha{i}"))).collect()).await.unwrap();
    // Each read sees the batch, on the replica once it has replayed it (or on the primary).
    for i in 0..40 {
        let word = format!("alpha{i}");
        assert_eq!(found(&store, &word, &text_only()).await, vec![report.ids[i]], "{word}");
        assert_eq!(store.get(report.ids[i]).await.unwrap().title, format!("note {word}"));
    }
    assert_eq!(store.count(&marketking_core::Filter::everything()).await.unwrap(), 40);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.storage.documents, 40);
    let r = stats.replication.expect("replication stats");
    assert_eq!(r.replicas.len(), 1);
    assert_eq!(r.replicas[0].name, replica_url().split('@').nth(1).unwrap().split('/').next().unwrap());
    assert!(r.replicas[0].reads >= 60, "the replica served only {} of 82 reads: {r:?}", r.replicas[0].reads);
    assert!(r.write_position.is_some(), "{r:?}");
    // What a replica reports is never a password.
    assert!(!format!("{r:?} {store:?}").contains("postgres@"), "{r:?}");
    store.close().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_writes_are_each_seen_by_the_next_search_in_another_store() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new();
    let writer = fx.store().await;
    let reader = fx.store().await;
    assert!(in_rotation(&reader, true, Duration::from_secs(5)).await);
    let mut missed = Vec::new();
    for i in 0..1000 {
        let word = format!("pair{i}");
        let created = writer.create(doc(&word)).await.unwrap();
        let position = writer.write_position().expect("a write position after a write");
        let opts = text_only().consistent_after(position);
        if found(&reader, &word, &opts).await != vec![created.id] {
            missed.push(i);
        }
        // The writer's own next read sees it too, without a position.
        if i % 10 == 0 {
            assert_eq!(found(&writer, &word, &text_only()).await, vec![created.id], "{word} in the writer");
        }
    }
    assert!(missed.is_empty(), "searches that missed the write before them: {missed:?}");
    let r = reader.replication_stats().unwrap();
    eprintln!(
        "read-your-writes: 1000 pairs; reader: {} on the replica, {} on the primary",
        r.replicas[0].reads, r.primary_reads
    );
    assert!(r.replicas[0].reads > 0, "no search went to the replica: {r:?}");
    writer.close().await.unwrap();
    reader.close().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_replay_is_paused_is_skipped_within_the_lag_bound_and_comes_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new();
    let bound = Duration::from_millis(1000);
    let writer = fx.store().await;
    let reader = fx.store_with(NoCache, bound).await;
    assert!(in_rotation(&reader, true, Duration::from_secs(5)).await);
    let _resume = Resume;
    sql(&replica_url(), "SELECT pg_wal_replay_pause()").await;
    let paused_at = Instant::now();
    // The primary moves on; the replica does not.
    let mut last = None;
    while paused_at.elapsed() < Duration::from_millis(2500) {
        last = Some(writer.create(doc(&format!("lag{}", paused_at.elapsed().as_millis()))).await.unwrap());
        if !reader.replication_stats().unwrap().replicas[0].in_rotation {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let skipped_after = paused_at.elapsed();
    let r = reader.replication_stats().unwrap();
    assert!(!r.replicas[0].in_rotation, "still in rotation {skipped_after:?} after the pause: {r:?}");
    // Skipped within the bound plus two samples (200 ms each) and the write cadence.
    assert!(skipped_after < bound + Duration::from_millis(700), "skipped only after {skipped_after:?}");
    assert!(r.replicas[0].reason.as_deref().unwrap_or("").contains("lag"), "{r:?}");
    // The reader (no write of its own, no position) now reads from the primary: it sees the
    // latest write, which the paused replica does not have.
    let last = last.unwrap();
    let word = last.title.trim_start_matches("note ").to_string();
    let before = reader.replication_stats().unwrap().primary_reads;
    assert_eq!(found(&reader, &word, &text_only()).await, vec![last.id]);
    assert_eq!(reader.replication_stats().unwrap().primary_reads, before + 1);
    sql(&replica_url(), "SELECT pg_wal_replay_resume()").await;
    assert!(in_rotation(&reader, true, Duration::from_secs(5)).await, "{:?}", reader.replication_stats());
    eprintln!("paused replica skipped {skipped_after:?} after the pause (bound {bound:?})");
    writer.close().await.unwrap();
    reader.close().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_cached_under_a_new_generation_includes_the_write_that_made_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new();
    let redis = marketking_testkit::redis_url();
    // Two processes' stores sharing one Redis: the writer's bump hides older results from both.
    let writer = fx.store_with(RedisCache::new(&redis).unwrap(), Duration::from_secs(30)).await;
    let reader = fx.store_with(RedisCache::new(&redis).unwrap(), Duration::from_secs(30)).await;
    writer.create(doc("seed")).await.unwrap();
    assert!(in_rotation(&reader, true, Duration::from_secs(5)).await);
    let _resume = Resume;
    sql(&replica_url(), "SELECT pg_wal_replay_pause()").await;
    // The replica is behind but within the (30 s) bound: still in rotation.
    let created = writer.create(doc("fresh")).await.unwrap();
    assert!(reader.replication_stats().unwrap().replicas[0].in_rotation);
    // The reader's search is cached under the generation the write made: it must have been
    // read where the write is (the primary), not on the paused replica.
    let opts = text_only();
    assert_eq!(found(&reader, "fresh", &opts).await, vec![created.id], "first (computed) search");
    assert_eq!(found(&reader, "fresh", &opts).await, vec![created.id], "second (cached) search");
    assert!(reader.cache_stats().hits >= 1, "{:?}", reader.cache_stats());
    // A search on a word the replica has (no write since) may use it.
    assert_eq!(found(&reader, "seed", &opts).await.len(), 1);
    sql(&replica_url(), "SELECT pg_wal_replay_resume()").await;
    writer.close().await.unwrap();
    reader.close().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_replica_under_load_fails_no_read_and_it_returns_after_a_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new();
    let store = fx.store().await;
    let report = store.batch((0..50).map(|i| doc(&format!("load{i}"))).collect()).await.unwrap();
    // A fresh store, so every read below is routed without a floor of its own.
    let reader = fx.store().await;
    assert!(in_rotation(&reader, true, Duration::from_secs(5)).await);
    let load = Load::start(&reader, "load", 50, 8, Duration::ZERO);
    // `MK_REPLICA_LOAD_SECS` (default 6): a quarter before the stop, half down, a quarter after
    // the restart (BENCHMARKS.md has a 60 s run).
    let total: f64 = std::env::var("MK_REPLICA_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(6.0);
    tokio::time::sleep(Duration::from_secs_f64(total / 4.0)).await;
    let before_stop = reader.replication_stats().unwrap().replicas[0].reads;
    assert!(before_stop > 0, "no read went to the replica before it stopped");
    replica("stop");
    let stopped = Instant::now();
    assert!(in_rotation(&reader, false, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_secs_f64(total / 2.0).saturating_sub(stopped.elapsed())).await;
    let primary_while_down = reader.replication_stats().unwrap().primary_reads;
    replica("start");
    assert!(in_rotation(&reader, true, Duration::from_secs(10)).await, "{:?}", reader.replication_stats());
    let out_of_rotation = stopped.elapsed();
    let back = reader.replication_stats().unwrap().replicas[0].reads;
    tokio::time::sleep(Duration::from_secs_f64(total / 4.0)).await;
    let (reads, failures) = load.finish().await;
    let r = reader.replication_stats().unwrap();
    eprintln!(
        "replica stop/start under 8 clients: {} reads, {} failed; replica {} ({} failed over), primary {}; out of rotation {:?}",
        reads,
        failures.len(),
        r.replicas[0].reads,
        r.replicas[0].failed_reads,
        r.primary_reads,
        out_of_rotation
    );
    assert!(failures.is_empty(), "failed reads: {:?}", &failures[..failures.len().min(5)]);
    assert!(primary_while_down > 0, "the primary served nothing while the replica was down: {r:?}");
    assert!(r.replicas[0].reads > back, "the restarted replica served no read: {r:?}");
    assert_eq!(report.ids.len(), 50);
    store.close().await.unwrap();
    reader.close().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test]
async fn replica_settings_are_checked_and_name_their_field() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Read replicas without a PostgreSQL primary.
    let path = std::env::temp_dir().join(format!("{}.db", unique("mkr")));
    let e = VectorStore::builder()
        .embedded(&path)
        .read_replicas([replica_url()])
        .embedder(HashingEmbedder::new(8).unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Config { field, .. } if field == "DATABASE_READ_URLS"), "{e}");
    // A malformed replica URL.
    let fx = Fixture::new();
    let e = VectorStore::builder()
        .database_url(primary_url())
        .read_replicas(["postgres://u:secret@127.0.0.1:notaport/db"])
        .table(&fx.table)
        .embedder(HashingEmbedder::new(8).unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Config { field, .. } if field == "DATABASE_READ_URLS"), "{e}");
    assert!(!e.to_string().contains("secret"), "{e}");
    // A replica that is down at start: the store opens, and reads go to the primary.
    let store = VectorStore::builder()
        .database_url(primary_url())
        .read_replicas(["postgres://postgres@127.0.0.1:1/mk"])
        .table(&fx.table)
        .embedder(HashingEmbedder::new(8).unwrap())
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    let created = store.create(doc("lonely")).await.unwrap();
    assert_eq!(found(&store, "lonely", &text_only()).await, vec![created.id]);
    let r = store.replication_stats().unwrap();
    assert!(!r.replicas[0].in_rotation && r.replicas[0].reason.is_some(), "{r:?}");
    assert!(r.primary_reads >= 1, "{r:?}");
    store.close().await.unwrap();
    // A server of another cluster (the machine's own PostgreSQL) given as a replica: never in
    // rotation, whatever its WAL positions say.
    let store = VectorStore::builder()
        .database_url(primary_url())
        .read_replicas([marketking_testkit::database_url()])
        .table(&fx.table)
        .embedder(HashingEmbedder::new(8).unwrap())
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    let r = store.replication_stats().unwrap();
    assert!(!r.replicas[0].in_rotation, "{r:?}");
    assert!(r.replicas[0].reason.as_deref().unwrap_or("").contains("another cluster"), "{r:?}");
    assert_eq!(found(&store, "lonely", &text_only()).await, vec![created.id]);
    store.close().await.unwrap();
    // A multi-host primary URL listing the standby first: `target_session_attrs=read-write`
    // finds the writable server (what a failover tool's host list relies on).
    let host = |url: &str| url.split('@').nth(1).unwrap().split('/').next().unwrap().to_string();
    let multi = format!(
        "postgres://postgres@{},{}/mk?target_session_attrs=read-write",
        host(&replica_url()),
        host(&primary_url())
    );
    let store = VectorStore::builder()
        .database_url(multi)
        .table(&fx.table)
        .embedder(HashingEmbedder::new(8).unwrap())
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    let created = store.create(doc("writable")).await.unwrap();
    assert_eq!(found(&store, "writable", &text_only()).await, vec![created.id]);
    store.close().await.unwrap();
    fx.cleanup().await;
}

/// `redis-cli` against one node of the topology's cluster.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cluster_ports() -> Vec<u16> {
    var("MK_TOPOLOGY_REDIS_NODES")
        .split(',')
        .map(|n| n.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap())
        .collect()
}

/// The master nodes holding keys that match `pattern`, with their keys.
fn masters_with(pattern: &str) -> Vec<(u16, Vec<String>)> {
    cluster_ports()
        .into_iter()
        .filter(|p| redis_cli(*p, &["role"]).starts_with("master"))
        .map(|p| (p, redis_cli(p, &["--scan", "--pattern", pattern]).lines().map(str::to_string).collect::<Vec<_>>()))
        .filter(|(_, keys)| !keys.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cache_runs_on_a_redis_cluster_with_each_stores_keys_on_one_master() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new();
    let cache = RedisCache::new(&var("MK_TOPOLOGY_REDIS_NODES")).unwrap();
    assert!(cache.is_cluster());
    let store = fx.store_with(cache, Duration::from_secs(5)).await;
    let created = store.create(doc("clustered")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(found(&store, "clustered", &text_only()).await, vec![created.id]);
    }
    let stats = store.cache_stats();
    assert_eq!((stats.kind.as_str(), stats.errors), ("redis", 0), "{stats:?}");
    assert!(stats.hits >= 2, "{stats:?}");
    // The generation, its position and the results share one hash tag, so one master holds them.
    let gen = masters_with("mk:{*}:gen");
    let tags: Vec<String> =
        gen.iter().flat_map(|(_, keys)| keys.iter().map(|k| k.split(':').nth(1).unwrap().to_string())).collect();
    let masters: Vec<_> = tags.iter().map(|tag| masters_with(&format!("mk:{tag}:*"))).collect();
    assert!(
        masters.iter().any(|m| m.len() == 1 && m[0].1.iter().any(|k| k.contains(":r:"))),
        "no store's keys (generation and results) are on exactly one master: {masters:?}"
    );
    // Cluster URLs are checked and never echo a password.
    let e = RedisCache::new("redis+cluster://:s3cret@127.0.0.1:7100/3").unwrap_err();
    assert!(e.to_string().contains("REDIS_URL") && !e.to_string().contains("s3cret"), "{e}");
    store.close().await.unwrap();
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_redis_master_under_load_fails_no_search_and_the_cache_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fx = Fixture::new();
    let gen_keys = || -> Vec<(u16, String)> {
        masters_with("mk:{*}:gen").into_iter().flat_map(|(p, keys)| keys.into_iter().map(move |k| (p, k))).collect()
    };
    let existing = gen_keys();
    let store = fx.store_with(RedisCache::new(&var("MK_TOPOLOGY_REDIS_NODES")).unwrap(), Duration::from_secs(5)).await;
    let report = store.batch((0..8).map(|i| doc(&format!("hot{i}"))).collect()).await.unwrap();
    assert_eq!(report.ids.len(), 8);
    // The master holding this store's keys: the one with the generation counter its write made.
    let (master, _) =
        gen_keys().into_iter().find(|k| !existing.contains(k)).expect("this store's generation counter on a master");
    let load = Load::start(&store, "hot", 8, 1, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = store.cache_stats();
    assert!(before.hits > 0, "{before:?}");
    let status = std::process::Command::new("bash")
        .arg(var("MK_TOPOLOGY_SCRIPT"))
        .args(["redis", "stop", &master.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    // Failover (node timeout 2 s, then a replica's election), then hits again.
    let mut recovered = None;
    while killed.elapsed() < Duration::from_secs(30) {
        let a = store.cache_stats().hits;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let during = store.cache_stats();
        if during.errors > before.errors && during.hits > a + 20 {
            recovered = Some(killed.elapsed());
            break;
        }
    }
    let (_, failures) = load.finish().await;
    let after = store.cache_stats();
    let status = std::process::Command::new("bash").arg(var("MK_TOPOLOGY_SCRIPT")).args(["redis", "start"]).status();
    assert!(status.unwrap().success(), "the cluster did not come back whole");
    eprintln!(
        "redis master {master} killed under 8 clients: {} failed searches; cache errors {} -> {}, hits {} -> {}; hits again after {recovered:?}",
        failures.len(),
        before.errors,
        after.errors,
        before.hits,
        after.hits
    );
    assert!(failures.is_empty(), "failed searches: {:?}", &failures[..failures.len().min(5)]);
    assert!(after.errors > before.errors, "the kill was not noticed: {after:?}");
    assert!(recovered.is_some(), "the cache hit rate did not recover within 30 s: {after:?}");
    store.close().await.unwrap();
    fx.cleanup().await;
}
