//! Command-line arguments (clap derive). Nothing here touches the store.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Semantic document search over PostgreSQL + pgvector or an embedded file.
#[derive(Debug, Parser)]
#[command(name = "marketking", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the store lives and how chatty the tool is. Flags win over the environment.
///
/// The store options read their environment variables here ([`GlobalArgs::apply_env`]) rather
/// than through clap's `env`: clap shows an option set from the environment in the usage line
/// of every error, as if it were required.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// PostgreSQL URL; without one the embedded store is used [env: DATABASE_URL].
    #[arg(long, global = true, help_heading = "Store options")]
    pub(crate) database_url: Option<String>,
    /// Embedded database file (default ./marketking.db); ignored when a database URL is set
    /// [env: MARKETKING_DB_PATH].
    #[arg(long, global = true, help_heading = "Store options")]
    pub(crate) db_path: Option<PathBuf>,
    /// Table name, optionally `schema.table` (PostgreSQL; default `embeddings`) [env: MARKETKING_TABLE].
    #[arg(long, global = true, help_heading = "Store options")]
    pub(crate) table: Option<String>,
    /// Redis URL for the shared cache (default: in-process cache) [env: REDIS_URL].
    #[arg(long, global = true, help_heading = "Store options")]
    pub(crate) redis_url: Option<String>,
    /// Log what happens (tracing) on stderr.
    #[arg(short, long, global = true, conflicts_with = "quiet", help_heading = "Output options")]
    pub(crate) verbose: bool,
    /// Print only results and errors: no progress bar, no summaries.
    #[arg(short, long, global = true, help_heading = "Output options")]
    pub(crate) quiet: bool,
    /// Log lines as text or as JSON objects (one per line, for log collectors).
    #[arg(long, global = true, value_enum, env = "MARKETKING_LOG_FORMAT", default_value_t = LogFormat::Text,
          help_heading = "Output options")]
    pub(crate) log_format: LogFormat,
    /// Set when `--db-path` is on the command line without `--database-url`: the embedded
    /// file then wins over `DATABASE_URL` in the environment (flags win).
    #[arg(skip)]
    pub(crate) embedded_only: bool,
}

impl GlobalArgs {
    /// Fills the store options not given as flags from the environment (empty values count as
    /// unset).
    pub(crate) fn apply_env(&mut self) {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if self.database_url.is_none() && !self.embedded_only {
            self.database_url = var("DATABASE_URL");
        }
        if self.db_path.is_none() {
            self.db_path = var("MARKETKING_DB_PATH").map(PathBuf::from);
        }
        if self.table.is_none() {
            self.table = var("MARKETKING_TABLE");
        }
        if self.redis_url.is_none() {
            self.redis_url = var("REDIS_URL");
        }
    }
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Load the bundled demo corpus (when the store is empty) and run example searches.
    Demo,
    /// Store one document and print its id.
    Create(CreateArgs),
    /// Import documents from a JSONL or CSV file (`-` for stdin).
    Import(ImportArgs),
    /// Export every document as JSONL.
    Export(ExportArgs),
    /// Search by text.
    Search(SearchArgs),
    /// Documents most similar to a stored one.
    Similar(SimilarArgs),
    /// Show one document, by id or by key.
    Get(GetArgs),
    /// Change a document's title, content, source or metadata (re-embeds when the text changes).
    Update(UpdateArgs),
    /// List documents a page at a time, ascending by id, optionally filtered.
    List(ListArgs),
    /// Delete one document by id or key, or every document a filter matches.
    Delete(DeleteArgs),
    /// Count the documents (all of them, or those a filter matches).
    Count(CountArgs),
    /// Counts, sizes, index, cache and embedder counters.
    Stats(JsonFlag),
    /// Manage the vector index (pgvector's on PostgreSQL; an HNSW graph on the embedded store).
    #[command(subcommand)]
    Index(IndexCommand),
    /// Find the smallest index search setting (ef_search, probes or oversample) that reaches a
    /// recall target against exact search on the store's own documents, and keep it with the
    /// index.
    Tune(TuneArgs),
    /// Create or upgrade the table (opening the store migrates it).
    Migrate,
    /// Refresh the planner's and the full-text ranking's statistics (ANALYZE).
    Analyze,
    /// Check that the storage and the cache answer (exit 1 when one does not).
    Ping,
    /// Run background job workers (imports queued with `import --background` or the HTTP
    /// service) until Ctrl-C or SIGTERM; each finishes its chunk in hand first.
    Worker(WorkerArgs),
    /// Background jobs: list them, show one's report, cancel one.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Local embedding models: list the installed ones, pull one.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `marketking worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Workers in this process (each writes one chunk at a time).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) concurrency: u32,
}

/// `marketking jobs ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// The newest jobs first.
    List {
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Print JSON (one status per line).
        #[arg(long)]
        json: bool,
    },
    /// One job's status and report.
    Show {
        /// The job's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a finished job: its status and its chunks' checkpoints (the documents stay).
    Forget {
        /// The job's id.
        id: String,
    },
    /// Cancel a job: chunks not started are not written (those done stay).
    Cancel {
        /// The job's id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `marketking model ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Models found in MARKETKING_MODEL_DIR, the Hugging Face cache and MarketKing's cache.
    List,
    /// Install a known model into MarketKing's cache (default all-MiniLM-L6-v2), SHA-256 checked.
    Pull {
        /// Model name (all-MiniLM-L6-v2).
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Title (at most 255 characters).
    #[arg(long)]
    pub(crate) title: String,
    /// Content; `-` reads it from stdin.
    #[arg(long)]
    pub(crate) content: String,
    /// Source, e.g. `catalog`.
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// Metadata entry `key=value` (value parsed as JSON when it parses, else a string). Repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub(crate) meta: Vec<(String, serde_json::Value)>,
    /// Caller key: writing the same key again updates that document.
    #[arg(long)]
    pub(crate) key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// File to read; `-` for stdin.
    pub(crate) file: PathBuf,
    /// File format (default: from the extension; stdin is JSONL).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
    /// Documents per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) batch_size: u32,
    /// Skip invalid lines (listed on stderr) instead of stopping at the first one.
    #[arg(long)]
    pub(crate) skip_invalid: bool,
    /// Keep each line's `id` (restoring an export into an empty store); otherwise ids are
    /// assigned anew. Keys and times are always kept.
    #[arg(long)]
    pub(crate) keep_ids: bool,
    /// Every line's key (if any) is not stored yet: each batch is one binary COPY, with no key
    /// lookup (a stored key stops the import with a conflict). Lines without an embedding are
    /// embedded first. For bulk loads of precomputed vectors.
    #[arg(long, conflicts_with = "background")]
    pub(crate) assume_new: bool,
    /// Queue the import as a background job (JSONL only) and return at once with its id:
    /// workers (`marketking worker`, or the HTTP service's) write it in chunks. Needs a job
    /// queue shared between processes (REDIS_URL or MARKETKING_QUEUE_URL). Invalid lines are
    /// reported in the job's status (`marketking jobs show ID`), the others written.
    #[arg(long, conflicts_with_all = ["skip_invalid", "batch_size"])]
    pub(crate) background: bool,
    /// Lines per chunk of a background import (one transaction each; 1 to 10000).
    #[arg(long, requires = "background", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) chunk_lines: Option<u32>,
    /// With --background: wait for the job to finish and print its report.
    #[arg(long, requires = "background")]
    pub(crate) wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Output file (default stdout).
    pub(crate) file: Option<PathBuf>,
    /// Include each document's embedding.
    #[arg(long)]
    pub(crate) with_embeddings: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The query text.
    #[arg(required_unless_present = "vector", conflicts_with = "vector")]
    pub(crate) query: Option<String>,
    /// Search by this vector instead (a JSON array with the store's dimensions; vector ranking).
    #[arg(long, value_name = "JSON")]
    pub(crate) vector: Option<String>,
    /// Print the plan the search would run (PostgreSQL `EXPLAIN`) instead of its hits.
    #[arg(long)]
    pub(crate) explain: bool,
    /// Number of results (1 to 1000).
    #[arg(short, long = "top", visible_alias = "top-k", default_value_t = 10, value_parser = parse_k)]
    pub(crate) k: usize,
    /// Keep only this source (repeatable: any of them).
    #[arg(long = "source", value_name = "SOURCE")]
    pub(crate) sources: Vec<String>,
    /// Keep only documents whose metadata has `key=value` (repeatable: all of them).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub(crate) meta: Vec<(String, serde_json::Value)>,
    /// Drop results whose cosine similarity is below this (-1..1; text mode: the text score).
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) min_score: Option<f32>,
    /// Keep only documents this filter matches, e.g. '{"price": {"$lt": 100}}' (see the README).
    #[arg(long, value_name = "JSON")]
    pub(crate) filter: Option<String>,
    /// Ranking: hybrid (vector and full text fused by RRF), vector or text.
    #[arg(long, value_enum, default_value_t = ModeArg::Hybrid)]
    pub(crate) mode: ModeArg,
    /// Hybrid: RRF's k (1..=1000; larger flattens the advantage of top ranks).
    #[arg(long, default_value_t = 60)]
    pub(crate) rrf_k: u32,
    /// Hybrid: weight of the vector leg (0..=10).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) vector_weight: f32,
    /// Hybrid: weight of the full-text leg (0..=10).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) text_weight: f32,
    /// Diversify results with MMR: LAMBDA from 0 (diverse) to 1 (relevance only), e.g. 0.5.
    #[arg(long, value_name = "LAMBDA")]
    pub(crate) mmr: Option<f32>,
    /// MMR: candidates to choose from (default max(4k, 40)).
    #[arg(long, value_name = "N", requires = "mmr")]
    pub(crate) mmr_fetch_k: Option<usize>,
    /// HNSW ef_search for this search (1..=1000; default MARKETKING_EF_SEARCH or 100).
    #[arg(long, value_name = "N")]
    pub(crate) ef_search: Option<u32>,
    /// Candidates per result taken from a quantized index before the exact re-rank (1..=100;
    /// default 4 for a binary index).
    #[arg(long, value_name = "N")]
    pub(crate) oversample: Option<u32>,
    /// Compare every stored vector exactly, bypassing any index (and the embedded store's int8
    /// scan): the ground truth, slower on large stores.
    #[arg(long)]
    pub(crate) exact: bool,
    /// Print only each hit's id and score (no document is read: the cheapest search).
    #[arg(long)]
    pub(crate) ids_only: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    /// Vector and full text, fused (Reciprocal Rank Fusion).
    Hybrid,
    /// Cosine similarity of embeddings only.
    Vector,
    /// Full text only (no embedder call).
    Text,
}

impl From<ModeArg> for marketking_core::SearchMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Hybrid => marketking_core::SearchMode::Hybrid,
            ModeArg::Vector => marketking_core::SearchMode::Vector,
            ModeArg::Text => marketking_core::SearchMode::Text,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct SimilarArgs {
    /// Document id.
    pub(crate) id: i64,
    /// Number of results (1 to 1000).
    #[arg(short, long = "top", visible_alias = "top-k", default_value_t = 10, value_parser = parse_k)]
    pub(crate) k: usize,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// Document id.
    #[arg(required_unless_present = "key", conflicts_with = "key")]
    pub(crate) id: Option<i64>,
    /// The document with this caller key instead.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Include the embedding (JSON output).
    #[arg(long)]
    pub(crate) with_embedding: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// Document id.
    pub(crate) id: i64,
    /// New title.
    #[arg(long)]
    pub(crate) title: Option<String>,
    /// New content; `-` reads it from stdin.
    #[arg(long)]
    pub(crate) content: Option<String>,
    /// New source.
    #[arg(long, conflicts_with = "clear_source")]
    pub(crate) source: Option<String>,
    /// Remove the source.
    #[arg(long)]
    pub(crate) clear_source: bool,
    /// Replace the metadata with these `key=value` entries (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub(crate) meta: Vec<(String, serde_json::Value)>,
    /// Replace the metadata with `{}`.
    #[arg(long, conflicts_with = "meta")]
    pub(crate) clear_meta: bool,
    /// Print the updated document as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Documents with an id greater than this (the last id of the previous page).
    #[arg(long, default_value_t = 0)]
    pub(crate) after: i64,
    /// Documents per page (1 to 10000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) limit: u32,
    /// Only documents this filter matches, e.g. '{"source": "catalog"}'.
    #[arg(long, value_name = "JSON")]
    pub(crate) filter: Option<String>,
    /// Print JSON (`{"documents": [...], "next_after": N}`).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Document id.
    #[arg(required_unless_present_any = ["filter", "all", "key"], conflicts_with_all = ["filter", "all", "key"])]
    pub(crate) id: Option<i64>,
    /// Delete the document with this caller key.
    #[arg(long, conflicts_with_all = ["filter", "all"])]
    pub(crate) key: Option<String>,
    /// Delete every document this filter matches, e.g. '{"source": "old"}' (`{}` needs --all).
    #[arg(long, value_name = "JSON")]
    pub(crate) filter: Option<String>,
    /// Delete every document (with --filter: allow a filter that matches everything).
    #[arg(long)]
    pub(crate) all: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(short, long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CountArgs {
    /// Count only documents this filter matches, e.g. '{"tags": "sale"}'.
    #[arg(long, value_name = "JSON")]
    pub(crate) filter: Option<String>,
    /// Print JSON (`{"count": N}`).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TuneArgs {
    /// The recall@k to reach against exact search, in (0, 1].
    #[arg(long, default_value_t = 0.95)]
    pub(crate) target: f64,
    /// The k of recall@k.
    #[arg(short = 'k', long, default_value_t = 10)]
    pub(crate) k: usize,
    /// How many stored documents serve as queries (1..=10000).
    #[arg(long, default_value_t = 200)]
    pub(crate) queries: usize,
    /// Measure with these queries instead of stored documents: a file with one query per line,
    /// plain text or JSON objects with a "query" field (e.g. a sample of your query log).
    #[arg(long, value_name = "FILE", conflicts_with = "clear")]
    pub(crate) query_file: Option<std::path::PathBuf>,
    /// Measure and report only; keep nothing with the index.
    #[arg(long, conflicts_with = "clear")]
    pub(crate) dry_run: bool,
    /// Forget the tuned setting kept with the index (searches use the defaults again).
    #[arg(long)]
    pub(crate) clear: bool,
    /// Print JSON (the whole report).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum IndexKindArg {
    /// HNSW graph (best recall and latency).
    Hnsw,
    /// IVFFlat lists (fast to build; build after loading data).
    Ivfflat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum QuantizationArg {
    /// The vectors as stored.
    None,
    /// Half precision (halfvec).
    Half,
    /// One bit per dimension (binary_quantize), re-ranked by exact distance.
    Binary,
}

impl From<QuantizationArg> for marketking_core::Quantization {
    fn from(q: QuantizationArg) -> Self {
        match q {
            QuantizationArg::None => marketking_core::Quantization::None,
            QuantizationArg::Half => marketking_core::Quantization::Half,
            QuantizationArg::Binary => marketking_core::Quantization::Binary,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum IndexCommand {
    /// Build (or replace) the vector index.
    Create {
        /// Index kind.
        #[arg(long, value_enum, default_value_t = IndexKindArg::Hnsw)]
        kind: IndexKindArg,
        /// HNSW: max links per node (2..=100).
        #[arg(long)]
        m: Option<u32>,
        /// HNSW: build candidate list size (at least 2*m).
        #[arg(long)]
        ef_construction: Option<u32>,
        /// IVFFlat: number of lists (default rows/1000).
        #[arg(long)]
        lists: Option<u32>,
        /// What the index stores of each vector: none (as stored), half (halfvec, half the
        /// size) or binary (one bit per dimension; searches re-rank `--oversample` candidates
        /// per result by exact distance).
        #[arg(long, value_enum, default_value_t = QuantizationArg::None)]
        quantization: QuantizationArg,
        /// Build without blocking writes (slower).
        #[arg(long)]
        concurrently: bool,
        /// Memory for the build in MiB (PostgreSQL maintenance_work_mem, 16..=1048576; default
        /// 1024). A build is much faster when the graph fits.
        #[arg(long, value_name = "MIB")]
        build_memory_mb: Option<u32>,
        /// Parallel workers besides the leader (0..=64; default 1).
        #[arg(long, value_name = "N")]
        parallel_workers: Option<u32>,
        /// Skip the ANALYZE after the build (run `marketking analyze` later).
        #[arg(long)]
        no_analyze: bool,
    },
    /// Drop the vector index.
    Drop,
    /// Rebuild the existing vector index.
    Rebuild {
        /// Rebuild without blocking writes (slower).
        #[arg(long)]
        concurrently: bool,
    },
}

/// `key=value`; the value is JSON when it parses as JSON, else a string.
pub(crate) fn parse_meta(s: &str) -> Result<(String, serde_json::Value), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
    Ok((k.to_string(), value))
}

/// A `--filter` argument: JSON text in the filter language (errors name the path, e.g.
/// `filter.$and[1].price.$lt`).
pub(crate) fn parse_filter(text: &str) -> marketking_core::Result<marketking_core::Filter> {
    marketking_core::Filter::parse(text)
}

/// The `--meta` pairs as a JSON object.
pub(crate) fn meta_object(pairs: &[(String, serde_json::Value)]) -> marketking_core::Metadata {
    pairs.iter().cloned().collect()
}

/// `-k` / `--top`: a whole number the store accepts, else a usage error (exit 2).
fn parse_k(s: &str) -> Result<usize, String> {
    let k: usize = s.parse().map_err(|_| format!("{s:?} is not a whole number"))?;
    if (1..=marketking_core::MAX_K).contains(&k) {
        Ok(k)
    } else {
        Err(format!("must be between 1 and {}, got {k}", marketking_core::MAX_K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use serde_json::json;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn meta_values_are_json_when_they_parse() {
        assert_eq!(parse_meta("price=12.5").unwrap(), ("price".into(), json!(12.5)));
        assert_eq!(parse_meta("ok=true").unwrap(), ("ok".into(), json!(true)));
        assert_eq!(parse_meta("color=red").unwrap(), ("color".into(), json!("red")));
        assert_eq!(parse_meta("q=a=b").unwrap(), ("q".into(), json!("a=b")));
        assert!(parse_meta("novalue").is_err());
        assert!(parse_meta("=x").is_err());
    }
}
