#!/usr/bin/env bash
# Background import jobs (issue 17), for BENCHMARKS.md:
#
#   bash scripts/bench-jobs.sh            # KILL_DOCS=100000 DURATION=15 JOB_DOCS=10000
#
# 1. A worker SIGKILLed in the middle of a KILL_DOCS-line job (real text: the dev set's
#    docstrings, repeated with a copy number; the hashing embedder, so the figure is about the
#    queue, not the model): a second worker finishes it; the table must hold exactly the file's
#    documents, and the job's report must say so.
# 2. Cached POST /v1/search latency of marketking-http (wrk, 4 connections) idle, then while
#    the service's own worker runs a JOB_DOCS-document background import embedded by the
#    default embedder (the local model when installed). The job is cancelled after the window.
# PostgreSQL + pgvector and Redis (jobs in its database 2); wrk from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
KILL_DOCS=${KILL_DOCS:-100000}
JOB_DOCS=${JOB_DOCS:-10000}
DURATION=${DURATION:-15}
PORT=${PORT:-18083}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
TARGET=${CARGO_TARGET_DIR:-target}
SCHEMA="mk_jobs_$$"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[[ -f target/devset/docstrings/corpus.jsonl ]] || bash scripts/build-devset.sh
cargo build --release -q -p marketking-http -p marketking-cli --bin marketking-http --bin marketking
MK="$TARGET/release/marketking"
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

python3 - "$KILL_DOCS" "$JOB_DOCS" "$TMP" <<'PY'
import json, sys
n, m, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
corpus = [json.loads(l) for l in open("target/devset/docstrings/corpus.jsonl")]
with open(f"{out}/kill.jsonl", "w") as f:
    for i in range(n):
        d = corpus[i % len(corpus)]
        line = {"title": f"{d['title'][:230]} #{i}", "content": d["content"]}
        if i % 2:
            line["key"] = f"kill-{i}"  # half keyed, half not: the checkpoints alone keep those once
        f.write(json.dumps(line) + "\n")
with open(f"{out}/job.jsonl", "w") as f:
    for i in range(m):
        d = corpus[i % len(corpus)]
        f.write(json.dumps({"title": d["title"][:255], "content": d["content"], "key": f"job-{i}"}) + "\n")
PY

cat > "$TMP/report.py" <<'PY'
import json, sys
s = json.load(sys.stdin)
rate = s.get("lines_per_second") or 0
print("job report: state {}, total {}, done {}, failed {}, created {}, chunks {}/{}, taken over {}, "
      "elapsed {:.1f} s, {:.1f} lines/s".format(s["state"], s["total"], s["done"], s["failed"], s["created"],
      s["chunks_done"], s["chunks"], s["chunks_taken_over"], (s.get("elapsed_ms") or 0) / 1000, rate))
PY
status() { "$MK" --table "$SCHEMA.kill" jobs show "$1" --json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

echo "== 1. $KILL_DOCS-line background import, one of two workers SIGKILLed mid-way (hashing embedder)"
export MARKETKING_EMBEDDER=hash MARKETKING_JOB_CLAIM_AFTER_MS=5000
start=$(date +%s.%N)
ID=$("$MK" --quiet --table "$SCHEMA.kill" import "$TMP/kill.jsonl" --background --chunk-lines 500)
queued=$(date +%s.%N)
RUST_LOG=warn "$MK" --table "$SCHEMA.kill" worker 2>"$TMP/w1.log" & W1=$!; PIDS+=("$W1")
RUST_LOG=warn "$MK" --table "$SCHEMA.kill" worker 2>"$TMP/w2.log" & W2=$!; PIDS+=("$W2")
until [ "$(status "$ID" | field chunks_done)" -ge 60 ]; do sleep 0.2; done
kill -KILL "$W1"
killed=$(date +%s.%N)
echo "worker 1 SIGKILLed after $(status "$ID" | field chunks_done) of $(status "$ID" | field chunks) chunks"
until [ "$(status "$ID" | field state)" = done ]; do sleep 0.5; done
end=$(date +%s.%N)
kill -TERM "$W2"; wait "$W2" || true
status "$ID" | python3 "$TMP/report.py"
psql "$DATABASE_URL" -Atc "SELECT 'table: ' || count(*) || ' rows, ' || count(DISTINCT title) || ' distinct titles' FROM $SCHEMA.kill"
python3 -c "import sys; a,b,c,d=map(float,sys.argv[1:]); print(f'queued in {b-a:.1f} s; kill at {c-a:.1f} s; done at {d-a:.1f} s')" "$start" "$queued" "$killed" "$end"
unset MARKETKING_EMBEDDER MARKETKING_JOB_CLAIM_AFTER_MS

echo "== 2. search latency idle vs during a $JOB_DOCS-document background import (default embedder)"
env -u REDIS_URL "$MK" --table "$SCHEMA.docs" demo | head -1
MARKETKING_TABLE="$SCHEMA.docs" RUST_LOG=error MARKETKING_JOB_WORKERS=1 \
  "$TARGET/release/marketking-http" --bind "127.0.0.1:$PORT" --rate-limit 0 & PID=$!; PIDS+=("$PID")
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$PORT/v1/stats" | python3 -c 'import json,sys; print("embedder:", json.load(sys.stdin)["model"])'
wrk -t1 -c1 -d3s -s benches/load/search.lua "http://127.0.0.1:$PORT" >/dev/null
echo "-- idle: cached POST /v1/search, 4 connections, ${DURATION}s"
wrk -t1 -c4 -d"${DURATION}s" --latency -s benches/load/search.lua "http://127.0.0.1:$PORT" | grep -E "50%|90%|99%|Requests/sec"
JOB=$(curl -fsS -X POST -H 'content-type: application/x-ndjson' --data-binary "@$TMP/job.jsonl" \
  "http://127.0.0.1:$PORT/v1/jobs/import?chunk_lines=100" | field id)
sleep 2
echo "-- during the background import (job $JOB)"
before=$(curl -fsS "http://127.0.0.1:$PORT/v1/jobs/$JOB" | field done)
wrk -t1 -c4 -d"${DURATION}s" --latency -s benches/load/search.lua "http://127.0.0.1:$PORT" | grep -E "50%|90%|99%|Requests/sec"
curl -fsS "http://127.0.0.1:$PORT/v1/jobs/$JOB" | python3 "$TMP/report.py"
echo "(documents done before the window: $before)"
curl -fsS -X POST "http://127.0.0.1:$PORT/v1/jobs/$JOB/cancel" | field state
