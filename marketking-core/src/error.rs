//! The one error type of the crate.

use std::time::Duration;

/// A `Result` whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in MarketKing.
///
/// Callers can act on the variants: bad input names the field, a dimension mismatch carries both
/// numbers, a rate limit carries the server's retry-after and not-found carries the id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of the input is invalid; nothing was written.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field, for example `title` or `options.k`.
        field: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A vector has the wrong number of dimensions.
    #[error("dimension mismatch: expected {expected} dimensions, got {actual}")]
    DimensionMismatch {
        /// What the store (or embedder) is configured for.
        expected: usize,
        /// What was given.
        actual: usize,
    },

    /// No document has this id.
    #[error("document {id} not found")]
    NotFound {
        /// The id that was asked for.
        id: i64,
    },

    /// No document has this caller key.
    #[error("document with key {key:?} not found")]
    KeyNotFound {
        /// The key that was asked for.
        key: String,
    },

    /// The write conflicts with existing data (for example a duplicate key inside one batch).
    #[error("conflict: {reason}")]
    Conflict {
        /// What conflicted.
        reason: String,
    },

    /// The configuration is invalid.
    #[error("invalid configuration {field}: {reason}")]
    Config {
        /// The setting, for example `table` or `DATABASE_URL`.
        field: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The table was created for another embedding model or dimension count.
    #[error(
        "table {table} was created for model {stored_model:?} with {stored_dimensions} dimensions, \
         but the embedder is {model:?} with {dimensions} dimensions; use another table or re-embed"
    )]
    SchemaMismatch {
        /// The table name.
        table: String,
        /// Model recorded in the table's metadata.
        stored_model: String,
        /// Dimensions recorded in the table's metadata.
        stored_dimensions: usize,
        /// Model of the configured embedder.
        model: String,
        /// Dimensions of the configured embedder.
        dimensions: usize,
    },

    /// The pgvector extension is not available on the server.
    #[error(
        "the PostgreSQL `vector` extension (pgvector) is not installed on the server: {detail}. \
         Install it (for example `bash scripts/install-pgvector.sh`, or your distribution's \
         postgresql-NN-pgvector package) and run `CREATE EXTENSION vector` as a superuser"
    )]
    ExtensionMissing {
        /// What the server said.
        detail: String,
    },

    /// The embedding service asked us to slow down and retries were exhausted.
    #[error("embedding service rate-limited the request{}", retry_after.map(|d| format!(" (retry after {:.1}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        /// How long the service asked us to wait, when it said.
        retry_after: Option<Duration>,
    },

    /// The embedder failed (network, protocol, authentication, malformed response...).
    #[error("embedder error: {message}")]
    Embedder {
        /// What went wrong, without secrets.
        message: String,
        /// HTTP status, when the embedder is remote and answered.
        status: Option<u16>,
    },

    /// The store has no embedder (`MARKETKING_EMBEDDER=none`, builder `no_embedder`): it holds
    /// vectors of an external model, so text cannot be embedded. Search by vector, or give
    /// documents their embeddings.
    #[error(
        "this store has no embedder (it holds vectors of {model:?} computed elsewhere): pass embeddings \
         with the documents and search by vector, or configure an embedder"
    )]
    NoEmbedder {
        /// The external model the store is labelled with.
        model: String,
    },

    /// No background job with this id (or it is past its retention).
    #[error("no job with id {id:?}")]
    JobNotFound {
        /// The id asked for.
        id: String,
    },

    /// A database error.
    #[error("database error: {message}")]
    Database {
        /// The server's or driver's message.
        message: String,
        /// SQLSTATE code, when the server sent one.
        code: Option<String>,
        /// The driver's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The storage cannot be reached right now: the server is down or restarting, the
    /// connection was lost, or no connection could be had in time. Worth retrying after
    /// `retry_after`. A read that failed this way was already retried once on a fresh
    /// connection; a write that failed this way was rolled back, unless the connection was
    /// lost while its commit was in flight.
    #[error("storage unavailable: {message}")]
    Unavailable {
        /// What happened, without secrets.
        message: String,
        /// A sensible wait before retrying.
        retry_after: Duration,
        /// The driver's error (refused, reset, closed...), when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The write was cancelled (its [`CommitGate`](crate::CommitGate) was cancelled) before it
    /// reached its commit: nothing was written.
    #[error("cancelled before the write committed; nothing was written")]
    Cancelled,

    /// A cache backend failed. The store never returns this from a call (cache failures are
    /// logged and counted); it is returned by [`Cache`](crate::Cache) implementations.
    #[error("cache error: {0}")]
    Cache(String),

    /// Local file or I/O error (embedded store).
    #[error("storage error: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// The underlying error (SQLite, I/O), when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The embedded store's file is open for writing in another process (or another store in
    /// this one); it allows one writing process at a time. Read-only stores
    /// ([`read_only`](crate::VectorStoreBuilder::read_only)) may share it.
    #[error(
        "the embedded store {} is already open {}: it allows one writing process at a time (reading \
         it read-only still works). Close the other user, or use PostgreSQL (DATABASE_URL) for shared writes",
        path.display(),
        match pid { Some(p) => format!("in process {p}"), None => "in another process".to_string() }
    )]
    Locked {
        /// The store file.
        path: std::path::PathBuf,
        /// The process holding it, when it said.
        pid: Option<u32>,
    },

    /// The store was closed ([`VectorStore::close`](crate::VectorStore::close)): nothing was
    /// done. Open a new store to go on.
    #[error("the store is closed")]
    Closed,

    /// The operation does not exist on this backend (for example IVFFlat indexes on the
    /// embedded store, which builds HNSW only).
    #[error("unsupported: {operation}")]
    Unsupported {
        /// What was asked, and why it is not available.
        operation: String,
    },

    /// A read-only open found a file that this release would first have to migrate (or
    /// initialise, `found` 0); a read-only store never writes. Open it once for writing.
    #[error(
        "{location} has schema version {found} and needs migrating to {current}, which a read-only \
         open never does; open it once for writing first"
    )]
    NeedsMigration {
        /// The file.
        location: String,
        /// The version it records (0: none, a new or empty file).
        found: i64,
        /// The version this release uses.
        current: i64,
    },

    /// The table or file was written by a newer release of MarketKing than this one.
    #[error(
        "{location} has schema version {found}, newer than this release understands ({supported}); upgrade MarketKing"
    )]
    SchemaTooNew {
        /// The table or file.
        location: String,
        /// The version it records.
        found: i64,
        /// The newest version this release writes.
        supported: i64,
    },
}

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput { field: field.into(), reason: reason.into() }
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { field: field.into(), reason: reason.into() }
    }

    /// True for errors caused by the caller's input (4xx in HTTP terms).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidInput { .. }
                | Error::DimensionMismatch { .. }
                | Error::NotFound { .. }
                | Error::KeyNotFound { .. }
                | Error::JobNotFound { .. }
                | Error::Conflict { .. }
                | Error::Unsupported { .. }
        )
    }
}

/// How long a client should wait before retrying when the storage is unavailable.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Error {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable { message: message.into(), retry_after: UNAVAILABLE_RETRY_AFTER, source: None }
    }

    /// [`Error::Storage`] without a cause.
    pub(crate) fn storage(message: impl Into<String>) -> Self {
        Error::Storage { message: message.into(), source: None }
    }

    /// [`Error::Storage`] with its cause.
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    pub(crate) fn storage_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Storage { message: message.into(), source: Some(source.into()) }
    }

    /// True when the storage could not be reached (see [`Error::Unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

/// `error: source: source...` of an error.
#[cfg(any(feature = "openai", feature = "postgres"))]
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    with_causes(e.to_string(), e.source())
}

/// `text: source: source...`, each cause once: drivers often repeat their cause in their own
/// text, and a cause already in `text` is not added again.
#[cfg(any(feature = "openai", feature = "postgres"))]
pub(crate) fn with_causes(mut text: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

/// SQLSTATEs that mean "this connection or server is going away / not ready", not "this query is
/// wrong": connection exceptions (class 08), admin and crash shutdown, server starting up, too
/// many connections.
#[cfg(feature = "postgres")]
fn unavailable_state(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
                return Error::Conflict { reason: db.detail().unwrap_or(db.message()).to_string() };
            }
            let message = db.message().to_string();
            if unavailable_state(db.code().code()) {
                return Error::Unavailable {
                    message: format!("the database server said: {message}"),
                    retry_after: UNAVAILABLE_RETRY_AFTER,
                    source: Some(Box::new(e)),
                };
            }
            let code = Some(db.code().code().to_string());
            return Error::Database { message, code, source: Some(Box::new(e)) };
        }
        // The driver's own text names the kind ("error performing TLS handshake"); the reason
        // (refused, certificate not trusted...) is in the source chain, kept as the source.
        // None of these carry the connection string. A closed connection or a socket error is
        // the server (or the network) going away; anything else (a value that does not decode,
        // a protocol error) is not.
        let mut io = e.is_closed();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            io |= c.is::<std::io::Error>();
            cause = c.source();
        }
        let message = e.to_string();
        match io {
            true => Error::Unavailable { message, retry_after: UNAVAILABLE_RETRY_AFTER, source: Some(Box::new(e)) },
            false => Error::Database { message, code: None, source: Some(Box::new(e)) },
        }
    }
}

#[cfg(feature = "postgres")]
impl From<bb8::RunError<Error>> for Error {
    fn from(e: bb8::RunError<Error>) -> Self {
        match e {
            bb8::RunError::User(e) => e,
            bb8::RunError::TimedOut => Error::unavailable("timed out waiting for a database connection"),
        }
    }
}

#[cfg(feature = "embedded")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage { message: "SQLite failed".into(), source: Some(Box::new(e)) }
    }
}
