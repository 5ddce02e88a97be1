//! `search` and `similar`.

use std::io::Write;
use std::process::ExitCode;

use marketking_core::{Fusion, Mmr, SearchHit, SearchOptions, VectorStore};

use crate::args::{meta_object, SearchArgs, SimilarArgs};
use crate::output::{hits_json, print_hits, print_json};

fn print(out: &mut impl Write, hits: &[SearchHit], json: bool) -> std::io::Result<()> {
    if json {
        print_json(out, &hits_json(hits))
    } else {
        print_hits(out, hits)
    }
}

pub(super) async fn search(store: &VectorStore, out: &mut impl Write, a: SearchArgs) -> anyhow::Result<ExitCode> {
    let mut opts = SearchOptions::top(a.k);
    opts.sources = a.sources;
    if !a.meta.is_empty() {
        opts.metadata = Some(meta_object(&a.meta));
    }
    opts.min_score = a.min_score;
    opts.filter = a.filter.as_deref().map(crate::args::parse_filter).transpose()?;
    opts.mode = Some(a.mode.into());
    opts.fusion =
        Fusion { rrf_k: a.rrf_k, vector_weight: a.vector_weight, text_weight: a.text_weight, ..Fusion::default() };
    opts.ef_search = a.ef_search;
    opts.oversample = a.oversample;
    opts.exact = a.exact;
    opts.mmr = a.mmr.map(|lambda| Mmr { lambda, fetch_k: a.mmr_fetch_k.unwrap_or(Mmr::default_fetch_k(a.k)) });
    let vector = match &a.vector {
        Some(text) => Some(
            serde_json::from_str::<Vec<f32>>(text)
                .map_err(|e| anyhow::anyhow!("--vector must be a JSON array of numbers: {e}"))?,
        ),
        None => None,
    };
    if a.explain {
        let plan = match (&vector, &a.query) {
            (Some(v), _) => store.explain_search(v, &opts).await?,
            (None, Some(q)) => store.explain_query(q, &opts).await?,
            (None, None) => anyhow::bail!("give a query or --vector"),
        };
        writeln!(out, "{plan}")?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.ids_only {
        let hits = match (&vector, &a.query) {
            (Some(v), _) => {
                opts.mode = None;
                store.search_ids_by_vector(v, &opts).await?
            }
            (None, Some(q)) => store.search_ids(q, &opts).await?,
            (None, None) => anyhow::bail!("give a query or --vector"),
        };
        if a.json {
            print_json(out, &serde_json::json!({ "hits": hits }))?;
        } else {
            for h in &hits {
                writeln!(out, "{}\t{:.4}", h.id, h.score)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let hits = match (&vector, &a.query) {
        (Some(v), _) => {
            // A vector search ranks by the vector only; the default hybrid mode is for text.
            opts.mode = None;
            store.search_by_vector(v, &opts).await?
        }
        (None, Some(q)) => store.search(q, &opts).await?,
        (None, None) => anyhow::bail!("give a query or --vector"),
    };
    print(out, &hits, a.json)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn similar(store: &VectorStore, out: &mut impl Write, a: SimilarArgs) -> anyhow::Result<ExitCode> {
    let hits = store.find_similar(a.id, &SearchOptions::top(a.k)).await?;
    print(out, &hits, a.json)?;
    Ok(ExitCode::SUCCESS)
}
