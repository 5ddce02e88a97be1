//! API keys (constant-time compared) and the per-client rate limiter.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::AppState;

/// The configured API keys, kept only as SHA-256 digests. `Debug` prints the count, never a key.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} configured)", self.digests.len())
    }
}

fn digest(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(s.as_bytes()));
    out
}

impl ApiKeys {
    /// Keys from a comma-separated list (`MARKETKING_API_KEYS`); blanks are ignored.
    pub fn parse(list: &str) -> Self {
        ApiKeys { digests: list.split(',').map(str::trim).filter(|k| !k.is_empty()).map(digest).collect() }
    }

    /// No keys: authentication is off.
    pub fn none() -> Self {
        ApiKeys::default()
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// The index of the key `presented` matches. Digests of equal length are compared in
    /// constant time, and every configured key is compared (no early exit).
    pub fn verify(&self, presented: &str) -> Option<usize> {
        let d = digest(presented);
        let mut found: Option<usize> = None;
        for (i, k) in self.digests.iter().enumerate() {
            let eq: bool = k.ct_eq(&d).into();
            if eq && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}

/// A rate limiter keyed by client (API key index or IP address).
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<DefaultKeyedRateLimiter<String>>,
}

impl Limiter {
    /// `per_second` requests per second per client (also the burst); `None` when 0 (off).
    pub fn new(per_second: u32) -> Option<Self> {
        let n = NonZeroU32::new(per_second)?;
        Some(Limiter { inner: Arc::new(RateLimiter::keyed(Quota::per_second(n))) })
    }

    /// Ok, or how long the client must wait.
    pub fn check(&self, client: &str) -> Result<(), std::time::Duration> {
        if self.inner.len() > 10_000 {
            self.inner.retain_recent();
        }
        self.inner.check_key(&client.to_string()).map_err(|nu| nu.wait_time_from(self.inner.clock().now()))
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware on `/v1`: checks the API key (when keys are configured), then the rate limit of
/// the key, or of the client IP when no keys are configured.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = if state.keys.is_empty() {
        match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
            None => "ip:unknown".to_string(),
        }
    } else {
        match bearer(&req).and_then(|t| state.keys.verify(t)) {
            Some(i) => format!("key:{i}"),
            None => return AppError::Unauthorized.into_response(),
        }
    };
    if let Some(limiter) = &state.limiter {
        if let Err(wait) = limiter.check(&client) {
            return AppError::RateLimited(wait).into_response();
        }
    }
    next.run(req).await
}
