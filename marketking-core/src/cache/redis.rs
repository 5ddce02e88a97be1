//! Redis cache over a bb8-redis pool, or over the redis crate's Redis Cluster client.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bb8_redis::RedisConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use super::Cache;
use crate::error::{Error, Result};

/// A Redis cache shared by every process that points at the same Redis database, or at the
/// same Redis Cluster.
///
/// Operations time out after a short deadline (default 250 ms) so a slow or dead Redis costs a
/// call little; the store logs and counts the error and goes on without the cache.
///
/// In a cluster, every key of one store carries the same hash tag (`mk:{...}:`), so a store's
/// generation counter and its cached results live in one slot, on one master. When that master
/// fails, calls fail (cache misses for the store) until a replica has taken over and the
/// client has re-read the slot map.
#[derive(Clone)]
pub struct RedisCache {
    target_kind: Target,
    timeout: Duration,
    default_ttl: Duration,
    target: String,
}

#[derive(Clone)]
enum Target {
    Single(bb8::Pool<RedisConnectionManager>),
    Cluster(Arc<Cluster>),
}

/// A cluster client and its one multiplexed connection, made on first use (and made again
/// after a failure to make it), so a cluster that is down at start-up does not stop the store.
struct Cluster {
    client: ClusterClient,
    conn: tokio::sync::Mutex<Option<ClusterConnection>>,
}

impl Cluster {
    async fn connection(&self) -> redis::RedisResult<ClusterConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.client.get_async_connection().await?;
        *slot = Some(c.clone());
        Ok(c)
    }
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
    /// Connects lazily to `url`: one server (`redis://[:password@]host:port/db`), or a Redis
    /// Cluster, given as several node URLs separated by commas
    /// (`redis://h1:7000,redis://h2:7001`) or as `redis+cluster://[:password@]h1:7000,h2:7001`
    /// (`rediss+cluster://` with TLS). Any reachable node is enough to find the others.
    ///
    /// Nothing is connected here, so a Redis that is down at start-up does not stop the store
    /// from starting; calls count cache errors until it is back.
    pub fn new(url: &str) -> Result<Self> {
        let timeout = Duration::from_millis(250);
        let (target_kind, target) = match cluster_nodes(url)? {
            None => {
                let manager =
                    RedisConnectionManager::new(url).map_err(|e| Error::config("REDIS_URL", e.to_string()))?;
                let pool = bb8::Pool::builder().max_size(16).connection_timeout(timeout).build_unchecked(manager);
                (Target::Single(pool), redact_url(url))
            }
            Some(nodes) => {
                let shown = nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>().join(",");
                // Few retries, short waits: the store treats a failed call as a miss, and a
                // search must not wait out a failover.
                let client = ClusterClient::builder(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(50)
                    .build()
                    .map_err(|e| Error::config("REDIS_URL", e.to_string()))?;
                let cluster = Cluster { client, conn: tokio::sync::Mutex::new(None) };
                (Target::Cluster(Arc::new(cluster)), format!("cluster {shown}"))
            }
        };
        Ok(RedisCache { target_kind, timeout, default_ttl: Duration::from_secs(3600), target })
    }

    /// True when this cache talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target_kind, Target::Cluster(_))
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

    /// One request of the client `key` against a limit of `per_second` requests per second,
    /// with bursts of up to `per_second`, shared by every process using this Redis: `None`
    /// when allowed (and counted), `Some(wait)` when refused. GCRA, the standard algorithm of
    /// Redis rate limiters (one key per client holding its "theoretical arrival time", read
    /// and moved in one script with the server's clock, so the processes' clocks do not
    /// matter). Errors (Redis down) are returned: the caller decides how to limit without it.
    pub async fn throttle(&self, key: &str, per_second: u32) -> Result<Option<Duration>> {
        let per_second = per_second.max(1);
        let interval_us = 1_000_000 / u64::from(per_second);
        let tolerance_us = interval_us * u64::from(per_second - 1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(GCRA).arg(1).arg(key).arg(interval_us).arg(tolerance_us);
        let wait_us: i64 = self.query(cmd).await?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us.unsigned_abs())))
    }

    /// Checks that Redis answers `PING` (in a cluster: a node does).
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.query(redis::cmd("PING")).await?;
        Ok(())
    }

    /// Runs one command, on the pool's connection or on the cluster node owning its key.
    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T> {
        let work = async {
            match &self.target_kind {
                Target::Single(pool) => {
                    let mut conn = pool.get().await.map_err(|e| Error::Cache(e.to_string()))?;
                    cmd.query_async(&mut *conn).await.map_err(|e| Error::Cache(e.to_string()))
                }
                Target::Cluster(cluster) => {
                    let mut conn = cluster.connection().await.map_err(|e| Error::Cache(e.to_string()))?;
                    cmd.query_async(&mut conn).await.map_err(|e| Error::Cache(e.to_string()))
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Cache(format!("redis operation timed out after {:?}", self.timeout))),
        }
    }
}

/// GCRA in one script: `KEYS[1]` the client's key, `ARGV[1]` the emission interval and
/// `ARGV[2]` the burst tolerance, in microseconds. Returns 0 when the request is allowed (and
/// moves the arrival time on), else the microseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local over = tat - now - tolerance
if over > 0 then return over end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// The node URLs of a cluster URL; `None` for a single server's URL.
fn cluster_nodes(url: &str) -> Result<Option<Vec<String>>> {
    let url = url.trim();
    for (scheme, node_scheme) in [("redis+cluster://", "redis://"), ("rediss+cluster://", "rediss://")] {
        if let Some(rest) = url.strip_prefix(scheme) {
            let (userinfo, hosts) = match rest.rsplit_once('@') {
                Some((u, h)) => (format!("{u}@"), h),
                None => (String::new(), rest),
            };
            let hosts = hosts.trim_end_matches('/');
            let nodes: Vec<String> =
                hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("{node_scheme}{userinfo}{h}")).collect();
            if nodes.is_empty() || hosts.contains('/') {
                return Err(Error::config(
                    "REDIS_URL",
                    format!("a cluster URL is {scheme}[:password@]host:port[,host:port...] (no database: a cluster has one)"),
                ));
            }
            return Ok(Some(nodes));
        }
    }
    if url.contains(',') {
        let nodes: Vec<String> = url.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect();
        // The bad entry is named by its position only: without a scheme it may be anything,
        // a password included.
        if let Some(i) = nodes.iter().position(|n| !(n.starts_with("redis://") || n.starts_with("rediss://"))) {
            return Err(Error::config(
                "REDIS_URL",
                format!("lists cluster nodes; each must be a redis:// or rediss:// URL, and node {} is not", i + 1),
            ));
        }
        return Ok(Some(nodes));
    }
    Ok(None)
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
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query(cmd).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let ttl_ms = ttl.unwrap_or(self.default_ttl).as_millis().max(1) as u64;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl_ms);
        self.query(cmd).await
    }

    async fn incr(&self, key: &str) -> Result<u64> {
        let mut cmd = redis::cmd("INCR");
        cmd.arg(key);
        self.query(cmd).await
    }

    async fn counter(&self, key: &str) -> Result<u64> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let v: Option<u64> = self.query(cmd).await?;
        Ok(v.unwrap_or(0))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_urls_list_their_nodes() {
        use super::cluster_nodes;
        assert_eq!(cluster_nodes("redis://h:6379/0").unwrap(), None);
        assert_eq!(
            cluster_nodes("redis+cluster://:pw@a:7000,b:7001/").unwrap().unwrap(),
            ["redis://:pw@a:7000", "redis://:pw@b:7001"]
        );
        assert_eq!(
            cluster_nodes("redis://a:7000, redis://b:7001").unwrap().unwrap(),
            ["redis://a:7000", "redis://b:7001"]
        );
        for bad in ["redis+cluster://", "redis+cluster://a:7000/2", "redis://a:7000,b:7001"] {
            let e = cluster_nodes(bad).unwrap_err();
            assert!(e.to_string().contains("REDIS_URL"), "{bad}: {e}");
        }
        assert!(!cluster_nodes("redis://:s3cret@a:1,x:s3cret@b").unwrap_err().to_string().contains("s3cret"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact_url("redis://:s3cret@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(super::redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(super::redact_url("redis://user:p@ss@h/0"), "redis://***@h/0");
        assert_eq!(super::redact_url("not a url :s3cret@"), "<unparsable URL>");
    }
}
