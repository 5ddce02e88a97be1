//! The full-text leg on the embedded store: SQLite FTS5 with BM25, and the fusion of both legs.
//!
//! The FTS5 query is built from the text's lexemes (`lexemes.rs`: PostgreSQL's), each quoted (so nothing a user types is
//! FTS5 syntax), first all of them (implicit AND), then any of them (OR): documents with every
//! word come first, as on PostgreSQL. The score mirrors PostgreSQL's shape: 1 for having every
//! word plus `s / (s + 1)` of the BM25 relevance `s` (title weighs 2.5 times the content, as
//! PostgreSQL's weights A and B do).

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;

use super::scan::Candidate;
use crate::error::Result;
use crate::search_mode::{Fusion, TITLE_WEIGHT};

/// An FTS5 query of `words`, every one quoted, joined by `op` (" " = AND, " OR ").
fn fts_query(words: &[String], op: &str) -> String {
    words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(op)
}

/// The best `limit` documents for `text` that `passes` (the search's filters and exclusion),
/// best first.
pub(super) fn candidates(
    conn: &Connection,
    text: &str,
    english: bool,
    limit: usize,
    passes: &dyn Fn(i64) -> bool,
) -> Result<Vec<Candidate>> {
    let words = super::lexemes::query_lexemes(text, english);
    if words.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT rowid, bm25(documents_fts, {TITLE_WEIGHT:?}, 1.0) AS r FROM documents_fts WHERE documents_fts MATCH ?1 ORDER BY r, rowid"
    ))?;
    let mut out: Vec<Candidate> = Vec::new();
    let mut seen: HashSet<i64> = HashSet::new();
    // All words first (bonus 1), then any word; a single word is one pass.
    let passes_list: Vec<(String, f32)> = match words.len() {
        1 => vec![(fts_query(&words, " "), 1.0)],
        _ => vec![(fts_query(&words, " "), 1.0), (fts_query(&words, " OR "), 0.0)],
    };
    for (query, bonus) in passes_list {
        let mut rows = stmt.query([&query])?;
        while let Some(r) = rows.next()? {
            if out.len() >= limit {
                return Ok(out);
            }
            let id: i64 = r.get(0)?;
            let bm25: f64 = r.get(1)?;
            if !seen.insert(id) || !passes(id) {
                continue;
            }
            let s = (-bm25).max(0.0);
            out.push(Candidate { score: bonus + (s / (s + 1.0)) as f32, id });
        }
    }
    Ok(out)
}

/// A fused hit: its fused score and each leg's rank and score.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fused {
    pub(super) id: i64,
    pub(super) score: f32,
    pub(super) vector: Option<(usize, f32)>,
    pub(super) text: Option<(usize, f32)>,
}

/// Reciprocal Rank Fusion of the two legs (each best first), best `k` first (ties by id).
pub(super) fn fuse(vector: &[Candidate], text: &[Candidate], fusion: &Fusion, k: usize) -> Vec<Fused> {
    let mut by_id: HashMap<i64, Fused> = HashMap::new();
    for (i, c) in vector.iter().enumerate() {
        by_id.entry(c.id).or_insert(Fused { id: c.id, score: 0.0, vector: None, text: None }).vector =
            Some((i + 1, c.score));
    }
    for (i, c) in text.iter().enumerate() {
        by_id.entry(c.id).or_insert(Fused { id: c.id, score: 0.0, vector: None, text: None }).text =
            Some((i + 1, c.score));
    }
    let mut fused: Vec<Fused> = by_id
        .into_values()
        .map(|mut f| {
            f.score = fusion.score(f.vector.map(|v| v.0), f.text.map(|t| t.0)) as f32;
            f
        })
        .collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    fused.truncate(k);
    fused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_quote_every_word_so_nothing_is_fts5_syntax() {
        let w = super::super::lexemes::query_lexemes("Tent NEAR \"rain\" OR tent* -dry", false);
        assert_eq!(w, ["tent", "near", "rain", "or", "dry"]);
        assert_eq!(fts_query(&w, " OR "), "\"tent\" OR \"near\" OR \"rain\" OR \"or\" OR \"dry\"");
    }

    #[test]
    fn fusion_favours_documents_both_legs_found() {
        let c = |id, score| Candidate { id, score };
        let fused = fuse(&[c(1, 0.9), c(2, 0.8)], &[c(2, 1.5), c(3, 1.2)], &Fusion::default(), 10);
        assert_eq!(fused.iter().map(|f| f.id).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert_eq!(fused.first().and_then(|f| f.vector), Some((2, 0.8)));
        assert_eq!(fused.first().and_then(|f| f.text), Some((1, 1.5)));
    }
}
