//! Deterministic test documents and queries (no randomness between runs, so figures compare).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

const WORDS: &[&str] = &[
    "trail",
    "running",
    "shoes",
    "waterproof",
    "boots",
    "tent",
    "kettle",
    "stove",
    "jacket",
    "rain",
    "wool",
    "socks",
    "backpack",
    "lantern",
    "camping",
    "hiking",
    "summit",
    "river",
    "kayak",
    "paddle",
    "helmet",
    "bicycle",
    "chain",
    "saddle",
    "gloves",
    "winter",
    "summer",
    "light",
    "heavy",
    "compact",
    "steel",
    "copper",
    "cotton",
    "linen",
    "leather",
    "grippy",
    "durable",
    "repair",
    "warranty",
    "refund",
    "shipping",
    "order",
    "invoice",
    "account",
    "password",
    "login",
    "review",
    "rating",
    "guide",
    "tips",
    "beginner",
    "expert",
    "family",
    "travel",
    "coffee",
    "grinder",
    "espresso",
    "filter",
    "bottle",
    "thermos",
    "blanket",
    "pillow",
    "mattress",
    "hammock",
    "rope",
    "knife",
    "axe",
    "saw",
    "compass",
    "map",
    "battery",
    "solar",
    "charger",
    "cable",
    "speaker",
    "radio",
    "garden",
    "hose",
    "shovel",
    "rake",
    "seeds",
    "soil",
    "planter",
    "window",
    "door",
    "lamp",
    "desk",
    "chair",
    "shelf",
];

/// A document of the generated corpus.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    /// Caller key, unique.
    pub(crate) key: String,
    /// Title.
    pub(crate) title: String,
    /// Content.
    pub(crate) content: String,
}

impl Doc {
    /// The JSON object the CLI imports and the API accepts.
    pub(crate) fn to_json(&self) -> Value {
        json!({"key": self.key, "title": self.title, "content": self.content, "source": "suite"})
    }
}

/// xorshift64*: a few lines instead of a dependency, and the same sequence on every run.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn word(&mut self) -> &'static str {
        WORDS.get(self.next() as usize % WORDS.len()).copied().unwrap_or("word")
    }

    fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }
}

/// `n` keyed documents `<prefix>-000001`...
pub(crate) fn corpus(prefix: &str, n: usize) -> Vec<Doc> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (1..=n)
        .map(|i| Doc {
            key: format!("{prefix}-{i:06}"),
            title: format!("{} {i}", rng.words(3)),
            content: format!("{} item {i}", rng.words(14)),
        })
        .collect()
}

/// `n` search queries over the corpus vocabulary.
pub(crate) fn queries(n: usize) -> Vec<String> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    (0..n).map(|_| rng.words(3)).collect()
}

/// Writes `docs` as JSONL (the CLI's import format).
pub(crate) fn write_jsonl(path: &Path, docs: &[Doc]) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for d in docs {
        writeln!(f, "{}", d.to_json())?;
    }
    f.flush()?;
    Ok(())
}
