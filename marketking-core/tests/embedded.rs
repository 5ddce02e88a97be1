//! The embedded store through the public API: CRUD, batches and upserts, search semantics
//! against an exact reference, persistence, the process lock, schema checks, rollback on
//! embedder failure and all-or-nothing batches under SIGKILL.
#![cfg(feature = "embedded")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use marketking_core::{
    cosine_similarity, DocumentPatch, Embedder, Error, HashingEmbedder, IndexKind, IndexSpec, NewDocument, NoCache,
    Quantization, Result, SearchHit, SearchOptions, SourceCount, VectorStore,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

/// Between fork and exec, a child spawned by `killed_batch_is_all_or_nothing` shares the open
/// files of this process, lock files included (`flock` locks belong to the open file, not the
/// descriptor), so a store dropped and reopened in that window would find its lock still held.
/// Every other test holds this shared; the kill test holds it exclusively.
static FORK_GUARD: LazyLock<tokio::sync::RwLock<()>> = LazyLock::new(|| tokio::sync::RwLock::new(()));

async fn no_fork() -> tokio::sync::RwLockReadGuard<'static, ()> {
    FORK_GUARD.read().await
}

/// A fresh directory under the system temp dir, unique per test and process.
fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("mk-embedded-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn try_open(path: &Path, dims: usize) -> Result<VectorStore> {
    VectorStore::builder().db_path(path).embedder(HashingEmbedder::new(dims).unwrap()).cache(NoCache).build().await
}

async fn open(path: &Path) -> VectorStore {
    try_open(path, 64).await.unwrap()
}

/// Cosine-similarity reference over every stored document: filters, exclude, min_score, k.
async fn reference(store: &VectorStore, query: &[f32], opts: &SearchOptions, exclude: Option<i64>) -> Vec<(i64, f32)> {
    let docs = store.list(0, 10_000, true).await.unwrap();
    let mut scored: Vec<(i64, f32)> = docs
        .iter()
        .filter(|d| Some(d.id) != exclude && opts.matches(d.source.as_deref(), &d.metadata, d.created_at))
        .map(|d| (d.id, cosine_similarity(query, d.embedding.as_ref().unwrap()).unwrap()))
        .filter(|(_, s)| opts.min_score.is_none_or(|m| *s >= m))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(opts.k);
    scored
}

/// Checks a text search in vector mode against the reference.
async fn assert_search_exact(store: &VectorStore, query: &str, opts: &SearchOptions) -> usize {
    let opts = &SearchOptions { mode: Some(marketking_core::SearchMode::Vector), ..opts.clone() };
    let hits = store.search(query, opts).await.unwrap();
    let q = store.embedder().embed_one(query).await.unwrap();
    let want = reference(store, &q, opts, None).await;
    let got: Vec<i64> = hits.iter().map(|h| h.document.id).collect();
    let want_ids: Vec<i64> = want.iter().map(|w| w.0).collect();
    assert_eq!(got, want_ids, "query {query:?} options {opts:?}");
    for (h, w) in hits.iter().zip(&want) {
        assert!((h.score - w.1).abs() < 1e-5, "score {} vs reference {}", h.score, w.1);
        if let Some(min) = opts.min_score {
            assert!(h.score >= min);
        }
    }
    hits.len()
}

#[tokio::test]
async fn create_get_update_delete() {
    let _guard = no_fork().await;
    let dir = temp_dir("crud");
    let store = open(&dir.join("x.db")).await;
    assert_eq!(store.backend_kind(), "embedded");
    store.ping().await.unwrap();

    let doc = store
        .create(
            NewDocument::new("Trail shoes", "Light running shoes for rocky trails")
                .with_source("catalog")
                .with_metadata(marketking_core::metadata!({"brand": "acme", "sizes": [40, 41]}))
                .with_key("sku-1"),
        )
        .await
        .unwrap();
    assert_eq!(doc.title, "Trail shoes");
    assert_eq!(doc.source.as_deref(), Some("catalog"));
    assert_eq!(doc.key.as_deref(), Some("sku-1"));
    assert_eq!(doc.created_at, doc.updated_at);
    assert_eq!(store.get(doc.id).await.unwrap(), doc, "timestamps round-trip exactly");
    assert_eq!(store.get_by_key("sku-1").await.unwrap(), doc);
    assert!(matches!(store.get_by_key("nope").await, Err(Error::KeyNotFound { .. })));
    let with_vec = store.get_with_embedding(doc.id).await.unwrap();
    let v1 = with_vec.embedding.clone().unwrap();
    assert_eq!(v1.len(), 64);
    let texts = store.stats().await.unwrap().embedder.texts;
    assert_eq!(texts, 1);

    // Metadata/source only: no embedder call, vector kept.
    let patched = store
        .update(
            doc.id,
            DocumentPatch::new().metadata(marketking_core::metadata!({"brand": "acme", "sale": true})).clear_source(),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata, json!({"brand": "acme", "sale": true}));
    assert_eq!(patched.source, None);
    assert!(patched.updated_at >= doc.updated_at);
    assert_eq!(patched.created_at, doc.created_at);
    assert_eq!(store.stats().await.unwrap().embedder.texts, 1);
    assert_eq!(store.get_with_embedding(doc.id).await.unwrap().embedding.unwrap(), v1);
    assert_eq!(store.get(doc.id).await.unwrap(), patched);

    // New title: exactly one re-embed, new vector.
    let retitled = store.update(doc.id, DocumentPatch::new().title("Mountain boots")).await.unwrap();
    assert_eq!(retitled.title, "Mountain boots");
    assert_eq!(store.stats().await.unwrap().embedder.texts, 2);
    let v2 = store.get_with_embedding(doc.id).await.unwrap().embedding.unwrap();
    assert_ne!(v1, v2);
    // The search sees the new vector.
    let hits = store.search("mountain boots", &SearchOptions::top(1)).await.unwrap();
    assert_eq!(hits[0].document.id, doc.id);

    store.delete(doc.id).await.unwrap();
    assert!(matches!(store.get(doc.id).await, Err(Error::NotFound { id }) if id == doc.id));
    assert!(matches!(store.delete(doc.id).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.update(doc.id, DocumentPatch::default()).await, Err(Error::NotFound { .. })));
    assert!(store.search("mountain boots", &SearchOptions::top(5)).await.unwrap().is_empty());
    // Ids are never reused.
    let next = store.create(NewDocument::new("a", "b")).await.unwrap();
    assert!(next.id > doc.id);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn keyed_batches_upsert_and_skip_unchanged() {
    let _guard = no_fork().await;
    let dir = temp_dir("batch");
    let store = open(&dir.join("x.db")).await;
    let make = |i: usize| {
        NewDocument::new(format!("Product {i}"), format!("Description of product number {i}"))
            .with_key(format!("k{i}"))
            .with_source("shop")
            .with_metadata(marketking_core::metadata!({"n": i}))
    };
    let first = store.batch((0..100).map(make).collect()).await.unwrap();
    assert_eq!((first.created, first.updated, first.unchanged, first.embedded), (100, 0, 0, 100));
    assert_eq!(first.ids.len(), 100);
    let texts = store.stats().await.unwrap().embedder.texts;
    assert_eq!(texts, 100);

    // Same 100 again: no embedder call at all.
    let calls = store.stats().await.unwrap().embedder.calls;
    let again = store.batch((0..100).map(make).collect()).await.unwrap();
    assert_eq!((again.created, again.updated, again.unchanged, again.embedded), (0, 0, 100, 0));
    assert_eq!(again.ids, first.ids);
    let s = store.stats().await.unwrap();
    assert_eq!((s.embedder.calls, s.embedder.texts), (calls, 100));

    // One new text, one metadata change, one new document (in the middle of the batch).
    let mut docs: Vec<NewDocument> = (0..100).map(make).collect();
    docs[10].content = "Completely different text".into();
    docs[20].metadata = marketking_core::metadata!({"n": 20, "featured": true});
    docs.insert(50, make(500));
    let third = store.batch(docs).await.unwrap();
    assert_eq!((third.created, third.updated, third.unchanged, third.embedded), (1, 2, 98, 2));
    assert_eq!(third.ids[..50], first.ids[..50]);
    assert_eq!(third.ids[51..], first.ids[50..]);
    assert_eq!(store.stats().await.unwrap().embedder.texts, 102);
    assert_eq!(store.get(first.ids[10]).await.unwrap().content, "Completely different text");
    let touched = store.get(first.ids[20]).await.unwrap();
    assert_eq!(touched.metadata, json!({"n": 20, "featured": true}));
    assert!(touched.updated_at > touched.created_at);
    assert_eq!(store.stats().await.unwrap().storage.documents, 101);
    // The metadata change is visible to filtered search at once.
    let hits = store
        .search("product", &SearchOptions::top(10).metadata(marketking_core::metadata!({"featured": true})))
        .await
        .unwrap();
    assert_eq!(hits.iter().map(|h| h.document.id).collect::<Vec<_>>(), vec![first.ids[20]]);

    // Duplicate key inside one batch: conflict, nothing written.
    let err = store.batch(vec![make(900), make(900)]).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(store.stats().await.unwrap().storage.documents, 101);

    // Precomputed vectors are stored as given and not embedded.
    let v: Vec<f32> = (0..64).map(|i| i as f32 - 10.0).collect();
    let r = store.batch(vec![NewDocument::new("given", "vector").with_embedding(v.clone())]).await.unwrap();
    assert_eq!(r.embedded, 0);
    assert_eq!(store.get_with_embedding(r.ids[0]).await.unwrap().embedding, Some(v));
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

const WORDS: [&str; 12] =
    ["red", "running", "shoes", "trail", "coffee", "mug", "ceramic", "laptop", "stand", "desk", "lamp", "wool"];

fn sample_doc(i: usize, rng: &mut StdRng) -> NewDocument {
    let content: Vec<&str> = (0..6).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
    let mut d = NewDocument::new(format!("Item {i}"), content.join(" ")).with_metadata(marketking_core::metadata!({
        "lang": if i.is_multiple_of(3) { "de" } else { "en" },
        "n": i % 5,
        "tags": if i.is_multiple_of(2) { json!(["even", "all"]) } else { json!(["odd", "all"]) },
    }));
    if !i.is_multiple_of(7) {
        d = d.with_source(["shop", "blog", "wiki"][i % 3]);
    }
    d
}

#[tokio::test]
async fn search_filters_match_exact_reference() {
    let _guard = no_fork().await;
    let dir = temp_dir("search");
    let store = open(&dir.join("x.db")).await;
    let mut rng = StdRng::seed_from_u64(42);
    store.batch((0..150).map(|i| sample_doc(i, &mut rng)).collect()).await.unwrap();
    let second = store.batch((150..300).map(|i| sample_doc(i, &mut rng)).collect()).await.unwrap();
    let cutoff = store.get(second.ids[0]).await.unwrap().created_at;

    let cases = vec![
        SearchOptions::top(10),
        SearchOptions::top(1000),
        SearchOptions::top(25).source("shop"),
        SearchOptions::top(25).source("blog").source("wiki"),
        SearchOptions::top(25).source("missing"),
        SearchOptions::top(30).metadata(marketking_core::metadata!({"lang": "de"})),
        SearchOptions::top(30).metadata(marketking_core::metadata!({"tags": ["odd"], "n": 2})),
        SearchOptions { created_after: Some(cutoff), ..SearchOptions::top(400) },
        SearchOptions { created_before: Some(cutoff), ..SearchOptions::top(400) },
        SearchOptions::top(1000).min_score(0.3),
        SearchOptions::top(15).source("shop").metadata(marketking_core::metadata!({"lang": "en"})).min_score(0.05),
    ];
    for opts in &cases {
        for q in ["red running shoes", "ceramic coffee mug", "wool desk lamp"] {
            assert_search_exact(&store, q, opts).await;
        }
    }
    // The date filters split exactly at the batch boundary (after inclusive, before exclusive).
    let after = store
        .search("running", &SearchOptions { created_after: Some(cutoff), ..SearchOptions::top(1000) })
        .await
        .unwrap();
    assert_eq!(after.len(), 150);
    assert!(after.iter().all(|h| second.ids.contains(&h.document.id)));
    let before = store
        .search("running", &SearchOptions { created_before: Some(cutoff), ..SearchOptions::top(1000) })
        .await
        .unwrap();
    assert_eq!(before.len(), 150);
    // min_score really drops results (cosine scores: vector mode).
    let vector = |o: SearchOptions| o.mode(marketking_core::SearchMode::Vector);
    let all = store.search("red running shoes", &vector(SearchOptions::top(1000))).await.unwrap();
    let some = store.search("red running shoes", &vector(SearchOptions::top(1000).min_score(0.3))).await.unwrap();
    assert!(some.len() < all.len() && !some.is_empty());
    // Embeddings only when asked for, and then the stored vector.
    assert!(all.iter().all(|h| h.document.embedding.is_none()));
    let opts = SearchOptions { include_embedding: true, ..SearchOptions::top(3) };
    for h in store.search("coffee", &opts).await.unwrap() {
        let stored = store.get_with_embedding(h.document.id).await.unwrap();
        assert_eq!(h.document, stored);
    }

    // find_similar leaves the document itself out and otherwise matches the reference.
    let id = second.ids[3];
    let me = store.get_with_embedding(id).await.unwrap();
    let similar = store.find_similar(id, &SearchOptions::top(20)).await.unwrap();
    assert_eq!(similar.len(), 20);
    assert!(similar.iter().all(|h| h.document.id != id));
    let want = reference(&store, me.embedding.as_ref().unwrap(), &SearchOptions::top(20), Some(id)).await;
    assert_eq!(similar.iter().map(|h| h.document.id).collect::<Vec<_>>(), want.iter().map(|w| w.0).collect::<Vec<_>>());
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn stats_and_index_operations() {
    let _guard = no_fork().await;
    let dir = temp_dir("stats");
    let path = dir.join("x.db");
    let store = open(&path).await;
    let mut docs = Vec::new();
    for (source, n) in [(Some("wiki"), 15), (Some("shop"), 20), (None, 10), (Some("blog"), 15), (Some("zz"), 1)] {
        for i in 0..n {
            let d = NewDocument::new(format!("t{i}"), format!("content {i}"));
            docs.push(match source {
                Some(s) => d.with_source(s),
                None => d,
            });
        }
    }
    store.batch(docs).await.unwrap();
    let s = store.stats().await.unwrap().storage;
    assert_eq!(s.backend, "embedded");
    assert_eq!(s.documents, 61);
    assert_eq!(PathBuf::from(&s.location), path.canonicalize().unwrap());
    assert!(s.table_bytes > 0);
    assert!(s.index.is_none());
    let count = |source: Option<&str>, count| SourceCount { source: source.map(String::from), count };
    assert_eq!(
        s.sources,
        vec![
            count(Some("shop"), 20),
            count(Some("blog"), 15),
            count(Some("wiki"), 15),
            count(None, 10),
            count(Some("zz"), 1)
        ]
    );

    // No index until one is created (`embedded/vector_index.rs` covers them).
    assert!(matches!(store.rebuild_index(false).await, Err(Error::InvalidInput { .. })));
    assert!(!store.drop_index().await.unwrap());
    store.analyze().await.unwrap();
    store.ping().await.unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn reopen_gives_same_documents_and_results() {
    let _guard = no_fork().await;
    let dir = temp_dir("reopen");
    let path = dir.join("x.db");
    let store = open(&path).await;
    let mut rng = StdRng::seed_from_u64(7);
    let report = store.batch((0..200).map(|i| sample_doc(i, &mut rng)).collect()).await.unwrap();
    store.delete(report.ids[5]).await.unwrap();
    store.update(report.ids[6], DocumentPatch::new().content("trail running shoes")).await.unwrap();
    let queries = ["red running shoes", "laptop stand", "wool"];
    let opts = [
        SearchOptions::top(20),
        SearchOptions::top(50).source("shop").metadata(marketking_core::metadata!({"tags": ["even"]})),
    ];
    let mut before = Vec::new();
    for q in queries {
        for o in &opts {
            before.push(store.search(q, o).await.unwrap());
        }
    }
    let listed = store.list(0, 10_000, true).await.unwrap();
    drop(store);

    let store = open(&path).await;
    let mut after = Vec::new();
    for q in queries {
        for o in &opts {
            after.push(store.search(q, o).await.unwrap());
        }
    }
    assert_eq!(before, after);
    assert_eq!(store.list(0, 10_000, true).await.unwrap(), listed);
    assert_eq!(listed.len(), 199);
    // Paging.
    let page = store.list(listed[9].id, 5, false).await.unwrap();
    assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), listed[10..15].iter().map(|d| d.id).collect::<Vec<_>>());
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn second_open_is_refused_while_the_first_is_alive() {
    let _guard = no_fork().await;
    let dir = temp_dir("lock");
    let path = dir.join("x.db");
    let store = open(&path).await;
    store.create(NewDocument::new("a", "b")).await.unwrap();
    let err = try_open(&path, 64).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Locked { path, pid: Some(pid) } if path.ends_with("x.db") && *pid == std::process::id()),
        "{err:?}"
    );
    assert!(msg.contains("already open") && msg.contains("x.db"), "{msg}");
    // The first store is unaffected, and the file opens again once it is gone.
    assert_eq!(store.stats().await.unwrap().storage.documents, 1);
    drop(store);
    let again = open(&path).await;
    assert_eq!(again.stats().await.unwrap().storage.documents, 1);
    drop(again);
    let _ = std::fs::remove_dir_all(dir);
}

/// An embedder with a chosen model id (same vectors as the hashing embedder).
#[derive(Debug)]
struct Renamed(HashingEmbedder, String);

#[async_trait]
impl Embedder for Renamed {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.0.embed(texts).await
    }
    fn dimensions(&self) -> usize {
        self.0.dimensions()
    }
    fn model_id(&self) -> &str {
        &self.1
    }
}

#[tokio::test]
async fn other_model_or_dimensions_is_a_schema_mismatch() {
    let _guard = no_fork().await;
    let dir = temp_dir("schema");
    let path = dir.join("x.db");
    let store = open(&path).await;
    store.create(NewDocument::new("a", "b")).await.unwrap();
    let model = store.model().to_string();
    drop(store);

    match try_open(&path, 32).await {
        Err(Error::SchemaMismatch { stored_model, stored_dimensions, model: m, dimensions, .. }) => {
            assert_eq!((stored_model.as_str(), stored_dimensions), (model.as_str(), 64));
            assert_eq!(dimensions, 32);
            assert_ne!(m, model);
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    let err = VectorStore::builder()
        .db_path(&path)
        .embedder(Renamed(HashingEmbedder::new(64).unwrap(), "other-model".into()))
        .cache(NoCache)
        .build()
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::SchemaMismatch { .. }), "{err:?}");
    assert!(msg.contains("other-model") && msg.contains(&model), "{msg}");
    // The refused opens changed nothing.
    let store = open(&path).await;
    assert_eq!(store.stats().await.unwrap().storage.documents, 1);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// Fails its `fail_on`-th call (1-based); batches of 4.
#[derive(Debug)]
struct FailingEmbedder {
    inner: HashingEmbedder,
    calls: Arc<AtomicUsize>,
    fail_on: usize,
}

#[async_trait]
impl Embedder for FailingEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_on {
            return Err(Error::Embedder { message: "injected failure".into(), status: None });
        }
        self.inner.embed(texts).await
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn max_batch_size(&self) -> usize {
        4
    }
}

#[tokio::test]
async fn embedder_failure_mid_batch_writes_nothing() {
    let _guard = no_fork().await;
    let dir = temp_dir("embedfail");
    let path = dir.join("x.db");
    let calls = Arc::new(AtomicUsize::new(0));
    let store = VectorStore::builder()
        .db_path(&path)
        .embedder(FailingEmbedder { inner: HashingEmbedder::new(64).unwrap(), calls: calls.clone(), fail_on: 4 })
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    // Call 1.
    store.batch((0..3).map(|i| NewDocument::new(format!("old {i}"), "kept")).collect()).await.unwrap();
    // Calls 2, 3 succeed, the batch's third chunk (call 4) fails.
    let docs: Vec<NewDocument> =
        (0..20).map(|i| NewDocument::new(format!("new {i}"), "lost").with_key(format!("n{i}"))).collect();
    let err = store.batch(docs.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Embedder { .. }), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(store.stats().await.unwrap().storage.documents, 3);
    assert_eq!(store.list(0, 100, false).await.unwrap().len(), 3);
    assert_eq!(store.search("new lost", &SearchOptions::top(100)).await.unwrap().len(), 3);
    assert!(matches!(store.get_by_key("n0").await, Err(Error::KeyNotFound { .. })));

    // The store keeps working: the same batch succeeds now.
    let report = store.batch(docs).await.unwrap();
    assert_eq!((report.created, report.embedded), (20, 20));
    drop(store);
    let store = open(&path).await;
    assert_eq!(store.stats().await.unwrap().storage.documents, 23);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn data_persists_after_drop_and_reopen() {
    let _guard = no_fork().await;
    let dir = temp_dir("persist");
    let path = dir.join("nested").join("x.db");
    let store = open(&path).await;
    let doc = store
        .create(
            NewDocument::new("Persistent", "survives a restart")
                .with_key("p")
                .with_metadata(marketking_core::metadata!({"a": 1})),
        )
        .await
        .unwrap();
    drop(store);
    let store = open(&path).await;
    assert_eq!(store.get_by_key("p").await.unwrap(), doc);
    let hits = store
        .search("persistent restart", &SearchOptions::top(1).mode(marketking_core::SearchMode::Vector))
        .await
        .unwrap();
    assert_eq!(hits[0].document, doc);
    assert!((hits[0].score - 1.0).abs() < 0.5);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_file_that_is_not_a_store_gives_a_clear_error() {
    let _guard = no_fork().await;
    let dir = temp_dir("garbage");
    let path = dir.join("x.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = try_open(&path, 64).await.unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(err.to_string().contains("x.db"), "{err}");
    // The failed open released its lock: once the file is replaced, the same path opens.
    std::fs::remove_file(&path).unwrap();
    drop(open(&path).await);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_searches_and_writes() {
    let _guard = no_fork().await;
    let dir = temp_dir("concurrent");
    let store = open(&dir.join("x.db")).await;
    let mut rng = StdRng::seed_from_u64(11);
    store.batch((0..100).map(|i| sample_doc(i, &mut rng)).collect()).await.unwrap();
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let opts = if i % 2 == 0 { SearchOptions::top(10) } else { SearchOptions::top(10).source("shop") };
                    let hits = store.search(WORDS[(r + i) % WORDS.len()], &opts).await.unwrap();
                    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
                }
            })
        })
        .collect();
    for round in 0..5 {
        let report = store.batch((0..50).map(|i| sample_doc(1000 + round * 50 + i, &mut rng)).collect()).await.unwrap();
        store.delete(report.ids[0]).await.unwrap();
        store.update(report.ids[1], DocumentPatch::new().content("lamp lamp")).await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(store.stats().await.unwrap().storage.documents, 100 + 5 * 49);
    assert_search_exact(&store, "lamp", &SearchOptions::top(50)).await;
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// 20,000 x 128 floats is above the parallel-scan threshold: still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_store_parallel_scan_is_exact() {
    let _guard = no_fork().await;
    let dir = temp_dir("large");
    let store = VectorStore::builder()
        .db_path(dir.join("x.db"))
        .embedder(HashingEmbedder::new(128).unwrap())
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    let mut rng = StdRng::seed_from_u64(2024);
    let vector = |rng: &mut StdRng| (0..128).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
    let docs: Vec<NewDocument> = (0..20_000)
        .map(|i| {
            let d = NewDocument::new(format!("d{i}"), "x").with_embedding(vector(&mut rng));
            if i % 3 == 0 {
                d.with_source("third")
            } else {
                d
            }
        })
        .collect();
    store.batch(docs).await.unwrap();
    let mut all = store.list(0, 10_000, true).await.unwrap();
    all.extend(store.list(all.last().unwrap().id, 10_000, true).await.unwrap());
    assert_eq!(all.len(), 20_000);
    for opts in [SearchOptions::top(25), SearchOptions::top(40).source("third")] {
        let q = vector(&mut rng);
        let hits = store.search_by_vector(&q, &opts).await.unwrap();
        let mut want: Vec<(i64, f32)> = all
            .iter()
            .filter(|d| opts.matches(d.source.as_deref(), &d.metadata, d.created_at))
            .map(|d| (d.id, cosine_similarity(&q, d.embedding.as_ref().unwrap()).unwrap()))
            .collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        want.truncate(opts.k);
        assert_eq!(
            hits.iter().map(|h| h.document.id).collect::<Vec<_>>(),
            want.iter().map(|w| w.0).collect::<Vec<_>>()
        );
        for (h, w) in hits.iter().zip(&want) {
            assert!((h.score - w.1).abs() < 1e-5);
        }
    }
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

// ---- SIGKILL during a batch ---------------------------------------------------------------

const KILL_ENV: &str = "MK_KILL_CHILD_DB";
const KILL_BATCH: usize = 10_000;

/// Child mode of `killed_batch_is_all_or_nothing`: does nothing unless `MK_KILL_CHILD_DB` is set.
/// Writes one 10,000-document batch with precomputed vectors, printing a marker just before.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(KILL_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = open(Path::new(&path)).await;
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let mut rng = StdRng::seed_from_u64(seed);
        let docs: Vec<NewDocument> = (0..KILL_BATCH)
            .map(|i| {
                let v: Vec<f32> = (0..64).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                NewDocument::new(format!("doc {i}"), "killed batch").with_embedding(v)
            })
            .collect();
        let mut out = std::io::stdout();
        writeln!(out, "MK_CHILD_START").unwrap();
        out.flush().unwrap();
        store.batch(docs).await.unwrap();
        writeln!(out, "MK_CHILD_DONE").unwrap();
        out.flush().unwrap();
    });
}

fn count_documents(rt: &tokio::runtime::Runtime, path: &Path) -> u64 {
    rt.block_on(async {
        let store = open(path).await;
        let n = store.stats().await.unwrap().storage.documents;
        // The searchable state agrees with the table.
        assert_eq!(store.list(0, 10_000, false).await.unwrap().len() as u64, n.min(10_000));
        n
    })
}

#[test]
fn killed_batch_is_all_or_nothing() {
    let dir = temp_dir("kill");
    let path = dir.join("kill.db");
    let _guard = FORK_GUARD.blocking_write();
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut rng = StdRng::seed_from_u64(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64);
    let mut expected = count_documents(&rt, &path);
    assert_eq!(expected, 0);
    let (mut lost, mut kept) = (0, 0);
    for max_delay_ms in [0u64, 3, 10, 25, 50, 100, 200, 400] {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(KILL_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("MK_CHILD_START") => break,
                Some(_) => continue,
                None => panic!("child exited before starting its batch: {:?}", child.wait()),
            }
        }
        // The kill point: somewhere in the batch (or after it, for the longer delays).
        if max_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..=max_delay_ms)));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(lines);

        let n = count_documents(&rt, &path);
        assert!(
            n == expected || n == expected + KILL_BATCH as u64,
            "after a kill the file has {n} documents; expected {expected} or {}",
            expected + KILL_BATCH as u64
        );
        if n == expected {
            lost += 1;
        } else {
            kept += 1;
        }
        expected = n;
    }
    eprintln!("killed batches: {lost} rolled back, {kept} committed");
    let _ = std::fs::remove_dir_all(dir);
}

/// Another program's SQLite database is left exactly as it was: no tables added, no switch to
/// WAL, no lock file left behind.
#[tokio::test]
async fn a_foreign_sqlite_database_is_refused_untouched() {
    let _guard = no_fork().await;
    let dir = temp_dir("foreign");
    let path = dir.join("app.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada');",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = try_open(&path, 64).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(msg.contains("app.db") && msg.contains("not a MarketKing store") && msg.contains("users"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file is byte for byte unchanged");
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["app.db".to_string()], "no -wal, -shm or .lock file left next to it");

    // A database of another application id is refused too, even without tables.
    let other = dir.join("other.db");
    rusqlite::Connection::open(&other).unwrap().pragma_update(None, "application_id", 42).unwrap();
    let err = try_open(&other, 64).await.unwrap_err();
    assert!(err.to_string().contains("another application"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A store file marks itself as ours, and a closed store leaves no lock file behind.
#[tokio::test]
async fn a_closed_store_leaves_only_its_file_and_reopens() {
    let _guard = no_fork().await;
    let dir = temp_dir("tidy");
    let path = dir.join("s.db");
    let store = open(&path).await;
    store.create(NewDocument::new("kept", "across reopen")).await.unwrap();
    assert!(dir.join("s.db.lock").exists(), "the lock file exists while the store is open");
    drop(store);
    assert!(!dir.join("s.db.lock").exists(), "and is removed when it closes");
    let id: i32 =
        rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
    assert_ne!(id, 0, "the file carries MarketKing's application id");
    let again = open(&path).await;
    assert_eq!(again.stats().await.unwrap().storage.documents, 1);
    drop(again);
    let _ = std::fs::remove_dir_all(dir);
}

/// A version 2 file (an FTS5 table of SQLite's own `porter` tokens, where "us" and "uses" are
/// one word) is indexed again on open with PostgreSQL's lexemes, and the rebuilt index follows
/// later writes and deletions.
#[tokio::test]
async fn a_version_2_file_is_indexed_with_postgres_lexemes_on_open() {
    let _guard = no_fork().await;
    let dir = temp_dir("fts-v2");
    let path = dir.join("x.db");
    let store = open(&path).await;
    let uses = store.create(NewDocument::new("Tools", "Everyone uses this tool").with_key("uses")).await.unwrap();
    let us = store.create(NewDocument::new("About us", "Write to us").with_key("us")).await.unwrap();
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER documents_fts_insert; DROP TRIGGER documents_fts_delete; DROP TRIGGER documents_fts_update;
             DROP TABLE documents_fts;
             CREATE VIRTUAL TABLE documents_fts USING fts5(title, content, content = 'documents', content_rowid = 'id',
                 tokenize = 'porter unicode61 remove_diacritics 2');
             CREATE TRIGGER documents_fts_insert AFTER INSERT ON documents BEGIN
                 INSERT INTO documents_fts (rowid, title, content) VALUES (new.id, new.title, new.content);
             END;
             INSERT INTO documents_fts (documents_fts) VALUES ('rebuild');
             UPDATE marketking_meta SET value = '2' WHERE key = 'schema_version';",
        )
        .unwrap();
        let porter: i64 = conn
            .query_row("SELECT count(*) FROM documents_fts WHERE documents_fts MATCH 'us'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(porter, 2, "FTS5's porter makes \"uses\" and \"us\" one word");
    }
    let store = open(&path).await;
    let text = |k| SearchOptions::top(k).mode(marketking_core::SearchMode::Text);
    let keys = |hits: Vec<marketking_core::SearchHit>| hits.into_iter().map(|h| h.document.id).collect::<Vec<_>>();
    assert_eq!(keys(store.search("us", &text(5)).await.unwrap()), [us.id]);
    assert_eq!(keys(store.search("using", &text(5)).await.unwrap()), [uses.id], "Snowball: uses, using -> use");
    let later = store.create(NewDocument::new("Join us", "us again")).await.unwrap();
    store.delete(us.id).await.unwrap();
    assert_eq!(keys(store.search("us", &text(5)).await.unwrap()), [later.id]);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: String =
        conn.query_row("SELECT value FROM marketking_meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, "3");
    drop(conn);
    let _ = std::fs::remove_dir_all(dir);
}

/// Read-only stores next to a writer (tests/embedded/read_only.rs).
#[path = "embedded/read_only.rs"]
mod read_only;
#[path = "embedded/vector_index.rs"]
mod vector_index;

/// A store too large to keep its f32 vectors in memory (over 4M values: 2,100 x 2,048) ranks
/// by its int8 codes and re-reads the candidates' vectors from the file: the hits and their
/// scores are those of an exact pass over the file, with filters, in hybrid mode and after a
/// delete; `explain` says which path runs.
#[tokio::test]
async fn large_stores_rerank_from_the_file_and_match_exact_search() {
    let _guard = no_fork().await;
    let dir = temp_dir("rerank");
    let dims = 2048;
    let store = try_open(&dir.join("s.db"), dims).await.unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    let vectors: Vec<Vec<f32>> =
        (0..2100).map(|i| centres[i % 20].iter().map(|c| c + 0.3 * rng.random_range(-1.0f32..1.0)).collect()).collect();
    let titles: Vec<String> = (0..2100).map(|i| format!("item {i} {}", ["rain", "snow", "sun"][i % 3])).collect();
    let rows = titles.iter().zip(&vectors).enumerate().map(|(i, (t, v))| {
        let r = marketking_core::DocumentRef::new(t, "weather notes", v);
        if i % 2 == 0 {
            r.source("even")
        } else {
            r
        }
    });
    let ids = store.insert_new(rows).await.unwrap().ids;
    store.delete(ids[3]).await.unwrap();
    let plan = store.explain_search(&vectors[0], &SearchOptions::top(10)).await.unwrap();
    assert!(plan.contains("int8 scan") && plan.contains("re-rank"), "{plan}");
    let pairs =
        |hits: Vec<marketking_core::SearchHit>| hits.into_iter().map(|h| (h.document.id, h.score)).collect::<Vec<_>>();
    for (i, opts) in
        [SearchOptions::top(10), SearchOptions::top(25).source("even"), SearchOptions::top(5).min_score(0.5)]
            .into_iter()
            .enumerate()
    {
        for q in [&vectors[3], &vectors[100 + i], &centres[i]] {
            let got = pairs(store.search_by_vector(q, &opts).await.unwrap());
            let exact = pairs(store.search_by_vector(q, &opts.clone().exact(true)).await.unwrap());
            assert_eq!(got, exact, "{opts:?}");
            // The reference computes cosines in f64: the same rows, scores equal to 1e-6.
            let want = reference(&store, q, &opts, None).await;
            assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want.iter().map(|w| w.0).collect::<Vec<_>>());
            assert!(got.iter().zip(&want).all(|(g, w)| (g.1 - w.1).abs() < 1e-6), "{got:?} {want:?}");
        }
    }
    // Hybrid: every hit's cosine similarity is exact too.
    let hybrid = store.search("snow weather", &SearchOptions::top(8)).await.unwrap();
    assert_eq!(hybrid.len(), 8);
    for h in &hybrid {
        let v = store.get_with_embedding(h.document.id).await.unwrap().embedding.unwrap();
        let q = store.embedder().embed_one("snow weather").await.unwrap();
        let want = cosine_similarity(&q, &v).unwrap();
        assert!((h.vector.unwrap().score - want).abs() < 1e-5, "{h:?} vs {want}");
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A large store (over 4M vector values) saves its int8 codes next to its file at close and
/// opens from them; codes older than the table (a row changed or deleted after they were
/// saved) or damaged are never used: the open reads every vector instead and finds the change.
#[tokio::test]
async fn saved_codes_speed_up_the_open_and_are_never_used_stale() {
    let _guard = no_fork().await;
    let dir = temp_dir("codes");
    let path = dir.join("x.db");
    let codes = dir.join("x.db.codes");
    let dims = 512;
    let open = || VectorStore::builder().db_path(&path).no_embedder("test-vectors", dims).cache(NoCache).build();
    let mut rng = StdRng::seed_from_u64(5);
    let mut vector = move || (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
    let store = open().await.unwrap();
    let docs: Vec<NewDocument> = (0..9_000)
        .map(|i| {
            NewDocument::new(format!("doc {i}"), "body")
                .with_source(if i % 3 == 0 { "a" } else { "b" })
                .with_key(format!("k{i}"))
                .with_embedding(vector())
        })
        .collect();
    let ids = store.batch(docs).await.unwrap().ids;
    let queries: Vec<Vec<f32>> = (0..4).map(|_| vector()).collect();
    let opts = [SearchOptions::top(10), SearchOptions::top(10).source("a")];
    let mut before = Vec::new();
    for q in &queries {
        for o in &opts {
            before.push(store.search_by_vector(q, o).await.unwrap());
        }
    }
    assert!(!codes.exists(), "codes are saved at close, not on every write");
    store.close().await.unwrap();
    assert!(codes.exists(), "a store of 9,000 x 512 saves its codes at close");

    // Reopened from the codes: the same hits, scores and filters.
    let store = open().await.unwrap();
    let mut after = Vec::new();
    for q in &queries {
        for o in &opts {
            after.push(store.search_by_vector(q, o).await.unwrap());
        }
    }
    assert_eq!(before, after);
    assert_eq!(store.stats().await.unwrap().storage.documents, 9_000);
    let saved = std::fs::read(&codes).unwrap();

    // The first write removes the codes before it commits: a crash after it cannot leave
    // codes that look current.
    let moved = ids[100];
    let report = store
        .batch(vec![NewDocument::new("doc 100", "body")
            .with_source("b")
            .with_key("k100")
            .with_embedding(queries[0].clone())])
        .await
        .unwrap();
    assert_eq!(report.ids, vec![moved]);
    assert!(!codes.exists(), "a write removes the saved codes");
    // Old codes put back by hand (as another program might leave them): the open checks them
    // against the table row by row and does not use them.
    let deleted = before[0][0].document.id;
    store.delete(deleted).await.unwrap();
    drop(store);
    std::fs::write(&codes, &saved).unwrap();
    let store = open().await.unwrap();
    assert!(!codes.exists(), "stale codes are removed at open");
    let hits = store.search_by_vector(&queries[0], &SearchOptions::top(10)).await.unwrap();
    assert_eq!(hits[0].document.id, moved, "the changed vector is searched as changed");
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    assert!(hits.iter().all(|h| h.document.id != deleted), "the deleted row is gone");
    assert_eq!(store.stats().await.unwrap().storage.documents, 8_999);
    let expected = store.search_by_vector(&queries[1], &SearchOptions::top(10).source("a")).await.unwrap();
    store.close().await.unwrap();

    // A damaged file (cut short) is refused and removed; the store opens from the table.
    let len = std::fs::metadata(&codes).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&codes).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let store = open().await.unwrap();
    assert!(!codes.exists());
    assert_eq!(store.search_by_vector(&queries[1], &SearchOptions::top(10).source("a")).await.unwrap(), expected);
    // Nothing changed since this open read the table, but it did not come from codes: they
    // are saved again.
    store.close().await.unwrap();
    assert!(codes.exists());
    let _ = std::fs::remove_dir_all(dir);
}
