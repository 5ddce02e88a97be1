//! Child processes owned by the suite, killed when their guard drops (a failed scenario, an
//! error or a panic included), and small helpers to wait for conditions with a deadline.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

/// `<work>/pids`: every child's pid and name, one a line, so that `scripts/fault-suite.sh` can
/// still stop them if the suite itself is killed with SIGKILL (no destructor runs then).
static PID_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Sets the file where child pids are listed.
pub(crate) fn record_pids_in(path: PathBuf) {
    let _ = PID_FILE.set(path);
}

/// A running child process with its output in a log file. Dropping it kills it (SIGKILL).
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = OpenOptions::new().create(true).append(true).open(log).with_context(|| log.display().to_string())?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("child has no pid")?;
        if let Some(file) = PID_FILE.get() {
            let line = format!("{pid} {}\n", cmd.as_std().get_program().to_string_lossy());
            let _ =
                OpenOptions::new().create(true).append(true).open(file).and_then(|mut f| f.write_all(line.as_bytes()));
        }
        Ok(Proc { name: name.to_string(), child, pid, log: log.to_path_buf() })
    }

    /// Sends `signal` (a name such as `TERM`, `STOP`, `CONT`) if the process still runs.
    ///
    /// Goes through kill(1) because the workspace forbids `unsafe` (no libc::kill).
    pub(crate) fn signal(&mut self, signal: &str) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("{} has already exited", self.name);
        }
        let status = std::process::Command::new("kill").args(["-s", signal, &self.pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill -s {signal} {} ({}) failed", self.pid, self.name);
        }
        Ok(())
    }

    /// SIGKILL, then reaps the process.
    pub(crate) async fn kill9(&mut self) -> Result<ExitStatus> {
        self.child.start_kill().ok();
        Ok(self.child.wait().await?)
    }

    /// Waits for the process to exit, at most `limit`.
    pub(crate) async fn wait_for(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => Ok(None),
        }
    }

    /// The exit status if the process has exited.
    pub(crate) fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

/// The last `lines` lines of a text file (empty when unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` every 50 ms until it returns `Ok(true)`, failing after `limit`. This waits for a
/// condition (a port answering, rows committed), never for a guessed amount of time.
pub(crate) async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if check().await.unwrap_or(false) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Environment variables a child must not inherit from the caller's shell: the suite decides
/// which store, cache and embedder every child uses. The embedder is the hashing one: the
/// suite measures how the store rides out database and cache faults, and the local model's
/// CPU cost per query (~170 ms on 2 cores) would leave the pool half idle, so "every pooled
/// connection in use" could not be arranged.
pub(crate) fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let inherited = k.starts_with("MARKETKING_")
            || k.starts_with("OPENAI_")
            || k.starts_with("PG")
            || matches!(k.as_str(), "DATABASE_URL" | "REDIS_URL" | "RUST_LOG");
        if inherited {
            cmd.env_remove(&k);
        }
    }
    cmd.env("RUST_LOG", "warn").env("RUST_BACKTRACE", "0").env("MARKETKING_EMBEDDER", "hash");
}
