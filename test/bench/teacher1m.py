"""A teacher from an existing HNSW index at 1M rows (issue #14 §3), against the exact one.

On the fmnist1m suite's tables (`make bench SUITE=fmnist1m` with a kept
KDINDEX_BENCH_DIR leaves them, with pgvector's HNSW on the vector copy):

1. kdindex_teacher on the vector table, the same 2,000 sampled-row queries (the
   deterministic sample, each query's own row left out), k = 100: `teacher =>
   'exact'` and `teacher => 'index'` with HNSW serving at each --ef (hnsw.ef_search),
   each timed (wall, and CPU seconds of the backend), and which index served checked
   (EXPLAIN and pg_stat_user_indexes).
2. Each index teacher's lists against the exact ones: overlap of top-100 and top-10.
3. Each teacher carried over to the real[] table (same ids, queries cast to real[],
   TIDs looked up by id) and given to kdindex_train on a PQ16 lists 1000 index (the
   same index rebuilt before each teacher); codes-only and re-ranked recall@10 before
   and after, by kdindex_recall over the 2,000 held-out TEST queries (never in a
   teacher: those are table rows) against the cached exact ground truth.

    PGHOST=... PGPORT=... PGDATABASE=kdindex_bench python3 test/bench/teacher1m.py \\
        [--ef 100,200] [--probes 8,32] [--out test/bench/results/teacher-1m.md]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402
from buildcpu import BuildCPU  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T = "b_fmnist1m_v1_pca128_1000000_q20"
V = T + "_v"
KD = "tch_pq16"
KD_WITH = "quantizer = 'pq', m = 16, nbits = 8, lists = 1000"


def say(msg=""):
    print(msg, flush=True)


def timed(cur, sql, args=None):
    """Run sql; (wall s, server CPU s, (load before, after))."""
    cur.execute("SELECT pg_backend_pid()")
    t = time.perf_counter()
    with BuildCPU(cur.fetchone()[0]) as c:
        cur.execute(sql, args)
    return time.perf_counter() - t, c.cpu_s, c.load


def idx_scans(cur, names):
    cur.execute("SELECT pg_stat_clear_snapshot()")
    cur.execute("SELECT indexrelname, idx_scan FROM pg_stat_user_indexes "
                "WHERE indexrelname = ANY(%s)", (names,))
    return dict(cur.fetchall())


def teacher(cur, name, kind, a, ef=None, steer=True):
    """kdindex_teacher into `name`; returns a dict of its timings.  With `ef`, HNSW at
    that hnsw.ef_search; `steer`: ivfflat.probes = 1000 (all lists) prices IVFFlat out
    of the plan, else the planner picks IVFFlat at probes 1 (checked, and reported)."""
    cur.execute(f"DROP TABLE IF EXISTS {name}")
    if ef:
        cur.execute(f"SET hnsw.ef_search = {ef}")
    if steer and kind == "index":
        cur.execute("SET ivfflat.probes = 1000")
    pv = [V + "_hnsw", V + "_ivfflat"]
    before = idx_scans(cur, pv)
    plan = None
    if kind == "index":
        cur.execute(f"SELECT embedding FROM {V} LIMIT 1")
        q = cur.fetchone()[0]
        cur.execute(f"EXPLAIN (COSTS OFF) SELECT ctid FROM {V} ORDER BY embedding <-> %s::vector "
                    f"LIMIT {a.k + 1}", (q,))
        plan = [r[0].strip() for r in cur.fetchall()]
        plan = next((x.split(" on ")[0] for x in plan if "Index Scan" in x), plan[0])
    wall, cpu, load = timed(cur, "SELECT kdindex_teacher(%s, 'embedding', %s, k => %s, "
                            "nqueries => %s, teacher => %s)", (V, name, a.k, a.nqueries, kind))
    time.sleep(1.0)   # let the backend's statistics reach the shared counters
    after = idx_scans(cur, pv)
    served = {k: after.get(k, 0) - before.get(k, 0) for k in pv}
    cur.execute("RESET hnsw.ef_search")
    cur.execute("RESET ivfflat.probes")
    cur.execute(f"SELECT count(*), avg(cardinality(ids)), min(cardinality(ids)) FROM {name}")
    nq, avglen, minlen = cur.fetchone()
    say(f"teacher {name}: {kind}{f' ef_search {ef}' if ef else ''}: {wall:.1f} s wall, "
        f"CPU {cpu:.1f} s, load {load[0]:.1f}->{load[1]:.1f}; {nq} queries, list length "
        f"avg {float(avglen):.1f} min {minlen}; index scans {served}; plan {plan}")
    return dict(name=name, kind=kind, ef=ef, steer=steer, wall=wall, cpu=cpu, load=load, nq=nq,
                avglen=float(avglen), minlen=minlen, served=served, plan=plan)


def lists(cur, name):
    cur.execute(f"SELECT query_id, source::text, ids FROM {name} ORDER BY query_id")
    return cur.fetchall()


def overlap(exact, other, k):
    """Mean |other[:k] ∩ exact[:k]| / k over queries (same query_ids and sources)."""
    tot = 0.0
    for (qe, se, ie), (qo, so, io) in zip(exact, other):
        assert qe == qo and se == so, "teachers hold different queries"
        tot += len(set(ie[:k]) & set(io[:k])) / k
    return tot / len(exact)


def carry_over(cur, name):
    """The teacher `name` (on V) as `name_r` on T: queries as real[], TIDs by id."""
    cur.execute(f"DROP TABLE IF EXISTS {name}_r")
    cur.execute(f"""
        CREATE TABLE {name}_r AS
        SELECT e.query_id, e.query::real[] AS query,
               (SELECT t.ctid FROM {V} v JOIN {T} t USING (id) WHERE v.ctid = e.source) AS source,
               ARRAY(SELECT t.ctid FROM unnest(e.ids) WITH ORDINALITY u(id, o)
                     JOIN {T} t ON t.id = u.id ORDER BY u.o) AS tids,
               e.ids, e.distances
        FROM {name} e""")
    cur.execute(f"SELECT count(*) FILTER (WHERE source IS NULL), "
                f"count(*) FILTER (WHERE cardinality(tids) <> cardinality(ids)) FROM {name}_r")
    bad = cur.fetchone()
    assert bad == (0, 0), f"{name}_r: rows not carried over: {bad}"
    return f"{name}_r"


def eval_table(cur, ds, gt, k=100):
    """eval_test: the TEST queries with their cached exact top-k, as a teacher table on T."""
    cur.execute("DROP TABLE IF EXISTS eval_test")
    cur.execute("CREATE TABLE eval_test (query_id int, query real[], source tid, ids int[], "
                "tids tid[])")
    rows = [(i, datasets.pg_array_text(ds.test[i]), "{" + ",".join(map(str, gt[i, :k])) + "}")
            for i in range(ds.test.shape[0])]
    cur.executemany("INSERT INTO eval_test (query_id, query, ids) VALUES (%s, %s, %s)", rows)
    cur.execute(f"UPDATE eval_test e SET tids = ARRAY(SELECT t.ctid FROM unnest(e.ids) "
                f"WITH ORDINALITY u(id, o) JOIN {T} t ON t.id = u.id ORDER BY u.o)")
    return "eval_test"


def recall(cur, probes, rerank):
    out = {}
    for p in probes:
        cur.execute(f"SET kdindex.probes = {p}")
        cur.execute(f"SET kdindex.rerank = {rerank}")
        cur.execute(f"SELECT codes_recall, reranked_recall FROM kdindex_recall('{KD}', "
                    "'eval_test', 10)")
        out[p] = cur.fetchone()
    cur.execute("RESET kdindex.probes")
    cur.execute("RESET kdindex.rerank")
    return out


def train_once(cur, teacher_r, probes, rerank, seed=0, first=True):
    """Build (or REINDEX) the PQ16 lists 1000 index, train it from the carried-over
    teacher with `seed`; (build timing, recall before, train timing, result, after)."""
    sql = f"CREATE INDEX {KD} ON {T} USING kdindex (embedding) WITH ({KD_WITH})"
    if first:
        cur.execute(f"DROP INDEX IF EXISTS {KD}")
    else:
        sql = f"REINDEX INDEX {KD}"
    build = timed(cur, sql)
    before = recall(cur, probes, rerank)
    train = timed(cur, f"SELECT * FROM kdindex_train('{KD}', '{teacher_r}', seed => {seed})")
    res = dict(zip([d[0] for d in cur.description], cur.fetchone()))
    after = recall(cur, probes, rerank)
    say(f"kdindex_train with {teacher_r} seed {seed}: build {build[0]:.0f} s, train "
        f"{train[0]:.0f} s (CPU {train[1]:.0f} s), {res}; recall before {before} after {after}")
    return build, before, train, res, after


def seeds_only(cur, a, probes):
    """--seeds-only T:S,...: retrain from teachers carried over by an earlier run."""
    out = []
    for i, item in enumerate(a.seeds_only.split(",")):
        name, seed = item.split(":")
        b, before, t, res, after = train_once(cur, name, probes, a.rerank, int(seed), i == 0)
        out.append(dict(teacher=name, seed=int(seed), before=before, after=after, res=res,
                        train_s=t[0], train_cpu=t[1]))
    cur.execute(f"DROP INDEX IF EXISTS {KD}")
    print(json.dumps(out, default=str))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ef", default="100,200")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--nqueries", type=int, default=2000)
    ap.add_argument("--probes", default="8,32")
    ap.add_argument("--rerank", type=int, default=50)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--seeds-only", default=None,
                    help="TEACHER_r:SEED,...: only retrain from the carried-over teachers of "
                         "an earlier run with these kdindex_train seeds (prints JSON)")
    ap.add_argument("--planner-pick", action="store_true",
                    help="also a teacher with the planner's own pick (no steering)")
    ap.add_argument("--out", default=os.path.join(ROOT, "test/bench/results/teacher-1m.md"))
    a = ap.parse_args()
    efs = [int(x) for x in a.ef.split(",") if x]
    probes = [int(x) for x in a.probes.split(",") if x]

    ds = datasets.fmnist1m()
    gt = datasets.ground_truth(ds, 100)
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT obj_description(%s::regclass, 'pg_class'), "
                "obj_description(%s::regclass, 'pg_class')", (T, V))
    fp = datasets._fingerprint(ds)
    assert cur.fetchone() == (fp, fp), "the tables do not hold the fmnist1m data set"
    cur.execute("SHOW maintenance_work_mem")
    mwm = cur.fetchone()[0]
    if a.seeds_only:
        seeds_only(cur, a, probes)
        return
    commit = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip()

    # 1. teachers
    ts = [teacher(cur, "tch_exact", "exact", a)]
    for ef in efs:
        ts.append(teacher(cur, f"tch_hnsw{ef}", "index", a, ef))
    if a.planner_pick:    # what a user gets with both pgvector indexes and defaults
        ts.append(teacher(cur, "tch_pick", "index", a, steer=False))
    # 2. overlap with the exact lists
    ex = lists(cur, "tch_exact")
    for t in ts[1:]:
        o = lists(cur, t["name"])
        t["overlap100"], t["overlap10"] = overlap(ex, o, 100), overlap(ex, o, 10)
        say(f"{t['name']}: overlap with exact top-100 {t['overlap100']:.4f}, "
            f"top-10 {t['overlap10']:.4f}")
    # 3. kdindex_train with each teacher
    train = []
    if not a.skip_train:
        eval_table(cur, ds, gt)
        for i, t in enumerate(t for t in ts if t["name"] != "tch_pick"):
            tt = carry_over(cur, t["name"])
            b, before, tr, res, after = train_once(cur, tt, probes, a.rerank, 0, i == 0)
            train.append(dict(teacher=t["name"], build=b, before=before, train=tr, res=res,
                              after=after))
        cur.execute(f"DROP INDEX IF EXISTS {KD}")

    # report
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# Teacher from an HNSW index at 1M rows (fmnist1m), kdindex `{commit}`", "",
          f"{when}. `test/bench/teacher1m.py` on the fmnist1m suite's tables "
          f"({ds.train.shape[0]:,} x {ds.dim}, {ds.name}); pgvector HNSW m 16, "
          f"ef_construction 64 on the vector copy; maintenance_work_mem {mwm}; 2 cores "
          "shared with other sessions (load averages below).", "",
          f"## Teachers: {a.nqueries:,} sampled-row queries, k = {a.k}", "",
          "| teacher | wall s | backend CPU s | load | list length (avg / min) | index scans "
          "(HNSW / IVFFlat) | overlap with exact top-100 | top-10 |",
          "|---|---:|---:|---|---|---|---:|---:|"]
    for t in ts:
        name = "exact (sgemm screen + exact re-score)" if t["kind"] == "exact" else \
            f"index: HNSW, ef_search {t['ef']}" if t["steer"] else \
            "index: the planner's pick, defaults (IVFFlat, probes 1)"
        sv = t["served"]
        md.append(f"| {name} | {t['wall']:.1f} | {t['cpu']:.1f} | {t['load'][0]:.1f}→"
                  f"{t['load'][1]:.1f} | {t['avglen']:.1f} / {t['minlen']} | "
                  f"{sv.get(V + '_hnsw', 0)} / {sv.get(V + '_ivfflat', 0)} | "
                  f"{t.get('overlap100', 1.0):.4f} | {t.get('overlap10', 1.0):.4f} |")
    plans = {t["plan"] for t in ts if t["plan"]}
    md += ["", "The index teacher runs `SELECT ... ORDER BY embedding <-> $1 LIMIT k + 1` "
           "per query (its own row is left out) through whatever index the planner picks "
           "(plans: " + "; ".join(f"`{p}`" for p in sorted(plans)) + "). The table has "
           "both HNSW and IVFFlat (lists 1000), and at the defaults the planner picks "
           "IVFFlat at probes 1; `SET ivfflat.probes = 1000` prices it out so that HNSW "
           "serves (index scans counted from pg_stat_user_indexes). Backend CPU = utime + "
           "stime of the backend from /proc, so the machine's load is mostly out of it.", ""]
    if train:
        md += ["## kdindex_train with each teacher: PQ16 lists 1000 on the real[] table", "",
               f"Index `WITH ({KD_WITH})`, rebuilt (REINDEX) before each teacher; "
               "`kdindex_train` defaults. Recall@10 by `kdindex_recall` over the "
               f"{ds.test.shape[0]:,} TEST queries (not table rows, so in no teacher) "
               f"against their cached exact top-10; codes only (rerank 0) and re-ranked at "
               f"rerank {a.rerank}.", "",
               "| teacher | build s | probes | codes-only before | after | gain (points) | "
               f"re-ranked (rerank {a.rerank}) before | after | train s (CPU s) | epochs, "
               "kept | held-out teacher recall before → after |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in train:
            res = r["res"]
            for p in probes:
                b, f = r["before"][p], r["after"][p]
                md.append(f"| {r['teacher']} | {r['build'][0]:.0f} | {p} | {b[0]:.4f} | "
                          f"{f[0]:.4f} | {100 * (f[0] - b[0]):+.2f} | {b[1]:.4f} | {f[1]:.4f} | "
                          f"{r['train'][0]:.0f} ({r['train'][1]:.0f}) | {res['epochs']}, "
                          f"best {res['best_epoch']} | {res['recall_before']:.4f} → "
                          f"{res['recall_after']:.4f} |")
    md += ["", "Raw:", "", "```", json.dumps(dict(teachers=ts, train=train), default=str,
                                                 indent=1), "```", ""]
    with open(a.out, "w") as f:
        f.write("\n".join(md))
    say(f"wrote {a.out}")


if __name__ == "__main__":
    main()
