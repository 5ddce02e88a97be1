//! `marketking-http`: the REST service binary. Parses flags, opens the store from the
//! environment, and serves until SIGTERM/SIGINT, finishing in-flight requests.
// Nothing that came from a file, the network or storage may panic the tool: no unwrap, expect,
// unchecked indexing or explicit panic outside tests.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use marketking_core::VectorStore;
use marketking_http::{app, check_bind, ApiKeys, AppState, CorsOrigins, HttpConfig};

/// MarketKing HTTP service. The store comes from the environment (DATABASE_URL, REDIS_URL, ...).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "MARKETKING_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Comma-separated API keys, each at least 16 characters; every /v1 request then needs
    /// `Authorization: Bearer <key>`.
    #[arg(long, env = "MARKETKING_API_KEYS", hide_env_values = true, default_value = "")]
    api_keys: String,
    /// Allow a non-loopback bind address without API keys.
    #[arg(long, env = "MARKETKING_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,
    /// Requests per second per client (API key, or IP without keys); 0 = off.
    #[arg(long, env = "MARKETKING_RATE_LIMIT", default_value_t = marketking_http::DEFAULT_RATE_LIMIT)]
    rate_limit: u32,
    /// Where the rate limit is counted: `shared` (in Redis, across every instance using
    /// REDIS_URL; the default when REDIS_URL is set) or `process` (each instance on its own).
    #[arg(long, env = "MARKETKING_RATE_LIMIT_SCOPE", value_enum)]
    rate_limit_scope: Option<RateLimitScope>,
    /// Failed API-key attempts per second per client address (IPv6: per /64) before it is
    /// answered 429; 0 = off.
    #[arg(long, env = "MARKETKING_AUTH_FAILURE_LIMIT", default_value_t = marketking_http::auth::DEFAULT_AUTH_FAILURE_LIMIT)]
    auth_failure_limit: u32,
    /// Origin allowed by CORS, e.g. https://app.example (repeatable or comma-separated), or `*`
    /// alone for any origin; none by default.
    #[arg(long = "cors-origin", env = "MARKETKING_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "MARKETKING_BODY_LIMIT", default_value_t = marketking_http::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Per-request timeout in seconds.
    #[arg(long, env = "MARKETKING_REQUEST_TIMEOUT", default_value_t = 30)]
    request_timeout: u64,
    /// How long /readyz waits for the storage before answering 503, in milliseconds.
    #[arg(long, env = "MARKETKING_READINESS_TIMEOUT_MS", default_value_t = marketking_http::DEFAULT_READINESS_TIMEOUT.as_millis() as u64)]
    readiness_timeout_ms: u64,
    /// Background job workers in this process (0: jobs queued here run in `marketking worker`
    /// processes). Jobs go to MARKETKING_QUEUE_URL, else REDIS_URL's database 2, else stay in
    /// this process.
    #[arg(long, env = "MARKETKING_JOB_WORKERS", default_value_t = 1)]
    job_workers: usize,
    /// The directory whose files `POST /v1/jobs/import?path=...` may import (none by default).
    #[arg(long, env = "MARKETKING_IMPORT_DIR")]
    import_dir: Option<std::path::PathBuf>,
    /// Log lines as text, or as JSON objects (one per line, for log collectors).
    #[arg(long, env = "MARKETKING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--rate-limit-scope` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RateLimitScope {
    /// In Redis, shared by every instance.
    Shared,
    /// In this process.
    Process,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the SIGTERM and SIGINT handlers now, and returns what resolves on the first of them.
/// Installing them before the "listening" line matters: a signal that arrives before a handler
/// exists kills the process outright instead of shutting it down gracefully.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        [signal(SignalKind::terminate()), signal(SignalKind::interrupt())]
    };
    async move {
        #[cfg(unix)]
        {
            let [term, int] = signals.map(|s| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            });
            tokio::select! { _ = term => {}, _ = int => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received; finishing in-flight requests");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Colour only on a terminal: a log written to a file or a pipe keeps no escape codes.
    let args = Args::parse();
    let logs = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env());
    match args.log_format {
        // Colour only on a terminal: a log written to a file or a pipe keeps no escape codes.
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    let keys = match ApiKeys::parse(&args.api_keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(msg) = check_bind(&args.bind, &keys, args.allow_unauthenticated) {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
    let cors = match CorsOrigins::parse(&args.cors_origins) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.trim().is_empty());
    let shared_rate_limit = match (args.rate_limit_scope, redis_url) {
        (Some(RateLimitScope::Process), _) | (None, None) => None,
        (Some(RateLimitScope::Shared), None) => {
            eprintln!("error: MARKETKING_RATE_LIMIT_SCOPE is shared but REDIS_URL is not set");
            std::process::exit(1);
        }
        (_, Some(url)) => match marketking_core::RedisCache::new(&url) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        },
    };
    let config = HttpConfig {
        shared_rate_limit,
        api_keys: keys,
        rate_limit: args.rate_limit,
        auth_failure_limit: args.auth_failure_limit,
        cors,
        body_limit: args.body_limit,
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        readiness_timeout: Duration::from_millis(args.readiness_timeout_ms.max(1)),
        import_dir: args.import_dir.clone(),
    };
    let store = VectorStore::builder().from_env()?.build().await.context("opening the store")?;
    tracing::info!(
        backend = store.backend_kind(),
        embedder = store.model(),
        dimensions = store.dimensions(),
        keys = config.api_keys.len(),
        "store open"
    );
    let jobs = marketking_core::jobs::Jobs::builder(store.clone()).from_env()?.build().context("the job queue")?;
    if jobs.queue_kind() == "in-process" && args.job_workers == 0 {
        tracing::warn!("no job queue is shared (REDIS_URL unset) and --job-workers is 0: queued jobs will not run");
    }
    let workers = jobs.spawn_workers(args.job_workers);
    tracing::info!(queue = jobs.queue_kind(), workers = workers.len(), "job workers started");
    let service =
        app(AppState::new(store.clone(), config).with_jobs(jobs)).into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind(args.bind).await.with_context(|| format!("binding {}", args.bind))?;
    let shutdown = shutdown_signal();
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let served = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
    // Each worker finishes the chunk in hand (its result recorded) before the store closes.
    workers.stop().await;
    // In-flight requests are done: release the connections (or the file and its lock) now and
    // report a failure to do so, rather than leave it to the process exit.
    let closed = store.close().await.context("closing the store");
    served?;
    closed?;
    tracing::info!("store closed");
    Ok(())
}
