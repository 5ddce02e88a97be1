//! `demo`: loads the bundled corpus into an empty store and runs example searches.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use marketking_core::{NewDocument, SearchOptions, VectorStore};

use crate::output::print_hits;

/// 247 marketplace listings, help articles, blog posts and reviews (see demo/make_corpus.py).
const CORPUS: &str = include_str!("../../demo/corpus.jsonl");

/// The documents of the bundled corpus.
pub(crate) fn corpus() -> anyhow::Result<Vec<NewDocument>> {
    CORPUS
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("demo corpus line {}", i + 1)))
        .collect()
}

pub(super) async fn run(store: &VectorStore, out: &mut impl Write, quiet: bool) -> anyhow::Result<ExitCode> {
    let stats = store.stats().await?;
    if !quiet {
        writeln!(out, "embedder: {}", super::model::describe_embedder(&stats.model))?;
    }
    let existing = stats.storage.documents;
    if existing == 0 {
        let docs = corpus()?;
        let n = docs.len();
        let report = store.batch(docs).await.context("loading the demo corpus")?;
        store.analyze().await?;
        if !quiet {
            writeln!(out, "loaded {} demo documents ({n} in the corpus)", report.created)?;
        }
    } else if !quiet {
        writeln!(out, "the store already holds {existing} documents; not loading the demo corpus")?;
    }
    let examples: Vec<(&str, SearchOptions)> = vec![
        ("waterproof boots for hiking", SearchOptions::top(3)),
        ("how do I send something back and get my money", SearchOptions::top(3).source("help")),
        (
            "wireless headphones for the office",
            SearchOptions::top(3).metadata(marketking_core::metadata!({"category": "electronics"})),
        ),
        ("tent that survived the rain", SearchOptions::top(3).source("reviews")),
    ];
    for (query, opts) in examples {
        let mut filters = Vec::new();
        if !opts.sources.is_empty() {
            filters.push(format!("--source {}", opts.sources.join(",")));
        }
        if let Some(m) = &opts.metadata {
            for (k, v) in m {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                filters.push(format!("--meta {k}={v}"));
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "$ marketking search {query:?} -k {}{}",
            opts.k,
            filters.iter().map(|f| format!(" {f}")).collect::<String>()
        )?;
        let hits = store.search(query, &opts).await?;
        print_hits(out, &hits)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn corpus_is_large_varied_and_keyed() {
        let docs = super::corpus().unwrap();
        assert!(docs.len() >= 200, "{}", docs.len());
        let mut sources: Vec<_> = docs.iter().filter_map(|d| d.source.clone()).collect();
        sources.sort();
        sources.dedup();
        assert_eq!(sources, vec!["blog", "catalog", "help", "reviews"]);
        assert!(docs.iter().all(|d| d.key.is_some() && d.validate(1536).is_ok()));
        let mut keys: Vec<_> = docs.iter().map(|d| d.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), docs.len());
    }
}
