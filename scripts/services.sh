#!/usr/bin/env bash
# Starts PostgreSQL and Redis when they are not running, and installs pgvector and RUM when missing.
# Safe to run repeatedly. Needs root only for what is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "[services] $*" >&2; }

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}

if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
  log "PostgreSQL is not answering on $PGHOST:$PGPORT; starting it"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    ver=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  else
    log "no pg_ctlcluster: install PostgreSQL (with its server dev headers) first"
    exit 1
  fi
  for _ in $(seq 1 60); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 0.5; done
  pg_isready -h "$PGHOST" -p "$PGPORT"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "Redis is not answering on 127.0.0.1:6379; starting it"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/marketking.log
  for _ in $(seq 1 60); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli ping >/dev/null
fi

bash "$here/install-pgvector.sh"
bash "$here/install-rum.sh"
