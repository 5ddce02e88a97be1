//! Recall-aware tuning on the store's own data: [`VectorStore::tune_recall`].
//!
//! Stored documents serve as queries (each one's own row left out of its results, as a user's
//! query is not in the table). Their exact top `k` is the truth; the index is searched at rising
//! values of its search-time knob until recall@k reaches the target, then the gap below that
//! value is bisected. The smallest value found is kept with the index (PostgreSQL: in its
//! comment), where every store on the table picks it up.

use std::collections::HashSet;
use std::time::Instant;

use super::tune_options::{TuneKnob, TuneOptions, TuneReport, TuneStep};
use super::VectorStore;
use crate::backend::{IndexInfo, IndexKind, Quantization, SearchQuery, TunedSettings};
use crate::document::{SearchOptions, DEFAULT_EF_SEARCH, DEFAULT_PROBES, EF_SEARCH_RANGE, OVERSAMPLE_RANGE};
use crate::error::{Error, Result};

/// The values tried first, ascending; the gap below the first that reaches the target is then
/// bisected.
fn ladder(knob: TuneKnob, k: usize, index: &IndexInfo) -> Vec<u32> {
    let rows = (k + 1) as u32;
    match knob {
        // ef_search below the row count returns fewer rows than asked for.
        TuneKnob::EfSearch => [10, 20, 40, 60, 80, 100, 150, 200, 300, 400, 600, 800, 1000]
            .into_iter()
            .map(|v: u32| v.max(rows))
            .filter(|v| EF_SEARCH_RANGE.contains(v))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
        TuneKnob::Probes => {
            let lists = match index.kind {
                IndexKind::IvfFlat { lists } => lists.unwrap_or(DEFAULT_PROBES),
                _ => DEFAULT_PROBES,
            }
            .max(1);
            let mut v: Vec<u32> = [1, 2, 4, 6, 8, 10, 15, 20, 30, 40, 60, 80, 100, 150, 200, 300, 500, 1000]
                .into_iter()
                .filter(|&p| p < lists)
                .collect();
            v.push(lists);
            v
        }
        // The index is asked for k * oversample rows, at most 1000 (ef_search's ceiling).
        TuneKnob::Oversample => {
            let most = (1000 / rows).clamp(*OVERSAMPLE_RANGE.start(), *OVERSAMPLE_RANGE.end());
            let mut v: Vec<u32> =
                [1, 2, 3, 4, 6, 8, 10, 15, 20, 30, 40, 60, 80, 100].into_iter().filter(|&o| o < most).collect();
            v.push(most);
            v
        }
    }
}

impl VectorStore {
    /// Measures recall@k of the vector index against exact search on this store's own data and
    /// finds the smallest search setting (`ef_search`, `probes` or `oversample`, by index form)
    /// that reaches `opts.target`; unless `opts.dry_run`, keeps it with the index so searches
    /// that do not set the value themselves use it.
    ///
    /// [`Error::InvalidInput`] naming `index` when the table has no vector index (searches are
    /// exact then) and naming the option for bad options; [`Error::Unsupported`] on the embedded
    /// store (not measured there yet) and, unless dry-run, on a read-only store.
    pub async fn tune_recall(&self, opts: &TuneOptions) -> Result<TuneReport> {
        opts.validate()?;
        if self.backend_kind() == "embedded" {
            return Err(Error::Unsupported {
                operation: "tune_recall on the embedded store (not built yet: its HNSW graph takes SearchOptions::ef_search, default 800, and re-ranks exactly)"
                    .into(),
            });
        }
        if !opts.dry_run {
            self.writable("tune_recall")?;
        }
        let backend = &self.inner.backend;
        let Some(index) = backend.stats().await?.index else {
            return Err(Error::invalid("index", "there is no vector index to tune; searches are exact without one"));
        };
        let knob = match (index.kind, index.quantization) {
            (IndexKind::IvfFlat { .. }, _) => TuneKnob::Probes,
            (_, Quantization::Binary) => TuneKnob::Oversample,
            _ => TuneKnob::EfSearch,
        };
        let tuned = index.tuned;
        let configured = match knob {
            TuneKnob::EfSearch => self.inner.ef_search,
            TuneKnob::Probes => self.inner.probes,
            TuneKnob::Oversample => None,
        };
        let current = configured
            .or(match knob {
                TuneKnob::EfSearch => tuned.and_then(|t| t.ef_search),
                TuneKnob::Probes => tuned.and_then(|t| t.probes),
                TuneKnob::Oversample => tuned.and_then(|t| t.oversample),
            })
            .unwrap_or(match knob {
                TuneKnob::EfSearch => DEFAULT_EF_SEARCH,
                TuneKnob::Probes => DEFAULT_PROBES,
                TuneKnob::Oversample => index.quantization.default_oversample(),
            });

        // Each query with the id of its own row (left out of its results), or NO_ROW for a text.
        let sample: Vec<(i64, Vec<f32>)> = match opts.query_texts.is_empty() {
            true => backend.sample_vectors(opts.queries).await?,
            false => {
                let mut v = Vec::with_capacity(opts.query_texts.len());
                for text in &opts.query_texts {
                    v.push((NO_ROW, self.query_embedding(text).await?));
                }
                v
            }
        };
        if sample.is_empty() {
            return Err(Error::invalid("index", "the table has no documents to measure the index with"));
        }
        // The truth: each query's exact nearest k, its own row left out.
        let rows = opts.k + 1;
        let mut truth = Vec::with_capacity(sample.len());
        for (id, v) in &sample {
            let exact = SearchOptions { k: rows, exact: true, ..Default::default() };
            truth.push(top_ids(backend.search(SearchQuery::vector(v), &exact, None).await?, *id, opts.k));
        }
        let index_name = index.name.clone();
        let measure = |value: u32| {
            let truth = &truth;
            let sample = &sample;
            let index_name = &index_name;
            async move {
                let mut o = SearchOptions { k: rows, ..Default::default() };
                match knob {
                    TuneKnob::EfSearch => o.ef_search = Some(value),
                    TuneKnob::Probes => o.probes = Some(value),
                    TuneKnob::Oversample => o.oversample = Some(value),
                }
                let mut times = Vec::with_capacity(sample.len());
                let mut recall = 0.0;
                for ((id, v), want) in sample.iter().zip(truth) {
                    let t = Instant::now();
                    let hits = backend.search(SearchQuery::vector(v), &o, None).await?;
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                    let got: HashSet<i64> = top_ids(hits, *id, opts.k).into_iter().collect();
                    recall += match want.len() {
                        0 => 1.0,
                        n => want.iter().filter(|w| got.contains(w)).count() as f64 / n as f64,
                    };
                }
                times.sort_by(f64::total_cmp);
                let uses_index = match sample.first() {
                    Some((_, v)) => backend.explain(SearchQuery::vector(v), &o).await?.contains(index_name.as_str()),
                    None => false,
                };
                Ok::<_, Error>(TuneStep {
                    value,
                    recall: recall / sample.len() as f64,
                    p50_ms: times.get(times.len() / 2).copied().unwrap_or(0.0),
                    uses_index,
                })
            }
        };

        let mut steps: Vec<TuneStep> = Vec::new();
        // ef_search below the rows asked for returns fewer rows: never measured, never chosen.
        let mut below = match knob {
            TuneKnob::EfSearch => (rows as u32).saturating_sub(1),
            TuneKnob::Probes | TuneKnob::Oversample => 0,
        };
        let mut chosen: Option<TuneStep> = None;
        for value in ladder(knob, opts.k, &index) {
            let step = measure(value).await?;
            steps.push(step);
            if step.recall >= opts.target {
                chosen = Some(step);
                break;
            }
            below = value;
        }
        // Bisect the gap between the last value short of the target and the first that meets it,
        // to within a tenth of the value.
        if let Some(mut hi) = chosen {
            let mut lo = below;
            while hi.value - lo > (hi.value / 10).max(1) {
                let mid = lo + (hi.value - lo) / 2;
                let step = measure(mid).await?;
                steps.push(step);
                if step.recall >= opts.target {
                    hi = step;
                } else {
                    lo = mid;
                }
            }
            chosen = Some(hi);
        }
        let before = match steps.iter().find(|s| s.value == current) {
            Some(s) => *s,
            None => measure(current).await?,
        };
        steps.sort_by_key(|s| s.value);

        let mut index = index;
        let applied = !opts.dry_run && chosen.is_some();
        if let (false, Some(c)) = (opts.dry_run, chosen) {
            let mut kept = TunedSettings {
                ef_search: None,
                probes: None,
                oversample: None,
                target: opts.target,
                recall: c.recall,
                k: opts.k,
                queries: sample.len(),
            };
            match knob {
                TuneKnob::EfSearch => kept.ef_search = Some(c.value),
                TuneKnob::Probes => kept.probes = Some(c.value),
                TuneKnob::Oversample => kept.oversample = Some(c.value),
            }
            index = backend.set_tuned(Some(&kept)).await?;
            // Results cached under the old setting are not what a search returns now.
            self.invalidate().await;
        }
        Ok(TuneReport {
            index,
            knob,
            target: opts.target,
            k: opts.k,
            query_ids: sample.iter().map(|(id, _)| *id).filter(|&id| id != NO_ROW).collect(),
            query_texts: opts.query_texts.len(),
            before,
            steps,
            chosen,
            applied,
            overridden_by_config: configured.is_some(),
        })
    }

    /// Forgets the tuned settings kept with the vector index (searches go back to the
    /// defaults); error naming `index` when there is no index.
    pub async fn clear_tuning(&self) -> Result<IndexInfo> {
        self.writable("clear_tuning")?;
        if self.backend_kind() == "embedded" {
            return Err(Error::Unsupported {
                operation: "clear_tuning on the embedded store: its index keeps no tuned settings".into(),
            });
        }
        let info = self.inner.backend.set_tuned(None).await?;
        self.invalidate().await;
        Ok(info)
    }
}

/// The "own row" of a query text: no document has it (ids are positive).
const NO_ROW: i64 = i64::MIN;

/// The first `k` hit ids other than `own`.
fn top_ids(hits: Vec<crate::document::SearchHit>, own: i64, k: usize) -> Vec<i64> {
    hits.into_iter().map(|h| h.document.id).filter(|&id| id != own).take(k).collect()
}
