//! Known-item metrics over ranked result keys.

use std::collections::HashSet;

/// 1-based rank of the first expected key within the first `k` results, if any.
pub(crate) fn first_hit(got: &[String], expected: &[String], k: usize) -> Option<usize> {
    got.iter().take(k).position(|g| expected.contains(g)).map(|i| i + 1)
}

/// Mean over queries of the share of expected keys found in the top `k` (with one expected key
/// per query: the share of queries whose answer is in the top `k`).
pub(crate) fn recall_at(results: &[Vec<String>], expected: &[Vec<String>], k: usize) -> f64 {
    mean(results.iter().zip(expected).map(|(got, want)| {
        let top: HashSet<&String> = got.iter().take(k).collect();
        want.iter().filter(|w| top.contains(w)).count() as f64 / want.len().max(1) as f64
    }))
}

/// Mean reciprocal rank of the first expected key, 0 when it is not in the top `k`.
pub(crate) fn mrr_at(results: &[Vec<String>], expected: &[Vec<String>], k: usize) -> f64 {
    mean(results.iter().zip(expected).map(|(got, want)| first_hit(got, want, k).map_or(0.0, |r| 1.0 / r as f64)))
}

/// How far two runs of the same queries agree: (share of queries with the same top-`k` set,
/// mean share of the top `k` the two have in common).
pub(crate) fn agreement(a: &[Vec<String>], b: &[Vec<String>], k: usize) -> (f64, f64) {
    let pairs: Vec<(HashSet<&String>, HashSet<&String>)> =
        a.iter().zip(b).map(|(x, y)| (x.iter().take(k).collect(), y.iter().take(k).collect())).collect();
    let same = mean(pairs.iter().map(|(x, y)| if x == y { 1.0 } else { 0.0 }));
    let overlap =
        mean(pairs.iter().map(|(x, y)| x.intersection(y).count() as f64 / x.len().max(y.len()).max(1) as f64));
    (same, overlap)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &[&str]) -> Vec<String> {
        s.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn recall_and_mrr_count_only_the_top_k() {
        let results = vec![keys(&["a", "x"]), keys(&["y", "b"]), keys(&["y", "z", "c"])];
        let expected = vec![keys(&["a"]), keys(&["b"]), keys(&["c"])];
        assert_eq!(recall_at(&results, &expected, 2), 2.0 / 3.0);
        assert_eq!(mrr_at(&results, &expected, 2), (1.0 + 0.5 + 0.0) / 3.0);
        assert_eq!(mrr_at(&results, &expected, 3), (1.0 + 0.5 + 1.0 / 3.0) / 3.0);
    }

    #[test]
    fn several_expected_keys_share_the_recall_and_the_first_one_found_sets_the_rank() {
        let results = vec![keys(&["x", "b", "a"])];
        let expected = vec![keys(&["a", "b"])];
        assert_eq!(recall_at(&results, &expected, 2), 0.5);
        assert_eq!(first_hit(&results[0], &expected[0], 3), Some(2));
    }

    #[test]
    fn agreement_ignores_order_within_the_top_k() {
        let a = vec![keys(&["a", "b"]), keys(&["a", "b"])];
        let b = vec![keys(&["b", "a"]), keys(&["a", "c"])];
        assert_eq!(agreement(&a, &b, 2), (0.5, 0.75));
    }
}
