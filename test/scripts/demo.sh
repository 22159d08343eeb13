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
ME=demo.sh
. "$(dirname "$0")/lib.sh"

[ "${KDINDEX_DEMO_NO_BUILD:-0}" = 1 ] || build_install

# ---------------------------------------------------------------- data
log "data set + exact ground truth (cache: ${KDINDEX_CACHE:-/var/tmp/kdindex-cache})"
"$PYTHON" "$ROOT/test/bench/datasets.py" fashion-mnist -k 100 || die "loading Fashion-MNIST failed"
if [ $IS_ROOT -eq 1 ]; then
  # demo.py runs as postgres: it must be able to read the cache
  chmod -R a+rX "${KDINDEX_CACHE:-/var/tmp/kdindex-cache}" 2>/dev/null || true
fi

data_cluster demo "${KDINDEX_DEMO_DIR:-}" "${KDINDEX_DEMO_PORT:-54339}" kdindex_demo

# ---------------------------------------------------------------- demo
log "demo (PGHOST=$PGHOST PGPORT=$PGPORT PGDATABASE=$PGDATABASE PGUSER=$PGUSER)"
# cd somewhere postgres may read: Python and psycopg2 do not care, but a few tools do
(cd "$WORK" && as_pg env HOME="$WORK" KDINDEX_CACHE="${KDINDEX_CACHE:-/var/tmp/kdindex-cache}" \
   "$PYTHON" "$ROOT/test/bench/demo.py" "$@")
RESULT=$?
[ $RESULT -eq 0 ] || echo "demo.sh: demo.py failed (exit $RESULT)" >&2
exit $RESULT
