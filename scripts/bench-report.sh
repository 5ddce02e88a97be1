#!/usr/bin/env bash
# The full benchmark report of BENCHMARKS.md in one command: services up (pgvector installed),
# PostgreSQL tuned for vector search, then the report at 1k, 10k and 100k x 1536 on both
# backends plus the cache run. Writes target/mk-bench/report.md. Takes about 10 minutes on
# 2 cores; run it on an otherwise idle machine. Extra arguments go to the report binary
# (for example `--sizes 1000,10000 --queries 30` for CI's quick mode).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
bash scripts/services.sh
bash scripts/tune-postgres.sh
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
if [ "$#" -eq 0 ]; then set -- --sizes 1000,10000,100000 --queries 100; fi
cargo run --release -p marketking-benches --bin report -- "$@"
