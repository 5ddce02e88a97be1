//! Loading a sentence-transformers folder and running it (synchronously, on the caller's
//! thread: the worker thread of [`super::LocalEmbedder`]).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;

use super::bert::Bert;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooling {
    /// Mean of the token vectors under the attention mask (all-MiniLM-L6-v2).
    Mean,
    /// The first token's vector (bge-small-en-v1.5).
    Cls,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct SentenceBertFile {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct DimsFile {
    hidden_size: usize,
    max_position_embeddings: Option<usize>,
}

/// A loaded model: weights, tokenizer and the sentence-transformers settings.
pub(crate) struct Model {
    bert: Bert,
    tokenizer: Tokenizer,
    pub(crate) pooling: Pooling,
    pub(crate) normalize: bool,
    pub(crate) max_tokens: usize,
    pub(crate) dimensions: usize,
    /// SHA-256 of `model.safetensors`, hex.
    pub(crate) weights_sha256: String,
    device: Device,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_tokens", &self.max_tokens)
            .field("dimensions", &self.dimensions)
            .finish_non_exhaustive()
    }
}

fn load_err(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::config("local_model", format!("{}: {what}", dir.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, file: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(file).map_err(|e| load_err(dir, format!("cannot read {}: {e}", file.display())))?;
    serde_json::from_str(&text).map_err(|e| load_err(dir, format!("{} is not valid: {e}", file.display())))
}

/// The files a model folder must hold.
pub(crate) const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Whether `dir` looks like a loadable model folder.
pub(crate) fn is_model_dir(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Pooling and normalisation from `modules.json` and the pooling module's config. Without
/// `modules.json` (a bare transformers folder): mean pooling, normalised.
fn read_pipeline(dir: &Path) -> Result<(Pooling, bool)> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        let pooling_path = dir.join("1_Pooling").join("config.json");
        if pooling_path.is_file() {
            return Ok((pooling_from(dir, &pooling_path)?, true));
        }
        return Ok((Pooling::Mean, true));
    }
    let modules: Vec<ModuleEntry> = read_json(dir, &modules_path)?;
    let mut pooling = Pooling::Mean;
    let mut normalize = false;
    for m in &modules {
        if m.kind.ends_with(".Pooling") {
            pooling = pooling_from(dir, &dir.join(&m.path).join("config.json"))?;
        } else if m.kind.ends_with(".Normalize") {
            normalize = true;
        } else if !m.kind.ends_with(".Transformer") {
            return Err(load_err(
                dir,
                format!("module {} is not supported (Transformer, Pooling, Normalize are)", m.kind),
            ));
        }
    }
    Ok((pooling, normalize))
}

fn pooling_from(dir: &Path, file: &Path) -> Result<Pooling> {
    let p: PoolingFile = read_json(dir, file)?;
    match (p.pooling_mode_cls_token, p.pooling_mode_mean_tokens) {
        (true, false) => Ok(Pooling::Cls),
        (false, true) => Ok(Pooling::Mean),
        _ => Err(load_err(dir, "pooling must be exactly one of CLS or mean tokens")),
    }
}

fn candle_err(e: impl std::fmt::Display) -> Error {
    Error::Embedder { message: format!("local model: {e}"), status: None }
}

impl Model {
    /// Loads the folder. Reads the weights into memory (safe code: no memory map) and hashes them.
    pub(crate) fn load(dir: &Path) -> Result<Model> {
        for f in REQUIRED_FILES {
            if !dir.join(f).is_file() {
                return Err(load_err(dir, format!("is not a sentence-transformers model folder: {f} is missing")));
            }
        }
        let (pooling, normalize) = read_pipeline(dir)?;
        let config_text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| load_err(dir, format!("cannot read config.json: {e}")))?;
        let config: BertConfig =
            serde_json::from_str(&config_text).map_err(|e| load_err(dir, format!("config.json: {e}")))?;
        let dims: DimsFile =
            serde_json::from_str(&config_text).map_err(|e| load_err(dir, format!("config.json: {e}")))?;
        let st_path = dir.join("sentence_bert_config.json");
        let st_max =
            if st_path.is_file() { read_json::<SentenceBertFile>(dir, &st_path)?.max_seq_length } else { None };
        let position_max = dims.max_position_embeddings.unwrap_or(512);
        let max_tokens = st_max.unwrap_or(position_max).min(position_max).max(2);

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| load_err(dir, format!("tokenizer.json: {e}")))?;
        // The file's own settings (MiniLM's pads every text to 128 and truncates at 128) are
        // replaced: no padding here (the batcher pads to the longest text of each batch) and
        // truncation at the model's real limit.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| load_err(dir, format!("tokenizer truncation: {e}")))?;

        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| load_err(dir, format!("cannot read model.safetensors: {e}")))?;
        let weights_sha256 = hex(&Sha256::digest(&weights));
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_err(dir, format!("model.safetensors: {e}")))?;
        let bert =
            Bert::load(vb, &config).map_err(|e| load_err(dir, format!("weights do not fit config.json: {e}")))?;
        Ok(Model {
            bert,
            tokenizer,
            pooling,
            normalize,
            max_tokens,
            dimensions: dims.hidden_size,
            weights_sha256,
            device,
        })
    }

    /// Token ids of each text (truncated, not padded).
    pub(crate) fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(candle_err)?;
        Ok(encodings.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Embeds one batch of token id lists, padded here to the longest of them.
    pub(crate) fn forward(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let n = batch.len();
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; n * len];
        let mut mask = vec![0u32; n * len];
        for (row, text) in batch.iter().enumerate() {
            let start = row * len;
            if let Some(slot) = ids.get_mut(start..start + text.len()) {
                slot.copy_from_slice(text);
            }
            if let Some(slot) = mask.get_mut(start..start + text.len()) {
                slot.fill(1);
            }
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device).map_err(candle_err)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device).map_err(candle_err)?;
        let lens: Vec<usize> = batch.iter().map(|ids| ids.len()).collect();
        let hidden = self.bert.forward(&ids, &lens).map_err(candle_err)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1).and_then(|t| t.squeeze(1)).map_err(candle_err)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32).and_then(|m| m.unsqueeze(2)).map_err(candle_err)?;
                let summed = hidden.broadcast_mul(&m).and_then(|t| t.sum(1)).map_err(candle_err)?;
                let counts = m.sum(1).map_err(candle_err)?;
                summed.broadcast_div(&counts).map_err(candle_err)?
            }
        };
        let pooled = if self.normalize {
            let norm = pooled.sqr().and_then(|t| t.sum_keepdim(1)).and_then(|t| t.sqrt()).map_err(candle_err)?;
            // Same floor as torch.nn.functional.normalize: an all-zero vector stays zero.
            let norm = norm.clamp(1e-12f32, f32::MAX).map_err(candle_err)?;
            pooled.broadcast_div(&norm).map_err(candle_err)?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>().map_err(candle_err)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A readable name for the model in `dir`: `ORG/NAME` of a Hugging Face cache snapshot
/// (`models--ORG--NAME/snapshots/REV`), else the folder's name.
pub(crate) fn display_name(dir: &Path) -> String {
    let dir: PathBuf = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let parent = dir.parent();
    if parent.and_then(Path::file_name).is_some_and(|n| n == "snapshots") {
        if let Some(repo) = parent.and_then(Path::parent).and_then(Path::file_name).and_then(|n| n.to_str()) {
            if let Some(rest) = repo.strip_prefix("models--") {
                return rest.replacen("--", "/", 1);
            }
        }
    }
    dir.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string()
}
