//! Run with: `cargo run -p marketking-examples --example quickstart`
//!
//! (`bash scripts/fetch-model.sh` first installs the local model: semantic search offline.)
//!
//! Stores a few documents and searches them. With no environment this uses the embedded store
//! (`./marketking.db`, or `MARKETKING_DB_PATH`), the local model when one is installed (else the
//! lexical hashing embedder, with a warning) and an in-process cache: no services, no API key.
//! Set `DATABASE_URL` (PostgreSQL + pgvector), `REDIS_URL` and `OPENAI_API_KEY` to run the same
//! code on the production stack.

use marketking_core::{metadata, NewDocument, SearchOptions, VectorStore};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = VectorStore::builder().from_env()?.build().await?;
    println!("store: {} ({})", store.backend_kind(), store.stats().await?.storage.location);
    let model = store.model();
    let kind = if model.starts_with("local:") {
        "local model, semantic"
    } else if model.starts_with("openai:") {
        "OpenAI-compatible service"
    } else if model.starts_with("marketking-hash-") {
        "hashing embedder: lexical, not semantic; `bash scripts/fetch-model.sh` installs the local model"
    } else {
        "custom"
    };
    println!("embedder: {model} ({kind})");

    // Keys make the example idempotent: running it twice updates nothing and embeds nothing.
    let docs = [
        ("shoes-trail", "Trail running shoes", "Grippy, light shoes for rocky mountain trails.", "catalog"),
        ("shoes-road", "Road running shoes", "Cushioned running shoes for city roads and marathons.", "catalog"),
        ("tent-2p", "Two-person tent", "A light backpacking tent that sets up in five minutes.", "catalog"),
        ("help-returns", "Returns and refunds", "Return unworn shoes within 30 days for a full refund.", "help"),
        ("help-shipping", "Shipping times", "Orders ship in two working days; express delivery is available.", "help"),
    ];
    let report = store
        .batch(
            docs.iter()
                .map(|(key, title, content, source)| {
                    NewDocument::new(*title, *content)
                        .with_source(*source)
                        .with_key(*key)
                        .with_metadata(metadata!({"lang": "en"}))
                })
                .collect(),
        )
        .await?;
    println!("stored: {} created, {} updated, {} unchanged", report.created, report.updated, report.unchanged);

    // The last query shares no word with the tent: only a semantic embedder finds it.
    for (query, opts) in [
        ("running shoes", SearchOptions::top(3)),
        ("how do I return shoes", SearchOptions::top(2).source("help")),
        ("somewhere to sleep outdoors", SearchOptions::top(1)),
    ] {
        println!("\nsearch {query:?}:");
        for hit in store.search(query, &opts).await? {
            println!("  {:.3}  {:<22} [{}]", hit.score, hit.document.title, hit.document.source.unwrap_or_default());
        }
    }
    Ok(())
}
