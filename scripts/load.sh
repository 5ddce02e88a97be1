#!/usr/bin/env bash
# Load test of marketking-http on loopback (bounded): 64 connections on POST /v1/search for
# DURATION seconds, once with the Redis cache and once without, against a release build over
# PostgreSQL + pgvector with the demo corpus plus LOAD_DOCS generated documents and an HNSW index.
#
#   bash scripts/load.sh            # DURATION=30 LOAD_DOCS=10000
#
# Needs wrk (installed from Debian's packages when missing). Results go to BENCHMARKS.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30}
LOAD_DOCS=${LOAD_DOCS:-10000}
PORT=${PORT:-18081}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
TARGET=${CARGO_TARGET_DIR:-target}
SCHEMA="mk_load_$$"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p marketking-http -p marketking-cli -p marketking-benches --bin marketking-http --bin marketking --bin gen_jsonl
TMP=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

M="$TARGET/release/marketking --table $SCHEMA.docs --quiet"
$M demo >/dev/null
"$TARGET/release/gen_jsonl" "$LOAD_DOCS" 1536 > "$TMP/docs.jsonl"
$M import "$TMP/docs.jsonl"
$M index create --kind hnsw >/dev/null

for mode in redis none; do
  if [ "$mode" = redis ]; then cache=(REDIS_URL="$REDIS"); else cache=(MARKETKING_CACHE=none); fi
  env -u REDIS_URL "${cache[@]}" MARKETKING_TABLE="$SCHEMA.docs" RUST_LOG=error \
    "$TARGET/release/marketking-http" --bind "127.0.0.1:$PORT" --rate-limit 0 &
  PID=$!
  for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "== POST /v1/search, 64 connections, ${DURATION}s, cache: $mode"
  wrk -t2 -c64 -d"${DURATION}s" --latency -s benches/load/search.lua "http://127.0.0.1:$PORT"
  curl -fsS "http://127.0.0.1:$PORT/metrics" | grep -E '^marketking_(pool|cache)_' || true
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done
