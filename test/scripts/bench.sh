#!/usr/bin/env bash
# `make bench [SUITE=fmnist|scale|scale-960|ip|fmnist1m|distill|distill-ip|fastscan]`: build and install kdindex, compute (or reuse)
# the exact ground truth, start a throwaway cluster with room for the data, and run
# test/bench/bench.py: kdindex, Faiss and (when installed) pgvector side by side on
# the same queries.  Prints the tables; writes bench-results/<suite>/ (not in git) and
# test/bench/results/<suite>.md + plots (committed).  The cluster is stopped on exit.
#
#   test/scripts/bench.sh [SUITE] [bench.py options...]
#   e.g. test/scripts/bench.sh scale --rows 100000 --queries 500
#
# SUITE=fmnist1m: 1M x 128 augmented Fashion-MNIST (datasets.py fmnist1m), every index
# built first and timed in paired rounds (bench.py --rounds, test/bench/rounds.py); give
# it maintenance_work_mem and shared_buffers 4GB unless KDINDEX_MAINT_MEM /
# KDINDEX_SHARED_BUFFERS say otherwise.
#
# SUITE=distill and distill-ip run test/bench/distill.py instead (recall before and
# after kdindex_train on Fashion-MNIST / the asymmetric inner-product set);
# SUITE=fastscan runs test/bench/fastscan.py (4-bit fast scan vs the 8-bit scan,
# beside Faiss's PQ and PQ fast scan, on the 1M x 128 set); SUITE=citus runs
# test/bench/citus.py (one node vs a Citus coordinator + 2 workers, ports PORT..PORT+3).
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
ME=bench.sh
. "$(dirname "$0")/lib.sh"
export KDINDEX_CACHE=${KDINDEX_CACHE:-/var/tmp/kdindex-cache}

SUITE=fmnist
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then SUITE=$1; shift; fi
if [ "$SUITE" = fmnist1m ]; then   # HNSW on 1M x 128 builds in memory with 4GB
  export KDINDEX_MAINT_MEM=${KDINDEX_MAINT_MEM:-4GB} KDINDEX_SHARED_BUFFERS=${KDINDEX_SHARED_BUFFERS:-4GB}
fi
# shellcheck disable=SC2206
ARGS=(--suite "$SUITE" "$@" ${KDINDEX_BENCH_ARGS:-})
T0=$(date +%s)
on_exit() { echo "bench.sh: wall time $(( $(date +%s) - T0 )) s"; }

[ "${KDINDEX_BENCH_NO_BUILD:-0}" = 1 ] || build_install

case "$SUITE" in
  distill|distill-ip)
    [ "$SUITE" = distill ] && DS=fashion-mnist || DS=synth-ip-256
    data_cluster bench "${KDINDEX_BENCH_DIR:-}" "${KDINDEX_BENCH_PORT:-54341}" kdindex_bench \
      max_wal_size=4GB checkpoint_timeout=30min
    log "distill.py --dataset $DS $* (PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE)"
    "$PYTHON" "$ROOT/test/bench/distill.py" --dataset "$DS" "$@" ${KDINDEX_BENCH_ARGS:-}
    RESULT=$?
    exit $RESULT ;;
  fastscan)
    data_cluster bench "${KDINDEX_BENCH_DIR:-}" "${KDINDEX_BENCH_PORT:-54341}" kdindex_bench \
      max_wal_size=4GB checkpoint_timeout=30min
    log "fastscan.py $* (PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE)"
    "$PYTHON" "$ROOT/test/bench/fastscan.py" "$@" ${KDINDEX_BENCH_ARGS:-}
    exit $? ;;
  citus)
    ensure_citus
    log "citus.py $*"
    "$PYTHON" "$ROOT/test/bench/citus.py" "$@" ${KDINDEX_BENCH_ARGS:-}
    exit $? ;;
esac

# ---------------------------------------------------------------- data
log "data sets + exact ground truth (suite $SUITE; cache: $KDINDEX_CACHE)"
# (all BLAS threads here; bench.py itself pins everything to one thread)
"$PYTHON" "$ROOT/test/bench/bench.py" --prepare-only "${ARGS[@]}" || die "preparing the data failed"

data_cluster bench "${KDINDEX_BENCH_DIR:-}" "${KDINDEX_BENCH_PORT:-54341}" kdindex_bench \
  max_wal_size=4GB checkpoint_timeout=30min

# ---------------------------------------------------------------- bench
log "bench.py ${ARGS[*]} (PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE)"
"$PYTHON" "$ROOT/test/bench/bench.py" "${ARGS[@]}"
RESULT=$?
[ $RESULT -eq 0 ] || echo "bench.sh: bench.py failed (exit $RESULT)" >&2
exit $RESULT
