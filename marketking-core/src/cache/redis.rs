//! Redis cache over a bb8-redis pool.

use std::time::Duration;

use async_trait::async_trait;
use bb8_redis::RedisConnectionManager;

use super::Cache;
use crate::error::{Error, Result};

/// A Redis cache shared by every process that points at the same Redis database.
///
/// Operations time out after a short deadline (default 250 ms) so a slow or dead Redis costs a
/// call little; the store logs and counts the error and goes on without the cache.
#[derive(Clone)]
pub struct RedisCache {
    pool: bb8::Pool<RedisConnectionManager>,
    timeout: Duration,
    default_ttl: Duration,
    target: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the host part is shown.
        f.debug_struct("RedisCache")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .field("default_ttl", &self.default_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects lazily to `url` (`redis://[:password@]host:port/db`).
    ///
    /// The pool is built without connecting, so a Redis that is down at start-up does not stop
    /// the store from starting; calls count cache errors until it is back.
    pub fn new(url: &str) -> Result<Self> {
        let manager = RedisConnectionManager::new(url).map_err(|e| Error::config("REDIS_URL", e.to_string()))?;
        let timeout = Duration::from_millis(250);
        let pool = bb8::Pool::builder().max_size(16).connection_timeout(timeout).build_unchecked(manager);
        Ok(RedisCache { pool, timeout, default_ttl: Duration::from_secs(3600), target: redact_url(url) })
    }

    /// Sets the per-operation timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the TTL used when `set` is given none (default one hour).
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Checks that Redis answers `PING`.
    pub async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move {
            let _: String = redis::cmd("PING").query_async(&mut *c).await?;
            Ok(())
        })
        .await
    }

    async fn run<'a, T, F, Fut>(&'a self, f: F) -> Result<T>
    where
        F: FnOnce(bb8::PooledConnection<'a, RedisConnectionManager>) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.pool.get().await.map_err(|e| Error::Cache(e.to_string()))?;
            f(conn).await.map_err(|e| Error::Cache(e.to_string()))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Cache(format!("redis operation timed out after {:?}", self.timeout))),
        }
    }
}

/// The URL with its user and password replaced by `***`, for display. A URL that does not
/// parse is not shown at all (it might still hold a password).
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_password(None);
                let _ = u.set_username("***");
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut *c).await }).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let ttl_ms = ttl.unwrap_or(self.default_ttl).as_millis().max(1) as u64;
        self.run(|mut c| async move {
            redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms).query_async(&mut *c).await
        })
        .await
    }

    async fn incr(&self, key: &str) -> Result<u64> {
        self.run(|mut c| async move { redis::cmd("INCR").arg(key).query_async(&mut *c).await }).await
    }

    async fn counter(&self, key: &str) -> Result<u64> {
        let v: Option<u64> =
            self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut *c).await }).await?;
        Ok(v.unwrap_or(0))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact_url("redis://:s3cret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(super::redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(super::redact_url("redis://user:p@ss@h/0"), "redis://***@h/0");
        assert_eq!(super::redact_url("not a url :s3cret@"), "<unparsable URL>");
    }
}
