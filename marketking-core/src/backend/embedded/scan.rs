//! The vector scan: a brute-force pass over the memory index's int8 codes with per-thread
//! top-k heaps. It nominates candidates by the codes' dot product; `file.rs` then scores them
//! exactly from the f32 vectors in the file and keeps the best.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::ops::Range;

use super::mem_index::MemIndex;
use crate::document::SearchOptions;
use crate::simd::dot_i8;
use crate::similarity::quantize_i8;

/// Scans with more floats than this use several threads.
const PARALLEL_MIN_FLOATS: usize = 2_000_000;

/// Upper bound on scan threads.
const MAX_SCAN_THREADS: usize = 8;

/// A scored row. Ordered so that greater is better: higher score, then lower id.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// Dot product of unit vectors = cosine similarity.
    pub(super) score: f32,
    /// Document id.
    pub(super) id: i64,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// How many threads a scan of `rows` vectors of `dims` floats should use.
pub(super) fn scan_threads(rows: usize, dims: usize) -> usize {
    if rows.saturating_mul(dims) <= PARALLEL_MIN_FLOATS {
        return 1;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, MAX_SCAN_THREADS)
}

/// The `pool` best rows for the unit vector `query` by the codes' approximate cosine, best
/// first (ties by id), with the row filters and `exclude` applied (not `min_score`: it applies
/// to exact scores), using `threads` threads.
pub(super) fn scan(
    mem: &MemIndex,
    query: &[f32],
    pool: usize,
    opts: &SearchOptions,
    exclude: Option<i64>,
    threads: usize,
) -> Vec<Candidate> {
    let n = mem.len();
    let mut codes = vec![0i8; query.len()];
    let scale = quantize_i8(query, &mut codes);
    let q = Query { codes: &codes, scale, pool };
    let q = &q;
    let mut all = if threads <= 1 || n < 2 * threads {
        scan_range(mem, 0..n, q, opts, exclude)
    } else {
        let chunk = n.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                    s.spawn(move || scan_range(mem, range, q, opts, exclude))
                })
                .collect();
            let mut merged = Vec::with_capacity(threads * pool);
            for h in handles {
                merged.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
            merged
        })
    };
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.truncate(pool);
    all
}

/// The query's codes and scale, and how many candidates to keep.
struct Query<'a> {
    codes: &'a [i8],
    scale: f32,
    pool: usize,
}

/// Top-`pool` of one range of rows (unordered), kept in a bounded min-heap.
fn scan_range(
    mem: &MemIndex,
    range: Range<usize>,
    q: &Query<'_>,
    opts: &SearchOptions,
    exclude: Option<i64>,
) -> Vec<Candidate> {
    let k = q.pool;
    if k == 0 {
        return Vec::new();
    }
    let filtered = opts.has_filters();
    let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(k + 1);
    let d = mem.dims.max(1);
    let ids = mem.ids.get(range.clone()).unwrap_or_default();
    let rows = mem.rows.get(range.clone()).unwrap_or_default();
    let scales = mem.scales.get(range.clone()).unwrap_or_default();
    let codes = mem.codes.get(range.start * d..range.end * d).unwrap_or_default().chunks_exact(d);
    for (((&id, r), row), scale) in ids.iter().zip(rows).zip(codes).zip(scales) {
        if exclude == Some(id) {
            continue;
        }
        if filtered && !r.passes(opts) {
            continue;
        }
        let score = dot_i8(q.codes, row) as f32 * (scale * q.scale);
        let c = Candidate { score, id };
        if heap.len() < k {
            heap.push(Reverse(c));
        } else if heap.peek().is_some_and(|worst| c > worst.0) {
            heap.pop();
            heap.push(Reverse(c));
        }
    }
    heap.into_iter().map(|r| r.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::embedded::mem_index::{normalize, Pending, RowFilter};
    use crate::similarity::cosine_similarity;
    use chrono::{DateTime, Utc};
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use serde_json::json;
    use std::collections::HashMap;

    const SOURCES: [&str; 4] = ["a", "b", "c", "d"];

    /// A memory index of `n` random rows plus the raw vectors, for reference checks.
    fn random_index(n: usize, dims: usize, seed: u64) -> (MemIndex, Vec<(i64, Vec<f32>, RowFilter)>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut mem = MemIndex::with_capacity(dims, n);
        let mut raw = Vec::new();
        for i in 0..n {
            let id = (i as i64) * 3 + 1;
            let v: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let source = (!i.is_multiple_of(5)).then(|| SOURCES[i % 4].to_string());
            let metadata = json!({"group": i % 7, "tags": if i.is_multiple_of(2) { json!(["even"]) } else { json!(["odd", "x"]) }});
            let filter = RowFilter {
                source: source.clone(),
                metadata: metadata.clone(),
                created_at: base + chrono::Duration::seconds(i as i64),
                key: None,
                updated_at: base + chrono::Duration::seconds(i as i64),
            };
            mem.apply(Pending {
                id,
                unit: Some(normalize(&v)),
                source,
                metadata,
                created_at: Some(filter.created_at),
                key: None,
                updated_at: filter.created_at,
            });
            raw.push((id, v, filter));
        }
        (mem, raw)
    }

    fn reference(
        raw: &[(i64, Vec<f32>, RowFilter)],
        q: &[f32],
        opts: &SearchOptions,
        exclude: Option<i64>,
    ) -> Vec<(i64, f32)> {
        let mut v: Vec<(i64, f32)> = raw
            .iter()
            .filter(|(id, _, f)| Some(*id) != exclude && f.passes(opts))
            .map(|(id, v, _)| (*id, cosine_similarity(q, v).unwrap()))
            .filter(|(_, s)| opts.min_score.is_none_or(|m| *s >= m))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(opts.k);
        v
    }

    fn option_sets() -> Vec<(SearchOptions, Option<i64>)> {
        let base = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        vec![
            (SearchOptions::top(10), None),
            (SearchOptions::top(1), Some(4)),
            (SearchOptions::top(50).source("a").source("c"), None),
            (SearchOptions::top(20).metadata(crate::metadata!({"group": 3})), Some(10)),
            (SearchOptions::top(20).metadata(crate::metadata!({"tags": ["odd"]})), None),
            (
                SearchOptions {
                    created_after: Some(base + chrono::Duration::seconds(500)),
                    created_before: Some(base + chrono::Duration::seconds(900)),
                    ..SearchOptions::top(30)
                },
                None,
            ),
            (SearchOptions::top(1000).min_score(0.1), None),
            (SearchOptions::top(1000).source("b").metadata(crate::metadata!({"group": 1})).min_score(0.0), Some(7)),
            (SearchOptions::top(5).source("nope"), None),
        ]
    }

    /// The candidates the scan nominates hold the exact top k (what the re-rank keeps), pass
    /// every filter, and come best first by the codes' score, which is close to the cosine.
    #[test]
    fn candidates_hold_the_exact_top_k() {
        let dims = 64;
        let (mem, raw) = random_index(2000, dims, 7);
        let mut rng = StdRng::seed_from_u64(99);
        for (opts, exclude) in option_sets() {
            for _ in 0..3 {
                let q: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let pool = (opts.k * 4).max(40);
                let got = scan(&mem, &normalize(&q), pool, &opts, exclude, 1);
                let unfloored = SearchOptions { min_score: None, ..opts.clone() };
                let want = reference(&raw, &q, &opts, exclude);
                let passing = reference(&raw, &q, &SearchOptions { k: usize::MAX, ..unfloored }, exclude);
                assert_eq!(got.len(), pool.min(passing.len()), "options {opts:?}");
                let ids: std::collections::HashSet<i64> = got.iter().map(|c| c.id).collect();
                assert!(want.iter().all(|(id, _)| ids.contains(id)), "options {opts:?} exclude {exclude:?}");
                let exact: HashMap<i64, f32> = passing.into_iter().collect();
                for c in &got {
                    let e = exact.get(&c.id).expect("a nominated row passes the filters");
                    assert!((c.score - e).abs() < 0.02, "{} vs {e}", c.score);
                }
                assert!(got.windows(2).all(|w| w[0] >= w[1]), "best first");
            }
        }
    }

    #[test]
    fn parallel_scan_equals_single_threaded() {
        let dims = 64;
        let (mem, _) = random_index(2000, dims, 3);
        let mut rng = StdRng::seed_from_u64(5);
        for (opts, exclude) in option_sets() {
            let q: Vec<f32> = normalize(&(0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>());
            let single = scan(&mem, &q, opts.k, &opts, exclude, 1);
            for threads in [2, 3, 4, 7] {
                let par = scan(&mem, &q, opts.k, &opts, exclude, threads);
                assert_eq!(par.len(), single.len());
                for (p, s) in par.iter().zip(&single) {
                    assert_eq!((p.id, p.score.to_bits()), (s.id, s.score.to_bits()));
                }
            }
        }
        assert_eq!(scan_threads(10, 64), 1);
        assert!(scan_threads(100_000, 64) >= 1);
    }

    #[test]
    fn ties_are_broken_by_id_and_k_keeps_the_lowest_ids() {
        let dims = 4;
        let mut mem = MemIndex::with_capacity(dims, 0);
        let at = Utc::now();
        // Same direction for every id, inserted out of order; one better row.
        for id in [9, 3, 7, 1, 5] {
            mem.apply(Pending {
                id,
                unit: Some(normalize(&[1.0, 1.0, 0.0, 0.0])),
                source: None,
                metadata: json!({}),
                created_at: Some(at),
                key: None,
                updated_at: at,
            });
        }
        mem.apply(Pending {
            id: 8,
            unit: Some(normalize(&[1.0, 0.0, 0.0, 0.0])),
            source: None,
            metadata: json!({}),
            created_at: Some(at),
            key: None,
            updated_at: at,
        });
        let q = normalize(&[1.0, 1.0, 0.0, 0.0]);
        for threads in [1, 2, 3] {
            let got: Vec<i64> = scan(&mem, &q, 4, &SearchOptions::top(4), None, threads).iter().map(|c| c.id).collect();
            assert_eq!(got, vec![1, 3, 5, 7]);
            let got: Vec<i64> =
                scan(&mem, &q, 10, &SearchOptions::top(10), Some(3), threads).iter().map(|c| c.id).collect();
            assert_eq!(got, vec![1, 5, 7, 9, 8]);
        }
    }

    #[test]
    fn remove_keeps_rows_consistent() {
        let (mut mem, raw) = random_index(50, 8, 1);
        assert!(mem.remove(raw[10].0));
        assert!(mem.remove(raw[49].0));
        assert!(!mem.remove(raw[10].0));
        assert_eq!(mem.len(), 48);
        assert_eq!((mem.codes.len(), mem.scales.len()), (48 * 8, 48));
        for (id, v, _) in raw.iter().filter(|r| r.0 != raw[10].0 && r.0 != raw[49].0) {
            let row = mem.pos[id];
            assert_eq!(mem.ids[row], *id);
            let mut codes = [0i8; 8];
            let scale = crate::similarity::quantize_i8(&normalize(v), &mut codes);
            assert_eq!((&mem.codes[row * 8..(row + 1) * 8], mem.scales[row]), (&codes[..], scale));
        }
    }

    #[test]
    fn normalize_gives_unit_vectors() {
        let u = normalize(&[3.0, 4.0]);
        assert!((u[0] - 0.6).abs() < 1e-7 && (u[1] - 0.8).abs() < 1e-7);
    }
}
