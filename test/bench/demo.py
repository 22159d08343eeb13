#!/usr/bin/python3
"""kdindex demo on Fashion-MNIST (784-d, L2): build an index, distil it, measure recall and latency.

Connects with the libpq environment (PGHOST, PGPORT, PGDATABASE, PGUSER), loads the
60,000 training images into table `fmnist (id int primary key, embedding real[])`
(skipped when already there), builds

    CREATE INDEX fmnist_kd ON fmnist USING kdindex (embedding) WITH (m = 16, nbits = 8)

measures its codes-only recall on the first --queries test images, distils it
(kdindex_teacher: the exact top-100 of test images 5,000-9,999, which are never
measured; kdindex_train), then runs the same queries through a prepared top-10 query
with kdindex.rerank = 0 (codes only) and with the default re-rank depth, against
exact ground truth; plus an exact sequential scan for reference.  --no-distill skips
the distillation.
"""

import argparse
import os
import re
import sys
import time

import numpy as np
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402

QUERY = "SELECT id FROM {table} ORDER BY embedding <-> $1::real[] LIMIT {k}"

failures = []


def note_failure(what, sql, err):
    msg = f"{what}: query `{sql}` failed: {type(err).__name__}: {str(err).strip()}"
    failures.append(msg)
    print("ERROR " + msg, flush=True)


def fmt_table(headers, rows, aligns=None):
    """Markdown-style table, readable as plain text."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    aligns = aligns or ["l"] + ["r"] * (len(headers) - 1)

    def line(vals):
        out = []
        for v, w, a in zip(vals, widths, aligns):
            out.append(v.rjust(w) if a == "r" else v.ljust(w))
        return "| " + " | ".join(out) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, aligns)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


def run_queries(cur, qtexts, k, warmup=10):
    """EXECUTE the prepared statement once per query; returns (ids list, latencies in ms)."""
    for q in qtexts[:warmup]:
        cur.execute("EXECUTE knn(%s)", (q,))
        cur.fetchall()
    found, lat = [], []
    for q in qtexts:
        t = time.perf_counter()
        cur.execute("EXECUTE knn(%s)", (q,))
        rows = cur.fetchall()
        lat.append((time.perf_counter() - t) * 1000.0)
        found.append([r[0] for r in rows])
    return found, np.array(lat)


def plan_of(cur, qtext):
    cur.execute("EXPLAIN (COSTS OFF) EXECUTE knn(%s)", (qtext,))
    return [r[0] for r in cur.fetchall()]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=1000, help="test queries to run (default 1000)")
    ap.add_argument("--exact-queries", type=int, default=50,
                    help="queries for the exact seq-scan reference (default 50)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--table", default="fmnist")
    ap.add_argument("--index", default="fmnist_kd")
    ap.add_argument("--with", dest="with_", default="m = 16, nbits = 8",
                    help="index options (default 'm = 16, nbits = 8')")
    ap.add_argument("--rerank", default="50,100,400",
                    help="extra comma-separated kdindex.rerank values to measure, e.g. 20,50,200")
    ap.add_argument("--reload", action="store_true", help="reload the table even if present")
    ap.add_argument("--no-distill", action="store_true", help="measure the index as built")
    ap.add_argument("--no-rowterm-compare", action="store_true",
                    help="skip the codes-only baseline of the same index WITH (rowterm = off)")
    ap.add_argument("--no-extension", action="store_true",
                    help="skip everything kdindex-specific (tests the harness on plain PostgreSQL)")
    args = ap.parse_args()

    t_all = time.perf_counter()
    ds = datasets.load("fashion-mnist")
    gt = datasets.ground_truth(ds, 100)
    nq = min(args.queries, ds.test.shape[0])
    qtexts = [datasets.pg_array_text(v) for v in ds.test[:nq]]
    k = args.k

    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT version(), current_database(), current_user, "
                "current_setting('shared_buffers'), current_setting('work_mem'), "
                "current_setting('maintenance_work_mem')")
    ver, db, user, sb, wm, mwm = cur.fetchone()
    print(f"# kdindex demo — {ds}")
    print(f"server: {ver.split(',')[0]}; db={db} user={user} shared_buffers={sb} "
          f"work_mem={wm} maintenance_work_mem={mwm}")

    # ---- data
    n = datasets.table_rows(conn, args.table)
    if n == ds.train.shape[0] and not args.reload:
        print(f"table {args.table}: already loaded ({n} rows)")
    else:
        print(f"table {args.table}: loading {ds.train.shape[0]} rows "
              f"({'found ' + str(n) + ' rows' if n is not None else 'absent'}) ...", flush=True)
        secs = datasets.load_table(conn, args.table, ds.train)
        print(f"table {args.table}: loaded in {secs:.1f} s")
    cur.execute("SELECT pg_total_relation_size(%s)", (args.table,))
    heap_bytes = cur.fetchone()[0]

    # ---- index
    build_s = None
    index_bytes = None
    if not args.no_extension:
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS kdindex")
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'kdindex'")
            print(f"extension kdindex {cur.fetchone()[0]}")
        except psycopg2.Error as e:
            note_failure("create extension", "CREATE EXTENSION IF NOT EXISTS kdindex", e)
            return finish(t_all)
        cur.execute(f"DROP INDEX IF EXISTS {args.index}")
        del conn.notices[:]
        sql = f"CREATE INDEX {args.index} ON {args.table} USING kdindex (embedding) WITH ({args.with_})"
        print(f"building: {sql} ...", flush=True)
        try:
            t = time.perf_counter()
            cur.execute(sql)
            build_s = time.perf_counter() - t
            print(f"built in {build_s:.1f} s")
            for n_ in conn.notices:
                print("  " + n_.strip())
            del conn.notices[:]
            cur.execute("VACUUM ANALYZE " + args.table)
            cur.execute("SELECT pg_relation_size(%s)", (args.index,))
            index_bytes = cur.fetchone()[0]
        except psycopg2.Error as e:
            note_failure("index build", sql, e)

    # ---- queries
    stmt = QUERY.format(table=args.table, k=k)
    try:
        cur.execute(f"PREPARE knn(real[]) AS {stmt}")
    except psycopg2.Error as e:
        note_failure("prepare", f"PREPARE knn(real[]) AS {stmt}", e)
        return finish(t_all)
    results = []   # (label, recall, latencies, nqueries)
    summ_extra = []   # rows for the settings table

    def measure(label, setup, queries, expect_index):
        for s in setup:
            cur.execute(s)
        # a cached generic plan ignores later planner settings: plan afresh per mode
        cur.execute("DEALLOCATE knn")
        cur.execute(f"PREPARE knn(real[]) AS {stmt}")
        plan = plan_of(cur, queries[0])
        uses_index = any(args.index in line for line in plan)
        if expect_index is not None and uses_index != expect_index:
            print(f"WARNING: plan for '{label}' {'does not use' if expect_index else 'uses'} "
                  f"{args.index}:\n    " + "\n    ".join(
                      re.sub(r"'\{[^}]*\}'", "'{...}'", p) for p in plan))
        print(f"running {len(queries)} queries: {label} ...", flush=True)
        found, lat = run_queries(cur, queries, k)
        r = datasets.recall(found, gt[:len(queries)], k)
        results.append((label, r, lat, len(queries)))
        return plan

    if index_bytes is not None:
        cur.execute("RESET kdindex.rerank")
        cur.execute("SELECT current_setting('kdindex.rerank', true), "
                    "current_setting('kdindex.probes', true)")
        default_rerank, probes = cur.fetchone()
        print(f"kdindex.rerank default = {default_rerank}"
              + (f", kdindex.probes = {probes}" if probes is not None else ""))
        if not args.no_rowterm_compare:
            rowterm_baseline(cur, args, measure, qtexts)
        if not args.no_distill:
            try:
                measure("kdindex, rerank = 0 (codes only), before distillation",
                        ["SET kdindex.rerank = 0"], qtexts, True)
                distill(cur, args, ds, summ_extra)
            except psycopg2.Error as e:
                note_failure("distillation", "kdindex_teacher / kdindex_train", e)
        modes = [("kdindex, rerank = 0 (codes only)", "0")]
        modes.append((f"kdindex, rerank = {default_rerank} (default)", None))
        for v in [x.strip() for x in args.rerank.split(",") if x.strip()]:
            if v not in ("0", default_rerank):
                modes.append((f"kdindex, rerank = {v}", v))
        first = True
        for label, val in modes:
            setup = ["RESET kdindex.rerank" if val is None else f"SET kdindex.rerank = {val}"]
            try:
                plan = measure(label, setup, qtexts, True)
                if first:
                    print("plan:\n    " + "\n    ".join(
                        re.sub(r"'\{[^}]*\}'", "'{...}'", p) for p in plan))
                    first = False
            except psycopg2.Error as e:
                note_failure(label, f"{setup[0]}; {stmt}", e)
        cur.execute("RESET kdindex.rerank")

    ne = min(args.exact_queries, nq)
    if ne > 0:
        try:
            measure("exact (seq scan, enable_indexscan = off)",
                    ["SET enable_indexscan = off", "SET enable_bitmapscan = off"],
                    qtexts[:ne], False)
        except psycopg2.Error as e:
            note_failure("exact scan", stmt, e)
        cur.execute("RESET enable_indexscan")
        cur.execute("RESET enable_bitmapscan")

    # ---- report
    print()
    print(f"## Fashion-MNIST 784-d L2: {ds.train.shape[0]} rows, top-{k}, "
          f"ground truth = exact numpy L2\n")
    rows = []
    for label, r, lat, nqq in results:
        rows.append([label, nqq, f"{r:.3f}", f"{lat.mean():.2f}", f"{np.percentile(lat, 50):.2f}",
                     f"{np.percentile(lat, 99):.2f}", f"{1000.0 / lat.mean():.1f}"])
    print(fmt_table(["mode", "queries", f"recall@{k}", "mean ms", "p50 ms", "p99 ms", "QPS"], rows))
    print()
    summ = [["table size (heap + TOAST + pkey)", f"{heap_bytes / 2**20:.1f} MB"]]
    if build_s is not None:
        summ.append(["index", f"USING kdindex (embedding) WITH ({args.with_})"])
        summ.append(["build time", f"{build_s:.1f} s"])
    if index_bytes is not None:
        summ.append(["index size (pg_relation_size)",
                     f"{index_bytes / 2**20:.2f} MB ({index_bytes} bytes)"])
        summ.append(["index bytes per row", f"{index_bytes / ds.train.shape[0]:.1f}"])
        summ.append(["raw float32 vectors", f"{ds.train.nbytes / 2**20:.1f} MB "
                     f"({ds.train.shape[1] * 4} bytes/row)"])
    summ += summ_extra
    print(fmt_table(["setting", "value"], summ, ["l", "l"]))

    if index_bytes is not None:
        print()
        print(f"SELECT * FROM kdindex_info('{args.index}');\n")
        sql = "SELECT * FROM kdindex_info(%s)"
        try:
            cur.execute(sql, (args.index,))
            cols = [d[0] for d in cur.description]
            info = cur.fetchall()
            if len(info) == 1:   # one wide row: print it vertically
                print(fmt_table(["column", "value"],
                                [[c, f"{v:.6g}" if isinstance(v, float) else v]
                                 for c, v in zip(cols, info[0])], ["l", "l"]))
            else:
                print(fmt_table(cols, info, ["l"] * len(cols)))
        except psycopg2.Error as e:
            note_failure("kdindex_info", sql % f"'{args.index}'", e)
    conn.close()
    return finish(t_all)


def rowterm_baseline(cur, args, measure, qtexts):
    """Codes-only recall of the same index without the per-row error term: in a
    transaction that drops the demo's index and builds one WITH (rowterm = off)
    in its place, then rolls back (so the planner has one index to pick)."""
    noterm = f"{args.index}_rowterm_off"
    sql = (f"CREATE INDEX {noterm} ON {args.table} USING kdindex (embedding) "
           f"WITH ({args.with_}, rowterm = off)")
    print(f"the per-row error term's effect: {sql} (in a transaction, rolled back) ...", flush=True)
    try:
        cur.execute("BEGIN")
        cur.execute(f"DROP INDEX {args.index}")
        cur.execute(sql)
        measure("kdindex, rerank = 0 (codes only), rowterm = off", ["SET kdindex.rerank = 0"],
                qtexts, True)
    except psycopg2.Error as e:
        note_failure("rowterm = off baseline", sql, e)
    finally:
        cur.execute("ROLLBACK")


def distill(cur, args, ds, summ):
    """Teacher from test images 5,000-9,999 (never measured), then kdindex_train."""
    qtable = f"{args.table}_teacher_queries"
    datasets.load_table(cur.connection, qtable, ds.test[5000:])
    cur.execute(f"DROP TABLE IF EXISTS {args.table}_teacher")
    print(f"kdindex_teacher: exact top-100 of {ds.test.shape[0] - 5000} test images "
          f"(5,000-9,999) ...", flush=True)
    t = time.perf_counter()
    cur.execute("SELECT kdindex_teacher(%s, 'embedding', %s, queries => %s, k => 100, nqueries => %s)",
                (args.table, f"{args.table}_teacher", qtable, ds.test.shape[0] - 5000))
    teacher_s = time.perf_counter() - t
    print(f"  done in {teacher_s:.1f} s")
    print(f"kdindex_train('{args.index}', '{args.table}_teacher') ...", flush=True)
    cur.execute("SELECT epochs, best_epoch, seconds_per_epoch, seconds, recall_before, recall_after "
                "FROM kdindex_train(%s, %s)", (args.index, f"{args.table}_teacher"))
    ep, best, spe, secs, rb, ra = cur.fetchone()
    print(f"  {secs:.1f} s: {ep} epochs of {spe:.1f} s, kept epoch {best}; held-out teacher "
          f"queries' codes-only recall@10 {rb:.3f} -> {ra:.3f}")
    cur.execute("SELECT pg_relation_size(%s)", (args.index,))
    size = cur.fetchone()[0]
    summ.append(["teacher (exact top-100, 5,000 queries)", f"{teacher_s:.1f} s"])
    summ.append(["kdindex_train", f"{secs:.1f} s ({ep} epochs, kept {best})"])
    summ.append(["index size after kdindex_train", f"{size / 2**20:.2f} MB (the replaced pages "
                 f"wait for VACUUM to recycle them into the next retrain)"])


def finish(t_all):
    print(f"\n(demo took {time.perf_counter() - t_all:.0f} s)")
    if failures:
        print(f"\n{len(failures)} failure(s):")
        for f in failures:
            print("  - " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
