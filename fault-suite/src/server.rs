//! The `marketking-http` release binary as a child process, and the `marketking` CLI.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::ctx::Ctx;
use crate::http::Http;
use crate::procs::{clean_env, free_port, Proc};

/// Where a server or CLI run keeps its documents.
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    /// PostgreSQL + pgvector, in `table` (`schema.table`).
    Pg {
        /// Connection URL.
        url: String,
        /// Table.
        table: String,
    },
    /// The embedded store file.
    Embedded(PathBuf),
}

/// The cache a server uses (`MARKETKING_CACHE`).
#[derive(Debug, Clone)]
pub(crate) enum Cache {
    /// `none`: every search reaches the storage.
    None,
    /// Redis at this URL.
    Redis(String),
}

/// How to start a server.
#[derive(Debug, Clone)]
pub(crate) struct ServerOpts {
    /// Name for logs.
    pub(crate) name: String,
    /// Storage.
    pub(crate) storage: Storage,
    /// Cache.
    pub(crate) cache: Cache,
    /// Extra flags (`--request-timeout 1`, ...).
    pub(crate) args: Vec<String>,
    /// Extra environment.
    pub(crate) env: Vec<(String, String)>,
}

impl ServerOpts {
    /// A server named `name` on `storage` with `cache` and default flags.
    pub(crate) fn new(name: &str, storage: Storage, cache: Cache) -> ServerOpts {
        ServerOpts { name: name.to_string(), storage, cache, args: Vec::new(), env: Vec::new() }
    }
}

/// A running server. Dropping it kills it.
#[derive(Debug)]
pub(crate) struct Server {
    /// Client with the API key.
    pub(crate) http: Http,
    proc: Proc,
}

fn storage_env(cmd: &mut Command, storage: &Storage) {
    match storage {
        Storage::Pg { url, table } => {
            cmd.env("DATABASE_URL", url).env("MARKETKING_TABLE", table);
        }
        Storage::Embedded(path) => {
            cmd.env("MARKETKING_DB_PATH", path);
        }
    }
}

impl Server {
    /// Starts the server on a free port and waits until `/healthz` answers.
    pub(crate) async fn start(ctx: &Ctx, opts: ServerOpts) -> Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new(&ctx.http_bin);
        clean_env(&mut cmd);
        storage_env(&mut cmd, &opts.storage);
        match &opts.cache {
            Cache::None => cmd.env("MARKETKING_CACHE", "none"),
            Cache::Redis(url) => cmd.env("MARKETKING_CACHE", "redis").env("REDIS_URL", url),
        };
        cmd.env("MARKETKING_API_KEYS", &ctx.api_key);
        cmd.envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // No rate limit: the load is bounded by the number of clients, not by the limiter.
        cmd.args(["--bind", &format!("127.0.0.1:{port}"), "--rate-limit", "0"]).args(&opts.args);
        let log = ctx.work.join(format!("{}.log", opts.name));
        let mut proc = Proc::spawn(&opts.name, cmd, &log)?;
        let http = Http::new(port, Some(ctx.api_key.clone()));
        let probe = http.clone().with_timeout(Duration::from_secs(2));
        let started = Instant::now();
        loop {
            if let Some(status) = proc.exited()? {
                bail!("{} exited with {status} at start-up:\n{}", opts.name, proc.log_tail(20));
            }
            if probe.get("/healthz").await.is_ok_and(|r| r.status == 200) {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{} did not answer /healthz within 60 s:\n{}", opts.name, proc.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Server { http, proc })
    }

    /// SIGTERM, then waits (at most `limit`) for the process to finish in-flight work and exit.
    pub(crate) async fn stop(mut self, limit: Duration) -> Result<ExitStatus> {
        self.proc.signal("TERM")?;
        match self.proc.wait_for(limit).await? {
            Some(status) => Ok(status),
            None => bail!("{} did not exit within {limit:?} of SIGTERM", self.proc.log().display()),
        }
    }

    /// The server's log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(self.proc.log()).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.proc.exited(), Ok(None))
    }

    /// The sum of the samples of metric `name` in `/metrics` (0 when absent).
    pub(crate) async fn metric(&self, name: &str) -> Result<f64> {
        let r = self.http.get("/metrics").await.map_err(|(k, m)| anyhow::anyhow!("/metrics: {k}: {m}"))?;
        let text = String::from_utf8_lossy(&r.body);
        Ok(text
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

/// A `marketking` command on `storage`, with the caller's environment cleaned.
pub(crate) fn cli(ctx: &Ctx, storage: &Storage) -> Command {
    let mut cmd = Command::new(&ctx.cli_bin);
    clean_env(&mut cmd);
    match storage {
        Storage::Pg { url, table } => cmd.args(["--database-url", url, "--table", table]),
        Storage::Embedded(path) => cmd.arg("--db-path").arg(path),
    };
    cmd
}

/// What a finished CLI run printed.
#[derive(Debug)]
pub(crate) struct CliOutput {
    /// Exit status.
    pub(crate) status: ExitStatus,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

/// Runs `marketking <args>` on `storage` to completion.
pub(crate) async fn run_cli(ctx: &Ctx, storage: &Storage, args: &[&str]) -> Result<CliOutput> {
    let out = cli(ctx, storage).args(args).stdin(std::process::Stdio::null()).output().await.context("marketking")?;
    Ok(CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Imports `file` into `storage` with the CLI, failing unless it exits 0.
pub(crate) async fn import(ctx: &Ctx, storage: &Storage, file: &Path) -> Result<String> {
    let path = file.to_string_lossy();
    let out = run_cli(ctx, storage, &["import", &path]).await?;
    if !out.status.success() {
        bail!("marketking import {path}: {}: {}", out.status, out.stderr.trim());
    }
    Ok(out.stdout)
}
