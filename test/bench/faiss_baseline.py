#!/usr/bin/python3
"""Faiss product-quantization baseline on Fashion-MNIST (784-d, L2).

IndexPQ(784, M, 8) trained on the 60,000 training images, codes-only (ADC)
recall@10 of all 10,000 test queries against exact ground truth, with train,
add and search times on one thread (faiss.omp_set_num_threads(1)).
Reference point for kdindex's `WITH (quantizer = 'pq', m = M, nbits = 8)`.
"""

import argparse
import os
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--m", default="16,8", help="comma-separated sub-quantizer counts (default 16,8)")
    ap.add_argument("--nbits", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=0, help="0 = all test queries")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args()


args = parse_args()
# Faiss' k-means and search call BLAS: pin the BLAS pool too, not just OpenMP,
# before numpy / faiss load it.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datasets  # noqa: E402
from demo import fmt_table  # noqa: E402


def main():
    faiss.omp_set_num_threads(args.threads)
    ds = datasets.load("fashion-mnist")
    gt = datasets.ground_truth(ds, 100)
    xq = ds.test if args.queries <= 0 else ds.test[:args.queries]
    n, d = ds.train.shape
    k = args.k
    print(f"# Faiss {faiss.__version__} IndexPQ baseline — {ds}")
    print(f"threads={args.threads}, queries={len(xq)}, codes only (no re-rank)\n")

    rows = []
    for m in [int(x) for x in args.m.split(",")]:
        index = faiss.IndexPQ(d, m, args.nbits)          # METRIC_L2
        index.pq.cp.seed = args.seed
        t0 = time.perf_counter()
        index.train(ds.train)
        t1 = time.perf_counter()
        index.add(ds.train)
        t2 = time.perf_counter()
        _, ids = index.search(xq, max(k, 100))
        t3 = time.perf_counter()
        r = datasets.recall(ids, gt[:len(xq)], k)
        r100 = datasets.recall(ids[:, :100], gt[:len(xq)], 100)
        r10_at100 = np.mean([len(set(ids[i, :100]) & set(gt[i, :k])) / k for i in range(len(xq))])
        rows.append([f"IndexPQ({d}, {m}, {args.nbits})", index.pq.code_size,
                     f"{r:.3f}", f"{r10_at100:.3f}", f"{r100:.3f}",
                     f"{t1 - t0:.1f}", f"{t2 - t1:.2f}", f"{t2 - t0:.1f}",
                     f"{(t3 - t2) * 1000 / len(xq):.3f}"])
        print(f"IndexPQ({d}, {m}, {args.nbits}): recall@{k} = {r:.4f}, train {t1 - t0:.1f} s, "
              f"add {t2 - t1:.2f} s", flush=True)
    print()
    print(fmt_table(["index", "bytes/code", f"recall@{k}", f"{k}-recall@100", "recall@100",
                     "train s", "add s", "train+add s", "search ms/query"], rows))
    print(f"\n{k}-recall@100 = fraction of the true top-{k} found among the top-100 by codes "
          f"(what a re-rank of 100 candidates can reach).")


if __name__ == "__main__":
    main()
