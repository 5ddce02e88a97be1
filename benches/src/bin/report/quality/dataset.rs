//! A known-item dataset on disk: `corpus.jsonl` (the `marketking import` format, every line with
//! a `key`) and `queries.jsonl` (`{"query": "...", "expected": ["key", ...]}`), as written by
//! `scripts/build-devset.py`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use marketking_core::NewDocument;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One query and the keys that count as right answers.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Query {
    pub(crate) query: String,
    pub(crate) expected: Vec<String>,
}

/// What identifies a dataset in the printed report and the JSON result file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DatasetInfo {
    pub(crate) dir: PathBuf,
    /// SHA-256 of the SHA256SUMS text naming both files (`scripts/build-devset.py` prints it).
    pub(crate) sha256: String,
    pub(crate) corpus_sha256: String,
    pub(crate) queries_sha256: String,
    /// Documents and queries in the files.
    pub(crate) documents_in_files: usize,
    pub(crate) queries_in_files: usize,
    /// Documents and queries used by this run (`--docs` / `--queries` take a subset).
    pub(crate) documents: usize,
    pub(crate) queries: usize,
    /// `title` of manifest.json (how titles were made), when the folder has one.
    pub(crate) title: Option<String>,
}

/// The corpus and queries of one run.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub(crate) info: DatasetInfo,
    pub(crate) docs: Vec<NewDocument>,
    pub(crate) queries: Vec<Query>,
}

impl Dataset {
    /// The corpus `n` times: copies keyed `KEY~2` ... `KEY~n` (see `--repeat`).
    pub(crate) fn repeat(&mut self, n: usize) {
        let originals = self.docs.clone();
        for copy in 2..=n {
            self.docs.extend(originals.iter().cloned().map(|mut d| {
                d.key = d.key.map(|k| format!("{k}~{copy}"));
                d
            }));
        }
        self.info.documents = self.docs.len();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn read(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path)
        .with_context(|| format!("cannot read {} (build the set with `bash scripts/build-devset.sh`)", path.display()))
}

/// Loads `dir`, keeping the first `max_queries` queries (the file's order is a seeded random
/// sample, so a prefix is a random subset) and at most `max_docs` documents: every expected
/// document of the kept queries, then the others in file order.
pub(crate) fn load(dir: &Path, max_queries: Option<usize>, max_docs: Option<usize>) -> anyhow::Result<Dataset> {
    let corpus_bytes = read(dir, "corpus.jsonl")?;
    let queries_bytes = read(dir, "queries.jsonl")?;
    let (corpus_sha256, queries_sha256) = (sha256_hex(&corpus_bytes), sha256_hex(&queries_bytes));
    let sums = format!("{corpus_sha256}  corpus.jsonl\n{queries_sha256}  queries.jsonl\n");
    if let Ok(recorded) = std::fs::read_to_string(dir.join("SHA256SUMS")) {
        if recorded != sums {
            eprintln!(
                "warning: {} does not match the files (edited since the build?)",
                dir.join("SHA256SUMS").display()
            );
        }
    }
    let title = std::fs::read(dir.join("manifest.json"))
        .ok()
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m).ok())
        .and_then(|m| m.get("title").and_then(|t| t.as_str()).map(str::to_string));

    let mut docs = Vec::new();
    let mut keys = HashSet::new();
    for (i, line) in std::str::from_utf8(&corpus_bytes).context("corpus.jsonl is not UTF-8")?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let doc: NewDocument = serde_json::from_str(line).with_context(|| format!("corpus.jsonl:{}", i + 1))?;
        let Some(key) = doc.key.clone() else { bail!("corpus.jsonl:{}: key: is required in a dataset", i + 1) };
        if !keys.insert(key.clone()) {
            bail!("corpus.jsonl:{}: key: {key:?} appears twice", i + 1);
        }
        docs.push(doc);
    }
    let mut queries = Vec::new();
    for (i, line) in std::str::from_utf8(&queries_bytes).context("queries.jsonl is not UTF-8")?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let q: Query = serde_json::from_str(line).with_context(|| format!("queries.jsonl:{}", i + 1))?;
        if q.expected.is_empty() {
            bail!("queries.jsonl:{}: expected: is empty", i + 1);
        }
        if let Some(missing) = q.expected.iter().find(|k| !keys.contains(*k)) {
            bail!("queries.jsonl:{}: expected: {missing:?} is not a key of corpus.jsonl", i + 1);
        }
        queries.push(q);
    }
    let (documents_in_files, queries_in_files) = (docs.len(), queries.len());
    if let Some(n) = max_queries {
        queries.truncate(n);
    }
    if let Some(n) = max_docs {
        docs = subset(docs, &queries, n)?;
    }
    let info = DatasetInfo {
        dir: dir.to_path_buf(),
        sha256: sha256_hex(sums.as_bytes()),
        corpus_sha256,
        queries_sha256,
        documents_in_files,
        queries_in_files,
        documents: docs.len(),
        queries: queries.len(),
        title,
    };
    Ok(Dataset { info, docs, queries })
}

/// At most `n` documents: the expected ones first, then distractors in file order; file order kept.
fn subset(docs: Vec<NewDocument>, queries: &[Query], n: usize) -> anyhow::Result<Vec<NewDocument>> {
    let needed: HashSet<&str> = queries.iter().flat_map(|q| q.expected.iter().map(String::as_str)).collect();
    if needed.len() > n {
        bail!("--docs {n} is fewer than the {} documents the queries expect", needed.len());
    }
    let mut room = n - needed.len();
    Ok(docs
        .into_iter()
        .filter(|d| {
            let expected = d.key.as_deref().is_some_and(|k| needed.contains(k));
            let keep = expected || room > 0;
            if keep && !expected {
                room -= 1;
            }
            keep
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(key: &str) -> NewDocument {
        NewDocument::new("t", "c").with_key(key)
    }

    #[test]
    fn subset_keeps_every_expected_document_and_fills_with_distractors_in_order() {
        let docs = vec![doc("a"), doc("b"), doc("c"), doc("d"), doc("e")];
        let queries = vec![Query { query: "q".into(), expected: vec!["d".into()] }];
        let kept: Vec<_> = subset(docs, &queries, 3).unwrap().into_iter().map(|d| d.key.unwrap()).collect();
        assert_eq!(kept, ["a", "b", "d"]);
    }

    #[test]
    fn subset_smaller_than_the_answers_is_an_error() {
        let queries = vec![Query { query: "q".into(), expected: vec!["a".into(), "b".into()] }];
        assert!(subset(vec![doc("a"), doc("b")], &queries, 1).is_err());
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
