//! [`NoEmbedder`]: a store of vectors computed elsewhere.

use async_trait::async_trait;

use super::Embedder;
use crate::error::{Error, Result};

/// Stands for an external model whose vectors the caller brings: labels the store with that
/// model and its dimensions, and refuses to embed text ([`Error::NoEmbedder`]). Documents with
/// embeddings, `search_by_vector` and `find_similar` work; a text search or a document without
/// an embedding fails.
#[derive(Debug, Clone)]
pub struct NoEmbedder {
    model: String,
    dimensions: usize,
}

impl NoEmbedder {
    /// A label for `model` with `dimensions` floats per vector (1..=16000).
    pub fn new(model: impl Into<String>, dimensions: usize) -> Result<Self> {
        let model = model.into();
        if model.trim().is_empty() {
            return Err(Error::config("model", "the model name of a store without embedder must not be empty"));
        }
        if !(1..=16_000).contains(&dimensions) {
            return Err(Error::config("dimensions", format!("must be between 1 and 16000, got {dimensions}")));
        }
        Ok(NoEmbedder { model, dimensions })
    }
}

#[async_trait]
impl Embedder for NoEmbedder {
    async fn embed(&self, _texts: &[String]) -> Result<Vec<Vec<f32>>> {
        Err(Error::NoEmbedder { model: self.model.clone() })
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn model_id(&self) -> &str {
        &self.model
    }
}
