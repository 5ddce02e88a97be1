//! The fast paths for callers who bring arrays: borrowed inserts of new rows
//! (`insert_new`) and ids-only searches, on both backends.

use marketking_core::{metadata, DocumentRef, Error, NoCache, SearchMode, SearchOptions};

use crate::common::{random_vectors, Fixture, Kind, TestEmbedder};

crate::conformance!(insert_new_writes_borrowed_rows_all_or_nothing, ids_only_searches_match_full_searches,);

async fn insert_new_writes_borrowed_rows_all_or_nothing(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = TestEmbedder::new(16);
    let store = t.store(emb.clone(), NoCache).await.unwrap();
    let vectors = random_vectors(300, 16, 10, 3);
    let titles: Vec<String> = (0..300).map(|i| format!("row {i}")).collect();
    let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    let meta = metadata!({"lang": "en"});
    let rows = titles.iter().zip(&vectors).zip(&keys).enumerate().map(|(i, ((title, v), key))| {
        let r = DocumentRef::new(title, "borrowed body", v).key(key);
        if i % 2 == 0 {
            r.source("even").metadata(&meta)
        } else {
            r
        }
    });
    let report = store.insert_new(rows).await.unwrap();
    assert_eq!((report.created, report.updated, report.unchanged, report.embedded), (300, 0, 0, 0));
    assert_eq!(report.ids.len(), 300);
    assert_eq!(emb.calls(), 0, "rows bring their vectors: no embedder call");
    let doc = store.get_by_key("k10").await.unwrap();
    assert_eq!(doc.id, report.ids[10]);
    assert_eq!(
        (doc.title.as_str(), doc.content.as_str(), doc.source.as_deref()),
        ("row 10", "borrowed body", Some("even"))
    );
    assert_eq!(doc.metadata, serde_json::json!({"lang": "en"}));
    assert_eq!(store.get_by_key("k11").await.unwrap().metadata, serde_json::json!({}));
    let stored = store.get_with_embedding(report.ids[7]).await.unwrap().embedding.unwrap();
    assert_eq!(stored, vectors[7], "the vector is stored exactly");
    // The full-text leg sees them like any other document.
    let hits = store.search("borrowed", &SearchOptions::top(3).mode(SearchMode::Text)).await.unwrap();
    assert_eq!(hits.len(), 3);

    // A stored key: a conflict, and nothing of the batch is written.
    let fresh = "fresh body".to_string();
    let clash = [
        DocumentRef::new("new", &fresh, &vectors[0]).key("new-1"),
        DocumentRef::new("dup", &fresh, &vectors[1]).key("k5"),
    ];
    let e = store.insert_new(clash).await.unwrap_err();
    assert!(matches!(&e, Error::Conflict { reason } if reason.contains("k5")), "{e:?}");
    assert!(matches!(store.get_by_key("new-1").await, Err(Error::KeyNotFound { .. })), "all or nothing");
    // A taken id, too.
    let e = store.insert_new([DocumentRef::new("x", "y", &vectors[0]).id(report.ids[0])]).await.unwrap_err();
    assert!(matches!(&e, Error::Conflict { .. }), "{e:?}");
    assert_eq!(store.count(&marketking_core::Filter::everything()).await.unwrap(), 300);

    // Bad rows are refused by row and field before anything is written.
    let short = vec![1.0_f32; 3];
    let zero = vec![0.0_f32; 16];
    for (rows, field) in [
        (vec![DocumentRef::new("a", "b", &zero)], "documents[0].embedding"),
        (vec![DocumentRef::new("", "b", &vectors[0])], "documents[0].title"),
        (
            vec![DocumentRef::new("a", "b", &vectors[0]).key("z"), DocumentRef::new("c", "d", &vectors[1]).key("z")],
            "documents[1].key",
        ),
        (vec![DocumentRef::new("a", "b", &vectors[0]).id(0)], "documents[0].id"),
    ] {
        let e = store.insert_new(rows).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidInput { field: f, .. } if f == field), "{field}: {e:?}");
    }
    let e = store
        .insert_new([DocumentRef::new("a", "b", &vectors[0]), DocumentRef::new("a", "b", &short)])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DimensionMismatch { expected: 16, actual: 3 }), "{e:?}");
    assert_eq!(store.count(&marketking_core::Filter::everything()).await.unwrap(), 300);

    // Caller-chosen ids: stored as given, and the store's own ids continue past them.
    let r = store.insert_new([DocumentRef::new("chosen", "id", &vectors[2]).id(1_000_000)]).await.unwrap();
    assert_eq!(r.ids, vec![1_000_000]);
    // No optional field in the batch: the table's defaults, as for any other new row.
    let chosen = store.get(1_000_000).await.unwrap();
    assert_eq!(
        (chosen.metadata.clone(), chosen.source.clone(), chosen.key.clone()),
        (serde_json::json!({}), None, None)
    );
    assert_eq!(chosen.created_at, chosen.updated_at);
    assert!(chosen.created_at >= doc.created_at, "{chosen:?} / {doc:?}");
    let next = store.insert_new([DocumentRef::new("next", "id", &vectors[3])]).await.unwrap();
    assert!(next.ids[0] > 1_000_000, "{:?}", next.ids);
    assert!(store.insert_new(std::iter::empty()).await.unwrap().ids.is_empty());
    t.cleanup().await;
}

async fn ids_only_searches_match_full_searches(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = TestEmbedder::new(16);
    let store = t.store(emb, NoCache).await.unwrap();
    let vectors = random_vectors(200, 16, 8, 5);
    let titles: Vec<String> = (0..200).map(|i| format!("item {i} about {}", ["rain", "snow", "sun"][i % 3])).collect();
    let rows = titles.iter().zip(&vectors).enumerate().map(|(i, (title, v))| {
        let r = DocumentRef::new(title, "weather notes", v);
        if i % 2 == 0 {
            r.source("even")
        } else {
            r
        }
    });
    store.insert_new(rows).await.unwrap();
    let pairs =
        |hits: Vec<marketking_core::SearchHit>| hits.into_iter().map(|h| (h.document.id, h.score)).collect::<Vec<_>>();
    let ids = |hits: Vec<marketking_core::ScoredId>| hits.into_iter().map(|h| (h.id, h.score)).collect::<Vec<_>>();
    let opts = SearchOptions::top(7);
    assert_eq!(
        ids(store.search_ids_by_vector(&vectors[4], &opts).await.unwrap()),
        pairs(store.search_by_vector(&vectors[4], &opts).await.unwrap())
    );
    let filtered = SearchOptions::top(5).source("even");
    assert_eq!(
        ids(store.search_ids_by_vector(&vectors[1], &filtered).await.unwrap()),
        pairs(store.search_by_vector(&vectors[1], &filtered).await.unwrap())
    );
    for mode in [SearchMode::Text, SearchMode::Hybrid, SearchMode::Vector] {
        let o = SearchOptions::top(6).mode(mode);
        let got = store.search_ids("snow notes", &o).await.unwrap();
        let full = store.search("snow notes", &o).await.unwrap();
        assert_eq!(got.len(), full.len(), "{mode:?}");
        for (g, f) in got.iter().zip(&full) {
            assert_eq!((g.id, g.score, g.vector, g.text), (f.document.id, f.score, f.vector, f.text), "{mode:?}");
        }
    }
    let e = store.search_ids_by_vector(&vectors[0], &SearchOptions::top(3).include_embedding(true)).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "include_embedding"), "{e:?}");
    t.cleanup().await;
}

mod close {
    use super::*;

    crate::conformance!(closing_releases_the_storage_and_refuses_later_calls,);

    async fn closing_releases_the_storage_and_refuses_later_calls(kind: Kind) {
        let t = Fixture::new(kind);
        let store = t.store(TestEmbedder::new(8), marketking_core::MemoryCache::new(1000)).await.unwrap();
        let v = random_vectors(3, 8, 3, 9);
        let titles = ["a", "b", "c"];
        store.insert_new(titles.iter().zip(&v).map(|(t, v)| DocumentRef::new(t, "body", v))).await.unwrap();
        // A cached search, to show that a closed store does not answer from its cache either.
        let hits = store.search_by_vector(&v[0], &SearchOptions::top(2)).await.unwrap();
        assert_eq!(hits.len(), 2);
        let clone = store.clone();
        store.close().await.unwrap();
        store.close().await.unwrap();
        assert!(matches!(clone.search_by_vector(&v[0], &SearchOptions::top(2)).await, Err(Error::Closed)));
        assert!(matches!(clone.get(1).await, Err(Error::Closed)));
        assert!(matches!(clone.insert_new([DocumentRef::new("d", "e", &v[1])]).await, Err(Error::Closed)));
        assert!(matches!(clone.count(&marketking_core::Filter::everything()).await, Err(Error::Closed)));
        // What it held is released now, while the (closed) handles are still alive.
        match kind {
            // The file's process lock is free: another store opens the same file for writing.
            Kind::Embedded => {
                let again = t.store(TestEmbedder::new(8), NoCache).await.expect("the lock is released");
                assert_eq!(again.count(&marketking_core::Filter::everything()).await.unwrap(), 3);
            }
            // No connection of the pool is left on the server.
            Kind::Postgres => {
                let pool = store.pool_stats().unwrap();
                assert_eq!(pool.connections, 0, "{pool:?}");
            }
        }
        drop(store);
        drop(clone);
        t.cleanup().await;
    }
}
