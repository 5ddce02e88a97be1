//! [`LocalEmbedder`]: a sentence-transformers model (BERT family) run in process with candle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::Embedder;
use crate::error::{Error, Result};

mod bert;
mod locate;
mod model;

pub use locate::{
    find_local_model, hf_cache_dir, installed_models, known_model, model_cache_dir, InstalledModel, KnownModel,
    ModelSource, DEFAULT_LOCAL_MODEL, KNOWN_MODELS,
};
use model::{Model, Pooling};

/// The query instruction bge-small-en-v1.5 (and the other bge v1.5 models) were trained with.
pub const BGE_QUERY_INSTRUCTION: &str = "Represent this sentence for searching relevant passages: ";

/// Default padded-token budget of one forward pass (texts x longest text of the batch): eight
/// 256-piece documents. 1,024, 2,048 and 4,096 ran at the same speed here within the noise
/// (BENCHMARKS.md); the smaller budget touches less memory (peak RSS).
pub const DEFAULT_TOKEN_BUDGET: usize = 2048;

/// At most this many texts per forward pass, however short: one-line texts ran about 40%
/// faster in batches of 32 than in batches of ~200 that the token budget alone allowed.
const MAX_BATCH_TEXTS: usize = 32;

/// Jobs waiting for the model thread; a caller past this waits (asynchronously) for room.
const QUEUE_DEPTH: usize = 8;

/// A local sentence-embedding model: all-MiniLM-L6-v2 (mean pooling, 384 dimensions),
/// bge-small-en-v1.5 (CLS pooling, 384) or another BERT-family model in the
/// sentence-transformers folder layout (`config.json`, `tokenizer.json`, `model.safetensors`,
/// optional `modules.json` and `1_Pooling/config.json`). No network, no key.
///
/// Texts are truncated at the model's limit (`max_seq_length`, 256 word pieces for MiniLM),
/// sorted by length and cut into batches of at most a token budget of padded tokens, each
/// padded to its own longest text; results come back in input order. Sorting matters: a batch
/// pads every text to its longest one, so mixed lengths waste most of the work.
///
/// Inference runs on a dedicated thread fed by a bounded queue, never on the async runtime;
/// the matrix products inside a forward pass use every core (candle's thread pool).
///
/// The model id is `local:NAME@HASH` with the first 12 hex digits of the weights' SHA-256, so a
/// store refuses a table embedded by another model, or another revision of the same one.
#[derive(Debug, Clone)]
pub struct LocalEmbedder {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    jobs: mpsc::Sender<Job>,
    model_id: String,
    name: String,
    path: PathBuf,
    dimensions: usize,
    max_tokens: usize,
    pooling: Pooling,
    query_instruction: Option<String>,
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

/// Options of a [`LocalEmbedder`]; [`LocalEmbedder::builder`].
#[derive(Debug, Clone)]
pub struct LocalEmbedderBuilder {
    path: PathBuf,
    token_budget: usize,
    query_instruction: Option<String>,
}

impl LocalEmbedderBuilder {
    /// Padded tokens per forward pass (default [`DEFAULT_TOKEN_BUDGET`]; at least the model's
    /// max length, so one longest text always fits). Bigger uses more memory, not less time.
    pub fn token_budget(mut self, tokens: usize) -> Self {
        self.token_budget = tokens;
        self
    }

    /// A prefix put before each query by [`LocalEmbedder::embed_query`] (documents are
    /// embedded as they are), for models trained with one, such as bge ([`BGE_QUERY_INSTRUCTION`]).
    pub fn query_instruction(mut self, prefix: impl Into<String>) -> Self {
        self.query_instruction = Some(prefix.into());
        self
    }

    /// Loads the model (reads and hashes the weights: about a second for 90 MB) and starts its
    /// thread. Blocking: from async code call it inside `spawn_blocking`.
    pub fn build(self) -> Result<LocalEmbedder> {
        let model = Model::load(&self.path)?;
        let name = match locate::known_by_weights(&model.weights_sha256) {
            Some(k) => k.name.to_string(),
            None => model::display_name(&self.path),
        };
        let short = model.weights_sha256.get(..12).unwrap_or(&model.weights_sha256);
        let model_id = format!("local:{name}@{short}");
        let budget = self.token_budget.max(model.max_tokens);
        let (tx, rx) = mpsc::channel::<Job>(QUEUE_DEPTH);
        let shared = Shared {
            jobs: tx,
            model_id,
            name,
            path: self.path.clone(),
            dimensions: model.dimensions,
            max_tokens: model.max_tokens,
            pooling: model.pooling,
            query_instruction: self.query_instruction,
        };
        std::thread::Builder::new()
            .name("marketking-embed".into())
            .spawn(move || worker(model, rx, budget))
            .map_err(|e| Error::Embedder { message: format!("cannot start the model thread: {e}"), status: None })?;
        Ok(LocalEmbedder { inner: Arc::new(shared) })
    }
}

/// The model thread: one job at a time, until every [`LocalEmbedder`] clone is dropped.
fn worker(model: Model, mut jobs: mpsc::Receiver<Job>, budget: usize) {
    while let Some(job) = jobs.blocking_recv() {
        let result = embed_sorted(&model, &job.texts, budget);
        // The caller may have gone away (a cancelled request): nothing to do then.
        let _ = job.reply.send(result);
    }
}

/// Tokenises, sorts by length, runs batches of at most `budget` padded tokens, and puts the
/// vectors back in input order.
fn embed_sorted(model: &Model, texts: &[String], budget: usize) -> Result<Vec<Vec<f32>>> {
    let ids = model.tokenize(texts)?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids.get(i).map_or(0, Vec::len));
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); ids.len()];
    let mut start = 0;
    while start < order.len() {
        // Ascending lengths: the last text of a batch is its longest.
        let mut end = start + 1;
        while end < order.len() {
            let longest = order.get(end).and_then(|&i| ids.get(i)).map_or(0, Vec::len).max(1);
            if (end + 1 - start) * longest > budget || end - start >= MAX_BATCH_TEXTS {
                break;
            }
            end += 1;
        }
        let slice = order.get(start..end).unwrap_or(&[]);
        let batch: Vec<&[u32]> = slice.iter().filter_map(|&i| ids.get(i).map(Vec::as_slice)).collect();
        let vectors = model.forward(&batch)?;
        for (&i, v) in slice.iter().zip(vectors) {
            if let Some(slot) = out.get_mut(i) {
                *slot = v;
            }
        }
        start = end;
    }
    Ok(out)
}

impl LocalEmbedder {
    /// Loads the model folder at `path` with default options. Blocking (see
    /// [`LocalEmbedderBuilder::build`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).build()
    }

    /// Options for the model folder at `path`.
    pub fn builder(path: impl AsRef<Path>) -> LocalEmbedderBuilder {
        LocalEmbedderBuilder {
            path: path.as_ref().to_path_buf(),
            token_budget: DEFAULT_TOKEN_BUDGET,
            query_instruction: None,
        }
    }

    /// The installed default model ([`find_local_model`]), or `Ok(None)` when there is none.
    pub fn from_installed() -> Result<Option<Self>> {
        match find_local_model()? {
            Some(m) => Self::load(&m.path).map(Some),
            None => Ok(None),
        }
    }

    /// The model's name (`all-MiniLM-L6-v2`, or the folder's).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The folder it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Word pieces per text; longer texts are truncated.
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// `"mean"` or `"cls"`.
    pub fn pooling(&self) -> &'static str {
        match self.inner.pooling {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }

    /// Embeds a search query: with the query instruction in front when one is set.
    pub async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let text = match &self.inner.query_instruction {
            Some(prefix) => format!("{prefix}{query}"),
            None => query.to_string(),
        };
        self.embed_one(&text).await
    }
}

fn stopped() -> Error {
    Error::Embedder { message: "the local model thread stopped".into(), status: None }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.inner.jobs.send(Job { texts: texts.to_vec(), reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    /// Large, so that length sorting has texts to sort; the token budget bounds memory.
    fn max_batch_size(&self) -> usize {
        256
    }

    fn query_instruction(&self) -> Option<&str> {
        self.inner.query_instruction.as_deref()
    }
}
