//! Tests of the OpenAI-compatible embedder against a scripted local server.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use marketking_core::{Embedder, Error, OpenAiEmbedder, OpenAiEmbedderBuilder};
use serde_json::{json, Value};

/// Dimensions used by most tests.
const DIMS: usize = 4;
const KEY: &str = "sk-test-very-secret-key-123";

/// What the server does with one request.
#[derive(Clone)]
enum Reply {
    /// Correct embeddings (dimensions from the request, else 1536).
    Ok,
    /// Correct embeddings, but the `data` items in reverse order.
    Reversed,
    /// Correct embeddings of this many dimensions.
    Dims(usize),
    /// Correct embeddings with the item for this index left out.
    DropIndex(usize),
    /// This status, extra headers and body.
    Status(u16, Vec<(&'static str, &'static str)>, String),
    /// Status 200 with this body.
    Raw(String),
    /// Never answers.
    Hang,
}

struct Recorded {
    auth: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Server {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// When set, every request waits here until this many requests are in flight together.
    barrier: Option<tokio::sync::Barrier>,
}

impl Server {
    fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn bodies(&self) -> Vec<Value> {
        self.requests.lock().unwrap().iter().map(|r| r.body.clone()).collect()
    }
    fn auths(&self) -> Vec<Option<String>> {
        self.requests.lock().unwrap().iter().map(|r| r.auth.clone()).collect()
    }
}

/// A deterministic vector, different for each text.
fn vector_for(text: &str, dims: usize) -> Vec<f32> {
    let h = text.bytes().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0..dims).map(|i| ((h >> ((i % 4) * 8)) & 0xff) as f32 + i as f32 / 8.0).collect()
}

fn expected(texts: &[String], dims: usize) -> Vec<Vec<f32>> {
    texts.iter().map(|t| vector_for(t, dims)).collect()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text number {i}")).collect()
}

async fn handle(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).expect("the client sends JSON");
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap().to_string());
    server.requests.lock().unwrap().push(Recorded { auth, body: body.clone() });
    let reply = server.script.lock().unwrap().pop_front().unwrap_or(Reply::Ok);

    let now = server.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    server.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if let Some(barrier) = &server.barrier {
        barrier.wait().await;
    }
    let response = respond(reply, &body).await;
    server.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

async fn respond(reply: Reply, body: &Value) -> Response {
    let inputs: Vec<String> = body["input"]
        .as_array()
        .expect("input is an array")
        .iter()
        .map(|v| v.as_str().expect("inputs are strings").to_string())
        .collect();
    let requested = body.get("dimensions").and_then(Value::as_u64).map_or(1536, |d| d as usize);
    let items = |dims: usize| -> Vec<Value> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_for(t, dims)}))
            .collect()
    };
    let list = |data: Vec<Value>| {
        axum::Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
            .into_response()
    };
    match reply {
        Reply::Ok => list(items(requested)),
        Reply::Reversed => {
            let mut data = items(requested);
            data.reverse();
            list(data)
        }
        Reply::Dims(d) => list(items(d)),
        Reply::DropIndex(i) => {
            let mut data = items(requested);
            data.remove(i);
            list(data)
        }
        Reply::Status(code, headers, text) => {
            let mut response = (StatusCode::from_u16(code).unwrap(), text).into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::Raw(text) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Reply::Hang => std::future::pending().await,
    }
}

/// Starts a server answering with `script` (then `Reply::Ok`); returns its base URL.
async fn start(script: Vec<Reply>) -> (String, Arc<Server>) {
    start_server(Server { script: Mutex::new(script.into()), ..Server::default() }).await
}

async fn start_server(server: Server) -> (String, Arc<Server>) {
    let server = Arc::new(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/v1/embeddings", post(handle)).with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), server)
}

/// A builder for a test server: small backoff, few retries.
fn builder(base: &str) -> OpenAiEmbedderBuilder {
    OpenAiEmbedder::builder()
        .base_url(base)
        .model("test-model")
        .dimensions(DIMS)
        .max_retries(3)
        .base_backoff(Duration::from_millis(2))
        .timeout(Duration::from_secs(10))
}

fn openai_error(message: &str) -> String {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}).to_string()
}

/// Runs `fut`, failing the test if it takes more than `secs` seconds.
async fn within<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut).await.expect("took too long")
}

#[tokio::test]
async fn success_returns_one_vector_per_text_in_order() {
    let (base, server) = start(vec![]).await;
    let embedder = builder(&base).build().unwrap();
    let input = texts(3);

    let out = embedder.embed(&input).await.unwrap();

    assert_eq!(out, expected(&input, DIMS));
    assert_eq!(embedder.dimensions(), DIMS);
    assert_eq!(embedder.model_id(), "openai:test-model:4");
    assert_eq!(embedder.max_batch_size(), 256);
    let bodies = server.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["model"], "test-model");
    assert_eq!(bodies[0]["input"], json!(input));
    assert_eq!(bodies[0]["encoding_format"], "float");

    let one = embedder.embed_one("hello").await.unwrap();
    assert_eq!(one, vector_for("hello", DIMS));
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
    assert_eq!(server.requests(), 2, "an empty call sends no request");
}

#[tokio::test]
async fn reversed_indices_are_put_back_in_input_order() {
    let (base, _server) = start(vec![Reply::Reversed]).await;
    let embedder = builder(&base).build().unwrap();
    let input = texts(5);

    let out = embedder.embed(&input).await.unwrap();

    assert_eq!(out, expected(&input, DIMS));
}

#[tokio::test]
async fn rate_limit_with_retry_after_zero_is_retried_without_backoff() {
    let (base, server) =
        start(vec![Reply::Status(429, vec![("retry-after", "0")], openai_error("Rate limit reached"))]).await;
    // A backoff of a minute: only the server's `Retry-After: 0` lets this finish quickly.
    let embedder = builder(&base).base_backoff(Duration::from_secs(60)).build().unwrap();
    let input = texts(2);

    let out = within(10, embedder.embed(&input)).await.unwrap();

    assert_eq!(out, expected(&input, DIMS));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn server_error_is_retried() {
    let (base, server) = start(vec![
        Reply::Status(500, vec![], openai_error("The server had an error")),
        Reply::Status(503, vec![], "upstream unavailable".into()),
    ])
    .await;
    let embedder = builder(&base).build().unwrap();
    let input = texts(2);

    let out = embedder.embed(&input).await.unwrap();

    assert_eq!(out, expected(&input, DIMS));
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn persistent_server_error_gives_up_with_the_server_message() {
    let script = vec![Reply::Status(503, vec![], openai_error("Engine overloaded")); 10];
    let (base, server) = start(script).await;
    let embedder = builder(&base).max_retries(2).build().unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    match &err {
        Error::Embedder { status, message } => {
            assert_eq!(*status, Some(503));
            assert!(message.contains("Engine overloaded"), "{message}");
            assert!(message.contains("3 attempts"), "{message}");
        }
        other => panic!("expected Error::Embedder, got {other:?}"),
    }
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn unauthorized_fails_at_once_without_leaking_the_key() {
    // OpenAI quotes (part of) the key back; this server quotes all of it.
    let body = openai_error(&format!("Incorrect API key provided: {KEY}. You can find your API key at ..."));
    let (base, server) = start(vec![Reply::Status(401, vec![], body)]).await;
    let embedder = builder(&base).api_key(KEY).build().unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    match &err {
        Error::Embedder { status, message } => {
            assert_eq!(*status, Some(401));
            assert!(message.contains("Incorrect API key provided"), "{message}");
            assert!(message.contains("401"), "{message}");
        }
        other => panic!("expected Error::Embedder, got {other:?}"),
    }
    assert!(!err.to_string().contains(KEY), "{err}");
    assert!(!format!("{err:?}").contains(KEY), "{err:?}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    for code in [400, 403, 404, 422] {
        let (base, server) = start(vec![Reply::Status(code, vec![], openai_error("nope"))]).await;
        let embedder = builder(&base).build().unwrap();

        let err = embedder.embed(&texts(1)).await.unwrap_err();

        assert!(
            matches!(&err, Error::Embedder { status: Some(s), message } if *s == code && message.contains("nope")),
            "{code}: {err:?}"
        );
        assert_eq!(server.requests(), 1, "status {code} must not be retried");
    }
}

#[tokio::test]
async fn persistent_rate_limit_returns_rate_limited() {
    let script = vec![Reply::Status(429, vec![], openai_error("Rate limit reached")); 10];
    let (base, server) = start(script).await;
    let embedder = builder(&base).max_retries(3).build().unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert!(matches!(err, Error::RateLimited { retry_after: None }), "{err:?}");
    assert_eq!(server.requests(), 4, "max_retries + 1 requests");
}

#[tokio::test]
async fn rate_limited_error_carries_the_servers_retry_after() {
    let script = vec![Reply::Status(429, vec![("retry-after", "0")], String::new()); 10];
    let (base, server) = start(script).await;
    let embedder = builder(&base).max_retries(1).build().unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert!(matches!(err, Error::RateLimited { retry_after: Some(d) } if d.is_zero()), "{err:?}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn exhausted_quota_is_not_retried() {
    let body = json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}});
    let (base, server) = start(vec![Reply::Status(429, vec![], body.to_string())]).await;
    let embedder = builder(&base).build().unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert!(matches!(&err, Error::Embedder { status: Some(429), message } if message.contains("quota")), "{err:?}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn malformed_json_is_an_error_and_not_retried() {
    let (base, server) = start(vec![Reply::Raw("{\"data\": [ oops".into())]).await;
    let embedder = builder(&base).build().unwrap();

    let err = embedder.embed(&texts(2)).await.unwrap_err();

    assert!(matches!(&err, Error::Embedder { message, .. } if message.contains("not valid")), "{err:?}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn wrong_dimension_count_is_a_dimension_mismatch() {
    let (base, server) = start(vec![Reply::Dims(3)]).await;
    let embedder = builder(&base).build().unwrap();

    let err = embedder.embed(&texts(2)).await.unwrap_err();

    assert!(matches!(err, Error::DimensionMismatch { expected: 4, actual: 3 }), "{err:?}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn missing_or_duplicate_index_is_an_error() {
    let duplicate = json!({"data": [
        {"index": 0, "embedding": [0.0, 0.0, 0.0, 0.0]},
        {"index": 0, "embedding": [1.0, 1.0, 1.0, 1.0]},
    ]});
    let out_of_range = json!({"data": [
        {"index": 0, "embedding": [0.0, 0.0, 0.0, 0.0]},
        {"index": 2, "embedding": [1.0, 1.0, 1.0, 1.0]},
    ]});
    let (base, _server) =
        start(vec![Reply::DropIndex(1), Reply::Raw(duplicate.to_string()), Reply::Raw(out_of_range.to_string())]).await;
    let embedder = builder(&base).build().unwrap();

    let missing = embedder.embed(&texts(3)).await.unwrap_err();
    assert!(
        matches!(&missing, Error::Embedder { message, .. } if message.contains("2 embeddings for 3")),
        "{missing:?}"
    );
    let dup = embedder.embed(&texts(2)).await.unwrap_err();
    assert!(matches!(&dup, Error::Embedder { message, .. } if message.contains("twice")), "{dup:?}");
    let oob = embedder.embed(&texts(2)).await.unwrap_err();
    assert!(matches!(&oob, Error::Embedder { message, .. } if message.contains("index 2")), "{oob:?}");
}

#[tokio::test]
async fn responses_without_index_keep_server_order() {
    let body = json!({"data": [{"embedding": [1.0, 2.0, 3.0, 4.0]}, {"embedding": [5.0, 6.0, 7.0, 8.0]}]});
    let (base, _server) = start(vec![Reply::Raw(body.to_string())]).await;
    let embedder = builder(&base).build().unwrap();

    let out = embedder.embed(&texts(2)).await.unwrap();

    assert_eq!(out, vec![vec![1.0, 2.0, 3.0, 4.0], vec![5.0, 6.0, 7.0, 8.0]]);
}

#[tokio::test]
async fn large_calls_are_split_and_keep_order() {
    let (base, server) = start(vec![Reply::Reversed; 4]).await;
    let embedder = builder(&base).max_batch_size(3).build().unwrap();
    let input = texts(10);

    let out = embedder.embed(&input).await.unwrap();

    assert_eq!(out, expected(&input, DIMS));
    assert_eq!(embedder.max_batch_size(), 3);
    let mut sizes: Vec<usize> = server.bodies().iter().map(|b| b["input"].as_array().unwrap().len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 3, 3, 3]);
}

#[tokio::test]
async fn split_requests_run_concurrently_up_to_the_limit() {
    // Each request waits until two are in flight: this only finishes if the client sends two
    // at a time, and the server sees no more than two at once.
    let (base, server) =
        start_server(Server { barrier: Some(tokio::sync::Barrier::new(2)), ..Server::default() }).await;
    let embedder = builder(&base).max_batch_size(2).max_concurrency(2).build().unwrap();
    let input = texts(8);

    let out = within(10, embedder.embed(&input)).await.unwrap();

    assert_eq!(out, expected(&input, DIMS));
    assert_eq!(server.requests(), 4);
    assert_eq!(server.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn failure_of_one_split_request_fails_the_call() {
    let (base, _server) = start(vec![Reply::Ok, Reply::Status(400, vec![], openai_error("input too long"))]).await;
    let embedder = builder(&base).max_batch_size(2).max_concurrency(1).build().unwrap();

    let err = embedder.embed(&texts(4)).await.unwrap_err();

    assert!(
        matches!(&err, Error::Embedder { status: Some(400), message } if message.contains("input too long")),
        "{err:?}"
    );
}

#[tokio::test]
async fn dimensions_are_sent_only_when_configured() {
    let (base, server) = start(vec![Reply::Ok, Reply::Ok, Reply::Dims(DIMS)]).await;

    let explicit = builder(&base).build().unwrap();
    assert_eq!(explicit.embed(&texts(1)).await.unwrap()[0].len(), DIMS);

    let default_model = OpenAiEmbedder::builder().base_url(&base).build().unwrap();
    assert_eq!(default_model.dimensions(), 1536);
    assert_eq!(default_model.embed(&texts(1)).await.unwrap()[0].len(), 1536);

    let not_sent = builder(&base).send_dimensions(false).build().unwrap();
    assert_eq!(not_sent.embed(&texts(1)).await.unwrap()[0].len(), DIMS);

    let bodies = server.bodies();
    assert_eq!(bodies[0]["dimensions"], json!(DIMS));
    assert_eq!(bodies[1]["model"], "text-embedding-3-small");
    assert!(bodies[1].get("dimensions").is_none(), "{}", bodies[1]);
    assert!(bodies[2].get("dimensions").is_none(), "{}", bodies[2]);
}

#[tokio::test]
async fn authorization_header_is_sent_only_with_a_key() {
    let (base, server) = start(vec![]).await;

    builder(&base).api_key(KEY).build().unwrap().embed(&texts(1)).await.unwrap();
    builder(&base).build().unwrap().embed(&texts(1)).await.unwrap();
    builder(&base).api_key("").build().unwrap().embed(&texts(1)).await.unwrap();

    assert_eq!(server.auths(), vec![Some(format!("Bearer {KEY}")), None, None]);
}

#[tokio::test]
async fn base_url_works_with_or_without_trailing_slash() {
    let (base, server) = start(vec![]).await;

    for url in [base.clone(), format!("{base}/")] {
        let embedder = builder(&url).build().unwrap();
        assert_eq!(embedder.endpoint(), format!("{base}/embeddings"));
        embedder.embed(&texts(1)).await.unwrap();
    }
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn timeouts_are_retried() {
    let (base, server) = start(vec![Reply::Hang]).await;
    let embedder = builder(&base).timeout(Duration::from_millis(300)).build().unwrap();
    let input = texts(1);

    let out = within(10, embedder.embed(&input)).await.unwrap();

    assert_eq!(out, expected(&input, DIMS));
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn persistent_timeout_is_reported() {
    let (base, server) = start(vec![Reply::Hang; 10]).await;
    let embedder = builder(&base).timeout(Duration::from_millis(100)).max_retries(1).build().unwrap();

    let err = within(10, embedder.embed(&texts(1))).await.unwrap_err();

    assert!(matches!(&err, Error::Embedder { status: None, message } if message.contains("timed out")), "{err:?}");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn unreachable_server_is_an_embedder_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let embedder = builder(&format!("http://{addr}/v1")).api_key(KEY).build().unwrap();

    let err = within(10, embedder.embed(&texts(1))).await.unwrap_err();

    match &err {
        Error::Embedder { status: None, message } => {
            assert!(message.contains(&addr.to_string()), "{message}");
            assert!(!message.contains(KEY), "{message}");
        }
        other => panic!("expected Error::Embedder without status, got {other:?}"),
    }
}

#[test]
fn debug_output_hides_the_key() {
    let b = OpenAiEmbedder::builder().api_key(KEY);
    for text in [format!("{b:?}"), format!("{b:#?}")] {
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    let e = b.build().unwrap();
    for text in [format!("{e:?}"), format!("{e:#?}")] {
        assert!(!text.contains(KEY), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    let none = format!("{:?}", OpenAiEmbedder::builder().build().unwrap());
    assert!(none.contains("api_key: None"), "{none}");
}

#[test]
fn defaults_and_known_models() {
    let e = OpenAiEmbedder::builder().build().unwrap();
    assert_eq!(e.endpoint(), "https://api.openai.com/v1/embeddings");
    assert_eq!(e.model_id(), "openai:text-embedding-3-small:1536");
    assert_eq!(e.max_batch_size(), 256);

    let large = OpenAiEmbedder::builder().model("text-embedding-3-large").build().unwrap();
    assert_eq!(large.dimensions(), 3072);
    let ada = OpenAiEmbedder::builder().model("text-embedding-ada-002").build().unwrap();
    assert_eq!(ada.dimensions(), 1536);
    let short = OpenAiEmbedder::builder().dimensions(512).build().unwrap();
    assert_eq!(short.model_id(), "openai:text-embedding-3-small:512");
}

#[test]
fn build_rejects_bad_settings() {
    fn field(b: OpenAiEmbedderBuilder) -> String {
        match b.build() {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected Error::Config, got {other:?}"),
        }
    }
    let b = OpenAiEmbedder::builder;
    assert_eq!(field(b().base_url("not a url")), "base_url");
    assert_eq!(field(b().base_url("ftp://example.com/v1")), "base_url");
    assert_eq!(field(b().base_url("")), "base_url");
    assert_eq!(field(b().model("nomic-embed-text")), "dimensions");
    assert_eq!(field(b().model("")), "model");
    assert_eq!(field(b().dimensions(0)), "dimensions");
    assert_eq!(field(b().dimensions(16_001)), "dimensions");
    assert_eq!(field(b().max_batch_size(0)), "max_batch_size");
    assert_eq!(field(b().max_concurrency(0)), "max_concurrency");
    assert_eq!(field(b().timeout(Duration::ZERO)), "timeout");

    let err = b().model("nomic-embed-text").build().unwrap_err();
    assert!(err.to_string().contains("nomic-embed-text"), "{err}");
    // An unknown model is fine once its size is given.
    assert!(b().model("nomic-embed-text").dimensions(768).build().is_ok());
}
