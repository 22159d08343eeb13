"""Paired rounds for bench.py (`--rounds R`, the fmnist1m suite's default).

Every index is built first and kept: the kdindex configs on the real[] table, pgvector
HNSW and IVFFlat on its vector copy, and (for the codes-only throughput) Faiss
IndexPQ in-process.  Then R rounds: in each round every sweep point is timed once
(one pass over the same --queries test vectors, one query at a time), one point after
the other (round 1 in the listed order, later rounds in a seeded random order), so
that every point sees the machine's load of that round.  QPS of a
point = median over rounds; a ratio between two points is taken per round and its
median reported, so the load of this shared machine cancels out of the ratios.

Which index answers: the table holds several indexes of the same column, so each
pass runs in a transaction that drops the table's other vector indexes, sets the
point's settings (SET LOCAL), prepares `SELECT id FROM t ORDER BY embedding <op> $1
LIMIT 10`, runs an untimed warm-up and the timed pass, and rolls back: the drops
never reach the disk, and the plan is checked to use the intended index (round 1).

Codes-only throughput: the flat kdindex configs (one list) at kdindex.rerank = 0 scan
every code of every row per query; rows scanned per second = QPS x rows.  Faiss
IndexPQ of the same m and nbits, trained on the same number of sampled rows, one
thread, one search() call per query, is timed in the same rounds.
"""

import os
import re
import time

import numpy as np
import psycopg2

import datasets

from buildcpu import BuildCPU

try:
    import bench_faiss
    import faiss
except Exception:  # noqa: BLE001
    bench_faiss = faiss = None

B = None          # the bench module (say, notice, result, prepare, fmt_table, ...)
LOADS = []        # 1-minute load average at the end of each round
CPU = {}          # index -> (CPU seconds of the build's backend + workers, (load at start, end))


def kd_config(cfg):
    """'quantizer:m[:nbits[:lists[:refine]]]' -> (label, WITH clause, quantizer, m, nbits,
    lists, refine)."""
    parts = cfg.split(":")
    quant, m = parts[0], int(parts[1])
    nbits = int(parts[2]) if len(parts) > 2 and parts[2] else 8
    lists = int(parts[3]) if len(parts) > 3 and parts[3] else 0
    refine = int(parts[4]) if len(parts) > 4 and parts[4] else 0
    label = f"{quant.upper()}{m}" + ("" if nbits == 8 else f"x{nbits}") + \
        (f" IVF{lists}" if lists else " flat") + (f" refine {refine}" if refine else "")
    with_ = f"quantizer = '{quant}', m = {m}, nbits = {nbits}" + \
        (f", lists = {lists}" if lists else "") + (f", refine = {refine}" if refine else "")
    return label, with_, quant, m, nbits, lists, refine


def build(cur, a, idx, sql, tag):
    """CREATE INDEX, or with --reuse-indexes keep an index built by an earlier run with
    the same statement (its build seconds are kept in the index comment).
    Returns build seconds, or None on failure (with a notice)."""
    if a.reuse_indexes:
        cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (idx,))
        row = cur.fetchone()
        if row and row[0] and row[0].startswith(sql + " -- "):
            note = row[0][len(sql) + 4:]
            secs = float(re.search(r"build_s=([0-9.]+)", note).group(1))
            cpu = re.search(r"cpu_s=([0-9.]+) load=([0-9.]+)-([0-9.]+)", note)
            if cpu:
                CPU[idx] = (float(cpu.group(1)), (float(cpu.group(2)), float(cpu.group(3))))
            B.say(f"{tag}: reusing {idx} (built in {secs:.1f} s by an earlier run)")
            return secs
    cur.execute(f"DROP INDEX IF EXISTS {idx}")
    B.say(f"{tag}: {sql}")
    cur.execute("SELECT pg_backend_pid()")
    t = time.perf_counter()
    try:
        with BuildCPU(cur.fetchone()[0]) as c:
            cur.execute(sql)
    except psycopg2.Error as e:
        B.notice(f"{tag}: build failed after {time.perf_counter() - t:.0f} s: "
                 f"{e.pgcode} {str(e).strip()}")
        return None
    secs = time.perf_counter() - t
    note = f"{sql} -- build_s={secs:.3f}"
    if c.cpu_s is not None:
        CPU[idx] = (c.cpu_s, c.load)
        note += f" cpu_s={c.cpu_s:.1f} load={c.load[0]:.1f}-{c.load[1]:.1f}"
        B.say(f"  CPU {c.cpu_s:.1f} s (backend + parallel workers), load average "
              f"{c.load[0]:.1f} -> {c.load[1]:.1f}")
    cur.execute(f"COMMENT ON INDEX {idx} IS %s", (note,))
    return secs


def pgvector_builds(a, ds, vtable, cur=None):
    """pgvector HNSW and IVFFlat on vtable (on a new connection unless cur is given).
    Returns (points, build results, index names)."""
    own = cur is None
    if own:
        conn = psycopg2.connect("")
        conn.autocommit = True
        cur = conn.cursor()
    vopclass = B.OPS[ds.metric][2]
    n = ds.train.shape[0]
    mpw = B.current_mpw(cur)
    points, builds, names = [], [], []
    lists = a.ivf_lists or max(1, int(round(np.sqrt(n))))
    kinds = []
    if "hnsw" not in a.skip:
        kinds.append(("HNSW", "hnsw", "m = 16, ef_construction = 64", "hnsw.ef_search",
                      B.ints(a.hnsw_ef), "m16 efc64"))
    if "ivfflat" not in a.skip:
        kinds.append(("IVFFlat", "ivfflat", f"lists = {lists}", "ivfflat.probes",
                      B.ints(a.ivf_probes), f"lists{lists}"))
    for name, am, with_, guc, sweep, cfg in kinds:
        idx = f"{vtable}_{am}"
        sql = f"CREATE INDEX {idx} ON {vtable} USING {am} (embedding {vopclass}) WITH ({with_})"
        secs = build(cur, a, idx, sql, f"pgvector {name}")
        if secs is None:
            continue
        size = B.rel_size(cur, idx)
        B.say(f"  built in {secs:.1f} s, {size / 2**20:.1f} MB, {size / n:.0f} B/row")
        common = dict(family="pgvector", method=f"pgvector {name}", config=cfg,
                      index_bytes=size, bytes_per_row=size / n, build_s=secs)
        builds.append(B.result(**common, kind="build", param=f"mpw={mpw}", rows=n, mpw=mpw,
                               with_=with_, cpu=CPU.get(idx)))
        names.append(idx)
        for v in sweep:
            points.append(dict(common, idx=idx, table=vtable, argtype="vector",
                               sets=[f"SET LOCAL {guc} = {v}"],
                               param=f"{guc.split('.')[1]}={v}"))
    if own:
        conn.close()
    return points, builds, names


def build_all(cur, a, ds, table, vtable, kd_cfgs, pgvector_ok):
    """Build every index; returns (points, build results, {table: [index names]})."""
    opclass = B.OPS[ds.metric][1]
    n = ds.train.shape[0]
    points, builds, on_table = [], [], {table: [], vtable: []}
    mpw = B.current_mpw(cur)
    if pgvector_ok:
        # --concurrent-builds: pgvector's builds run on a second connection beside
        # kdindex's (on this shared machine one more process barely changes each
        # one's share of the CPU, and the whole run gets much shorter)
        if a.concurrent_builds:
            import threading
            box = {}
            thread = threading.Thread(target=lambda: box.update(r=pgvector_builds(a, ds, vtable)))
            thread.start()
        else:
            pg = pgvector_builds(a, ds, vtable, cur)
    for i, cfg in enumerate(kd_cfgs):
        label, with_, quant, m, nbits, lists, refine = kd_config(cfg)
        idx = f"{table}_kd{i}"
        sql = f"CREATE INDEX {idx} ON {table} USING kdindex (embedding {opclass}) WITH ({with_})"
        secs = build(cur, a, idx, sql, f"kdindex {label}")
        if secs is None:
            continue
        cur.execute("SELECT * FROM kdindex_info(%s)", (idx,))
        info = dict(zip([d[0] for d in cur.description], cur.fetchone()))
        size = B.rel_size(cur, idx)
        B.say(f"  built in {secs:.1f} s (train {info['train_seconds']:.1f} s on "
              f"{info['train_rows']} rows), {size / 2**20:.1f} MB, {size / n:.1f} B/row")
        common = dict(family="kdindex", method=f"kdindex {quant.upper()}", config=label,
                      bytes_per_vec=info["code_bytes"], index_bytes=size, bytes_per_row=size / n,
                      build_s=secs, train_s=info["train_seconds"])
        builds.append(B.result(**common, kind="build", param=f"mpw={mpw}", rows=n, mpw=mpw,
                               with_=with_, cpu=CPU.get(idx)))
        on_table[table].append(idx)
        probes = [p for p in B.ints(a.kd_probes) if p <= lists] if lists else [None]
        for pr in probes:
            for rr in B.ints(a.rerank if not lists else a.ivf_rerank):
                for margin in [x.strip() for x in a.kd_margin.split(",") if x.strip()]:
                    if rr == 0 and float(margin) != 0:
                        continue    # nothing is re-ranked: the margin changes nothing
                    # with refine: each kdindex.refine_rerank below the rerank depth
                    depths = [d for d in B.ints(a.refine_rerank) if d < rr] if refine else [None]
                    for depth in depths:
                        sets = [f"SET LOCAL kdindex.rerank = {rr}"] + \
                            ([f"SET LOCAL kdindex.probes = {pr}"] if pr else []) + \
                            ([f"SET LOCAL kdindex.rerank_margin = {margin}"] if float(margin) else []) + \
                            ([f"SET LOCAL kdindex.refine_rerank = {depth}"] if depth else [])
                        param = (f"probes={pr} " if pr else "") + f"rerank={rr}" + \
                            (f" margin={margin}" if float(margin) else "") + \
                            (f" refine_rerank={depth}" if depth else "")
                        points.append(dict(common, idx=idx, table=table, argtype="real[]",
                                           sets=sets, param=param, rerank=rr, probes=pr,
                                           nbits=nbits, m=m, lists=lists))
    if pgvector_ok:
        if a.concurrent_builds:
            thread.join()
            pg = box.get("r", ([], [], []))
        points += pg[0]
        builds += pg[1]
        on_table[vtable] += pg[2]
    cur.execute(f"ANALYZE {table}")
    if pgvector_ok:
        cur.execute(f"ANALYZE {vtable}")
    return points, builds, on_table


def faiss_points(a, ds, points):
    """Faiss IndexPQ beside each flat kdindex PQ config timed at rerank 0."""
    if faiss is None or "faiss" in a.skip:
        return []
    faiss.omp_set_num_threads(1)
    out, seen = [], set()
    for p in points:
        if p["family"] != "kdindex" or p["lists"] or p["rerank"] != 0 or \
                (p["m"], p["nbits"]) in seen:
            continue
        seen.add((p["m"], p["nbits"]))
        if p["nbits"] != 8:
            continue
        index, meta = bench_faiss.trained_index(ds, f"PQ{p['m']}", a.faiss_train, log=B.say)
        B.say(f"faiss IndexPQ(d={ds.dim}, M={p['m']}, nbits=8): trained on {meta['train_rows']} "
              f"rows in {meta['train_s']:.1f} s, {ds.train.shape[0]} rows added in "
              f"{meta['add_s']:.1f} s" + (" (cached)" if meta["cached"] else ""))
        out.append(dict(family="faiss", method="faiss PQ", config=f"PQ{p['m']}", param="codes only",
                        faiss=index, m=p["m"], nbits=8, bytes_per_vec=bench_faiss.code_bytes(index),
                        index_bytes=bench_faiss.code_bytes(index) * ds.train.shape[0],
                        bytes_per_row=float(bench_faiss.code_bytes(index)),
                        build_s=meta["train_s"] + meta["add_s"], train_s=meta["train_s"],
                        rerank=0, probes=None, lists=0))
    return out


def sql_pass(cur, p, qargs, warmup, drop, check):
    """One timed pass of point p (see the module comment); returns (ids, latencies s)."""
    cur.execute("DEALLOCATE ALL")
    cur.execute("BEGIN")
    try:
        for idx in drop:
            cur.execute(f"DROP INDEX {idx}")
        for s in p["sets"]:
            cur.execute(s)
        cur.execute(f"PREPARE knn({p['argtype']}) AS SELECT id FROM {p['table']} "
                    f"ORDER BY embedding {p['op']} $1 LIMIT {B.K}")
        if check:
            plan = B.plan_lines(cur, qargs[0])
            if not any(p["idx"] in x for x in plan):
                B.notice(f"{p['method']} {p['config']} {p['param']}: plan does not use "
                         f"{p['idx']}: {B.short_plan(plan)}")
        found, _, lat_ms, _ = B.run_sql_point(cur, qargs, 1, warmup)
    finally:
        cur.execute("ROLLBACK")
        cur.execute("DEALLOCATE ALL")
    return found, lat_ms / 1000.0


def faiss_pass(p, xq, warmup):
    index = p["faiss"]
    for i in range(min(warmup, len(xq))):
        index.search(xq[i:i + 1], B.K)
    lat = np.empty(len(xq))
    found = []
    for i in range(len(xq)):
        t = time.perf_counter()
        _, ids = index.search(xq[i:i + 1], B.K)
        lat[i] = time.perf_counter() - t
        found.append(ids[0].tolist())
    return found, lat


def run(bench, cur, a, ds, gt, table, vtable, kd_cfgs, pgvector_ok, qtexts, vtexts):
    """Build everything, then --rounds rounds over every point.  Returns result dicts
    (kind None for the sweep points, 'build' for builds; each point has per-round
    QPS in 'qps', so ratios can be taken round by round)."""
    global B
    B = bench
    nq = len(qtexts)
    op = B.OPS[ds.metric][0]
    points, builds, on_table = build_all(cur, a, ds, table, vtable, kd_cfgs, pgvector_ok)
    points += faiss_points(a, ds, points)
    for p in points:
        p.update(op=op, qps=[], lat=[], ids=None, same=True)
    xq = ds.test[:nq]
    warm = min(a.warmup, 20)
    B.say(f"\npaired rounds: {len(points)} points x {a.rounds} rounds x {nq} queries "
          f"(+{warm} warm-up queries per pass)")
    for rnd in range(a.rounds):
        t_round = time.perf_counter()
        # round 1 in the listed order (readable log); later rounds in a seeded random
        # order, so that no point is always timed at the same place in a round
        order = np.arange(len(points)) if rnd == 0 else \
            np.random.default_rng(rnd).permutation(len(points))
        for p in (points[i] for i in order):
            if p.get("failed"):      # once failed, out of the rounds (ratios need all)
                continue
            try:
                if "faiss" in p:
                    ids, lat = faiss_pass(p, xq, warm)
                else:
                    drop = [i for i in on_table[p["table"]] if i != p["idx"]]
                    ids, lat = sql_pass(cur, p, qtexts if p["argtype"] == "real[]" else vtexts,
                                        warm, drop, rnd == 0)
            except psycopg2.Error as e:
                B.notice(f"{p['method']} {p['config']} {p['param']}: failed: {e.pgcode} "
                         f"{str(e).strip()}")
                p["failed"] = True
                continue
            if p["ids"] is None:
                p["ids"] = ids
                p["recall"] = datasets.recall(ids, gt[:nq], B.K)
            elif ids != p["ids"]:
                p["same"] = False
            p["qps"].append(nq / lat.sum())
            p["lat"].append(lat * 1000.0)
            if rnd == 0:
                B.say(f"  {p['method']:<18s} {p['config']:<16s} {p['param']:<22s} "
                      f"recall@{B.K} {p['recall']:.4f}  QPS {p['qps'][-1]:8.1f}")
        LOADS.append(os.getloadavg()[0])
        B.say(f"round {rnd + 1}/{a.rounds} done in {time.perf_counter() - t_round:.0f} s "
              f"(load average {LOADS[-1]:.1f} on {os.cpu_count()} cores)")
    out = list(builds)
    for p in points:
        if p.get("failed") or not p["qps"]:
            continue
        if not p["same"]:
            B.notice(f"{p['method']} {p['config']} {p['param']}: results differ between rounds "
                     "(recall is round 1's)")
        short = sum(1 for x in p["ids"] if len(x) < B.K)
        if short:
            B.notice(f"{p['method']} {p['config']} {p['param']}: {short} of {nq} queries "
                     f"returned fewer than {B.K} rows")
        keep = {k: v for k, v in p.items() if k in B.result()}
        keep.update(lat=np.concatenate(p["lat"]), recall_queries=nq, time_queries=nq,
                    rounds=True, codes_only=False)
        if p["family"] == "faiss":
            keep["kind"] = "codes-faiss"
        out.append(B.result(**keep))
        if p["family"] == "kdindex" and p["rerank"] == 0 and p["probes"] in (None, 8):
            out.append(B.result(**dict(keep, codes_only=True, param="codes only")))
    return out


# ---------------------------------------------------------------------------- report

def _best(results, target):
    """(method, config) -> its fastest point (median QPS over rounds) with recall >= target."""
    best = {}
    for r in results:
        if not r.get("rounds") or r["kind"] or r["codes_only"] or r["family"] == "faiss":
            continue
        if r["recall"] < target:
            continue
        key = (r["method"], r["config"])
        if key not in best or np.median(r["qps"]) > np.median(best[key]["qps"]):
            best[key] = r
    return best


def _ratio(a_qps, b_qps):
    ratios = np.array(a_qps) / np.array(b_qps)
    return f"{np.median(ratios):.2f}", f"{ratios.min():.2f}–{ratios.max():.2f}"


def headline(results, target):
    """Fastest point per index at recall >= target, and each kdindex point against each
    pgvector point: per-round QPS ratio (median, min-max), size and build ratios."""
    best = _best(results, target)
    builds = {(r["method"], r["config"]): r for r in results if r["kind"] == "build"}
    rows = []
    for (m, c), r in sorted(best.items(), key=lambda kv: -np.median(kv[1]["qps"])):
        rows.append([m, c, r["param"], f"{r['recall']:.4f}", f"{np.median(r['qps']):.0f}",
                     f"{min(r['qps']):.0f}–{max(r['qps']):.0f}", B.fmt_mb(r["index_bytes"]),
                     B.fmt_s(builds.get((m, c), r)["build_s"])])
    reached = {(r["method"], r["config"]) for r in results if r.get("rounds")}
    for m, c in sorted(reached - set(best)):
        if m.startswith("faiss"):
            continue
        top = max((r for r in results if r.get("rounds") and not r["kind"] and
                   (r["method"], r["config"]) == (m, c)), key=lambda r: r["recall"])
        rows.append([m, c, f"(best: {top['param']})", f"{top['recall']:.4f}", "not reached",
                     "", B.fmt_mb(top["index_bytes"]), B.fmt_s(top["build_s"])])
    t1 = B.fmt_table(["method", "config", f"fastest setting with recall@{B.K} ≥ {target}",
                      f"recall@{B.K}", "QPS (median of rounds)", "QPS min–max", "index MB",
                      "build s"], rows)
    rows = []
    for (km, kc), k in best.items():
        if not km.startswith("kdindex"):
            continue
        for (pm, pc), p in best.items():
            if not pm.startswith("pgvector"):
                continue
            med, spread = _ratio(k["qps"], p["qps"])
            kcpu, pcpu = (builds.get((km, kc), {}).get("cpu"),
                          builds.get((pm, pc), {}).get("cpu"))
            rows.append([f"{kc} {k['param']}", f"{pm.split()[1]} {p['param']}", med, spread,
                         f"{p['index_bytes'] / k['index_bytes']:.0f}×",
                         f"{p['build_s'] / k['build_s']:.1f}×",
                         f"{pcpu[0] / kcpu[0]:.1f}×" if kcpu and pcpu else "-"])
    t2 = B.fmt_table(["kdindex", "vs pgvector", "QPS ratio (median of rounds)",
                      "ratio min–max", "size: pgvector / kdindex",
                      "build wall: pgvector / kdindex",
                      "build CPU: pgvector / kdindex"], rows) if rows else ""
    return t1, t2


def codes_throughput(results, rows_n):
    """Flat kdindex configs at rerank 0 against Faiss IndexPQ of the same m, per round."""
    faiss_r = {r["config"]: r for r in results if r["kind"] == "codes-faiss"}
    rows = []
    for r in results:
        if not r.get("rounds") or r["kind"] or r["family"] != "kdindex" or r["probes"] or \
                r["rerank"] != 0 or r["codes_only"]:
            continue
        f = faiss_r.get(r["config"].split()[0]) if r["method"] == "kdindex PQ" else None
        kq = np.median(r["qps"])
        row = [f"{r['config']}", f"{r['recall']:.4f}", f"{kq:.1f}", f"{kq * rows_n / 1e6:.0f}",
               f"{np.percentile(r['lat'], 50):.2f}"]
        if f:
            fq = np.median(f["qps"])
            med, spread = _ratio(r["qps"], f["qps"])
            row += [f"{f['config']}", f"{f['recall']:.4f}", f"{fq:.1f}",
                    f"{fq * rows_n / 1e6:.0f}", med, spread]
        else:
            row += ["-"] * 6
        rows.append(row)
    return B.fmt_table(["kdindex (one list, rerank 0)", f"recall@{B.K}", "QPS", "M rows/s",
                        "p50 ms", "Faiss IndexPQ", f"recall@{B.K}", "QPS", "M rows/s",
                        "ratio kdindex / Faiss (median of rounds)", "ratio min–max"], rows)


def sections(a, info, results, codes_t, sweep_t):
    """The markdown sections of a --rounds run (bench.py adds the plots)."""
    K, n, nq = B.K, info["rows"], info["time_queries"]
    sec = []
    if info.get("recipe"):
        sec += ["### Data set", "", info["recipe"], ""]
    sec += ["### Builds", "", B.build_table(results), "",
            "Wall-clock seconds of CREATE INDEX from the client, all at the server's "
            "max_parallel_maintenance_workers (`mpw`); `server CPU s`: utime + stime of "
            "the building backend and its parallel workers (/proc, test/bench/buildcpu.py), "
            "with the 1-minute load average at the start and the end: on a shared machine "
            "the wall time measures the load as much as the build, the CPU time does not; "
            "`train s` is kdindex_info's train_seconds; Faiss: train + add on one thread.", ""]
    for target in sorted({a.target_recall, 0.95, 0.99}):
        t1, t2 = headline(results, target)
        sec += [f"### Paired rounds: recall@{K} ≥ {target}", "", t1, ""]
        if t2:
            sec += [t2, ""]
    sec += [f"Every point above and below was timed once per round, {a.rounds} rounds, one "
            f"pass over the same {nq} test queries each (one client, one query at a time, "
            f"prepared statement over a Unix socket, after {min(a.warmup, 20)} untimed warm-up "
            "queries); QPS "
            "= median of the rounds; a ratio is taken per round (both points saw that "
            "round's load) and its median and min–max over the rounds shown. Fastest "
            "setting = the highest median QPS among the swept settings reaching the "
            "recall; recall is over the timed queries. 1-minute load average at the end of "
            f"each round: {', '.join(f'{x:.1f}' for x in LOADS)} ({os.cpu_count()} cores).",
            "",
            "### Codes-only scan throughput (one list, rerank 0)", "",
            codes_throughput(results, n), "",
            f"kdindex: `SET kdindex.rerank = 0` on a flat index (one list), the prepared "
            f"`SELECT id ... ORDER BY embedding <-> $1 LIMIT {K}` per query: parse of the "
            f"real[] parameter, lookup tables, the scan of all {n:,} codes, top-{K}, over "
            f"the socket. Faiss: IndexPQ of the same m and nbits (trained on "
            f"{min(a.faiss_train, n) if a.faiss_train else n:,} sampled rows), one "
            f"`search()` of one query with k = {K}, in-process, one thread. `M rows/s` = "
            "QPS x rows: codes scanned per second. Both timed in the same rounds.", "",
            f"### Codes only (recall@{K} at rerank 0 over the {nq} timed queries)", "",
            codes_t, "",
            f"### Recall vs speed (every point, median of {a.rounds} rounds)", "",
            sweep_t, "",
            "To rerun (builds and installs kdindex, generates the data and ground truth "
            "or reuses them from KDINDEX_CACHE, starts a throwaway cluster with "
            "maintenance_work_mem and shared_buffers 4GB; about 50 min at 1M rows on 2 "
            "cores shared with other work):", "",
            "    make bench SUITE=fmnist1m", "",
            "Paired rounds are the fmnist1m default (`--rounds 5`); more rounds or another "
            "grid: `make bench SUITE=fmnist1m KDINDEX_BENCH_ARGS=\"--rounds 7 --rerank "
            "0,100,200\"`; develop at `--rows 100000`; `KDINDEX_BENCH_DIR=<dir>` keeps the "
            "cluster (the 1M-row table then loads once) and `--reuse-indexes` keeps its "
            "indexes too (for a rerun of the rounds only).", ""]
    return sec


def plot(results, png, title, targets=(0.95, 0.99)):
    """Recall@10 vs QPS (median of rounds): every point faint, each index's frontier
    (the fastest point at each recall) as a line, one colour per index."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = {}
    for r in results:
        if r.get("rounds") and not r["kind"] and not r["codes_only"] and r["family"] != "faiss":
            groups.setdefault((r["method"], r["config"]), []).append(r)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=90)
    cmap = plt.get_cmap("tab10")
    for i, ((method, cfg), rs) in enumerate(sorted(groups.items())):
        c = cmap(i % 10)
        mk = "^" if method.startswith("pgvector") else "o"
        pts = [(r["recall"], float(np.median(r["qps"])), r) for r in rs if r["recall"] >= 0.8]
        if not pts:
            continue
        ax.scatter([p[1] for p in pts], [p[0] for p in pts], color=c, alpha=0.3, s=14, marker=mk)
        front = B._frontier([(p[0], p[1]) for p in pts])
        ax.plot([q for _, q in front], [rc for rc, _ in front], color=c, marker=mk, lw=1.5,
                markersize=5, label=f"{method} {cfg}")
    for t in targets:
        ax.axhline(t, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0.8, 1.002)
    ax.set_xlabel("queries per second (1 client, SQL; median of paired rounds); faint = "
                  "every setting, line = fastest at each recall", fontsize=8)
    ax.set_ylabel(f"recall@{B.K}")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
