//! Run with: `cargo run --release -p marketking-benches --bin gen_jsonl -- N DIMS > docs.jsonl`
//!
//! Writes N import lines (title, content, source, metadata, key and a precomputed `embedding`)
//! from the seeded benchmark generator, for `marketking import` benchmarks.

use std::io::{BufWriter, Write};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dims: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1536);
    let out = std::io::stdout().lock();
    let mut w = BufWriter::with_capacity(1 << 20, out);
    // Generated in slices so memory stays flat whatever N is.
    let slice = 10_000;
    for start in (0..n).step_by(slice) {
        let count = slice.min(n - start);
        let vectors = marketking_benches::clustered(count, dims, 100, 42 + start as u64);
        for (j, v) in vectors.iter().enumerate() {
            let i = start + j;
            write!(
                w,
                "{{\"key\":\"doc-{i}\",\"title\":\"Document {i}\",\"content\":\"Generated content for document {i}\",\"source\":\"s{}\",\"metadata\":{{\"n\":{i}}},\"embedding\":[",
                i % 10
            )?;
            for (k, x) in v.iter().enumerate() {
                if k > 0 {
                    w.write_all(b",")?;
                }
                write!(w, "{x}")?;
            }
            w.write_all(b"]}\n")?;
        }
    }
    w.flush()
}
