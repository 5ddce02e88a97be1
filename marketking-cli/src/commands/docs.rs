//! `create`, `import`, `get`, `delete`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use marketking_core::{Filter, NewDocument, VectorStore};

use crate::args::{meta_object, parse_filter, CountArgs, CreateArgs, DeleteArgs, GetArgs, ImportArgs};
use crate::import::{import as run_import, ImportOptions};
use crate::output::{print_document, print_json};

pub(super) async fn create(store: &VectorStore, out: &mut impl Write, a: CreateArgs) -> anyhow::Result<ExitCode> {
    let content = if a.content == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read the content from stdin")?;
        s
    } else {
        a.content
    };
    let mut doc = NewDocument::new(a.title, content).with_metadata(meta_object(&a.meta));
    if let Some(s) = a.source {
        doc = doc.with_source(s);
    }
    if let Some(k) = a.key {
        doc = doc.with_key(k);
    }
    let stored = store.create(doc).await?;
    writeln!(out, "{}", stored.id)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn import(
    store: &VectorStore,
    out: &mut impl Write,
    a: ImportArgs,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    if !quiet {
        // stderr, like the progress bar: stdout keeps the summary only.
        eprintln!("embedding with {}", super::model::describe_embedder(store.model()));
    }
    let opts = ImportOptions {
        format: a.format,
        batch_size: a.batch_size as usize,
        skip_invalid: a.skip_invalid,
        quiet,
        keep_ids: a.keep_ids,
    };
    let summary = run_import(store, &a.file, &opts).await?;
    if !quiet {
        writeln!(out, "{}", summary.line(&a.file.display().to_string()))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn get(store: &VectorStore, out: &mut impl Write, a: GetArgs) -> anyhow::Result<ExitCode> {
    let doc = store.get(a.id).await?;
    if a.json {
        print_json(out, &doc)?;
    } else {
        print_document(out, &doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn delete(
    store: &VectorStore,
    out: &mut impl Write,
    a: DeleteArgs,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let filter = match (a.id, &a.filter) {
        (Some(id), _) => {
            store.delete(id).await?;
            if !quiet {
                writeln!(out, "deleted {id}")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        (None, Some(text)) => parse_filter(text)?,
        (None, None) => Filter::everything(),
    };
    // `{}` (or no filter) deletes everything, which needs --all.
    if filter.is_empty() && !a.all {
        anyhow::bail!("the filter matches every document; pass --all to delete them all");
    }
    let n = store.count(&filter).await?;
    if n == 0 {
        if !quiet {
            writeln!(out, "deleted 0 documents (none matched)")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !a.yes && !confirm(n)? {
        anyhow::bail!("nothing deleted");
    }
    let deleted = if filter.is_empty() { store.delete_all().await? } else { store.delete_by_filter(&filter).await? };
    if !quiet {
        writeln!(out, "deleted {deleted} documents")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal whether to delete `n` documents; without a terminal, refuses.
fn confirm(n: u64) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!("refusing to delete {n} documents without confirmation: stdin is not a terminal; pass --yes");
    }
    eprint!("delete {n} documents? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub(super) async fn count(store: &VectorStore, out: &mut impl Write, a: CountArgs) -> anyhow::Result<ExitCode> {
    let filter = match &a.filter {
        Some(text) => parse_filter(text)?,
        None => Filter::everything(),
    };
    let n = store.count(&filter).await?;
    if a.json {
        print_json(out, &serde_json::json!({ "count": n }))?;
    } else {
        writeln!(out, "{n}")?;
    }
    Ok(ExitCode::SUCCESS)
}
