//! API keys (constant-time compared), the throttle on failed key attempts, and the per-client
//! rate limiter.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use marketking_core::RedisCache;

use crate::config::ConfigError;
use crate::error::AppError;
use crate::AppState;

/// Shortest API key accepted: 16 characters. Shorter keys are refused at start-up.
pub const MIN_API_KEY_LEN: usize = 16;
/// Default number of failed API-key attempts per second per client address before it is
/// answered 429 (also the burst).
pub const DEFAULT_AUTH_FAILURE_LIMIT: u32 = 5;

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
    /// Keys from a comma-separated list (`MARKETKING_API_KEYS`); blanks are ignored. A key
    /// shorter than [`MIN_API_KEY_LEN`] characters is refused (the error gives its position and
    /// length, never the key).
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let mut digests = Vec::new();
        for (i, key) in list.split(',').map(str::trim).filter(|k| !k.is_empty()).enumerate() {
            let length = key.chars().count();
            if length < MIN_API_KEY_LEN {
                return Err(ConfigError::ApiKeyTooShort { position: i + 1, length, min: MIN_API_KEY_LEN });
            }
            digests.push(digest(key));
        }
        Ok(ApiKeys { digests })
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

    /// A stable name of key `i` (a prefix of its digest, never the key): the same on every
    /// instance whatever the order of the list, so a shared rate limit counts one key once.
    pub(crate) fn id(&self, i: usize) -> String {
        self.digests.get(i).map(|d| d.iter().take(8).map(|b| format!("{b:02x}")).collect()).unwrap_or_default()
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

/// A rate limiter keyed by client (API key or IP address): in this process, or shared by every
/// instance through Redis.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<DefaultKeyedRateLimiter<String>>,
    per_second: u32,
    /// The shared limit's Redis: while it answers, it alone decides; while it does not, each
    /// instance limits on its own (a client then gets at most the limit per instance).
    shared: Option<RedisCache>,
    /// After a Redis error the shared limit is left alone until this instant (ms since
    /// `epoch`), so a hung Redis costs one timeout per [`SHARED_RETRY`], not one per request.
    shared_skip_until: Arc<std::sync::atomic::AtomicU64>,
    epoch: Instant,
}

/// How long the shared limit is bypassed after a Redis error.
const SHARED_RETRY: Duration = Duration::from_secs(1);

/// Prefix of the shared limiter's Redis keys.
const SHARED_PREFIX: &str = "mk:rl:";

impl Limiter {
    /// `per_second` requests per second per client (also the burst); `None` when 0 (off).
    pub fn new(per_second: u32) -> Option<Self> {
        Self::shared(per_second, None)
    }

    /// [`new`](Self::new), shared through `redis` by every instance using it.
    pub fn shared(per_second: u32, redis: Option<RedisCache>) -> Option<Self> {
        let n = NonZeroU32::new(per_second)?;
        Some(Limiter {
            inner: Arc::new(RateLimiter::keyed(Quota::per_second(n))),
            per_second,
            shared: redis,
            shared_skip_until: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    /// Ok, or how long the client must wait.
    pub async fn check(&self, client: &str) -> Result<(), std::time::Duration> {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let skip = self.shared_skip_until.load(std::sync::atomic::Ordering::Relaxed) > now_ms;
        if let Some(redis) = self.shared.as_ref().filter(|_| !skip) {
            match redis.throttle(&format!("{SHARED_PREFIX}{client}"), self.per_second).await {
                Ok(None) => return Ok(()),
                Ok(Some(wait)) => return Err(wait),
                Err(e) => {
                    let retry = u64::try_from(SHARED_RETRY.as_millis()).unwrap_or(1000);
                    self.shared_skip_until.store(now_ms.saturating_add(retry), std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, "shared rate limit unavailable; limiting in this process for now");
                }
            }
        }
        if self.inner.len() > 10_000 {
            self.inner.retain_recent();
        }
        self.inner.check_key(&client.to_string()).map_err(|nu| nu.wait_time_from(self.inner.clock().now()))
    }
}

/// Throttles failed API-key attempts per client network: an IPv4 address, or an IPv6 /64 (one
/// host usually holds a whole /64, so per-address limits would not hold it back).
///
/// A network that used up its budget of failures is blocked for whole seconds (what
/// `Retry-After` says): while blocked, every request from it that presents a key is answered
/// 429 *without checking the key*, because checking it would tell a guesser when a guess is
/// right. Valid keys never use up the budget, and requests without any key are answered 401
/// without counting, so a busy client with the right key is only held back while a wrong key
/// is being tried from its own network.
#[derive(Debug, Clone)]
pub(crate) struct AuthThrottle {
    failures: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    // governor cannot tell whether a key is limited without using up a cell of it, so the
    // blocked networks are remembered here until their block ends.
    blocked: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

/// Networks tracked before expired entries are dropped.
const TRACKED: usize = 10_000;

impl AuthThrottle {
    /// `per_second` failures per second per network (also the burst); `None` when 0 (off).
    pub(crate) fn new(per_second: u32) -> Option<Self> {
        let n = NonZeroU32::new(per_second)?;
        Some(AuthThrottle {
            failures: Arc::new(RateLimiter::keyed(Quota::per_second(n))),
            blocked: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn blocked(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // The map holds plain instants: a panic elsewhere cannot leave it inconsistent.
        self.blocked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How much longer `net` is blocked, if it is.
    fn check(&self, net: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut blocked = self.blocked();
        let until = *blocked.get(&net)?;
        if until > now {
            return Some(until - now);
        }
        blocked.remove(&net);
        None
    }

    /// Counts a failed attempt from `net`; `Some(wait)` when that used up its budget and it is
    /// now blocked for `wait`.
    fn failed(&self, net: IpAddr) -> Option<Duration> {
        if self.failures.len() > TRACKED {
            self.failures.retain_recent();
        }
        let not_until = self.failures.check_key(&net).err()?;
        let wait = whole_seconds(not_until.wait_time_from(self.failures.clock().now()));
        let now = Instant::now();
        let mut blocked = self.blocked();
        if blocked.len() > TRACKED {
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(net, now + wait);
        tracing::warn!(client = %net, retry_after_s = wait.as_secs(), "throttling failed API-key attempts");
        Some(wait)
    }
}

/// `d` rounded up to whole seconds, at least one: `Retry-After` counts whole seconds, and the
/// block lasts exactly as long as it says.
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs((d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))
}

/// The network a client address is throttled as: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by
/// its /64 prefix.
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client after the key check: `Ok(client id)` or the answer to give.
fn authenticate(state: &AppState, req: &Request) -> Result<String, AppError> {
    let Some(token) = bearer(req) else { return Err(AppError::Unauthorized) };
    // Without connection info (an app served without `into_make_service_with_connect_info`)
    // every client shares one budget.
    let net = client_ip(req).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), network);
    if let Some(wait) = state.auth_throttle.as_ref().and_then(|t| t.check(net)) {
        return Err(AppError::AuthThrottled(wait));
    }
    match state.keys.verify(token) {
        Some(i) => Ok(format!("key:{}", state.keys.id(i))),
        None => match state.auth_throttle.as_ref().and_then(|t| t.failed(net)) {
            Some(wait) => Err(AppError::AuthThrottled(wait)),
            None => Err(AppError::Unauthorized),
        },
    }
}

/// Middleware on `/v1`: checks the API key (when keys are configured, throttling failed
/// attempts per client network), then the rate limit of the key, or of the client IP when no
/// keys are configured.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = if state.keys.is_empty() {
        match client_ip(&req) {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".to_string(),
        }
    } else {
        match authenticate(&state, &req) {
            Ok(client) => client,
            Err(e) => return e.into_response(),
        }
    };
    if let Some(limiter) = &state.limiter {
        if let Err(wait) = limiter.check(&client).await {
            return AppError::RateLimited(wait).into_response();
        }
    }
    next.run(req).await
}
