//! `create`, `import`, `get`, `delete`.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use marketking_core::{NewDocument, VectorStore};

use crate::args::{meta_object, CreateArgs, DeleteArgs, GetArgs, ImportArgs};
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
    let opts =
        ImportOptions { format: a.format, batch_size: a.batch_size as usize, skip_invalid: a.skip_invalid, quiet };
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
    store.delete(a.id).await?;
    if !quiet {
        writeln!(out, "deleted {}", a.id)?;
    }
    Ok(ExitCode::SUCCESS)
}
