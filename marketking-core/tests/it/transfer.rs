//! Export and restore: the JSONL line format carries everything a document is, so an export
//! imported into an empty store gives the same documents and the same searches; listing pages
//! through a filter; deleting by key.

use chrono::{Duration, Utc};
use futures_util::StreamExt;
use marketking_core::jsonl::{self, LineOptions};
use marketking_core::{
    metadata, DocumentPatch, Error, Filter, ListOptions, NewDocument, SearchMode, SearchOptions, VectorStore,
};

use crate::common::{Fixture, Kind};

crate::conformance!(
    export_then_import_into_an_empty_store_is_identical,
    list_pages_and_streams_through_a_filter,
    delete_by_key_and_restored_ids_are_checked,
);

const DIMS: usize = 64;

/// A store with gaps in its ids, updated documents (created_at != updated_at), restored old
/// times, keys, sources and metadata.
async fn filled(t: &Fixture) -> VectorStore {
    let store = t.plain(DIMS).await;
    let old = Utc::now() - Duration::days(400);
    let mut docs = Vec::new();
    for i in 0..60 {
        let mut d = NewDocument::new(
            format!("Item {i} {}", ["boots", "tent", "jacket", "stove"][i % 4]),
            format!(
                "Document {i} about {} for {} weather",
                ["hiking", "camping", "rain"][i % 3],
                ["cold", "warm"][i % 2]
            ),
        )
        .with_metadata(metadata!({"n": i, "group": i % 5, "tags": ["a", format!("t{}", i % 3)]}));
        if i % 3 != 0 {
            d = d.with_key(format!("sku-{i}"));
        }
        if i % 4 == 0 {
            d = d.with_source("catalog");
        }
        if i % 10 == 0 {
            d = d.with_timestamps(old + Duration::days(i as i64), old + Duration::days(i as i64 + 3));
        }
        docs.push(d);
    }
    let report = store.batch(docs).await.unwrap();
    for id in report.ids.iter().step_by(7) {
        store.delete(*id).await.unwrap();
    }
    store.update(report.ids[1], DocumentPatch::new().content("Rewritten: a stove for cold nights")).await.unwrap();
    store.update(report.ids[2], DocumentPatch::new().clear_source().metadata(metadata!({"n": -1}))).await.unwrap();
    store.analyze().await.unwrap();
    store
}

async fn export(store: &VectorStore) -> Vec<String> {
    let opts = ListOptions::default().with_embedding(true).page_size(7);
    let mut lines = Vec::new();
    let mut stream = std::pin::pin!(store.list_stream_with(opts));
    while let Some(d) = stream.next().await {
        lines.push(jsonl::to_line(&d.unwrap()));
    }
    lines
}

async fn export_then_import_into_an_empty_store_is_identical(kind: Kind) {
    let (a, b, c) = (Fixture::new(kind), Fixture::new(kind), Fixture::new(kind));
    let src = filled(&a).await;
    let lines = export(&src).await;
    let originals = src.list(0, 1000, true).await.unwrap();
    assert_eq!(lines.len(), originals.len());
    assert!(originals.iter().any(|d| d.updated_at > d.created_at), "some documents were updated");

    let dst = b.plain(DIMS).await;
    let keep = LineOptions::default().keep_ids(true);
    let docs: Vec<NewDocument> = lines.iter().map(|l| jsonl::parse_line(l.as_bytes(), DIMS, keep).unwrap()).collect();
    let report = dst.batch(docs).await.unwrap();
    assert_eq!(report.created, originals.len());
    dst.analyze().await.unwrap();

    // The same documents: ids, keys, times, metadata and embeddings.
    for d in &originals {
        assert_eq!(&dst.get_with_embedding(d.id).await.unwrap(), d);
    }
    assert_eq!(dst.list(0, 1000, true).await.unwrap(), originals);
    // The same searches, in every mode, and the same date filter.
    let since = Utc::now() - Duration::days(30);
    for q in ["stove for cold nights", "camping tent", "rain jacket weather", "boots"] {
        for mode in [SearchMode::Vector, SearchMode::Text, SearchMode::Hybrid] {
            let opts = SearchOptions::default().k(8).mode(mode);
            let (x, y) = (src.search(q, &opts).await.unwrap(), dst.search(q, &opts).await.unwrap());
            let ids = |h: &[marketking_core::SearchHit]| h.iter().map(|h| (h.document.id, h.score)).collect::<Vec<_>>();
            assert_eq!(ids(&x), ids(&y), "{q:?} in {mode:?}");
        }
        let opts = SearchOptions::default().k(50).created_before(since);
        let (x, y) = (src.search(q, &opts).await.unwrap(), dst.search(q, &opts).await.unwrap());
        assert_eq!(x.len(), 6 - 1, "the restored old documents, less the deleted one (id 1)");
        assert_eq!(x, y, "date filters see the restored times");
    }
    // New documents get ids past the restored ones.
    let max = originals.iter().map(|d| d.id).max().unwrap();
    assert!(dst.create(NewDocument::new("New", "after the restore")).await.unwrap().id > max);

    // Without keep_ids: new ids, but keys and times are kept.
    let other = c.plain(DIMS).await;
    let docs: Vec<NewDocument> =
        lines.iter().map(|l| jsonl::parse_line(l.as_bytes(), DIMS, LineOptions::default()).unwrap()).collect();
    other.batch(docs).await.unwrap();
    for d in originals.iter().filter(|d| d.key.is_some()) {
        let got = other.get_by_key(d.key.as_deref().unwrap()).await.unwrap();
        assert_eq!((got.created_at, got.updated_at, &got.metadata), (d.created_at, d.updated_at, &d.metadata));
    }
    for t in [a, b, c] {
        t.cleanup().await;
    }
}

async fn list_pages_and_streams_through_a_filter(kind: Kind) {
    let t = Fixture::new(kind);
    let store = filled(&t).await;
    let filter =
        Filter::from_json(&serde_json::json!({"group": {"$in": [1, 3]}, "source": {"$exists": false}})).unwrap();
    let expected: Vec<i64> = store
        .list(0, 1000, false)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| [1, 3].contains(&d.metadata["group"].as_i64().unwrap_or(-1)) && d.source.is_none())
        .map(|d| d.id)
        .collect();
    assert!(expected.len() > 10, "{}", expected.len());
    // Pages of 4 through the filter, by cursor.
    let (mut after, mut paged) = (0, Vec::new());
    loop {
        let page = store.list_page(after, &ListOptions::default().filter(filter.clone()).page_size(4)).await.unwrap();
        paged.extend(page.iter().map(|d| d.id));
        match page.last() {
            Some(last) if page.len() == 4 => after = last.id,
            _ => break,
        }
    }
    assert_eq!(paged, expected);
    let streamed: Vec<i64> = store.list_stream(filter.clone()).map(|d| d.unwrap().id).collect().await;
    assert_eq!(streamed, expected);
    assert_eq!(store.count(&filter).await.unwrap(), expected.len() as u64);
    // A bad page size names the field; a bad filter names its path.
    let err = store.list_page(0, &ListOptions::default().page_size(0)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "limit"), "{err:?}");
    assert!(Filter::from_json(&serde_json::json!({"group": {"$near": 1}})).is_err());
    t.cleanup().await;
}

async fn delete_by_key_and_restored_ids_are_checked(kind: Kind) {
    let t = Fixture::new(kind);
    let store = filled(&t).await;
    let doc = store.get_by_key("sku-4").await.unwrap();
    store.delete_by_key("sku-4").await.unwrap();
    assert!(matches!(store.get(doc.id).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.delete_by_key("sku-4").await, Err(Error::KeyNotFound { .. })));
    // A restored id that is taken, or a key stored under another id, is a conflict and writes
    // nothing.
    let before = store.count(&Filter::everything()).await.unwrap();
    let taken = store.list(0, 1, false).await.unwrap().remove(0).id;
    let err = store
        .batch(vec![NewDocument::new("a", "fresh").with_id(100_000), NewDocument::new("b", "clash").with_id(taken)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    let err = store.batch(vec![NewDocument::new("c", "moved").with_key("sku-5").with_id(99_999)]).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), before);
    assert!(matches!(store.get(100_000).await, Err(Error::NotFound { .. })));
    let err = store.create(NewDocument::new("d", "bad id").with_id(0)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "id"), "{err:?}");
    t.cleanup().await;
}
