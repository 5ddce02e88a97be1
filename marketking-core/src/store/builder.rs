//! [`VectorStoreBuilder`]: configuration from code and from the environment.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, MemoryCache};
use crate::document::{out_of_range, EF_SEARCH_RANGE, PROBES_RANGE};

/// Text search configuration of new tables and files.
pub const DEFAULT_TEXT_CONFIG: &str = "english";
use crate::embedder::Embedder;
use crate::error::{Error, Result};

use super::select::EmbedderChoice;
use super::VectorStore;

/// Where documents live.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageConfig {
    /// PostgreSQL + pgvector.
    Postgres {
        /// Connection URL or key=value string (`postgres://user:pass@host/db?sslmode=require`).
        url: String,
        /// Table name (validated identifier, optionally `schema.table`).
        table: String,
        /// Pool size, 1..=100.
        pool_size: u32,
    },
    /// The embedded single-file store.
    Embedded {
        /// Path of the database file.
        path: PathBuf,
    },
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never print the URL: it may hold a password.
            StorageConfig::Postgres { table, pool_size, .. } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("table", table)
                .field("pool_size", pool_size)
                .finish(),
            StorageConfig::Embedded { path } => f.debug_struct("Embedded").field("path", path).finish(),
        }
    }
}

/// Default embedded database file.
pub const DEFAULT_DB_PATH: &str = "marketking.db";
/// Default table name (the seed design's).
pub const DEFAULT_TABLE: &str = "embeddings";
/// Default pool size: small, since each search holds a connection for about a millisecond.
pub const DEFAULT_POOL_SIZE: u32 = 8;
/// Default lag bound of read replicas: one further behind serves no reads until it catches up.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) database_url: Option<String>,
    pub(crate) db_path: Option<PathBuf>,
    /// Set by [`VectorStoreBuilder::embedded`]: the file wins over any database URL.
    pub(crate) embedded_only: bool,
    /// [`VectorStoreBuilder::read_only`]: open the embedded file for reading only.
    pub(crate) read_only: bool,
    /// Text search configuration of new tables (`english`, `simple`).
    pub(crate) text_config: String,
    /// PostgreSQL: build and use the RUM full-text index when the server has `rum`.
    pub(crate) rum: bool,
    pub(crate) table: String,
    pub(crate) pool_size: u32,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    pub(crate) cache: Option<Arc<dyn Cache>>,
    pub(crate) redis_url: Option<String>,
    pub(crate) openai_key: Option<String>,
    pub(crate) openai_base_url: Option<String>,
    pub(crate) openai_model: Option<String>,
    pub(crate) openai_dimensions: Option<usize>,
    /// Which embedder `from_env` asked for (`MARKETKING_EMBEDDER`), if any.
    pub(crate) embedder_choice: Option<EmbedderChoice>,
    /// Set by `from_env`: the default selection may look for an installed local model. A
    /// builder used from code alone never reads the file system for one.
    pub(crate) discover_local: bool,
    /// `MARKETKING_MODEL_DIR` or `local_model(path)`.
    pub(crate) local_model: Option<PathBuf>,
    /// The setting errors about `local_model` name: the variable when it came from there.
    pub(crate) local_model_field: &'static str,
    /// Set by the builder or the environment; `None` leaves it to the index's tuning, then
    /// [`DEFAULT_EF_SEARCH`](crate::DEFAULT_EF_SEARCH).
    pub(crate) ef_search: Option<u32>,
    pub(crate) probes: Option<u32>,
    pub(crate) result_ttl: Duration,
    pub(crate) cache_results: bool,
    /// Read replicas (PostgreSQL) and their lag bound.
    pub(crate) replicas: crate::backend::ReplicaConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            db_path: None,
            embedded_only: false,
            read_only: false,
            text_config: DEFAULT_TEXT_CONFIG.into(),
            rum: true,
            table: DEFAULT_TABLE.into(),
            pool_size: DEFAULT_POOL_SIZE,
            embedder: None,
            cache: None,
            redis_url: None,
            openai_key: None,
            openai_base_url: None,
            openai_model: None,
            openai_dimensions: None,
            embedder_choice: None,
            discover_local: false,
            local_model: None,
            local_model_field: "local_model",
            ef_search: None,
            probes: None,
            result_ttl: Duration::from_secs(300),
            cache_results: true,
            replicas: crate::backend::ReplicaConfig { urls: Vec::new(), max_lag: DEFAULT_MAX_REPLICA_LAG },
        }
    }
}

/// Builds a [`VectorStore`]. `build()` validates everything and connects.
///
/// With nothing set the store is embedded (`./marketking.db`), embeds with the offline
/// [`HashingEmbedder`](crate::HashingEmbedder) and caches in process: no services, no key.
#[derive(Default)]
pub struct VectorStoreBuilder {
    pub(crate) config: Config,
}

impl std::fmt::Debug for VectorStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.debug_struct("VectorStoreBuilder")
            .field("database_url", &c.database_url.as_ref().map(|_| "<redacted>"))
            .field("db_path", &c.db_path)
            .field("read_only", &c.read_only)
            .field("table", &c.table)
            .field("pool_size", &c.pool_size)
            .field("embedder", &c.embedder)
            .field("cache", &c.cache)
            .field("redis_url", &c.redis_url.as_ref().map(|_| "<redacted>"))
            .field("openai_key", &c.openai_key.as_ref().map(|_| "<redacted>"))
            .field("openai_base_url", &c.openai_base_url)
            .field("ef_search", &c.ef_search)
            .field("probes", &c.probes)
            .field("replicas", &c.replicas)
            .finish_non_exhaustive()
    }
}

/// Read replicas a store routes to, at most.
const MAX_READ_REPLICAS: usize = 16;

/// A list of connection URLs, separated by white space or by commas before a `postgres://` or
/// `postgresql://` (a comma inside a URL separates the hosts of a multi-host URL).
fn split_urls(v: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for word in v.split_whitespace() {
        let mut current = String::new();
        for piece in word.split(',').filter(|p| !p.is_empty()) {
            let starts_url = piece.starts_with("postgres://") || piece.starts_with("postgresql://");
            if starts_url && !current.is_empty() {
                urls.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(',');
            }
            current.push_str(piece);
        }
        if !current.is_empty() {
            urls.push(current);
        }
    }
    urls
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match env(name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|e| Error::config(name, format!("{v:?} is not valid: {e}"))),
    }
}

impl VectorStoreBuilder {
    /// Reads the environment: `DATABASE_URL`, `REDIS_URL`, `OPENAI_API_KEY`, `OPENAI_BASE_URL`,
    /// `MARKETKING_TABLE`, `MARKETKING_POOL_SIZE`, `MARKETKING_DB_PATH`,
    /// `MARKETKING_EMBEDDING_MODEL`, `MARKETKING_EMBEDDING_DIMENSIONS`, `MARKETKING_EF_SEARCH`,
    /// `MARKETKING_PROBES`, `MARKETKING_CACHE_TTL_SECS`, `MARKETKING_CACHE`
    /// (`redis`, `memory` or `none`), `MARKETKING_EMBEDDER` (`openai`, `local`, `hash` or
    /// `none`) and `MARKETKING_MODEL_DIR`. Values already set on the builder win over the
    /// environment.
    ///
    /// The embedder, unless one is set: OpenAI-compatible when `OPENAI_API_KEY` or
    /// `OPENAI_BASE_URL` is set; else the local model (feature `local`) when one is installed
    /// (`MARKETKING_MODEL_DIR`, the Hugging Face cache, MarketKing's model cache); else the
    /// lexical [`HashingEmbedder`](crate::HashingEmbedder), with one warning saying how to get a semantic model.
    pub fn from_env(mut self) -> Result<Self> {
        let c = &mut self.config;
        c.discover_local = true;
        if c.embedder_choice.is_none() {
            c.embedder_choice = env("MARKETKING_EMBEDDER").map(|v| EmbedderChoice::parse(&v)).transpose()?;
        }
        if c.local_model.is_none() {
            c.local_model = env("MARKETKING_MODEL_DIR").map(PathBuf::from);
            if c.local_model.is_some() {
                c.local_model_field = "MARKETKING_MODEL_DIR";
            }
        }
        if c.database_url.is_none() {
            c.database_url = env("DATABASE_URL");
        }
        if c.redis_url.is_none() {
            c.redis_url = env("REDIS_URL");
        }
        if c.replicas.urls.is_empty() {
            c.replicas.urls = env("DATABASE_READ_URLS").map(|v| split_urls(&v)).unwrap_or_default();
        }
        if let Some(ms) = env_parse::<u64>("MARKETKING_MAX_REPLICA_LAG_MS")? {
            c.replicas.max_lag = Duration::from_millis(ms);
        }
        if c.openai_key.is_none() {
            c.openai_key = env("OPENAI_API_KEY");
        }
        if c.openai_base_url.is_none() {
            c.openai_base_url = env("OPENAI_BASE_URL");
        }
        if c.openai_model.is_none() {
            c.openai_model = env("MARKETKING_EMBEDDING_MODEL");
        }
        if c.openai_dimensions.is_none() {
            c.openai_dimensions = env_parse("MARKETKING_EMBEDDING_DIMENSIONS")?;
        }
        if c.db_path.is_none() {
            c.db_path = env("MARKETKING_DB_PATH").map(PathBuf::from);
        }
        if let Some(t) = env("MARKETKING_TABLE") {
            c.table = t;
        }
        if let Some(t) = env("MARKETKING_TEXT_CONFIG") {
            c.text_config = t;
        }
        match env("MARKETKING_RUM").as_deref() {
            None => {}
            Some("on") => c.rum = true,
            Some("off") => c.rum = false,
            Some(other) => return Err(Error::config("MARKETKING_RUM", format!("must be on or off, got {other:?}"))),
        }
        if let Some(p) = env_parse("MARKETKING_POOL_SIZE")? {
            c.pool_size = p;
        }
        if let Some(e) = env_parse("MARKETKING_EF_SEARCH")? {
            c.ef_search = Some(e);
        }
        if let Some(p) = env_parse("MARKETKING_PROBES")? {
            c.probes = Some(p);
        }
        if let Some(t) = env_parse::<u64>("MARKETKING_CACHE_TTL_SECS")? {
            c.result_ttl = Duration::from_secs(t);
        }
        if c.cache.is_none() {
            match env("MARKETKING_CACHE").as_deref() {
                None => {}
                Some("none") => c.cache = Some(Arc::new(crate::cache::NoCache)),
                Some("memory") => c.cache = Some(Arc::new(MemoryCache::default())),
                Some("redis") if c.redis_url.is_some() => {}
                Some("redis") => return Err(Error::config("MARKETKING_CACHE", "is redis but REDIS_URL is not set")),
                Some(other) => {
                    return Err(Error::config(
                        "MARKETKING_CACHE",
                        format!("must be redis, memory or none, got {other:?}"),
                    ))
                }
            }
        }
        Ok(self)
    }

    /// Sends searches and reads (`get`, `list`, `count`, `stats`) to these PostgreSQL
    /// streaming-replication standbys of the primary (same URL forms as
    /// [`database_url`](Self::database_url)), round robin among those in rotation; writes and
    /// index changes go to the primary. A replica is in rotation while it answers and is no
    /// further behind than [`max_replica_lag`](Self::max_replica_lag); a read it fails is
    /// served by the primary. This store's reads always see its own writes (a replica that has
    /// not replayed them yet is passed over). Environment: `DATABASE_READ_URLS`, separated by
    /// commas or spaces.
    pub fn read_replicas<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.replicas.urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// The lag bound of read replicas (default 5 s; environment
    /// `MARKETKING_MAX_REPLICA_LAG_MS`): a replica further behind the primary serves no reads
    /// until it catches up.
    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.config.replicas.max_lag = lag;
        self
    }

    /// Uses PostgreSQL at `url` (key=value or URL form; `sslmode=require` turns on TLS).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.config.database_url = Some(url.into());
        self
    }

    /// Uses the embedded store at `path` (ignored when a database URL is set).
    pub fn db_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.db_path = Some(path.into());
        self
    }

    /// Uses the embedded store at `path` even when a database URL is set (on the builder or
    /// in `DATABASE_URL`): an explicit choice of the file, as a command-line flag is.
    pub fn embedded(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.db_path = Some(path.into());
        self.config.embedded_only = true;
        self
    }

    /// Opens the embedded store for reading only (default false), so it can be read while
    /// another process (the HTTP service, an import) has it open for writing.
    ///
    /// A read-only store opens the SQLite file read-only and takes no process lock, never
    /// creates, migrates or writes the file (a missing file is [`Error::Config`] on `db_path`,
    /// one that needs migrating [`Error::NeedsMigration`]), and answers every write with
    /// [`Error::Unsupported`] naming it. Before every search or count it asks SQLite whether
    /// another process has committed (`data_version`), so a long-lived reader sees other
    /// processes' writes. Nothing is loaded at open: the first search at a file version reads
    /// the file once for that search alone, a second one (or a count) loads the memory index,
    /// which serves until the file changes; either reads every vector once. It caches no search
    /// results (another process's write could not invalidate them); query embeddings are cached
    /// as usual. PostgreSQL is shared by design: there this option is a configuration error.
    pub fn read_only(mut self, on: bool) -> Self {
        self.config.read_only = on;
        self
    }

    /// Text search configuration of the full-text leg: `english` (default; stemming, stop
    /// words) or `simple` (words as written); on PostgreSQL any configuration of the server.
    /// Recorded when the table (or file) is created; opening it with another one fails.
    pub fn text_search_config(mut self, name: impl Into<String>) -> Self {
        self.config.text_config = name.into();
        self
    }

    /// PostgreSQL: whether the full-text leg uses a RUM index (default true; `MARKETKING_RUM`
    /// `on` / `off`). With the server's `rum` extension (Debian's `postgresql-NN-rum`) the store
    /// creates the extension (superuser) and the index `<table>_tsv_rum_idx`, and text and
    /// hybrid searches rank their candidates inside it; without it, or off, they rank from the
    /// GIN index. The index costs writes (it keeps every lexeme's positions): turn it off for
    /// write-heavy tables that rarely search by text. Off never drops an existing index.
    pub fn rum_index(mut self, on: bool) -> Self {
        self.config.rum = on;
        self
    }

    /// Table name (default `embeddings`); letters, digits and `_`, optionally `schema.table`.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.config.table = table.into();
        self
    }

    /// Connection pool size (1..=100, default 8).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.config.pool_size = size;
        self
    }

    /// Uses this embedder (default: OpenAI when a key or base URL is set, else [`HashingEmbedder`](crate::HashingEmbedder);
    /// with [`from_env`](Self::from_env) an installed local model comes before the hashing one).
    pub fn embedder(mut self, embedder: impl Embedder + 'static) -> Self {
        self.config.embedder = Some(Arc::new(embedder));
        self
    }

    /// Embeds with the local model in the folder `path` (sentence-transformers layout; feature
    /// `local`). Loaded by `build()`.
    pub fn local_model(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.local_model = Some(path.into());
        self.config.embedder_choice = Some(EmbedderChoice::Local);
        self
    }

    /// No embedder: the store holds vectors of the external model `model` (`dimensions`
    /// floats) and is labelled with it. Documents need their embeddings; search by vector.
    /// A text search fails with [`Error::NoEmbedder`].
    pub fn no_embedder(mut self, model: impl Into<String>, dimensions: usize) -> Self {
        self.config.openai_model = Some(model.into());
        self.config.openai_dimensions = Some(dimensions);
        self.config.embedder_choice = Some(EmbedderChoice::None);
        self
    }

    /// Uses this cache (default: Redis when a URL is set, else [`MemoryCache`]).
    pub fn cache(mut self, cache: impl Cache + 'static) -> Self {
        self.config.cache = Some(Arc::new(cache));
        self
    }

    /// Uses Redis at `url` as the cache.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }

    /// Default HNSW `ef_search` (1..=1000). Unset, searches use the value the index was tuned
    /// to ([`VectorStore::tune_recall`](crate::VectorStore::tune_recall)), else
    /// [`DEFAULT_EF_SEARCH`](crate::DEFAULT_EF_SEARCH) (100).
    pub fn ef_search(mut self, ef: u32) -> Self {
        self.config.ef_search = Some(ef);
        self
    }

    /// Default IVFFlat `probes` (1..=10000). Unset, searches use the tuned value, else
    /// [`DEFAULT_PROBES`](crate::DEFAULT_PROBES) (10).
    pub fn probes(mut self, probes: u32) -> Self {
        self.config.probes = Some(probes);
        self
    }

    /// How long cached search results live (default 5 minutes). Writes invalidate them sooner.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.config.result_ttl = ttl;
        self
    }

    /// Whether search results are cached (default true). Query embeddings are always cached.
    pub fn cache_results(mut self, on: bool) -> Self {
        self.config.cache_results = on;
        self
    }

    /// The storage this builder will use.
    pub fn storage(&self) -> StorageConfig {
        let c = &self.config;
        match &c.database_url {
            Some(url) if !c.embedded_only => {
                StorageConfig::Postgres { url: url.clone(), table: c.table.clone(), pool_size: c.pool_size }
            }
            _ => StorageConfig::Embedded { path: c.db_path.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH)) },
        }
    }

    /// Validates the configuration, connects (or opens the file), runs migrations and returns
    /// the store.
    pub async fn build(self) -> Result<VectorStore> {
        let c = &self.config;
        if c.pool_size == 0 || c.pool_size > 100 {
            return Err(Error::config("pool_size", format!("must be between 1 and 100, got {}", c.pool_size)));
        }
        if let Some(reason) = c.ef_search.and_then(|e| out_of_range(e, &EF_SEARCH_RANGE)) {
            return Err(Error::config("ef_search", reason));
        }
        if let Some(reason) = c.probes.and_then(|p| out_of_range(p, &PROBES_RANGE)) {
            return Err(Error::config("probes", reason));
        }
        if !c.replicas.urls.is_empty() && !matches!(self.storage(), StorageConfig::Postgres { .. }) {
            return Err(Error::config(
                "DATABASE_READ_URLS",
                "read replicas need a PostgreSQL primary (DATABASE_URL); the embedded store has none",
            ));
        }
        if c.replicas.urls.len() > MAX_READ_REPLICAS {
            return Err(Error::config(
                "DATABASE_READ_URLS",
                format!("at most {MAX_READ_REPLICAS} read replicas, got {}", c.replicas.urls.len()),
            ));
        }
        if c.replicas.max_lag.is_zero() || c.replicas.max_lag > Duration::from_secs(24 * 3600) {
            return Err(Error::config("max_replica_lag", "must be between 1 ms and 24 hours"));
        }
        if c.read_only && matches!(self.storage(), StorageConfig::Postgres { .. }) {
            return Err(Error::config(
                "read_only",
                "applies to the embedded store only; PostgreSQL serves readers and writers in many processes at once",
            ));
        }
        let embedder = super::select::make_embedder(&self.config).await?;
        let cache = self.make_cache()?;
        VectorStore::open(self.config.clone(), self.storage(), embedder, cache).await
    }

    fn make_cache(&self) -> Result<Arc<dyn Cache>> {
        let c = &self.config;
        if let Some(cache) = &c.cache {
            return Ok(cache.clone());
        }
        if let Some(url) = &c.redis_url {
            #[cfg(feature = "redis")]
            return Ok(Arc::new(crate::RedisCache::new(url)?));
            #[cfg(not(feature = "redis"))]
            {
                let _ = url;
                return Err(Error::config("REDIS_URL", "is set but the `redis` feature is off"));
            }
        }
        Ok(Arc::new(MemoryCache::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::split_urls;

    #[test]
    fn read_urls_split_at_spaces_and_at_commas_before_a_url_only() {
        assert_eq!(
            split_urls("postgres://a:1/db,postgresql://b/db  postgres://h1,h2:5433/db,"),
            ["postgres://a:1/db", "postgresql://b/db", "postgres://h1,h2:5433/db"]
        );
        assert!(split_urls(" , ").is_empty());
    }
}
