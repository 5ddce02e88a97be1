//! Fresh, throwaway stores for one quality run, and loading the corpus into them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use marketking_core::{NewDocument, NoCache, VectorStore};
use serde::{Deserialize, Serialize};

/// Where a run's documents live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BackendKind {
    /// The embedded single-file store, in a temporary folder.
    Embedded,
    /// PostgreSQL + pgvector at `DATABASE_URL`, in a schema of its own.
    Postgres,
}

impl BackendKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded store",
            BackendKind::Postgres => "PostgreSQL + pgvector",
        }
    }
}

/// A store and what to remove when the run is over.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) store: VectorStore,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Dir(PathBuf),
    Schema { url: String, schema: String },
}

impl Cleanup {
    /// Best effort: a failed clean-up is reported, never hides the run's own result.
    async fn run(self) {
        let outcome = match &self {
            Cleanup::Dir(dir) => std::fs::remove_dir_all(dir).map_err(anyhow::Error::from),
            Cleanup::Schema { url, schema } => drop_schema(url, schema).await,
        };
        if let Err(e) = outcome {
            // Never print the URL: it may hold a password.
            let what = match &self {
                Cleanup::Dir(dir) => dir.display().to_string(),
                Cleanup::Schema { schema, .. } => format!("schema {schema}"),
            };
            eprintln!("warning: could not remove {what}: {e:#}");
        }
    }
}

async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await?;
    Ok(())
}

/// Opens a fresh store of `kind` with the embedder the environment selects
/// (`VectorStore::builder().from_env()`: OpenAI-compatible when configured, else the default).
/// No cache: every search embeds its query and reads the store, so latencies are uncached and a
/// shared Redis is left alone.
pub(crate) async fn open(kind: BackendKind, database_url: Option<&str>) -> anyhow::Result<Opened> {
    let builder = VectorStore::builder().from_env()?.cache(NoCache).cache_results(false);
    let pid = std::process::id();
    let (builder, cleanup) = match kind {
        BackendKind::Embedded => {
            let dir = std::env::temp_dir().join(format!("mk-quality-{pid}"));
            std::fs::create_dir_all(&dir)?;
            (builder.db_path(dir.join("quality.db")), Cleanup::Dir(dir))
        }
        BackendKind::Postgres => {
            let url = database_url.context("the postgres backend needs DATABASE_URL")?;
            let schema = format!("mk_quality_{pid}");
            let builder = builder.database_url(url).table(format!("{schema}.docs"));
            (builder, Cleanup::Schema { url: url.to_string(), schema })
        }
    };
    match builder.build().await {
        Ok(store) => Ok(Opened { store, cleanup }),
        Err(e) => {
            cleanup.run().await;
            Err(anyhow::Error::new(e).context(format!("cannot open the {}", kind.label())))
        }
    }
}

impl Opened {
    /// Closes the store and removes its folder or schema, or (with `keep`) says where it is.
    pub(crate) async fn close(self, keep: bool) {
        drop(self.store);
        if keep {
            match &self.cleanup {
                Cleanup::Dir(dir) => println!("kept: the embedded store in {}\n", dir.display()),
                Cleanup::Schema { schema, .. } => println!("kept: the PostgreSQL table {schema}.docs\n"),
            }
        } else {
            self.cleanup.run().await;
        }
    }
}

/// How the corpus got into a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded {
    pub(crate) seconds: f64,
    /// True when the store embedded the documents; false when they came with vectors.
    pub(crate) embedded_here: bool,
}

/// Writes `docs` in batches of 1,000. With `vectors` (key -> embedding, read back from an
/// earlier backend) the documents carry their embeddings, so a slow embedder runs once per
/// quality run and both backends search the very same vectors.
pub(crate) async fn load(
    store: &VectorStore,
    docs: &[NewDocument],
    vectors: Option<&HashMap<String, Vec<f32>>>,
) -> anyhow::Result<Loaded> {
    let t = Instant::now();
    let mut done = 0;
    // A slow embedder takes minutes: show progress on a terminal (not in CI logs).
    let progress = std::io::stderr().is_terminal();
    for chunk in docs.chunks(1000) {
        let batch: Vec<NewDocument> = chunk
            .iter()
            .map(|d| {
                let mut d = d.clone();
                if let Some(v) = vectors.and_then(|m| d.key.as_ref().and_then(|k| m.get(k))) {
                    d.embedding = Some(v.clone());
                }
                d
            })
            .collect();
        store.batch(batch).await.with_context(|| format!("loading documents {done}..{}", done + chunk.len()))?;
        done += chunk.len();
        if progress {
            eprint!("\r  loaded {done}/{} ({:.0} docs/s)  ", docs.len(), done as f64 / t.elapsed().as_secs_f64());
        }
    }
    if progress {
        eprintln!();
    }
    store.analyze().await?;
    Ok(Loaded { seconds: t.elapsed().as_secs_f64(), embedded_here: vectors.is_none() })
}

/// Every document's stored embedding, by key.
pub(crate) async fn read_vectors(store: &VectorStore) -> anyhow::Result<HashMap<String, Vec<f32>>> {
    let mut out = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.list(after, 1000, true).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for d in page {
            if let (Some(k), Some(v)) = (d.key, d.embedding) {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// Reads a vector file written by [`write_vector_file`]: `None` when it does not exist or holds
/// the vectors of another dataset or embedder.
pub(crate) fn read_vector_file(
    path: &std::path::Path,
    dataset_sha: &str,
    model: &str,
    dims: usize,
) -> anyhow::Result<Option<HashMap<String, Vec<f32>>>> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else { return Ok(None) };
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines.next().transpose()?.unwrap_or_default();
    if header != format!("{dataset_sha}\t{model}\t{dims}") {
        println!("vectors: {} holds other vectors ({header}); embedding again\n", path.display());
        return Ok(None);
    }
    let mut out = HashMap::new();
    for line in lines {
        let line = line?;
        let (key, values) = line.split_once('\t').context("vector file: a line without a tab")?;
        let v: Vec<f32> = values.split(' ').map(str::parse).collect::<Result<_, _>>()?;
        anyhow::ensure!(v.len() == dims, "vector file: {key} has {} values, not {dims}", v.len());
        out.insert(key.to_string(), v);
    }
    Ok(Some(out))
}

/// Writes `vectors` as text: a header (dataset, model, dimensions), then `key<TAB>values`.
pub(crate) fn write_vector_file(
    path: &std::path::Path,
    dataset_sha: &str,
    model: &str,
    dims: usize,
    vectors: &HashMap<String, Vec<f32>>,
) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    writeln!(f, "{dataset_sha}\t{model}\t{dims}")?;
    for (k, v) in vectors {
        let values: Vec<String> = v.iter().map(f32::to_string).collect();
        writeln!(f, "{k}\t{}", values.join(" "))?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    println!("vectors: written to {}\n", path.display());
    Ok(())
}
