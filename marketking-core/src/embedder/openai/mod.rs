//! Client for OpenAI-compatible embeddings endpoints (`POST {base_url}/embeddings`).
//!
//! Files: `builder.rs` (settings and their validation), `wire.rs` (request and response bodies,
//! server messages), `retry.rs` (which failures are retried, `Retry-After`, backoff); this file
//! sends requests.
//!
//! Works with OpenAI itself (the default, `https://api.openai.com/v1`) and with any server that
//! speaks the same protocol, for example:
//!
//! - Ollama: `http://localhost:11434/v1` (no key needed),
//! - vLLM: `http://localhost:8000/v1`,
//! - Hugging Face Text Embeddings Inference (TEI): `http://localhost:8080/v1`.
//!
//! For models it does not know the dimension count of, set it with
//! [`OpenAiEmbedderBuilder::dimensions`].
//!
//! ```no_run
//! use marketking_core::{Embedder, OpenAiEmbedder};
//!
//! # async fn run() -> marketking_core::Result<()> {
//! let embedder = OpenAiEmbedder::builder()
//!     .base_url("http://localhost:11434/v1")
//!     .model("nomic-embed-text")
//!     .dimensions(768)
//!     .build()?;
//! let vectors = embedder.embed(&["hello".to_string()]).await?;
//! assert_eq!(vectors[0].len(), 768);
//! # Ok(()) }
//! ```
//!
//! Rate limits (429), server errors (5xx), timeouts and connection errors are retried with
//! exponential backoff with jitter (the `backon` crate), honouring `Retry-After`. Other client errors (400, 401,
//! 403, 404, 422...) fail at once. The API key never appears in `Debug` output, errors or logs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;

use super::Embedder;
use crate::error::{Error, Result};

mod builder;
mod retry;
mod wire;

use builder::redacted;
pub use builder::OpenAiEmbedderBuilder;
use retry::Failure;
use wire::{is_quota_error, server_message, EmbeddingRequest};

use crate::error::error_chain;

/// Client for OpenAI-compatible `/embeddings` endpoints (OpenAI, Ollama, vLLM, TEI...).
///
/// Build one with [`OpenAiEmbedder::builder`]. Cheap to clone: clones share the HTTP connection
/// pool and the limit on concurrent requests.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: Url,
    /// The endpoint without any user info, for messages and logs.
    display_endpoint: String,
    api_key: Option<String>,
    model: String,
    model_id: String,
    dimensions: usize,
    /// `dimensions` as sent in the request body, when it is.
    request_dimensions: Option<usize>,
    max_batch_size: usize,
    max_concurrency: usize,
    semaphore: Arc<Semaphore>,
    timeout: Duration,
    max_retries: u32,
    base_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.display_endpoint)
            .field("api_key", &redacted(&self.api_key))
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("request_dimensions", &self.request_dimensions)
            .field("max_batch_size", &self.max_batch_size)
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// A builder with the defaults: OpenAI's API, `text-embedding-3-small`, no key.
    pub fn builder() -> OpenAiEmbedderBuilder {
        OpenAiEmbedderBuilder::default()
    }

    /// The model name sent to the server.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The full URL requests go to, for example `https://api.openai.com/v1/embeddings`.
    pub fn endpoint(&self) -> &str {
        &self.display_endpoint
    }
}

impl OpenAiEmbedder {
    /// Sends one request (at most `max_batch_size` texts), retrying as configured.
    async fn embed_chunk(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let body = serde_json::to_vec(&EmbeddingRequest {
            model: &self.model,
            input: texts,
            encoding_format: "float",
            dimensions: self.request_dimensions,
        })
        .map_err(|e| Error::Embedder { message: format!("cannot encode the embeddings request: {e}"), status: None })?;

        // Held for the whole chunk, retries included, so backoff also slows this client down.
        let _permit = self
            .semaphore
            .acquire()
            .await
            .map_err(|_| Error::Embedder { message: "embedder is shutting down".into(), status: None })?;

        let attempts = AtomicU32::new(0);
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.attempt(&body, texts.len()).await
        })
        .retry(retry::backoff(self.base_backoff, self.max_backoff, self.max_retries))
        .when(|f: &Failure| f.retryable)
        .adjust(retry::honour_retry_after)
        .notify(|f: &Failure, wait: Duration| {
            tracing::warn!(
                endpoint = %self.display_endpoint,
                status = ?f.status,
                reason = %f.reason,
                attempt = attempts.load(Ordering::Relaxed),
                max_attempts = self.max_retries.saturating_add(1),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "embeddings request failed, retrying"
            );
        })
        .await;
        result.map_err(|f| f.into_error(attempts.load(Ordering::Relaxed)))
    }

    /// One HTTP request and the classification of its outcome.
    async fn attempt(&self, body: &[u8], expected: usize) -> std::result::Result<Vec<Vec<f32>>, Failure> {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }

        let response = request.send().await.map_err(|e| self.transport_failure(e, None))?;
        let status = response.status();
        let retry_after = retry::parse_retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| self.transport_failure(e, Some(status)))?;

        if status.is_success() {
            return wire::parse_response(&bytes, expected, self.dimensions, &self.display_endpoint, status)
                .map_err(Failure::fatal);
        }

        let code = status.as_u16();
        let detail = server_message(&bytes).map(|m| format!(": {}", self.redact(&m))).unwrap_or_default();
        let message = format!("{} returned HTTP {status}{detail}", self.display_endpoint);

        if status == StatusCode::TOO_MANY_REQUESTS {
            if is_quota_error(&bytes) {
                // Out of credit: waiting will not help.
                return Err(Failure::fatal(Error::Embedder { message, status: Some(code) }));
            }
            return Err(Failure::retry(
                Error::RateLimited { retry_after },
                Some(code),
                retry_after,
                format!("HTTP {code}"),
            ));
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            return Err(Failure::retry(
                Error::Embedder { message, status: Some(code) },
                Some(code),
                retry_after,
                format!("HTTP {code}"),
            ));
        }
        Err(Failure::fatal(Error::Embedder { message, status: Some(code) }))
    }

    /// Classifies a reqwest error (no response, or the body could not be read).
    fn transport_failure(&self, e: reqwest::Error, status: Option<StatusCode>) -> Failure {
        let status = status.map(|s| s.as_u16());
        let retryable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body();
        let is_connect = e.is_connect();
        let (message, reason) = if e.is_timeout() {
            (format!("request to {} timed out after {:?}", self.display_endpoint, self.timeout), "timeout".to_string())
        } else {
            let chain = self.redact(&error_chain(&e.without_url()));
            (
                format!("request to {} failed: {chain}", self.display_endpoint),
                if is_connect { format!("connection error: {chain}") } else { chain },
            )
        };
        let error = Error::Embedder { message, status };
        if retryable {
            Failure::retry(error, status, None, reason)
        } else {
            Failure::fatal(error)
        }
    }

    /// Removes the API key from a message, in case a server or library echoed it.
    fn redact(&self, message: &str) -> String {
        match &self.api_key {
            Some(key) => message.replace(key.as_str(), "<redacted>"),
            None => message.to_string(),
        }
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    /// Embeds `texts`, splitting them into requests of at most `max_batch_size` texts that run
    /// concurrently (up to `max_concurrency`). The output is in input order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if texts.len() <= self.max_batch_size {
            return self.embed_chunk(texts).await;
        }
        let parts =
            futures_util::future::try_join_all(texts.chunks(self.max_batch_size).map(|c| self.embed_chunk(c))).await?;
        Ok(parts.into_iter().flatten().collect())
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }
}
