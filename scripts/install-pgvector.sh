#!/usr/bin/env bash
# Installs the pgvector extension into the running PostgreSQL server when it is missing.
#
# pgvector is built from Debian's source package against the server's own dev headers, so the
# extension matches the server major version exactly. The mirror is read from this machine's apt
# configuration (no host name is written here). We prefer the newest source suite that carries
# pgvector >= 0.8 (iterative index scans), falling back to the machine's own suites.
set -euo pipefail

PGPORT=${PGPORT:-5432}
PGHOST=${PGHOST:-127.0.0.1}
PGUSER=${PGUSER:-postgres}
SUITES=${PGVECTOR_SOURCE_SUITES:-"trixie bookworm-backports bookworm"}

log() { echo "[install-pgvector] $*" >&2; }

have_vector() {
  psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -tAc \
    "select 1 from pg_available_extensions where name = 'vector' and default_version >= '0.8'" 2>/dev/null | grep -q 1
}

if have_vector; then
  log "pgvector >= 0.8 already available"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "must run as root to install packages"
  exit 1
fi

pg_major=$(psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -tAc "show server_version_num" | cut -c1-2)
log "server major version: $pg_major"

# The first Debian mirror named in the machine's apt configuration (deb822 or one-line format).
mirror=""
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
  mirror=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources | grep -E '/debian/?$' | head -n1 || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list | grep -E '/debian/?$' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  log "could not find a Debian mirror in the apt configuration"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "postgresql-server-dev-$pg_major" build-essential dpkg-dev >/dev/null

work=$(mktemp -d)
src_list=/etc/apt/sources.list.d/marketking-pgvector-src.sources
trap 'rm -rf "$work" "$src_list"; apt-get update -qq >/dev/null 2>&1 || true' EXIT

built=""
for suite in $SUITES; do
  log "trying pgvector source from suite $suite"
  cat >"$src_list" <<SRC
Types: deb-src
URIs: $mirror
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  if ! apt-get update -qq -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts=- \
      -o Dir::Etc::SourceList="$src_list" 2>/dev/null; then
    apt-get update -qq || true
  fi
  rm -rf "${work:?}"/*
  if (cd "$work" && apt-get source -qq --download-only pgvector >/dev/null 2>&1 && dpkg-source -x --no-check ./*.dsc src >/dev/null 2>&1); then
    version=$(sed -n 's/^default_version = .\(.*\).$/\1/p' "$work/src/vector.control")
    log "got pgvector $version from $suite"
    case "$version" in
      0.[0-7].*) log "version $version lacks iterative scans; trying the next suite"; continue ;;
    esac
    make -C "$work/src" -s -j"$(nproc)" PG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config" OPTFLAGS="" >/dev/null
    make -C "$work/src" -s install PG_CONFIG="/usr/lib/postgresql/$pg_major/bin/pg_config" >/dev/null
    built=$version
    break
  fi
done

if [ -z "$built" ]; then
  log "no usable pgvector source package found"
  exit 1
fi
have_vector || { log "installed pgvector $built but the server does not list it"; exit 1; }
log "pgvector $built installed"
