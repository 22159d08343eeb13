#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for tests.
#
#   cluster.sh start DIR PORT   initdb DIR/data (if needed) and start it; the unix
#                               socket lives in DIR, no TCP (listen_addresses='')
#   cluster.sh stop DIR         stop it (fast, then immediate if that hangs)
#
# The superuser is always "postgres" (PGHOST=DIR PGPORT=PORT PGUSER=postgres).
# initdb refuses to run as root, so as root everything runs as the postgres OS
# user and DIR is handed to it.  Server log: DIR/server.log
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

usage() { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac
data="$dir/data"
log="$dir/server.log"

case "$cmd" in
start)
  port=${3:-}
  [[ "$port" =~ ^[0-9]+$ ]] || usage
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "cluster.sh: no 'postgres' OS user" >&2; exit 1; }
    chown -R postgres: "$dir"
  fi
  chmod 700 "$dir"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale \
      --no-instructions >"$dir/initdb.log" 2>&1 || {
      echo "cluster.sh: initdb failed:" >&2; cat "$dir/initdb.log" >&2; exit 1; }
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<CONF

# --- throwaway test cluster (test/scripts/cluster.sh) ---
listen_addresses = ''
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 40
max_prepared_transactions = 10
max_wal_size = 1GB
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
CONF
  else
    # re-used (or moved) data directory: make sure it listens where we were asked to
    as_pg sed -i -e "s/^port = .*/port = $port/" \
      -e "s|^unix_socket_directories = .*|unix_socket_directories = '$dir'|" "$data/postgresql.conf"
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -s start; then
    echo "cluster.sh: server did not start; log tail:" >&2
    tail -n 50 "$log" >&2 || true
    exit 1
  fi
  for _ in $(seq 1 60); do
    if "$PGBIN/pg_isready" -q -h "$dir" -p "$port" -U postgres; then
      exit 0
    fi
    sleep 0.5
  done
  echo "cluster.sh: server not ready after 30s; log tail:" >&2
  tail -n 50 "$log" >&2 || true
  exit 1
  ;;
stop)
  [ -f "$data/postmaster.pid" ] || exit 0
  if ! as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 -s stop; then
    as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 30 -s stop || true
  fi
  ;;
*)
  usage
  ;;
esac
