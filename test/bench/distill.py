#!/usr/bin/python3
"""Distillation benchmark: codes-only recall@10 of each kdindex quantizer before and
after kdindex_train, on queries the training never saw.

    distill.py [--dataset fashion-mnist|synth-ip-256|fmnist1m] [--kdindex pq:16,opq:16,aq:16,...]
               [--epochs N] [--seeds 3] [--lists 245 --probes 4,8,16 --rerank 50,100]
               [--no-sampled | --sampled-kdindex pq:16,...] [--table-queries N]
               [--rowterm-off] [--first-seed N] [--results-suffix=-NAME] [--reuse-build] [--oracle]

Run by `make bench SUITE=distill` (Fashion-MNIST) or `SUITE=distill-ip` (the
asymmetric inner-product set) through test/scripts/bench.sh, which starts the
throwaway cluster; this script only needs the libpq environment.

Protocol (issue 5): the data set's test queries are split in two halves.  The first
half (Fashion-MNIST: test images 0-4,999) is the teacher's query set: kdindex_teacher
writes their exact top-100, and kdindex_train distils from it.  The second half
(5,000-9,999) is only for evaluation: codes-only recall@10 (kdindex.rerank = 0) against
their exact top-10, through the index, before and after training.  With --sampled (the
default) the configurations of --sampled-kdindex are also trained from a teacher built
on 5,000 rows sampled from the table instead of the test queries (the case without a
query log).  --table-queries N adds N of the table's rows to the first half's queries
(kdindex_teacher's table_queries).

Each configuration builds its index, measures, trains, measures again and drops it,
so only one kdindex index exists on the table at a time; it does so --seeds times, with
kdindex_train's seed 1, 2, ..., and reports the mean and the worst run (the gain moves
by about a point from seed to seed: README).  With --reuse-build the index is built once
per configuration (the build does not depend on the seed) and each seed trains a copy of
it: ALTER INDEX ... SET TABLESPACE into an in-place scratch tablespace copies its file
under a new relfilenode inside a transaction that trains and measures the copy and is
then rolled back, which leaves the built index as it was (checked once per configuration).
Prints a markdown table and writes it to test/bench/results/distill-<dataset>.md (unless
--no-commit-results).  With --rowterm-off each configuration is also built once WITH
(rowterm = off), and the table gives term off / term on / after kdindex_train with every
index's bytes per row and the backend's CPU seconds per epoch (wall seconds overstate them
on a loaded machine).

With --lists the indexes are IVF (run_lists): the undistilled index is built once (the
build is deterministic) and kept; each seed builds another (with --reuse-build: trains a
rolled-back copy of one built once, of the undistilled index itself when --qps-rounds is 0;
with --rowterm-off the table gets a term off column), trains it, and both are
measured at every --probes x (codes only, each --rerank): recall@10 of the evaluation
queries, and QPS in paired rounds (--qps-queries queries, the two indexes alternately,
the other dropped inside the timed transaction; --qps-rounds rounds, median).  With
--equal-recall the trained index is also run at each smaller --probes value and its
re-rank lowered, in twentieths of each depth, to the least that still reaches the
undistilled recall, and timed there against the undistilled index at the full setting.
Writes distill-<dataset>-lists<N>.md.  --dataset fmnist1m: the 1M-row set; its teacher
is the exact top-100 of --queries (2,000) other queries made like fmnist1m's own from
test images none of its 2,000 evaluation queries came from (datasets.fmnist1m_more_queries),
and evaluation is on those 2,000 (their exact top-10).

--oracle: the teacher's queries are the evaluation queries themselves (the same vectors,
all of them), everything else unchanged: training sees the very queries recall is then
measured on, so the gain is an upper bound on what distilling the codebooks can give on
this data, not a held-out result.  The results say so in their header and their file
name gets -oracle (after --results-suffix).
"""

import os
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import time  # noqa: E402

import psycopg2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import datasets  # noqa: E402
from bench import OPS, ensure_table, slug, build_identity, backend_cpu_s  # noqa: E402
from distill_ivf import train_extra, train_args_md, ORACLE_TITLE, ORACLE_NOTE  # noqa: E402


def say(msg=""):
    print(msg, flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--rows", type=int, default=0, help="rows of a synthetic data set (0 = default)")
    ap.add_argument("--kdindex", default="pq:16,opq:16,aq:16,pq:8,opq:8,aq:8",
                    help="quantizer:m configurations")
    ap.add_argument("--epochs", type=int, default=None, help="kdindex_train epochs (default: its own)")
    ap.add_argument("--train-args", default="",
                    help="extra kdindex_train arguments, e.g. \"negatives => 0\"")
    ap.add_argument("--seeds", type=int, default=3, help="runs per configuration, kdindex_train seed 1..N")
    ap.add_argument("--lists", type=int, default=0, help="IVF lists of the indexes (0 = flat)")
    ap.add_argument("--probes", default="4,8,16", help="kdindex.probes with --lists (a list)")
    ap.add_argument("--rerank", default="50,100", help="kdindex.rerank of the re-ranked recall (a list)")
    ap.add_argument("--queries", type=int, default=5000, help="teacher queries")
    ap.add_argument("--eval-queries", type=int, default=0,
                    help="evaluation queries (0 = as many as --queries)")
    ap.add_argument("--qps-queries", type=int, default=500, help="--lists: queries of a timed pass")
    ap.add_argument("--qps-rounds", type=int, default=3, help="--lists: paired timed rounds (0 = no QPS)")
    ap.add_argument("--equal-recall", action="store_true",
                    help="--lists: also the trained index's cheapest probes / re-rank reaching the "
                         "undistilled recall, timed")
    ap.add_argument("--no-sampled", action="store_true",
                    help="skip the teacher on sampled rows")
    ap.add_argument("--sampled-kdindex", default="pq:16",
                    help="configurations also trained from the sampled-row teacher")
    ap.add_argument("--table-queries", type=int, default=0,
                    help="the teacher's queries also take this many of the table's own rows "
                         "(kdindex_teacher's table_queries)")
    ap.add_argument("--oracle", action="store_true",
                    help="the teacher's queries are the evaluation queries themselves (an upper "
                         "bound, not held out); the results file name gets -oracle")
    ap.add_argument("--no-commit-results", action="store_true")
    ap.add_argument("--keep-extension", action="store_true",
                    help="use the installed extension as it is (same SQL) instead of re-creating it, "
                         "which would drop every other kdindex index of a kept cluster")
    add_rowterm_args(ap)
    return ap.parse_args(argv)


def add_rowterm_args(ap):
    """options of the row-term comparison (rowterm_baseline, table_md_rowterm)"""
    ap.add_argument("--rowterm-off", action="store_true",
                    help="also build each configuration once WITH (rowterm = off) and report its "
                         "recall, and every index's bytes per row (index size / rows)")
    ap.add_argument("--first-seed", type=int, default=1,
                    help="kdindex_train seeds first-seed .. first-seed + seeds - 1 (to split the "
                         "seeds of one configuration over clusters)")
    ap.add_argument("--results-suffix", default="",
                    help="appended to the results file name, e.g. \"-8byte\"")
    ap.add_argument("--reuse-build", action="store_true",
                    help="build each index once and train a rolled-back copy of it per seed")


def teacher_label(a, nq):
    """the training teacher's queries, as the results name them"""
    queries = "the evaluation queries themselves (oracle)" if a.oracle else f"test queries 0-{nq - 1}"
    return queries + (f" + {a.table_queries} of the table's rows" if a.table_queries else "")


def configs(spec):
    return [c.strip() for c in spec.split(",") if c.strip()]


def load_queries(conn, name, data):
    datasets.load_table(conn, name, data, analyze=True)


def recalls(cur, a, idx, truth):
    """codes-only recall@10"""
    cur.execute("SET kdindex.rerank = 0")
    cur.execute("SELECT codes_recall FROM kdindex_recall(%s, %s)", (idx, truth))
    codes = cur.fetchone()[0]
    cur.execute("RESET kdindex.rerank")
    return codes


def build_index(cur, table, opclass, cfg, suffix, options=""):
    """CREATE INDEX of configuration cfg (quantizer:m) named after it and suffix: the
    index's name, build seconds and bytes per row"""
    kind, m = cfg.split(":")[0], int(cfg.split(":")[1])
    idx = f"{table}_{kind}{m}_{suffix}"
    cur.execute(f"DROP INDEX IF EXISTS {idx}")
    t = time.perf_counter()
    cur.execute(f"CREATE INDEX {idx} ON {table} USING kdindex (embedding {opclass}) "
                f"WITH (quantizer = '{kind}', m = {m}{options})")
    build_s = time.perf_counter() - t
    return idx, build_s, bytes_per_row(cur, idx, table)


SCRATCH_TABLESPACE = "kdindex_scratch"


def ensure_scratch_tablespace(cur):
    """--reuse-build: an in-place tablespace (a directory under pg_tblspc) to copy into"""
    cur.execute("SELECT 1 FROM pg_tablespace WHERE spcname = %s", (SCRATCH_TABLESPACE,))
    if cur.fetchone() is None:
        cur.execute("SET allow_in_place_tablespaces = on")
        cur.execute(f"CREATE TABLESPACE {SCRATCH_TABLESPACE} LOCATION ''")
        cur.execute("RESET allow_in_place_tablespaces")


def begin_copy(cur, idx):
    """open a transaction in which idx is a fresh copy of itself (a new relfilenode in the
    scratch tablespace); ROLLBACK drops the copy and leaves the original untouched"""
    cur.execute("BEGIN")
    cur.execute(f"ALTER INDEX {idx} SET TABLESPACE {SCRATCH_TABLESPACE}")


def run_once(cur, a, table, opclass, cfg, teacher, truth, seed, built=None):
    """one seed; built = (index, build s, bytes per row, recall) of an index built once
    (--reuse-build), of which this run trains a copy that is rolled back"""
    if built:
        idx, build_s, bpr, before = built
        begin_copy(cur, idx)
    else:
        idx, build_s, bpr = build_index(cur, table, opclass, cfg, "kd")
        before = recalls(cur, a, idx, truth)
    cpu0 = backend_cpu_s(cur)
    del cur.connection.notices[:]
    cur.execute(f"SELECT epochs, best_epoch, seconds_per_epoch, seconds, recall_before, recall_after "
                f"FROM kdindex_train(%s, %s, seed => %s{train_extra(a)})", (idx, teacher, seed))
    ep, best, spe, secs, hb, ha = cur.fetchone()
    say_notices(cur)
    cpu = backend_cpu_s(cur) - cpu0 if cpu0 is not None else None
    after = recalls(cur, a, idx, truth)
    cur.execute("ROLLBACK" if built else f"DROP INDEX {idx}")
    row = dict(config=cfg, build_s=build_s, before=before, after=after, epochs=ep, best_epoch=best,
               s_per_epoch=spe, train_s=secs, held_before=hb, held_after=ha,
               bytes_per_row=bpr, train_cpu_s=cpu)
    say(f"  {cfg:7s} seed {seed} teacher {teacher}: {before:.4f} -> {after:.4f} "
        f"({100 * (after - before):+.2f} pt); held-out teacher queries {hb:.4f} -> {ha:.4f}; "
        f"best epoch {best}/{ep}, {spe:.1f} s/epoch, train {secs:.0f} s, build {build_s:.0f} s, "
        f"{bpr:.1f} B/row" + (f", train CPU {cpu:.0f} s" if cpu is not None else ""))
    return row


def run_config(cur, a, table, opclass, cfg, teacher, truth):
    """--seeds runs: their means, and the worst run's gain"""
    off = rowterm_baseline(cur, a, table, opclass, cfg, truth) if a.rowterm_off else {}
    built = None
    if a.reuse_build:
        idx, build_s, bpr = build_index(cur, table, opclass, cfg, "kd")
        built = (idx, build_s, bpr, recalls(cur, a, idx, truth))
    runs = [run_once(cur, a, table, opclass, cfg, teacher, truth, s, built)
            for s in range(a.first_seed, a.first_seed + a.seeds)]
    if built:
        check = recalls(cur, a, built[0], truth)
        say(f"  {cfg:7s} the built index after {a.seeds} rolled-back copies: {check:.4f} "
            f"({'unchanged' if check == built[3] else 'CHANGED from %.4f' % built[3]})")
        cur.execute(f"DROP INDEX {built[0]}")
    row = {k: (sum(r[k] for r in runs) / len(runs) if isinstance(runs[0][k], (int, float)) else runs[0][k])
           for k in runs[0] if runs[0][k] is not None}
    gains = [r["after"] - r["before"] for r in runs]
    row["worst_gain"] = min(gains)
    row["runs"] = len(runs)
    row["best_epochs"] = "/".join(str(r["best_epoch"]) for r in runs)
    row.update(off)
    row["worst_after"] = min(r["after"] for r in runs)
    return row


def say_notices(cur):
    """print kdindex's notices since the last clearing (kdindex_train's guard keeping the
    starting codebooks says so in one)"""
    for n in cur.connection.notices:
        if "kdindex" in n:
            say("  " + n.strip())


def bytes_per_row(cur, idx, table):
    """the index's real size over the table's rows (codes, row term, codebooks, pages)"""
    cur.execute(f"SELECT pg_relation_size(%s::regclass)::float8 / greatest(count(*), 1) FROM {table}",
                (idx,))
    return cur.fetchone()[0]


def rowterm_baseline(cur, a, table, opclass, cfg, truth):
    """the configuration built once WITH (rowterm = off): recall and bytes per row without
    the per-row error term (the build does not depend on kdindex_train's seed)"""
    idx, build_s, bpr = build_index(cur, table, opclass, cfg, "kdoff", ", rowterm = off")
    codes = recalls(cur, a, idx, truth)
    cur.execute(f"DROP INDEX {idx}")
    say(f"  {cfg:7s} rowterm = off: {codes:.4f}, {bpr:.1f} B/row, build {build_s:.0f} s")
    return dict(off=codes, off_bytes_per_row=bpr, off_build_s=build_s)


def table_md_rowterm(rows, a):
    """--rowterm-off: recall without the term, with it (the build's fitted weight) and after
    kdindex_train, with the bytes per row each index really stores"""
    out = ["| quantizer | teacher queries | term off | term on | after kdindex_train | worst after | "
           "gain of the term (pt) | gain of training (pt) | worst training gain (pt) | "
           "B/row off / on | best epochs | s/epoch | CPU s/epoch | kdindex_train s | build s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['config']} | {r['teacher']} | {r['off']:.4f} | {r['before']:.4f} | "
                   f"{r['after']:.4f} | {r['worst_after']:.4f} | {100 * (r['before'] - r['off']):+.2f} | "
                   f"{100 * (r['after'] - r['before']):+.2f} | {100 * r['worst_gain']:+.2f} | "
                   f"{r['off_bytes_per_row']:.1f} / {r['bytes_per_row']:.1f} | "
                   f"{r['best_epochs']} of {r['epochs']:.0f} | {r['s_per_epoch']:.1f} | "
                   f"{cpu_per_epoch(r)} | {r['train_s']:.0f} | {r['build_s']:.0f} |")
    return out


def cpu_per_epoch(r):
    """the backend's CPU seconds of the whole kdindex_train call over its epochs (so also its
    fixed part: the held-out recall before and after, the final re-encode); ? without /proc"""
    return f"{r['train_cpu_s'] / r['epochs']:.1f}" if "train_cpu_s" in r and r["epochs"] else "?"


def table_md(rows, a):
    out = ["| quantizer | teacher queries | before | after | gain (pt) | worst run (pt) | "
           "held-out teacher recall | best epochs | s/epoch | kdindex_train s | build s |",
           "|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['config']} | {r['teacher']} | {r['before']:.4f} | {r['after']:.4f} | "
                   f"{100 * (r['after'] - r['before']):+.2f} | {100 * r['worst_gain']:+.2f} | "
                   f"{r['held_before']:.4f} -> {r['held_after']:.4f} | {r['best_epochs']} of {r['epochs']:.0f} | "
                   f"{r['s_per_epoch']:.1f} | {r['train_s']:.0f} | {r['build_s']:.0f} |")
    return out


def main(argv=None):
    a = parse_args(argv)
    kw = {"n": a.rows} if a.rows else {}
    ds = datasets.load(a.dataset, **kw)
    op, opclass, _ = OPS[ds.metric]
    metric = {"l2": "l2", "ip": "ip", "cosine": "cosine"}[ds.metric]
    if a.dataset == "fmnist1m":     # teacher queries from other test images than its own
        nq = a.queries
        qtrain = datasets.fmnist1m_more_queries(nq, ds.test.shape[0], ds.dim)
        qeval = ds.test[:a.eval_queries or ds.test.shape[0]]
    else:
        nq = min(a.queries, ds.test.shape[0] // 2)
        qtrain, qeval = ds.test[:nq], ds.test[nq:nq + (a.eval_queries or nq)]
    neval = qeval.shape[0]
    if a.oracle:    # the upper bound: train on the queries recall is measured on
        qtrain, a.results_suffix = qeval, a.results_suffix + "-oracle"
    nteach = qtrain.shape[0]
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    # a fresh extension: the cluster may be reused across builds whose SQL differs
    if not a.keep_extension:
        cur.execute("DROP EXTENSION IF EXISTS kdindex CASCADE")
    cur.execute("CREATE EXTENSION IF NOT EXISTS kdindex")
    if a.reuse_build:
        ensure_scratch_tablespace(cur)
    commit, so = build_identity()
    say(f"# kdindex distillation benchmark: {ds.name} ({ds.train.shape[0]} x {ds.dim}, {ds.metric}), "
        f"kdindex {commit or '?'}")
    table = f"kd_{slug(ds.name)}"
    ensure_table(conn, table, ds, f"{ds.name}-{datasets._fingerprint(ds)}")
    load_queries(conn, f"{table}_qtrain", qtrain)
    load_queries(conn, f"{table}_qeval", qeval)

    for suffix in ("teacher", "truth", "rows"):
        cur.execute(f"DROP TABLE IF EXISTS {table}_{suffix}")
    t = time.perf_counter()
    cur.execute("SELECT kdindex_teacher(%s, 'embedding', %s, queries => %s, k => 100, "
                "nqueries => %s, metric => %s, table_queries => %s)",
                (table, f"{table}_teacher", f"{table}_qtrain", nteach, metric, a.table_queries))
    teacher_s = time.perf_counter() - t
    say(f"teacher: exact top-100 of {teacher_label(a, nq)} ({nteach}) in {teacher_s:.1f} s")
    cur.execute("SELECT kdindex_teacher(%s, 'embedding', %s, queries => %s, k => 10, "
                "nqueries => %s, metric => %s)",
                (table, f"{table}_truth", f"{table}_qeval", neval, metric))
    cfgs = configs(a.kdindex)
    if a.lists:
        import distill_ivf
        distill_ivf.run_lists(cur, a, ds, table, opclass, op, cfgs, f"{table}_teacher",
                              f"{table}_truth", qeval, nteach, teacher_s, commit)
        return
    teachers = [(f"{table}_teacher", teacher_label(a, nq), cfgs)]
    if not a.no_sampled:
        cur.execute("SELECT kdindex_teacher(%s, 'embedding', %s, k => 100, nqueries => %s, "
                    "metric => %s)", (table, f"{table}_rows", nq, metric))
        teachers.append((f"{table}_rows", f"{nq} sampled rows",
                         configs(a.sampled_kdindex)))

    rows = []
    for teacher, label, tcfgs in teachers:
        for cfg in tcfgs:
            r = run_config(cur, a, table, opclass, cfg, teacher, f"{table}_truth")
            r["teacher"] = label
            rows.append(r)
    md = [f"# Distillation{ORACLE_TITLE if a.oracle else ''}: {ds.name} ({ds.train.shape[0]} x {ds.dim}, "
          f"{ds.metric})", ""] + ([ORACLE_NOTE, ""] if a.oracle else []) + [
          f"{datetime.date.today()}, kdindex {commit or '?'}. Codes-only recall@10 (kdindex.rerank = 0) "
          f"of test queries {nq}-{nq + neval - 1} against their exact top-10, before and after "
          f"`kdindex_train` with {train_args_md(a)}, the mean of {a.seeds} runs (seeds {a.first_seed}-{a.first_seed + a.seeds - 1}) and the "
          f"worst run's gain; the teacher is the exact top-100 of the queries "
          f"named (teacher: {teacher_label(a, nq)} in {teacher_s:.1f} s). \"held-out teacher recall\" is "
          f"what kdindex_train itself reports on the 10% of its teacher queries it holds out.", ""]
    md += table_md_rowterm(rows, a) if a.rowterm_off else table_md(rows, a)
    say("")
    say("\n".join(md))
    if not a.no_commit_results:
        name = f"distill-{slug(ds.name)}" + a.results_suffix
        dest = os.path.join(HERE, "results", f"{name}.md")
        with open(dest, "w") as f:
            f.write("\n".join(md) + "\n")
        say(f"\nwritten: {dest}")


if __name__ == "__main__":
    main()
