#!/usr/bin/python3
"""kdindex benchmark harness: kdindex, Faiss and pgvector side by side on the same queries.

    bench.py [--suite fmnist|scale|ip] [--queries N] [--reps R] ...

Run by `make bench [SUITE=...]` through test/scripts/bench.sh, which builds and
installs kdindex and starts a throwaway cluster; bench.py itself only needs the
libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE) of a server where kdindex is
installed.  It prints tables and draws plots; it never asserts timings.

Suites (data sets in datasets.py; exact top-100 ground truth cached outside the repo):

    fmnist  Fashion-MNIST, 60,000 x 784, 10,000 queries, L2 (the default; ~10 min
            once the Faiss cache is warm, see below)
    scale   synthetic anisotropic Gaussian mixture, 1M x 128, L2 (--rows N shrinks it):
            kdindex IVF (lists = 1000, PQ m = 16 and 32) over a kdindex.probes x
            kdindex.rerank sweep next to pgvector IVFFlat (lists = 1000) and HNSW;
            build time / size table (kdindex built with max_parallel_maintenance_workers
            0 and 2), the recall@10 >= 0.95 headline (QPS ratio kdindex / pgvector), and
            filtered queries (--filter); Faiss skipped by default (--skip '' runs it)
    scale-960  synthetic 100k x 960, L2, flat kdindex PQ8/PQ16 (the former second half
            of `scale`)
    ip      synthetic 200k x 256 inner-product set whose queries come from another
            distribution than its rows (asymmetric query/document retrieval)

For every data set:

  kdindex   CREATE INDEX ... USING kdindex (embedding <opclass>) WITH (quantizer = 'pq',
            m = 8 | 16, nbits = 8), and 'opq' at m = 16 (--kdindex 'quantizer:m[:nbits],...';
            a quantizer the installed build rejects is skipped with a notice): build time, training time (kdindex_info), index size
            (pg_relation_size) and bytes per row, codes-only recall@10 over all
            --recall-queries (kdindex.rerank = 0), then a kdindex.rerank sweep
  Faiss     PQ, OPQ, RQ (beam 8), LSQ at 8 and 16 bytes, codes only, and IVF-PQ with
            exact refinement over an nprobe x k_factor sweep (bench_faiss.py; trained
            indexes are cached, so only the first run pays the long trainings)
  pgvector  HNSW (m = 16, ef_construction = 64; hnsw.ef_search sweep) and IVFFlat
            (lists = sqrt(rows); ivfflat.probes sweep), when the `vector` extension is
            available on the server; otherwise skipped with a notice
  exact     a sequential scan on a few queries: checks that table ids and ground truth
            agree (its recall must be 1)
  filtered  (--filter 10,100; scale default) generated columns cat<M> = id % M on both
            tables; query i runs WHERE cat<M> = i % M ORDER BY ... LIMIT 10 against the
            exact top-10 of the rows that pass (numpy): recall@10 and the rows returned,
            for kdindex (default GUCs and --filter-kd-probes) and pgvector IVFFlat / HNSW
            with iterative_scan off and on (pgvector >= 0.8)

Sweep points are timed from one client, one query at a time: kdindex and pgvector
through a prepared statement `SELECT id FROM t ORDER BY embedding <op> $1 LIMIT 10`
with the query vector as a real[] / vector parameter; Faiss with one search() call
per query in-process (so Faiss figures carry no SQL or client round trip).  Each
point runs the first --queries test vectors --reps times after a warm-up; QPS is the
median over repetitions with its min-max spread, p50 / p99 latency are over all
repetitions, and recall@10 = |returned ∩ exact top-10| / 10 over those queries
(identical results across repetitions are checked).  Codes-only recall (the
"bytes" table and plot) uses all --recall-queries.

Output: tables on stdout; under --out (default <repo>/bench-results/<suite>, not in
git) results.md, results.json and the plots; a short summary <suite>.md and the
plots are copied to test/bench/results/ (committed) unless --no-commit-results.
"""

import os
import sys

# Pin BLAS / OpenMP to one thread before numpy or faiss is imported: one client,
# one core, for every method.  (Ground truth is computed by bench.sh beforehand.)
# --prepare-only (ground truth, run by bench.sh first) keeps all threads.
if "--prepare-only" not in sys.argv:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import psycopg2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import datasets  # noqa: E402
import rounds  # noqa: E402
from demo import fmt_table  # noqa: E402

try:
    import bench_faiss  # noqa: E402
except Exception as _e:  # noqa: BLE001
    bench_faiss = None
    _faiss_err = _e

K = 10
RERANKS = [0, 25, 50, 100, 200, 400, 800]
HNSW_EF = [10, 20, 40, 80, 160, 400]
IVF_PROBES = [1, 2, 4, 8, 16, 32]
FAISS_CODES = ["PQ8", "PQ16", "OPQ8", "OPQ16", "RQ8", "RQ16", "LSQ8", "LSQ16"]
FAISS_NPROBE = [4, 16, 64]
FAISS_KFACTOR = [1, 5, 20, 80]

# suite -> list of (dataset name, default rows or None, kdindex configs, faiss codes specs)
# kdindex configs: 'quantizer:m[:nbits[:lists]]' (lists > 0 = IVF with residual codes)
SUITES = {
    "fmnist": [("fashion-mnist", None, ["pq:8", "pq:16", "opq:8", "opq:16", "aq:8", "aq:16"],
                FAISS_CODES)],
    "scale": [("synth-l2-128", 1_000_000, ["pq:16:8:1000", "pq:32:8:1000"],
               ["PQ16", "OPQ16"])],
    "scale-960": [("synth-l2-960", 100_000, ["pq:8", "pq:16"], ["PQ8", "PQ16", "OPQ16"])],
    "ip": [("synth-ip-256", 200_000, ["pq:8", "pq:16"], FAISS_CODES)],
    "fmnist1m": [("fmnist1m", 1_000_000, ["pq:16:8:1000", "pq:32:8:1000", "opq:16:8:1000",
                                          "pq:16", "opq:16"], [])],
}

# per-suite defaults of options left unset on the command line (None = the global default)
SUITE_DEFAULTS = {
    # the default suite keeps to 15 minutes on 2 cores with the Faiss cache warm
    "fmnist": dict(rerank="0,50,100,200,400", queries=500, ivf_probes="1,4,16,32",
                   hnsw_ef="10,20,40,80,160", faiss_nprobe="4,16", faiss_kfactor="1,5,20"),
    "scale": dict(kd_probes="1,2,4,8,16,32", rerank="0,100,200,400",
                  ivf_probes="1,2,4,8,16,32,64", ivf_lists=1000, recall_queries=1000,
                  filter="10,100", parallel_build=True, skip="faiss", paired="auto"),
    # paired rounds over every point: at 1M rows on 2 cores shared with other work
    # (load average 13), builds took 19 min and each round 5.3 min
    "fmnist1m": dict(rounds=5, queries=300, warmup=10, kd_probes="8,16,32,64",
                     rerank="0,200,400", ivf_rerank="50,100,200", hnsw_ef="10,20,40,80,160,320",
                     ivf_probes="2,4,8,16,32,64", ivf_lists=1000, exact_queries=2,
                     concurrent_builds=True),
}
KD_PROBES_DEFAULT = 8      # kdindex.probes default (src/kdindex.c)

OPS = {"l2": ("<->", "float4_l2_ops", "vector_l2_ops"),
       "ip": ("<#>", "float4_ip_ops", "vector_ip_ops"),
       "cosine": ("<=>", "float4_cosine_ops", "vector_cosine_ops")}

notices = []      # printed again at the end


def say(msg=""):
    print(msg, flush=True)


def notice(msg):
    notices.append(msg)
    say("NOTICE: " + msg)


def ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", nargs="?", default=None, help="same as --suite")
    ap.add_argument("--suite", dest="suite_opt", default=None, choices=sorted(SUITES))
    ap.add_argument("--rows", type=int, default=0,
                    help="rows of each synthetic data set (0 = suite default)")
    ap.add_argument("--queries", type=int, default=None,
                    help="queries per timed sweep point (default 1000, fmnist 500); recall of "
                         "sweep points is over these")
    ap.add_argument("--recall-queries", type=int, default=None,
                    help="queries for codes-only recall (default 10000 = all)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per point (default 3)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed queries before each point (default 50; --rounds: at most 20)")
    ap.add_argument("--kdindex", default=None,
                    help="kdindex configs 'quantizer:m[:nbits[:lists[:refine]]]', comma-separated "
                         "(default per suite: pq:8,pq:16)")
    ap.add_argument("--rerank", default=None,
                    help=f"kdindex.rerank sweep (default {','.join(map(str, RERANKS))})")
    ap.add_argument("--faiss", default=None,
                    help="Faiss codes-only specs, comma-separated (e.g. PQ8,OPQ16,RQ16,LSQ16)")
    ap.add_argument("--faiss-nprobe", default=None)
    ap.add_argument("--faiss-kfactor", default=None)
    ap.add_argument("--faiss-train", type=int, default=65536,
                    help="Faiss training sample (rows; 0 = all), like kdindex's default sample")
    ap.add_argument("--faiss-cached-only", action="store_true",
                    help="skip Faiss specs whose trained index is not cached yet (with a notice)")
    ap.add_argument("--faiss-train-missing", action="store_true",
                    help="train the slow Faiss peers (OPQ, RQ, LSQ) that are not cached yet; "
                         "without it they are skipped with a notice (training them once takes "
                         "1-2 hours on one thread; the trained indexes are cached)")
    ap.add_argument("--kd-probes", default=None,
                    help="kdindex.probes sweep for IVF configs (lists > 0), crossed with "
                         "--rerank (scale default 1,2,4,8,16,32)")
    ap.add_argument("--hnsw-ef", default=None)
    ap.add_argument("--storage", default=None, choices=["plain", "main", "external", "extended"],
                    help="SET STORAGE of the real[] table's column before it is loaded (the "
                         "re-rank reads it; pgvector's indexes hold their own vectors)")
    ap.add_argument("--refine-rerank", default="10,20,40",
                    help="kdindex.refine_rerank sweep for configs with refine "
                         "('quantizer:m:nbits:lists:refine'; --rounds only)")
    ap.add_argument("--kd-margin", default="0",
                    help="kdindex.rerank_margin values of each kdindex point under --rounds "
                         "(0 = off, the default)")
    ap.add_argument("--ivf-probes", default=None,
                    help=f"ivfflat.probes sweep (default {','.join(map(str, IVF_PROBES))})")
    ap.add_argument("--ivf-lists", type=int, default=None,
                    help="pgvector IVFFlat lists (default round(sqrt(rows)))")
    ap.add_argument("--hnsw-rows", type=int, default=0,
                    help="build pgvector HNSW on the first N rows only (0 = all rows); its "
                         "recall is then against the exact top-10 of those N rows")
    ap.add_argument("--build-timeout", type=int, default=0,
                    help="statement_timeout (s) of the pgvector CREATE INDEX (0 = none): a "
                         "build over it is reported as failed (then use --hnsw-rows)")
    ap.add_argument("--filter", default=None,
                    help="filtered-query selectivities as moduli, e.g. '10,100': columns "
                         "cat<M> = id %% M, queries WHERE cat<M> = i %% M (empty = off; "
                         "scale default 10,100)")
    ap.add_argument("--filter-queries", type=int, default=200,
                    help="queries per filtered point (default 200)")
    ap.add_argument("--filter-reps", type=int, default=3,
                    help="timed repetitions per filtered point (default 3)")
    ap.add_argument("--filter-kd-probes", default="0,4,32",
                    help="kdindex.probes values of the filtered tests (0 = the default GUCs)")
    ap.add_argument("--filter-ivf-probes", default="0,16",
                    help="ivfflat.probes values of the filtered tests (0 = default, 1)")
    ap.add_argument("--filter-hnsw-ef", default="0",
                    help="hnsw.ef_search values of the filtered tests (0 = default, 40)")
    ap.add_argument("--parallel-build", action="store_true", default=None,
                    help="build the first kdindex config with max_parallel_maintenance_workers "
                         "= 0 and then 2 and report both (scale default on)")
    ap.add_argument("--paired", default=None,
                    help="paired headline: kdindex points 'quantizer:m:nbits:lists:probes:rerank' "
                         "(comma-separated) each timed alternately with IVFFlat at "
                         "--paired-ivf-probes, --paired-rounds times; 'auto' = the first "
                         "sweep points reaching --target-recall (scale default auto)")
    ap.add_argument("--paired-ivf-probes", type=int, default=0,
                    help="ivfflat.probes of the paired headline (0 = auto from the sweep)")
    ap.add_argument("--paired-rounds", type=int, default=7,
                    help="alternating rounds of the paired headline (default 7)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="paired rounds (rounds.py): build every index first, then time every "
                         "sweep point once per round, R rounds, QPS = median of rounds and "
                         "ratios taken round by round (fmnist1m default 5; 0 = the classic "
                         "sweep, one index at a time)")
    ap.add_argument("--ivf-rerank", default=None,
                    help="kdindex.rerank sweep of IVF configs under --rounds (default --rerank)")
    ap.add_argument("--concurrent-builds", action="store_true", default=None,
                    help="with --rounds: build pgvector's indexes on a second connection while "
                         "kdindex's build (fmnist1m default on; build times then overlap)")
    ap.add_argument("--reuse-indexes", action="store_true",
                    help="with --rounds: keep indexes an earlier run built with the same "
                         "statement (in a reused KDINDEX_BENCH_DIR) and its build seconds")
    ap.add_argument("--target-recall", type=float, default=0.95,
                    help="headline: fastest point at or above this recall@10 (default 0.95)")
    ap.add_argument("--exact-queries", type=int, default=None,
                    help="queries for the exact sequential-scan check (0 = skip)")
    ap.add_argument("--skip", default=None,
                    help="comma-separated parts to skip: kdindex, faiss, faiss-ivf, pgvector, "
                         "hnsw, ivfflat, exact")
    ap.add_argument("--out", default=None, help="results folder (default bench-results/<name>)")
    ap.add_argument("--name", default=None,
                    help="name of the results (files <name>.md, <name>-*.png; default the "
                         "suite), e.g. scale-hnsw for a separate HNSW-only run")
    ap.add_argument("--prepare-only", action="store_true",
                    help="only generate / load the data sets and cache their ground truth")
    ap.add_argument("--no-commit-results", action="store_true",
                    help="do not copy the summary and plots to test/bench/results/")
    a = ap.parse_args(argv)
    a.suite = a.suite_opt or a.suite or "fmnist"
    if a.suite not in SUITES:
        ap.error(f"unknown suite {a.suite!r}; known: {', '.join(sorted(SUITES))}")
    defaults = dict(queries=1000, hnsw_ef=",".join(map(str, HNSW_EF)),
                    faiss_nprobe=",".join(map(str, FAISS_NPROBE)),
                    faiss_kfactor=",".join(map(str, FAISS_KFACTOR)),
                    kd_probes=",".join(map(str, [1, 2, 4, 8, 16, 32])),
                    rerank=",".join(map(str, RERANKS)), ivf_probes=",".join(map(str, IVF_PROBES)),
                    ivf_lists=None, recall_queries=10000, filter="", parallel_build=False,
                    skip="", paired="", rounds=0, ivf_rerank=None, exact_queries=10, warmup=50,
                    concurrent_builds=False)
    defaults.update(SUITE_DEFAULTS.get(a.suite, {}))
    for key, val in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, val)
    a.skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    a.ivf_rerank = a.ivf_rerank or a.rerank
    a.filter = ints(a.filter)
    a.name = a.name or a.suite
    a.out = a.out or os.path.join(ROOT, "bench-results", a.name)
    return a


# ---------------------------------------------------------------------------- SQL helpers

def vec_text(v):
    return datasets.pg_array_text(v)


def vector_text(v):
    """pgvector literal '[...]' (same float4 values as vec_text)."""
    return "[" + vec_text(v)[1:-1] + "]"


def plan_lines(cur, arg):
    cur.execute("EXPLAIN (COSTS OFF) EXECUTE knn(%s)", (arg,))
    return [r[0] for r in cur.fetchall()]


def short_plan(lines):
    return " / ".join(re.sub(r"'[\[{][^'\]}]*[\]}]'(::\w+(\[\])?)?", "$1", x.strip()) for x in lines)


def prepare(cur, table, op, argtype, k=K):
    cur.execute("DEALLOCATE ALL")
    cur.execute(f"PREPARE knn({argtype}) AS SELECT id FROM {table} "
                f"ORDER BY embedding {op} $1 LIMIT {k}")


def backend_cpu_s(cur):
    """CPU seconds (user + system) of this session's backend so far, from /proc when this
    script runs on the server's machine with the right to read it; None otherwise.  On a
    shared, loaded machine the wall-clock seconds per epoch overstate the work, this not."""
    cur.execute("SELECT pg_backend_pid()")
    try:
        with open(f"/proc/{cur.fetchone()[0]}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_sql_point(cur, qargs, reps, warmup):
    """EXECUTE knn once per query, `reps` times over qargs.  Returns (ids of the first
    repetition, per-repetition QPS list, pooled latencies in ms, identical-across-reps)."""
    for q in qargs[:warmup]:
        cur.execute("EXECUTE knn(%s)", (q,))
        cur.fetchall()
    first, same, qps, lats = None, True, [], []
    for _ in range(reps):
        lat = np.empty(len(qargs))
        found = []
        for i, q in enumerate(qargs):
            t = time.perf_counter()
            cur.execute("EXECUTE knn(%s)", (q,))
            rows = cur.fetchall()
            lat[i] = time.perf_counter() - t
            found.append([r[0] for r in rows])
        if first is None:
            first = found
        elif found != first:
            same = False
        qps.append(len(qargs) / lat.sum())
        lats.append(lat * 1000.0)
    return first, qps, np.concatenate(lats), same


def run_sql_recall(cur, qargs):
    found = []
    for q in qargs:
        cur.execute("EXECUTE knn(%s)", (q,))
        found.append([r[0] for r in cur.fetchall()])
    return found


def rel_size(cur, name):
    cur.execute("SELECT pg_relation_size(%s)", (name,))
    return cur.fetchone()[0]


# ---------------------------------------------------------------------------- one data set

def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]


def ensure_table(conn, table, ds, fp, kind="real[]", storage=None):
    """Load ds.train into `table` unless it already holds exactly this data set
    (fingerprint in the table comment).  Returns load seconds (0 when reused)."""
    cur = conn.cursor()
    cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,))
    row = cur.fetchone()
    if row and row[0] == fp:
        return 0.0
    if kind == "real[]":
        secs = datasets.load_table(conn, table, ds.train, analyze=False, binary=True,
                                   storage=storage)
    else:   # pgvector copy of the real[] table
        t = time.perf_counter()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} AS SELECT id, embedding::vector({ds.dim}) AS embedding "
                    f"FROM {kind}")
        cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
        secs = time.perf_counter() - t
    cur.execute(f"COMMENT ON TABLE {table} IS %s", (fp,))
    cur.execute(f"VACUUM ANALYZE {table}")
    return secs


def result(**kw):
    base = dict(family=None, method=None, config=None, param=None, rerank=None,
                bytes_per_vec=None, index_bytes=None, bytes_per_row=None, build_s=None,
                train_s=None, recall=None, recall_queries=None, qps=None, lat=None,
                time_queries=None, codes_only=False, kind=None, probes=None)
    base.update(kw)
    return base


def current_mpw(cur):
    cur.execute("SHOW max_parallel_maintenance_workers")
    return int(cur.fetchone()[0])


def bench_kdindex(cur, a, ds, gt, table, cfgs, qtexts_t, qtexts_r, rerank_sweep, filt=None):
    """filt: None, or a dict (mods, qargs, truth per mod) for the filtered tests, which
    run on the first config (before its index is dropped)."""
    op, opclass, _ = OPS[ds.metric]
    out = []
    n = ds.train.shape[0]
    for ci, cfg in enumerate(cfgs):
        parts = cfg.split(":")
        quant, m = parts[0], int(parts[1])
        nbits = int(parts[2]) if len(parts) > 2 and parts[2] else 8
        lists = int(parts[3]) if len(parts) > 3 else 0
        idx = f"{table}_kd"
        label = f"{quant.upper()}{m}" + ("" if nbits == 8 else f"x{nbits}") + \
            (f" IVF{lists}" if lists else "")
        with_ = f"quantizer = '{quant}', m = {m}, nbits = {nbits}" + \
            (f", lists = {lists}" if lists else "")
        sql = f"CREATE INDEX {idx} ON {table} USING kdindex (embedding {opclass}) WITH ({with_})"
        cur.execute(f"DROP INDEX IF EXISTS {idx}")
        say(f"kdindex {label}: {sql}")
        # --parallel-build: the first config is built with 0 and then 2 parallel
        # maintenance workers; the second build is the one measured below
        mpws = [0, 2] if (a.parallel_build and ci == 0) else [None]
        build_s = None
        builds = []
        try:
            for mpw in mpws:
                if mpw is not None:
                    cur.execute(f"SET max_parallel_maintenance_workers = {mpw}")
                cur.execute(f"DROP INDEX IF EXISTS {idx}")
                used = current_mpw(cur)
                t = time.perf_counter()
                cur.execute(sql)
                build_s = time.perf_counter() - t
                cur.execute("SELECT train_seconds FROM kdindex_info(%s)", (idx,))
                builds.append((used, build_s, cur.fetchone()[0], rel_size(cur, idx)))
                if len(mpws) > 1:
                    say(f"  max_parallel_maintenance_workers = {used}: built in {build_s:.1f} s")
        except psycopg2.Error as e:
            if e.pgcode in ("0A000", "22023") and quant != "pq":
                notice(f"kdindex {label}: quantizer '{quant}' not available in this build "
                       f"({e.pgcode} {str(e).strip()}): skipped")
            else:
                notice(f"kdindex {label}: build failed: `{sql}`: {e.pgcode} {str(e).strip()}")
            cur.execute("RESET max_parallel_maintenance_workers")
            continue
        cur.execute("RESET max_parallel_maintenance_workers")
        cur.execute("ANALYZE " + table)
        cur.execute("SELECT * FROM kdindex_info(%s)", (idx,))
        info = dict(zip([d[0] for d in cur.description], cur.fetchone()))
        size = rel_size(cur, idx)
        say(f"  built in {build_s:.1f} s (train {info['train_seconds']:.1f} s on "
            f"{info['train_rows']} rows), {size / 2**20:.2f} MB, {size / n:.1f} B/row, "
            f"code {info['code_bytes']} B" +
            (f", {info['lists']} lists" if info.get("lists") else ""))
        common = dict(family="kdindex", method=f"kdindex {quant.upper()}", config=label,
                      bytes_per_vec=info["code_bytes"], index_bytes=size,
                      bytes_per_row=size / n, build_s=build_s, train_s=info["train_seconds"])
        for used, bs, ts, sz in builds:
            out.append(result(**dict(common, build_s=bs, train_s=ts, index_bytes=sz,
                                     bytes_per_row=sz / n),
                              kind="build", param=f"max_parallel_maintenance_workers={used}",
                              rows=n, mpw=used, with_=with_))
        prepare(cur, table, op, "real[]")
        try:
            # codes-only recall over all recall queries (IVF: at the default probes)
            cur.execute("SET kdindex.rerank = 0")
            prepare(cur, table, op, "real[]")
            plan = plan_lines(cur, qtexts_r[0])
            if not any(idx in p for p in plan):
                notice(f"kdindex {label}: plan does not use {idx}: {short_plan(plan)}")
            t = time.perf_counter()
            found = run_sql_recall(cur, qtexts_r)
            r_all = datasets.recall(found, gt[:len(qtexts_r)], K)
            say(f"  codes only: recall@{K} {r_all:.4f} over {len(qtexts_r)} queries "
                f"({time.perf_counter() - t:.0f} s)" +
                (f" (kdindex.probes = {KD_PROBES_DEFAULT})" if lists else ""))
            out.append(result(**common, param="codes only", rerank=0, recall=r_all,
                              recall_queries=len(qtexts_r), codes_only=True,
                              probes=KD_PROBES_DEFAULT if lists else None))
            for pr in (ints(a.kd_probes) if lists else [None]):
                if pr is not None:
                    if pr > lists:
                        continue
                    cur.execute(f"SET kdindex.probes = {pr}")
                for rr in rerank_sweep:
                    cur.execute(f"SET kdindex.rerank = {rr}")
                    prepare(cur, table, op, "real[]")
                    ids, qps, lat, same = run_sql_point(cur, qtexts_t, a.reps, a.warmup)
                    setting = (f"probes={pr} " if pr is not None else "") + f"rerank={rr}"
                    if not same:
                        notice(f"kdindex {label} {setting}: results differ between repetitions")
                    r = datasets.recall(ids, gt[:len(qtexts_t)], K)
                    short = sum(1 for x in ids if len(x) < K)
                    if short:
                        notice(f"kdindex {label} {setting}: {short} of {len(ids)} queries "
                               f"returned fewer than {K} rows")
                    out.append(result(**common, param=setting, rerank=rr, probes=pr, recall=r,
                                      recall_queries=len(qtexts_t), qps=qps, lat=lat,
                                      time_queries=len(qtexts_t)))
                    say(f"  {setting:<22s} recall@{K} {r:.4f}  QPS {np.median(qps):7.1f} "
                        f"({min(qps):.0f}-{max(qps):.0f})  p50 {np.percentile(lat, 50):.2f} ms  "
                        f"p99 {np.percentile(lat, 99):.2f} ms")
            cur.execute("RESET kdindex.probes")
            cur.execute("RESET kdindex.rerank")
            if filt and ci == 0:
                variants = []
                for pr in ints(a.filter_kd_probes):
                    if pr == 0:
                        variants.append((f"default GUCs (probes {KD_PROBES_DEFAULT}, rerank 200)",
                                         ["RESET kdindex.probes", "RESET kdindex.rerank"]))
                    elif not lists or pr <= lists:
                        variants.append((f"probes={pr}", [f"SET kdindex.probes = {pr}",
                                                          "RESET kdindex.rerank"]))
                out += bench_filtered(cur, a, filt, table, op, "real[]", idx,
                                      dict(family="kdindex", method=f"kdindex {quant.upper()}",
                                           config=label), variants)
        except psycopg2.Error as e:
            notice(f"kdindex {label}: query failed: {e.pgcode} {str(e).strip()}")
        cur.execute("RESET kdindex.probes")
        for r in out:      # the codes-only row shows the speed of the rerank = 0 point
            if r["config"] == label and r["codes_only"]:
                z = [x for x in out if x["config"] == label and x["rerank"] == 0
                     and not x["codes_only"] and x["kind"] is None
                     and x["probes"] in (None, KD_PROBES_DEFAULT)]
                if z:
                    r.update(qps=z[0]["qps"], lat=z[0]["lat"], time_queries=z[0]["time_queries"])
        cur.execute("RESET kdindex.rerank")
        cur.execute("DEALLOCATE ALL")
        cur.execute(f"DROP INDEX IF EXISTS {idx}")
    return out


# ---------------------------------------------------------------------------- filtered queries

def filter_columns(conn, table, mods):
    """Add `cat<M> int GENERATED ALWAYS AS (id % M) STORED` for each modulus M the table
    lacks (one table rewrite), then VACUUM ANALYZE.  Returns seconds (0 if nothing to do)."""
    cur = conn.cursor()
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (table,))
    have = {r[0] for r in cur.fetchall()}
    add = [m for m in mods if f"cat{m}" not in have]
    if not add:
        return 0.0
    t = time.perf_counter()
    cur.execute(f"ALTER TABLE {table} " + ", ".join(
        f"ADD COLUMN cat{m} int GENERATED ALWAYS AS (id % {m}) STORED" for m in add))
    cur.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - t


def filtered_truth(train, test, mod, metric, k=K):
    """Exact top-k ids among the rows with id % mod == c, for query i with c = i % mod
    (ids = row numbers)."""
    nq = test.shape[0]
    truth = np.empty((nq, k), dtype=np.int64)
    qi = np.arange(nq)
    for c in range(mod):
        qs = qi[qi % mod == c]
        if len(qs):
            ids, _ = datasets.exact_knn(train[c::mod], test[qs], k, metric)
            truth[qs] = c + mod * ids.astype(np.int64)
    return truth


def make_filter(a, ds, nq, rows=None):
    """The filtered-query set-up: query i asks WHERE cat<M> = i % M.  rows: truth among
    the first `rows` rows only (HNSW on a subset)."""
    train = ds.train if rows is None else ds.train[:rows]
    nq = min(nq, ds.test.shape[0])
    t = time.perf_counter()
    truth = {m: filtered_truth(train, ds.test[:nq], m, ds.metric) for m in a.filter}
    say(f"filtered ground truth ({', '.join(f'1/{m}' for m in a.filter)} of "
        f"{train.shape[0]} rows, {nq} queries) in {time.perf_counter() - t:.1f} s")
    return dict(mods=a.filter, nq=nq, truth=truth, rows=train.shape[0])


def run_filtered_point(cur, qargs, cats, reps, warmup):
    for q, c in list(zip(qargs, cats))[:warmup]:
        cur.execute("EXECUTE fknn(%s, %s)", (q, c))
        cur.fetchall()
    first, qps, lats = None, [], []
    for _ in range(reps):
        lat = np.empty(len(qargs))
        found = []
        for i, (q, c) in enumerate(zip(qargs, cats)):
            t = time.perf_counter()
            cur.execute("EXECUTE fknn(%s, %s)", (q, c))
            rows = cur.fetchall()
            lat[i] = time.perf_counter() - t
            found.append([r[0] for r in rows])
        first = first or found
        qps.append(len(qargs) / lat.sum())
        lats.append(lat * 1000.0)
    return first, qps, np.concatenate(lats)


def bench_filtered(cur, a, filt, table, op, argtype, idx, common, variants):
    """WHERE cat<M> = $2 ORDER BY embedding <op> $1 LIMIT 10 for each modulus and each
    variant (label, [SET statements]); sequential scans are disabled so that the plan
    is the index's (checked).  Returns result rows of kind 'filtered'."""
    out = []
    qargs = filt["qargs"]
    nq = len(qargs)
    cur.execute("SET enable_seqscan = off")
    try:
        for m in filt["mods"]:
            cats = [i % m for i in range(nq)]
            truth = filt["truth"][m]
            cur.execute("DEALLOCATE ALL")
            cur.execute(f"PREPARE fknn({argtype}, int) AS SELECT id FROM {table} "
                        f"WHERE cat{m} = $2 ORDER BY embedding {op} $1 LIMIT {K}")
            for vlabel, sets in variants:
                try:
                    for st in sets:
                        cur.execute(st)
                    cur.execute("EXPLAIN (COSTS OFF) EXECUTE fknn(%s, 0)", (qargs[0],))
                    plan = [r[0] for r in cur.fetchall()]
                    if not any(idx in p for p in plan):
                        notice(f"{common['method']} {common['config']} filtered 1/{m} "
                               f"{vlabel}: plan does not use {idx}: {short_plan(plan)}")
                    found, qps, lat = run_filtered_point(cur, qargs, cats, a.filter_reps,
                                                         min(a.warmup, 20))
                except psycopg2.Error as e:
                    notice(f"{common['method']} {common['config']} filtered 1/{m} {vlabel}: "
                           f"failed: {e.pgcode} {str(e).strip()}")
                    continue
                nrows = np.array([len(f) for f in found])
                r = datasets.recall(found, truth[:nq], K)
                out.append(result(**common, kind="filtered", param=vlabel, recall=r,
                                  recall_queries=nq, qps=qps, lat=lat, time_queries=nq,
                                  selectivity=m, rows_mean=float(nrows.mean()),
                                  rows_min=int(nrows.min()),
                                  full=float((nrows >= K).mean())))
                say(f"  filtered 1/{m:<4d} {vlabel:<40s} recall@{K} {r:.4f}  rows "
                    f"mean {nrows.mean():.2f} min {nrows.min()}  "
                    f"({(nrows >= K).mean() * 100:.1f}% with {K})  QPS {np.median(qps):7.1f}  "
                    f"p50 {np.percentile(lat, 50):.2f} ms  p99 {np.percentile(lat, 99):.2f} ms")
    finally:
        cur.execute("RESET enable_seqscan")
        cur.execute("DEALLOCATE ALL")
    return out


def pgvector_has_guc(cur, guc):
    try:
        cur.execute(f"SHOW {guc}")
        cur.fetchall()
        return True
    except psycopg2.Error:
        return False


def bench_pgvector(cur, a, ds, gt, vtable, vtexts_t, filt=None):
    op, _, vopclass = OPS[ds.metric]
    n = ds.train.shape[0]
    out = []
    lists = a.ivf_lists or max(1, int(round(np.sqrt(n))))
    kinds = []
    if "hnsw" not in a.skip:
        kinds.append(("HNSW", "hnsw", "m = 16, ef_construction = 64", "hnsw.ef_search",
                      ints(a.hnsw_ef), "m16 efc64"))
    if "ivfflat" not in a.skip:
        kinds.append(("IVFFlat", "ivfflat", f"lists = {lists}", "ivfflat.probes",
                      ints(a.ivf_probes), f"lists{lists}"))
    for name, am, with_, guc, sweep, cfg in kinds:
        tbl, rows, tgt, tfilt = vtable, n, gt, filt
        if am == "hnsw" and 0 < a.hnsw_rows < n:
            # HNSW on the first hnsw_rows rows (a long build otherwise): own table,
            # own exact ground truth
            rows = a.hnsw_rows
            tbl = f"{vtable}_{rows // 1000}k"
            cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (tbl,))
            row = cur.fetchone()
            tag = f"first {rows} rows of {vtable}"
            if not row or row[0] != tag:
                cur.execute(f"DROP TABLE IF EXISTS {tbl}")
                cur.execute(f"CREATE TABLE {tbl} AS SELECT * FROM {vtable} WHERE id < {rows}")
                cur.execute(f"ALTER TABLE {tbl} ADD PRIMARY KEY (id)")
                cur.execute(f"COMMENT ON TABLE {tbl} IS %s", (tag,))
                cur.execute(f"VACUUM ANALYZE {tbl}")
            t = time.perf_counter()
            tgt, _ = datasets.exact_knn(ds.train[:rows], ds.test[:len(vtexts_t)], K, ds.metric)
            say(f"pgvector HNSW on {tbl} (first {rows} rows): exact top-{K} of those rows in "
                f"{time.perf_counter() - t:.1f} s")
            if filt:
                tfilt = dict(make_filter(a, ds, filt["nq"], rows), qargs=filt["qargs"])
        idx = f"{tbl}_{am}"
        sql = f"CREATE INDEX {idx} ON {tbl} USING {am} (embedding {vopclass}) WITH ({with_})"
        cur.execute(f"DROP INDEX IF EXISTS {idx}")
        say(f"pgvector {name}: {sql}")
        try:
            mpw = current_mpw(cur)
            if a.build_timeout:
                cur.execute(f"SET statement_timeout = '{a.build_timeout}s'")
            t = time.perf_counter()
            cur.execute(sql)
            build_s = time.perf_counter() - t
        except psycopg2.Error as e:
            notice(f"pgvector {name}: build failed after {time.perf_counter() - t:.0f} s: "
                   f"{e.pgcode} {str(e).strip()}")
            continue
        finally:
            cur.execute("RESET statement_timeout")
        cur.execute("ANALYZE " + tbl)
        size = rel_size(cur, idx)
        say(f"  built in {build_s:.1f} s, {size / 2**20:.1f} MB, {size / rows:.0f} B/row")
        if rows < n:
            cfg += f", first {rows // 1000}k rows"
        common = dict(family="pgvector", method=f"pgvector {name}", config=cfg,
                      index_bytes=size, bytes_per_row=size / rows, build_s=build_s)
        out.append(result(**common, kind="build", param=f"max_parallel_maintenance_workers={mpw}",
                          rows=rows, mpw=mpw, with_=with_))
        try:
            first = True
            for v in sweep:
                cur.execute(f"SET {guc} = {v}")
                prepare(cur, tbl, op, "vector")
                if first:
                    plan = plan_lines(cur, vtexts_t[0])
                    if not any(idx in p for p in plan):
                        notice(f"pgvector {name}: plan does not use {idx}: {short_plan(plan)}")
                    first = False
                ids, qps, lat, same = run_sql_point(cur, vtexts_t, a.reps, a.warmup)
                r = datasets.recall(ids, tgt[:len(vtexts_t)], K)
                out.append(result(**common, param=f"{guc.split('.')[1]}={v}", recall=r,
                                  recall_queries=len(vtexts_t), qps=qps, lat=lat,
                                  time_queries=len(vtexts_t)))
                say(f"  {guc}={v:<4d} recall@{K} {r:.4f}  QPS {np.median(qps):7.1f} "
                    f"({min(qps):.0f}-{max(qps):.0f})  p50 {np.percentile(lat, 50):.2f} ms  "
                    f"p99 {np.percentile(lat, 99):.2f} ms")
                if not same:
                    say("    (results differ between repetitions)")
            cur.execute(f"RESET {guc}")
            if tfilt:
                variants = []
                it = f"{am}.iterative_scan"
                has_it = pgvector_has_guc(cur, it)
                if not has_it:
                    notice(f"pgvector {pgvector_ver_note(cur)}: no {it}; filtered tests "
                           "without iterative scan only")
                modes = ["off"] + ((["relaxed_order"] if am == "ivfflat" else
                                    ["strict_order", "relaxed_order"]) if has_it else [])
                for v in ints(a.filter_ivf_probes if am == "ivfflat" else a.filter_hnsw_ef):
                    for mode in modes:
                        sets = [f"RESET {guc}" if v == 0 else f"SET {guc} = {v}"]
                        if has_it:
                            sets.append(f"SET {it} = {mode}")
                        vl = (f"{guc.split('.')[1]}=" +
                              (f"{v}" if v else "default") + f", iterative_scan={mode}")
                        variants.append((vl, sets))
                out += bench_filtered(cur, a, tfilt, tbl, op, "vector", idx, common, variants)
                if has_it:
                    cur.execute(f"RESET {it}")
        except psycopg2.Error as e:
            notice(f"pgvector {name}: query failed: {e.pgcode} {str(e).strip()}")
        cur.execute(f"RESET {guc}")
        cur.execute("DEALLOCATE ALL")
        cur.execute(f"DROP INDEX IF EXISTS {idx}")
    return out


def pgvector_ver_note(cur):
    cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    row = cur.fetchone()
    return f"pgvector {row[0] if row else '?'}"


def bench_paired(cur, a, ds, gt, table, vtable, results, qtexts_t, vtexts_t):
    """The headline measured pairwise: each kdindex point and the IVFFlat point are timed
    alternately (one pass of the queries each, --paired-rounds rounds) so that both
    see the same machine load; the ratio is taken per round.  Points: --paired, or
    'auto' = per kdindex config the first sweep point (fewest probes, then smallest
    rerank) and the smallest ivfflat.probes reaching --target-recall."""
    op, opclass, vopclass = OPS[ds.metric]
    n = ds.train.shape[0]
    target = a.target_recall
    kd_points = []
    if a.paired == "auto":
        seen = set()
        for r in results:
            if (r["family"] == "kdindex" and r["kind"] is None and r["probes"] is not None
                    and not r["codes_only"] and r["recall"] >= target
                    and r["config"] not in seen):
                seen.add(r["config"])
                b = [x for x in results if x["kind"] == "build" and x["config"] == r["config"]]
                kd_points.append((r["config"], b[-1]["with_"], r["probes"], r["rerank"]))
    else:
        for spec in a.paired.split(","):
            q, m, nb, li, pr, rr = spec.strip().split(":")
            kd_points.append((f"{q.upper()}{m}" + ("" if nb == "8" else f"x{nb}") + f" IVF{li}",
                              f"quantizer = '{q}', m = {m}, nbits = {nb}, lists = {li}",
                              int(pr), int(rr)))
    ivf_probes = a.paired_ivf_probes
    if not ivf_probes:
        ok = [r for r in results if r["method"] == "pgvector IVFFlat" and r["kind"] is None
              and r["recall"] >= target]
        ivf_probes = int(ok[0]["param"].split("=")[1]) if ok else 0
    if not kd_points or not ivf_probes:
        notice("paired headline skipped: no kdindex / IVFFlat point reaching "
               f"recall@{K} {target} (give --paired and --paired-ivf-probes)")
        return []
    lists = a.ivf_lists or max(1, int(round(np.sqrt(n))))
    vidx = f"{vtable}_ivfflat"
    kidx = f"{table}_kd"
    out = []
    cur.execute(f"DROP INDEX IF EXISTS {vidx}")
    say(f"paired headline: IVFFlat lists = {lists}, probes = {ivf_probes}; "
        f"{a.paired_rounds} rounds of {len(qtexts_t)} queries")
    t = time.perf_counter()
    cur.execute(f"CREATE INDEX {vidx} ON {vtable} USING ivfflat (embedding {vopclass}) "
                f"WITH (lists = {lists})")
    say(f"  IVFFlat rebuilt in {time.perf_counter() - t:.1f} s")
    # warm both tables' heaps and indexes once
    try:
        for label, with_, pr, rr in kd_points:
            cur.execute(f"DROP INDEX IF EXISTS {kidx}")
            t = time.perf_counter()
            cur.execute(f"CREATE INDEX {kidx} ON {table} USING kdindex (embedding {opclass}) "
                        f"WITH ({with_})")
            say(f"  kdindex {label} rebuilt in {time.perf_counter() - t:.1f} s; probes = {pr}, "
                f"rerank = {rr}")
            kd_qps, ivf_qps, ratios = [], [], []
            kd_ids = ivf_ids = None
            for rnd in range(a.paired_rounds):
                cur.execute(f"SET kdindex.probes = {pr}")
                cur.execute(f"SET kdindex.rerank = {rr}")
                prepare(cur, table, op, "real[]")
                ids, q1, _, _ = run_sql_point(cur, qtexts_t, 1, a.warmup if rnd == 0 else 0)
                kd_ids = kd_ids or ids
                cur.execute(f"SET ivfflat.probes = {ivf_probes}")
                prepare(cur, vtable, op, "vector")
                ids, q2, _, _ = run_sql_point(cur, vtexts_t, 1, a.warmup if rnd == 0 else 0)
                ivf_ids = ivf_ids or ids
                kd_qps.append(q1[0])
                ivf_qps.append(q2[0])
                ratios.append(q1[0] / q2[0])
                say(f"    round {rnd + 1}: kdindex {q1[0]:7.1f} QPS, IVFFlat {q2[0]:7.1f} QPS, "
                    f"ratio {q1[0] / q2[0]:.2f}")
            rk = datasets.recall(kd_ids, gt[:len(qtexts_t)], K)
            rv = datasets.recall(ivf_ids, gt[:len(vtexts_t)], K)
            say(f"  kdindex {label} probes={pr} rerank={rr}: recall@{K} {rk:.4f}, QPS median "
                f"{np.median(kd_qps):.0f}; IVFFlat probes={ivf_probes}: recall@{K} {rv:.4f}, "
                f"QPS median {np.median(ivf_qps):.0f}; ratio median {np.median(ratios):.2f} "
                f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
            out.append(result(family="kdindex", method="kdindex", config=label, kind="paired",
                              param=f"probes={pr} rerank={rr}", recall=rk,
                              ivf_param=f"probes={ivf_probes}", ivf_recall=rv, kd_qps=kd_qps,
                              ivf_qps=ivf_qps, ratios=ratios))
            cur.execute(f"DROP INDEX IF EXISTS {kidx}")
    except psycopg2.Error as e:
        notice(f"paired headline failed: {e.pgcode} {str(e).strip()}")
    for g in ("kdindex.probes", "kdindex.rerank", "ivfflat.probes"):
        cur.execute(f"RESET {g}")
    cur.execute("DEALLOCATE ALL")
    cur.execute(f"DROP INDEX IF EXISTS {vidx}")
    cur.execute(f"DROP INDEX IF EXISTS {kidx}")
    return out


def paired_table(results, lists_note=""):
    rows = []
    for r in results:
        if r["kind"] != "paired":
            continue
        rows.append([f"kdindex {r['config']}", r["param"], f"{r['recall']:.4f}",
                     f"{np.median(r['kd_qps']):.0f}", f"IVFFlat{lists_note} {r['ivf_param']}",
                     f"{r['ivf_recall']:.4f}", f"{np.median(r['ivf_qps']):.0f}",
                     f"{np.median(r['ratios']):.2f}",
                     f"{min(r['ratios']):.2f}–{max(r['ratios']):.2f}", len(r["ratios"])])
    return fmt_table(["kdindex", "setting", f"recall@{K}", "QPS (median)", "vs",
                      f"recall@{K}", "QPS (median)", "QPS ratio (median of rounds)",
                      "ratio min–max", "rounds"], rows)


def bench_exact(cur, a, ds, gt, table, qtexts):
    op = OPS[ds.metric][0]
    cur.execute("SET enable_indexscan = off")
    cur.execute("SET enable_bitmapscan = off")
    prepare(cur, table, op, "real[]")
    ids, qps, lat, _ = run_sql_point(cur, qtexts, 1, 1)
    r = datasets.recall(ids, gt[:len(qtexts)], K)
    cur.execute("RESET enable_indexscan")
    cur.execute("RESET enable_bitmapscan")
    cur.execute("DEALLOCATE ALL")
    say(f"exact sequential scan: recall@{K} {r:.4f} over {len(qtexts)} queries, "
        f"{np.mean(lat):.0f} ms/query")
    if r < 0.999:
        notice(f"exact scan recall@{K} is {r:.4f}, not 1: table ids and ground truth disagree "
               "(or ties at the 10th neighbour)")
    return result(family="exact", method="exact scan (PostgreSQL)", config="seq scan",
                  param="-", recall=r, recall_queries=len(qtexts), qps=qps, lat=lat,
                  time_queries=len(qtexts))


def bench_dataset(conn, a, dsname, default_rows, kd_cfgs, faiss_specs, pgvector_ok):
    t0 = time.perf_counter()
    ds = datasets.load(dsname, **dataset_kwargs(a, default_rows))
    t_gen = time.perf_counter() - t0
    gt = datasets.ground_truth(ds, 100)
    n, d = ds.train.shape
    fp = datasets._fingerprint(ds)
    say(f"\n## {ds.name}: {n} rows x {d} d, {ds.test.shape[0]} queries, metric {ds.metric}\n")
    say(f"data + ground truth ready in {time.perf_counter() - t0:.1f} s "
        f"(cache {datasets.cache_dir()})")
    nq_t = min(a.queries, ds.test.shape[0])
    nq_r = min(a.recall_queries, ds.test.shape[0])
    results = []
    info = dict(dataset=ds.name, rows=n, dim=d, metric=ds.metric, queries=ds.test.shape[0],
                time_queries=nq_t, recall_queries=nq_r, fingerprint=fp)

    # ---- Faiss (in-process, no database; under --rounds only IndexPQ, in the rounds)
    if "faiss" not in a.skip and not a.rounds:
        if bench_faiss is None or not bench_faiss.available():
            notice(f"Faiss not importable ({_faiss_err if bench_faiss is None else 'no faiss'}): "
                   "Faiss peers skipped")
        else:
            specs = list(faiss_specs)
            if "faiss-ivf" not in a.skip:
                specs.append(f"IVF{int(round(np.sqrt(n)))},PQ16+refine")
            say(f"Faiss {bench_faiss.version()} (1 thread): {', '.join(specs)}")
            t = time.perf_counter()
            sweep = (ints(a.faiss_nprobe), [float(x) for x in a.faiss_kfactor.split(",")])
            results += [result(**r) for r in
                        bench_faiss.run(ds, gt, specs, sweep, K, nq_r, nq_t, a.reps,
                                        a.faiss_train, log=say,
                                        cached_only=a.faiss_cached_only,
                                        train_slow=a.faiss_train_missing, notice=notice)]
            say(f"Faiss done in {time.perf_counter() - t:.0f} s")

    # ---- PostgreSQL
    cur = conn.cursor()
    table = "b_" + slug(ds.name)[:30]
    t = time.perf_counter()
    secs = ensure_table(conn, table, ds, fp + (f" storage={a.storage}" if a.storage else ""),
                        storage=a.storage)
    say(f"table {table}: " + (f"loaded in {secs:.1f} s" if secs else "already loaded"))
    cur.execute("SELECT pg_total_relation_size(%s)", (table,))
    info["table_bytes"] = cur.fetchone()[0]
    qtexts_t = [vec_text(v) for v in ds.test[:nq_t]]
    qtexts_r = qtexts_t + [vec_text(v) for v in ds.test[nq_t:nq_r]]

    if "exact" not in a.skip and a.exact_queries > 0:
        results.append(bench_exact(cur, a, ds, gt, table, qtexts_t[:a.exact_queries]))

    filt = None
    if a.filter:
        secs = filter_columns(conn, table, a.filter)
        if secs:
            say(f"table {table}: columns {', '.join(f'cat{m} = id % {m}' for m in a.filter)} "
                f"added in {secs:.1f} s")
        filt = make_filter(a, ds, a.filter_queries)
        filt["qargs"] = qtexts_t[:filt["nq"]] if filt["nq"] <= nq_t else \
            [vec_text(v) for v in ds.test[:filt["nq"]]]
        info["filter"] = dict(mods=a.filter, queries=filt["nq"], reps=a.filter_reps)

    if a.rounds:
        vtable = table + "_v"
        if "pgvector" not in a.skip and pgvector_ok:
            secs = ensure_table(conn, vtable, ds, fp, kind=table)
            say(f"table {vtable} (vector({d})): " + (f"copied in {secs:.1f} s" if secs
                                                     else "already loaded"))
        results += rounds.run(sys.modules[__name__], cur, a, ds, gt, table, vtable, kd_cfgs,
                              pgvector_ok and "pgvector" not in a.skip, qtexts_t,
                              [vector_text(v) for v in ds.test[:nq_t]])
        info["seconds"] = time.perf_counter() - t0
        info["recipe"] = ds.recipe + f" Generated or loaded from the cache in {t_gen:.0f} s."
        return info, results

    if "kdindex" not in a.skip:
        results += bench_kdindex(cur, a, ds, gt, table, kd_cfgs, qtexts_t, qtexts_r,
                                 ints(a.rerank), filt)

    if "pgvector" not in a.skip and pgvector_ok:
        vtable = table + "_v"
        t = time.perf_counter()
        secs = ensure_table(conn, vtable, ds, fp, kind=table)
        say(f"table {vtable} (vector({d})): " + (f"copied in {secs:.1f} s" if secs
                                                 else "already loaded"))
        vfilt = None
        if filt:
            secs = filter_columns(conn, vtable, a.filter)
            if secs:
                say(f"table {vtable}: category columns added in {secs:.1f} s")
            vfilt = dict(filt, qargs=[vector_text(v) for v in ds.test[:filt["nq"]]])
        vtexts_t = [vector_text(v) for v in ds.test[:nq_t]]
        results += bench_pgvector(cur, a, ds, gt, vtable, vtexts_t, vfilt)
        if a.paired:
            results += bench_paired(cur, a, ds, gt, table, vtable, results, qtexts_t, vtexts_t)
    info["seconds"] = time.perf_counter() - t0
    return info, results


# ---------------------------------------------------------------------------- report

def fmt_mb(b):
    return "" if b is None else f"{b / 2**20:.2f}" if b < 100 * 2**20 else f"{b / 2**20:.0f}"


def fmt_s(s):
    return "" if s is None else f"{s:.1f}"


def qps_cells(r):
    if not r["qps"]:
        return ["", "", "", ""]
    q = r["qps"]
    return [f"{np.median(q):.0f}", f"{min(q):.0f}–{max(q):.0f}",
            f"{np.percentile(r['lat'], 50):.2f}", f"{np.percentile(r['lat'], 99):.2f}"]


def codes_table(results):
    rows = []
    for r in results:
        if not r["codes_only"] and not (r["family"] == "faiss" and r["param"] == "codes only"):
            continue
        rows.append([r["method"], r["config"], r["bytes_per_vec"], fmt_mb(r["index_bytes"]),
                     "" if r["bytes_per_row"] is None else f"{r['bytes_per_row']:.1f}",
                     fmt_s(r["train_s"]), fmt_s(r["build_s"]), f"{r['recall']:.4f}",
                     r["recall_queries"]] + qps_cells(r)[:2])
    return fmt_table(["method", "config", "code B/vec", "index MB", "index B/row",
                      "train s", "build s", f"recall@{K} codes only", "queries",
                      "QPS", "QPS min–max"], rows)


def sweep_table(results):
    rows = []
    for r in results:
        if r["qps"] is None or r["codes_only"] or r["kind"]:
            continue
        if r["family"] == "faiss" and r["param"] == "codes only":
            continue
        rows.append([r["method"], r["config"], r["param"], f"{r['recall']:.4f}",
                     r["time_queries"]] + qps_cells(r) +
                    [fmt_mb(r["index_bytes"]), fmt_s(r["build_s"])])
    return fmt_table(["method", "config", "setting", f"recall@{K}", "queries", "QPS (median)",
                      "QPS min–max", "p50 ms", "p99 ms", "index MB", "build s"], rows)


def build_table(results):
    rows = []
    for r in results:
        if r["kind"] != "build":
            continue
        cpu = r.get("cpu")
        rows.append([r["method"], r["config"], r["with_"], r["rows"], r["mpw"],
                     fmt_s(r["build_s"]),
                     f"{cpu[0]:.0f} (load {cpu[1][0]:.1f}→{cpu[1][1]:.1f})" if cpu else "-",
                     fmt_s(r["train_s"]), fmt_mb(r["index_bytes"]),
                     f"{r['bytes_per_row']:.1f}"])
    return fmt_table(["method", "config", "WITH", "rows", "max_parallel_maint._workers",
                      "build s", "server CPU s (load average)", "train s", "index MB",
                      "index B/row"], rows)


def _frontier(points):
    """Pareto frontier (recall up, QPS up) of (recall, qps) points, by recall."""
    pts = sorted(points, key=lambda p: (-p[1], -p[0]))
    front, best = [], -1.0
    for rec, q in pts:             # by QPS descending: keep points that raise the recall
        if rec > best:
            front.append((rec, q))
            best = rec
    return sorted(front)


def qps_at(points, target):
    """QPS at exactly `target` recall on the frontier (log-QPS linear in recall between
    the two frontier points around it); None if the curve never reaches it."""
    front = _frontier(points)
    for (r0, q0), (r1, q1) in zip(front, front[1:]):
        if r0 <= target <= r1:
            if r1 == r0:
                return max(q0, q1)
            w = (target - r0) / (r1 - r0)
            return float(np.exp(np.log(q0) + w * (np.log(q1) - np.log(q0))))
    if front and front[0][0] >= target:
        return front[0][1]
    return None


def headline(results, target):
    """Per (method, config): the fastest point with recall >= target and the
    interpolated QPS at exactly target; then kdindex / pgvector ratios."""
    groups = {}
    for r in results:
        if r["qps"] is None or r["codes_only"] or r["kind"] or r["family"] not in (
                "kdindex", "pgvector"):
            continue
        groups.setdefault((r["method"], r["config"]), []).append(r)
    rows, best = [], {}
    for (method, cfg), rs in groups.items():
        ok = [r for r in rs if r["recall"] >= target]
        pts = [(r["recall"], float(np.median(r["qps"]))) for r in rs]
        qi = qps_at(pts, target)
        if ok:
            b = max(ok, key=lambda r: np.median(r["qps"]))
            best[(method, cfg)] = (float(np.median(b["qps"])), qi, b)
            rows.append([method, cfg, b["param"], f"{b['recall']:.4f}",
                         f"{np.median(b['qps']):.0f}", f"{min(b['qps']):.0f}–{max(b['qps']):.0f}",
                         "" if qi is None else f"{qi:.0f}"])
        else:
            top = max(rs, key=lambda r: r["recall"])
            rows.append([method, cfg, f"(best: {top['param']})", f"{top['recall']:.4f}",
                         "not reached", "", ""])
    t1 = fmt_table(["method", "config", f"fastest setting with recall@{K} ≥ {target}",
                    f"recall@{K}", "QPS (median)", "QPS min–max",
                    f"QPS interpolated at {target}"], rows)
    ratios = []
    for (km, kc), (kq, kqi, kb) in best.items():
        if not km.startswith("kdindex"):
            continue
        for (pm, pc), (pq, pqi, pb) in best.items():
            if not pm.startswith("pgvector"):
                continue
            ratios.append([f"{km} {kc}", f"{pm} {pc}", f"{kq / pq:.2f}",
                           "" if kqi is None or pqi is None else f"{kqi / pqi:.2f}"])
    t2 = fmt_table(["kdindex", "vs", "QPS ratio, fastest points ≥ target",
                    "QPS ratio at equal recall (interpolated)"], ratios) if ratios else ""
    return t1, t2


def filtered_table(results):
    rows = []
    for r in results:
        if r["kind"] != "filtered":
            continue
        rows.append([f"1/{r['selectivity']}", r["method"], r["config"], r["param"],
                     f"{r['recall']:.4f}", f"{r['rows_mean']:.2f}", r["rows_min"],
                     f"{r['full'] * 100:.1f}%", f"{np.median(r['qps']):.0f}",
                     f"{np.percentile(r['lat'], 50):.2f}", f"{np.percentile(r['lat'], 99):.2f}"])
    rows.sort(key=lambda x: int(x[0][2:]))
    return fmt_table(["filter", "method", "config", "setting", f"recall@{K}", "rows (mean)",
                      "rows (min)", f"queries with {K} rows", "QPS (median)", "p50 ms",
                      "p99 ms"], rows)


def plot(info, results, out_png_qps, out_png_bytes, title, target=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"kdindex": "tab:red", "kdindex PQ": "tab:red", "kdindex OPQ": "deeppink",
              "kdindex AQ": "darkred", "faiss PQ": "tab:blue", "faiss OPQ": "tab:cyan",
              "faiss RQ": "tab:green", "faiss LSQ": "tab:olive",
              "faiss IVF-PQ+refine": "tab:purple", "pgvector HNSW": "tab:orange",
              "pgvector IVFFlat": "tab:brown", "exact scan (PostgreSQL)": "black"}
    markers = {8: "s", 16: "o", 32: "D"}

    def color(r):
        if r["family"] == "kdindex":
            return colors.get(r["method"], colors["kdindex"])
        return colors.get(r["method"], "gray")

    # recall vs QPS
    fig, ax = plt.subplots(figsize=(9, 6), dpi=90)
    groups = {}
    for r in results:
        if r["qps"] is None or r["codes_only"] or r["family"] == "exact" or r["kind"]:
            continue
        if r["family"] == "kdindex" and r["probes"] is not None:
            key = (r["method"], r["config"] + f", rerank {r['rerank']}, probes")
        elif r["family"] == "faiss" and r["param"] != "codes only":
            key = (r["method"], r["config"] + f" nprobe={r['nprobe']}")
        elif r["family"] == "faiss":
            key = (r["method"], r["config"] + " (codes only)")
        else:
            key = (r["method"], r["config"])
        groups.setdefault(key, []).append(r)
    ivf_keys = [k for k in groups if k[1].endswith(", probes")]
    ivf_shade = {}
    for k in ivf_keys:     # one shade per re-rank depth, darker = deeper
        rr = groups[k][0]["rerank"]
        ivf_shade.setdefault(rr, None)
    for i, rr in enumerate(sorted(ivf_shade)):
        ivf_shade[rr] = plt.cm.Reds(0.35 + 0.6 * i / max(1, len(ivf_shade) - 1))
    for (method, cfg), rs in groups.items():
        x = np.array([np.median(r["qps"]) for r in rs])
        lo = x - np.array([min(r["qps"]) for r in rs])
        hi = np.array([max(r["qps"]) for r in rs]) - x
        y = np.array([r["recall"] for r in rs])
        label = f"{method} {cfg}" if not method.startswith("kdindex") else \
            f"{method} {cfg}, rerank {rs[0]['rerank']}..{rs[-1]['rerank']}"
        ls = ("--" if rs[0]["bytes_per_vec"] == 8 or "nprobe=4" in cfg else "-") \
            if len(rs) > 1 else "none"
        mk = markers.get(rs[0]["bytes_per_vec"], "o") if rs[0]["family"] != "pgvector" else "^"
        fc = "none" if "nprobe=4 " in cfg + " " or "OPQ" in method or "LSQ" in method else None
        c = color(rs[0])
        if cfg.endswith(", probes"):
            c = ivf_shade[rs[0]["rerank"]]
            label = f"{method} {cfg} {rs[0]['probes']}..{rs[-1]['probes']}"
            ls = "-" if rs[0]["bytes_per_vec"] and rs[0]["bytes_per_vec"] >= 32 else "--"
            fc = None
        ax.errorbar(x, y, xerr=[lo, hi], color=c, linestyle=ls, marker=mk,
                    markersize=5, capsize=2, lw=1.3, label=label,
                    markerfacecolor=fc if fc else c)
    if target is not None and ivf_keys:
        ax.axhline(target, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (1 client; median of repetitions, bars = min–max); "
                  "Faiss in-process, others via SQL", fontsize=8)
    ax.set_ylabel(f"recall@{K}")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(out_png_qps)
    plt.close(fig)

    # codes-only recall vs bytes per vector
    fig, ax = plt.subplots(figsize=(7, 5), dpi=90)
    series = {}
    for r in results:
        if r["family"] == "kdindex" and r["codes_only"]:
            series.setdefault(r["method"], []).append(r)
        elif r["family"] == "faiss" and r["param"] == "codes only":
            series.setdefault(r["method"], []).append(r)
    for method, rs in series.items():
        rs = sorted(rs, key=lambda r: r["bytes_per_vec"])
        x = [r["bytes_per_vec"] for r in rs]
        y = [r["recall"] for r in rs]
        c = colors.get(method, colors["kdindex"] if method.startswith("kdindex") else "gray")
        ax.plot(x, y, marker="o", color=c, label=method + (" (code bytes)" if method.startswith(
            "kdindex") else " (code bytes, RQ/LSQ: + 4 B norm under L2)"
            if method in ("faiss RQ", "faiss LSQ") else ""))
        if method.startswith("kdindex"):
            xb = [r["bytes_per_row"] for r in rs]
            ax.plot(xb, y, marker="o", color=c, linestyle=":", markerfacecolor="none",
                    label=method + " (whole index / rows)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per vector")
    ax.set_ylabel(f"recall@{K}, codes only (no re-rank), {info['recall_queries']} queries")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png_bytes)
    plt.close(fig)


def to_json(results):
    out = []
    for r in results:
        r = dict(r)
        lat = r.pop("lat")
        if lat is not None:
            r["p50_ms"] = float(np.percentile(lat, 50))
            r["p99_ms"] = float(np.percentile(lat, 99))
            r["qps_median"] = float(np.median(r["qps"]))
        out.append({k: (float(v) if isinstance(v, (np.floating,)) else
                        int(v) if isinstance(v, np.integer) else v) for k, v in r.items()})
    return out


# ---------------------------------------------------------------------------- main

def dataset_kwargs(a, default_rows):
    return {} if default_rows is None else {"n": a.rows or default_rows}


def prepare_only(a):
    for dsname, rows, _, _ in SUITES[a.suite]:
        t = time.perf_counter()
        ds = datasets.load(dsname, **dataset_kwargs(a, rows))
        t1 = time.perf_counter()
        datasets.ground_truth(ds, 100)
        say(f"{ds}: generated/loaded in {t1 - t:.1f} s, ground truth ready in "
            f"{time.perf_counter() - t1:.1f} s")
    return 0


def main(argv=None):
    a = parse_args(argv)
    if a.prepare_only:
        return prepare_only(a)
    t_all = time.perf_counter()
    os.makedirs(a.out, exist_ok=True)
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT split_part(version(), ',', 1), current_setting('shared_buffers'), "
                "current_setting('work_mem'), current_setting('maintenance_work_mem'), "
                "current_setting('max_parallel_maintenance_workers')")
    ver, sb, wm, mwm, pmw = cur.fetchone()
    cur.execute("CREATE EXTENSION IF NOT EXISTS kdindex")
    cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'kdindex'")
    kdver = cur.fetchone()[0]
    cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    row = cur.fetchone()
    pgvector_ok = False
    pgvector_ver = None
    if "pgvector" in a.skip:
        pass
    elif row is None:
        notice("pgvector is not installed on this server (`vector` not in "
               "pg_available_extensions): pgvector HNSW / IVFFlat skipped")
    else:
        cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        pgvector_ver = cur.fetchone()[0]
        pgvector_ok = True
    commit, so = build_identity()
    env = dict(date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), server=ver,
               kdindex=kdver, kdindex_commit=commit, kdindex_so_md5=so[0] if so else None,
               pgvector=pgvector_ver,
               faiss=bench_faiss.version() if bench_faiss and bench_faiss.available() else None,
               cpu=_cpu_name(), cores=os.cpu_count(), shared_buffers=sb, work_mem=wm,
               maintenance_work_mem=mwm, max_parallel_maintenance_workers=pmw,
               suite=a.suite, reps=a.reps, queries=a.queries, recall_queries=a.recall_queries)
    say(f"# kdindex benchmark, suite {a.suite}")
    say(f"kdindex source {commit or '?'}, installed kdindex.so md5 {so[0] if so else '?'} "
        f"(modified {so[1] if so else '?'})")
    say(f"{ver}; kdindex {kdver}; pgvector {pgvector_ver or '-'}; Faiss {env['faiss'] or '-'}; "
        f"{env['cpu']} x{env['cores']}; shared_buffers={sb} work_mem={wm} "
        f"maintenance_work_mem={mwm} max_parallel_maintenance_workers={pmw}")
    say(f"timing: {a.queries} queries x {a.reps} repetitions per point, one client; "
        f"codes-only recall over {a.recall_queries} queries")

    all_sections = []
    for dsname, rows, kd_cfgs, faiss_specs in SUITES[a.suite]:
        if a.kdindex:
            kd_cfgs = [c.strip() for c in a.kdindex.split(",") if c.strip()]
        if a.faiss is not None:
            faiss_specs = [s.strip() for s in a.faiss.split(",") if s.strip()]
        info, results = bench_dataset(conn, a, dsname, rows, kd_cfgs, faiss_specs, pgvector_ok)
        all_sections.append((info, results))

    _, so_end = build_identity()
    if so and so_end and so_end[0] != so[0]:
        notice(f"kdindex.so was replaced during the run (md5 {so[0]} -> {so_end[0]}): a backend "
               "that loaded it later measured a different build; re-run for clean figures")
    # ---- report
    md = [f"# kdindex benchmark: suite `{a.suite}`", "",
          f"{env['date']}; {ver}; kdindex {kdver} (source {commit or '?'}, kdindex.so md5 "
          f"{so[0] if so else '?'}); pgvector {pgvector_ver or 'not installed'}; "
          f"Faiss {env['faiss'] or 'not installed'}; {env['cpu']}, {env['cores']} cores; "
          f"shared_buffers {sb}, work_mem {wm}, maintenance_work_mem {mwm}.", "",
          "One client, one query at a time. QPS = median of " +
          (f"{a.rounds} paired rounds (below)" if a.rounds else f"{a.reps} repetitions") +
          f" over the first {a.queries} test queries (min–max spread beside it); p50/p99 "
          f"latency over all of them; recall@{K} = |returned ∩ exact top-{K}| / {K}. "
          "kdindex and pgvector go through a prepared statement over a Unix socket; Faiss "
          "runs in-process on one thread (no SQL, no client round trip). kdindex and Faiss "
          "recall figures are identical from run to run (fixed seeds; trained Faiss indexes "
          "are cached, their train / build seconds are those of the run that trained them); "
          "pgvector's builds draw from PostgreSQL's per-backend random state, so its recall "
          "can move slightly between runs. Sizes: kdindex and pgvector pg_relation_size, "
          "Faiss serialized index (IVF-PQ+refine includes the float32 copy it re-ranks on).",
          ""]
    prefix = a.name
    for i, (info, results) in enumerate(all_sections):
        tag = prefix if len(all_sections) == 1 else f"{prefix}-{slug(info['dataset'])}"
        title = (f"{info['dataset']}: {info['rows']} x {info['dim']}, {info['metric']}, "
                 f"top-{K}")
        png_q = os.path.join(a.out, f"{tag}-recall-qps.png")
        png_b = os.path.join(a.out, f"{tag}-recall-bytes.png")
        try:
            plot(info, results, png_q, png_b, title, target=a.target_recall)
            if any(r.get("rounds") for r in results):
                rounds.plot(results, png_q, title)
        except Exception as e:  # noqa: BLE001
            notice(f"plotting failed: {type(e).__name__}: {e}")
        t1, t2 = codes_table(results), sweep_table(results)
        sec = [f"## {title}", "",
               f"Table {info['table_bytes'] / 2**20:.0f} MB (heap + TOAST + primary key); "
               f"raw float32 vectors {info['dim'] * 4} B/row.", ""]
        paired_rounds = any(r.get("rounds") for r in results)
        if paired_rounds:
            sec += rounds.sections(a, info, results, t1, t2)
        elif any(r["kind"] == "build" for r in results):
            sec += ["### Builds", "", build_table(results), "",
                    "Wall-clock seconds of CREATE INDEX from the client; `train s` is "
                    "kdindex_info's train_seconds. `max_parallel_maint._workers` is the "
                    "session's max_parallel_maintenance_workers during the build (pgvector "
                    "launches parallel workers on large tables; whether kdindex does shows "
                    "in the 0-vs-2 pair).", ""]
        if not paired_rounds:
            sec += [f"### Codes only (recall over {info['recall_queries']} queries" +
                    (f"; IVF configs at kdindex.probes = {KD_PROBES_DEFAULT})"
                     if any(r["probes"] for r in results if r["codes_only"]) else ")"),
                    "", t1, "", "### Recall vs speed", "", t2, ""]
        if not paired_rounds and any(r["family"] == "kdindex" and r["probes"] for r in results):
            h1, h2 = headline(results, a.target_recall)
            sec += [f"### Headline: recall@{K} ≥ {a.target_recall}", "", h1, ""]
            if h2:
                sec += [h2, "", "Ratios are kdindex QPS / pgvector QPS measured in the same "
                        "run. `equal recall` interpolates each method's recall–QPS frontier "
                        f"(log QPS linear in recall) to recall@{K} = {a.target_recall}.", ""]
        if any(r["kind"] == "paired" for r in results):
            sec += [f"### Headline, paired: recall@{K} ≥ {a.target_recall}", "",
                    paired_table(results), "",
                    "Each kdindex point and the IVFFlat point were timed alternately, one "
                    f"pass over the {info['time_queries']} queries each per round, and the "
                    "ratio kdindex QPS / IVFFlat QPS taken per round, so both see the same "
                    "load on this shared machine; points = the fewest probes (then the "
                    f"smallest rerank) reaching recall@{K} {a.target_recall} in the sweep.", ""]
        if any(r["kind"] == "filtered" for r in results):
            fi = info.get("filter", {})
            sec += ["### Filtered queries", "",
                    f"`SELECT id FROM t WHERE cat<M> = $2 ORDER BY embedding <-> $1 LIMIT {K}` "
                    f"with cat<M> = id % M and, for query i, $2 = i % M (1/M of the rows "
                    f"pass); {fi.get('queries')} queries x {fi.get('reps')} repetitions; "
                    "recall against the exact top-10 among the rows that pass (numpy); "
                    "`enable_seqscan = off` so that the plan is the index scan (checked). "
                    f"Every query should return {K} rows.", "", filtered_table(results), ""]
        sec += [f"![recall vs QPS]({os.path.basename(png_q)})",
                f"![recall vs bytes]({os.path.basename(png_b)})", ""]
        md += sec
        say("\n" + "\n".join(sec[:-3]))
        info["png"] = [png_q, png_b]
    if notices:
        md += ["## Notices", ""] + [f"- {n}" for n in notices] + [""]
    wall = time.perf_counter() - t_all
    md.append(f"Wall time of bench.py: {wall / 60:.1f} min.")
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(dict(env=env, sections=[dict(info=i, results=to_json(r))
                                          for i, r in all_sections]), f, indent=1)
    if not a.no_commit_results:
        dest = os.path.join(HERE, "results")
        os.makedirs(dest, exist_ok=True)
        with open(os.path.join(dest, f"{a.name}.md"), "w") as f:
            f.write(text)
        for info, _ in all_sections:
            for p in info["png"]:
                if os.path.exists(p):
                    shutil.copy(p, dest)
        say(f"\nsummary and plots copied to {os.path.relpath(dest, ROOT)}/")
    say(f"full results in {a.out}/ (results.md, results.json, *.png)")
    if notices:
        say(f"\n{len(notices)} notice(s):")
        for n in notices:
            say("  - " + n)
    say(f"\n(bench.py took {wall / 60:.1f} min)")
    conn.close()
    return 0


def build_identity():
    """(git commit of the source tree [+dirty], md5 and mtime of the installed kdindex.so)."""
    import hashlib
    import subprocess
    commit = None
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "sql",
                                "Makefile"], capture_output=True, text=True, timeout=10).stdout
        if commit and dirty.strip():
            commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    so = None
    try:
        libdir = subprocess.run([os.environ.get("PG_CONFIG", "/usr/lib/postgresql/15/bin/pg_config"),
                                 "--pkglibdir"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        # a private prefix (KDINDEX_PREFIX, test/scripts/lib.sh) holds the library used
        path = os.environ.get("KDINDEX_PREFIX", "") + os.path.join(libdir, "kdindex.so")
        with open(path, "rb") as f:
            so = (hashlib.md5(f.read()).hexdigest()[:10],
                  datetime.datetime.fromtimestamp(os.path.getmtime(path)).strftime("%H:%M:%S"))
    except (OSError, subprocess.SubprocessError):
        pass
    return commit, so


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
