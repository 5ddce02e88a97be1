//! The behaviour suite, written once and run against both backends (PostgreSQL + pgvector and
//! the embedded file). Each behaviour is a module with a `postgres` and an `embedded` test.
//! Where the backends legitimately differ, the test says so where it branches on `kind`.

use marketking_core::{
    DocumentPatch, Error, HashingEmbedder, IndexKind, IndexSpec, NewDocument, NoCache, SearchMode, SearchOptions,
};
use serde_json::json;

use crate::common::{docs, random_vectors, Fixture, Kind, TestEmbedder};

crate::conformance!(
    create_get_update_delete_round_trip,
    batch_upserts_by_key_and_skips_unchanged_embeddings,
    failing_embedder_on_third_chunk_leaves_no_rows,
    search_filters_min_score_and_find_similar,
    search_by_vector_matches_exact_cosine_order,
    bad_input_gets_typed_errors_and_writes_nothing,
    list_pages_through_everything,
    other_dimensions_are_refused_on_reopen,
    stats_count_sources_and_indexes_differ_explicitly,
    concurrent_upserts_of_the_same_new_keys_all_succeed,
    reimport_of_thousands_of_rows_with_vectors_is_unchanged,
);

async fn create_get_update_delete_round_trip(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = TestEmbedder::new(32);
    let store = t.store(emb.clone(), NoCache).await.unwrap();

    let doc = store
        .create(
            NewDocument::new("Trail shoes", "Light running shoes for rocky trails")
                .with_source("catalog")
                .with_metadata(marketking_core::metadata!({"price": 120, "tags": ["outdoor"]})),
        )
        .await
        .unwrap();
    assert_eq!(doc.title, "Trail shoes");
    assert_eq!(doc.source.as_deref(), Some("catalog"));
    assert_eq!(doc.metadata, json!({"price": 120, "tags": ["outdoor"]}));
    assert!(doc.embedding.is_none(), "embeddings are not returned unless asked for");
    assert_eq!(store.get(doc.id).await.unwrap(), doc);
    let with = store.get_with_embedding(doc.id).await.unwrap();
    assert_eq!(with.embedding.as_ref().map(Vec::len), Some(32));

    // A metadata-only change does not re-embed; a content change does.
    let calls = emb.calls();
    let updated =
        store.update(doc.id, DocumentPatch::new().metadata(marketking_core::metadata!({"price": 99}))).await.unwrap();
    assert_eq!(updated.metadata, json!({"price": 99}));
    assert_eq!(emb.calls(), calls);
    assert!(updated.updated_at >= doc.updated_at);
    let updated = store.update(doc.id, DocumentPatch::new().content("Waterproof hiking boots")).await.unwrap();
    assert_eq!(emb.calls(), calls + 1);
    assert_eq!(updated.content, "Waterproof hiking boots");
    let after = store.get_with_embedding(doc.id).await.unwrap();
    assert_ne!(after.embedding, with.embedding, "new content, new vector");
    // Clearing the source.
    let cleared = store.update(doc.id, DocumentPatch::new().clear_source()).await.unwrap();
    assert_eq!(cleared.source, None);

    store.delete(doc.id).await.unwrap();
    assert!(matches!(store.get(doc.id).await, Err(Error::NotFound { id }) if id == doc.id));
    assert!(matches!(store.delete(doc.id).await, Err(Error::NotFound { .. })));
    t.cleanup().await;
}

async fn batch_upserts_by_key_and_skips_unchanged_embeddings(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = TestEmbedder::new(32).batch_size(16);
    let store = t.store(emb.clone(), NoCache).await.unwrap();
    let keyed: Vec<NewDocument> =
        docs(100, "k").into_iter().enumerate().map(|(i, d)| d.with_key(format!("key-{i}"))).collect();
    let r = store.batch(keyed.clone()).await.unwrap();
    assert_eq!((r.created, r.updated, r.unchanged, r.embedded), (100, 0, 0, 100));
    assert_eq!(r.ids.len(), 100);
    assert!(r.ids.windows(2).all(|w| w[0] < w[1]), "ids come back in input order");
    let texts = emb.texts();

    let r2 = store.batch(keyed.clone()).await.unwrap();
    assert_eq!((r2.created, r2.updated, r2.unchanged, r2.embedded), (0, 0, 100, 0));
    assert_eq!(r2.ids, r.ids);
    assert_eq!(emb.texts(), texts, "unchanged keys make no embedder call");

    let mut changed = keyed.clone();
    changed[42].content = "a different text".into();
    changed[7].metadata = marketking_core::metadata!({"fresh": true});
    let r3 = store.batch(changed).await.unwrap();
    assert_eq!((r3.created, r3.updated, r3.unchanged, r3.embedded), (0, 2, 98, 1));
    assert_eq!(emb.texts(), texts + 1, "exactly one document re-embedded");
    assert_eq!(store.get_by_key("key-42").await.unwrap().content, "a different text");
    assert_eq!(store.get_by_key("key-7").await.unwrap().metadata, json!({"fresh": true}));
    assert_eq!(store.stats().await.unwrap().storage.documents, 100);

    let (doc, outcome) = store.upsert(NewDocument::new("new", "brand new").with_key("key-new")).await.unwrap();
    assert_eq!(outcome, marketking_core::UpsertOutcome::Created);
    let (again, outcome) = store.upsert(NewDocument::new("new", "brand new").with_key("key-new")).await.unwrap();
    assert_eq!((again.id, outcome), (doc.id, marketking_core::UpsertOutcome::Unchanged));
    assert!(
        matches!(store.upsert(NewDocument::new("a", "b")).await, Err(Error::InvalidInput { ref field, .. }) if field == "key")
    );
    assert!(matches!(store.get_by_key("nope").await, Err(Error::KeyNotFound { .. })));

    // Precomputed vectors (a re-import of an export): the same vector is unchanged, a metadata
    // change keeps the vector, a different vector is written.
    let vectors = random_vectors(3, 32, 3, 9);
    let pre: Vec<NewDocument> = (0..3)
        .map(|i| NewDocument::new(format!("p{i}"), format!("pre {i}")).with_key(format!("pre-{i}")))
        .zip(&vectors)
        .map(|(d, v)| d.with_embedding(v.clone()))
        .collect();
    let r = store.batch(pre.clone()).await.unwrap();
    assert_eq!((r.created, r.updated, r.unchanged, r.embedded), (3, 0, 0, 0));
    let r = store.batch(pre.clone()).await.unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (0, 0, 3), "same vectors: nothing to write");
    let mut next = pre.clone();
    next[0].metadata = marketking_core::metadata!({"v": 2});
    next[1].embedding = Some(vectors[2].clone());
    let r = store.batch(next).await.unwrap();
    assert_eq!((r.created, r.updated, r.unchanged, r.embedded), (0, 2, 1, 0));
    let p0 = store.get_by_key("pre-0").await.unwrap();
    assert_eq!(p0.metadata, json!({"v": 2}));
    assert_eq!(store.get_with_embedding(p0.id).await.unwrap().embedding.as_ref(), Some(&vectors[0]));
    let p1 = store.get_by_key("pre-1").await.unwrap();
    assert_eq!(store.get_with_embedding(p1.id).await.unwrap().embedding.as_ref(), Some(&vectors[2]));

    let dup = vec![NewDocument::new("a", "b").with_key("d"), NewDocument::new("c", "d").with_key("d")];
    assert!(matches!(store.batch(dup).await, Err(Error::Conflict { .. })));
    t.cleanup().await;
}

async fn failing_embedder_on_third_chunk_leaves_no_rows(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = TestEmbedder::new(32).batch_size(100).failing_on_call(3);
    let store = t.store(emb.clone(), NoCache).await.unwrap();
    let err = store.batch(docs(1000, "f")).await.unwrap_err();
    assert!(matches!(err, Error::Embedder { .. }), "{err}");
    assert_eq!(emb.calls(), 3);
    assert_eq!(store.stats().await.unwrap().storage.documents, 0);
    // The store is still usable afterwards.
    store.batch(docs(10, "g")).await.unwrap();
    assert_eq!(store.stats().await.unwrap().storage.documents, 10);
    t.cleanup().await;
}

async fn search_filters_min_score_and_find_similar(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(256).await;
    let mut input = vec![
        NewDocument::new("Red trail running shoes", "Grippy running shoes for mountain trails")
            .with_source("catalog")
            .with_metadata(marketking_core::metadata!({"category": "shoes", "color": "red"})),
        NewDocument::new("Blue road running shoes", "Cushioned running shoes for city roads")
            .with_source("catalog")
            .with_metadata(marketking_core::metadata!({"category": "shoes", "color": "blue"})),
        NewDocument::new("How to return shoes", "Returning running shoes within 30 days for a refund")
            .with_source("help")
            .with_metadata(marketking_core::metadata!({"category": "returns"})),
        NewDocument::new("Camping tent", "Two-person tent for backpacking")
            .with_source("catalog")
            .with_metadata(marketking_core::metadata!({"category": "camping"})),
    ];
    input.push(NewDocument::new("Payment methods", "We accept cards and bank transfers").with_source("help"));
    let ids = store.batch(input).await.unwrap().ids;

    let hits = store.search("running shoes", &SearchOptions::top(3)).await.unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
    assert!(hits.iter().all(|h| h.document.content.contains("running shoes")));

    let help = store.search("running shoes", &SearchOptions::top(5).source("help")).await.unwrap();
    assert_eq!(help.iter().map(|h| h.document.id).collect::<Vec<_>>().first(), Some(&ids[2]));
    assert!(help.iter().all(|h| h.document.source.as_deref() == Some("help")));
    let both = store.search("running shoes", &SearchOptions::top(10).source("help").source("catalog")).await.unwrap();
    assert_eq!(both.len(), 5);

    let red = store
        .search("running shoes", &SearchOptions::top(5).metadata(marketking_core::metadata!({"color": "red"})))
        .await
        .unwrap();
    assert_eq!(red.iter().map(|h| h.document.id).collect::<Vec<_>>(), vec![ids[0]]);

    let strict = store.search("running shoes", &SearchOptions::top(5).min_score(0.3)).await.unwrap();
    assert!(!strict.is_empty() && strict.len() < 5, "min_score drops weak matches: {}", strict.len());
    // A hybrid search (the default) holds its cosine similarity to the floor.
    assert!(strict.iter().all(|h| h.vector.is_some_and(|v| v.score >= 0.3)));
    let strict =
        store.search("running shoes", &SearchOptions::top(5).min_score(0.3).mode(SearchMode::Vector)).await.unwrap();
    assert!(!strict.is_empty() && strict.iter().all(|h| h.score >= 0.3));

    let now = chrono::Utc::now();
    let future = SearchOptions { created_after: Some(now + chrono::Duration::hours(1)), ..SearchOptions::top(5) };
    assert!(store.search("shoes", &future).await.unwrap().is_empty());
    let past = SearchOptions { created_before: Some(now + chrono::Duration::hours(1)), ..SearchOptions::top(5) };
    assert_eq!(store.search("shoes", &past).await.unwrap().len(), 5);

    let similar = store.find_similar(ids[0], &SearchOptions::top(2)).await.unwrap();
    assert_eq!(similar.len(), 2);
    assert!(similar.iter().all(|h| h.document.id != ids[0]), "excludes the document itself");
    assert_eq!(similar[0].document.id, ids[1]);
    assert!(matches!(store.find_similar(999_999, &SearchOptions::top(2)).await, Err(Error::NotFound { id: 999_999 })));

    let with_vec =
        store.search("tent", &SearchOptions { include_embedding: true, ..SearchOptions::top(1) }).await.unwrap();
    assert_eq!(with_vec[0].document.embedding.as_ref().map(Vec::len), Some(256));
    t.cleanup().await;
}

async fn search_by_vector_matches_exact_cosine_order(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(48).await;
    let vectors = random_vectors(300, 48, 10, 7);
    let input: Vec<NewDocument> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| NewDocument::new(format!("d{i}"), "x").with_embedding(v.clone()))
        .collect();
    let ids = store.batch(input).await.unwrap().ids;
    let query = &random_vectors(1, 48, 3, 99)[0];
    let mut expected: Vec<(f32, i64)> =
        vectors.iter().zip(&ids).map(|(v, id)| (marketking_core::cosine_similarity(v, query).unwrap(), *id)).collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let hits = store.search_by_vector(query, &SearchOptions::top(20)).await.unwrap();
    assert_eq!(
        hits.iter().map(|h| h.document.id).collect::<Vec<_>>(),
        expected[..20].iter().map(|e| e.1).collect::<Vec<_>>()
    );
    for (h, e) in hits.iter().zip(&expected) {
        assert!((h.score - e.0).abs() < 1e-5);
    }
    t.cleanup().await;
}

async fn bad_input_gets_typed_errors_and_writes_nothing(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(16).await;
    let field = |e: Error| match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(field(store.create(NewDocument::new("x".repeat(256), "c")).await.unwrap_err()), "title");
    assert_eq!(field(store.create(NewDocument::new("t", "  ")).await.unwrap_err()), "content");
    assert_eq!(field(marketking_core::metadata_object("metadata", json!([1])).unwrap_err()), "metadata");
    let mut nan = vec![0.5f32; 16];
    nan[3] = f32::NAN;
    assert_eq!(field(store.create(NewDocument::new("t", "c").with_embedding(nan)).await.unwrap_err()), "embedding");
    let mut inf = vec![0.5f32; 16];
    inf[0] = f32::INFINITY;
    assert!(store.search_by_vector(&inf, &SearchOptions::top(1)).await.is_err());
    assert!(matches!(
        store.create(NewDocument::new("t", "c").with_embedding(vec![1.0; 15])).await,
        Err(Error::DimensionMismatch { expected: 16, actual: 15 })
    ));
    assert!(matches!(
        store.search_by_vector(&[1.0; 17], &SearchOptions::top(1)).await,
        Err(Error::DimensionMismatch { expected: 16, actual: 17 })
    ));
    assert_eq!(field(store.search("q", &SearchOptions::top(0)).await.unwrap_err()), "k");
    assert_eq!(field(store.search("q", &SearchOptions::top(1001)).await.unwrap_err()), "k");
    assert_eq!(field(store.search("", &SearchOptions::top(1)).await.unwrap_err()), "query");
    assert_eq!(field(store.search("q", &SearchOptions::top(1).min_score(f32::NAN)).await.unwrap_err()), "min_score");
    // One bad document in a batch: nothing from the batch is written.
    let mut batch = docs(5, "b");
    batch[3].title = String::new();
    assert_eq!(field(store.batch(batch).await.unwrap_err()), "documents[3].title");
    assert_eq!(store.stats().await.unwrap().storage.documents, 0);
    assert!(matches!(store.get(12345).await, Err(Error::NotFound { id: 12345 })));
    assert!(matches!(store.update(12345, DocumentPatch::default()).await, Err(Error::NotFound { id: 12345 })));
    t.cleanup().await;
}

async fn list_pages_through_everything(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(16).await;
    let ids = store.batch(docs(25, "l")).await.unwrap().ids;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.list(after, 10, true).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.iter().all(|d| d.embedding.as_ref().map(Vec::len) == Some(16)));
        after = page.last().unwrap().id;
        seen.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(seen, ids);
    assert!(matches!(store.list(0, 0, false).await, Err(Error::InvalidInput { .. })));
    t.cleanup().await;
}

async fn other_dimensions_are_refused_on_reopen(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(24).await;
    store.create(NewDocument::new("kept", "still here after the refused open")).await.unwrap();
    drop(store);
    let err = t.store(HashingEmbedder::new(32).unwrap(), NoCache).await.unwrap_err();
    match &err {
        Error::SchemaMismatch { stored_dimensions, dimensions, stored_model, model, .. } => {
            assert_eq!((*stored_dimensions, *dimensions), (24, 32));
            assert_eq!((stored_model.as_str(), model.as_str()), ("marketking-hash-v1-24", "marketking-hash-v1-32"));
        }
        other => panic!("expected SchemaMismatch, got {other}"),
    }
    let again = t.plain(24).await;
    assert_eq!(again.stats().await.unwrap().storage.documents, 1, "the refused open changed nothing");
    drop(again);
    t.cleanup().await;
}

async fn stats_count_sources_and_indexes_differ_explicitly(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(16).await;
    let mut input = docs(30, "s");
    input[0].source = None;
    input.push(NewDocument::new("x", "third source").with_source("zeta"));
    store.batch(input).await.unwrap();
    store.search("content", &SearchOptions::top(3)).await.unwrap();
    let s = store.stats().await.unwrap();
    assert_eq!(s.storage.documents, 31);
    assert_eq!(s.dimensions, 16);
    assert_eq!(s.model, "marketking-hash-v1-16");
    let counts: Vec<(Option<&str>, u64)> = s.storage.sources.iter().map(|c| (c.source.as_deref(), c.count)).collect();
    assert_eq!(
        counts,
        vec![(Some("odd"), 15), (Some("even"), 14), (Some("zeta"), 1), (None, 1)],
        "largest first, no source last"
    );
    assert_eq!(s.embedder.texts, 32, "31 documents and one query");
    assert!(s.storage.table_bytes > 0);
    // Both build an HNSW index on request (pgvector's, or the embedded store's in-memory graph),
    // report it in stats and drop it.
    let info = store.create_index(IndexSpec::default()).await.unwrap();
    assert_eq!(store.stats().await.unwrap().storage.index, Some(info));
    assert!(store.drop_index().await.unwrap());
    assert_eq!(store.stats().await.unwrap().storage.index, None);
    if kind == Kind::Embedded {
        // IVFFlat is pgvector's only.
        let err = store.create_index(IndexSpec { kind: IndexKind::IvfFlat { lists: None }, ..IndexSpec::default() });
        let err = err.await.unwrap_err();
        assert!(matches!(err, Error::Unsupported { ref operation } if operation.contains("IVFFlat")), "{err}");
    }
    t.cleanup().await;
}

/// Several writers upserting the same keys at once, none of which exist yet: every call
/// succeeds (no unique-violation error for the loser), each key ends up as exactly one row, and
/// its content is one writer's whole document. Batch sizes cover PostgreSQL's per-key locks
/// (up to 32 keys) and its table-wide lock for larger batches.
async fn concurrent_upserts_of_the_same_new_keys_all_succeed(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(32).await;
    let sizes = [40usize, 8, 1, 33];
    for (round, &size) in sizes.iter().enumerate() {
        let writers = (0..4).map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                // Each writer sends the keys in its own order.
                let mut batch: Vec<NewDocument> = (0..size)
                    .map(|i| {
                        NewDocument::new(format!("title {i}"), format!("round {round} writer {w} key {i}"))
                            .with_key(format!("r{round}-k{i}"))
                    })
                    .collect();
                batch.rotate_left(w * size / 4);
                store.batch(batch).await
            })
        });
        let reports: Vec<_> = futures_util::future::join_all(writers).await;
        let mut created = 0;
        for r in reports {
            let report = r.unwrap().unwrap_or_else(|e| panic!("round {round}: a concurrent upsert failed: {e}"));
            assert_eq!(report.ids.len(), size);
            created += report.created;
        }
        assert_eq!(created, size, "round {round}: each new key is created exactly once");
        for i in 0..size {
            let doc = store.get_by_key(&format!("r{round}-k{i}")).await.unwrap();
            assert!(
                (0..4).any(|w| doc.content == format!("round {round} writer {w} key {i}")),
                "content is one writer's: {}",
                doc.content
            );
        }
    }
    assert_eq!(store.stats().await.unwrap().storage.documents, sizes.iter().sum::<usize>() as u64);
    t.cleanup().await;
}

/// Re-importing an export made with embeddings (thousands of keyed rows with vectors, on a store
/// that never read a vector before): every row is unchanged, and the call returns. Reading the
/// stored vectors of a whole batch once hung on PostgreSQL (the `vector` column type was looked
/// up on the connection while the rows were still queued).
async fn reimport_of_thousands_of_rows_with_vectors_is_unchanged(kind: Kind) {
    let t = Fixture::new(kind);
    let vectors = random_vectors(3000, 64, 10, 5);
    let rows: Vec<NewDocument> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            NewDocument::new(format!("t{i}"), format!("c{i}")).with_key(format!("k{i}")).with_embedding(v.clone())
        })
        .collect();
    let first = t.plain(64).await;
    assert_eq!(first.batch(rows.clone()).await.unwrap().created, 3000);
    drop(first);
    let store = t.plain(64).await;
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), store.batch(rows))
        .await
        .expect("a re-import with vectors must not hang")
        .unwrap();
    assert_eq!((report.created, report.updated, report.unchanged), (0, 0, 3000));
    t.cleanup().await;
}
