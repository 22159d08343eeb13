#!/usr/bin/env bash
# `make demo`: build and install kdindex, start a throwaway cluster, load
# Fashion-MNIST (60,000 x 784) and run test/bench/demo.py (index build time and
# size, recall@10 and latency with and without re-rank, exact scan reference,
# kdindex_info).  The cluster is stopped on exit.
#
# As root, the server and demo.py run as the postgres OS user; the ground truth
# is computed first by the calling user into ${KDINDEX_CACHE:-/var/tmp/kdindex-cache}.
#
# Environment knobs:
#   PG_CONFIG               pg_config to build against (default: PostgreSQL 15's)
#   KDINDEX_DEMO_PORT       port of the throwaway cluster (default 54339; socket only)
#   KDINDEX_DEMO_DIR        cluster directory (default: a fresh /tmp/kdindex-demo.XXXXXX);
#                           an existing one is reused, so the table load is skipped
#   KDINDEX_KEEP_TMP        1 = keep the scratch directory (also kept on failure)
#   KDINDEX_SHARED_BUFFERS  shared_buffers for the demo cluster (default 1GB)
#   KDINDEX_MAINT_MEM       maintenance_work_mem (default 1GB)
#   KDINDEX_DEMO_NO_BUILD   1 = skip build + install (use the installed extension)
# Arguments are passed to demo.py, e.g. `test/scripts/demo.sh --queries 200 --rerank 20,50`.
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

# A `make demo -jN` hands us its jobserver; our own makes run standalone.
unset MAKEFLAGS MFLAGS MAKELEVEL

log()  { printf '\n=== %s ===\n' "$*"; }
die()  { echo "demo.sh: $*" >&2; exit 1; }

IS_ROOT=0; [ "$(id -u)" -eq 0 ] && IS_ROOT=1
as_pg() {
  if [ $IS_ROOT -eq 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- build
cd "$ROOT" || die "cannot cd to $ROOT"
if [ "${KDINDEX_DEMO_NO_BUILD:-0}" != 1 ]; then
  log "build ($PG_CONFIG)"
  make -j2 PG_CONFIG="$PG_CONFIG" || die "build failed"

  log "install"
  pkglibdir=$("$PG_CONFIG" --pkglibdir)
  if [ $IS_ROOT -eq 1 ] || [ -w "$pkglibdir" ]; then
    make install PG_CONFIG="$PG_CONFIG" || die "make install failed"
  elif command -v sudo >/dev/null 2>&1; then
    sudo make install PG_CONFIG="$PG_CONFIG" || die "sudo make install failed"
  else
    die "make install needs root (or sudo) to write into $pkglibdir"
  fi
fi

# ---------------------------------------------------------------- data
log "data set + exact ground truth (cache: ${KDINDEX_CACHE:-/var/tmp/kdindex-cache})"
"$PYTHON" "$ROOT/test/bench/datasets.py" fashion-mnist -k 100 || die "loading Fashion-MNIST failed"
if [ $IS_ROOT -eq 1 ]; then
  # demo.py runs as postgres: it must be able to read the cache
  chmod -R a+rX "${KDINDEX_CACHE:-/var/tmp/kdindex-cache}" 2>/dev/null || true
fi

# ---------------------------------------------------------------- cluster
if [ -n "${KDINDEX_DEMO_DIR:-}" ]; then
  WORK=$KDINDEX_DEMO_DIR; OWN_WORK=0
  mkdir -p "$WORK" || die "cannot create $WORK"
else
  WORK=$(mktemp -d /tmp/kdindex-demo.XXXXXX) || die "mktemp failed"; OWN_WORK=1
fi
PGDIR="$WORK/pg"
PORT=${KDINDEX_DEMO_PORT:-54339}
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
    echo "demo.sh: cluster directory kept: $WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ $IS_ROOT -eq 1 ] && chown postgres: "$WORK"

log "start throwaway cluster in $PGDIR on port $PORT"
"$SCRIPTS/cluster.sh" start "$PGDIR" "$PORT" || die "could not start the demo cluster"
CLUSTER_STARTED=1

export PGHOST="$PGDIR" PGPORT="$PORT" PGUSER=postgres
DB=kdindex_demo
# the test cluster is sized for tests (32MB); give the demo room, then restart
as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres \
  -c "ALTER SYSTEM SET shared_buffers = '${KDINDEX_SHARED_BUFFERS:-1GB}'" \
  -c "ALTER SYSTEM SET maintenance_work_mem = '${KDINDEX_MAINT_MEM:-1GB}'" \
  -c "ALTER SYSTEM SET work_mem = '64MB'" || die "cannot configure the demo cluster"
"$SCRIPTS/cluster.sh" stop "$PGDIR" && CLUSTER_STARTED=0
"$SCRIPTS/cluster.sh" start "$PGDIR" "$PORT" || die "could not restart the demo cluster"
CLUSTER_STARTED=1

if ! as_pg "$PGBIN/psql" -X -qtA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
  as_pg "$PGBIN/createdb" "$DB" || die "createdb $DB failed"
fi
export PGDATABASE=$DB

# ---------------------------------------------------------------- demo
log "demo (PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE PGUSER=$PGUSER)"
# cd somewhere postgres may read: Python and psycopg2 do not care, but a few tools do
(cd "$WORK" && as_pg env HOME="$WORK" KDINDEX_CACHE="${KDINDEX_CACHE:-/var/tmp/kdindex-cache}" \
   "$PYTHON" "$ROOT/test/bench/demo.py" "$@")
RESULT=$?
[ $RESULT -eq 0 ] || echo "demo.sh: demo.py failed (exit $RESULT)" >&2
exit $RESULT
