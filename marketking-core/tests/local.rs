//! The local model on real weights (all-MiniLM-L6-v2, installed by `scripts/fetch-model.sh`,
//! which `scripts/test.sh` runs first). Reference values: sentence-transformers on PyTorch.

use std::path::PathBuf;
use std::sync::OnceLock;

use marketking_core::{
    cosine_similarity, Embedder, Error, HashingEmbedder, LocalEmbedder, NewDocument, SearchOptions, VectorStore,
};

/// The model folder: `MARKETKING_MODEL_DIR`, else the installed default model. A missing
/// model fails the test with the command that installs it (nothing is skipped).
fn model_dir() -> PathBuf {
    marketking_core::find_local_model()
        .expect("model lookup")
        .map(|m| m.path)
        .expect("no local model installed: run `bash scripts/fetch-model.sh` (scripts/test.sh does)")
}

/// One loaded model for the whole binary: loading reads and hashes 90 MB.
fn model() -> &'static LocalEmbedder {
    static MODEL: OnceLock<LocalEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| LocalEmbedder::load(model_dir()).expect("load the model"))
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn golden_vector_matches_sentence_transformers() {
    let m = model();
    assert_eq!(m.dimensions(), 384);
    assert_eq!(m.max_tokens(), 256);
    assert_eq!(m.pooling(), "mean");
    assert_eq!(m.model_id(), "local:all-MiniLM-L6-v2@53aa51172d14");
    let v = m.embed_one("The cat sits on the mat.").await.unwrap();
    let expected = [0.1341771f32, -0.0329003, -0.0248037, 0.0414390, -0.0363477];
    for (i, (got, want)) in v.iter().zip(expected).enumerate() {
        assert!((got - want).abs() < 1e-4, "value {i}: {got} vs {want}");
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
}

/// The three similarities of the sentence-transformers quick start (its documentation prints
/// 0.6660, 0.1046, 0.1411 for all-MiniLM-L6-v2).
#[tokio::test]
async fn quick_start_similarities_match() {
    let texts = strings(&["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]);
    let v = model().embed(&texts).await.unwrap();
    let sim = |a: usize, b: usize| cosine_similarity(&v[a], &v[b]).unwrap();
    for (a, b, want) in [(0, 1, 0.6660f32), (0, 2, 0.1046), (1, 2, 0.1411)] {
        assert!((sim(a, b) - want).abs() < 1e-3, "sim({a},{b}) = {} vs {want}", sim(a, b));
    }
}

/// Sorting by length, batching by token budget and padding must not change any vector, and the
/// answer keeps the input order.
#[tokio::test]
async fn batches_keep_order_and_match_single_texts() {
    let long = "word pieces of a long review that goes on and on about the tent and the rain ".repeat(40);
    let texts = strings(&["short", &long, "a medium length sentence about trail running shoes", "", "ok"]);
    let small = LocalEmbedder::builder(model_dir()).token_budget(8).build().unwrap();
    let together = small.embed(&texts).await.unwrap();
    assert_eq!(together.len(), texts.len());
    for (t, v) in texts.iter().zip(&together) {
        let alone = model().embed_one(t).await.unwrap();
        let diff = alone.iter().zip(v).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{:?}: batched vector differs by {diff}", &t[..t.len().min(20)]);
    }
}

async fn store_with(docs: Vec<NewDocument>) -> (VectorStore, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let store = VectorStore::builder().db_path(dir.0.join("s.db")).embedder(model().clone()).build().await.unwrap();
    store.batch(docs).await.unwrap();
    (store, dir)
}

mod tempdir {
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Dir {
        pub(crate) fn new() -> Self {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("mk-local-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The demo corpus (what `marketking demo` loads) answers by meaning.
#[tokio::test]
async fn demo_corpus_finds_the_tent_review() {
    let corpus = include_str!("../../marketking-cli/demo/corpus.jsonl");
    let docs: Vec<NewDocument> =
        corpus.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    let (store, _dir) = store_with(docs).await;
    let hits = store.search("tent that survived the rain", &SearchOptions::top(3).source("reviews")).await.unwrap();
    let top = &hits[0].document;
    let text = format!("{} {}", top.title, top.content).to_lowercase();
    assert!(text.contains("tent"), "top hit is not a tent review: {} / {}", top.title, top.content);
}

/// Paraphrases that share no word find each other among distractors; the hashing embedder,
/// which matches words, does not.
#[tokio::test]
async fn paraphrases_without_shared_words() {
    let docs = [
        ("Inexpensive airfare", "Budget plane tickets to European capitals"),
        ("Forgot login", "Steps to recover access when you cannot remember your credentials"),
        ("Kitchen knives", "A set of stainless steel blades for cooking"),
        ("Garden hose", "Fifty feet of flexible tubing for watering plants"),
        ("Winter coat", "Insulated parka with a hood"),
    ];
    let (store, _dir) = store_with(docs.iter().map(|(t, c)| NewDocument::new(*t, *c)).collect()).await;
    for (query, want) in [("cheap flights", "Inexpensive airfare"), ("how do I reset my password", "Forgot login")] {
        let hits = store.search(query, &SearchOptions::top(1)).await.unwrap();
        assert_eq!(hits[0].document.title, want, "query {query:?}");
    }
    let hash = HashingEmbedder::default();
    let running = cosine_similarity(
        &hash.embed_one("running shoes").await.unwrap(),
        &hash.embed_one("jogging sneakers").await.unwrap(),
    )
    .unwrap();
    let local = cosine_similarity(
        &model().embed_one("running shoes").await.unwrap(),
        &model().embed_one("jogging sneakers").await.unwrap(),
    )
    .unwrap();
    assert!(local > 0.5 && local > running + 0.3, "local {local}, hashing {running}");
}

/// A store embedded by the hashing embedder refuses the local model (and the other way round).
#[tokio::test]
async fn model_guard_refuses_mixing_models() {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("s.db");
    let store =
        VectorStore::builder().db_path(&path).embedder(HashingEmbedder::new(384).unwrap()).build().await.unwrap();
    drop(store);
    let err = VectorStore::builder().db_path(&path).local_model(model_dir()).build().await.unwrap_err();
    assert!(matches!(err, Error::SchemaMismatch { .. }), "{err}");
}

/// `no_embedder`: labelled with the external model, vectors in and out, text search refused.
#[tokio::test]
async fn no_embedder_store_takes_vectors_and_refuses_text() {
    let dir = tempdir::Dir::new();
    let store =
        VectorStore::builder().db_path(dir.0.join("s.db")).no_embedder("external-minilm", 384).build().await.unwrap();
    assert_eq!(store.stats().await.unwrap().model, "external-minilm");
    let texts = strings(&["Two person tent", "Water bottle"]);
    let vectors = model().embed(&texts).await.unwrap();
    for (t, v) in texts.iter().zip(&vectors) {
        store.create(NewDocument::new(t.clone(), t.clone()).with_embedding(v.clone())).await.unwrap();
    }
    let q = model().embed_one("a shelter for camping").await.unwrap();
    let hits = store.search_by_vector(&q, &SearchOptions::top(1)).await.unwrap();
    assert_eq!(hits[0].document.title, "Two person tent");
    let err = store.search("tent", &SearchOptions::top(1)).await.unwrap_err();
    assert!(matches!(err, Error::NoEmbedder { ref model } if model == "external-minilm"), "{err}");
    let err = store.create(NewDocument::new("no vector", "text only")).await.unwrap_err();
    assert!(matches!(err, Error::NoEmbedder { .. }), "{err}");
}

/// Embedding never runs on the async runtime: a single-threaded runtime keeps serving other
/// tasks while a large batch embeds.
#[test]
fn embedding_does_not_block_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let texts: Vec<String> =
            (0..64).map(|i| format!("document number {i} about tents, rain and hiking boots")).collect();
        let m = model().clone();
        let job = tokio::spawn(async move { m.embed(&texts).await.unwrap() });
        // Counts how often another task got to run before the batch finished.
        let mut ticks = 0u32;
        while !job.is_finished() {
            tokio::task::yield_now().await;
            ticks += 1;
        }
        assert_eq!(job.await.unwrap().len(), 64);
        assert!(ticks > 100, "the runtime ran other work only {ticks} times while embedding");
    });
}
