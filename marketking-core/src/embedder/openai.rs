//! OpenAI-compatible embedding client. Stub: to be implemented.
#![allow(dead_code, unused_variables)]

use async_trait::async_trait;

use super::Embedder;
use crate::error::{Error, Result};

/// Client for OpenAI-compatible `/v1/embeddings` endpoints.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    model_id: String,
    dimensions: usize,
}

/// Builder for [`OpenAiEmbedder`].
#[derive(Debug, Default)]
pub struct OpenAiEmbedderBuilder {}

impl OpenAiEmbedder {
    /// A builder.
    pub fn builder() -> OpenAiEmbedderBuilder {
        OpenAiEmbedderBuilder::default()
    }
}

impl OpenAiEmbedderBuilder {
    /// API key.
    pub fn api_key(self, key: impl Into<String>) -> Self { self }
    /// Base URL.
    pub fn base_url(self, url: impl Into<String>) -> Self { self }
    /// Model.
    pub fn model(self, model: impl Into<String>) -> Self { self }
    /// Dimensions.
    pub fn dimensions(self, d: usize) -> Self { self }
    /// Build.
    pub fn build(self) -> Result<OpenAiEmbedder> { Err(Error::config("openai", "not implemented")) }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> { todo!() }
    fn dimensions(&self) -> usize { self.dimensions }
    fn model_id(&self) -> &str { &self.model_id }
}
