//! Benchmarks for MarketKing: criterion suites under `benches/` and the `report` binary.
//!
//! The data generator is shared so every benchmark sees the same, seeded data.

/// Deterministic unit vectors around `clusters` Gaussian-ish centres (xorshift, seeded).
pub fn clustered(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..clusters.max(1)).map(|_| (0..dims).map(|_| rng.normal()).collect()).collect();
    (0..n)
        .map(|i| {
            let c = &centres[(i * 7 + (i / clusters.max(1))) % centres.len()];
            let v: Vec<f32> = c.iter().map(|x| x + 0.6 * rng.normal()).collect();
            normalise(v)
        })
        .collect()
}

/// Queries near the cluster centres of [`clustered`] with the same `seed`.
pub fn queries(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..clusters.max(1)).map(|_| (0..dims).map(|_| rng.normal()).collect()).collect();
    let mut q = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    (0..n).map(|i| normalise(centres[i % centres.len()].iter().map(|x| x + 0.8 * q.normal()).collect())).collect()
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407) | 1)
    }
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) as f32
    }
    fn normal(&mut self) -> f32 {
        // Sum of uniforms: close enough to Gaussian for clustering, and cheap.
        (0..4).map(|_| self.uniform()).sum::<f32>() - 2.0
    }
}

/// Exact top-k ids (indexes into `data`) by cosine similarity, best first.
pub fn exact_top_k(data: &[Vec<f32>], q: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> =
        data.iter().enumerate().map(|(i, v)| (marketking_core::cosine_similarity(v, q).unwrap_or(-1.0), i)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| i).collect()
}

/// Percentile (0..=100) of a sample, in the sample's unit.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    if samples.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx]
}

/// A sampler of indexes `0..n` with probability proportional to `1 / (i + 1)^s` (Zipf).
pub fn zipf_sampler(n: usize, s: f64, seed: u64) -> impl FnMut() -> usize {
    let weights: Vec<f64> = (1..=n).map(|i| 1.0 / (i as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut rng = Rng::new(seed);
    move || {
        let u = rng.uniform() as f64;
        cdf.partition_point(|c| *c < u).min(n - 1)
    }
}
