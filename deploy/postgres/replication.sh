#!/bin/sh
# Runs once, when the primary's data directory is created: lets the replica of the `scale`
# profile connect for streaming replication (same password as the application user).
set -e
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
