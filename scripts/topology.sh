#!/usr/bin/env bash
# A throwaway scale-out topology on loopback, for tests and for trying replicas by hand:
# a PostgreSQL primary with one streaming replica (pg_basebackup -R), and a Redis Cluster of
# three masters and three replicas. No Docker, and the system's own PostgreSQL and Redis (5432,
# 6379) are never touched: everything lives in one state directory and listens on its own ports.
#
#   bash scripts/topology.sh start            # start (or keep) everything; prints the URLs
#   bash scripts/topology.sh env              # export lines: eval "$(bash scripts/topology.sh env)"
#   bash scripts/topology.sh status
#   bash scripts/topology.sh replica stop|start|restart   # the PostgreSQL replica alone
#   bash scripts/topology.sh redis stop PORT | start     # one cluster node; start brings back any
#   bash scripts/topology.sh stop             # stop everything and remove the state directory
#
# Settings (environment): MK_TOPOLOGY_DIR (default /tmp/marketking-topology),
# MK_TOPOLOGY_PG_PORT (55432; the replica takes the next port), MK_TOPOLOGY_REDIS_PORT (7100;
# six ports from it). pgvector comes from the server's own installation (scripts/services.sh
# installs it).
set -euo pipefail
DIR="${MK_TOPOLOGY_DIR:-/tmp/marketking-topology}"
PG_PORT="${MK_TOPOLOGY_PG_PORT:-55432}"
REPLICA_PORT=$((PG_PORT + 1))
REDIS_PORT="${MK_TOPOLOGY_REDIS_PORT:-7100}"
DB=mk
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
[ -n "$PGBIN" ] || PGBIN="$(pg_config --bindir)"

log() { echo "[topology] $*" >&2; }

# PostgreSQL's tools refuse to run as root: as root they run as `postgres`.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_ctl_() { as_pg "$PGBIN/pg_ctl" "$@"; }

pg_running() { [ -f "$1/postmaster.pid" ] && pg_ctl_ -D "$1" status >/dev/null 2>&1; }

pg_opts() {
  # fsync off: the clusters are thrown away. Full-page writes stay on: without them the
  # replica cannot replay the first change of a new page of the generic-WAL index methods
  # (pgvector's HNSW, RUM) and stops ("WAL contains references to invalid pages").
  # hot_standby_feedback: the primary keeps the rows a replica's running query still reads,
  # so long searches are not cancelled by replay.
  echo "-p $1 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR/pg -c fsync=off \
-c max_connections=200 -c hot_standby_feedback=on -c wal_keep_size=256MB"
}

start_pg() {
  mkdir -p "$DIR/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR/pg" && chmod 755 "$DIR"
  if [ ! -d "$DIR/pg/primary" ]; then
    log "initdb primary"
    as_pg "$PGBIN/initdb" -D "$DIR/pg/primary" -U postgres --auth=trust -E UTF8 --no-locale --no-sync >/dev/null
  fi
  if ! pg_running "$DIR/pg/primary"; then
    pg_ctl_ -D "$DIR/pg/primary" -l "$DIR/pg/primary.log" -w -t 60 -o "$(pg_opts "$PG_PORT")" start >/dev/null
  fi
  if ! as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE $DB" >/dev/null
  fi
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" -qc "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
  if [ ! -d "$DIR/pg/replica" ]; then
    log "pg_basebackup -R: replica of 127.0.0.1:$PG_PORT"
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$DIR/pg/replica" -R -X stream --no-sync >/dev/null
  fi
  start_replica
}

start_replica() {
  if ! pg_running "$DIR/pg/replica"; then
    pg_ctl_ -D "$DIR/pg/replica" -l "$DIR/pg/replica.log" -w -t 60 -o "$(pg_opts "$REPLICA_PORT")" start >/dev/null
  fi
  # Streaming: the replica has connected to the primary.
  for _ in $(seq 1 100); do
    if as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc \
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" | grep -qv '^0$'; then
      return 0
    fi
    sleep 0.1
  done
  log "the replica is not streaming from the primary (see $DIR/pg/replica.log)"
  return 1
}

stop_replica() {
  if pg_running "$DIR/pg/replica"; then
    pg_ctl_ -D "$DIR/pg/replica" -w -t 60 -m fast stop >/dev/null
  fi
}

redis_ports() { seq "$REDIS_PORT" $((REDIS_PORT + 5)); }

start_redis() {
  local started=0
  for port in $(redis_ports); do
    mkdir -p "$DIR/redis/$port"
    if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
      # Nothing on disk but the cluster's node file: a restarted node rejoins with it.
      redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout 2000 --dir "$DIR/redis/$port" --save "" --appendonly no --daemonize yes \
        --pidfile "$DIR/redis/$port/redis.pid" --logfile "$DIR/redis/$port/redis.log" >/dev/null
      started=1
    fi
  done
  for port in $(redis_ports); do
    for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  if ! redis-cli -p "$REDIS_PORT" cluster info 2>/dev/null | grep -q "cluster_state:ok"; then
    if [ "$(redis-cli -p "$REDIS_PORT" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')" = 1 ]; then
      log "redis-cli --cluster create (3 masters, 3 replicas)"
      redis-cli --cluster create $(redis_ports | sed 's/^/127.0.0.1:/') --cluster-replicas 1 --cluster-yes >/dev/null
    fi
    for _ in $(seq 1 100); do
      redis-cli -p "$REDIS_PORT" cluster info | grep -q "cluster_state:ok" && break
      sleep 0.1
    done
    redis-cli -p "$REDIS_PORT" cluster info | grep -q "cluster_state:ok" || { log "the Redis Cluster is not ok"; return 1; }
  fi
  : "$started"
}

stop_redis() {
  for port in $(redis_ports); do
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  done
}

print_env() {
  local nodes
  nodes=$(redis_ports | sed 's|^|redis://127.0.0.1:|' | paste -sd, -)
  echo "export MK_TOPOLOGY_PRIMARY_URL=postgres://postgres@127.0.0.1:$PG_PORT/$DB"
  echo "export MK_TOPOLOGY_REPLICA_URL=postgres://postgres@127.0.0.1:$REPLICA_PORT/$DB"
  echo "export MK_TOPOLOGY_REDIS_NODES=$nodes"
  echo "export MK_TOPOLOGY_SCRIPT=$(cd "$(dirname "$0")" && pwd)/topology.sh"
  echo "export MK_TOPOLOGY_DIR=$DIR"
}

case "${1:-}" in
  start)
    mkdir -p "$DIR"
    start_pg
    start_redis
    log "PostgreSQL primary 127.0.0.1:$PG_PORT, replica 127.0.0.1:$REPLICA_PORT (database $DB); Redis Cluster 127.0.0.1:$REDIS_PORT-$((REDIS_PORT + 5))"
    print_env
    ;;
  env) print_env ;;
  status)
    pg_running "$DIR/pg/primary" && echo "primary: running" || echo "primary: stopped"
    pg_running "$DIR/pg/replica" && echo "replica: running" || echo "replica: stopped"
    redis-cli -p "$REDIS_PORT" cluster info 2>/dev/null | grep cluster_state || echo "redis cluster: down"
    ;;
  replica)
    case "${2:-}" in
      stop) stop_replica ;;
      start) start_replica ;;
      restart) stop_replica; start_replica ;;
      *) echo "usage: $0 replica stop|start|restart" >&2; exit 2 ;;
    esac
    ;;
  redis)
    case "${2:-}" in
      stop) redis-cli -p "${3:?usage: $0 redis stop PORT}" shutdown nosave >/dev/null 2>&1 || true ;;
      start) start_redis ;;
      *) echo "usage: $0 redis stop PORT | redis start" >&2; exit 2 ;;
    esac
    ;;
  stop)
    stop_replica
    if pg_running "$DIR/pg/primary"; then pg_ctl_ -D "$DIR/pg/primary" -w -t 60 -m fast stop >/dev/null; fi
    stop_redis
    rm -rf "$DIR"
    ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
