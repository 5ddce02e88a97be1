//! What every scenario shares: the binaries, the work directory, the settings, and the
//! throwaway PostgreSQL cluster (started on first use, stopped when the context drops).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::{self, Doc};
use crate::pg::PgCluster;
use crate::redis::Redis;
use crate::server::{self, Storage};

/// The suite's shared state.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// `marketking-http`.
    pub(crate) http_bin: PathBuf,
    /// `marketking`.
    pub(crate) cli_bin: PathBuf,
    /// redis-server.
    pub(crate) redis_bin: PathBuf,
    /// PostgreSQL's bin directory.
    pub(crate) pg_bin: PathBuf,
    /// Work directory: logs, files, the cluster.
    pub(crate) work: PathBuf,
    /// API key every server is started with.
    pub(crate) api_key: String,
    /// Concurrent clients of the bounded loads.
    pub(crate) clients: usize,
    /// Documents in the timeout-then-retry batch.
    pub(crate) timeout_docs: usize,
    pg: Option<PgCluster>,
}

impl Ctx {
    /// Checks the binaries exist and creates the work directory.
    pub(crate) fn new(
        bin_dir: &Path,
        redis_bin: PathBuf,
        pg_bin: PathBuf,
        work: PathBuf,
        clients: usize,
        timeout_docs: usize,
    ) -> Result<Ctx> {
        let http_bin = bin_dir.join("marketking-http");
        let cli_bin = bin_dir.join("marketking");
        for b in [&http_bin, &cli_bin] {
            if !b.exists() {
                bail!(
                    "{} is missing: build it with `cargo build --release -p marketking-http -p marketking-cli` \
                     (or pass --bin-dir)",
                    b.display()
                );
            }
        }
        std::fs::create_dir_all(&work).with_context(|| work.display().to_string())?;
        Ok(Ctx {
            http_bin,
            cli_bin,
            redis_bin,
            pg_bin,
            work,
            api_key: format!("fault-suite-{}", std::process::id()),
            clients,
            timeout_docs,
            pg: None,
        })
    }

    /// The suite's PostgreSQL cluster, created on first use and started again if a scenario left
    /// it stopped.
    pub(crate) async fn pg(&mut self) -> Result<&mut PgCluster> {
        if self.pg.is_none() {
            let started = std::time::Instant::now();
            let pg = PgCluster::create(&self.work, &self.pg_bin).await.context("starting the suite's PostgreSQL")?;
            println!("  (own PostgreSQL cluster at {} in {:.1}s)", pg.url(), started.elapsed().as_secs_f64());
            self.pg = Some(pg);
        }
        let pg = self.pg.as_mut().context("no cluster")?;
        if !pg.running() {
            pg.start().await?;
        }
        Ok(pg)
    }

    /// A fresh Redis of this scenario's own in `<work>/<name>`.
    pub(crate) async fn redis(&self, name: &str) -> Result<Redis> {
        Redis::start(&self.redis_bin, &self.work.join(name)).await.context("starting the suite's redis-server")
    }

    /// A file path in the work directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// A PostgreSQL table `<schema>.docs` holding `n` generated documents, loaded with the CLI.
    pub(crate) async fn pg_table_with(&mut self, schema: &str, n: usize) -> Result<(Storage, Vec<Doc>)> {
        let url = self.pg().await?.url();
        let storage = Storage::Pg { url, table: format!("{schema}.docs") };
        let docs = data::corpus(schema, n);
        let file = self.file(&format!("{schema}.jsonl"));
        data::write_jsonl(&file, &docs)?;
        server::import(self, &storage, &file).await?;
        Ok((storage, docs))
    }

    /// Stops the cluster and removes its data (the logs stay in the work directory).
    pub(crate) async fn shutdown(&mut self) {
        if let Some(mut pg) = self.pg.take() {
            if pg.running() {
                let _ = pg.stop("fast").await;
            }
            pg.remove_data();
        }
    }
}
