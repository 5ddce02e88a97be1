//! Which embedder a builder ends up with (the default selection of `from_env`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::builder::Config;
use crate::embedder::{Embedder, HashingEmbedder, NoEmbedder};
use crate::error::{Error, Result};

/// `MARKETKING_EMBEDDER`: forces one kind of embedder instead of the default selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmbedderChoice {
    OpenAi,
    Local,
    Hash,
    None,
}

impl EmbedderChoice {
    pub(crate) fn parse(v: &str) -> Result<Self> {
        match v.trim().to_ascii_lowercase().as_str() {
            "openai" => Ok(EmbedderChoice::OpenAi),
            "local" => Ok(EmbedderChoice::Local),
            "hash" | "hashing" => Ok(EmbedderChoice::Hash),
            "none" => Ok(EmbedderChoice::None),
            other => {
                Err(Error::config("MARKETKING_EMBEDDER", format!("must be openai, local, hash or none, got {other:?}")))
            }
        }
    }
}

/// The fallback warning is printed once per process, however many stores it opens.
static WARNED: AtomicBool = AtomicBool::new(false);

/// The configured embedder, else the default: OpenAI-compatible when configured; a local model
/// given by path; with `from_env`, an installed local model; else the hashing embedder.
pub(crate) async fn make_embedder(c: &Config) -> Result<Arc<dyn Embedder>> {
    if let Some(e) = &c.embedder {
        return Ok(e.clone());
    }
    let openai_set = c.openai_key.is_some() || c.openai_base_url.is_some();
    match c.embedder_choice {
        Some(EmbedderChoice::OpenAi) => return openai(c),
        Some(EmbedderChoice::Local) => {
            stray_model(c)?;
            return local(c, true).await?.ok_or_else(no_local_model);
        }
        Some(EmbedderChoice::Hash) => return hash(c),
        Some(EmbedderChoice::None) => return none(c),
        None => {}
    }
    if openai_set {
        return openai(c);
    }
    stray_model(c)?;
    if c.local_model.is_some() || c.discover_local {
        if let Some(e) = local(c, false).await? {
            return Ok(e);
        }
    }
    if c.discover_local && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "no embedding model found: using the lexical hashing embedder (matches words, not meaning); \
             run `marketking model pull` (or scripts/fetch-model.sh) for semantic search"
        );
    }
    hash(c)
}

fn no_local_model() -> Error {
    Error::config(
        "MARKETKING_EMBEDDER",
        "is local but no model is installed: run `marketking model pull` (or scripts/fetch-model.sh), \
         or set MARKETKING_MODEL_DIR to a sentence-transformers folder",
    )
}

fn hash(c: &Config) -> Result<Arc<dyn Embedder>> {
    stray_model(c)?;
    let dims = c.openai_dimensions.unwrap_or(1536);
    Ok(Arc::new(HashingEmbedder::new(dims)?))
}

/// A model name with no embedder that would use it is a mistake to report, not to drop.
fn stray_model(c: &Config) -> Result<()> {
    if let Some(model) = &c.openai_model {
        // The model name would otherwise be dropped without a word, and the store labelled
        // with the hashing embedder's id.
        return Err(Error::config(
            "MARKETKING_EMBEDDING_MODEL",
            format!(
                "is {model:?} but no OpenAI-compatible embedder is configured (OPENAI_API_KEY / OPENAI_BASE_URL); \
                 for a store of vectors computed elsewhere set MARKETKING_EMBEDDER=none"
            ),
        ));
    }
    Ok(())
}

fn none(c: &Config) -> Result<Arc<dyn Embedder>> {
    let model = c.openai_model.clone().ok_or_else(|| {
        Error::config("MARKETKING_EMBEDDING_MODEL", "must name the external model when MARKETKING_EMBEDDER=none")
    })?;
    let dims = c
        .openai_dimensions
        .ok_or_else(|| Error::config("MARKETKING_EMBEDDING_DIMENSIONS", "must be set when MARKETKING_EMBEDDER=none"))?;
    Ok(Arc::new(NoEmbedder::new(model, dims)?))
}

fn openai(c: &Config) -> Result<Arc<dyn Embedder>> {
    #[cfg(feature = "openai")]
    {
        let mut b = crate::OpenAiEmbedder::builder();
        if let Some(k) = &c.openai_key {
            b = b.api_key(k.clone());
        }
        if let Some(u) = &c.openai_base_url {
            b = b.base_url(u.clone());
        }
        if let Some(m) = &c.openai_model {
            b = b.model(m.clone());
        }
        if let Some(d) = c.openai_dimensions {
            b = b.dimensions(d);
        }
        Ok(Arc::new(b.build()?))
    }
    #[cfg(not(feature = "openai"))]
    {
        let _ = c;
        Err(Error::config("OPENAI_API_KEY", "is set (or MARKETKING_EMBEDDER=openai) but the `openai` feature is off"))
    }
}

/// The local model: the configured folder (an error when it cannot be loaded), else with
/// `from_env` the installed default model. `required`: `MARKETKING_EMBEDDER=local`.
#[cfg(feature = "local")]
async fn local(c: &Config, required: bool) -> Result<Option<Arc<dyn Embedder>>> {
    let path = match &c.local_model {
        Some(p) => p.clone(),
        None if c.discover_local || required => match crate::embedder::find_local_model()? {
            Some(m) => m.path,
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    // Reading and hashing 90 MB of weights takes a while: off the async runtime.
    let field = c.local_model_field;
    let loaded = tokio::task::spawn_blocking(move || crate::embedder::LocalEmbedder::load(path))
        .await
        .map_err(|e| Error::Embedder { message: format!("loading the local model failed: {e}"), status: None })?
        .map_err(|e| match e {
            // Name the setting the user wrote: the variable, or the builder's `local_model`.
            Error::Config { field: f, reason } if f == "local_model" => Error::config(field, reason),
            other => other,
        })?;
    tracing::info!(model = loaded.model_id(), path = %loaded.path().display(), "local embedding model loaded");
    Ok(Some(Arc::new(loaded)))
}

#[cfg(not(feature = "local"))]
async fn local(c: &Config, required: bool) -> Result<Option<Arc<dyn Embedder>>> {
    if required || c.local_model.is_some() {
        return Err(Error::config(
            "MARKETKING_EMBEDDER",
            "asks for a local model but marketking-core was built without the `local` feature",
        ));
    }
    Ok(None)
}
