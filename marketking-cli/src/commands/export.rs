//! `export`: every document as JSONL (the core's line format, which `import` reads back with
//! keys and times), paging by id.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use marketking_core::{Document, VectorStore};

use crate::args::ExportArgs;

const PAGE: usize = 1000;

fn write_page(w: &mut impl Write, docs: &[Document]) -> anyhow::Result<()> {
    for d in docs {
        w.write_all(marketking_core::jsonl::to_line(d).as_bytes())?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

pub(super) async fn run(
    store: &VectorStore,
    out: &mut impl Write,
    a: ExportArgs,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let mut file = match &a.file {
        Some(p) if p.as_os_str() != "-" => {
            Some(BufWriter::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?))
        }
        _ => None,
    };
    let mut after = 0i64;
    let mut total = 0u64;
    loop {
        let page = store.list(after, PAGE, a.with_embeddings).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        total += page.len() as u64;
        match file.as_mut() {
            Some(f) => write_page(f, &page)?,
            None => write_page(out, &page)?,
        }
        if page.len() < PAGE {
            break;
        }
    }
    if let (Some(mut f), Some(p)) = (file, &a.file) {
        f.flush().with_context(|| format!("cannot write {}", p.display()))?;
        if !quiet {
            writeln!(out, "exported {total} documents to {}", p.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
