#!/usr/bin/python3
"""Faiss peers for the kdindex benchmark (bench.py), one thread, same queries.

Codes-only quantizers at a given number of bytes per vector (M sub-quantizers /
codebooks of 8 bits each):

    PQ<M>    IndexPQ(d, M, 8)
    OPQ<M>   IndexPreTransform(OPQMatrix(d, M), IndexPQ(d, M, 8))
    RQ<M>    IndexResidualQuantizer(d, M, 8), beam search (max_beam_size 8); under L2
             the squared norm of each reconstruction is stored as a float
             (ST_norm_float): +4 bytes per vector
    LSQ<M>   IndexLocalSearchQuantizer(d, M, 8), same norm storage as RQ

and IVF-PQ with exact refinement (the Faiss analogue of kdindex's re-rank):

    IVF<L>,PQ<M>+refine   IndexRefineFlat(IndexIVFPQ(flat coarse quantizer, d, L, M, 8)),
                          swept over nprobe x k_factor

Training is slow for some of these (OPQ16 / RQ16 take ~12 minutes each on one thread
on 60,000 x 784), so every trained index is cached in the cache directory
(${KDINDEX_CACHE:-/var/tmp/kdindex-cache}/faiss) under a key made of the data set's
fingerprint, the index spec, the training-sample size and the Faiss version, along
with its measured train and add seconds.  Only the first run pays; later runs load
the index and measure recall (identical, same codes) and QPS (fresh) again.

OPENBLAS_NUM_THREADS / OMP_NUM_THREADS must be set to 1 before numpy or faiss is
imported (bench.py does that first thing); this module checks and warns.
"""

import json
import os
import re
import time

import numpy as np

import datasets

try:
    import faiss
except ImportError:          # pragma: no cover - reported by bench.py
    faiss = None

FAISS_CACHE_VERSION = 1      # bump when the way an index is built changes


def available():
    return faiss is not None


def version():
    return faiss.__version__ if faiss is not None else None


def _metric(ds):
    if ds.metric == "l2":
        return faiss.METRIC_L2
    if ds.metric == "ip":
        return faiss.METRIC_INNER_PRODUCT
    raise ValueError(f"faiss peers: metric {ds.metric!r} not supported here")


SPEC_RE = re.compile(r"^(PQ|OPQ|RQ|LSQ)(\d+)$|^IVF(\d+),PQ(\d+)\+refine$")


def parse_spec(spec):
    m = SPEC_RE.match(spec)
    if not m:
        raise ValueError(f"unknown faiss spec {spec!r} (PQ<M>, OPQ<M>, RQ<M>, LSQ<M>, "
                         f"IVF<L>,PQ<M>+refine)")
    if m.group(1):
        return m.group(1), int(m.group(2)), None
    return "IVFPQR", int(m.group(4)), int(m.group(3))


def make_index(spec, d, metric):
    kind, M, nlist = parse_spec(spec)
    if kind == "PQ":
        return faiss.IndexPQ(d, M, 8, metric)
    if kind == "OPQ":
        if d % M:
            raise ValueError(f"OPQ{M}: dimension {d} not divisible by {M}")
        return faiss.IndexPreTransform(faiss.OPQMatrix(d, M), faiss.IndexPQ(d, M, 8, metric))
    if kind in ("RQ", "LSQ"):
        st = (faiss.AdditiveQuantizer.ST_norm_float if metric == faiss.METRIC_L2
              else faiss.AdditiveQuantizer.ST_LUT_nonorm)
        if kind == "RQ":
            idx = faiss.IndexResidualQuantizer(d, M, 8, metric, st)
            idx.rq.max_beam_size = 8
        else:
            idx = faiss.IndexLocalSearchQuantizer(d, M, 8, metric, st)
        return idx
    # IVF-PQ; the refine wrapper is added after loading (its flat store is not cached)
    coarse = faiss.IndexFlatL2(d) if metric == faiss.METRIC_L2 else faiss.IndexFlatIP(d)
    idx = faiss.IndexIVFPQ(coarse, d, nlist, M, 8, metric)
    idx.own_fields = True
    coarse.this.disown()
    return idx


def code_bytes(index):
    """Bytes stored per vector by a (codes-only) index."""
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    return int(base.sa_code_size()) if hasattr(base, "sa_code_size") else None


def _train_sample(ds, max_train, seed=1234):
    n = ds.train.shape[0]
    if max_train <= 0 or n <= max_train:
        return ds.train
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(n, size=max_train, replace=False))
    return np.ascontiguousarray(ds.train[sel])


def _cache_paths(ds, spec, max_train):
    ntrain = min(ds.train.shape[0], max_train) if max_train > 0 else ds.train.shape[0]
    key = (f"{ds.name}-{datasets._fingerprint(ds)}-{spec.replace(',', '_').replace('+', '_')}"
           f"-t{ntrain}-faiss{faiss.__version__}-v{FAISS_CACHE_VERSION}")
    cdir = os.path.join(datasets.cache_dir(), "faiss")
    return ntrain, cdir, os.path.join(cdir, key + ".faissindex"), os.path.join(cdir, key + ".json")


def is_cached(ds, spec, max_train):
    _, _, path, meta_path = _cache_paths(ds, spec, max_train)
    return os.path.exists(path) and os.path.exists(meta_path)


def trained_index(ds, spec, max_train, log=print):
    """Return (index with all train rows added, meta dict) from the cache or by training."""
    d = ds.dim
    ntrain, cdir, path, meta_path = _cache_paths(ds, spec, max_train)
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        index = faiss.read_index(path)
        meta["cached"] = True
        return index, meta
    log(f"  faiss {spec}: training on {ntrain} rows (not cached yet; slow ones take minutes) ...")
    index = make_index(spec, d, _metric(ds))
    xt = _train_sample(ds, max_train)
    t0 = time.perf_counter()
    index.train(xt)
    t1 = time.perf_counter()
    index.add(ds.train)
    t2 = time.perf_counter()
    meta = {"spec": spec, "train_s": t1 - t0, "add_s": t2 - t1, "train_rows": int(xt.shape[0]),
            "faiss": faiss.__version__, "threads": faiss.omp_get_max_threads()}
    try:
        os.makedirs(cdir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        faiss.write_index(index, tmp)
        os.replace(tmp, path)
        tmp = f"{meta_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, meta_path)
    except OSError as e:
        log(f"  note: faiss index not cached ({e})")
    meta["cached"] = False
    return index, meta


def time_queries(index, xq, k, reps, warmup=20):
    """One query per search() call, like one client: per-rep QPS and pooled latencies (ms)."""
    for i in range(min(warmup, len(xq))):
        index.search(xq[i:i + 1], k)
    qps, lats = [], []
    for _ in range(reps):
        lat = np.empty(len(xq))
        for i in range(len(xq)):
            t = time.perf_counter()
            index.search(xq[i:i + 1], k)
            lat[i] = time.perf_counter() - t
        qps.append(len(xq) / lat.sum())
        lats.append(lat * 1000.0)
    return qps, np.concatenate(lats)


def run(ds, gt, specs, ivf_sweep, k, recall_queries, time_queries_n, reps, max_train,
        log=print, cached_only=False, train_slow=True, notice=print):
    """Measure every spec; returns a list of result dicts (see bench.py for the fields)."""
    faiss.omp_set_num_threads(1)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var) != "1":
            log(f"  WARNING: {var} is not 1: Faiss/BLAS timings may use several threads")
    xq_r = ds.test[:recall_queries]
    xq_t = ds.test[:time_queries_n]
    out = []
    for spec in specs:
        kind, M, nlist = parse_spec(spec)
        if cached_only and not is_cached(ds, spec, max_train):
            notice(f"faiss {spec}: not in the cache yet and --faiss-cached-only given: skipped")
            continue
        if not train_slow and kind in ("OPQ", "RQ", "LSQ") and not is_cached(ds, spec, max_train):
            notice(f"faiss {spec}: not in the cache yet; its training takes up to hours on one "
                   f"thread, so it is skipped (train it once with --faiss-train-missing)")
            continue
        try:
            index, meta = trained_index(ds, spec, max_train, log)
        except Exception as e:  # noqa: BLE001 - a peer failing must not stop the run
            log(f"  faiss {spec}: FAILED: {type(e).__name__}: {e}")
            continue
        base = dict(family="faiss", method=f"faiss {kind}" if kind != "IVFPQR" else
                    "faiss IVF-PQ+refine", config=spec, train_s=meta["train_s"],
                    build_s=meta["train_s"] + meta["add_s"], cached=meta["cached"])
        try:
            ser = int(faiss.serialize_index(index).nbytes)   # codes + codebooks (+ IVF lists)
        except Exception:  # noqa: BLE001
            ser = None
        if kind != "IVFPQR":
            cb = code_bytes(index)
            _, ids = index.search(xq_r, k)
            r = datasets.recall(ids, gt[:len(xq_r)], k)
            qps, lat = time_queries(index, xq_t, k, reps)
            n = ds.train.shape[0]
            out.append(dict(base, param="codes only", rerank=0, bytes_per_vec=cb,
                            index_bytes=ser, bytes_per_row=ser / n if ser else None, recall=r,
                            recall_queries=len(xq_r), qps=qps, lat=lat,
                            time_queries=len(xq_t)))
            log(f"  faiss {spec}: {cb} B/vector, recall@{k} {r:.4f}, "
                f"QPS {np.median(qps):.0f}, train {meta['train_s']:.1f} s"
                f"{' (cached)' if meta['cached'] else ''}")
            continue
        # IVF-PQ + exact refinement
        ivf = index
        t0 = time.perf_counter()
        # the (cached) IVF-PQ already holds the rows: give the refine store the same rows
        xb = np.ascontiguousarray(ds.train, dtype=np.float32)
        refine = faiss.IndexRefineFlat(ivf, faiss.swig_ptr(xb))
        refine_add_s = time.perf_counter() - t0
        cb = code_bytes(ivf)
        # IVF-PQ (serialized) plus the float32 copy the refinement reads
        ser = ser + xb.nbytes if ser else None
        for nprobe in ivf_sweep[0]:
            for kf in ivf_sweep[1]:
                ivf.nprobe = nprobe
                refine.k_factor = kf
                _, ids = refine.search(xq_r, k)
                r = datasets.recall(ids, gt[:len(xq_r)], k)
                qps, lat = time_queries(refine, xq_t, k, reps)
                out.append(dict(base, param=f"nprobe={nprobe} k_factor={kf:g}",
                                nprobe=nprobe, k_factor=kf, rerank=int(round(kf * k)),
                                bytes_per_vec=cb, index_bytes=ser,
                                bytes_per_row=ser / ds.train.shape[0] if ser else None,
                                recall=r, recall_queries=len(xq_r), qps=qps, lat=lat,
                                time_queries=len(xq_t), refine_add_s=refine_add_s))
                log(f"  faiss {spec} nprobe={nprobe} k_factor={kf:g}: recall@{k} {r:.4f}, "
                    f"QPS {np.median(qps):.0f}")
        del refine
    return out


if __name__ == "__main__":
    # Warm the cache: `bench_faiss.py fashion-mnist PQ8 OPQ16 ...` (bench.py does the same
    # on demand; this only lets the slow trainings run ahead, e.g. in the background).
    import sys
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    faiss.omp_set_num_threads(1)
    name, specs = sys.argv[1], sys.argv[2:]
    ds = datasets.load(name)
    for s in specs:
        t = time.perf_counter()
        _, meta = trained_index(ds, s, 65536)
        print(f"{s}: train {meta['train_s']:.1f} s add {meta['add_s']:.1f} s "
              f"cached={meta['cached']} ({time.perf_counter() - t:.1f} s)", flush=True)
