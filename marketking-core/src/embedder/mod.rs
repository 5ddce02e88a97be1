//! The [`Embedder`] trait and its implementations.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};

mod hashing;
#[cfg(feature = "local")]
mod local;
mod none;
#[cfg(feature = "openai")]
mod openai;

pub use hashing::HashingEmbedder;
#[cfg(feature = "local")]
pub use local::{
    find_local_model, hf_cache_dir, installed_models, known_model, model_cache_dir, InstalledModel, KnownModel,
    LocalEmbedder, LocalEmbedderBuilder, ModelSource, BGE_QUERY_INSTRUCTION, DEFAULT_LOCAL_MODEL, DEFAULT_TOKEN_BUDGET,
    KNOWN_MODELS,
};
pub use none::NoEmbedder;
#[cfg(feature = "openai")]
pub use openai::{OpenAiEmbedder, OpenAiEmbedderBuilder};

/// Turns texts into vectors.
///
/// Contract, checked by the store: `embed` returns exactly one vector per input text, in input
/// order, each of exactly [`dimensions`](Embedder::dimensions) finite floats. `model_id` names the
/// model and anything that changes its output (a store refuses a table made by another model).
///
/// Stored as `Arc<dyn Embedder>`, so the trait uses `async_trait` to stay object safe.
#[async_trait]
pub trait Embedder: Send + Sync + Debug {
    /// Embeds a batch of texts (at most [`max_batch_size`](Embedder::max_batch_size) of them).
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;

    /// Number of floats in each vector.
    fn dimensions(&self) -> usize;

    /// Identifies the model and its settings, for example `openai:text-embedding-3-small`.
    fn model_id(&self) -> &str;

    /// How many texts the store sends per `embed` call. Default 64.
    fn max_batch_size(&self) -> usize {
        64
    }

    /// A prefix the store puts before a search query (never before a document) when it embeds
    /// the query, for models trained with one (bge: "Represent this sentence for searching
    /// relevant passages: "). Default none.
    fn query_instruction(&self) -> Option<&str> {
        None
    }

    /// Embeds one text.
    async fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let mut v = self.embed(&[text.to_string()]).await?;
        match v.pop() {
            Some(x) if v.is_empty() => Ok(x),
            _ => Err(Error::Embedder {
                message: "embedder returned a wrong number of vectors for one text".into(),
                status: None,
            }),
        }
    }
}

#[async_trait]
impl<T: Embedder + ?Sized> Embedder for Arc<T> {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts).await
    }
    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn max_batch_size(&self) -> usize {
        (**self).max_batch_size()
    }
    fn query_instruction(&self) -> Option<&str> {
        (**self).query_instruction()
    }
}

#[async_trait]
impl<T: Embedder + ?Sized> Embedder for Box<T> {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts).await
    }
    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }
    fn model_id(&self) -> &str {
        (**self).model_id()
    }
    fn max_batch_size(&self) -> usize {
        (**self).max_batch_size()
    }
    fn query_instruction(&self) -> Option<&str> {
        (**self).query_instruction()
    }
}

/// Embeds `texts` in chunks of the embedder's batch size and checks the contract
/// (count, dimensions, finite values) on every answer.
pub(crate) async fn embed_checked(embedder: &dyn Embedder, texts: &[String]) -> Result<Vec<Vec<f32>>> {
    let dims = embedder.dimensions();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(embedder.max_batch_size().max(1)) {
        let vectors = embedder.embed(chunk).await?;
        if vectors.len() != chunk.len() {
            return Err(Error::Embedder {
                message: format!("embedder returned {} vectors for {} texts", vectors.len(), chunk.len()),
                status: None,
            });
        }
        for v in &vectors {
            if v.len() != dims {
                return Err(Error::DimensionMismatch { expected: dims, actual: v.len() });
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Embedder { message: "embedder returned a non-finite value".into(), status: None });
            }
        }
        out.extend(vectors);
    }
    Ok(out)
}
