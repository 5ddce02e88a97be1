#!/usr/bin/env bash
# The fault-injection suite of issue 10, against release builds on loopback:
#
#   bash scripts/fault-suite.sh                       # every scenario (a few minutes)
#   bash scripts/fault-suite.sh pg-restart stale-cache   # some, by name
#   bash scripts/fault-suite.sh --list                # the names
#
# It starts a PostgreSQL cluster of its own (initdb/pg_ctl of the installed server, which has
# pgvector; as `postgres` when run as root) and redis-servers of its own on free ports, so the
# shared services on 5432/6379 are never stopped, paused or restarted; they are stopped at the
# end, also on failure. Each scenario prints its figures and the targets; exit 1 when one is
# missed. Logs stay in the work directory when something failed.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"

# Two invocations on purpose: the suite turns on tokio features the servers don't use, and one
# build of all three would rebuild the servers with them instead of reusing the binaries the
# other CI steps (schemathesis, load) build.
cargo build --release -q -p marketking-http -p marketking-cli
cargo build --release -q -p marketking-fault-suite

WORK="$(mktemp -d "${TMPDIR:-/tmp}/marketking-fault.XXXXXX")"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
cleanup() {
  # The suite stops everything it started; this only matters if it was itself killed (SIGKILL).
  # Only pids it listed, and only if they still run one of its programs (a pid may be reused).
  if [ -f "$WORK/pids" ]; then
    while read -r pid prog; do
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$(basename "$prog")"; then
        kill -9 "$pid" 2>/dev/null || true
      fi
    done < "$WORK/pids"
  fi
  if [ -f "$WORK/pg/data/postmaster.pid" ] && [ -n "$PGBIN" ]; then
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    else
      "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
  fi
  if [ -d "$WORK" ] && [ -z "$(ls -A "$WORK" 2>/dev/null)" ]; then rmdir "$WORK"; fi
}
trap cleanup EXIT
# The suite removes its work directory itself when every target held.
"$TARGET/release/fault-suite" --bin-dir "$TARGET/release" --work-dir "$WORK" "$@"
