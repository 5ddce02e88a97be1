//! PostgreSQL + pgvector storage.
//!
//! Choices made here, and why:
//! - Reads use `query_typed` (one round trip, unnamed statement, planned with the actual
//!   parameter values), so the planner never falls into a slow generic plan for
//!   `ORDER BY embedding <=> $1 LIMIT k` (a known trap with prepared statements at small N).
//! - Per-call HNSW/IVFFlat settings are plain session `SET`s pipelined in front of the query, so
//!   they cost no extra round trip; every search sets all of them, so nothing leaks between
//!   calls that share a pooled connection.
//! - Writes use binary COPY with ids taken from the table's sequence up front, so a batch
//!   streams at the server's COPY speed and still reports ids in input order.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::types::{Kind, Type};

use crate::backend::{Backend, IndexInfo, IndexSpec, SearchQuery, StorageStats, Written};
use crate::document::{BatchReport, Document, DocumentPatch, NewDocument, SearchHit, SearchOptions};
use crate::error::{Error, Result};
use crate::plan::Existing;

mod admin;
mod copy;
mod filter_sql;
mod ident;
mod metadata_index;
mod pool;
mod read;
mod replicas;
mod schema;
mod search;
mod text_stats;
mod tls;
mod write;

pub(crate) use ident::TableName;
use pool::{Health, Manager, Pool};

/// The PostgreSQL backend: a bb8 pool, the validated table name and the `vector` type's oid.
pub(crate) struct PgBackend {
    pool: Pool,
    table: TableName,
    vector_type: Type,
    /// pgvector >= 0.8 has iterative index scans (filtered searches still return k rows).
    iterative_scans: bool,
    identity: String,
    sql: read::Statements,
    max_size: u32,
    health: Arc<Health>,
    /// The table's text search configuration (`english`...), passed to every text query.
    text_config: String,
    /// The quoted schema of the `rum` extension when the table has its RUM index over `tsv`.
    rum: Option<String>,
    /// The table's text statistics for BM25 (`pg_stats`), refreshed once a minute.
    text_stats: Arc<text_stats::StatsCache>,
    /// The vectors' dimension count.
    dims: usize,
    /// The quantization of the table's vector index, re-read once a minute.
    index_form: admin::IndexForm,
    /// Read replicas, when configured: searches and reads go to them.
    replicas: Option<Arc<replicas::Replicas>>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("identity", &self.identity)
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects, migrates and checks the table's model and dimensions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn connect(
        url: &str,
        table: &str,
        pool_size: u32,
        model: &str,
        dims: usize,
        text_config: &str,
        rum: bool,
        replicas: &crate::backend::ReplicaConfig,
    ) -> Result<Self> {
        let table = TableName::parse(table)?;
        if dims == 0 || dims > 16_000 {
            return Err(Error::config("dimensions", format!("pgvector supports 1..=16000 dimensions, got {dims}")));
        }
        let (config, root_cert) = client_config(url, "DATABASE_URL")?;
        let identity =
            format!("postgres:{}/{}/{}", host_port(&config), config.get_dbname().unwrap_or(""), table.display());
        let health = Arc::new(Health::default());
        let manager = Manager {
            inner: PostgresConnectionManager::new(config, tls::connector(root_cert.as_deref())?),
            health: health.clone(),
        };
        // One connection made by hand first: a pool only reports "timed out" when the server is
        // unreachable, while this gives the real reason (refused, auth failed, no database...).
        let mut first = bb8::ManageConnection::connect(&manager).await?;
        let info = schema::migrate(&mut first, &table, model, dims, text_config, rum).await?;
        let stats = text_stats::read(&first, &table).await?;
        drop(first);
        let pool = pool_builder(pool_size).build(manager).await?;
        let replicas = connect_replicas(&replicas.urls, pool_size, replicas.max_lag, &pool, &health).await?;
        let vector_type = Type::new("vector".into(), info.vector_oid, Kind::Simple, info.vector_schema.clone());
        let iterative_scans = info.extension_version >= (0, 8);
        if !iterative_scans {
            tracing::warn!(
                version = ?info.extension_version,
                "pgvector older than 0.8: filtered approximate searches may return fewer than k rows"
            );
        }
        let backend = PgBackend {
            pool,
            sql: read::Statements::new(&table),
            table,
            vector_type,
            iterative_scans,
            identity,
            max_size: pool_size,
            health,
            text_config: info.text_config,
            rum: info.rum_schema.as_deref().map(ident::quote_ident),
            text_stats: text_stats::StatsCache::new(stats),
            dims,
            index_form: admin::IndexForm::new(),
            replicas,
        };
        let index = backend.index_info(&*backend.checkout().await?).await?;
        backend.index_form.set(index.as_ref());
        Ok(backend)
    }

    /// A pooled connection; [`Error::Unavailable`] at once when the server refuses connections.
    pub(crate) async fn checkout(&self) -> Result<bb8::PooledConnection<'_, Manager>> {
        pool::checkout(&self.pool, &self.health).await
    }

    /// A newly made connection, outside the pool (used once, for a retry).
    pub(crate) async fn fresh_connection(&self) -> Result<pool::PgConn> {
        self.pool.dedicated_connection().await
    }
}

/// The driver's configuration of `url` (named `field` in errors) and the root certificate to
/// trust, with the store's connection rules applied. The URL is never echoed back: it may hold
/// a password.
fn client_config(url: &str, field: &str) -> Result<(tokio_postgres::Config, Option<std::path::PathBuf>)> {
    let tls_options = tls::split(url)?;
    let mut config = tokio_postgres::Config::from_str(&tls_options.url)
        .map_err(|e| Error::config(field, format!("is not a valid PostgreSQL connection string ({e})")))?;
    // TLS only when asked for with `sslmode=require` (or libpq's `verify-ca`/`verify-full`),
    // and then the server certificate and host name are verified against the webpki roots
    // (managed Postgres) or the `sslrootcert` file. The driver's default `prefer` would try
    // TLS against local servers' self-signed certificates and fail, so anything else means
    // plain TCP.
    if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    // A server that does not answer at all (a dropped route) must not hold a connect for
    // the operating system's TCP timeout (minutes).
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let tls_on = config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
    if tls_options.root_cert.is_some() && !tls_on {
        return Err(Error::config(
            "sslrootcert",
            "is only used with sslmode=require (or verify-ca / verify-full); add it to the connection string",
        ));
    }
    let root_cert = tls_options.root_cert.or_else(|| tls_on.then(tls::root_cert_from_env).flatten());
    Ok((config, root_cert))
}

/// `host[,host...]:port` of a configuration: no user, no password.
fn host_port(config: &tokio_postgres::Config) -> String {
    format!(
        "{}:{}",
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        config.get_ports().first().copied().unwrap_or(5432)
    )
}

/// The read replicas at `urls`: one pool each, built without connecting (a replica that is down
/// at start is out of rotation until a sample reaches it), and their first sample.
async fn connect_replicas(
    urls: &[String],
    pool_size: u32,
    max_lag: Duration,
    primary: &Pool,
    primary_health: &Arc<Health>,
) -> Result<Option<Arc<replicas::Replicas>>> {
    if urls.is_empty() {
        return Ok(None);
    }
    let mut members = Vec::with_capacity(urls.len());
    for url in urls {
        let (config, root_cert) = client_config(url, "DATABASE_READ_URLS")?;
        let name = host_port(&config);
        let health = Arc::new(Health::default());
        let manager = Manager {
            inner: PostgresConnectionManager::new(config, tls::connector(root_cert.as_deref())?),
            health: health.clone(),
        };
        let pool = pool_builder(pool_size).build_unchecked(manager);
        members.push((name, pool, health));
    }
    let (position, system_id) = match pool::checkout(primary, primary_health).await {
        Ok(conn) => (replicas::insert_position(&conn).await.ok(), replicas::system_id(&conn).await.ok()),
        Err(_) => (None, None),
    };
    let replicas = Arc::new(replicas::Replicas::new(members, max_lag, system_id));
    // Replicas that cannot serve are logged by the sample (once, when they leave rotation).
    replicas.sample(position).await;
    tokio::spawn(replicas::sampler(Arc::downgrade(&replicas), primary.clone(), primary_health.clone()));
    Ok(Some(replicas))
}

/// The pool settings of the primary and of every replica.
///
/// The check on checkout is the driver's "closed" flag, not a test query (which would add a
/// round trip to every call): a connection whose server process was terminated is dropped
/// instead of failing the next request. No connect retries inside the pool: a failed attempt
/// fails the waiting requests at once (`checkout`), and the next request tries again, so
/// recovery after a restart is immediate.
fn pool_builder(pool_size: u32) -> bb8::Builder<Manager> {
    bb8::Pool::builder()
        .max_size(pool_size)
        .connection_timeout(CHECKOUT_TIMEOUT)
        .test_on_check_out(true)
        .retry_connection(false)
        // LIFO: sequential calls keep reusing the most recently used connection, whose
        // server process is warm. FIFO (bb8's default) cycles through every idle connection
        // and wakes a cold backend process for each call (measured ~0.5 ms per call at 1k rows).
        .queue_strategy(bb8::QueueStrategy::Lifo)
}

/// Runs an idempotent read, `$body` with `$conn` bound to a pooled connection. When the
/// connection turns out to be lost (its server process was terminated, the server restarted),
/// the read is retried once on a freshly made connection (not another pooled one, which may
/// be just as dead), so callers never see a failure that a second attempt would not have had.
/// (A macro, not a method taking an async closure: the futures must stay `Send` for the
/// `async_trait` methods that use it.)
macro_rules! with_retry {
    ($backend:expr, |$conn:ident| $body:expr) => {{
        #[allow(unused_mut)]
        let mut $conn = $backend.checkout().await?;
        let result: $crate::error::Result<_> = async { $body }.await;
        match result {
            Err(e) if e.is_unavailable() => {
                tracing::debug!(error = %e, "read on a lost connection; retrying once on a fresh one");
                drop($conn);
                #[allow(unused_mut)]
                let mut $conn = $backend.fresh_connection().await?;
                let result: $crate::error::Result<_> = async { $body }.await;
                result
            }
            other => other,
        }
    }};
}
pub(crate) use with_retry;

/// Runs a read, `$body` with `$conn` bound to a pooled connection, on a read replica when the
/// store has one in rotation that has replayed `$floor` (and the store's own writes), else on
/// the primary, through [`with_retry!`]. A read that fails on a replica is run again on the
/// primary: no read fails because a replica did.
macro_rules! with_read {
    ($backend:expr, $floor:expr, |$conn:ident| $body:expr) => {{
        let mut served = None;
        if let Some(replicas) = &$backend.replicas {
            if let Some(routed) = replicas.checkout($floor).await {
                let index = routed.index;
                #[allow(unused_mut)]
                let mut $conn = routed.conn;
                let result: $crate::error::Result<_> = async { $body }.await;
                match result {
                    Ok(v) => {
                        replicas.served(index);
                        served = Some(v);
                    }
                    Err(e) => replicas.read_failed(index, &e),
                }
            }
        }
        match served {
            Some(v) => Ok(v),
            None => {
                if let Some(replicas) = &$backend.replicas {
                    replicas.primary_read();
                }
                with_retry!($backend, |$conn| $body)
            }
        }
    }};
}
pub(crate) use with_read;

/// How long a request waits for a pooled connection when all are busy.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection may take to be established, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[async_trait]
impl Backend for PgBackend {
    async fn existing(&self, keys: &[String], with_vectors: bool) -> Result<HashMap<String, Existing>> {
        self.existing_impl(keys, with_vectors).await
    }

    async fn write_batch(&self, docs: Vec<NewDocument>, checkpoint: Option<&str>) -> Result<Written> {
        self.write_batch_impl(docs, checkpoint).await
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<BatchReport>> {
        self.checkpoint_impl(name).await
    }

    async fn forget_checkpoints(&self, prefix: &str) -> Result<u64> {
        self.forget_checkpoints_impl(prefix).await
    }

    async fn insert_new(&self, rows: &[crate::document::DocumentRef<'_>]) -> Result<crate::document::BatchReport> {
        self.insert_new_impl(rows).await
    }

    async fn get(&self, id: i64, with_embedding: bool) -> Result<Option<Document>> {
        self.get_impl(id, with_embedding).await
    }

    async fn get_by_key(&self, key: &str, with_embedding: bool) -> Result<Option<Document>> {
        self.get_by_key_impl(key, with_embedding).await
    }

    async fn update(&self, id: i64, patch: &DocumentPatch, embedding: Option<Vec<f32>>) -> Result<Option<Document>> {
        self.update_impl(id, patch, embedding).await
    }

    async fn delete(&self, id: i64) -> Result<bool> {
        let mut conn = self.checkout().await?;
        let stmt = conn.statement(&self.sql.delete, &[Type::INT8]).await?;
        crate::gate::commit_point()?;
        let n = conn.execute(&stmt, &[&id]).await?;
        Ok(n == 1)
    }

    async fn search(
        &self,
        query: SearchQuery<'_>,
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Result<Vec<SearchHit>> {
        self.search_impl(query, opts, exclude).await
    }

    async fn count(&self, filter: &crate::filter::Filter) -> Result<u64> {
        self.count_impl(filter).await
    }

    async fn delete_where(&self, filter: &crate::filter::Filter) -> Result<u64> {
        self.delete_where_impl(filter).await
    }

    async fn explain(&self, query: SearchQuery<'_>, opts: &SearchOptions) -> Result<String> {
        self.explain_impl(query, opts).await
    }

    async fn list(
        &self,
        after_id: i64,
        limit: usize,
        with_embedding: bool,
        filter: &crate::filter::Filter,
    ) -> Result<Vec<Document>> {
        self.list_impl(after_id, limit, with_embedding, filter).await
    }

    async fn stats(&self) -> Result<StorageStats> {
        self.stats_impl().await
    }

    async fn create_index(&self, spec: &IndexSpec) -> Result<IndexInfo> {
        self.create_index_impl(spec).await
    }

    async fn drop_index(&self) -> Result<bool> {
        self.drop_index_impl().await
    }

    async fn rebuild_index(&self, concurrently: bool) -> Result<IndexInfo> {
        self.rebuild_index_impl(concurrently).await
    }

    async fn analyze(&self) -> Result<()> {
        let conn = self.checkout().await?;
        conn.batch_execute(&format!("ANALYZE {}", self.table.quoted())).await?;
        // The text leg's statistics come from what ANALYZE just wrote.
        self.text_stats.set(text_stats::read(&conn, &self.table).await?);
        Ok(())
    }

    async fn sample_vectors(&self, n: usize) -> Result<Vec<(i64, Vec<f32>)>> {
        self.sample_vectors_impl(n).await
    }

    async fn set_tuned(&self, tuned: Option<&crate::backend::TunedSettings>) -> Result<IndexInfo> {
        self.set_tuned_impl(tuned).await
    }

    async fn close(&self) -> Result<()> {
        if let Some(replicas) = &self.replicas {
            replicas.close().await;
        }
        pool::close(&self.pool, &self.health).await;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        with_retry!(self, |conn| {
            conn.query_one(&self.sql.ping, &[]).await?;
            Ok(())
        })
    }

    fn pool(&self) -> Option<crate::backend::PoolStats> {
        let st = self.pool.state();
        Some(crate::backend::PoolStats {
            max_size: self.max_size,
            connections: st.connections,
            idle: st.idle_connections,
            waited: st.statistics.get_waited,
            timed_out: st.statistics.get_timed_out,
        })
    }

    async fn after_write(&self) -> Option<crate::position::WritePosition> {
        let replicas = self.replicas.as_ref()?;
        let position = async { replicas::insert_position(&*self.checkout().await?).await };
        match position.await {
            Ok(p) => {
                replicas.wrote_at(p);
                Some(crate::position::WritePosition::from_u64(p))
            }
            Err(e) => {
                // The write committed, but where it is cannot be told: reads go to the primary
                // until a later write's position is read.
                tracing::warn!(error = %e, "cannot read the write position; reads go to the primary until the next write");
                replicas.primary_only();
                None
            }
        }
    }

    fn write_position(&self) -> Option<crate::position::WritePosition> {
        self.replicas.as_ref()?.write_position()
    }

    fn replication(&self) -> Option<crate::backend::ReplicationStats> {
        Some(self.replicas.as_ref()?.stats())
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}
