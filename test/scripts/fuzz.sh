#!/usr/bin/env bash
# `make fuzz`: SQLsmith against a database full of kdindex indexes, for a
# bounded time, counting the statements it ran and the server crashes.
#
# Installs Debian's sqlsmith when it is missing (as root), builds and installs
# kdindex, starts a throwaway cluster (lib.sh's data_cluster), and creates a
# database holding a kdindex index of each quantizer (pq, opq, aq) with and
# without lists, at nbits 8 and 4, on real[] columns (and vector columns when
# pgvector is installed), plus untrained, expression, partial, inner-product
# and cosine indexes.  SQLsmith runs as a non-superuser that owns the tables
# (so it can insert, update, delete and call kdindex_train on them, but not
# stop the server or write files), with fresh seeds until FUZZ_MINUTES are up,
# while another session runs VACUUM every 20 s.  Afterwards every index is
# checked: kdindex_verify (when the function exists) and, after VACUUM, the
# rows each index holds against the table's.
#
# Fails when the server crashed ("terminated by signal" in its log) or an index
# check fails.  Prints SQLSTATE XX000 (internal error) messages and other
# messages meant for developers, which deserve a look even when nothing crashed.
#
# Environment knobs:
#   FUZZ_MINUTES            how long SQLsmith runs (default 10)
#   FUZZ_SEED               first SQLsmith seed (default 1; each restart adds 1)
#   KDINDEX_FUZZ_PORT       port of the throwaway cluster (default 54359; socket only)
#   KDINDEX_FUZZ_DIR        cluster directory (default: a fresh /tmp/kdindex-fuzz.XXXXXX)
#   KDINDEX_KEEP_TMP        1 = keep the scratch directory (also kept on failure)
#   KDINDEX_FUZZ_NO_BUILD   1 = skip build + install (use the installed extension)
#   KDINDEX_PREFIX          install into a private relocated PostgreSQL (lib.sh)
set -uo pipefail
ME=fuzz.sh
. "$(dirname "$0")/lib.sh"

MINUTES=${FUZZ_MINUTES:-10}
SEED=${FUZZ_SEED:-1}
[[ "$MINUTES" =~ ^[0-9]+$ ]] || die "FUZZ_MINUTES must be a whole number of minutes"

if ! command -v sqlsmith >/dev/null 2>&1; then
  [ $IS_ROOT -eq 1 ] || die "sqlsmith is missing: apt-get install sqlsmith (as root)"
  log "install sqlsmith"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update && apt-get install -y sqlsmith; } >/dev/null || die "installing sqlsmith failed"
fi

[ "${KDINDEX_FUZZ_NO_BUILD:-0}" = 1 ] || build_install

: "${KDINDEX_SHARED_BUFFERS:=128MB}" "${KDINDEX_MAINT_MEM:=256MB}"
export KDINDEX_SHARED_BUFFERS KDINDEX_MAINT_MEM
# %e: every logged error carries its SQLSTATE, so internal errors can be counted
data_cluster fuzz "${KDINDEX_FUZZ_DIR:-}" "${KDINDEX_FUZZ_PORT:-54359}" kdindex_fuzz \
  "log_line_prefix=%m [%p] %e %a " "restart_after_crash=on"
SERVER_LOG="$PGDIR/server.log"
CONN="host=$PGHOST port=$PGPORT dbname=$PGDATABASE user=fuzz"
psql_pg() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# ---------------------------------------------------------------- the database
log "create the fuzz database"
HAS_VECTOR=$(psql_pg -tA -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
psql_pg <<SQL || die "setting up the fuzz database failed"
DROP ROLE IF EXISTS fuzz;
CREATE ROLE fuzz LOGIN;
ALTER DATABASE $PGDATABASE OWNER TO fuzz;
$([ "$HAS_VECTOR" = 1 ] && echo "CREATE EXTENSION IF NOT EXISTS vector;")
CREATE EXTENSION kdindex;
SQL

# one table per (quantizer, lists, nbits): 1,500 clustered 8-d rows, enough to
# train every layout; cat is a filter column.
psql_pg -U fuzz <<'SQL' || die "creating the fuzz tables failed"
SELECT setseed(0.25);
CREATE FUNCTION fuzz_vec(seed int, dim int) RETURNS real[] LANGUAGE sql IMMUTABLE
  RETURN ARRAY(SELECT ((hashint4(seed * dim + j) % 1000) / 1000.0 + (seed % 7))::real
               FROM generate_series(0, dim - 1) j);
DO $$
DECLARE
  q text; l int; b int; tbl text;
BEGIN
  FOREACH q IN ARRAY ARRAY['pq', 'opq', 'aq'] LOOP
    FOREACH l IN ARRAY ARRAY[0, 6] LOOP
      FOREACH b IN ARRAY ARRAY[8, 4] LOOP
        tbl := format('kd_%s_l%s_b%s', q, l, b);
        EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, cat int, v real[])', tbl);
        EXECUTE format('INSERT INTO %I SELECT i, i %% 10, fuzz_vec(i, 8) FROM generate_series(1, 1500) i', tbl);
        EXECUTE format('CREATE INDEX ON %I USING kdindex (v) WITH (quantizer = %L, m = 4, nbits = %s, lists = %s)',
                       tbl, q, b, l);
      END LOOP;
    END LOOP;
  END LOOP;
END $$;

-- untrained (too few rows), empty, and one that trains itself at 624 rows
CREATE TABLE kd_small (id int PRIMARY KEY, cat int, v real[]);
INSERT INTO kd_small SELECT i, i % 3, fuzz_vec(i, 8) FROM generate_series(1, 50) i;
CREATE INDEX ON kd_small USING kdindex (v);
CREATE TABLE kd_empty (id int PRIMARY KEY, v real[]);
CREATE INDEX ON kd_empty USING kdindex (v) WITH (nbits = 4);
CREATE TABLE kd_grow (id serial PRIMARY KEY, v real[]);
INSERT INTO kd_grow (v) SELECT fuzz_vec(i, 16) FROM generate_series(1, 600) i;
CREATE INDEX ON kd_grow USING kdindex (v) WITH (nbits = 4, m = 8);

-- other opclasses, an expression index and a partial index, distill = on
CREATE TABLE kd_ops (id int PRIMARY KEY, cat int, v real[]);
INSERT INTO kd_ops SELECT i, i % 5, fuzz_vec(i, 12) FROM generate_series(1, 1200) i;
CREATE INDEX ON kd_ops USING kdindex (v float4_ip_ops) WITH (m = 4);
CREATE INDEX ON kd_ops USING kdindex (v float4_cosine_ops) WITH (quantizer = 'opq', m = 3, lists = 4);
CREATE INDEX ON kd_ops USING kdindex ((v[1:8])) WITH (quantizer = 'aq', m = 2);
CREATE INDEX ON kd_ops USING kdindex (v) WITH (m = 6, nbits = 4) WHERE cat = 2;
CREATE INDEX ON kd_ops USING kdindex (v) WITH (m = 4, distill = on);

-- a teacher, so that kdindex_train and kdindex_recall have something to chew
SELECT kdindex_teacher('kd_pq_l0_b8', 'v', 'kd_teacher', k => 20, nqueries => 100);
SQL

if [ "$HAS_VECTOR" = 1 ]; then
  psql_pg -U fuzz <<'SQL' || die "creating the pgvector tables failed"
CREATE TABLE kd_vec (id int PRIMARY KEY, cat int, v vector(8));
INSERT INTO kd_vec SELECT i, i % 10, fuzz_vec(i, 8)::text::vector FROM generate_series(1, 1500) i;
CREATE INDEX ON kd_vec USING kdindex (v vector_l2_ops) WITH (m = 4);
CREATE INDEX ON kd_vec USING kdindex (v vector_cosine_ops) WITH (quantizer = 'aq', m = 2, lists = 4);
CREATE INDEX ON kd_vec USING kdindex (v vector_ip_ops) WITH (quantizer = 'opq', m = 4, nbits = 4);
SQL
fi
psql_pg -c "ANALYZE" || die "ANALYZE failed"
psql_pg -tA -c "SELECT count(*) || ' kdindex indexes' FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'kdindex'"

# ---------------------------------------------------------------- fuzz
OUT="$WORK/sqlsmith"
mkdir -p "$OUT" && chown postgres: "$OUT" 2>/dev/null
log "sqlsmith for $MINUTES minutes (seed $SEED and up; logs in $OUT)"

# VACUUM every 20 s meanwhile: it changes what the scans and inserts meet
( while :; do sleep 20; as_pg "$PGBIN/psql" -X -q -c "VACUUM" >/dev/null 2>&1; done ) &
VACUUM_PID=$!
on_exit() { kill "$VACUUM_PID" 2>/dev/null; }

deadline=$(( $(date +%s) + MINUTES * 60 ))
statements=0; kd_statements=0; runs=0; seed=$SEED
while :; do
  left=$(( deadline - $(date +%s) ))
  [ $left -gt 5 ] || break
  runs=$((runs + 1))
  # SIGINT makes sqlsmith print its report ("queries: N") and exit
  # stdout (every statement, ";"-terminated) is only counted: the statements
  # that use a kdindex operator or function
  (cd "$OUT" && as_pg timeout -s INT -k 30 "$left" sqlsmith --verbose --exclude-catalog \
     --dump-all-queries --seed="$seed" --target="$CONN" 2>"$OUT/run$runs.err" \
     | awk 'BEGIN { RS = ";\n" } /<->|<#>|<=>|kdindex_/ { n++ } END { print n + 0 }' >"$OUT/run$runs.kd")
  # the last report's count; failing that (sqlsmith died), one progress
  # character per statement
  n=$(sed -n 's/^queries: \([0-9]*\).*/\1/p' "$OUT/run$runs.err" | tail -n 1)
  if [ -z "$n" ]; then
    n=$(grep -E '^[.etSCc]+$' "$OUT/run$runs.err" | tr -d '\n' | wc -c)
  fi
  kd=$(cat "$OUT/run$runs.kd" 2>/dev/null || echo 0)
  echo "run $runs (seed $seed): $n statements, $kd with <->, <#>, <=> or kdindex_"
  statements=$((statements + n)); kd_statements=$((kd_statements + kd)); seed=$((seed + 1))
  # a crashed server restarts by itself (restart_after_crash); wait for it
  for _ in $(seq 1 60); do
    as_pg "$PGBIN/pg_isready" -q && break
    sleep 1
  done
done
kill "$VACUUM_PID" 2>/dev/null; wait "$VACUUM_PID" 2>/dev/null

# ---------------------------------------------------------------- checks
log "index checks"
bad_index=0
out=$(psql_pg -tA 2>&1 <<'SQL'
VACUUM (INDEX_CLEANUP ON);
SET enable_seqscan = off;
DO $$
DECLARE
  r record; n bigint; held bigint;
  has_verify bool := to_regprocedure('kdindex_verify(regclass,boolean)') IS NOT NULL;
BEGIN
  FOR r IN SELECT c.oid::regclass AS idx, i.indrelid::regclass AS tbl, i.indpred IS NULL AS whole
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'kdindex' ORDER BY 1::text
  LOOP
    IF has_verify THEN
      EXECUTE 'SELECT kdindex_verify($1, true)' USING r.idx;
    END IF;
    SELECT rows INTO held FROM kdindex_info(r.idx);
    EXECUTE format('SELECT count(*) FROM %s', r.tbl) INTO n;
    IF r.whole AND held <> n THEN
      RAISE WARNING '% holds % rows, its table %', r.idx, held, n;
    END IF;
    RAISE NOTICE '% ok: % rows%', r.idx, held, CASE WHEN has_verify THEN ', verified' ELSE '' END;
  END LOOP;
END $$;
SQL
) || bad_index=1
echo "$out"
grep -q WARNING <<<"$out" && bad_index=1

# ---------------------------------------------------------------- report
log "results"
crashes=$(grep -c 'terminated by signal' "$SERVER_LOG")
internal=$(grep -c ' XX000 .*ERROR: ' "$SERVER_LOG")
echo "sqlsmith: $statements statements in $runs runs over $MINUTES minutes," \
  "$kd_statements of them with <->, <#>, <=> (any type's) or a kdindex_ function"
echo "server crashes (terminated by signal): $crashes"
echo "internal errors (SQLSTATE XX000): $internal"
if [ "$internal" -gt 0 ]; then
  grep ' XX000 .*ERROR: ' "$SERVER_LOG" | sed 's/^.*ERROR: */  /' | sort | uniq -c | sort -rn | head -n 20
fi
# every error that names kdindex, whatever its SQLSTATE
log "errors that mention kdindex"
grep -E 'ERROR: .*kdindex' "$SERVER_LOG" | sed 's/^[^]]*] [^ ]* [^ ]* *//' | cut -c1-200 \
  | sort | uniq -c | sort -rn | head -n 20
if [ "$crashes" -gt 0 ]; then
  log "crashes"
  grep -B2 -A2 'terminated by signal' "$SERVER_LOG" | head -n 60
fi
# top errors as sqlsmith saw them (the last report of the last run)
if [ "$runs" -gt 0 ]; then
  log "most frequent errors (run $runs)"
  awk '/^queries: / { n = 0 } /^[0-9]+\tERROR/ { top[n++] = $0 } END { for (i = 0; i < n && i < 15; i++) print top[i] }' \
    "$OUT/run$runs.err"
fi

if [ "$crashes" -eq 0 ] && [ $bad_index -eq 0 ] && [ "$statements" -gt 0 ]; then
  RESULT=0
  echo
  echo "fuzz: 1 passed, 0 failed"
else
  RESULT=1
  echo
  echo "fuzz: 0 passed, 1 failed"
fi
exit $RESULT
