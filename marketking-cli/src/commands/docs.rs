//! `create`, `import`, `get`, `update`, `list`, `delete`, `count`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use marketking_core::{DocumentPatch, Filter, ListOptions, Metadata, NewDocument, VectorStore};

use crate::args::{
    meta_object, parse_filter, CountArgs, CreateArgs, DeleteArgs, GetArgs, ImportArgs, ListArgs, UpdateArgs,
};
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
    redis_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if a.background {
        return super::jobs::import_background(store, out, &a, quiet, redis_url).await;
    }
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
        assume_new: a.assume_new,
    };
    let summary = run_import(store, &a.file, &opts).await?;
    if !quiet {
        writeln!(out, "{}", summary.line(&a.file.display().to_string()))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn get(store: &VectorStore, out: &mut impl Write, a: GetArgs) -> anyhow::Result<ExitCode> {
    let mut doc = match (a.id, &a.key) {
        (_, Some(key)) => store.get_by_key(key).await?,
        (Some(id), None) if a.with_embedding => store.get_with_embedding(id).await?,
        (Some(id), None) => store.get(id).await?,
        (None, None) => anyhow::bail!("give a document id or --key"),
    };
    if a.with_embedding && doc.embedding.is_none() {
        doc = store.get_with_embedding(doc.id).await?;
    }
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
    if let Some(key) = &a.key {
        store.delete_by_key(key).await?;
        if !quiet {
            writeln!(out, "deleted {key:?}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
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

pub(super) async fn update(store: &VectorStore, out: &mut impl Write, a: UpdateArgs) -> anyhow::Result<ExitCode> {
    let mut patch = DocumentPatch::new();
    if let Some(t) = a.title {
        patch = patch.title(t);
    }
    if let Some(c) = a.content {
        patch = patch.content(if c == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("cannot read the content from stdin")?;
            s
        } else {
            c
        });
    }
    if let Some(s) = a.source {
        patch = patch.source(s);
    } else if a.clear_source {
        patch = patch.clear_source();
    }
    if !a.meta.is_empty() {
        patch = patch.metadata(meta_object(&a.meta));
    } else if a.clear_meta {
        patch = patch.metadata(Metadata::new());
    }
    if patch.is_empty() {
        anyhow::bail!("nothing to change: give --title, --content, --source, --clear-source, --meta or --clear-meta");
    }
    let doc = store.update(a.id, patch).await?;
    if a.json {
        print_json(out, &doc)?;
    } else {
        writeln!(out, "updated {}", doc.id)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list(store: &VectorStore, out: &mut impl Write, a: ListArgs) -> anyhow::Result<ExitCode> {
    let filter = match &a.filter {
        Some(text) => parse_filter(text)?,
        None => Filter::everything(),
    };
    let limit = a.limit as usize;
    let page = store.list_page(a.after, &ListOptions::default().filter(filter).page_size(limit)).await?;
    let next_after = page.last().filter(|_| page.len() == limit).map(|d| d.id);
    if a.json {
        print_json(out, &serde_json::json!({ "documents": page, "next_after": next_after }))?;
    } else {
        for d in &page {
            let source = d.source.as_deref().unwrap_or("-");
            let key = d.key.as_deref().unwrap_or("-");
            writeln!(out, "{:>8}  {:<24}  {:<16}  {}", d.id, key, source, d.title)?;
        }
        if let Some(n) = next_after {
            writeln!(out, "next page: --after {n}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
