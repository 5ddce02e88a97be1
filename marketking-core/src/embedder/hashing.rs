//! The offline default embedder: signed feature hashing.

use async_trait::async_trait;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::Embedder;
use crate::error::{Error, Result};

/// Version of the feature recipe; part of the model id so any change forces re-embedding.
const RECIPE_VERSION: u32 = 1;

/// A deterministic, offline embedder: no key, no network, no model download.
///
/// **Lexical, not semantic.** It hashes word unigrams and bigrams and character 3- to 5-grams
/// (of lowercased words) into `dimensions` buckets with a sign bit (the "hashing trick"),
/// weights each feature by `1 + ln(tf)` and L2-normalises. Texts that share words and word pieces
/// score high; synonyms with no shared letters do not. Use an [`OpenAiEmbedder`](crate::OpenAiEmbedder)
/// (or any OpenAI-compatible server such as Ollama, vLLM or TEI) for semantic search.
///
/// The hash is xxh3 with a fixed seed, stable across platforms, processes and releases of this
/// crate (never `DefaultHasher`, whose output may change).
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimensions: usize,
    model_id: String,
}

impl Default for HashingEmbedder {
    /// 1536 dimensions, the size of OpenAI's text-embedding-3-small, so a table can later move
    /// to it without a schema change.
    fn default() -> Self {
        HashingEmbedder::with_dimensions(1536)
    }
}

impl HashingEmbedder {
    /// A hashing embedder with `dimensions` buckets (2..=16000).
    pub fn new(dimensions: usize) -> Result<Self> {
        if !(2..=16_000).contains(&dimensions) {
            return Err(Error::config("dimensions", format!("must be between 2 and 16000, got {dimensions}")));
        }
        Ok(HashingEmbedder::with_dimensions(dimensions))
    }

    /// Without the range check (callers pass a valid count).
    fn with_dimensions(dimensions: usize) -> Self {
        HashingEmbedder { dimensions, model_id: format!("marketking-hash-v{RECIPE_VERSION}-{dimensions}") }
    }

    /// Embeds one text synchronously.
    pub fn embed_sync(&self, text: &str) -> Result<Vec<f32>> {
        let mut features: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        let mut words: Vec<String> =
            text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect();
        if words.is_empty() {
            // Only punctuation or symbols ("!!!", "→"): each non-space character counts as a
            // word, so every text a store accepts can be embedded (texts with words are not
            // affected, so the recipe version stays).
            words = text.chars().filter(|c| !c.is_whitespace()).map(String::from).collect();
        }
        for (i, w) in words.iter().enumerate() {
            *features.entry(hash_feature(b'w', w.as_bytes(), b"")).or_default() += 1;
            if let Some(next) = words.get(i + 1) {
                *features.entry(hash_feature(b'b', w.as_bytes(), next.as_bytes())).or_default() += 1;
            }
            // Character n-grams of the word padded with boundary marks, so prefixes and suffixes count.
            let padded: Vec<char> = std::iter::once('<').chain(w.chars()).chain(std::iter::once('>')).collect();
            for n in 3..=5 {
                if padded.len() < n {
                    break;
                }
                for gram in padded.windows(n) {
                    let s: String = gram.iter().collect();
                    *features.entry(hash_feature(b'c', s.as_bytes(), b"")).or_default() += 1;
                }
            }
        }
        if features.is_empty() {
            return Err(Error::invalid("text", "has nothing to embed (only whitespace)"));
        }
        let mut v = vec![0.0f32; self.dimensions];
        for (h, tf) in features {
            let bucket = (h % self.dimensions as u64) as usize;
            let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
            if let Some(x) = v.get_mut(bucket) {
                *x += sign * (1.0 + (tf as f32).ln());
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            // Every feature cancelled out; vanishingly rare, but never return a zero vector.
            if let Some(first) = v.first_mut() {
                *first = 1.0;
            }
        } else {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Ok(v)
    }
}

fn hash_feature(kind: u8, a: &[u8], b: &[u8]) -> u64 {
    let mut buf = Vec::with_capacity(a.len() + b.len() + 2);
    buf.push(kind);
    buf.extend_from_slice(a);
    buf.push(0x1f);
    buf.extend_from_slice(b);
    xxh3_64_with_seed(&buf, 0x6d6b_6861_7368_0001)
}

#[async_trait]
impl Embedder for HashingEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        texts.iter().map(|t| self.embed_sync(t)).collect()
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn max_batch_size(&self) -> usize {
        256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosine_similarity;

    #[test]
    fn deterministic_normalised_and_lexical() {
        let e = HashingEmbedder::new(256).unwrap();
        let a = e.embed_sync("Red running shoes for trail").unwrap();
        assert_eq!(a, e.embed_sync("Red running shoes for trail").unwrap());
        assert_eq!(a.len(), 256);
        assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        let near = e.embed_sync("trail running shoes").unwrap();
        let far = e.embed_sync("invoice payment refund policy").unwrap();
        assert!(cosine_similarity(&a, &near).unwrap() > cosine_similarity(&a, &far).unwrap() + 0.2);
        assert_eq!(e.model_id(), "marketking-hash-v1-256");
    }

    #[test]
    fn stable_across_releases() {
        // Pinned values: if these change, RECIPE_VERSION must change too.
        let v = HashingEmbedder::new(8).unwrap().embed_sync("hello world").unwrap();
        let pinned: Vec<f32> = v.iter().map(|x| (x * 1000.0).round() / 1000.0).collect();
        assert_eq!(pinned, PINNED_HELLO_WORLD.to_vec());
    }

    const PINNED_HELLO_WORLD: [f32; 8] = [0.0, 0.459, 0.459, 0.0, 0.688, -0.229, 0.0, -0.229];

    #[test]
    fn punctuation_embeds_and_only_whitespace_is_an_error() {
        let e = HashingEmbedder::default();
        let v = e.embed_sync(" ... !! ").unwrap();
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5, "a unit vector");
        assert_ne!(v, e.embed_sync("→ ?").unwrap());
        let err = e.embed_sync(" \n\t ").unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "text"), "{err}");
        assert!(HashingEmbedder::new(1).is_err());
    }
}
