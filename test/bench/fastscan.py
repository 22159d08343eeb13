#!/usr/bin/python3
"""4-bit fast scan against the 8-bit scalar scan, at 8 bytes per vector, beside Faiss.

Run by `make bench SUITE=fastscan` (test/scripts/bench.sh starts the cluster):

  kdindex  PQ8x8   flat, m = 8, nbits = 8: float lookup tables, scalar scan
  kdindex  PQ16x4  flat, m = 16, nbits = 4: block layout, 8-bit tables, AVX2 shuffles
  Faiss    PQ8, PQ16x4 (IndexPQ) and PQ16x4fs (IndexPQFastScan), one thread

Codes only (kdindex.rerank = 0, no refinement in Faiss): recall@10 over all the
queries, and queries per second from one client with a prepared statement, the
median of --reps passes over --queries queries (their spread in brackets).  The
ratios compare each fast scan with the 8-bit scan of the same system in the same
run; timings on a shared machine are noisy, ratios less so.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import psycopg2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import datasets  # noqa: E402

K = 10


def vec_text(v):
    return "{" + ",".join(f"{x:.6g}" for x in v) + "}"


def median_spread(ts):
    return statistics.median(ts), min(ts), max(ts)


def kdindex_runs(conn, table, ds, gt, a):
    cur = conn.cursor()
    out = []
    qtexts = [vec_text(q) for q in ds.test[:a.recall_queries]]
    for label, opts in [("kdindex PQ8x8 (scalar)", "m = 8, nbits = 8"),
                        ("kdindex PQ16x4 (fast scan)", "m = 16, nbits = 4")]:
        cur.execute("DROP INDEX IF EXISTS kd_fs_idx")
        conn.commit()
        t0 = time.perf_counter()
        cur.execute(f"CREATE INDEX kd_fs_idx ON {table} USING kdindex (embedding) WITH ({opts})")
        conn.commit()
        build = time.perf_counter() - t0
        cur.execute("SELECT code_bytes, total_bytes FROM kdindex_info('kd_fs_idx')")
        code_bytes, size = cur.fetchone()
        cur.execute("SET enable_seqscan = off; SET kdindex.rerank = 0")
        cur.execute("DEALLOCATE ALL")
        cur.execute(f"PREPARE knn(real[]) AS SELECT id FROM {table} ORDER BY embedding <-> $1 LIMIT {K}")
        hits = 0
        for i, q in enumerate(qtexts):
            cur.execute("EXECUTE knn(%s)", (q,))
            found = [r[0] for r in cur.fetchall()]
            hits += len(set(found) & set(gt[i, :K].tolist()))
        recall = hits / (K * len(qtexts))
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            for q in qtexts[:a.queries]:
                cur.execute("EXECUTE knn(%s)", (q,))
                cur.fetchall()
            ts.append(a.queries / (time.perf_counter() - t0))
        conn.commit()
        out.append(dict(system=label, code_bytes=code_bytes, size=size, build=build, recall=recall,
                        qps=median_spread(ts)))
    cur.execute("SELECT kdindex_fastscan_kernel()")
    kernel = cur.fetchone()[0]
    cur.execute("DROP INDEX IF EXISTS kd_fs_idx")
    conn.commit()
    return out, kernel


def faiss_runs(ds, gt, a):
    import faiss
    faiss.omp_set_num_threads(1)
    d = ds.train.shape[1]
    rng = np.random.default_rng(1234)
    sample = ds.train[rng.choice(len(ds.train), min(len(ds.train), 65536), replace=False)]
    xq = np.ascontiguousarray(ds.test[:a.recall_queries])
    out = []
    for label, make in [("Faiss PQ8 (8-bit)", lambda: faiss.IndexPQ(d, 8, 8)),
                        ("Faiss PQ16x4", lambda: faiss.IndexPQ(d, 16, 4)),
                        ("Faiss PQ16x4fs (fast scan)", lambda: faiss.IndexPQFastScan(d, 16, 4))]:
        index = make()
        t0 = time.perf_counter()
        index.train(sample)
        index.add(ds.train)
        build = time.perf_counter() - t0
        _, found = index.search(xq, K)
        recall = float(np.mean([len(set(found[i]) & set(gt[i, :K])) / K for i in range(len(xq))]))
        ts, tb = [], []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            for i in range(a.queries):         # one query at a time, as a client would
                index.search(xq[i:i + 1], K)
            ts.append(a.queries / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            index.search(xq[:a.queries], K)    # all at once, as Faiss prefers
            tb.append(a.queries / (time.perf_counter() - t0))
        out.append(dict(system=label, code_bytes=8, size=None, build=build, recall=recall,
                        qps=median_spread(ts), batch=median_spread(tb)))
    return out


def table_md(rows, base):
    lines = ["| system | bytes/vector | build s | recall@10 codes only | QPS median [min-max] | x 8-bit scan "
             "| batch QPS (Faiss) | x 8-bit batch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q, lo, hi = r["qps"]
        sysname = r["system"].split()[0]
        ratio = q / base[sysname]
        batch = batch_ratio = ""
        if "batch" in r:
            batch = f"{r['batch'][0]:.0f}"
            batch_ratio = f"{r['batch'][0] / base['Faiss batch']:.2f}"
        lines.append(f"| {r['system']} | {r['code_bytes']} | {r['build']:.1f} | {r['recall']:.3f} | "
                     f"{q:.0f} [{lo:.0f}-{hi:.0f}] | {ratio:.2f} | {batch} | {batch_ratio} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synth-l2-128")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200, help="queries per timed pass")
    ap.add_argument("--recall-queries", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()

    ds = datasets.load(a.dataset, n=a.rows) if a.dataset.startswith("synth") else datasets.load(a.dataset)
    gt = datasets.ground_truth(ds, 100)
    table = "kd_fs_" + a.dataset.replace("-", "_") + f"_{len(ds.train)}"
    conn = psycopg2.connect("")
    if datasets.table_rows(conn, table) != len(ds.train):
        datasets.load_table(conn, table, ds.train, verbose=True)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS kdindex")
    conn.commit()

    kd, kernel = kdindex_runs(conn, table, ds, gt, a)
    fa = faiss_runs(ds, gt, a)
    import faiss
    faiss_build = faiss.get_compile_options().strip()
    base = {"kdindex": kd[0]["qps"][0], "Faiss": fa[0]["qps"][0], "Faiss batch": fa[0]["batch"][0]}
    md = (f"# 4-bit fast scan vs 8-bit scan, {a.dataset} ({len(ds.train)} rows, {ds.train.shape[1]} d)\n\n"
          f"Codes only, 8 bytes per vector, one client / one thread; kdindex kernel: {kernel}; "
          f"QPS over {a.queries} queries x {a.reps} passes; recall over {a.recall_queries} queries. "
          f"Faiss {faiss.__version__} compile options: `{faiss_build}`"
          + (" (Debian's build has no AVX2 variant, so Faiss's fast scan runs its scalar emulation of the "
             "SIMD kernels here)" if "AVX2" not in faiss_build else "") + ".\n\n"
          + table_md(kd + fa, base) + "\n")
    print(md)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"fastscan-{a.dataset}.md")
    with open(path, "w") as f:
        f.write(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
