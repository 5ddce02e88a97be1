//! A throwaway PostgreSQL cluster of the suite's own, so that terminating backends and
//! restarting the server never touches the shared one on 5432 that other tests use.
//!
//! Built with the server's own binaries (`initdb`, `pg_ctl`); pgvector installed for that server
//! works in it too. initdb refuses to run as root, so as root the tools run as `postgres`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;
use tokio_postgres::{Client, NoTls};

use crate::procs::free_port;

/// The database the suite creates in its cluster.
const DB: &str = "mk";

/// A cluster in `<work>/pg`, listening on 127.0.0.1 at a free port. Dropping it stops the server.
#[derive(Debug)]
pub(crate) struct PgCluster {
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PgCluster {
    /// initdb, start, create the database and the `vector` extension.
    pub(crate) async fn create(work: &Path, bin: &Path) -> Result<PgCluster> {
        let root = work.join("pg");
        std::fs::create_dir_all(&root)?;
        let as_postgres = is_root();
        if as_postgres {
            // The work dir may be a 0700 mktemp dir: postgres must be able to reach its own.
            let status = std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root).status()?;
            if !status.success() {
                bail!("chown postgres {} failed", root.display());
            }
            open_up(work)?;
        }
        let mut pg = PgCluster {
            bin: bin.to_path_buf(),
            data: root.join("data"),
            log: root.join("postgres.log"),
            root,
            port: free_port()?,
            as_postgres,
            running: false,
        };
        let mut initdb = pg.tool("initdb");
        initdb.arg("-D").arg(&pg.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(initdb, "initdb").await?;
        pg.start().await?;
        let admin = connect(&pg.url_for("postgres")).await?;
        admin.batch_execute(&format!("CREATE DATABASE {DB}")).await?;
        let db = pg.connect().await?;
        db.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
            .await
            .context("CREATE EXTENSION vector in the suite's cluster (is pgvector installed for this server?)")?;
        Ok(pg)
    }

    /// A command running the cluster tool `name` (as `postgres` when the suite runs as root).
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub(crate) async fn start(&mut self) -> Result<()> {
        // fsync off: the cluster is thrown away, and the suite kills clients, never this server
        // uncleanly; it keeps the many small import transactions cheap on a shared disk.
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=100",
            self.port,
            self.root.display()
        );
        let mut c = self.tool("pg_ctl");
        c.arg("-D").arg(&self.data).arg("-l").arg(&self.log).args(["-w", "-t", "60", "-o", &opts, "start"]);
        run(c, "pg_ctl start").await?;
        self.running = true;
        Ok(())
    }

    /// Stops the server (`mode`: `fast` ends sessions and exits cleanly, `immediate` aborts).
    pub(crate) async fn stop(&mut self, mode: &str) -> Result<()> {
        let mut c = self.tool("pg_ctl");
        c.arg("-D").arg(&self.data).args(["-w", "-t", "60", "-m", mode, "stop"]);
        run(c, "pg_ctl stop").await?;
        self.running = false;
        Ok(())
    }

    /// Whether the suite has it started.
    pub(crate) fn running(&self) -> bool {
        self.running
    }

    /// The URL of the suite's database.
    pub(crate) fn url(&self) -> String {
        self.url_for(DB)
    }

    fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A connection to the suite's database.
    pub(crate) async fn connect(&self) -> Result<Client> {
        connect(&self.url()).await
    }

    /// Removes the data directory (the log stays). Only after a stop.
    pub(crate) fn remove_data(&self) {
        if !self.running {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let path = self.bin.join("pg_ctl");
            let mut c = if self.as_postgres {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            } else {
                std::process::Command::new(path)
            };
            c.arg("-D").arg(&self.data).args(["-w", "-m", "immediate", "stop"]);
            let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// Connects with a short connect timeout and drives the connection in a task.
pub(crate) async fn connect(url: &str) -> Result<Client> {
    let mut cfg: tokio_postgres::Config = url.parse()?;
    cfg.connect_timeout(Duration::from_secs(5));
    let (client, conn) = cfg.connect(NoTls).await.with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Client backends of the suite's database other than `admin`'s own: the server's pool.
pub(crate) async fn backends(admin: &Client) -> Result<i64> {
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// `pg_terminate_backend` on every client backend of the database but `admin`'s own; returns
/// how many were terminated.
pub(crate) async fn terminate_backends(admin: &Client) -> Result<usize> {
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(rows.iter().filter(|r| r.get::<_, bool>(0)).count())
}

/// The PostgreSQL bin directory: `--pg-bin`, else the newest `/usr/lib/postgresql/*/bin`,
/// else the directory of `pg_ctl` on `PATH` via `pg_config --bindir`.
pub(crate) fn find_bin(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let out = std::process::Command::new("pg_config").arg("--bindir").output().context("pg_config --bindir")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Lets other users traverse `dir` (mode 0755), so `postgres` reaches its subdirectory.
fn open_up(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

async fn run(mut c: Command, what: &str) -> Result<()> {
    let out = c.stdin(Stdio::null()).output().await.with_context(|| what.to_string())?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
