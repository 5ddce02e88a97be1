//! The filter language on both backends: one table of cases with the expected documents, run
//! through search (vector, text and hybrid), count and delete; 1% selectivity through HNSW;
//! errors that name the path; delete by filter invalidating cached results.

use std::collections::BTreeSet;

use marketking_core::{
    Error, Filter, IndexSpec, MemoryCache, NewDocument, NoCache, SearchMode, SearchOptions, VectorStore,
};
use serde_json::{json, Value};

use crate::common::{random_vectors, Fixture, Kind, TestEmbedder};

crate::conformance!(
    conformance_table_gives_the_same_documents,
    one_percent_selectivity_still_returns_k,
    bad_filters_name_the_path_and_never_return_empty_results,
    count_and_delete_by_filter,
);

/// The corpus: title, source, key, metadata. Titles name the documents in the table below.
fn corpus() -> Vec<NewDocument> {
    let d = |title: &str, source: Option<&str>, key: Option<&str>, meta: Value| {
        let mut doc = NewDocument::new(title, format!("{title} common words for every document"))
            .with_metadata(meta.as_object().cloned().expect("an object"));
        doc.source = source.map(str::to_string);
        doc.key = key.map(str::to_string);
        doc
    };
    vec![
        d(
            "d1",
            Some("catalog"),
            Some("k1"),
            json!({"price": 10, "cat": "shoes", "tags": ["red", "sale"], "dims": {"w": 3}}),
        ),
        d("d2", Some("catalog"), Some("k2"), json!({"price": "10", "cat": "shoes", "tags": [], "n": null})),
        d(
            "d3",
            Some("blog"),
            Some("k3"),
            json!({"price": 25.5, "cat": "boots", "tags": ["blue"], "dims": {"w": 5, "h": 2}}),
        ),
        d(
            "d4",
            None,
            Some("k4"),
            json!({"price": 100, "items": [{"sku": "a"}, {"sku": "b"}], "deep": [[1]], "big": 9007199254740993u64}),
        ),
        d(
            "d5",
            Some("catalog"),
            None,
            json!({"cat": "Shoes", "n": 0, "flag": true, "when": "2024-06-01", "price": 1.0}),
        ),
        d("d6", Some("blog"), None, json!({})),
        d("d7", Some("Blog"), Some("k7"), json!({"price": -1, "source": "meta", "tags": "red", "name": "é"})),
    ]
}

/// (filter, expected titles): numbers vs strings, missing fields, nulls, arrays, nested paths,
/// built-in fields, `$not` of missing, every operator.
fn table() -> Vec<(Value, &'static [&'static str])> {
    vec![
        (json!({}), &["d1", "d2", "d3", "d4", "d5", "d6", "d7"]),
        // $eq / implicit: numbers never equal strings; 1 equals 1.0.
        (json!({"price": 10}), &["d1"]),
        (json!({"price": "10"}), &["d2"]),
        (json!({"price": {"$eq": 1}}), &["d5"]),
        (json!({"cat": "shoes"}), &["d1", "d2"]),
        (json!({"flag": true}), &["d5"]),
        (json!({"flag": 1}), &[]),
        (json!({"big": 9007199254740993u64}), &["d4"]),
        (json!({"big": 9007199254740992u64}), &[]),
        // $ne: missing fields match; arrays match when no element equals.
        (json!({"price": {"$ne": 10}}), &["d2", "d3", "d4", "d5", "d6", "d7"]),
        (json!({"tags": {"$ne": "red"}}), &["d2", "d3", "d4", "d5", "d6"]),
        // Ordering: same types only.
        (json!({"price": {"$gt": 5}}), &["d1", "d3", "d4"]),
        (json!({"price": {"$gte": 10, "$lt": 100}}), &["d1", "d3"]),
        (json!({"price": {"$lte": 1}}), &["d5", "d7"]),
        (json!({"price": {"$lt": "2"}}), &["d2"]),
        (json!({"cat": {"$gt": "a"}}), &["d1", "d2", "d3"]),
        (json!({"cat": {"$lt": "a"}}), &["d5"]),
        (json!({"name": {"$gt": "z"}}), &["d7"]),
        (json!({"when": {"$gte": "2024-01-01"}}), &["d5"]),
        // $in / $nin.
        (json!({"price": {"$in": [10, 25.5, "x"]}}), &["d1", "d3"]),
        (json!({"price": {"$in": []}}), &[]),
        (json!({"tags": {"$in": ["blue", "sale"]}}), &["d1", "d3"]),
        (json!({"price": {"$nin": [10, "10"]}}), &["d3", "d4", "d5", "d6", "d7"]),
        (json!({"n": {"$in": [null]}}), &["d1", "d2", "d3", "d4", "d6", "d7"]),
        // null: explicit null or missing; $ne null: present and not null.
        (json!({"n": null}), &["d1", "d2", "d3", "d4", "d6", "d7"]),
        (json!({"n": {"$ne": null}}), &["d5"]),
        // $exists: null counts as present; an empty array too.
        (json!({"n": {"$exists": true}}), &["d2", "d5"]),
        (json!({"tags": {"$exists": false}}), &["d4", "d5", "d6"]),
        // Arrays: any element; nested arrays are not searched.
        (json!({"tags": "red"}), &["d1", "d7"]),
        (json!({"deep": 1}), &[]),
        (json!({"deep": {"$exists": true}}), &["d4"]),
        // Nested paths, through arrays of objects.
        (json!({"dims.w": {"$gte": 4}}), &["d3"]),
        (json!({"dims.h": {"$exists": true}}), &["d3"]),
        (json!({"dims.w.x": {"$exists": true}}), &[]),
        (json!({"items.sku": "b"}), &["d4"]),
        (json!({"metadata.dims.w": 3}), &["d1"]),
        // Built-in fields; `metadata.source` is the metadata key.
        (json!({"source": "catalog"}), &["d1", "d2", "d5"]),
        (json!({"source": {"$in": ["blog", null]}}), &["d3", "d4", "d6"]),
        (json!({"source": {"$ne": "catalog"}}), &["d3", "d4", "d6", "d7"]),
        (json!({"source": {"$lt": "a"}}), &["d7"]),
        (json!({"source": {"$exists": false}}), &["d4"]),
        (json!({"metadata.source": "meta"}), &["d7"]),
        (json!({"key": null}), &["d5", "d6"]),
        (json!({"key": {"$gte": "k3", "$lte": "k4"}}), &["d3", "d4"]),
        (json!({"key": {"$nin": ["k1", "k2"]}}), &["d3", "d4", "d5", "d6", "d7"]),
        // Logic; $not of a missing field's comparison is true.
        (json!({"$not": {"price": {"$gt": 5}}}), &["d2", "d5", "d6", "d7"]),
        (json!({"$not": {"nothing": {"$lt": 1}}}), &["d1", "d2", "d3", "d4", "d5", "d6", "d7"]),
        (json!({"$or": [{"price": 10}, {"source": "blog"}]}), &["d1", "d3", "d6"]),
        (json!({"$and": [{"cat": "shoes"}, {"$not": {"tags": "red"}}]}), &["d2"]),
        (json!({"cat": "shoes", "source": "catalog", "tags": {"$exists": true}}), &["d1", "d2"]),
        (
            json!({"$or": [{"$not": {"n": {"$exists": true}}}, {"n": {"$gt": -1}}]}),
            &["d1", "d3", "d4", "d5", "d6", "d7"],
        ),
    ]
}

fn titles(hits: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    hits.into_iter().collect()
}

async fn conformance_table_gives_the_same_documents(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.store(TestEmbedder::new(32), NoCache).await.unwrap();
    store.batch(corpus()).await.unwrap();
    let all = store.list(0, 100, false).await.unwrap();
    assert_eq!(all.len(), 7);
    let query = random_vectors(1, 32, 1, 5).remove(0);
    for (json, want) in table() {
        let filter = Filter::from_json(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        // The Rust evaluation of stored documents is the reference for both backends.
        let reference = titles(all.iter().filter(|d| filter.matches_document(d)).map(|d| d.title.clone()));
        assert_eq!(reference, want, "reference evaluation of {json}");
        let opts = SearchOptions::top(100).filter(filter.clone());
        let by_vector = store.search_by_vector(&query, &opts).await.unwrap();
        assert_eq!(titles(by_vector.into_iter().map(|h| h.document.title)), want, "{kind:?} vector search {json}");
        for mode in [SearchMode::Text, SearchMode::Hybrid] {
            let hits = store.search("common words", &opts.clone().mode(mode)).await.unwrap();
            assert_eq!(titles(hits.into_iter().map(|h| h.document.title)), want, "{kind:?} {mode:?} search {json}");
        }
        assert_eq!(store.count(&filter).await.unwrap(), want.len() as u64, "{kind:?} count {json}");
    }

    // Times: created_at and updated_at compare as instants (microseconds).
    let d1 = store.get_by_key("k1").await.unwrap();
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let created = Filter::field("created_at").eq(at(d1.created_at));
    assert_eq!(store.count(&created).await.unwrap(), 7, "one batch, one creation time");
    assert_eq!(store.count(&Filter::field("created_at").lt(at(d1.created_at))).await.unwrap(), 0);
    let later = store
        .update(d1.id, marketking_core::DocumentPatch::new().metadata(marketking_core::metadata!({"v": 2})))
        .await
        .unwrap();
    assert!(later.updated_at > d1.updated_at);
    let changed = Filter::field("updated_at").gt(at(d1.updated_at));
    let hits = store.search_by_vector(&query, &SearchOptions::top(10).filter(changed.clone())).await.unwrap();
    assert_eq!(titles(hits.into_iter().map(|h| h.document.title)), titles(["d1".to_string()]));
    assert_eq!(store.count(&Filter::field("updated_at").is_in([at(later.updated_at)])).await.unwrap(), 1);
    // Combined with the older filters by AND.
    let opts = SearchOptions::top(10).source("catalog").filter(Filter::field("cat").eq("shoes"));
    let opts = SearchOptions { metadata: Some(marketking_core::metadata!({"n": null})), ..opts };
    let hits = store.search_by_vector(&query, &opts).await.unwrap();
    assert_eq!(titles(hits.into_iter().map(|h| h.document.title)), titles(["d2".to_string()]));
    t.cleanup().await;
}

async fn one_percent_selectivity_still_returns_k(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.store(TestEmbedder::new(32), NoCache).await.unwrap();
    let vectors = random_vectors(2000, 32, 8, 11);
    let docs: Vec<NewDocument> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let group = if i % 100 == 7 { "rare" } else { "common" };
            NewDocument::new(format!("doc {i}"), format!("document number {i}"))
                .with_metadata(marketking_core::metadata!({"group": group, "n": i}))
                .with_embedding(v.clone())
        })
        .collect();
    for chunk in docs.chunks(500) {
        store.batch(chunk.to_vec()).await.unwrap();
    }
    if kind == Kind::Postgres {
        // With the index, an unfiltered search at ef_search 10 reads 10 candidates; a 1%
        // filter needs iterative scans (or the planner's exact plan) to still return 10.
        store.create_index(IndexSpec::default()).await.unwrap();
    }
    let query = random_vectors(1, 32, 1, 99).remove(0);
    for json in
        [json!({"group": "rare"}), json!({"n": {"$in": (0..2000).filter(|i| i % 100 == 7).collect::<Vec<_>>()}})]
    {
        let filter = Filter::from_json(&json).unwrap();
        assert_eq!(store.count(&filter).await.unwrap(), 20);
        let opts = SearchOptions { ef_search: Some(10), ..SearchOptions::top(10).filter(filter.clone()) };
        let hits = store.search_by_vector(&query, &opts).await.unwrap();
        assert_eq!(hits.len(), 10, "{kind:?} {json}: a 1% filter still returns k");
        assert!(hits.iter().all(|h| filter.matches_document(&h.document)));
        let hybrid = store.search("document number", &SearchOptions::top(10).filter(filter.clone())).await.unwrap();
        assert_eq!(hybrid.len(), 10, "{kind:?} {json}: hybrid too");
        assert!(hybrid.iter().all(|h| filter.matches_document(&h.document)));
    }
    t.cleanup().await;
}

fn invalid_field(e: Error) -> String {
    match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

async fn bad_filters_name_the_path_and_never_return_empty_results(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(32).await;
    store.batch(corpus()).await.unwrap();
    let bad = Filter::field("price").lt(10).and(Filter::field("created_at").gt("last week"));
    let opts = SearchOptions::top(5).filter(bad.clone());
    assert_eq!(invalid_field(store.search("shoes", &opts).await.unwrap_err()), "filter.$and[1].created_at.$gt");
    assert_eq!(invalid_field(store.count(&bad).await.unwrap_err()), "filter.$and[1].created_at.$gt");
    assert_eq!(invalid_field(store.delete_by_filter(&bad).await.unwrap_err()), "filter.$and[1].created_at.$gt");
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 7, "nothing deleted");
    t.cleanup().await;
}

async fn count_and_delete_by_filter(kind: Kind) {
    let t = Fixture::new(kind);
    let store: VectorStore = t.store(TestEmbedder::new(32), MemoryCache::default()).await.unwrap();
    store.batch(corpus()).await.unwrap();
    let opts = SearchOptions::top(10);
    assert_eq!(store.search("common words", &opts).await.unwrap().len(), 7);
    // `{}` is refused; delete_all is explicit.
    assert_eq!(invalid_field(store.delete_by_filter(&Filter::everything()).await.unwrap_err()), "filter");
    let shoes = Filter::from_json(&json!({"cat": {"$in": ["shoes", "Shoes"]}})).unwrap();
    assert_eq!(store.delete_by_filter(&shoes).await.unwrap(), 3);
    assert_eq!(store.count(&shoes).await.unwrap(), 0);
    assert_eq!(store.count(&Filter::everything()).await.unwrap(), 4);
    // Cached results were invalidated by the delete.
    let left = store.search("common words", &opts).await.unwrap();
    assert_eq!(titles(left.into_iter().map(|h| h.document.title)), titles(["d3", "d4", "d6", "d7"].map(String::from)));
    assert_eq!(store.delete_by_filter(&shoes).await.unwrap(), 0);
    assert_eq!(store.delete_all().await.unwrap(), 4);
    assert!(store.search("common words", &opts).await.unwrap().is_empty());
    t.cleanup().await;
}
