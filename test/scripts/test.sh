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

log "results"
[ -n "$REGRESS_LIST" ] && count_pg_regress "$WORK/regress.log" "$rc_regress" "$(wc -w <<<"$REGRESS_LIST")"
[ -n "$ISO_LIST" ] && count_pg_regress "$WORK/isolation.log" "$rc_iso" "$(wc -w <<<"$ISO_LIST")"
[ "$TAP_FILES" -gt 0 ] && count_prove "$WORK/tap.log" "$rc_tap" "$TAP_FILES"

if [ $rc_regress -ne 0 ] || [ $rc_iso -ne 0 ] || [ $rc_tap -ne 0 ] || [ $failed -ne 0 ]; then
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
