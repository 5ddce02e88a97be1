//! Benchmarks for MarketKing: criterion suites under `benches/`.
