//! Run with: `cargo run -p marketking-examples --example custom_embedder`
//!
//! Plugs your own model into a store by implementing [`Embedder`]: one batch method, the vector
//! size and a model id. The store checks the contract (one vector per text, in order, of exactly
//! `dimensions()` finite floats) on every answer, and records the model id in the table so a
//! store with another model cannot mix vectors into it.
//!
//! The "model" here is deliberately tiny (letter frequencies); a real one would call a service
//! or run a network. Runs on a throwaway embedded store, no services needed.

use marketking_core::{async_trait, Embedder, NewDocument, Result, SearchOptions, VectorStore};

/// Letter-frequency vectors: 26 dimensions, L2-normalised.
#[derive(Debug)]
struct LetterEmbedder;

#[async_trait]
impl Embedder for LetterEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| letters(t)).collect())
    }

    fn dimensions(&self) -> usize {
        26
    }

    fn model_id(&self) -> &str {
        "example:letters-v1"
    }
}

fn letters(text: &str) -> Vec<f32> {
    let mut v = [0f32; 26];
    for b in text.bytes().filter(u8::is_ascii_alphabetic) {
        v[usize::from(b.to_ascii_lowercase() - b'a')] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter().map(|x| x / norm).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("marketking-custom-embedder-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = VectorStore::builder().db_path(dir.join("store.db")).embedder(LetterEmbedder).build().await?;
    println!("model {} ({} dimensions)", store.model(), store.dimensions());

    store
        .batch(vec![
            NewDocument::new("Zebra", "zzz buzz fizz jazz"),
            NewDocument::new("Vowels", "aeiou eau aia"),
            NewDocument::new("Mixed", "quick brown fox"),
        ])
        .await?;
    let hits = store.search("pizza puzzle", &SearchOptions::top(2)).await?;
    for hit in &hits {
        println!("{:.3} {}", hit.score, hit.document.title);
    }
    assert_eq!(hits.first().map(|h| h.document.title.as_str()), Some("Zebra"), "the z-heavy text is closest");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
