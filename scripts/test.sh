#!/usr/bin/env bash
# The one test command: sets up the services (PostgreSQL + pgvector, Redis) when needed, then
# runs every test of the workspace against them. A missing service fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
# The local model's tests run on real weights (all-MiniLM-L6-v2, about 90 MB, fetched once).
bash scripts/fetch-model.sh
# Read replicas are tested on a throwaway PostgreSQL primary + streaming replica (and a Redis
# Cluster) on their own loopback ports, stopped and removed when the tests end.
bash scripts/topology.sh start >/dev/null
trap 'bash scripts/topology.sh stop' EXIT
eval "$(bash scripts/topology.sh env)"
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
