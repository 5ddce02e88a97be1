#!/usr/bin/env bash
# The hot-path benchmark (issue 15, part 3): ingest through the SDK (`insert_new` borrowed,
# `batch` owned) against raw psycopg binary COPY (an independent Python harness), and ids-only /
# full searches against the raw statements, in one run, interleaved.
#   bash scripts/bench-hot-paths.sh                    # 100k x 1536, 3 rounds
#   bash scripts/bench-hot-paths.sh --rows 10000 --rounds 1
# Sets up a Python venv under target/mk-bench/venv (psycopg, numpy, pgvector) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
venv=target/mk-bench/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import psycopg, numpy, pgvector' 2>/dev/null; then
  mkdir -p target/mk-bench
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'psycopg[binary]>=3.2,<4' 'numpy>=2,<3' 'pgvector>=0.4,<0.5'
fi
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
cargo run --release -q -p marketking-benches --bin hot_paths -- --python "$venv/bin/python" "$@"
