#!/usr/bin/env bash
# `make bench [SUITE=fmnist|scale|ip]`: build and install kdindex, compute (or reuse)
# the exact ground truth, start a throwaway cluster with room for the data, and run
# test/bench/bench.py: kdindex, Faiss and (when installed) pgvector side by side on
# the same queries.  Prints the tables; writes bench-results/<suite>/ (not in git) and
# test/bench/results/<suite>.md + plots (committed).  The cluster is stopped on exit.
#
#   test/scripts/bench.sh [SUITE] [bench.py options...]
#   e.g. test/scripts/bench.sh scale --rows 100000 --queries 500
#
# bench.py runs as the calling user (as root it reaches the postgres-owned socket
# anyway) so that it can write the results into the repository and the cache.
#
# Environment knobs:
#   KDINDEX_BENCH_ARGS      extra bench.py options (for `make bench`), e.g. "--reps 5"
#   PG_CONFIG               pg_config to build against (default: PostgreSQL 15's)
#   KDINDEX_BENCH_PORT      port of the throwaway cluster (default 54341; socket only)
#   KDINDEX_BENCH_DIR       cluster directory (default: a fresh /tmp/kdindex-bench.XXXXXX);
#                           an existing one is reused, so table loads are skipped
#   KDINDEX_KEEP_TMP        1 = keep the scratch directory (also kept on failure)
#   KDINDEX_SHARED_BUFFERS  shared_buffers (default 1GB); KDINDEX_MAINT_MEM
#                           maintenance_work_mem (default 1GB); work_mem is 64MB
#   KDINDEX_BENCH_NO_BUILD  1 = skip build + install (use the installed extension)
#   KDINDEX_CACHE           ground truth and trained Faiss indexes
#                           (default /var/tmp/kdindex-cache)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SCRIPTS="$ROOT/test/scripts"
PGBIN=/usr/lib/postgresql/15/bin
PYTHON=/usr/bin/python3
if [ -z "${PG_CONFIG:-}" ]; then
  if [ -x "$PGBIN/pg_config" ]; then PG_CONFIG="$PGBIN/pg_config"; else PG_CONFIG=/usr/bin/pg_config; fi
fi
export PG_CONFIG
export PYTHONDONTWRITEBYTECODE=1
export KDINDEX_CACHE=${KDINDEX_CACHE:-/var/tmp/kdindex-cache}

unset MAKEFLAGS MFLAGS MAKELEVEL

log()  { printf '\n=== %s ===\n' "$*"; }
die()  { echo "bench.sh: $*" >&2; exit 1; }

IS_ROOT=0; [ "$(id -u)" -eq 0 ] && IS_ROOT=1
as_pg() {
  if [ $IS_ROOT -eq 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

SUITE=fmnist
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then SUITE=$1; shift; fi
# shellcheck disable=SC2206
ARGS=(--suite "$SUITE" "$@" ${KDINDEX_BENCH_ARGS:-})
T0=$(date +%s)

# ---------------------------------------------------------------- build
cd "$ROOT" || die "cannot cd to $ROOT"
if [ "${KDINDEX_BENCH_NO_BUILD:-0}" != 1 ]; then
  log "build ($PG_CONFIG)"
  make -j2 PG_CONFIG="$PG_CONFIG" || die "build failed"
  log "install"
  pkglibdir=$("$PG_CONFIG" --pkglibdir)
  if [ $IS_ROOT -eq 1 ] || [ -w "$pkglibdir" ]; then
    make install PG_CONFIG="$PG_CONFIG" >/dev/null || die "make install failed"
  elif command -v sudo >/dev/null 2>&1; then
    sudo make install PG_CONFIG="$PG_CONFIG" >/dev/null || die "sudo make install failed"
  else
    die "make install needs root (or sudo) to write into $pkglibdir"
  fi
fi

# ---------------------------------------------------------------- data
log "data sets + exact ground truth (suite $SUITE; cache: $KDINDEX_CACHE)"
# (all BLAS threads here; bench.py itself pins everything to one thread)
"$PYTHON" "$ROOT/test/bench/bench.py" --prepare-only "${ARGS[@]}" || die "preparing the data failed"

# ---------------------------------------------------------------- cluster
if [ -n "${KDINDEX_BENCH_DIR:-}" ]; then
  WORK=$KDINDEX_BENCH_DIR; OWN_WORK=0
  mkdir -p "$WORK" || die "cannot create $WORK"
else
  WORK=$(mktemp -d /tmp/kdindex-bench.XXXXXX) || die "mktemp failed"; OWN_WORK=1
fi
PGDIR="$WORK/pg"
PORT=${KDINDEX_BENCH_PORT:-54341}
CLUSTER_STARTED=0
RESULT=1

cleanup() {
  if [ $CLUSTER_STARTED -eq 1 ]; then
    "$SCRIPTS/cluster.sh" stop "$PGDIR" || true
  fi
  if [ $RESULT -ne 0 ] && [ -f "$PGDIR/server.log" ]; then
    log "tail of $PGDIR/server.log"
    tail -n 40 "$PGDIR/server.log"
  fi
  if [ $OWN_WORK -eq 1 ] && [ $RESULT -eq 0 ] && [ "${KDINDEX_KEEP_TMP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "bench.sh: cluster directory kept: $WORK"
  fi
  echo "bench.sh: wall time $(( $(date +%s) - T0 )) s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ $IS_ROOT -eq 1 ] && chown postgres: "$WORK"

log "start throwaway cluster in $PGDIR on port $PORT"
"$SCRIPTS/cluster.sh" start "$PGDIR" "$PORT" || die "could not start the bench cluster"
CLUSTER_STARTED=1

export PGHOST="$PGDIR" PGPORT="$PORT" PGUSER=postgres
DB=kdindex_bench
# the test cluster is sized for tests (32MB); give the benchmark room, then restart
as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres \
  -c "ALTER SYSTEM SET shared_buffers = '${KDINDEX_SHARED_BUFFERS:-1GB}'" \
  -c "ALTER SYSTEM SET maintenance_work_mem = '${KDINDEX_MAINT_MEM:-1GB}'" \
  -c "ALTER SYSTEM SET work_mem = '64MB'" \
  -c "ALTER SYSTEM SET max_wal_size = '4GB'" \
  -c "ALTER SYSTEM SET checkpoint_timeout = '30min'" || die "cannot configure the bench cluster"
"$SCRIPTS/cluster.sh" stop "$PGDIR" && CLUSTER_STARTED=0
"$SCRIPTS/cluster.sh" start "$PGDIR" "$PORT" || die "could not restart the bench cluster"
CLUSTER_STARTED=1

if ! as_pg "$PGBIN/psql" -X -qtA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  as_pg "$PGBIN/createdb" "$DB" || die "createdb $DB failed"
fi
export PGDATABASE=$DB

# ---------------------------------------------------------------- bench
log "bench.py ${ARGS[*]} (PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE)"
"$PYTHON" "$ROOT/test/bench/bench.py" "${ARGS[@]}"
RESULT=$?
[ $RESULT -eq 0 ] || echo "bench.sh: bench.py failed (exit $RESULT)" >&2
exit $RESULT
