#!/usr/bin/python3
"""Benchmark data sets for kdindex: loaders, exact ground truth, PostgreSQL bulk load.

A data set is a `Dataset(name, train, test, metric)`: float32 matrices (rows =
vectors) and a metric name ('l2', 'ip' or 'cosine').  `load(name)` returns one by
name; `ground_truth(ds, k)` returns the exact top-k neighbour ids of every test
vector among the train vectors (cached as .npy files); `load_table(conn, ...)`
copies a matrix into a table `(id int primary key, embedding real[])` with
COPY FROM STDIN.

Cached files live outside the repository in ${KDINDEX_CACHE:-/var/tmp/kdindex-cache}.

Only numpy and psycopg2 are needed (faiss is not).
"""

import gzip
import hashlib
import os
import struct
import time
from dataclasses import dataclass

import numpy as np

FASHION_MNIST_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")

METRICS = ("l2", "ip", "cosine")


def cache_dir():
    d = os.environ.get("KDINDEX_CACHE") or "/var/tmp/kdindex-cache"
    try:
        os.makedirs(d, exist_ok=True)
    except OSError:
        pass            # read-only / foreign cache: ground_truth() then just recomputes
    return d


@dataclass
class Dataset:
    name: str
    train: np.ndarray   # (n, d) float32, C-contiguous
    test: np.ndarray    # (nq, d) float32, C-contiguous
    metric: str = "l2"
    exact: str = "numpy"    # how ground_truth() computes it: 'numpy' or 'faiss' (IndexFlatL2)
    recipe: str = ""        # how it was made, for the report

    @property
    def dim(self):
        return self.train.shape[1]

    def __repr__(self):
        return (f"Dataset({self.name!r}, train={self.train.shape}, "
                f"test={self.test.shape}, metric={self.metric!r})")


# --------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST) reader

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=_IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {np.prod(shape)} values, found {arr.size}")
    return arr.reshape(shape)


def fashion_mnist(directory=FASHION_MNIST_DIR):
    """Fashion-MNIST as in ann-benchmarks' fashion-mnist-784-euclidean:
    raw pixel values 0..255 as float32, 60,000 train and 10,000 test vectors."""
    def images(stem):
        a = read_idx(os.path.join(directory, stem + "-images-idx3-ubyte.gz"))
        return np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=np.float32)
    return Dataset("fashion-mnist-784-euclidean", images("train"), images("t10k"), "l2")


def synthetic_gaussian(n=10000, nq=1000, dim=64, seed=0, metric="l2"):
    """Example synthetic set (i.i.d. Gaussian); more can be added alongside."""
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((n, dim), dtype=np.float32)
    test = rng.standard_normal((nq, dim), dtype=np.float32)
    return Dataset(f"gaussian-{dim}-{n}-{metric}-s{seed}", train, test, metric)


def _random_rotation(rng, d, amount=None):
    """A d x d orthogonal matrix: Haar-random (amount None), or a partial rotation
    close to the identity, QR of (I + amount * G / sqrt(d)) with signs fixed."""
    g = rng.standard_normal((d, d))
    if amount is not None:
        g = np.eye(d) + amount * g / np.sqrt(d)
    q, r = np.linalg.qr(g)
    return (q * np.sign(np.diag(r))[None, :]).astype(np.float32)


def _mixture(rng, n, centers, scales, rotations, assign_p=None, block=65536):
    """n draws of a Gaussian mixture: x = c_j + (z * s_j) @ R_(j mod len(R)),
    z ~ N(0, I), cluster j drawn with probabilities assign_p."""
    k, d = centers.shape
    labels = rng.choice(k, size=n, p=assign_p)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, block):
        lab = labels[s:s + block]
        z = rng.standard_normal((len(lab), d), dtype=np.float32) * scales[lab]
        x = np.empty_like(z)
        for r in range(len(rotations)):
            sel = (lab % len(rotations)) == r
            if sel.any():
                x[sel] = z[sel] @ rotations[r]
        out[s:s + block] = x + centers[lab]
    return out


def synthetic_mixture(n=1_000_000, nq=10_000, dim=128, clusters=None, seed=42, metric="l2"):
    """Seeded clustered Gaussian mixture with anisotropic covariance, for scale tests.

    `clusters` centres (default ~sqrt(n)/4, at least 16) drawn N(0, I) in `dim`
    dimensions; cluster sizes follow a Zipf-like law; within a cluster the
    standard deviation along direction i decays as (1 + i)^-0.6 (a few strong
    directions, a long tail, as in learned embeddings), jittered per cluster and
    rotated by one of 8 random rotations.  Queries are fresh draws from the same
    mixture (metric 'l2')."""
    rng = np.random.default_rng(seed)
    k = clusters or max(16, int(np.sqrt(n) / 4))
    centers = rng.standard_normal((k, dim)).astype(np.float32)
    spectrum = (1.0 + np.arange(dim)) ** -0.6
    scales = (0.6 * spectrum[None, :] *
              rng.lognormal(0.0, 0.25, size=(k, dim))).astype(np.float32)
    rotations = [_random_rotation(rng, dim) for _ in range(8)]
    p = 1.0 / (1.0 + np.arange(k)) ** 0.5
    p /= p.sum()
    train = _mixture(rng, n, centers, scales, rotations, p)
    test = _mixture(rng, nq, centers, scales, rotations, p)
    return Dataset(f"mixture-{metric}-{dim}d-{n}-s{seed}", train, test, metric)


def synthetic_asymmetric_ip(n=200_000, nq=10_000, dim=256, clusters=None, seed=7):
    """Seeded inner-product set whose queries come from another distribution than
    its rows, like queries and passages of text retrieval under a dual encoder.

    Rows ("documents"): an anisotropic Gaussian mixture as in synthetic_mixture,
    with norms varying by a log-normal factor (so inner product differs from cosine).
    Queries: a different mixture: centres are a random subset of the document
    centres passed through a partial random rotation plus a common offset, with
    tighter, differently shaped clusters and unit-scale norms; their covariance is
    rotated differently too.  Metric 'ip' (larger inner product = nearer)."""
    rng = np.random.default_rng(seed)
    k = clusters or max(16, int(np.sqrt(n) / 4))
    centers = rng.standard_normal((k, dim)).astype(np.float32) / np.sqrt(dim) * 4
    spectrum = (1.0 + np.arange(dim)) ** -0.5
    scales = (0.8 * spectrum[None, :] *
              rng.lognormal(0.0, 0.3, size=(k, dim))).astype(np.float32)
    rotations = [_random_rotation(rng, dim) for _ in range(8)]
    p = 1.0 / (1.0 + np.arange(k)) ** 0.5
    p /= p.sum()
    train = _mixture(rng, n, centers, scales, rotations, p)
    train *= rng.lognormal(0.0, 0.2, size=(n, 1)).astype(np.float32)
    # queries: shifted, partially rotated centres; other covariance shape and rotations
    kq = max(8, k // 2)
    qsel = rng.choice(k, size=kq, replace=False)
    shift = _random_rotation(rng, dim, amount=0.6)
    offset = rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim) * 1.5
    qcenters = centers[qsel] @ shift + offset
    qspectrum = (1.0 + np.arange(dim)) ** -0.3
    qscales = (1.0 * qspectrum[None, :] *
               rng.lognormal(0.0, 0.3, size=(kq, dim))).astype(np.float32)
    qrot = [_random_rotation(rng, dim) for _ in range(4)]
    test = _mixture(rng, nq, qcenters, qscales, qrot)
    test /= np.linalg.norm(test, axis=1, keepdims=True)
    return Dataset(f"asym-ip-{dim}d-{n}-s{seed}", train, test, "ip")


# --------------------------------------------------------------------------
# fmnist1m: 1M realistic vectors from Fashion-MNIST (augmentation + PCA)

FMNIST1M_VERSION = 1        # bump when the recipe below changes (names the cache files)
_SHIFT_P = np.array([0.1, 0.2, 0.4, 0.2, 0.1])     # dx, dy in -2..2


def _augment(rng, src, pool, n):
    """n augmented 28 x 28 images (float32, flattened): the images of `src` in
    order if it has n of them, else n random ones,
    mixed with probability 0.3 with a random image of `pool` (weight 0.1-0.4),
    shifted by dx, dy in -2..2 pixels (zero fill), its contrast scaled by
    0.85-1.15, Gaussian pixel noise (sigma 8 on the 0-255 scale), clipped to 0-255."""
    img = (src if src.shape[0] == n else src[rng.integers(0, src.shape[0], n)]).astype(np.float32)
    mix = rng.random(n) < 0.3
    lam = rng.uniform(0.1, 0.4, n).astype(np.float32)[mix, None, None]
    img[mix] = (1 - lam) * img[mix] + lam * pool[rng.integers(0, pool.shape[0], mix.sum())]
    dx = rng.choice(5, n, p=_SHIFT_P) - 2
    dy = rng.choice(5, n, p=_SHIFT_P) - 2
    out = np.zeros_like(img)
    for sy in range(-2, 3):
        for sx in range(-2, 3):
            sel = (dy == sy) & (dx == sx)
            if sel.any():
                out[sel, max(sy, 0):28 + min(sy, 0), max(sx, 0):28 + min(sx, 0)] = \
                    img[sel, max(-sy, 0):28 - max(sy, 0), max(-sx, 0):28 - max(sx, 0)]
    out *= rng.uniform(0.85, 1.15, n).astype(np.float32)[:, None, None]
    out += rng.normal(0.0, 8.0, out.shape).astype(np.float32)
    np.clip(out, 0, 255, out=out)
    return out.reshape(n, 784)


def _pca(x, dim):
    """(mean, components (784, dim)) of x, by the eigenvectors of its covariance,
    largest first, each with its largest-magnitude entry positive (a fixed sign)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    c = x - mean
    w, v = np.linalg.eigh(c.T @ c / len(x))
    v = v[:, np.argsort(w)[::-1][:dim]]
    v *= np.sign(v[np.abs(v).argmax(axis=0), np.arange(dim)])[None, :]
    return mean.astype(np.float32), v.astype(np.float32)


def _fmnist1m_generate(n, nq, dim, seed, block=50_000):
    fm = fashion_mnist()
    train_img = fm.train.reshape(-1, 28, 28)
    test_img = fm.test.reshape(-1, 28, 28)
    mean, comp = _pca(fm.train, dim)
    train = np.empty((n, dim), dtype=np.float32)
    for b, s in enumerate(range(0, n, block)):
        # one generator per block: the first n rows are the same whatever the total
        rng = np.random.default_rng([seed, 0, b])
        m = min(block, n - s)
        train[s:s + m] = (_augment(rng, train_img, train_img, m) - mean) @ comp
    return train, _fmnist1m_queries(nq, seed, test_img, mean, comp)


def _fmnist1m_queries(nq, seed, test_img, mean, comp):
    """nq distinct test images, each augmented once, mixed with test images; the
    images are a seeded permutation's first nq, whatever nq is"""
    rng = np.random.default_rng([seed, 1])
    held = test_img[rng.permutation(test_img.shape[0])[:nq]]
    test = (_augment(rng, held, test_img, nq) - mean) @ comp
    return np.ascontiguousarray(test, dtype=np.float32)


def fmnist1m_more_queries(nq, skip, dim=128, seed=1):
    """nq queries of fmnist1m made from the test images after the first `skip`
    of its permutation: none of them is an image the first `skip` queries were
    made from (distillation trains on these and measures on fmnist1m's own)."""
    fm = fashion_mnist()
    mean, comp = _pca(fm.train, dim)
    return _fmnist1m_queries(skip + nq, seed, fm.test.reshape(-1, 28, 28), mean, comp)[skip:]


def fmnist1m(n=1_000_000, nq=2000, dim=128, seed=1):
    """1,000,000 (n) vectors made from Fashion-MNIST by seeded augmentation of its
    60,000 training images (see _augment: mixing pairs, shifts of up to 2 pixels,
    contrast, pixel noise), reduced to `dim` dimensions by a PCA fitted on the
    60,000 original training images; nq queries made the same way from the 10,000
    TEST images only (held out: neither the images nor their mixing partners are
    in the rows).  Deterministic given the seed; the matrices are cached (a float32
    matmul's last bit may depend on the thread count, and the fingerprint must not)."""
    name = f"fmnist1m-v{FMNIST1M_VERSION}-pca{dim}-{n}-q{nq}-s{seed}"
    base = os.path.join(cache_dir(), name)
    try:
        train = np.load(base + "-train.npy")
        test = np.load(base + "-test.npy")
    except OSError:
        train, test = _fmnist1m_generate(n, nq, dim, seed)
        try:
            for path, arr in ((base + "-test.npy", test), (base + "-train.npy", train)):
                tmp = f"{path}.{os.getpid()}.tmp.npy"
                np.save(tmp, arr)
                os.replace(tmp, path)
        except OSError as e:
            print(f"note: {name} not cached ({e})")
    recipe = (f"{n:,} rows made from the 60,000 Fashion-MNIST training images by seeded "
              f"augmentation (seed {seed}): a random image, mixed with probability 0.3 with "
              "another (weight 0.1-0.4), shifted by -2..2 pixels in x and y (zero fill), "
              "contrast x0.85-1.15, Gaussian pixel noise sigma 8 (0-255 scale), clipped; "
              f"projected to {dim} dimensions by a PCA fitted on the 60,000 original training "
              f"images. {nq:,} queries: distinct TEST images, augmented the same way (mixed "
              "with test images only). Exact top-100 by Faiss IndexFlatL2. Generator: "
              "test/bench/datasets.py fmnist1m(); cached in KDINDEX_CACHE.")
    return Dataset(name, train, test, "l2", exact="faiss", recipe=recipe)


def synth_l2_128(n=1_000_000, **kw):
    return synthetic_mixture(n=n, dim=128, **kw)


def synth_l2_960(n=100_000, **kw):
    return synthetic_mixture(n=n, dim=960, **kw)


def synth_ip_256(n=200_000, **kw):
    return synthetic_asymmetric_ip(n=n, dim=256, **kw)


DATASETS = {
    "fashion-mnist": fashion_mnist,
    "fashion-mnist-784-euclidean": fashion_mnist,
    "gaussian": synthetic_gaussian,
    "synth-l2-128": synth_l2_128,      # scale suite: 1M x 128 L2 (n= to change)
    "synth-l2-960": synth_l2_960,      # scale suite: 100k x 960 L2
    "synth-ip-256": synth_ip_256,      # ip suite: 200k x 256, asymmetric queries
    "fmnist1m": fmnist1m,              # fmnist1m suite: 1M x 128 augmented Fashion-MNIST
}


def load(name, **kwargs):
    """Return a Dataset by name (see DATASETS)."""
    try:
        factory = DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return factory(**kwargs)


# --------------------------------------------------------------------------
# exact ground truth

def _fingerprint(ds):
    h = hashlib.sha1()
    for a in (ds.train, ds.test):
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).data)
    h.update(ds.metric.encode())
    return h.hexdigest()[:12]


def exact_knn(train, test, k, metric="l2", block=None):
    """Exact top-k ids (nq, k) int32 and distances (nq, k) float32, computed
    blockwise with numpy (float64 accumulation for L2 to keep ties honest).

    Distances: squared L2 for 'l2', negative inner product for 'ip',
    1 - cosine similarity for 'cosine'.  Ties are broken by smaller id."""
    train = np.asarray(train, dtype=np.float32)
    test = np.asarray(test, dtype=np.float32)
    n = train.shape[0]
    k = min(k, n)
    if block is None:     # keep the float64 distance block near 400 MB
        block = int(max(16, min(512, 5e7 // max(n, 1))))
    if metric == "cosine":
        tn = np.linalg.norm(train, axis=1, keepdims=True)
        train = train / np.where(tn == 0, 1, tn)
        qn = np.linalg.norm(test, axis=1, keepdims=True)
        test = test / np.where(qn == 0, 1, qn)
    elif metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    t64 = train.astype(np.float64)
    tnorm = (t64 * t64).sum(axis=1)
    ids = np.empty((test.shape[0], k), dtype=np.int32)
    dists = np.empty((test.shape[0], k), dtype=np.float32)
    for s in range(0, test.shape[0], block):
        q = test[s:s + block].astype(np.float64)
        ip = q @ t64.T
        if metric == "l2":
            d = tnorm[None, :] - 2.0 * ip + (q * q).sum(axis=1)[:, None]
            np.maximum(d, 0, out=d)
        elif metric == "ip":
            d = -ip
        else:
            d = 1.0 - ip
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n else \
            np.tile(np.arange(n), (d.shape[0], 1))
        pd = np.take_along_axis(d, part, axis=1)
        order = np.lexsort((part, pd), axis=1)   # by distance, then id
        ids[s:s + block] = np.take_along_axis(part, order, axis=1)
        dists[s:s + block] = np.take_along_axis(pd, order, axis=1)
    return ids, dists


def ground_truth(ds, k=100):
    """Exact top-k neighbour ids (nq, k) int32 of ds.test in ds.train, cached."""
    base = os.path.join(cache_dir(), f"{ds.name}-{_fingerprint(ds)}-gt{k}")
    ids_path, dist_path = base + "-ids.npy", base + "-dist.npy"
    if os.path.exists(ids_path):
        return np.load(ids_path)
    if ds.exact == "faiss" and ds.metric == "l2":
        import faiss
        index = faiss.IndexFlatL2(ds.dim)
        index.add(ds.train)
        dists, ids = index.search(ds.test, k)
        ids = ids.astype(np.int32)
    else:
        ids, dists = exact_knn(ds.train, ds.test, k, ds.metric)
    # write atomically so concurrent runs never read half a file
    try:
        for path, arr in ((dist_path, dists), (ids_path, ids)):
            tmp = f"{path}.{os.getpid()}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, path)
    except OSError as e:
        print(f"note: ground truth not cached ({e})")
    return ids


def recall(found, truth, k):
    """Mean recall@k: |found[:, :k] ∩ truth[:, :k]| / k over queries.
    `found` may be a list of lists of varying length (short results count as misses)."""
    total = 0
    for f, t in zip(found, truth):
        total += len(set(list(f)[:k]) & set(t[:k].tolist()))
    return total / (k * len(truth))


# --------------------------------------------------------------------------
# PostgreSQL

def pg_array_text(row):
    """One vector as a PostgreSQL array literal '{...}' that reads back as the same float4s."""
    return "{" + ",".join(_fmt32(v) for v in np.asarray(row, dtype=np.float32).tolist()) + "}"


def _copy_lines(data, start_id, batch):
    """Yield COPY text chunks of `batch` rows: 'id\t{v,v,...}\n'."""
    integral = bool(np.all(np.mod(data, 1) == 0)) and np.all(np.abs(data) < 2**24)
    for s in range(0, data.shape[0], batch):
        block = data[s:s + batch]
        if integral:
            rows = block.astype(np.int64).tolist()
            lines = [f"{start_id + s + i}\t{{{','.join(map(str, r))}}}\n"
                     for i, r in enumerate(rows)]
        else:
            # float32 -> shortest repr that round-trips through float4 input
            rows = block.astype(np.float32).tolist()   # python floats (exact float32 values)
            lines = [f"{start_id + s + i}\t{{{','.join(_fmt32(v) for v in r)}}}\n"
                     for i, r in enumerate(rows)]
        yield "".join(lines)


def _fmt32(v):
    s = repr(v)
    # '%.9g' always round-trips float32; use the shorter one when it also does
    short = f"{v:.9g}"
    if len(short) < len(s):
        s = short
    return s[:-2] if s.endswith(".0") else s


class ChunkReader:
    """File-like object over an iterator of str (COPY text) or bytes (COPY BINARY,
    empty=b"") chunks, for cursor.copy_expert."""

    def __init__(self, chunks, empty=""):
        self._chunks = iter(chunks)
        self._buf = empty

    def readable(self):
        return True

    def read(self, size=-1):
        while size < 0 or len(self._buf) < size:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            size = len(self._buf)
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self, size=-1):
        return self.read(size)


def table_rows(conn, table):
    """Row count of `table`, or None if it does not exist."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        if not cur.fetchone()[0]:
            return None
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def copy_binary(data, batch=20000):
    """Yield COPY BINARY chunks of (id int, embedding real[]) rows, ids 0..n-1: the
    float4 values go over as they are (no text formatting, ~20x faster in Python)."""
    n, d = data.shape
    yield b"PGCOPY\n\xff\r\n\0" + struct.pack(">ii", 0, 0)
    # per row: field count, id (len 4 + int4), array (len + ndim, hasnull, element
    # type float4 = 700, dim, lower bound 1, then len 4 + float4 per element)
    alen = 20 + 8 * d
    row = np.dtype([("nf", ">i2"), ("il", ">i4"), ("id", ">i4"), ("al", ">i4"),
                    ("hdr", ">i4", 5), ("el", [("len", ">i4"), ("v", ">f4")], d)])
    for s in range(0, n, batch):
        m = min(batch, n - s)
        rec = np.empty(m, dtype=row)
        rec["nf"], rec["il"], rec["al"] = 2, 4, alen
        rec["id"] = np.arange(s, s + m)
        rec["hdr"] = (1, 0, 700, d, 1)
        rec["el"]["len"] = 4
        rec["el"]["v"] = data[s:s + m]
        yield rec.tobytes()
    yield struct.pack(">h", -1)


def load_table(conn, table, data, drop=True, id_type="int", batch=2000, unlogged=False,
               analyze=True, verbose=False, binary=False, storage=None):
    """Create `table (id <id_type> primary key, embedding real[])` and fill it with
    the rows of `data` (ids 0..n-1 = row index) by COPY FROM STDIN (binary = COPY
    BINARY, id_type int only; storage: the column's SET STORAGE).
    The primary key is added after the copy (faster).  Commits.  Returns seconds."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError("data must be a 2-D matrix")
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        if drop:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {table} "
                    f"(id {id_type} NOT NULL, embedding real[])")
        if storage:   # before the rows arrive: it applies to rows stored afterwards
            cur.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE {storage}")
        if binary:
            cur.copy_expert(f"COPY {table} (id, embedding) FROM STDIN (FORMAT binary)",
                            ChunkReader(copy_binary(data), b""), size=1 << 20)
        else:
            cur.copy_expert(f"COPY {table} (id, embedding) FROM STDIN",
                            ChunkReader(_copy_lines(data, 0, batch)), size=1 << 20)
        cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    conn.commit()
    if analyze:
        old = conn.autocommit
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {table}")
        conn.autocommit = old
    secs = time.perf_counter() - t0
    if verbose:
        print(f"loaded {data.shape[0]} rows x {data.shape[1]} dims into {table} in {secs:.1f} s")
    return secs


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="load a data set and compute/cache its ground truth")
    ap.add_argument("name", nargs="?", default="fashion-mnist")
    ap.add_argument("-k", type=int, default=100)
    ap.add_argument("--rows", type=int, default=0, help="rows of a synthetic set (0 = its default)")
    a = ap.parse_args()
    t = time.perf_counter()
    ds = load(a.name, **({"n": a.rows} if a.rows else {}))
    print(ds, f"loaded in {time.perf_counter() - t:.2f} s")
    t = time.perf_counter()
    gt = ground_truth(ds, a.k)
    print(f"ground truth {gt.shape} in {time.perf_counter() - t:.2f} s (cache: {cache_dir()})")
