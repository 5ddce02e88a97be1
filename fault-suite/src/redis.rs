//! A redis-server of the suite's own on a free port (never the shared one on 6379), which the
//! scenarios kill, freeze and restart, plus a minimal RESP client for the few commands sent to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::procs::{free_port, wait_until, Proc};

/// The suite's Redis. Dropping it kills the server.
#[derive(Debug)]
pub(crate) struct Redis {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    proc: Option<Proc>,
}

impl Redis {
    /// Starts `bin` (redis-server) with no persistence on a free port under `dir`.
    pub(crate) async fn start(bin: &Path, dir: &Path) -> Result<Redis> {
        std::fs::create_dir_all(dir)?;
        let mut r = Redis { bin: bin.to_path_buf(), dir: dir.to_path_buf(), port: free_port()?, proc: None };
        r.spawn().await?;
        Ok(r)
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut c = Command::new(&self.bin);
        c.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir);
        self.proc = Some(Proc::spawn("redis-server", c, &self.dir.join("redis.log"))?);
        wait_until("redis to answer PING", Duration::from_secs(10), || async {
            Ok(self.command(&["PING"]).await? == "+PONG")
        })
        .await?;
        Ok(())
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// kill -9: the port refuses connections until [`Redis::restart`].
    pub(crate) async fn kill(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.kill9().await?;
        }
        Ok(())
    }

    /// Starts a fresh (empty) server on the same port.
    pub(crate) async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.spawn().await
    }

    /// SIGSTOP or SIGCONT: a frozen Redis accepts TCP connections (the kernel does) but never
    /// answers, which is what a hung or partitioned host looks like to a client.
    pub(crate) fn signal(&mut self, sig: &str) -> Result<()> {
        match self.proc.as_mut() {
            Some(p) => p.signal(sig),
            None => bail!("redis is not running"),
        }
    }

    /// Sends one command on a new connection and returns the first line of the reply (plus the
    /// payload of a bulk string).
    pub(crate) async fn command(&self, args: &[&str]) -> Result<String> {
        let work = async {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).await?;
            let mut req = format!("*{}\r\n", args.len());
            for a in args {
                req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            s.write_all(req.as_bytes()).await?;
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).await?;
            let line = line.trim_end().to_string();
            if let Some(n) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf).await?;
                buf.truncate(n);
                return Ok::<_, anyhow::Error>(String::from_utf8_lossy(&buf).into_owned());
            }
            Ok(line)
        };
        tokio::time::timeout(Duration::from_secs(5), work).await.context("redis command timed out")?
    }
}
