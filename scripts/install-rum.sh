#!/usr/bin/env bash
# Installs the RUM index access method (Debian's postgresql-NN-rum) into the running PostgreSQL
# server when it is missing. The store uses it for the full-text leg when it is there (ranked
# index scans: `ORDER BY tsv <=> query`) and ranks from the GIN index when it is not, so this is
# an optimisation, not a requirement of the library; the tests and benchmarks expect it.
# The package comes from the machine's own apt sources; nothing else is configured.
set -euo pipefail

PGPORT=${PGPORT:-5432}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}

log() { echo "[install-rum] $*" >&2; }

have_rum() {
  psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -tAc \
    "select 1 from pg_available_extensions where name = 'rum'" 2>/dev/null | grep -q 1
}

if have_rum; then
  log "rum already available"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "must run as root to install packages"
  exit 1
fi
pg_major=$(psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -tAc "show server_version_num" | cut -c1-2)
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends "postgresql-$pg_major-rum" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "postgresql-$pg_major-rum" >/dev/null
fi
have_rum || { log "postgresql-$pg_major-rum installed but the server does not list rum"; exit 1; }
log "installed postgresql-$pg_major-rum ($(dpkg-query -W -f '${Version}' "postgresql-$pg_major-rum"))"
