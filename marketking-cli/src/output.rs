//! Human and JSON rendering of documents, hits and stats.

use std::io::Write;

use marketking_core::{Document, SearchHit, SearchResults, Stats};
use serde::Serialize;

/// `{"hits": [{"score", "document"}]}`: the core's [`SearchResults`], the HTTP service's shape.
pub(crate) fn hits_json(hits: &[SearchHit]) -> SearchResults {
    SearchResults::from(hits.to_vec())
}

/// Prints a JSON value on one line.
pub(crate) fn print_json(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// Collapses whitespace and cuts to `max` characters with an ellipsis.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// Aligned table: rank, score, id, title, source, then the snippet indented below.
pub(crate) fn print_hits(out: &mut impl Write, hits: &[SearchHit]) -> std::io::Result<()> {
    if hits.is_empty() {
        return writeln!(out, "no results");
    }
    let titles: Vec<String> = hits.iter().map(|h| one_line(&h.document.title, 48)).collect();
    let ids: Vec<String> = hits.iter().map(|h| format!("#{}", h.document.id)).collect();
    let tw = titles.iter().map(|t| t.chars().count()).max().unwrap_or(0).max(5);
    let iw = ids.iter().map(|t| t.len()).max().unwrap_or(0).max(2);
    let rw = hits.len().to_string().len();
    // Hybrid hits: the fused score means little to a reader; show the cosine similarity too.
    if hits.iter().any(|h| h.vector.is_some()) {
        writeln!(
            out,
            "{:>rw$}  {:>6}  {:>6}  {}  {}  source",
            "#",
            "fused",
            "cosine",
            pad("id", iw),
            pad("title", tw)
        )?;
        for (i, ((h, id), title)) in hits.iter().zip(&ids).zip(&titles).enumerate() {
            let source = h.document.source.as_deref().unwrap_or("-");
            let cosine = h.vector.map_or_else(|| "-".to_string(), |v| format!("{:.3}", v.score));
            writeln!(
                out,
                "{:>rw$}  {:>6.4}  {cosine:>6}  {}  {}  {}",
                i + 1,
                h.score,
                pad(id, iw),
                pad(title, tw),
                source
            )?;
            writeln!(out, "{:rw$}  {:>6}  {:>6}  {}", "", "", "", one_line(&h.document.content, 80))?;
        }
        return Ok(());
    }
    writeln!(out, "{:>rw$}  {:>6}  {}  {}  source", "#", "score", pad("id", iw), pad("title", tw))?;
    for (i, ((h, id), title)) in hits.iter().zip(&ids).zip(&titles).enumerate() {
        let source = h.document.source.as_deref().unwrap_or("-");
        writeln!(out, "{:>rw$}  {:>6.3}  {}  {}  {}", i + 1, h.score, pad(id, iw), pad(title, tw), source)?;
        writeln!(out, "{:rw$}  {:>6}  {}", "", "", one_line(&h.document.content, 80))?;
    }
    Ok(())
}

/// `field: value` lines.
pub(crate) fn print_document(out: &mut impl Write, d: &Document) -> std::io::Result<()> {
    writeln!(out, "id:         {}", d.id)?;
    writeln!(out, "title:      {}", d.title)?;
    writeln!(out, "source:     {}", d.source.as_deref().unwrap_or("-"))?;
    writeln!(out, "key:        {}", d.key.as_deref().unwrap_or("-"))?;
    writeln!(out, "metadata:   {}", d.metadata)?;
    writeln!(out, "created_at: {}", d.created_at.to_rfc3339())?;
    writeln!(out, "updated_at: {}", d.updated_at.to_rfc3339())?;
    writeln!(out)?;
    writeln!(out, "{}", d.content)
}

/// Bytes as B / KiB / MiB / GiB (indicatif's formatting, as the progress bar shows them).
pub(crate) fn human_bytes(b: u64) -> String {
    indicatif::HumanBytes(b).to_string()
}

pub(crate) fn print_stats(out: &mut impl Write, s: &Stats) -> std::io::Result<()> {
    let st = &s.storage;
    writeln!(out, "backend:    {}", st.backend)?;
    writeln!(out, "location:   {}", st.location)?;
    writeln!(out, "documents:  {}", st.documents)?;
    writeln!(out, "size:       {}", human_bytes(st.table_bytes))?;
    match &st.index {
        Some(ix) => {
            let quantization = match ix.quantization {
                marketking_core::Quantization::None => String::new(),
                q => format!(" quantization {q}"),
            };
            writeln!(
                out,
                "index:      {} {}{quantization} ({})",
                ix.name,
                serde_json::to_string(&ix.kind).unwrap_or_default(),
                human_bytes(ix.bytes)
            )?;
            if let Some(t) = &ix.tuned {
                let setting = [("ef_search", t.ef_search), ("probes", t.probes), ("oversample", t.oversample)]
                    .into_iter()
                    .filter_map(|(name, v)| v.map(|v| format!("{name} {v}")))
                    .collect::<Vec<_>>()
                    .join(", ");
                writeln!(
                    out,
                    "tuned:      {setting} (recall@{} {:.3} against exact search, target {})",
                    t.k, t.recall, t.target
                )?;
            }
        }
        None if s.storage.backend == "embedded" => {
            writeln!(out, "index:      none (int8 scan of every row, exact re-rank)")?
        }
        None => writeln!(out, "index:      none (exact search)")?,
    }
    writeln!(out, "model:      {} ({} dimensions)", s.model, s.dimensions)?;
    writeln!(out, "embedder:   {}", crate::commands::model::describe_embedder(&s.model))?;
    if let Some(r) = &s.replication {
        for replica in &r.replicas {
            let state = match (&replica.reason, replica.lag_ms) {
                (Some(reason), _) => format!("out of rotation: {reason}"),
                (None, Some(lag)) => format!("in rotation, lag {lag} ms"),
                (None, None) => "in rotation".to_string(),
            };
            writeln!(out, "replica:    {} ({state}; bound {} ms)", replica.name, r.max_lag_ms)?;
        }
    }
    if !st.sources.is_empty() {
        writeln!(out, "sources:")?;
        let w = st.sources.iter().map(|c| c.source.as_deref().unwrap_or("(none)").chars().count()).max().unwrap_or(0);
        for c in &st.sources {
            writeln!(out, "  {}  {:>8}", pad(c.source.as_deref().unwrap_or("(none)"), w), c.count)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_and_trims() {
        assert_eq!(one_line("a\n  b\tc", 80), "a b c");
        let long = "word ".repeat(40);
        let cut = one_line(&long, 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn bytes_are_readable() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(8192), "8.00 KiB");
    }
}
