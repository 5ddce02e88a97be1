#!/usr/bin/env bash
# Builds the search-quality development set under target/devset/ (see scripts/build-devset.py
# for what goes in and why) and prints its SHA-256s; `sha256sum -c SHA256SUMS` in a set's
# folder checks the files later. About a minute on 2 cores. Arguments go to the Python script
# (--stdlib-only, --out DIR, --queries N).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/build-devset.py "$@"
