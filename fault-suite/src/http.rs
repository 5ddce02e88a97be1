//! A small HTTP/1.1 client for the suite: keeps connections alive as a real client does, and
//! tells transport failures (refused, dropped connection, no answer in time) apart from statuses.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A client for one server (`http://127.0.0.1:<port>`), with the API key when it has one.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    key: Option<String>,
    timeout: Duration,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// Status code.
    pub(crate) status: u16,
    /// The `Retry-After` header, if any.
    pub(crate) retry_after: Option<String>,
    /// The body.
    pub(crate) body: Bytes,
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Transport {
    /// The connection was refused (nothing listening).
    Refused,
    /// The connection closed before a whole answer arrived (a panicking handler does this).
    Dropped,
    /// No answer within the client's timeout.
    TimedOut,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Refused => "refused",
            Transport::Dropped => "dropped",
            Transport::TimedOut => "no answer",
        })
    }
}

/// A failed request: what kind of failure, and the client's message.
pub(crate) type Failure = (Transport, String);

impl Http {
    /// A client for `127.0.0.1:port`; `key` goes into `Authorization: Bearer`.
    pub(crate) fn new(port: u16, key: Option<String>) -> Http {
        Http { client: client(), base: format!("http://127.0.0.1:{port}"), key, timeout: Duration::from_secs(30) }
    }

    /// A client for the same server with connections of its own (probes that must not queue
    /// behind the load's requests).
    pub(crate) fn new_like(other: &Http) -> Http {
        Http { client: client(), ..other.clone() }
    }

    /// The same client with another per-request timeout.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Http {
        self.timeout = timeout;
        self
    }

    /// Sends one request; `body` is sent as JSON.
    pub(crate) async fn send(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Reply, Failure> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default())).map_err(|e| (Transport::Dropped, e.to_string()))?;
        let work = async {
            let resp = self.client.request(req).await.map_err(|e| {
                let kind = if e.is_connect() { Transport::Refused } else { Transport::Dropped };
                (kind, chain(&e))
            })?;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = resp.into_body().collect().await.map_err(|e| (Transport::Dropped, chain(&e)))?.to_bytes();
            Ok(Reply { status, retry_after, body })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err((Transport::TimedOut, format!("no answer within {:?}", self.timeout))),
        }
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Result<Reply, Failure> {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Reply, Failure> {
        self.send(Method::POST, path, Some(Bytes::from(body.to_string()))).await
    }

    /// `PUT path` with a JSON body.
    pub(crate) async fn put(&self, path: &str, body: &Value) -> Result<Reply, Failure> {
        self.send(Method::PUT, path, Some(Bytes::from(body.to_string()))).await
    }

    /// `POST path`, expecting a 2xx JSON answer.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        expect_json(self.post(path, body).await, path)
    }
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("answer is not JSON")
    }

    /// A short description: the status and the start of the body.
    pub(crate) fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(100).collect();
        format!("{} {body}", self.status)
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build_http()
}

fn expect_json(r: Result<Reply, Failure>, path: &str) -> Result<Value> {
    match r {
        Ok(reply) if (200..300).contains(&reply.status) => reply.json(),
        Ok(reply) => anyhow::bail!("{path}: {}", reply.describe()),
        Err((kind, msg)) => anyhow::bail!("{path}: {kind}: {msg}"),
    }
}

/// An error and its causes joined with `: ` (hyper puts the useful part in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
