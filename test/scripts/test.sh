#!/usr/bin/env bash
# `make test`: build, install, start a throwaway cluster, run every suite
# (pg_regress, isolation, TAP) through `make installcheck`, print a summary.
#
# As root (CI), the suites run as the postgres OS user in a copy of the source
# tree owned by it: initdb (TAP tests) refuses to run as root and pg_regress
# writes its results next to the sources.
#
# Environment knobs:
#   PG_CONFIG         pg_config to build against (default: PostgreSQL 15's)
#   KDINDEX_TEST_PORT first port to try for the throwaway cluster (54329)
#   KDINDEX_KEEP_TMP  1 = keep the scratch directory (also kept on failure)
#   PROVE_FLAGS       extra flags for prove, e.g. --verbose
#   KDINDEX_PREFIX    install into a private relocated PostgreSQL (lib.sh)
#   KDINDEX_REGRESS, KDINDEX_ISOLATION, KDINDEX_TAP
#                     run only these tests (names; TAP: test/t/NNN_x.pl files);
#                     "none" skips that suite
#   KDINDEX_CLIENTS   "node" runs the client check (test/clients/node), "none"
#                     skips it; the default runs it unless one of the three
#                     above picks tests
set -uo pipefail
ME=test.sh
. "$(dirname "$0")/lib.sh"
PHASE_TIMEOUT=${KDINDEX_PHASE_TIMEOUT:-1800}

build_install
cd "$ROOT" || die "cannot cd to $ROOT"

# ---------------------------------------------------------------- scratch + cluster
WORK=$(mktemp -d /tmp/kdindex-test.XXXXXX) || die "mktemp failed"
COPY="$WORK/src"
PGDIR="$WORK/pg"
CLUSTER_STARTED=0
RESULT=1

cleanup() {
  if [ $CLUSTER_STARTED -eq 1 ]; then
    "$SCRIPTS/cluster.sh" stop "$PGDIR" || true
  fi
  if [ $RESULT -eq 0 ] && [ "${KDINDEX_KEEP_TMP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "test.sh: scratch directory kept: $WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "copy source tree to $COPY"
mkdir -p "$COPY"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # tracked + untracked-but-not-ignored files (works before the first commit too)
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
     | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh \
     | tar --null -T - -cf -) | tar -xf - -C "$COPY" || die "copying sources failed"
else
  (cd "$ROOT" && tar --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
     --exclude=results --exclude=output_iso --exclude=tmp_check -cf - .) \
     | tar -xf - -C "$COPY" || die "copying sources failed"
fi
# the built module is installed already; carry the objects along so that make
# in the copy has nothing to rebuild
(cd "$ROOT" && find . -path ./.git -prune -o \( -name '*.o' -o -name '*.so' -o -name '*.bc' \) -print0 \
   | tar --null -T - -cf -) | tar -xf - -C "$COPY" 2>/dev/null || true
[ $IS_ROOT -eq 1 ] && chown -R postgres: "$WORK"

port_free() {
  local p=$1
  [ -e "/var/run/postgresql/.s.PGSQL.$p" ] && return 1
  [ -e "/tmp/.s.PGSQL.$p" ] && return 1
  # something answering on TCP localhost:p?
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 1; fi
  return 0
}
PORT=${KDINDEX_TEST_PORT:-54329}
for _ in $(seq 1 200); do
  port_free "$PORT" && break
  PORT=$((PORT + 1))
done

log "start throwaway cluster in $PGDIR on port $PORT"
"$SCRIPTS/cluster.sh" start "$PGDIR" "$PORT" || die "could not start the test cluster"
CLUSTER_STARTED=1
# Tests that measure what VACUUM frees (churn, vacuum) must not race an
# autovacuum ANALYZE of an earlier test's table: its snapshot keeps the rows
# they deleted, which happened on a loaded machine.
as_pg "$PGBIN/psql" -X -q -h "$PGDIR" -p "$PORT" -U postgres -d postgres \
  -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null \
  || die "cannot turn autovacuum off in the test cluster"

# ---------------------------------------------------------------- suites
# installcheck runs pg_regress, then isolation, then TAP in one recipe and stops
# at the first failing one; run them as three makes so every suite reports.
run_installcheck() {   # $1 = label, rest = variable overrides
  local label=$1; shift
  local out="$WORK/$label.log"
  log "make installcheck: $label"
  (cd "$COPY" && as_pg env HOME="$WORK" PGHOST="$PGDIR" PGPORT="$PORT" PGUSER=postgres \
      PGDATABASE=postgres PG_TEST_EXTRA="${PG_TEST_EXTRA:-}" \
      timeout -k 30 "$PHASE_TIMEOUT" \
      make installcheck PG_CONFIG="$PG_CONFIG" bindir="$PGBIN" PROVE_FLAGS="${PROVE_FLAGS:-}" "$@") 2>&1 | tee "$out"
  return "${PIPESTATUS[0]}"
}

REGRESS_LIST=$(make -s -C "$COPY" -f - PG_CONFIG="$PG_CONFIG" print-regress <<'EOF' 2>/dev/null
include Makefile
print-regress: ; @echo $(REGRESS)
EOF
)
ISO_LIST=$(make -s -C "$COPY" -f - PG_CONFIG="$PG_CONFIG" print-iso <<'EOF' 2>/dev/null
include Makefile
print-iso: ; @echo $(ISOLATION)
EOF
)

[ -n "${KDINDEX_REGRESS:-}" ] && REGRESS_LIST=${KDINDEX_REGRESS/#none/}
[ -n "${KDINDEX_ISOLATION:-}" ] && ISO_LIST=${KDINDEX_ISOLATION/#none/}
TAP_LIST=$(cd "$COPY" && ls test/t/*.pl 2>/dev/null | tr '\n' ' ')
[ -n "${KDINDEX_TAP:-}" ] && TAP_LIST=${KDINDEX_TAP/#none/}
TAP_FILES=$(wc -w <<<"$TAP_LIST")
# Citus only for the test that uses it (lib.sh: built once, copied to the prefix)
case " $TAP_LIST " in *013_citus.pl*) ensure_citus ;; esac

rc_regress=0; rc_iso=0; rc_tap=0
if [ -n "$REGRESS_LIST" ]; then
  run_installcheck regress REGRESS="$REGRESS_LIST" ISOLATION= TAP_TESTS= || rc_regress=$?
fi
if [ -n "$ISO_LIST" ]; then
  run_installcheck isolation ISOLATION="$ISO_LIST" REGRESS= TAP_TESTS= || rc_iso=$?
fi
if [ "$TAP_FILES" -gt 0 ]; then
  run_installcheck tap PROVE_TESTS="$TAP_LIST" REGRESS= ISOLATION= || rc_tap=$?
fi

# ---------------------------------------------------------------- client check
# test/clients/node: node-postgres and pgvector's npm package against the same
# cluster, in a database of its own, under node's test runner. Without node or
# npm, or when npm ci cannot reach the registry (a fetch error or no answer
# within 60 s), one line says it was skipped and nothing fails; any other npm
# ci failure (say, a lock file out of step with package.json) is a failure.
CLIENTS=${KDINDEX_CLIENTS:-}
if [ -z "$CLIENTS" ]; then
  CLIENTS=node
  [ -n "${KDINDEX_REGRESS:-}${KDINDEX_ISOLATION:-}${KDINDEX_TAP:-}" ] && CLIENTS=none
fi
client_ran=0; rc_client=0
run_client_check() {
  local dir="$COPY/test/clients/node" t0=$SECONDS t1 rc
  local npm_env=(env HOME="$WORK" npm_config_cache="$WORK/.npm" npm_config_update_notifier=false
                 npm_config_fetch_retries=1 npm_config_fetch_retry_mintimeout=2000
                 npm_config_fetch_timeout=20000)
  if [ "$CLIENTS" = none ]; then
    echo "client tests: skipped (KDINDEX_CLIENTS=none or a run of chosen tests)"; return
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "client tests: skipped (node or npm not found; test/scripts/deps.sh installs them)"; return
  fi
  log "client tests (test/clients/node, node $(node --version))"
  (cd "$dir" && as_pg "${npm_env[@]}" timeout -k 5 60 npm ci --no-audit --no-fund) \
    >"$WORK/client-npm.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    if [ $rc -eq 124 ] || grep -Eq 'code (ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ERR_SOCKET_TIMEOUT|E[45][0-9][0-9])|network' "$WORK/client-npm.log"; then
      echo "client tests: skipped (npm ci cannot reach the registry: $(grep -m1 -E 'code |network|ERR' "$WORK/client-npm.log" || echo timed out))"
      return
    fi
    cat "$WORK/client-npm.log"
    echo "client tests: npm ci failed"
    client_ran=1; rc_client=$rc; return
  fi
  t1=$SECONDS
  tail -n 1 "$WORK/client-npm.log"
  client_ran=1
  if ! as_pg "$PGBIN/createdb" -h "$PGDIR" -p "$PORT" -U postgres kdindex_client; then
    rc_client=1; return
  fi
  # spec output for the reader, TAP into client.log for the counts
  (cd "$dir" && as_pg env HOME="$WORK" PGHOST="$PGDIR" PGPORT="$PORT" PGUSER=postgres \
     PGDATABASE=kdindex_client timeout -k 5 120 node --test \
     --test-reporter=spec --test-reporter-destination=stdout \
     --test-reporter=tap --test-reporter-destination="$WORK/client.log" kdindex.test.mjs) 2>&1
  rc_client=$?
  if grep -q '# SKIP' "$WORK/client.log"; then
    echo "client tests: the vector part was skipped (pgvector is not installed)"
  fi
  echo "client tests: npm ci $((t1 - t0)) s, tests $((SECONDS - t1)) s"
}
run_client_check

# ---------------------------------------------------------------- summary
passed=0; failed=0
# pg_regress / pg_isolation_regress, PG15: "test name   ... ok   12 ms",
# "     name ... FAILED" in parallel groups; PG16+: "ok 1  - name  12 ms".
count_pg_regress() {   # $1 = log, $2 = exit status, $3 = number of tests expected
  local f=$1 rc=$2 want=$3 p=0 x=0
  if [ -f "$f" ]; then
    p=$(grep -Ec '^(test +| +)?[A-Za-z0-9_./-]+ +\.\.\. +ok( |$)|^ok +[0-9]+ +[-+] ' "$f")
    x=$(grep -Ec '^(test +| +)?[A-Za-z0-9_./-]+ +\.\.\. +FAILED|^not ok +[0-9]+ +[-+] ' "$f")
  fi
  # pg_regress failed before running anything (e.g. could not create the database)
  if [ "$rc" -ne 0 ] && [ "$x" -eq 0 ]; then x=$(( want > p ? want - p : 1 )); fi
  passed=$((passed + p)); failed=$((failed + x))
  echo "$(basename "$f" .log): $p passed, $x failed"
}
# prove: "Files=2, Tests=31, ..." and, on failure, a "Test Summary Report" with
# one "test/t/xxx.pl (Wstat: ... Tests: ... Failed: ...)" line per failing file.
count_prove() {   # $1 = log, $2 = exit status, $3 = number of test files
  local f=$1 rc=$2 want=$3 files x=0
  files=$(sed -n 's/^Files=\([0-9]*\),.*/\1/p' "$f" 2>/dev/null | tail -n 1)
  if [ -z "$files" ]; then
    files=$want; x=$want
  else
    x=$(sed -n '/^Test Summary Report/,$p' "$f" | grep -Ec '^[^ ]+\.pl +\(Wstat:')
    [ "$rc" -ne 0 ] && [ "$x" -eq 0 ] && x=$(( files > 0 ? files : 1 ))
  fi
  passed=$((passed + files - x)); failed=$((failed + x))
  echo "tap: $((files - x)) passed, $x failed (test files)"
}

# node's test runner (TAP reporter) ends with "# pass N" and "# fail N" lines;
# a file that died before them counts as one failed test.
count_node() {   # $1 = log, $2 = exit status
  local f=$1 rc=$2 p x c
  p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$f" 2>/dev/null | tail -n 1)
  x=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$f" 2>/dev/null | tail -n 1)
  c=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$f" 2>/dev/null | tail -n 1)
  if [ -z "$p" ] || [ -z "$x" ]; then p=0; x=1; fi
  x=$((x + ${c:-0}))
  [ "$rc" -ne 0 ] && [ "$x" -eq 0 ] && x=1
  passed=$((passed + p)); failed=$((failed + x))
  echo "client: $p passed, $x failed"
}

log "results"
[ -n "$REGRESS_LIST" ] && count_pg_regress "$WORK/regress.log" "$rc_regress" "$(wc -w <<<"$REGRESS_LIST")"
[ -n "$ISO_LIST" ] && count_pg_regress "$WORK/isolation.log" "$rc_iso" "$(wc -w <<<"$ISO_LIST")"
[ "$TAP_FILES" -gt 0 ] && count_prove "$WORK/tap.log" "$rc_tap" "$TAP_FILES"
[ $client_ran -eq 1 ] && count_node "$WORK/client.log" "$rc_client"

if [ $rc_regress -ne 0 ] || [ $rc_iso -ne 0 ] || [ $rc_tap -ne 0 ] || [ $rc_client -ne 0 ] \
   || [ $failed -ne 0 ]; then
  for d in "$COPY/regression.diffs" "$COPY/output_iso/regression.diffs"; do
    if [ -s "$d" ]; then
      log "${d#$COPY/} (first 400 lines)"
      head -n 400 "$d"
    fi
  done
  if [ $rc_tap -ne 0 ] && [ -d "$COPY/tmp_check/log" ]; then
    # logs of the failing test files only (all logs if prove did not say which)
    failed_tap=$(sed -n '/^Test Summary Report/,$p' "$WORK/tap.log" 2>/dev/null \
                 | sed -n 's#^\([^ ]*/\)\{0,1\}\([^ /]*\)\.pl  *(Wstat:.*#\2#p')
    for l in "$COPY"/tmp_check/log/*; do
      [ -f "$l" ] || continue
      if [ -n "$failed_tap" ]; then
        b=$(basename "$l"); keep=0
        for t in $failed_tap; do
          case "$b" in "regress_log_$t"|"${t}_"*) keep=1 ;; esac
        done
        [ $keep -eq 1 ] || continue
      fi
      log "tail of ${l#$COPY/}"
      tail -n 80 "$l"
    done
  fi
  log "tail of the test cluster's server log"
  tail -n 60 "$PGDIR/server.log" 2>/dev/null || true
  RESULT=1
else
  RESULT=0
fi

echo
echo "$passed passed, $failed failed"
exit $RESULT
