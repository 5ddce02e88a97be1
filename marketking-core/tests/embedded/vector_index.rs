//! The embedded store's approximate index (HNSW over the int8 codes): what it returns, how it
//! follows writes, and when a saved graph is (and is not) used after a reopen.

use super::*;

const DIMS: usize = 48;

fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
    // Clustered, like real embeddings: 40 centres, each vector a centre plus noise.
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..40).map(|_| (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    (0..n).map(|i| centres[i % centres.len()].iter().map(|c| c + rng.random_range(-0.5f32..0.5)).collect()).collect()
}

fn source_of(i: usize) -> &'static str {
    if i < 5 {
        "rare"
    } else if i.is_multiple_of(2) {
        "even"
    } else {
        "odd"
    }
}

async fn open_vectors(path: &Path) -> VectorStore {
    VectorStore::builder().db_path(path).no_embedder("test-vectors", DIMS).cache(NoCache).build().await.unwrap()
}

fn hit_ids(hits: &[SearchHit]) -> Vec<i64> {
    hits.iter().map(|h| h.document.id).collect()
}

/// Share of the exact top 10 that the default search returns, over `queries`.
async fn recall(store: &VectorStore, queries: &[Vec<f32>], opts: &SearchOptions) -> f64 {
    let mut found = 0;
    for q in queries {
        let exact = hit_ids(&store.search_by_vector(q, &opts.clone().exact(true)).await.unwrap());
        let got = hit_ids(&store.search_by_vector(q, opts).await.unwrap());
        found += got.iter().filter(|id| exact.contains(id)).count();
    }
    found as f64 / (10 * queries.len()) as f64
}

/// Polls `explain` until the graph serves searches (a graph that could not be loaded is built
/// in the background after an open).
async fn wait_for_graph(store: &VectorStore, q: &[f32]) {
    for _ in 0..600 {
        if store.explain_search(q, &SearchOptions::top(10)).await.unwrap().starts_with("HNSW") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the vector index was not ready 60 s after the open");
}

#[tokio::test]
async fn an_hnsw_index_answers_searches_follows_writes_and_is_saved_at_close() {
    let _guard = no_fork().await;
    let dir = temp_dir("hnsw");
    let path = dir.join("x.db");
    let (graph, meta) = (dir.join("x.db.hnsw"), dir.join("x.db.hnsw.meta"));
    let store = open_vectors(&path).await;
    let data = vectors(4_000, 1);
    let docs: Vec<NewDocument> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            NewDocument::new(format!("doc {i}"), "body")
                .with_key(format!("k{i}"))
                .with_source(source_of(i))
                .with_embedding(v.clone())
        })
        .collect();
    let ids = store.batch(docs).await.unwrap().ids;
    let queries = vectors(30, 2);
    let top10 = SearchOptions::top(10);
    assert!(store.explain_search(&queries[0], &top10).await.unwrap().starts_with("int8 scan"));
    assert_eq!(store.stats().await.unwrap().storage.index, None);

    // Only HNSW over the vectors as they are.
    let err = store.create_index(IndexSpec { kind: IndexKind::IvfFlat { lists: None }, ..IndexSpec::default() }).await;
    assert!(matches!(&err, Err(Error::Unsupported { operation }) if operation.contains("IVFFlat")), "{err:?}");
    let err = store.create_index(IndexSpec { quantization: Quantization::Binary, ..IndexSpec::default() }).await;
    assert!(matches!(&err, Err(Error::InvalidInput { field, .. }) if field == "quantization"), "{err:?}");
    let err = store.rebuild_index(false).await;
    assert!(matches!(&err, Err(Error::InvalidInput { field, .. }) if field == "index"), "{err:?}");

    let info = store
        .create_index(IndexSpec { kind: IndexKind::hnsw(Some(12), Some(80)), ..IndexSpec::default() })
        .await
        .unwrap();
    assert_eq!(info.kind, IndexKind::Hnsw { m: 12, ef_construction: 80 });
    assert!(info.bytes > 0);
    assert_eq!(store.stats().await.unwrap().storage.index, Some(info.clone()));
    assert!(store.explain_search(&queries[0], &top10).await.unwrap().starts_with("HNSW"));
    let r = recall(&store, &queries, &top10).await;
    assert!(r >= 0.95, "recall@10 of the graph against exact search: {r}");
    // Scores stay exact: every hit's score is its cosine similarity.
    for h in store.search_by_vector(&queries[0], &top10.clone().include_embedding(true)).await.unwrap() {
        let exact = cosine_similarity(&queries[0], h.document.embedding.as_ref().unwrap()).unwrap();
        assert!((h.score - exact).abs() < 1e-5);
    }

    // Writes reach the graph at once: a new row, a moved row, a deleted row.
    let fresh = store.create(NewDocument::new("fresh", "body").with_embedding(queries[1].clone())).await.unwrap();
    assert_eq!(hit_ids(&store.search_by_vector(&queries[1], &top10).await.unwrap())[0], fresh.id);
    let moved = ids[7];
    let (doc, _) = store
        .upsert(
            NewDocument::new("doc 7", "body")
                .with_key("k7")
                .with_source(source_of(7))
                .with_embedding(queries[2].clone()),
        )
        .await
        .unwrap();
    assert_eq!(doc.id, moved);
    assert_eq!(hit_ids(&store.search_by_vector(&queries[2], &top10).await.unwrap())[0], moved);
    store.delete(moved).await.unwrap();
    assert!(!hit_ids(&store.search_by_vector(&queries[2], &top10).await.unwrap()).contains(&moved));
    // A filter that leaves the graph few rows still finds every one of them (the scan serves
    // it), and one that leaves many gives the exact filtered answer's rows at high recall.
    let rare = store.search_by_vector(&queries[3], &top10.clone().source("rare")).await.unwrap();
    assert_eq!(rare.len(), 5);
    let even = top10.clone().source("even");
    assert!(recall(&store, &queries, &even).await >= 0.9);
    for h in store.search_by_vector(&queries[4], &even).await.unwrap() {
        assert_eq!(h.document.source.as_deref(), Some("even"));
    }
    let similar = store.find_similar(ids[20], &top10).await.unwrap();
    assert!(!hit_ids(&similar).contains(&ids[20]));

    let before: Vec<Vec<i64>> = {
        let mut v = Vec::new();
        for q in &queries {
            v.push(hit_ids(&store.search_by_vector(q, &top10).await.unwrap()));
        }
        v
    };
    assert!(!graph.exists(), "the graph is saved at close, not on every write");
    store.close().await.unwrap();
    assert!(graph.exists() && meta.exists(), "the graph is saved next to the file at close");

    // Reopened: the open loads the saved graph (no rebuild), which gives the same answers.
    let store = open_vectors(&path).await;
    assert!(store.explain_search(&queries[0], &top10).await.unwrap().starts_with("HNSW"));
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&hit_ids(&store.search_by_vector(q, &top10).await.unwrap()), want);
    }
    assert_eq!(store.stats().await.unwrap().storage.index.map(|i| i.kind), Some(info.kind));
    let saved = (std::fs::read(&graph).unwrap(), std::fs::read(&meta).unwrap());
    // The first write removes the saved graph before it commits.
    let late = store.create(NewDocument::new("late", "body").with_embedding(queries[5].clone())).await.unwrap();
    assert!(!graph.exists() && !meta.exists(), "a write removes the saved graph");
    drop(store);

    // An older graph put back by hand (it lacks "late") is refused: the rows' fingerprint
    // differs, so a new graph is built, and it has the row.
    std::fs::write(&graph, &saved.0).unwrap();
    std::fs::write(&meta, &saved.1).unwrap();
    let store = open_vectors(&path).await;
    wait_for_graph(&store, &queries[0]).await;
    assert_eq!(hit_ids(&store.search_by_vector(&queries[5], &top10).await.unwrap())[0], late.id);

    // Dropped: searches scan, the files go, and a reopen builds nothing.
    assert!(store.drop_index().await.unwrap());
    assert!(!store.drop_index().await.unwrap());
    assert!(store.explain_search(&queries[0], &top10).await.unwrap().starts_with("int8 scan"));
    assert_eq!(store.stats().await.unwrap().storage.index, None);
    store.close().await.unwrap();
    assert!(!graph.exists() && !meta.exists());
    let store = open_vectors(&path).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.stats().await.unwrap().storage.index, None);
    store.close().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes go on while `create_index` builds the graph from a copy of the codes; the rows they
/// add, move or delete are replayed into the graph before it serves searches.
#[tokio::test]
async fn writes_during_a_build_are_in_the_graph_it_installs() {
    let _guard = no_fork().await;
    let dir = temp_dir("hnsw-build");
    let path = dir.join("x.db");
    let store = open_vectors(&path).await;
    // The rows written during the build move within the same clusters (the last 400 vectors).
    let mut data = vectors(30_400, 3);
    let targets = data.split_off(30_000);
    let docs: Vec<NewDocument> = data
        .iter()
        .enumerate()
        .map(|(i, v)| NewDocument::new(format!("doc {i}"), "body").with_key(format!("k{i}")).with_embedding(v.clone()))
        .collect();
    let ids = store.batch(docs).await.unwrap().ids;
    let building = {
        let store = store.clone();
        tokio::spawn(async move { store.create_index(IndexSpec::default()).await })
    };
    let mut written = Vec::new();
    let mut during = 0;
    for (i, v) in targets.iter().enumerate() {
        if building.is_finished() && i >= 20 {
            break;
        }
        during += usize::from(!building.is_finished());
        let doc = NewDocument::new(format!("new {i}"), "body").with_key(format!("k{i}")).with_embedding(v.clone());
        let (doc, _) = store.upsert(doc).await.unwrap();
        assert_eq!(doc.id, ids[i], "an upsert of an existing key moves that row");
        written.push((doc.id, v.clone()));
    }
    let deleted = ids[29_999];
    store.delete(deleted).await.unwrap();
    building.await.unwrap().unwrap();
    assert!(during > 0, "no write ran while the graph was built");
    let top = SearchOptions::top(3);
    assert!(store.explain_search(&targets[0], &top).await.unwrap().starts_with("HNSW"));
    let mut bad = Vec::new();
    for (id, v) in &written {
        let got = hit_ids(&store.search_by_vector(v, &top).await.unwrap());
        if got[0] != *id {
            let exact = store.search_by_vector(v, &top.clone().exact(true)).await.unwrap();
            bad.push((*id, got, exact.iter().map(|h| (h.document.id, h.score)).collect::<Vec<_>>()));
        }
    }
    assert!(bad.is_empty(), "{} of {} written: {:?}", bad.len(), written.len(), &bad[..bad.len().min(5)]);
    let old = &data[29_999];
    assert!(!hit_ids(&store.search_by_vector(old, &top).await.unwrap()).contains(&deleted));
    store.close().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
