//! PostgreSQL + pgvector behaviour of the store.

use marketking_core::{Error, HashingEmbedder, IndexKind, IndexSpec, NewDocument, NoCache, SearchOptions, VectorStore};

use crate::common::{database_url, docs, random_vectors, PgTable};

#[tokio::test]
async fn hnsw_index_is_used_and_filtered_search_returns_k() {
    let t = PgTable::new();
    let store = t.plain(64).await;
    let n = 5000;
    let vectors = random_vectors(n, 64, 50, 1);
    let input: Vec<NewDocument> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            // 1% of rows match the rare filters.
            let rare = i % 100 == 0;
            NewDocument::new(format!("doc {i}"), "body")
                .with_source(if rare { "rare" } else { "common" })
                .with_metadata(marketking_core::metadata!({"rare": rare}))
                .with_embedding(v)
        })
        .collect();
    store.batch(input).await.unwrap();
    let info = store.create_index(IndexSpec::default()).await.unwrap();
    assert_eq!(info.kind, IndexKind::Hnsw { m: 16, ef_construction: 64 });

    let q = &random_vectors(1, 64, 50, 2)[0];
    let plan = store.explain_search(q, &SearchOptions::top(10)).await.unwrap();
    assert!(plan.contains("docs_embedding_idx"), "unfiltered search uses the HNSW index:\n{plan}");

    for opts in [
        SearchOptions::top(10).source("rare"),
        SearchOptions::top(10).metadata(marketking_core::metadata!({"rare": true})),
    ] {
        let plan = store.explain_search(q, &opts).await.unwrap();
        let hits = store.search_by_vector(q, &opts).await.unwrap();
        assert_eq!(hits.len(), 10, "1% filter still returns k rows; plan:\n{plan}");
        assert!(hits.iter().all(|h| h.document.source.as_deref() == Some("rare")));
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.storage.documents, n as u64);
    assert_eq!(stats.storage.index.as_ref().map(|i| i.kind), Some(IndexKind::Hnsw { m: 16, ef_construction: 64 }));
    assert!(stats.storage.index.unwrap().bytes > 0);
    assert_eq!(stats.storage.sources[0].source.as_deref(), Some("common"));
    assert_eq!(stats.storage.sources[0].count, 4950);

    let ivf = store
        .create_index(IndexSpec { kind: IndexKind::IvfFlat { lists: None }, concurrently: true, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ivf.kind, IndexKind::IvfFlat { lists: Some(5) }, "rows/1000 lists by default");
    let hits = store
        .search_by_vector(q, &SearchOptions { probes: Some(5), ..SearchOptions::top(10).source("rare") })
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    let rebuilt = store.rebuild_index(false).await.unwrap();
    assert_eq!(rebuilt.kind, ivf.kind);
    assert!(store.drop_index().await.unwrap());
    assert!(!store.drop_index().await.unwrap());
    assert!(matches!(store.rebuild_index(false).await, Err(Error::InvalidInput { .. })));
    t.cleanup().await;
}

#[tokio::test]
async fn other_model_or_dimensions_is_refused_and_migrations_are_concurrent_safe() {
    let t = PgTable::new();
    // Several processes starting at once: every one migrates safely.
    let opens = (0..4).map(|_| t.store(HashingEmbedder::new(24).unwrap(), NoCache));
    for s in futures_util::future::join_all(opens).await {
        s.unwrap();
    }
    let err = t.store(HashingEmbedder::new(32).unwrap(), NoCache).await.unwrap_err();
    match &err {
        Error::SchemaMismatch { stored_dimensions, dimensions, stored_model, model, .. } => {
            assert_eq!((*stored_dimensions, *dimensions), (24, 32));
            assert_eq!(stored_model, "marketking-hash-v1-24");
            assert_eq!(model, "marketking-hash-v1-32");
        }
        other => panic!("expected SchemaMismatch, got {other}"),
    }
    assert!(err.to_string().contains("marketking-hash-v1-24") && err.to_string().contains("marketking-hash-v1-32"));
    t.cleanup().await;
}

#[tokio::test]
async fn ping_analyze_and_debug_hide_secrets() {
    let t = PgTable::new();
    let store = t.plain(16).await;
    store.ping().await.unwrap();
    store.batch(docs(50, "p")).await.unwrap();
    store.analyze().await.unwrap();
    let analyzed = t
        .sql(&format!(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = to_regclass('{}')",
            t.table
        ))
        .await;
    assert!(analyzed[0].get::<_, bool>(0), "ANALYZE ran on the table");
    assert_eq!(store.backend_kind(), "postgres");
    assert_eq!(store.stats().await.unwrap().storage.location, t.table);

    for bad in ["bad-name", "x\"; DROP TABLE y; --", "1abc", "a.b.c"] {
        let err = VectorStore::builder()
            .database_url(database_url())
            .table(bad)
            .embedder(HashingEmbedder::new(16).unwrap())
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config { ref field, .. } if field == "table"), "{bad}: {err}");
    }
    let err = VectorStore::builder().database_url("postgres://u:hunter2@127.0.0.1:1/x").build().await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let builder = VectorStore::builder()
        .database_url("postgres://app:hunter2@db.internal/prod")
        .redis_url("redis://:redispass@cache/0");
    let dbg = format!("{builder:?} {:?}", builder.storage());
    assert!(!dbg.contains("hunter2") && !dbg.contains("redispass"), "{dbg}");
    // The server being gone is an error that says so, without the password.
    let err = VectorStore::builder()
        .database_url("postgres://app:hunter2@127.0.0.1:1/prod")
        .embedder(HashingEmbedder::new(16).unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    t.cleanup().await;
}

/// The store prepares its statements once per connection. When the table is dropped and
/// recreated behind its back (another store's migration), the next calls still work: the server
/// re-plans the cached statements against the new table.
#[tokio::test]
async fn cached_statements_survive_the_table_being_recreated() {
    let t = PgTable::new();
    let a = t.plain(16).await;
    let first = a.create(NewDocument::new("first", "alpha beta").with_key("k1")).await.unwrap();
    // Every read path runs (and prepares its statement) a few times.
    for _ in 0..6 {
        a.get(first.id).await.unwrap();
        a.get_by_key("k1").await.unwrap();
        a.search("alpha", &SearchOptions::top(3)).await.unwrap();
        a.list(0, 10, false).await.unwrap();
    }
    t.sql(&format!("DROP TABLE {}", t.table)).await;
    // A second store migrates again: a new, empty table of the same shape.
    let b = t.plain(16).await;
    let second = b.create(NewDocument::new("second", "gamma delta").with_key("k2")).await.unwrap();
    assert_eq!(a.get(second.id).await.unwrap().title, "second");
    assert!(matches!(a.get_by_key("k1").await, Err(Error::KeyNotFound { .. })), "the old row went with the old table");
    assert_eq!(a.get_by_key("k2").await.unwrap().id, second.id);
    let hits = a.search("gamma", &SearchOptions::top(3)).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.document.id).collect::<Vec<_>>(), vec![second.id]);
    assert_eq!(a.list(0, 10, false).await.unwrap().len(), 1);
    a.delete(second.id).await.unwrap();
    assert!(matches!(b.get(second.id).await, Err(Error::NotFound { .. })));
    t.cleanup().await;
}

/// TLS with a private CA: `sslmode=verify-full` plus `sslrootcert` naming the server's own
/// certificate (the local server's self-signed "snakeoil" one, issued to `localhost`). The store
/// connects over TLS; without the root file the same certificate is refused; a missing file or a
/// root file without TLS is a configuration error naming `sslrootcert`.
#[tokio::test]
async fn tls_with_a_private_root_certificate() {
    let t = PgTable::new();
    let rows = t.sql("SELECT current_setting('ssl'), current_setting('ssl_cert_file'), current_setting('port')").await;
    let (ssl, cert, port): (String, String, String) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(ssl, "on", "the local server is expected to serve TLS (Debian's default)");
    let open = |url: String| {
        let table = t.table.clone();
        async move {
            VectorStore::builder()
                .database_url(url)
                .table(table)
                .pool_size(1)
                .embedder(HashingEmbedder::new(16).unwrap())
                .cache(NoCache)
                .build()
                .await
        }
    };
    let base = format!("postgres://postgres@localhost:{port}/test");
    let store = open(format!("{base}?sslmode=verify-full&sslrootcert={cert}")).await.unwrap();
    let doc = store.create(NewDocument::new("over tls", "encrypted")).await.unwrap();
    assert_eq!(store.get(doc.id).await.unwrap().title, "over tls");
    let tls_sessions = t
        .sql(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.datname = 'test'",
        )
        .await;
    assert!(tls_sessions[0].get::<_, i64>(0) >= 1, "the store's connection uses TLS");
    drop(store);

    // The same server without the private root: the certificate is not trusted.
    let err = open(format!("{base}?sslmode=require")).await.unwrap_err();
    let chain = crate::common::error_chain(&err);
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");
    let err = open(format!("{base}?sslmode=require&sslrootcert=/nonexistent/ca.pem")).await.unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "sslrootcert"), "{err}");
    let err = open(format!("{base}?sslrootcert={cert}")).await.unwrap_err();
    assert!(matches!(&err, Error::Config { field, .. } if field == "sslrootcert"), "{err}");
    t.cleanup().await;
}

/// Recall@k of `got` against `exact` (ids), averaged over the queries.
fn recall(exact: &[Vec<i64>], got: &[Vec<i64>]) -> f64 {
    let found: usize = exact.iter().zip(got).map(|(e, g)| g.iter().filter(|id| e.contains(id)).count()).sum();
    found as f64 / exact.iter().map(Vec::len).sum::<usize>() as f64
}

#[tokio::test]
async fn quantized_indexes_rerank_by_exact_distance_in_every_mode() {
    use marketking_core::{Quantization, SearchMode};
    let t = PgTable::new();
    let dims = 256;
    let store = t.plain(dims).await;
    let n = 4000;
    let input: Vec<NewDocument> = random_vectors(n, dims, 400, 3)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            NewDocument::new(format!("doc {i}"), format!("body of document number {i}"))
                .with_source(if i % 100 == 0 { "rare" } else { "common" })
                .with_embedding(v)
        })
        .collect();
    store.batch(input).await.unwrap();
    let queries = random_vectors(30, dims, 400, 4);
    let ids = |hits: &[marketking_core::SearchHit]| hits.iter().map(|h| h.document.id).collect::<Vec<_>>();
    let mut exact = Vec::new();
    let mut exact_scores = std::collections::HashMap::new();
    for (i, q) in queries.iter().enumerate() {
        let hits = store.search_by_vector(q, &SearchOptions::top(10)).await.unwrap();
        for h in &hits {
            exact_scores.insert((i, h.document.id), h.score);
        }
        exact.push(ids(&hits));
    }
    let full = store.create_index(IndexSpec::default()).await.unwrap();
    assert_eq!(full.quantization, Quantization::None);

    let mut sizes = vec![full.bytes];
    for q in [Quantization::Half, Quantization::Binary] {
        let info = store.create_index(IndexSpec { quantization: q, ..Default::default() }).await.unwrap();
        assert_eq!(info.quantization, q);
        assert_eq!(store.stats().await.unwrap().storage.index.map(|i| i.quantization), Some(q));
        sizes.push(info.bytes);
        let plan = store.explain_search(&queries[0], &SearchOptions::top(10)).await.unwrap();
        assert!(plan.contains("docs_embedding_idx"), "{q}: the search uses the quantized index:\n{plan}");

        let mut by_oversample = Vec::new();
        for oversample in [1, 4, 20] {
            let mut got = Vec::new();
            for (i, query) in queries.iter().enumerate() {
                let hits = store.search_by_vector(query, &SearchOptions::top(10).oversample(oversample)).await.unwrap();
                assert_eq!(hits.len(), 10, "{q}, oversample {oversample}");
                assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{q}: hits are in exact-score order");
                for h in &hits {
                    if let Some(s) = exact_scores.get(&(i, h.document.id)) {
                        assert!(
                            (h.score - s).abs() < 1e-6,
                            "{q}: a hit's score is its exact cosine ({} vs {s})",
                            h.score
                        );
                    }
                }
                got.push(ids(&hits));
            }
            by_oversample.push(recall(&exact, &got));
        }
        eprintln!("{q}: recall@10 at oversample 1, 4, 20: {by_oversample:?}");
        assert!(by_oversample[2] >= by_oversample[0], "{q}: more candidates never find fewer: {by_oversample:?}");
        if q == Quantization::Binary {
            // Measured 0.22 at 1 and 0.80 at 20 on this data: binary codes need the re-rank.
            assert!(by_oversample[2] > by_oversample[0] + 0.3, "binary: oversampling pays: {by_oversample:?}");
        }
        let floor = if q == Quantization::Half { 0.95 } else { 0.7 };
        assert!(by_oversample[2] >= floor, "{q}: recall@10 {by_oversample:?}");

        // A 1%-selective filter still returns k, and hybrid search works on the same index.
        let rare = store.search_by_vector(&queries[1], &SearchOptions::top(10).source("rare")).await.unwrap();
        assert_eq!(rare.len(), 10, "{q}: a filtered search returns k");
        assert!(rare.iter().all(|h| h.document.source.as_deref() == Some("rare")));
        let hybrid = SearchOptions { mode: Some(SearchMode::Hybrid), ..SearchOptions::top(10) };
        let hits = store.search("body of document number 7", &hybrid).await.unwrap();
        assert_eq!(hits.len(), 10, "{q}: hybrid search returns k");
        assert!(hits.iter().all(|h| h.vector.is_some()), "{q}: every hybrid hit has its exact cosine");
        let plan = store.explain_query("body of document number 7", &hybrid).await.unwrap();
        assert!(plan.contains("docs_embedding_idx"), "{q}: hybrid's vector leg uses the index:\n{plan}");

        // Another process opening the table searches through the same index.
        let other = t.plain(dims).await;
        let plan = other.explain_search(&queries[0], &SearchOptions::top(10)).await.unwrap();
        assert!(plan.contains("docs_embedding_idx"), "{q}: a store opened later sees the index:\n{plan}");
    }
    assert!(sizes[2] < sizes[1] && sizes[1] < sizes[0], "binary < half < full index: {sizes:?}");

    let err = store.search_by_vector(&queries[0], &SearchOptions::top(10).oversample(0)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "oversample"), "{err}");
    assert!(store.drop_index().await.unwrap());
    let hits = store.search_by_vector(&queries[0], &SearchOptions::top(10)).await.unwrap();
    assert_eq!(ids(&hits), exact[0], "without an index the search is exact again");
    t.cleanup().await;
}

#[tokio::test]
async fn an_index_too_wide_for_its_form_is_refused_by_field() {
    use marketking_core::Quantization;
    let t = PgTable::new();
    let store = t.plain(2048).await;
    store.batch(docs(5, "w")).await.unwrap();
    let err = store.create_index(IndexSpec::default()).await.unwrap_err();
    match &err {
        Error::InvalidInput { field, reason } => {
            assert_eq!(field, "quantization");
            assert!(reason.contains("2000") && reason.contains("2048") && reason.contains("half"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other}"),
    }
    assert!(store.stats().await.unwrap().storage.index.is_none(), "nothing was built");
    let info = store.create_index(IndexSpec { quantization: Quantization::Half, ..Default::default() }).await.unwrap();
    assert_eq!(info.quantization, Quantization::Half);
    assert_eq!(store.search("w 1", &SearchOptions::top(3)).await.unwrap().len(), 3);
    t.cleanup().await;
}

/// Recall@k of `store`'s default searches (`opts`) against exact search, with the stored
/// documents `ids` as queries (each one's own row left out).
async fn recall_of(store: &VectorStore, ids: &[i64], k: usize, opts: &SearchOptions) -> f64 {
    let mut total = 0.0;
    for &id in ids {
        let v = store.get_with_embedding(id).await.unwrap().embedding.unwrap();
        let top = |hits: Vec<marketking_core::SearchHit>| {
            hits.into_iter().map(|h| h.document.id).filter(|&d| d != id).take(k).collect::<Vec<_>>()
        };
        let exact = top(store.search_by_vector(&v, &SearchOptions::top(k + 1).exact(true)).await.unwrap());
        let got = top(store.search_by_vector(&v, &opts.clone().k(k + 1)).await.unwrap());
        total += exact.iter().filter(|e| got.contains(e)).count() as f64 / exact.len() as f64;
    }
    total / ids.len() as f64
}

#[tokio::test]
async fn tuning_finds_and_keeps_the_ef_search_that_reaches_the_target() {
    use marketking_core::{TuneKnob, TuneOptions};
    let t = PgTable::new();
    let dims = 64;
    let store = t.plain(dims).await;
    // Uniform random directions (one cluster per vector) on a sparse graph: the default
    // ef_search is known to fall short of 0.95 here.
    let n = 5000;
    let input: Vec<NewDocument> = random_vectors(n, dims, n, 11)
        .into_iter()
        .enumerate()
        .map(|(i, v)| NewDocument::new(format!("doc {i}"), "body").with_embedding(v))
        .collect();
    store.batch(input).await.unwrap();

    // Without an index there is nothing to tune.
    let e = store.tune_recall(&TuneOptions::target(0.95)).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "index"), "{e:?}");
    for (opts, field) in [
        (TuneOptions::target(1.5), "target"),
        (TuneOptions::target(f64::NAN), "target"),
        (TuneOptions::target(0.9).queries(0), "queries"),
        (TuneOptions::target(0.9).k(0), "k"),
    ] {
        let e = store.tune_recall(&opts).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidInput { field: f, .. } if f == field), "{field}: {e:?}");
    }

    store.create_index(IndexSpec { kind: IndexKind::hnsw(Some(4), Some(8)), ..Default::default() }).await.unwrap();
    let q = store.get_with_embedding(1).await.unwrap().embedding.unwrap();
    let plan = store.explain_search(&q, &SearchOptions::top(10).exact(true)).await.unwrap();
    assert!(!plan.contains("embedding_idx"), "an exact search reads no vector index:\n{plan}");
    let plan = store.explain_search(&q, &SearchOptions::top(10)).await.unwrap();
    assert!(plan.contains("embedding_idx"), "a default search uses the index:\n{plan}");

    let dry = store.tune_recall(&TuneOptions::target(0.95).queries(100).dry_run(true)).await.unwrap();
    assert_eq!(dry.knob, TuneKnob::EfSearch);
    assert_eq!(dry.before.value, marketking_core::DEFAULT_EF_SEARCH);
    assert!(dry.before.recall < 0.95, "the default must miss the target for this test to mean anything: {dry:#?}");
    assert!(!dry.applied && dry.index.tuned.is_none(), "a dry run keeps nothing: {dry:#?}");
    assert!(store.stats().await.unwrap().storage.index.unwrap().tuned.is_none());

    let report = store.tune_recall(&TuneOptions::target(0.95).queries(100)).await.unwrap();
    let chosen = report.chosen.expect("a value reaching 0.95");
    assert!(report.applied);
    assert!(chosen.value > marketking_core::DEFAULT_EF_SEARCH && chosen.recall >= 0.95, "{report:#?}");
    assert!(report.steps.windows(2).all(|w| w[0].value < w[1].value), "steps ascend: {report:#?}");
    // The smallest: every value measured below the chosen one falls short.
    assert!(report.steps.iter().filter(|s| s.value < chosen.value).all(|s| s.recall < 0.95), "{report:#?}");
    assert_eq!(report.query_ids, dry.query_ids, "the same stored documents serve as queries");
    assert_eq!(report.query_ids.len(), 100);
    let tuned = report.index.tuned.unwrap();
    assert_eq!((tuned.ef_search, tuned.target, tuned.k), (Some(chosen.value), 0.95, 10));

    // Another store on the table uses the kept value: its default searches now reach the
    // target on the same queries, while the old default still misses it.
    let other = t.plain(dims).await;
    assert_eq!(other.stats().await.unwrap().storage.index.unwrap().tuned, Some(tuned));
    let now = recall_of(&other, &report.query_ids, 10, &SearchOptions::default()).await;
    assert!(now >= 0.95, "recall with the kept ef_search: {now}");
    let old = recall_of(&other, &report.query_ids, 10, &SearchOptions::default().ef_search(100)).await;
    assert!(old < 0.95, "recall at ef_search 100: {old}");

    // Query texts instead of stored documents: embedded like a search's query, none left out.
    let texts = store
        .tune_recall(&TuneOptions::target(0.5).query_texts(["doc 7", "doc 42 body", "body"]).dry_run(true))
        .await
        .unwrap();
    assert_eq!((texts.query_texts, texts.query_ids.len()), (3, 0), "{texts:#?}");
    assert!(texts.steps.iter().all(|s| s.value >= 11), "ef_search below k + 1 is never tried: {texts:#?}");
    let e = store.tune_recall(&TuneOptions::target(0.5).query_texts(["ok", " "])).await.unwrap_err();
    assert!(matches!(&e, Error::InvalidInput { field, .. } if field == "query_texts[1]"), "{e:?}");

    // Tuning goes with the index: a replacement starts untuned, and clearing forgets it.
    let info =
        store.create_index(IndexSpec { kind: IndexKind::hnsw(Some(4), Some(8)), ..Default::default() }).await.unwrap();
    assert!(info.tuned.is_none());
    store.tune_recall(&TuneOptions::target(0.9).queries(20)).await.unwrap();
    assert!(store.clear_tuning().await.unwrap().tuned.is_none());
    assert!(other.stats().await.unwrap().storage.index.unwrap().tuned.is_none());
    t.cleanup().await;
}

#[tokio::test]
async fn index_build_settings_are_checked_by_field_and_used() {
    let t = PgTable::new();
    let store = t.plain(16).await;
    let input: Vec<NewDocument> = random_vectors(500, 16, 5, 2)
        .into_iter()
        .enumerate()
        .map(|(i, v)| NewDocument::new(format!("doc {i}"), "body").with_embedding(v))
        .collect();
    store.batch(input).await.unwrap();
    for (spec, field) in [
        (IndexSpec { build_memory_mb: Some(8), ..Default::default() }, "build_memory_mb"),
        (IndexSpec { parallel_workers: Some(65), ..Default::default() }, "parallel_workers"),
    ] {
        let e = store.create_index(spec).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidInput { field: f, .. } if f == field), "{field}: {e:?}");
    }
    assert!(store.stats().await.unwrap().storage.index.is_none(), "a refused spec builds nothing");
    let spec =
        IndexSpec { build_memory_mb: Some(64), parallel_workers: Some(0), skip_analyze: true, ..Default::default() };
    let info = store.create_index(spec).await.unwrap();
    assert!(matches!(info.kind, IndexKind::Hnsw { .. }));
    store.analyze().await.unwrap();
    let q = store.get_with_embedding(1).await.unwrap().embedding.unwrap();
    assert_eq!(store.search_by_vector(&q, &SearchOptions::top(1)).await.unwrap()[0].document.id, 1);
    t.cleanup().await;
}
