#!/usr/bin/env bash
# Wall time of one `marketking search` call on an embedded store (hashing embedder), for each
# corpus size and each CLI binary given, measured by hyperfine in one run (BENCHMARKS.md, "CLI
# search on the embedded store"). Corpora are generated text documents (seeded), imported once
# with the first binary and kept under $WORK.
#
#   bash scripts/bench-cli-search.sh path/to/marketking-before path/to/marketking-after
#
# SIZES (default "20000 100000"), RUNS (default 20) and WORK (default target/mk-bench/cli-search)
# change what is measured and where. Needs python3 and hyperfine (`apt-get install hyperfine`).
set -euo pipefail
[ "$#" -ge 1 ] || { echo "usage: $0 MARKETKING_BIN [MARKETKING_BIN...]" >&2; exit 2; }
work=${WORK:-target/mk-bench/cli-search}
mkdir -p "$work"
unset DATABASE_URL REDIS_URL MARKETKING_DB_PATH MARKETKING_CACHE
export MARKETKING_EMBEDDER=hash
query="blue lamp in good condition"
for n in ${SIZES:-20000 100000}; do
    db="$work/docs-$n.db"
    if [ ! -f "$db" ]; then
        python3 - "$n" > "$work/docs-$n.jsonl" <<'EOF'
import json, random, sys
random.seed(42)
colors = "red blue green black white yellow grey brown orange violet".split()
things = "lamp chair kettle bike tent boots jacket table mug umbrella desk sofa".split()
states = "new, used, in good condition, like new, refurbished, with minor scratches".split(", ")
for i in range(int(sys.argv[1])):
    c, t = random.choice(colors), random.choice(things)
    words = " ".join(random.choice(colors + things) for _ in range(30))
    print(json.dumps({
        "key": f"doc-{i}", "title": f"{c.title()} {t} {i}", "source": f"s{i % 10}",
        "content": f"A {c} {t}, {random.choice(states)}. {words}", "metadata": {"n": i},
    }))
EOF
        "$1" --db-path "$db" --quiet import "$work/docs-$n.jsonl"
        rm -f "$work/docs-$n.jsonl"
    fi
    cmds=()
    for bin in "$@"; do
        cmds+=("$bin --db-path $db search '$query' -k 10")
    done
    hyperfine --warmup 3 --runs "${RUNS:-20}" --export-markdown "$work/search-$n.md" "${cmds[@]}"
done
