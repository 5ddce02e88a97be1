//! Which failed requests are retried, and how long to wait: exponential backoff with jitter
//! (`backon`), or what the server asked for in `Retry-After` / `retry-after-ms`.

use std::time::{Duration, SystemTime};

use backon::ExponentialBuilder;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::error::Error;

/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A failed attempt.
#[derive(Debug)]
pub(super) struct Failure {
    /// Returned when no retry is left (or the failure is final).
    pub(super) error: Error,
    /// Rate limits, server errors, timeouts and connection errors are worth retrying.
    pub(super) retryable: bool,
    /// HTTP status, when the server answered.
    pub(super) status: Option<u16>,
    /// What the server asked us to wait, when it said.
    pub(super) retry_after: Option<Duration>,
    /// Short description for the log (no texts, no key).
    pub(super) reason: String,
}

impl Failure {
    /// A failure that retrying will not fix.
    pub(super) fn fatal(error: Error) -> Self {
        Failure { error, retryable: false, status: None, retry_after: None, reason: String::new() }
    }

    /// A failure worth retrying.
    pub(super) fn retry(error: Error, status: Option<u16>, retry_after: Option<Duration>, reason: String) -> Self {
        Failure { error, retryable: true, status, retry_after, reason }
    }

    /// The error to return after `attempts` attempts: a retried embedder error says so.
    pub(super) fn into_error(self, attempts: u32) -> Error {
        match self.error {
            Error::Embedder { message, status } if self.retryable && attempts > 1 => {
                Error::Embedder { message: format!("{message} (gave up after {attempts} attempts)"), status }
            }
            other => other,
        }
    }
}

/// Retry `n` (from 0) waits about `base * 2^n` plus a random part of it, capped by `max`;
/// `max_retries` retries at most.
pub(super) fn backoff(base: Duration, max: Duration, max_retries: u32) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(max.max(base))
        .with_max_times(usize::try_from(max_retries).unwrap_or(usize::MAX))
        .with_jitter()
}

/// Waits what the server asked for (at most [`MAX_RETRY_AFTER`]) instead of the backoff, as long
/// as a retry is left (`None` means none is).
pub(super) fn honour_retry_after(failure: &Failure, backoff: Option<Duration>) -> Option<Duration> {
    backoff.map(|wait| failure.retry_after.map_or(wait, |asked| asked.min(MAX_RETRY_AFTER)))
}

/// `retry-after-ms` (sent by OpenAI) or `Retry-After` in seconds or as an HTTP date.
pub(super) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
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
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h), None);
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::ZERO), "a past date means now");
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn retry_after_replaces_the_backoff_only_while_retries_are_left() {
        let asked =
            Failure::retry(Error::RateLimited { retry_after: None }, Some(429), Some(Duration::ZERO), "x".into());
        assert_eq!(honour_retry_after(&asked, Some(Duration::from_secs(5))), Some(Duration::ZERO));
        assert_eq!(honour_retry_after(&asked, None), None);
        let long = Failure::retry(
            Error::RateLimited { retry_after: None },
            Some(429),
            Some(Duration::from_secs(3600)),
            "x".into(),
        );
        assert_eq!(honour_retry_after(&long, Some(Duration::from_secs(1))), Some(MAX_RETRY_AFTER));
    }
}
