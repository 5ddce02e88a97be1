//! [`OpenAiEmbedderBuilder`]: the settings of an [`OpenAiEmbedder`] and their validation.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use tokio::sync::Semaphore;

use super::OpenAiEmbedder;
use crate::error::{Error, Result};

/// Default base URL.
const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Default model.
const DEFAULT_MODEL: &str = "text-embedding-3-small";
/// Largest dimension count accepted (pgvector's `vector` type allows 16000).
const MAX_DIMENSIONS: usize = 16_000;

/// Dimension counts of the OpenAI models we know, used when `dimensions` is not set.
fn known_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        "text-embedding-ada-002" => Some(1536),
        _ => None,
    }
}

/// Settings collected by the builder.
#[derive(Clone)]
struct Config {
    base_url: String,
    api_key: Option<String>,
    model: String,
    dimensions: Option<usize>,
    send_dimensions: bool,
    max_batch_size: usize,
    max_concurrency: usize,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
    base_backoff: Duration,
    max_backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_url: DEFAULT_BASE_URL.into(),
            api_key: None,
            model: DEFAULT_MODEL.into(),
            dimensions: None,
            send_dimensions: true,
            max_batch_size: 256,
            max_concurrency: 4,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
        }
    }
}

pub(super) fn redacted(key: &Option<String>) -> Option<&'static str> {
    key.as_ref().map(|_| "<redacted>")
}

/// Builder for [`OpenAiEmbedder`]. Every setting has a default; [`build`](Self::build) validates.
#[derive(Clone, Default)]
pub struct OpenAiEmbedderBuilder {
    config: Config,
}

impl std::fmt::Debug for OpenAiEmbedderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.debug_struct("OpenAiEmbedderBuilder")
            .field("base_url", &c.base_url)
            .field("api_key", &redacted(&c.api_key))
            .field("model", &c.model)
            .field("dimensions", &c.dimensions)
            .field("send_dimensions", &c.send_dimensions)
            .field("max_batch_size", &c.max_batch_size)
            .field("max_concurrency", &c.max_concurrency)
            .field("timeout", &c.timeout)
            .field("connect_timeout", &c.connect_timeout)
            .field("max_retries", &c.max_retries)
            .field("base_backoff", &c.base_backoff)
            .field("max_backoff", &c.max_backoff)
            .finish()
    }
}

impl OpenAiEmbedderBuilder {
    /// API key, sent as `Authorization: Bearer <key>`. Optional: local servers such as Ollama,
    /// vLLM or TEI usually need none. An empty key means no key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into().trim().to_string();
        self.config.api_key = (!key.is_empty()).then_some(key);
        self
    }

    /// Base URL of the API, with or without a trailing slash (default
    /// `https://api.openai.com/v1`). Requests go to `{base_url}/embeddings`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// Model name (default `text-embedding-3-small`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }

    /// Number of floats per vector (1..=16000). Sent to the server as `dimensions` (see
    /// [`send_dimensions`](Self::send_dimensions)). Required for models other than
    /// `text-embedding-3-small` (1536), `text-embedding-3-large` (3072) and
    /// `text-embedding-ada-002` (1536).
    pub fn dimensions(mut self, d: usize) -> Self {
        self.config.dimensions = Some(d);
        self
    }

    /// Whether an explicitly set [`dimensions`](Self::dimensions) is sent in the request body
    /// (default `true`). Turn it off for servers that reject the field for models that cannot
    /// shorten their vectors; the count is then only checked against the responses.
    pub fn send_dimensions(mut self, send: bool) -> Self {
        self.config.send_dimensions = send;
        self
    }

    /// Most texts sent in one request (default 256). Larger `embed` calls are split into several
    /// requests. Also what [`Embedder::max_batch_size`](crate::Embedder::max_batch_size) reports.
    pub fn max_batch_size(mut self, n: usize) -> Self {
        self.config.max_batch_size = n;
        self
    }

    /// Most requests in flight at once, across all calls on this embedder and its clones
    /// (default 4).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.config.max_concurrency = n;
        self
    }

    /// Time limit for one request, from sending to the end of the response body (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Time limit for establishing a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How many times a failed request is retried (default 5, so at most 6 attempts). Only
    /// rate limits, server errors, timeouts and connection errors are retried.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.config.max_retries = n;
        self
    }

    /// Base of the exponential backoff between retries (default 500 ms). Retry `n` (from 0) waits
    /// a random time between zero and `base_backoff * 2^n`, capped by
    /// [`max_backoff`](Self::max_backoff), unless the server sent `Retry-After`.
    pub fn base_backoff(mut self, backoff: Duration) -> Self {
        self.config.base_backoff = backoff;
        self
    }

    /// Longest backoff between two retries (default 20 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.config.max_backoff = backoff;
        self
    }

    /// Validates the settings and builds the embedder. Errors are [`Error::Config`] naming the
    /// setting (`base_url`, `api_key`, `model`, `dimensions`, `max_batch_size`...).
    pub fn build(self) -> Result<OpenAiEmbedder> {
        let c = self.config;

        let base = c.base_url.trim().trim_end_matches('/');
        let base_url =
            Url::parse(base).map_err(|e| Error::config("base_url", format!("{base:?} is not a valid URL: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(Error::config(
                "base_url",
                format!("must start with http:// or https://, got scheme {:?}", base_url.scheme()),
            ));
        }
        if base_url.host_str().is_none_or(str::is_empty) {
            return Err(Error::config("base_url", format!("{base:?} has no host")));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(Error::config("base_url", "must not have a query string or fragment"));
        }
        let endpoint = Url::parse(&format!("{base}/embeddings"))
            .map_err(|e| Error::config("base_url", format!("cannot append /embeddings: {e}")))?;
        let mut shown = endpoint.clone();
        // Never print credentials embedded in the URL.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let display_endpoint = shown.to_string();

        if let Some(key) = &c.api_key {
            if key.chars().any(|ch| ch.is_control()) {
                return Err(Error::config("api_key", "contains control characters"));
            }
        }

        let model = c.model.trim().to_string();
        if model.is_empty() {
            return Err(Error::config("model", "must not be empty"));
        }

        let dimensions = match c.dimensions {
            Some(d) if !(1..=MAX_DIMENSIONS).contains(&d) => {
                return Err(Error::config("dimensions", format!("must be between 1 and {MAX_DIMENSIONS}, got {d}")));
            }
            Some(d) => d,
            None => known_dimensions(&model).ok_or_else(|| {
                Error::config(
                    "dimensions",
                    format!(
                        "model {model:?} is not a known OpenAI model, so its vector size is unknown; \
                         set dimensions to the size the server returns"
                    ),
                )
            })?,
        };
        let request_dimensions = c.dimensions.filter(|_| c.send_dimensions);

        if c.max_batch_size == 0 {
            return Err(Error::config("max_batch_size", "must be at least 1"));
        }
        if c.max_concurrency == 0 {
            return Err(Error::config("max_concurrency", "must be at least 1"));
        }
        if c.max_concurrency > Semaphore::MAX_PERMITS {
            return Err(Error::config("max_concurrency", "is too large"));
        }
        if c.timeout.is_zero() {
            return Err(Error::config("timeout", "must be greater than zero"));
        }
        if c.connect_timeout.is_zero() {
            return Err(Error::config("connect_timeout", "must be greater than zero"));
        }

        let client = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.connect_timeout)
            .user_agent(concat!("marketking/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(crate::tls::client_config(None, "tls")?)
            .build()
            .map_err(|e| Error::config("http_client", format!("cannot create the HTTP client: {e}")))?;

        Ok(OpenAiEmbedder {
            client,
            endpoint,
            display_endpoint,
            api_key: c.api_key,
            model_id: format!("openai:{model}:{dimensions}"),
            model,
            dimensions,
            request_dimensions,
            max_batch_size: c.max_batch_size,
            max_concurrency: c.max_concurrency,
            semaphore: Arc::new(Semaphore::new(c.max_concurrency)),
            timeout: c.timeout,
            max_retries: c.max_retries,
            base_backoff: c.base_backoff,
            max_backoff: c.max_backoff.max(c.base_backoff),
        })
    }
}
