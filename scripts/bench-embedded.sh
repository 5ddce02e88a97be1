#!/usr/bin/env bash
# The embedded store's vector search against a baseline build, on one file, in turns (issue 15,
# part 2): p50 / p95, recall@10 against exact search, resident memory, open time.
#   bash scripts/bench-embedded.sh                       # 100k x 1536, baseline 6490214
#   ROWS=10000 BASELINE=<commit> bash scripts/bench-embedded.sh
# The baseline is built from a git worktree (under target/mk-bench/) with this tree's
# benches/src/bin/embedded_scan.rs copied in (it uses the public API only). Nothing of the
# baseline is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-100000}
DIMS=${DIMS:-1536}
ROUNDS=${ROUNDS:-3}
QUERIES=${QUERIES:-200}
BASELINE=${BASELINE:-6490214}
work=target/mk-bench
data="$work/embedded-${ROWS}x${DIMS}"
base="$work/baseline-$BASELINE"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$work"

echo "== building this tree's embedded_scan" >&2
cargo build --release -q -p marketking-benches --no-default-features --bin embedded_scan
new="$CARGO_TARGET_DIR/release/embedded_scan"

echo "== building the baseline ($BASELINE)" >&2
if [ ! -d "$base" ]; then
  git worktree add --detach "$base" "$BASELINE" >&2
fi
cp benches/src/bin/embedded_scan.rs "$base/benches/src/bin/embedded_scan.rs"
(cd "$base" && CARGO_TARGET_DIR="$PWD/../baseline-target" cargo build --release -q -p marketking-benches --no-default-features --bin embedded_scan)
old="$work/baseline-target/release/embedded_scan"

if [ ! -f "$data/store.db" ]; then
  echo "== writing $ROWS x $DIMS into $data" >&2
  "$new" --create --rows "$ROWS" --dims "$DIMS" --queries "$QUERIES" "$data"
fi

echo "| round | build | open s | p50 ms | p95 ms | recall@10 vs exact | RSS MB |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for which in new old; do
    if [ $(( round % 2 )) -eq 0 ]; then which=$([ "$which" = new ] && echo old || echo new); fi
    bin=$([ "$which" = new ] && echo "$new" || echo "$old")
    label=$([ "$which" = new ] && echo "this tree (int8 scan + exact re-rank)" || echo "baseline $BASELINE (f32 in memory)")
    line=$("$bin" --dims "$DIMS" --rounds 3 "$data")
    python3 - "$round" "$label" "$line" <<'PY'
import json, sys
r = json.loads(sys.argv[3])
print(f"| {sys.argv[1]} | {sys.argv[2]} | {r['open_s']:.2f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['recall_at_10']:.3f} | {r['rss_mb']:.0f} |")
PY
  done
done
