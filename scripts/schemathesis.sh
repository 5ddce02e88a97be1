#!/usr/bin/env bash
# Property-based API testing of marketking-http with schemathesis, against a locally started
# release server on an embedded store in a temp file (DATABASE_URL and REDIS_URL are ignored, so
# no real table is written to).
#
#   bash scripts/schemathesis.sh            # bounded run (MAX_EXAMPLES=25 per operation)
#
# Installs schemathesis into target/schemathesis-venv (PyPI), builds the release binary, starts it
# on 127.0.0.1:$PORT with an API key, runs the checks, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-target}"
VENV="$TARGET/schemathesis-venv"
PORT="${PORT:-18089}"
KEY="schemathesis-key-$$-$RANDOM"  # API keys need at least 16 characters
MAX_EXAMPLES="${MAX_EXAMPLES:-25}"

if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

cargo build --release -p marketking-http
TMP="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
env -u DATABASE_URL -u REDIS_URL MARKETKING_DB_PATH="$TMP/st.db" MARKETKING_API_KEYS="$KEY" RUST_LOG="${RUST_LOG:-warn}" \
    "$TARGET/release/marketking-http" --bind "127.0.0.1:$PORT" --rate-limit 0 &
PID=$!
for _ in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done

# Run from the temp dir: schemathesis keeps a .schemathesis/ cache in the working directory.
VENV="$(cd "$VENV" && pwd)"
(cd "$TMP" && "$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
    --header "Authorization: Bearer $KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 10 \
    "$@")
echo "schemathesis: OK"
