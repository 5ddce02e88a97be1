//! Reliability under hostile input and faults: stored values that do not round-trip through
//! `serde_json` by default, out-of-range dates and vectors, writes whose caller gave up, and
//! database connections that die under the pool.

use std::time::Duration;

use async_trait::async_trait;
use marketking_core::{
    CommitGate, DocumentPatch, Embedder, Error, HashingEmbedder, NewDocument, NoCache, Result, SearchOptions,
    VectorStore,
};
use serde_json::json;

use crate::common::{database_url, random_vectors, unique, Fixture, Kind, PgTable};

crate::conformance!(
    extreme_numbers_in_metadata_round_trip,
    out_of_range_dates_and_vectors_are_invalid_input,
    literal_backslash_u0000_is_text_and_a_real_nul_is_refused,
    a_cancelled_write_commits_nothing,
    a_write_dropped_mid_way_is_applied_exactly_when_cancel_says_so,
    a_slow_embedder_holds_no_database_lock,
);

/// `{"a": f64::MAX}` is stored by PostgreSQL as a numeric and printed back as a 309-digit
/// integer; every read path must give the same number back (it used to panic in row decoding).
async fn extreme_numbers_in_metadata_round_trip(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(16).await;
    let meta = json!({
        "max": f64::MAX, "min": f64::MIN, "tiny": 5e-324, "small": 1e-300, "big_int": u64::MAX,
        "neg_int": i64::MIN, "nested": {"list": [1.7976931348623157e308, -0.0, 0.1]},
    });
    let doc = store
        .create(NewDocument::new("Extreme", "numbers at the edges").with_key("x").with_metadata(obj(meta.clone())))
        .await
        .unwrap();
    assert_eq!(doc.metadata, meta);
    assert_eq!(store.get(doc.id).await.unwrap().metadata, meta);
    assert_eq!(store.get_by_key("x").await.unwrap().metadata, meta);
    let hits = store.search("numbers at the edges", &SearchOptions::top(3)).await.unwrap();
    assert_eq!(hits.first().map(|h| &h.document.metadata), Some(&meta));
    let listed = store.list(0, 10, true).await.unwrap();
    assert_eq!(listed.first().map(|d| &d.metadata), Some(&meta));
    // An upsert of the same key reads the stored metadata to decide what changed.
    let (_, outcome) = store
        .upsert(NewDocument::new("Extreme", "numbers at the edges").with_key("x").with_metadata(obj(meta)))
        .await
        .unwrap();
    assert_eq!(outcome, marketking_core::UpsertOutcome::Unchanged);
    t.cleanup().await;
}

async fn out_of_range_dates_and_vectors_are_invalid_input(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(16).await;
    store.create(NewDocument::new("A document", "with some content")).await.unwrap();
    let ancient = chrono::NaiveDate::from_ymd_opt(-4714, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    for opts in [
        SearchOptions { created_before: Some(ancient), ..SearchOptions::top(3) },
        SearchOptions { created_after: Some(ancient), ..SearchOptions::top(3) },
    ] {
        let err = store.search("content", &opts).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field.starts_with("created_")), "{err:?}");
    }
    // An empty range is valid and matches nothing.
    let now = chrono::Utc::now();
    let empty = SearchOptions { created_after: Some(now), created_before: Some(now), ..SearchOptions::top(3) };
    assert!(store.search("content", &empty).await.unwrap().is_empty());

    // Values whose squares overflow 32-bit floats (pgvector's arithmetic) would score NaN.
    let huge = vec![3e38f32; 16];
    let err = store.search_by_vector(&huge, &SearchOptions::top(3)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "vector"), "{err:?}");
    let err = store.create(NewDocument::new("Huge", "vector").with_embedding(huge)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "embedding"), "{err:?}");
    // Values too small for their squares to register are as undefined as zeros.
    let err = store.search_by_vector(&[1e-30f32; 16], &SearchOptions::top(3)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "vector"), "{err:?}");
    // Large but safe values work and score as their direction does.
    let mut big = vec![0f32; 16];
    big[0] = 1e15;
    let stored = store.create(NewDocument::new("Big", "vector").with_embedding(big.clone())).await.unwrap();
    let hits = store.search_by_vector(&big, &SearchOptions::top(1)).await.unwrap();
    assert_eq!(hits.first().map(|h| h.document.id), Some(stored.id));
    assert!(hits.first().is_some_and(|h| (h.score - 1.0).abs() < 1e-4), "{hits:?}");
    assert_eq!(store.stats().await.unwrap().storage.documents, 2);
    t.cleanup().await;
}

async fn literal_backslash_u0000_is_text_and_a_real_nul_is_refused(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(16).await;
    let meta = json!({"path": "C:\\u0000\\dir", "\\u0000key": "v"});
    let doc = store.create(NewDocument::new("Escapes", "literal text").with_metadata(obj(meta.clone()))).await.unwrap();
    assert_eq!(store.get(doc.id).await.unwrap().metadata, meta);
    for bad in [json!({"s": "a\u{0}b"}), json!({"k\u{0}": 1}), json!({"list": [["x\u{0}"]]})] {
        let err = store.create(NewDocument::new("Nul", "in metadata").with_metadata(obj(bad))).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "metadata"), "{err:?}");
    }
    let err = store
        .update(doc.id, DocumentPatch::new().metadata(marketking_core::metadata!({"s": "\u{0}"})))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(store.stats().await.unwrap().storage.documents, 1);
    t.cleanup().await;
}

/// An embedder that cancels a gate while it embeds: the write then reaches its commit point
/// with the gate cancelled, on either backend.
#[derive(Debug)]
struct CancellingEmbedder {
    inner: HashingEmbedder,
    gate: CommitGate,
}

#[async_trait]
impl Embedder for CancellingEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        assert!(self.gate.cancel(), "nothing is committing while the batch is being embedded");
        self.inner.embed(texts).await
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
}

async fn a_cancelled_write_commits_nothing(kind: Kind) {
    let t = Fixture::new(kind);
    let gate = CommitGate::new();
    let store = t
        .store(CancellingEmbedder { inner: HashingEmbedder::new(16).unwrap(), gate: gate.clone() }, NoCache)
        .await
        .unwrap();
    let docs: Vec<NewDocument> = (0..300).map(|i| NewDocument::new(format!("Doc {i}"), "to be cancelled")).collect();
    let err = gate.scope(store.batch(docs)).await.unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    assert_eq!(store.stats().await.unwrap().storage.documents, 0, "a cancelled batch writes nothing");
    // Outside the cancelled scope the store writes as usual.
    store.create(NewDocument::new("After", "the cancelled batch")).await.unwrap();
    assert_eq!(store.stats().await.unwrap().storage.documents, 1);
    t.cleanup().await;
}

/// The HTTP timeout case: the caller drops the write's future after a while and asks the gate.
/// Whatever the timing, `cancel()` must tell the truth: true = nothing written, false = all of
/// it. Several timeouts cover "before", "during" and "after" the write.
async fn a_write_dropped_mid_way_is_applied_exactly_when_cancel_says_so(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(64).await;
    let vectors = random_vectors(4000, 64, 10, 7);
    let mut expected = 0;
    let mut outcomes = Vec::new();
    for (round, ms) in [0u64, 5, 20, 60, 150, 400, 5000].into_iter().enumerate() {
        let docs: Vec<NewDocument> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| NewDocument::new(format!("r{round} d{i}"), "dropped mid-way").with_embedding(v.clone()))
            .collect();
        let gate = CommitGate::new();
        let done = tokio::time::timeout(Duration::from_millis(ms), gate.scope(store.batch(docs))).await;
        let written = match done {
            Ok(r) => {
                r.unwrap();
                true
            }
            Err(_) => !gate.cancel(),
        };
        if written {
            expected += vectors.len() as u64;
        }
        outcomes.push((ms, written));
        // The next write waits for any write still running on a blocking thread, so the count
        // read after it is final.
        store.create(NewDocument::new(format!("marker {round}"), "serialises after the batch")).await.unwrap();
        expected += 1;
        assert_eq!(store.stats().await.unwrap().storage.documents, expected, "after {outcomes:?}");
    }
    assert!(outcomes.iter().any(|(_, w)| *w), "the longest timeout lets a batch through: {outcomes:?}");
    t.cleanup().await;
}

/// A store whose connections carry an application name of their own, so a test can terminate
/// exactly its backends without touching other tests' connections.
async fn store_with_app_name(t: &PgTable, app: &str, pool: u32) -> VectorStore {
    let sep = if database_url().contains('?') { '&' } else { '?' };
    VectorStore::builder()
        .database_url(format!("{}{sep}application_name={app}", database_url()))
        .table(&t.table)
        .pool_size(pool)
        .embedder(HashingEmbedder::new(16).unwrap())
        .cache(NoCache)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn terminated_backends_cost_no_failed_read() {
    let t = PgTable::new();
    let app = unique("mk_term");
    let store = store_with_app_name(&t, &app, 4).await;
    let doc =
        store.create(NewDocument::new("Survivor", "read after its connections died").with_key("s")).await.unwrap();
    // Open all four pooled connections.
    let reads: Vec<_> = (0..8).map(|_| store.get(doc.id)).collect();
    for r in futures_util::future::join_all(reads).await {
        r.unwrap();
    }
    for round in 0..3 {
        let killed = t
            .sql(&format!(
                "SELECT count(pg_terminate_backend(pid))::int FROM pg_stat_activity WHERE application_name = '{app}'"
            ))
            .await;
        let killed: i32 = killed[0].get(0);
        assert!(killed >= 1, "round {round}: the store's connections were found and terminated");
        // Every kind of idempotent read succeeds: the dead connections are never handed out, or
        // the read is retried once on a fresh one.
        assert_eq!(store.get(doc.id).await.unwrap().id, doc.id);
        assert_eq!(store.get_by_key("s").await.unwrap().id, doc.id);
        assert_eq!(store.search("read after", &SearchOptions::top(1)).await.unwrap().len(), 1);
        assert_eq!(store.list(0, 10, false).await.unwrap().len(), 1);
        assert_eq!(store.stats().await.unwrap().storage.documents, 1);
        store.ping().await.unwrap();
    }
    t.cleanup().await;
}

/// A TCP proxy to PostgreSQL that the test can take down (existing connections cut, new ones
/// refused) and bring back on the same port: a server outage without touching the shared one.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub(crate) async fn start(port: u16, target: (String, u16)) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { break };
                        let target = target.clone();
                        conns.spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect((target.0.as_str(), target.1)).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                }
            }
            conns.abort_all();
        });
        Proxy { port, stop: Some(stop), task: Some(task) }
    }

    pub(crate) async fn down(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The shared PostgreSQL's address, a proxy started in front of it, and the URL through it.
pub(crate) async fn proxied_database() -> ((String, u16), Proxy, String) {
    let base: tokio_postgres::Config = database_url().parse().unwrap();
    let host = match base.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        other => panic!("this test proxies a TCP server, not {other:?}"),
    };
    let target = (host, base.get_ports().first().copied().unwrap_or(5432));
    let proxy = Proxy::start(0, target.clone()).await;
    let password = base.get_password().map(|p| format!(":{}", String::from_utf8_lossy(p))).unwrap_or_default();
    let url = format!(
        "postgres://{}{password}@127.0.0.1:{}/{}",
        base.get_user().unwrap_or("postgres"),
        proxy.port,
        base.get_dbname().unwrap_or("postgres")
    );
    (target, proxy, url)
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_at_once_and_recovery_is_immediate() {
    let t = PgTable::new();
    let (target, mut proxy, url) = proxied_database().await;
    let store = VectorStore::builder()
        .database_url(url)
        .table(&t.table)
        .pool_size(2)
        .embedder(HashingEmbedder::new(16).unwrap())
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    let doc = store.create(NewDocument::new("Outage", "survives a server outage")).await.unwrap();

    proxy.down().await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let err = store.get(doc.id).await.unwrap_err();
        assert!(err.is_unavailable(), "a lost server is `Unavailable` (503), not a database error: {err:?}");
        let err = store.create(NewDocument::new("During", "the outage")).await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
    // Refused connections fail at once rather than waiting out the 10 s checkout timeout
    // (a loose bound: ten calls, each allowed well over a refused connect).
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    match store.get(doc.id).await.unwrap_err() {
        Error::Unavailable { retry_after, .. } => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("{other:?}"),
    }

    let _proxy = Proxy::start(proxy.port, target).await;
    assert_eq!(store.get(doc.id).await.unwrap().id, doc.id, "the first call after the outage succeeds");
    assert_eq!(store.stats().await.unwrap().storage.documents, 1, "nothing was written during the outage");
    drop(store);
    t.cleanup().await;
}

/// An embedder that stops on texts containing "slow" until released.
#[derive(Debug, Clone)]
struct GatedEmbedder {
    inner: HashingEmbedder,
    entered: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl Embedder for GatedEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.iter().any(|t| t.contains("slow")) {
            self.entered.notify_one();
            let _permit =
                self.release.acquire().await.map_err(|e| Error::Embedder { message: e.to_string(), status: None })?;
        }
        self.inner.embed(texts).await
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
}

/// Embedding happens before any database lock: while a 40-key upsert waits on its embedder, a
/// write of another key (and of a new one) goes through.
async fn a_slow_embedder_holds_no_database_lock(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = GatedEmbedder {
        inner: HashingEmbedder::new(16).unwrap(),
        entered: Default::default(),
        release: std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let store = t.store(emb.clone(), NoCache).await.unwrap();
    store.create(NewDocument::new("Existing", "fast document").with_key("fast-0")).await.unwrap();
    let slow: Vec<NewDocument> = (0..40)
        .map(|i| NewDocument::new(format!("Slow {i}"), "slow embedding").with_key(format!("slow-{i}")))
        .collect();
    let entered = emb.entered.notified();
    let batch = tokio::spawn({
        let store = store.clone();
        async move { store.batch(slow).await }
    });
    entered.await;
    let other = tokio::time::timeout(Duration::from_secs(10), async {
        store.upsert(NewDocument::new("Existing", "changed while the other batch embeds").with_key("fast-0")).await?;
        store.create(NewDocument::new("New", "written while the other batch embeds").with_key("fast-1")).await
    })
    .await;
    emb.release.add_permits(1000);
    assert!(other.is_ok(), "a write of other keys waited for the slow embedder");
    other.unwrap().unwrap();
    let report = batch.await.unwrap().unwrap();
    assert_eq!(report.created, 40);
    assert_eq!(store.stats().await.unwrap().storage.documents, 42);
    t.cleanup().await;
}

/// A JSON object literal as metadata.
fn obj(v: serde_json::Value) -> marketking_core::Metadata {
    v.as_object().cloned().expect("a JSON object")
}
