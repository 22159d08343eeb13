#!/usr/bin/python3
"""Faiss beside `make bench SUITE=distill`: PQ / OPQ / RQ / LSQ on Fashion-MNIST, codes-only
recall@10 on the distillation bench's split, with and without the per-row error term.

    faiss_distill.py [--m 16,8] [--kinds pq,opq,rq,lsq] [--lsq-train 10000 --lsq-iters 10]

Every quantizer is trained on (a sample of) the 60,000 training images and encodes all
of them. Each row is decoded to x̂ and scored by ‖q − x̂‖² + a·‖x − x̂‖² (exact, by BLAS:
the same ranking as the quantizer's own asymmetric search at a = 0). a is picked in
0, 0.1, ..., 1 on test images 0-4,999 (the half kdindex_train's teacher uses) and
reported on 5,000-9,999 against their exact top-10 over the 60,000 rows, as distill.py
does. The term is kept exact here (one byte per row, as kdindex stores it, costs at
most 0.1 point: issue 14). Writes test/bench/results/distill-faiss-<dataset>-m<m>-<kinds>.md after each index.
"""

import argparse
import datetime
import os
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", default="16,8", help="bytes of code (sub-quantizers / stages, 8 bits each)")
    ap.add_argument("--kinds", default="pq,opq,rq,lsq")
    ap.add_argument("--opq-iters", default="50",
                    help="OPQ alternations (Faiss default 50); a list such as 10,20,50 continues one "
                         "training and reports each")
    ap.add_argument("--rq-beam", type=int, default=5, help="RQ beam (Faiss default 5)")
    ap.add_argument("--rq-train", type=int, default=0, help="RQ training sample (rows; 0 = all)")
    ap.add_argument("--lsq-train", type=int, default=10000,
                    help="LSQ training sample (rows); needs several times m * 256: its codebook "
                         "solve has m * 256 unknowns per dimension and, with about as many rows, "
                         "fits the random start codes almost exactly, so local search never finds "
                         "a better code (LSQ16 on 2,000 rows: MSE 14; on 5,000: recall 0.05)")
    ap.add_argument("--lsq-iters", default="10",
                    help="LSQ training iterations (Faiss default 25); a list such as 5,10,25 trains "
                         "once per value (Faiss's LSQ cannot resume)")
    ap.add_argument("--lsq-ils", type=int, default=8,
                    help="LSQ encoding: iterated local search rounds (Faiss default 16)")
    ap.add_argument("--fit-queries", type=int, default=2000,
                    help="queries of test images 0-4,999 used to pick a")
    ap.add_argument("--lsq-verbose", action="store_true", help="Faiss's LSQ trace (MSE per iteration)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-commit-results", action="store_true")
    return ap.parse_args()


args = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import datasets  # noqa: E402

A_GRID = [round(0.1 * i, 1) for i in range(11)]


def say(msg=""):
    print(msg, flush=True)


def train_encode(kind, m, x):
    """yields (decoded rows, train s, encode s, note): once, or once per --opq-iters / --lsq-iters value"""
    d = x.shape[1]
    rng = np.random.default_rng(1234)
    t0 = time.perf_counter()
    if kind == "pq":
        q = faiss.ProductQuantizer(d, m, 8)
        q.train(x)
        t1 = time.perf_counter()
        yield q.decode(q.compute_codes(x)), t1 - t0, time.perf_counter() - t1, "25 k-means iterations"
    elif kind == "opq":
        opq = faiss.OPQMatrix(d, m)
        # the PQ OPQMatrix alternates with, kept so a longer run continues hot-started from it
        alt_pq = faiss.ProductQuantizer(d, m, 8)
        opq.pq = alt_pq
        done, alt_s = 0, 0.0
        for total in [int(v) for v in args.opq_iters.split(",")]:
            t0 = time.perf_counter()
            opq.niter = total - done
            opq.train(x)
            opq.niter_pq_0 = opq.niter_pq          # later calls continue: no 40-iteration restart
            done = total
            alt_s += time.perf_counter() - t0
            t0 = time.perf_counter() - alt_s       # train s: the alternations so far + this PQ
            xr = opq.apply_py(x)
            # a PQ of its own, trained as IndexPreTransform(OPQ, IndexPQ) trains it: the one
            # OPQMatrix alternates with is left at 4 k-means iterations
            pq = faiss.ProductQuantizer(d, m, 8)
            pq.train(xr)
            t1 = time.perf_counter()
            xh = opq.reverse_transform(pq.decode(pq.compute_codes(xr)))
            yield xh, t1 - t0, time.perf_counter() - t1, f"{total} alternations"
    elif kind == "rq":
        q = faiss.ResidualQuantizer(d, m, 8)
        q.max_beam_size = args.rq_beam
        sample = x if args.rq_train <= 0 else \
            x[rng.choice(x.shape[0], min(args.rq_train, x.shape[0]), replace=False)]
        q.train(sample)
        t1 = time.perf_counter()
        yield q.decode(q.compute_codes(x)), t1 - t0, time.perf_counter() - t1, \
            f"trained on {sample.shape[0]} rows, beam {args.rq_beam}"
    elif kind == "lsq":
        sample = x[rng.choice(x.shape[0], min(args.lsq_train, x.shape[0]), replace=False)]
        for iters in [int(v) for v in args.lsq_iters.split(",")]:
            t0 = time.perf_counter()
            q = faiss.LocalSearchQuantizer(d, m, 8)
            q.train_iters = iters
            q.encode_ils_iters = args.lsq_ils
            q.verbose = args.lsq_verbose
            q.train(sample)
            q.verbose = False
            t1 = time.perf_counter()
            yield q.decode(q.compute_codes(x)), t1 - t0, time.perf_counter() - t1, \
                (f"trained on {sample.shape[0]} rows, {iters} iterations, "
                 f"{args.lsq_ils} ILS rounds to encode")
    else:
        raise ValueError(kind)


def recall_by_a(q, xh, r, truth, grid, block=250):
    """codes-only recall@10 of queries q for each a in grid: rank by ‖q − x̂‖² + a·r"""
    hn = (xh.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    hits = np.zeros(len(grid))
    for s in range(0, q.shape[0], block):
        base = hn[None, :] - 2.0 * (q[s:s + block] @ xh.T)   # ‖q‖² is the same for every row
        for i, a in enumerate(grid):
            sc = base + np.float32(a) * r[None, :]
            top = np.argpartition(sc, 10, axis=1)[:, :10]
            for j in range(top.shape[0]):
                hits[i] += len(np.intersect1d(top[j], truth[s + j, :10], assume_unique=True))
    return hits / (10 * q.shape[0])


def main():
    faiss.omp_set_num_threads(args.threads)
    ds = datasets.load("fashion-mnist")
    gt = datasets.ground_truth(ds, 100)
    x = ds.train
    n = x.shape[0]
    fit_q, fit_t = ds.test[:args.fit_queries], gt[:args.fit_queries]
    ev_q, ev_t = ds.test[5000:10000], gt[5000:10000]
    say(f"# Faiss {faiss.__version__} beside the distillation bench: {ds.name}, {n} rows")
    rows = []
    for m in [int(v) for v in args.m.split(",")]:
        for kind in args.kinds.split(","):
            for xh, train_s, enc_s, note in train_encode(kind, m, x):
                xh = np.ascontiguousarray(xh, dtype=np.float32)
                r = ((x - xh) ** 2).sum(axis=1).astype(np.float32)
                fit = recall_by_a(fit_q, xh, r, fit_t, A_GRID)
                best = A_GRID[int(np.argmax(fit))]
                ev = recall_by_a(ev_q, xh, r, ev_t, [0.0, best])
                # bytes: codes; + 1 with the term (PQ, OPQ: a byte; RQ, LSQ: the 4-byte norm
                # their fast search stores anyway carries it, as kdindex's AQ does)
                additive = kind in ("rq", "lsq")
                code_b = m + (4 if additive else 0)
                term_b = code_b if additive else m + 1
                row = dict(index=f"{kind.upper()}{m}", code_b=code_b, term_b=term_b, off=ev[0],
                           a=best, on=ev[1], fit0=fit[0], fitbest=fit.max(), mse=float(r.mean()),
                           train_s=train_s, enc_s=enc_s, note=note)
                rows.append(row)
                write_md(ds, n, rows, final=False)
                say(f"{row['index']}: {ev[0]:.4f} -> {ev[1]:.4f} with a = {best} "
                    f"(fit half {fit[0]:.4f} -> {fit.max():.4f}); MSE {row['mse']:.0f}; "
                    f"train {train_s:.0f} s, encode {enc_s:.0f} s; {note}")
    write_md(ds, n, rows, final=True)


def write_md(ds, n, rows, final):
    md = [f"# Faiss PQ / OPQ / RQ / LSQ beside the distillation bench: {ds.name}", "",
          f"{datetime.date.today()}, Faiss {faiss.__version__}, one thread, `test/bench/faiss_distill.py`. "
          f"Codes-only recall@10 of test images 5,000-9,999 against their exact top-10 over the "
          f"{n} training rows (the split of `make bench SUITE=distill`). Score ‖q − x̂‖² (term off) "
          f"or ‖q − x̂‖² + a·‖x − x̂‖² (term on, r exact), a picked in 0, 0.1, ..., 1 on test "
          f"images 0-{args.fit_queries - 1}. Bytes per row: the code (RQ and LSQ with the 4-byte "
          f"norm their look-up-table search needs, which also carries a·r, as kdindex's AQ does); "
          f"PQ and OPQ take one more byte for the term.", "",
          "| index | B/row off / on | term off | term on | a | fit half: off -> on | MSE ‖x − x̂‖² | train s | encode s | note |",
          "|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['index']} | {r['code_b']} / {r['term_b']} | {r['off']:.4f} | {r['on']:.4f} | "
                  f"{r['a']:.1f} | {r['fit0']:.4f} -> {r['fitbest']:.4f} | {r['mse']:.0f} | {r['train_s']:.0f} | "
                  f"{r['enc_s']:.0f} | {r['note']} |")
    if final:
        say("\n".join(md))
    if not args.no_commit_results:
        tag = f"m{args.m.replace(',', '-')}-{args.kinds.replace(',', '-')}"
        dest = os.path.join(HERE, "results", f"distill-faiss-{ds.name}-{tag}.md")
        with open(dest, "w") as f:
            f.write("\n".join(md) + "\n")
        if final:
            say(f"\nwritten: {dest}")


if __name__ == "__main__":
    main()
