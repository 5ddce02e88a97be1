//! Client for OpenAI-compatible embeddings endpoints (`POST {base_url}/embeddings`).
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
//! exponential backoff and full jitter, honouring `Retry-After`. Other client errors (400, 401,
//! 403, 404, 422...) fail at once. The API key never appears in `Debug` output, errors or logs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rand::Rng;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::Embedder;
use crate::error::{Error, Result};

/// Default base URL.
const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Default model.
const DEFAULT_MODEL: &str = "text-embedding-3-small";
/// Largest dimension count accepted (pgvector's `vector` type allows 16000).
const MAX_DIMENSIONS: usize = 16_000;
/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How much of a server's error message goes into an error.
const MAX_SERVER_MESSAGE_CHARS: usize = 300;

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

fn redacted(key: &Option<String>) -> Option<&'static str> {
    key.as_ref().map(|_| "<redacted>")
}

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
    /// requests. Also what [`Embedder::max_batch_size`] reports.
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

#[derive(Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

/// Outcome of one HTTP attempt.
enum Attempt {
    /// Final: success or an error not worth retrying.
    Done(Result<Vec<Vec<f32>>>),
    /// Worth retrying.
    Retry {
        /// Returned if no retry is left.
        error: Error,
        /// HTTP status, when the server answered.
        status: Option<u16>,
        /// What the server asked us to wait, when it said.
        retry_after: Option<Duration>,
        /// Short description for the log (no texts, no key).
        reason: String,
    },
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

        let mut attempt: u32 = 0;
        loop {
            match self.attempt(&body, texts.len()).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { error, status, retry_after, reason } => {
                    if attempt >= self.max_retries {
                        return Err(match error {
                            Error::Embedder { message, status } if self.max_retries > 0 => Error::Embedder {
                                message: format!("{message} (gave up after {} attempts)", attempt + 1),
                                status,
                            },
                            other => other,
                        });
                    }
                    let wait = match retry_after {
                        Some(d) => d.min(MAX_RETRY_AFTER),
                        None => self.backoff(attempt),
                    };
                    tracing::warn!(
                        endpoint = %self.display_endpoint,
                        status = ?status,
                        reason = %reason,
                        attempt = attempt + 1,
                        max_attempts = self.max_retries.saturating_add(1),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "embeddings request failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Full-jitter exponential backoff for retry number `attempt` (from 0).
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let cap = self.base_backoff.saturating_mul(factor).min(self.max_backoff);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }

    /// One HTTP request and the classification of its outcome.
    async fn attempt(&self, body: &[u8], expected: usize) -> Attempt {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }

        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return self.transport_failure(e, None),
        };
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return self.transport_failure(e, Some(status)),
        };

        if status.is_success() {
            return Attempt::Done(self.parse_response(&bytes, expected, status));
        }

        let code = status.as_u16();
        let detail = server_message(&bytes).map(|m| format!(": {}", self.redact(&m))).unwrap_or_default();
        let message = format!("{} returned HTTP {status}{detail}", self.display_endpoint);

        if status == StatusCode::TOO_MANY_REQUESTS {
            if is_quota_error(&bytes) {
                // Out of credit: waiting will not help.
                return Attempt::Done(Err(Error::Embedder { message, status: Some(code) }));
            }
            return Attempt::Retry {
                error: Error::RateLimited { retry_after },
                status: Some(code),
                retry_after,
                reason: format!("HTTP {code}"),
            };
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            return Attempt::Retry {
                error: Error::Embedder { message, status: Some(code) },
                status: Some(code),
                retry_after,
                reason: format!("HTTP {code}"),
            };
        }
        Attempt::Done(Err(Error::Embedder { message, status: Some(code) }))
    }

    /// Classifies a reqwest error (no response, or the body could not be read).
    fn transport_failure(&self, e: reqwest::Error, status: Option<StatusCode>) -> Attempt {
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
            Attempt::Retry { error, status, retry_after: None, reason }
        } else {
            Attempt::Done(Err(error))
        }
    }

    /// Decodes and checks a successful response: one vector per input, in input order.
    fn parse_response(&self, bytes: &[u8], expected: usize, status: StatusCode) -> Result<Vec<Vec<f32>>> {
        let fail = |message: String| Error::Embedder { message, status: Some(status.as_u16()) };
        let response: EmbeddingResponse = serde_json::from_slice(bytes).map_err(|e| {
            fail(format!("the response from {} was not valid embeddings JSON: {e}", self.display_endpoint))
        })?;
        let data = response.data;
        if data.len() != expected {
            return Err(fail(format!(
                "{} returned {} embeddings for {expected} inputs",
                self.display_endpoint,
                data.len()
            )));
        }
        let with_index = data.iter().filter(|item| item.index.is_some()).count();
        if with_index != 0 && with_index != data.len() {
            return Err(fail(format!("{} returned some embeddings without an index", self.display_endpoint)));
        }

        let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (position, item) in data.into_iter().enumerate() {
            // Servers that omit every index return the vectors in input order.
            let index = item.index.unwrap_or(position);
            let slot = slots.get_mut(index).ok_or_else(|| {
                fail(format!("{} returned index {index} for {expected} inputs", self.display_endpoint))
            })?;
            if slot.is_some() {
                return Err(fail(format!("{} returned index {index} twice", self.display_endpoint)));
            }
            if item.embedding.len() != self.dimensions {
                return Err(Error::DimensionMismatch { expected: self.dimensions, actual: item.embedding.len() });
            }
            if item.embedding.iter().any(|x| !x.is_finite()) {
                return Err(fail(format!("{} returned a non-finite value at index {index}", self.display_endpoint)));
            }
            *slot = Some(item.embedding);
        }
        // `expected` items, each in its own slot: every slot is filled.
        slots
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| fail(format!("{} returned no embedding for index {i}", self.display_endpoint)))
            })
            .collect()
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

/// `error: source: source...` of an error.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The server's explanation from an error body, truncated: OpenAI's `{"error":{"message":..}}`,
/// `{"error":".."}` (Ollama, TEI), `{"message":..}` (vLLM) or the raw text.
fn server_message(body: &[u8]) -> Option<String> {
    let from_json = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| {
        let error = v.get("error");
        error
            .and_then(|e| e.get("message"))
            .and_then(|m| m.as_str())
            .or_else(|| error.and_then(|e| e.as_str()))
            .or_else(|| v.get("message").and_then(|m| m.as_str()))
            .or_else(|| v.get("detail").and_then(|m| m.as_str()))
            .map(str::to_string)
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    Some(truncate(&text, MAX_SERVER_MESSAGE_CHARS))
}

/// OpenAI answers 429 with `insufficient_quota` when the account is out of credit.
fn is_quota_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("error").cloned()).is_some_and(|e| {
        ["code", "type"].iter().any(|k| e.get(*k).and_then(|x| x.as_str()) == Some("insufficient_quota"))
    })
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// `retry-after-ms` (sent by OpenAI) or `Retry-After` in seconds or as an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64((ms / 1000.0).min(1e9)));
        }
    }
    let value = header(RETRY_AFTER.as_str())?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT` (the form RFC 9110 requires).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || !(0..24).contains(h) || !(0..60).contains(m) || !(0..=60).contains(s) {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_709_164_800);
        assert!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").is_none());
        assert!(parse_http_date("soon").is_none());
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO), "a past date means now");
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn server_messages_are_extracted_and_truncated() {
        assert_eq!(
            server_message(br#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#).as_deref(),
            Some("bad key")
        );
        assert_eq!(server_message(br#"{"error":"model not found"}"#).as_deref(), Some("model not found"));
        assert_eq!(server_message(b"  \n ").as_deref(), None);
        let long = "x".repeat(1000);
        assert_eq!(server_message(long.as_bytes()).unwrap().chars().count(), MAX_SERVER_MESSAGE_CHARS + 1);
    }
}
