//! Local embedding throughput: texts per second of [`LocalEmbedder`] over text files (one
//! text per line), for BENCHMARKS.md next to sentence-transformers (`scripts/bench-embed.sh`
//! runs both on the same files).
//!
//! Run with: `cargo run --release -p marketking-benches --bin embed_bench -- FILE... [--token-budget N]`

use std::time::Instant;

use anyhow::Context;
use marketking_core::{find_local_model, Embedder, LocalEmbedder};

fn main() -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut budget = marketking_core::DEFAULT_TOKEN_BUDGET;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--token-budget" => budget = args.next().context("--token-budget N")?.parse()?,
            _ => files.push(a),
        }
    }
    anyhow::ensure!(!files.is_empty(), "usage: embed_bench FILE... [--token-budget N]");
    let dir = find_local_model()?.context("no local model: bash scripts/fetch-model.sh")?.path;
    let model = LocalEmbedder::builder(&dir).token_budget(budget).build()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        // Warm-up: first-touch allocations and thread start-up are not part of the rate.
        model.embed(&vec!["warm up".to_string(); 8]).await?;
        for f in &files {
            let texts: Vec<String> =
                std::fs::read_to_string(f)?.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
            let start = Instant::now();
            for chunk in texts.chunks(model.max_batch_size()) {
                model.embed(chunk).await?;
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{f}\t{}\ttexts\t{secs:.2}\ts\t{:.1}\ttexts/s\t(token budget {budget})",
                texts.len(),
                texts.len() as f64 / secs
            );
        }
        anyhow::Ok(())
    })
}
