//! Search modes on both backends: the full-text leg, hybrid search (Reciprocal Rank Fusion of
//! the vector and text legs), MMR, and what a hybrid search costs on PostgreSQL.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use marketking_core::{
    cosine_similarity, Embedder, Error, Filter, Fusion, HashingEmbedder, IndexSpec, Mmr, NewDocument, NoCache,
    SearchHit, SearchMode, SearchOptions, VectorStore,
};

use crate::common::{database_url, Fixture, Kind, PgTable, TestEmbedder};

crate::conformance!(
    modes_rank_by_their_legs_and_hybrid_fuses_them,
    filtered_hybrid_search_returns_k_from_both_legs,
    nothing_a_user_types_is_query_syntax,
    mmr_trades_relevance_for_diversity,
);

/// The demo corpus bundled with the CLI: 247 marketplace listings, articles and reviews.
fn demo_corpus() -> Vec<NewDocument> {
    include_str!("../../../marketking-cli/demo/corpus.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<NewDocument>(l).unwrap())
        .collect()
}

fn ids(hits: &[SearchHit]) -> Vec<i64> {
    hits.iter().map(|h| h.document.id).collect()
}

fn invalid_field(r: marketking_core::Result<Vec<SearchHit>>) -> String {
    match r {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

async fn modes_rank_by_their_legs_and_hybrid_fuses_them(kind: Kind) {
    let t = Fixture::new(kind);
    let emb = TestEmbedder::new(256);
    let store = t.store(emb.clone(), NoCache).await.unwrap();
    store.batch(demo_corpus()).await.unwrap();
    let q = "waterproof tent for rainy weekends";

    // Text mode: no embedder call; every hit has a query word; all-words documents first.
    let calls = emb.calls();
    let text = store.search(q, &SearchOptions::top(40).mode(SearchMode::Text)).await.unwrap();
    assert_eq!(emb.calls(), calls, "a text search makes no embedder call");
    assert!(text.len() >= 10, "OR of the words finds many documents: {}", text.len());
    assert!(text.windows(2).all(|w| w[0].score >= w[1].score), "best first");
    let stems = ["waterproof", "tent", "rain", "weekend"];
    for h in &text {
        let body = format!("{} {}", h.document.title, h.document.content).to_lowercase();
        assert!(stems.iter().any(|s| body.contains(s)), "a text hit has a query word: {body}");
    }
    let all_words = text.iter().take_while(|h| h.score >= 1.0).count();
    assert!(text.iter().skip(all_words).all(|h| h.score < 1.0), "all-words matches form a prefix");

    // Vector mode is search_by_vector of the query's embedding.
    let qv = HashingEmbedder::new(256).unwrap().embed(&[q.to_string()]).await.unwrap().remove(0);
    let vector = store.search(q, &SearchOptions::top(40).mode(SearchMode::Vector)).await.unwrap();
    assert_eq!(ids(&vector), ids(&store.search_by_vector(&qv, &SearchOptions::top(40)).await.unwrap()));
    assert!(vector.iter().all(|h| h.vector.is_none() && h.text.is_none()), "single-leg hits carry no legs");

    // Hybrid (the default for a text query) is RRF over those two rankings, 40 candidates each.
    let hybrid = store.search(q, &SearchOptions::top(10)).await.unwrap();
    assert_eq!(hybrid, store.search(q, &SearchOptions::top(10).mode(SearchMode::Hybrid)).await.unwrap());
    assert_eq!(hybrid.len(), 10);
    for h in &hybrid {
        let v = h.vector.expect("every hybrid hit has its cosine similarity");
        let id = h.document.id;
        let exact = cosine_similarity(&qv, &store.get_with_embedding(id).await.unwrap().embedding.unwrap()).unwrap();
        assert!((v.score - exact).abs() < 1e-4, "{} vs {exact}", v.score);
        let vrank = vector.iter().position(|x| x.document.id == id).map(|p| p + 1);
        let trank = text.iter().position(|x| x.document.id == id).map(|p| p + 1);
        assert_eq!(v.rank, vrank, "the vector rank is the rank in vector mode");
        assert_eq!(h.text.and_then(|x| x.rank), trank, "the text rank is the rank in text mode");
        assert!(vrank.is_some() || trank.is_some());
        let rrf = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / (60.0 + r as f64));
        assert!((f64::from(h.score) - (rrf(vrank) + rrf(trank))).abs() < 1e-6, "fused score is RRF (k = 60)");
    }
    assert!(hybrid.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hybrid.iter().any(|h| h.text.is_some()) && hybrid.iter().any(|h| h.vector.and_then(|v| v.rank).is_some()));

    // Weights: without the text leg, hybrid ranks as the vector leg.
    let vector_only = Fusion { text_weight: 0.0, ..Fusion::default() };
    let opts = SearchOptions { fusion: vector_only, ..SearchOptions::top(10) };
    assert_eq!(ids(&store.search(q, &opts).await.unwrap()), ids(&vector[..10]));
    // min_score is a cosine floor in hybrid mode too (the fused score has no absolute meaning).
    let floor = store.search(q, &SearchOptions::top(10).min_score(0.2)).await.unwrap();
    assert!(!floor.is_empty() && floor.len() < 10, "{}", floor.len());
    assert!(floor.iter().all(|h| h.vector.is_some_and(|v| v.score >= 0.2)));

    // Bad settings name their field; a vector query has no text to rank.
    let bad = |f: Fusion| SearchOptions { fusion: f, ..SearchOptions::top(10) };
    assert_eq!(invalid_field(store.search(q, &bad(Fusion { rrf_k: 0, ..Fusion::default() })).await), "fusion.rrf_k");
    assert_eq!(
        invalid_field(store.search(q, &bad(Fusion { vector_weight: f32::NAN, ..Fusion::default() })).await),
        "fusion.vector_weight"
    );
    assert_eq!(
        invalid_field(store.search(q, &bad(Fusion { candidates: Some(5), ..Fusion::default() })).await),
        "fusion.candidates"
    );
    assert_eq!(invalid_field(store.search(q, &SearchOptions::top(10).mmr(1.5, 40)).await), "mmr.lambda");
    assert_eq!(invalid_field(store.search(q, &SearchOptions::top(10).mmr(0.5, 5)).await), "mmr.fetch_k");
    assert_eq!(
        invalid_field(store.search_by_vector(&qv, &SearchOptions::top(10).mode(SearchMode::Text)).await),
        "mode"
    );
    t.cleanup().await;
}

async fn filtered_hybrid_search_returns_k_from_both_legs(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(64).await;
    // 2,000 documents, 1% of them (20) from the rare source; all of them match the query's words.
    let docs: Vec<NewDocument> = (0..2000)
        .map(|i| {
            let rare = i % 100 == 0;
            NewDocument::new(
                format!("Lantern model {i}"),
                format!("A camping lantern, battery powered, series {}", i % 37),
            )
            .with_source(if rare { "rare" } else { "common" })
            .with_metadata(marketking_core::metadata!({"rare": rare}))
        })
        .collect();
    store.batch(docs).await.unwrap();
    if kind == Kind::Postgres {
        store.create_index(IndexSpec::default()).await.unwrap();
    }
    for opts in [
        SearchOptions::top(10).source("rare"),
        SearchOptions::top(10).metadata(marketking_core::metadata!({"rare": true})),
    ] {
        for mode in [SearchMode::Hybrid, SearchMode::Text, SearchMode::Vector] {
            let hits = store.search("battery camping lantern", &opts.clone().mode(mode)).await.unwrap();
            assert_eq!(hits.len(), 10, "{mode:?}: a 1% filter still returns k");
            assert!(hits.iter().all(|h| h.document.source.as_deref() == Some("rare")), "{mode:?}");
            if mode == SearchMode::Hybrid {
                // Both legs filtered inside: each found all ten among their candidates.
                assert!(hits.iter().all(|h| h.text.is_some() && h.vector.and_then(|v| v.rank).is_some()));
            }
        }
    }
    t.cleanup().await;
}

async fn nothing_a_user_types_is_query_syntax(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(64).await;
    store.batch(demo_corpus()).await.unwrap();
    let long = "x".repeat(2000);
    let queries = [
        "tent OR -rain*",
        "\"unterminated quote",
        "a & b | !c <-> d",
        ":* '' \\",
        "NEAR(tent rain) AND NOT",
        "tent'; DROP TABLE docs; --",
        "(((",
        "the of and",
        "テント 雨",
        "🙂 tent",
        "tent\u{0}rain",
        long.as_str(),
    ];
    for q in queries {
        for mode in [SearchMode::Text, SearchMode::Hybrid] {
            let r = store.search(q, &SearchOptions::top(5).mode(mode)).await;
            assert!(r.is_ok(), "{mode:?} {q:?}: {r:?}");
        }
    }
    // Operator characters are not syntax: "tent OR -rain*" is the words tent and rain.
    let hits = store.search("tent OR -rain*", &SearchOptions::top(5).mode(SearchMode::Text)).await.unwrap();
    let first = hits.first().map(|h| format!("{} {}", h.document.title, h.document.content).to_lowercase());
    assert!(first.as_deref().is_some_and(|b| b.contains("tent") || b.contains("rain")), "{first:?}");
    t.cleanup().await;
}

async fn mmr_trades_relevance_for_diversity(kind: Kind) {
    let t = Fixture::new(kind);
    let store = t.plain(128).await;
    // Five copies of one listing (near-duplicates) and five different tents.
    let mut docs: Vec<NewDocument> = (0..5)
        .map(|i| NewDocument::new(format!("Alpine tent {i}"), "Alpine tent, two person, waterproof, light"))
        .collect();
    for (i, body) in [
        "Family tent with three rooms and a porch",
        "Ultralight trekking tent for one, waterproof fly",
        "Beach tent with sun shade",
        "Roof tent for cars, waterproof canvas",
        "Tent pegs and guy lines repair kit",
    ]
    .iter()
    .enumerate()
    {
        docs.push(NewDocument::new(format!("Other tent {i}"), *body));
    }
    store.batch(docs).await.unwrap();
    let q = "alpine waterproof tent";
    // How many of the copies a result list holds.
    let spread = |hits: &[SearchHit]| hits.iter().filter(|h| h.document.title.starts_with("Alpine")).count();
    for mode in [SearchMode::Vector, SearchMode::Hybrid] {
        let base = SearchOptions { include_embedding: true, ..SearchOptions::top(4) }.mode(mode);
        let plain = store.search(q, &base).await.unwrap();
        assert_eq!(spread(&plain), 4, "{mode:?}: without MMR the four copies fill the top");
        let diverse = store.search(q, &base.clone().mmr(0.3, 10)).await.unwrap();
        assert_eq!(diverse.len(), 4);
        assert_eq!(spread(&diverse), 1, "{mode:?}: MMR keeps one copy: {:?}", ids(&diverse));
        assert_eq!(diverse[0].document.id, plain[0].document.id, "the best hit stays first");
        // lambda 1 is relevance only: the plain order.
        let relevance = store.search(q, &base.clone().mmr(1.0, 10)).await.unwrap();
        assert_eq!(ids(&relevance), ids(&plain));
        // Embeddings are returned only when asked for, MMR or not.
        let lean = store.search(q, &SearchOptions::top(4).mode(mode).mmr(0.3, 10)).await.unwrap();
        assert!(lean.iter().all(|h| h.document.embedding.is_none()));
        assert_eq!(ids(&lean), ids(&diverse));
    }
    assert_eq!(Mmr::default_fetch_k(10), 40);
    t.cleanup().await;
}

/// The same corpus and queries on both backends return the same top 10, in the same order, in
/// every mode: exact vector search is the same computation; both text legs are BM25 with the
/// same constants over the same lexemes (the embedded store lexes as PostgreSQL's parser and
/// `english` configuration do) and, on a table this small, PostgreSQL's statistics are exact
/// counts (rows, document frequencies, mean length).
#[tokio::test]
async fn embedded_and_postgres_rank_the_demo_corpus_alike() {
    let pg = Fixture::new(Kind::Postgres);
    let file = Fixture::new(Kind::Embedded);
    let a = pg.plain(256).await;
    let b = file.plain(256).await;
    let corpus = demo_corpus();
    a.batch(corpus.clone()).await.unwrap();
    b.batch(corpus.clone()).await.unwrap();
    // Queries from the corpus's own words: each 8th document's title.
    let queries: Vec<String> = corpus.iter().step_by(8).map(|d| d.title.clone()).collect();
    let shown = |hits: &[SearchHit]| {
        hits.iter().map(|h| format!("{}:{:.4}", h.document.key.as_deref().unwrap_or("?"), h.score)).collect::<Vec<_>>()
    };
    let mut differ = Vec::new();
    for mode in [SearchMode::Vector, SearchMode::Text, SearchMode::Hybrid] {
        for q in &queries {
            let opts = SearchOptions::top(10).mode(mode);
            let (x, y) = (a.search(q, &opts).await.unwrap(), b.search(q, &opts).await.unwrap());
            assert!(!x.is_empty(), "{mode:?} {q:?}: no hits");
            let key = |h: &SearchHit| h.document.key.clone();
            if x.iter().map(key).ne(y.iter().map(key)) {
                differ.push(format!("{mode:?} {q:?}:\n  postgres {:?}\n  embedded {:?}", shown(&x), shown(&y)));
            }
        }
    }
    assert!(differ.is_empty(), "{} of {} searches differ:\n{}", differ.len(), 3 * queries.len(), differ.join("\n"));
    pg.cleanup().await;
    file.cleanup().await;
}

/// Counts the statements a client sends to PostgreSQL: a TCP proxy that reads the frontend
/// protocol (after the untyped start-up messages, each message is a type byte and a length).
struct StatementCounter {
    port: u16,
    /// Extended-protocol executions (`E`) and simple queries (`Q`).
    executes: Arc<AtomicUsize>,
    queries: Arc<AtomicUsize>,
}

impl StatementCounter {
    async fn start() -> StatementCounter {
        let base: tokio_postgres::Config = database_url().parse().unwrap();
        let host = match base.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            other => panic!("this test proxies a TCP server, not {other:?}"),
        };
        let target = (host, base.get_ports().first().copied().unwrap_or(5432));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (executes, queries) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (e, q) = (executes.clone(), queries.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect((target.0.as_str(), target.1)).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let (e, q) = (e.clone(), q.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut started = false;
                    loop {
                        let mut head = [0u8; 5];
                        let n = if started { 5 } else { 4 };
                        if cr.read_exact(&mut head[..n]).await.is_err() {
                            break;
                        }
                        let (kind, len) = if started {
                            (head[0], u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize)
                        } else {
                            (0, u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize)
                        };
                        let mut body = vec![0u8; len - 4];
                        if cr.read_exact(&mut body).await.is_err() {
                            break;
                        }
                        if !started {
                            // SSLRequest / GSSENCRequest keep the stream untyped; StartupMessage ends it.
                            let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                            started = code != 80877103 && code != 80877104;
                        }
                        match kind {
                            b'E' => e.fetch_add(1, Ordering::SeqCst),
                            b'Q' => q.fetch_add(1, Ordering::SeqCst),
                            _ => 0,
                        };
                        if sw.write_all(&head[..n]).await.is_err() || sw.write_all(&body).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        StatementCounter { port, executes, queries }
    }

    fn url(&self) -> String {
        let base: tokio_postgres::Config = database_url().parse().unwrap();
        let password = base.get_password().map(|p| format!(":{}", String::from_utf8_lossy(p))).unwrap_or_default();
        format!(
            "postgres://{}{password}@127.0.0.1:{}/{}?sslmode=disable",
            base.get_user().unwrap_or("postgres"),
            self.port,
            base.get_dbname().unwrap_or("postgres")
        )
    }

    fn take(&self) -> (usize, usize) {
        (self.executes.swap(0, Ordering::SeqCst), self.queries.swap(0, Ordering::SeqCst))
    }
}

#[tokio::test]
async fn a_hybrid_search_is_one_statement_on_postgres() {
    let t = PgTable::new();
    let counter = StatementCounter::start().await;
    let store = VectorStore::builder()
        .database_url(counter.url())
        .table(&t.table)
        .pool_size(1)
        .embedder(HashingEmbedder::new(64).unwrap())
        .cache(NoCache)
        .build()
        .await
        .unwrap();
    store.batch(demo_corpus()).await.unwrap();
    let opts = SearchOptions::top(10).source("reviews");
    // The first search prepares the statement and sets the session's search settings.
    store.search("warm up", &opts).await.unwrap();
    counter.take();
    let queries = ["tent that survived the rain", "charger for a laptop", "comfortable leather shoes"];
    for q in queries {
        let hits = store.search(q, &opts).await.unwrap();
        assert!(!hits.is_empty());
    }
    let (executes, simple) = counter.take();
    assert_eq!((executes, simple), (queries.len(), 0), "one statement per hybrid search, nothing else");
    drop(store);
    t.cleanup().await;
}

/// A table from before the full-text column (schema version 1) gets it on open: the column is
/// added without rewriting the table, existing rows are filled in batches, the GIN index is
/// built concurrently, and text search finds the old rows.
#[tokio::test]
async fn a_version_1_table_gains_full_text_search_on_open() {
    let t = PgTable::new();
    let store = t.plain(32).await;
    store.batch(demo_corpus()).await.unwrap();
    drop(store);
    // Back to version 1: no tsv column, trigger, function or index.
    let table = format!("\"{}\".docs", t.schema);
    t.exec(&format!(
        "DROP TRIGGER docs_tsv_trg ON {table}; DROP FUNCTION \"{s}\".docs_tsv(); \
         ALTER TABLE {table} DROP COLUMN tsv; \
         UPDATE \"{s}\".marketking_meta SET schema_version = 1, text_config = NULL WHERE table_name = 'docs'",
        s = t.schema,
    ))
    .await;
    let before: u32 =
        t.sql(&format!("SELECT relfilenode::text::int8 FROM pg_class WHERE oid = '{table}'::regclass")).await[0]
            .get::<_, i64>(0) as u32;
    let store = t.plain(32).await;
    let after: u32 =
        t.sql(&format!("SELECT relfilenode::text::int8 FROM pg_class WHERE oid = '{table}'::regclass")).await[0]
            .get::<_, i64>(0) as u32;
    assert_eq!(before, after, "the migration did not rewrite the table");
    let empty: i64 = t.sql(&format!("SELECT count(*) FROM {table} WHERE tsv IS NULL")).await[0].get(0);
    assert_eq!(empty, 0, "every existing row was filled");
    let marked: Option<bool> =
        t.sql(&format!("SELECT text_filled FROM \"{}\".marketking_meta WHERE table_name = 'docs'", t.schema)).await[0]
            .get(0);
    assert_eq!(marked, Some(true), "the table is marked filled, so later opens do not look for unfilled rows");
    let valid: bool = t
        .sql(&format!(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = '{table}'::regclass AND c.relname = 'docs_tsv_idx'"
        ))
        .await[0]
        .get(0);
    assert!(valid, "the GIN index is there and valid");
    let hits = store.search("tent", &SearchOptions::top(5).mode(SearchMode::Text)).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits
        .iter()
        .all(|h| format!("{} {}", h.document.title, h.document.content).to_lowercase().contains("tent")));
    // New writes keep the column current (the trigger), and opening again changes nothing.
    store.create(NewDocument::new("Zeppelin hangar", "an airship shed")).await.unwrap();
    drop(store);
    let store = t.plain(32).await;
    let hits = store.search("zeppelin", &SearchOptions::top(5).mode(SearchMode::Text)).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.document.title.as_str()).collect::<Vec<_>>(), ["Zeppelin hangar"]);
    drop(store);
    t.cleanup().await;
}

/// A version 2 table (its `tsv` filled by a trigger that kept `os.path.join` as one token, no
/// `text_len`) is filled again on open, in place: afterwards a query's separate words find the
/// dotted name, and every row has its length.
#[tokio::test]
async fn a_version_2_table_splits_dotted_words_on_open() {
    let t = PgTable::new();
    let store = t.plain(32).await;
    store.batch(demo_corpus()).await.unwrap();
    let doc =
        store.create(NewDocument::new("Paths", "Call os.path.join on the parts; see e-mail x@y.org")).await.unwrap();
    drop(store);
    let table = format!("\"{}\".docs", t.schema);
    // Back to version 2: every row's tsv as the version 2 trigger computed it.
    t.exec(&format!(
        "UPDATE {table} SET tsv = setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', content), 'B'), \
         text_len = NULL; \
         UPDATE \"{s}\".marketking_meta SET schema_version = 2, text_refill_after = NULL WHERE table_name = 'docs'",
        s = t.schema,
    ))
    .await;
    let store = t.plain(32).await;
    let text = SearchOptions::top(3).mode(SearchMode::Text);
    let hits = store.search("join the path", &text).await.unwrap();
    assert_eq!(hits.first().map(|h| h.document.id), Some(doc.id), "{hits:?}");
    let hits = store.search("mail", &text).await.unwrap();
    assert_eq!(hits.iter().map(|h| h.document.id).collect::<Vec<_>>(), [doc.id]);
    let row = &t
        .sql(&format!(
            "SELECT schema_version, text_refill_after IS NULL, (SELECT count(*) FROM {table} WHERE tsv IS DISTINCT FROM \
             setweight(to_tsvector('english', translate(title, '.-/@:', '     ')), 'A') || \
             setweight(to_tsvector('english', translate(content, '.-/@:', '     ')), 'B')), \
             (SELECT count(*) FROM {table} WHERE text_len IS DISTINCT FROM \
              (SELECT max(u.positions[cardinality(u.positions)]) FROM unnest(tsv) u)) \
             FROM \"{}\".marketking_meta WHERE table_name = 'docs'",
            t.schema
        ))
        .await[0];
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, bool>(1), row.get::<_, i64>(2), row.get::<_, i64>(3)),
        (4, true, 0, 0),
        "version 4, refill done, every row recomputed, with its length"
    );
    drop(store);
    t.cleanup().await;
}

/// A table large enough for the planner's statistics to say which words are common: the text leg
/// takes its candidates from the query's informative words, and still returns k rows when those
/// find fewer than k (documents with only a common word fill the rest), filtered or not; with
/// the RUM index (the server has `rum`) and without it.
#[tokio::test]
async fn a_large_table_ranks_text_from_informative_words_and_still_returns_k() {
    for rum in [true, false] {
        let t = PgTable::new();
        let store = VectorStore::builder()
            .database_url(database_url())
            .table(&t.table)
            .rum_index(rum)
            .embedder(HashingEmbedder::new(32).unwrap())
            .cache(NoCache)
            .build()
            .await
            .unwrap();
        // Every document says "widget"; three also say "zeppelin"; `group` selects 1%.
        let docs: Vec<NewDocument> = (0..2500)
            .map(|i| {
                let extra = if i < 3 { " a zeppelin over the hangar" } else { "" };
                NewDocument::new(format!("note {i}"), format!("report {i} on a widget{extra}"))
                    .with_key(format!("n{i}"))
                    .with_metadata(marketking_core::metadata!({"group": i % 100}))
            })
            .collect();
        store.batch(docs).await.unwrap();
        // What autovacuum does after a bulk load: the statistics the text leg reads (the store
        // reads them again at once after its own ANALYZE, and once a minute otherwise).
        store.analyze().await.unwrap();
        let rum_index: i64 = t
            .sql(&format!(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}' AND indexname = 'docs_tsv_rum_idx'",
                t.schema
            ))
            .await[0]
            .get(0);
        assert_eq!(rum_index, i64::from(rum), "the RUM index exists exactly when asked for (rum = {rum})");

        let keys = |hits: &[SearchHit]| hits.iter().map(|h| h.document.key.clone().unwrap()).collect::<Vec<_>>();
        for mode in [SearchMode::Text, SearchMode::Hybrid] {
            let hits = store.search("widget zeppelin", &SearchOptions::top(10).mode(mode)).await.unwrap();
            assert_eq!(hits.len(), 10, "{mode:?}, rum {rum}: k rows though only 3 documents have the rare word");
            // Text: the three with every word first. Hybrid: the vector leg (a 32-dimension
            // hashing embedder) reorders them, but the text leg's top three are in the fused top 10.
            let n = if mode == SearchMode::Text { 3 } else { 10 };
            let top: HashSet<String> = keys(&hits[..n]).into_iter().collect();
            for key in ["n0", "n1", "n2"] {
                assert!(top.contains(key), "{mode:?}, rum {rum}: {key} in the top {n}: {:?}", keys(&hits));
            }

            // No document of group 7 has the rare word: all 10 come from the common one.
            let opts = SearchOptions::top(10).mode(mode).filter(Filter::field("group").eq(7));
            let hits = store.search("widget zeppelin", &opts).await.unwrap();
            assert_eq!(hits.len(), 10, "{mode:?}, rum {rum}: a 1% filter still returns k");
            assert!(hits.iter().all(|h| h.document.metadata["group"] == 7), "{mode:?}, rum {rum}");
        }
        // A rare word alone: exactly its documents, best first.
        let hits = store.search("zeppelin", &SearchOptions::top(10).mode(SearchMode::Text)).await.unwrap();
        assert_eq!(keys(&hits).len(), 3, "rum {rum}");
        drop(store);
        t.cleanup().await;
    }
}
