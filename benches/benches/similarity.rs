//! Run with: `cargo bench -p marketking-benches --bench similarity`
//!
//! `cosine_similarity` at 384, 1536 and 3072 dimensions (no network, no database).
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use marketking_core::cosine_similarity;

fn vectors(dims: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..dims).map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5).collect();
    let b = (0..dims).map(|i| ((i * 104_729) % 97) as f32 / 97.0 - 0.5).collect();
    (a, b)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cosine_similarity");
    for dims in [384, 1536, 3072] {
        let (a, b) = vectors(dims);
        g.bench_with_input(BenchmarkId::from_parameter(dims), &dims, |bench, _| {
            bench.iter(|| cosine_similarity(black_box(&a), black_box(&b)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
