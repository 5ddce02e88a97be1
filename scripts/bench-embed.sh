#!/usr/bin/env bash
# Local embedding throughput for BENCHMARKS.md: MarketKing's LocalEmbedder (candle) next to
# sentence-transformers on PyTorch CPU (2 threads), same texts, same run, peak RSS of both.
# Needs the model (scripts/fetch-model.sh), the dev set (scripts/build-devset.sh) and a venv at
# with torch + sentence-transformers at $ST_VENV (default target/st-venv; `python3 -m venv DIR &&
# DIR/bin/pip install sentence-transformers`, several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(ls -d "${MARKETKING_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/marketking}/models/all-MiniLM-L6-v2")
py=${ST_VENV:-target/st-venv}/bin/python
bin=${CARGO_TARGET_DIR:-target}/release/embed_bench
out=target/embed-bench
[[ -f $out/long.txt ]] || $py scripts/bench-embed.py make-texts target/devset/docstrings/corpus.jsonl "$model" "$out"
files=("$out/short.txt" "$out/medium.txt" "$out/long.txt")
cargo build --release -q -p marketking-benches --bin embed_bench
for round in 1 2; do
  echo "== round $round: candle (default token budget)"
  /usr/bin/time -f "peak RSS %M KB" "$bin" "${files[@]}"
  echo "== round $round: sentence-transformers, 2 threads"
  OMP_NUM_THREADS=2 /usr/bin/time -f "peak RSS %M KB" $py scripts/bench-embed.py run "$model" 2 "${files[@]}" 2>&1 | grep -v -i "warn\|Loading weights"
done
