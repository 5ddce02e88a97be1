#!/usr/bin/env bash
# Cached-search latency of marketking-http while the same process embeds an import with the
# local model (issue 12: "embedding work never stalls other requests"), for BENCHMARKS.md.
#
#   bash scripts/bench-import-load.sh        # IMPORT_DOCS=1000 DURATION=15
#
# A release build over PostgreSQL + pgvector and Redis, the demo corpus loaded, the searches of
# benches/load/search.lua warmed into the cache. wrk (4 connections) measures p50/p99 idle, then
# again while POST /v1/documents/batch sends IMPORT_DOCS real documents of the dev set
# (scripts/build-devset.sh) in batches of 100, embedded by the local model in the server.
# Needs the model (scripts/fetch-model.sh) and wrk (installed from Debian's packages when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
IMPORT_DOCS=${IMPORT_DOCS:-1000}
DURATION=${DURATION:-15}
PORT=${PORT:-18082}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
TARGET=${CARGO_TARGET_DIR:-target}
SCHEMA="mk_importload_$$"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[[ -f target/devset/docstrings/corpus.jsonl ]] || bash scripts/build-devset.sh
cargo build --release -q -p marketking-http -p marketking-cli --bin marketking-http --bin marketking
TMP=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

env -u REDIS_URL "$TARGET/release/marketking" --table "$SCHEMA.docs" demo | head -1
python3 - "$IMPORT_DOCS" "$TMP" <<'PY'
import json, sys
n, out = int(sys.argv[1]), sys.argv[2]
docs = []
for line in open("target/devset/docstrings/corpus.jsonl"):
    d = json.loads(line)
    docs.append({"title": d["title"][:255], "content": d["content"], "key": "import-" + d["key"]})
    if len(docs) == n:
        break
for i in range(0, len(docs), 100):
    with open(f"{out}/batch-{i // 100:04d}.json", "w") as f:
        json.dump({"documents": docs[i:i + 100]}, f)
PY

REDIS_URL="$REDIS" MARKETKING_TABLE="$SCHEMA.docs" RUST_LOG=error \
  "$TARGET/release/marketking-http" --bind "127.0.0.1:$PORT" --rate-limit 0 &
PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$PORT/v1/stats" | python3 -c 'import json,sys; print("embedder:", json.load(sys.stdin)["model"])'
# Warm the cache with every query of the script (100 combinations).
wrk -t1 -c1 -d3s -s benches/load/search.lua "http://127.0.0.1:$PORT" >/dev/null

echo "== idle: cached POST /v1/search, 4 connections, ${DURATION}s"
wrk -t1 -c4 -d"${DURATION}s" --latency -s benches/load/search.lua "http://127.0.0.1:$PORT" | grep -E "Latency|50%|90%|99%|Requests/sec"

echo "== during an import of $IMPORT_DOCS documents (batches of 100, embedded in the server)"
(
  start=$(date +%s.%N)
  for f in "$TMP"/batch-*.json; do
    curl -fsS -X POST -H 'content-type: application/json' --data-binary "@$f" \
      "http://127.0.0.1:$PORT/v1/documents/batch" >/dev/null
  done
  end=$(date +%s.%N)
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'import: {sys.argv[3]} documents in {s:.1f} s ({int(sys.argv[3])/s:.1f} docs/s)')" "$start" "$end" "$IMPORT_DOCS"
) > "$TMP/import.log" &
IMPORT=$!
sleep 1
wrk -t1 -c4 -d"${DURATION}s" --latency -s benches/load/search.lua "http://127.0.0.1:$PORT" | grep -E "Latency|50%|90%|99%|Requests/sec"
if kill -0 "$IMPORT" 2>/dev/null; then
  echo "(the import was still running when the measurement ended: the whole window was under load)"
else
  echo "WARNING: the import ended before the measurement: raise IMPORT_DOCS or lower DURATION"
fi
wait "$IMPORT"
cat "$TMP/import.log"
