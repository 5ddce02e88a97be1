#!/usr/bin/env bash
# Tunes the local PostgreSQL server the way pgvector's documentation recommends for vector
# workloads, then restarts it when a setting needs a restart:
#   shared_buffers       = 25% of RAM (at most 8 GB), so an HNSW index stays in PostgreSQL's
#                          own buffers instead of being copied in from the OS page cache
#   effective_cache_size = 50% of RAM
# The 100k benchmark (BENCHMARKS.md) is measured on a server tuned with this script. With the
# default 128 MB of shared buffers, a 100k x 1536 HNSW index (about 800 MB) does not fit and every
# search pays for buffer misses. Safe to run repeatedly; needs root (or the postgres user) for the
# restart. Not run by CI or the tests.
set -euo pipefail
log() { echo "[tune-postgres] $*" >&2; }

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
psql_() { psql -X -q -A -t -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -v ON_ERROR_STOP=1 "$@"; }

mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
shared_mb=$((mem_mb / 4))
if [ "$shared_mb" -gt 8192 ]; then shared_mb=8192; fi
cache_mb=$((mem_mb / 2))
log "RAM ${mem_mb} MB: shared_buffers ${shared_mb}MB, effective_cache_size ${cache_mb}MB"

psql_ -c "ALTER SYSTEM SET shared_buffers = '${shared_mb}MB'" \
  -c "ALTER SYSTEM SET effective_cache_size = '${cache_mb}MB'" \
  -c "SELECT pg_reload_conf()" >/dev/null

if [ "$(psql_ -c "SELECT bool_or(pending_restart) FROM pg_settings")" = "t" ]; then
  ver=$(psql_ -c "SHOW server_version_num" | cut -c1-2)
  log "restarting PostgreSQL $ver for shared_buffers"
  if [ "$(id -u)" = 0 ] || [ "$(id -un)" = postgres ]; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
  else
    log "cannot restart PostgreSQL as $(id -un): run this script as root or postgres"
    exit 1
  fi
  for _ in $(seq 1 60); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 0.5; done
fi
log "shared_buffers is now $(psql_ -c 'SHOW shared_buffers')"
