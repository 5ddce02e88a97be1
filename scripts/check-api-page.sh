#!/usr/bin/env bash
# The API page (GET /docs, Swagger UI) checked in a real headless browser:
#
#   bash scripts/check-api-page.sh
#
# Installs Debian's chromium when /usr/bin/chromium is missing (apt-get, as root) and
# playwright-core (npm, pinned) into $CARGO_TARGET_DIR/api-page-node, builds the release
# server, starts it on 127.0.0.1 (a free port) over an embedded store in a temp dir with the
# hashing embedder and an API key, and runs scripts/check-api-page.mjs: the page renders every
# operation, Authorize takes the key, Execute answers 401 then 200, and no request leaves
# 127.0.0.1. Writes a screenshot to ${CI_LOG_DIR:-target/ci-logs}/api-page.png. Exits non-zero
# with the reason on any failure (and prints the server's log).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-target}"
PLAYWRIGHT_VERSION=1.65.1
PW_DIR="$TARGET/api-page-node"
LOG_DIR="${CI_LOG_DIR:-target/ci-logs}"
KEY="api-page-key-$$-$RANDOM" # API keys need at least 16 characters

if [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium (Debian package)"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing or stale on a fresh machine: update once and retry.
    apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
fi

installed="$(cat "$PW_DIR/node_modules/playwright-core/package.json" 2>/dev/null | node -p "JSON.parse(require('fs').readFileSync(0)).version" 2>/dev/null || true)"
if [ "$installed" != "$PLAYWRIGHT_VERSION" ]; then
    echo "installing playwright-core@$PLAYWRIGHT_VERSION into $PW_DIR"
    mkdir -p "$PW_DIR"
    [ -f "$PW_DIR/package.json" ] || echo '{"private": true}' >"$PW_DIR/package.json"
    # playwright-core alone downloads no browser; the Debian chromium above is the one used.
    npm install --prefix "$PW_DIR" --no-audit --no-fund --ignore-scripts --silent "playwright-core@$PLAYWRIGHT_VERSION"
fi
PW_DIR="$(cd "$PW_DIR" && pwd)"

cargo build --release -q -p marketking-http
BIN="$(cd "$TARGET/release" && pwd)/marketking-http"

mkdir -p "$LOG_DIR"
SCREENSHOT="$(cd "$LOG_DIR" && pwd)/api-page.png"
rm -f "$SCREENSHOT"
TMP="$(mktemp -d)"
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# Port 0: the kernel picks a free port, read back from the "listening" log line.
env -u DATABASE_URL -u REDIS_URL MARKETKING_DB_PATH="$TMP/page.db" MARKETKING_EMBEDDER=hash \
    MARKETKING_API_KEYS="$KEY" RUST_LOG=info NO_COLOR=1 \
    "$BIN" --bind 127.0.0.1:0 --rate-limit 0 >"$TMP/server.log" 2>&1 &
PID=$!
PORT=""
for _ in $(seq 1 100); do
    PORT="$(sed -n 's/.*listening.*addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/server.log" | head -n1)"
    [ -n "$PORT" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.2
done
if [ -z "$PORT" ]; then
    echo "check-api-page: FAILED: the server did not start; its log:" >&2
    cat "$TMP/server.log" >&2
    exit 1
fi

status=0
BASE_URL="http://127.0.0.1:$PORT" API_KEY="$KEY" PW_DIR="$PW_DIR" SCREENSHOT="$SCREENSHOT" \
    timeout 120 node scripts/check-api-page.mjs || status=$?
if [ "$status" -ne 0 ]; then
    [ "$status" -eq 124 ] && echo "check-api-page: FAILED: timed out after 120 s" >&2
    echo "--- server log, last 40 lines ---" >&2
    tail -n 40 "$TMP/server.log" >&2
fi
exit "$status"
