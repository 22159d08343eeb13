# Shared by test.sh, demo.sh and bench.sh (sourced, not run): paths, logging,
# running as the postgres OS user, building + installing, and a throwaway
# cluster with room for real data.  The sourcing script sets ME first.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCRIPTS="$ROOT/test/scripts"
PGBIN=/usr/lib/postgresql/15/bin
if [ -z "${PG_CONFIG:-}" ]; then
  if [ -x "$PGBIN/pg_config" ]; then PG_CONFIG="$PGBIN/pg_config"; else PG_CONFIG=/usr/bin/pg_config; fi
fi
export PG_CONFIG
# KDINDEX_PREFIX=DIR: install into, and run clusters from, a relocated copy of
# PostgreSQL 15 under DIR (made on first use), so that several checkouts can
# test side by side without replacing each other's installed kdindex.so.
if [ -n "${KDINDEX_PREFIX:-}" ]; then
  if [ ! -x "$KDINDEX_PREFIX$PGBIN/postgres" ]; then
    mkdir -p "$KDINDEX_PREFIX/usr/lib/postgresql" "$KDINDEX_PREFIX/usr/share/postgresql"
    cp -a "$PGBIN/.." "$KDINDEX_PREFIX/usr/lib/postgresql/15"
    cp -a /usr/share/postgresql/15 "$KDINDEX_PREFIX/usr/share/postgresql/"
    chmod -R a+rX "$KDINDEX_PREFIX"
  fi
  PGBIN=$KDINDEX_PREFIX$PGBIN
fi
export PGBIN
PYTHON=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1

# A `make -jN` hands us its jobserver; our own makes run standalone.
unset MAKEFLAGS MFLAGS MAKELEVEL

log()  { printf '\n=== %s ===\n' "$*"; }
die()  { echo "$ME: $*" >&2; exit 1; }

IS_ROOT=0; [ "$(id -u)" -eq 0 ] && IS_ROOT=1
as_pg() {
  if [ $IS_ROOT -eq 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

build_install() {
  cd "$ROOT" || die "cannot cd to $ROOT"
  log "build ($PG_CONFIG)"
  make -j2 PG_CONFIG="$PG_CONFIG" || die "build failed"
  log "install"
  local pkglibdir
  pkglibdir=$("$PG_CONFIG" --pkglibdir)
  if [ -n "${KDINDEX_PREFIX:-}" ]; then
    make install PG_CONFIG="$PG_CONFIG" DESTDIR="$KDINDEX_PREFIX" >/dev/null || die "make install failed"
  elif [ $IS_ROOT -eq 1 ] || [ -w "$pkglibdir" ]; then
    make install PG_CONFIG="$PG_CONFIG" >/dev/null || die "make install failed"
  elif command -v sudo >/dev/null 2>&1; then
    sudo make install PG_CONFIG="$PG_CONFIG" >/dev/null || die "sudo make install failed"
  else
    die "make install needs root (or sudo) to write into $pkglibdir"
  fi
}

# data_cluster NAME DIR PORT DB [SETTING=VALUE...]: a throwaway cluster in DIR
# (a fresh /tmp/kdindex-NAME.XXXXXX when DIR is empty; an existing one is
# reused), sized for real data, with database DB; exports the libpq variables.
# Stopped on exit; the directory is removed unless the run failed or
# KDINDEX_KEEP_TMP=1.  A script's on_exit function, if any, runs last.
data_cluster() {
  local name=$1 dir=$2 port=$3 db=$4
  shift 4
  if [ -n "$dir" ]; then
    WORK=$dir; OWN_WORK=0
    mkdir -p "$WORK" || die "cannot create $WORK"
  else
    WORK=$(mktemp -d "/tmp/kdindex-$name.XXXXXX") || die "mktemp failed"; OWN_WORK=1
  fi
  PGDIR="$WORK/pg"
  CLUSTER_STARTED=0
  RESULT=1
  trap data_cluster_cleanup EXIT
  trap 'exit 130' INT TERM
  [ $IS_ROOT -eq 1 ] && chown postgres: "$WORK"

  log "start throwaway cluster in $PGDIR on port $port"
  "$SCRIPTS/cluster.sh" start "$PGDIR" "$port" || die "could not start the cluster"
  CLUSTER_STARTED=1
  export PGHOST="$PGDIR" PGPORT="$port" PGUSER=postgres
  # cluster.sh sizes clusters for tests (32MB): give the data room, then restart
  local sets=(-c "ALTER SYSTEM SET shared_buffers = '${KDINDEX_SHARED_BUFFERS:-1GB}'"
              -c "ALTER SYSTEM SET maintenance_work_mem = '${KDINDEX_MAINT_MEM:-1GB}'"
              -c "ALTER SYSTEM SET work_mem = '64MB'")
  local s
  for s in "$@"; do sets+=(-c "ALTER SYSTEM SET ${s%%=*} = '${s#*=}'"); done
  as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres "${sets[@]}" || die "cannot configure the cluster"
  "$SCRIPTS/cluster.sh" stop "$PGDIR" && CLUSTER_STARTED=0
  "$SCRIPTS/cluster.sh" start "$PGDIR" "$port" || die "could not restart the cluster"
  CLUSTER_STARTED=1

  if ! as_pg "$PGBIN/psql" -X -qtA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    as_pg "$PGBIN/createdb" "$db" || die "createdb $db failed"
  fi
  export PGDATABASE=$db
}

data_cluster_cleanup() {
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
    echo "$ME: cluster directory kept: $WORK"
  fi
  if declare -F on_exit >/dev/null; then on_exit; fi
}

# Citus, for test/t/013_citus.pl only (the extension never needs it).  A
# machine with Citus packages has citus.so already; here it is built from the
# upstream source in ../shared/citus beside the repository (or
# $KDINDEX_CITUS_DIR) by its build.sh, as root, about 3 minutes once.  With a
# private prefix (KDINDEX_PREFIX) Citus's files are copied into it, where the
# relocated server loads libraries from.  Without either, 013_citus.pl skips
# itself with a notice.  Never fails the run: a failed build is reported and
# the test skipped.
ensure_citus() {
  local dir=${KDINDEX_CITUS_DIR:-$ROOT/../shared/citus}
  local libdir sharedir
  libdir=$("$PG_CONFIG" --pkglibdir); sharedir=$("$PG_CONFIG" --sharedir)
  if [ ! -f "$libdir/citus.so" ]; then
    if [ ! -x "$dir/build.sh" ]; then
      echo "$ME: Citus is not installed and $dir/build.sh is absent: 013_citus.pl will skip"
      return 0
    fi
    if [ $IS_ROOT -ne 1 ]; then
      echo "$ME: Citus is not installed and building it needs root ($dir/build.sh): 013_citus.pl will skip"
      return 0
    fi
    log "build Citus ($dir/build.sh, about 3 minutes, once)"
    "$dir/build.sh" "$PG_CONFIG" || { echo "$ME: building Citus failed: 013_citus.pl will skip"; return 0; }
  fi
  [ -n "${KDINDEX_PREFIX:-}" ] || return 0
  # citus.so, citus_columnar.so, citus_pgoutput.so, citus_wal2json.so, the
  # decoders, and the extension scripts: whatever `make install` put there
  local f
  for f in "$libdir"/citus*.so "$libdir"/citus_decoders; do
    [ -e "$f" ] && cp -a "$f" "$KDINDEX_PREFIX$libdir/"
  done
  for f in "$sharedir"/extension/citus*; do
    [ -e "$f" ] && cp -a "$f" "$KDINDEX_PREFIX$sharedir/extension/"
  done
  chmod -R a+rX "$KDINDEX_PREFIX$libdir" "$KDINDEX_PREFIX$sharedir/extension"
}
