#!/usr/bin/env python3
"""kdindex on one node vs on Citus (a coordinator + 2 workers), same rows, same index.

Run by `make bench SUITE=citus` (test/scripts/bench.sh citus), which builds and
installs kdindex (and copies Citus into KDINDEX_PREFIX when set).  This script
starts its own four throwaway clusters from $PGBIN on consecutive ports
(--port: the one node; +1 the coordinator; +2, +3 the workers), all on this
machine, loads the first --rows rows of the fmnist1m set (1M x 128, augmented
Fashion-MNIST + PCA) into a plain table on the one node and into a table
distributed by id (--shards shards) on Citus, builds the same kdindex index on
both (PQ m = --m, flat: every scan reads every code of its table or shard), and
measures per side:

  - load time (COPY + primary key + VACUUM ANALYZE) and CREATE INDEX time;
  - index and table size, per node;
  - per-node memory: shared buffers in use (pg_buffercache) and the cluster's
    proportional set size (sum of Pss over its processes, /proc/PID/smaps_rollup);
  - recall@10 against exact ground truth and heap blocks read per query
    (pg_statio deltas), at each --rerank setting;
  - QPS from paired rounds: each round times the one node and Citus on the same
    queries one after the other (alternating which goes first), one client;
  - coordinator overhead: the LIMIT query through the coordinator vs the same
    query on one shard directly on its worker, and a fan-out floor
    (ORDER BY id LIMIT 10, no vector work).

kdindex.rerank is set with ALTER ROLE postgres SET on the one node and on the
coordinator (Citus propagates it to the workers; a plain SET would not reach the
shards) and every measurement opens new connections; the script checks what a
shard sees.

Writes test/bench/results/citus.md (and prints it).  All clusters share one
machine (its cores and memory), which understates Citus: its shards compete for
the same cores the one node has to itself.
"""
import argparse
import datetime
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import psycopg2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import datasets  # noqa: E402

K = 10
CACHE = os.environ.get("KDINDEX_CACHE", "/var/tmp/kdindex-cache")
FMNIST1M = "fmnist1m-v1-pca128-1000000-q2000-s1"
CLUSTER_SH = os.path.join(ROOT, "test", "scripts", "cluster.sh")


def say(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- data

def load_fmnist1m(rows, nq):
    """The first `rows` rows and `nq` queries of fmnist1m, and their exact top-10 ids.
    Uses datasets.fmnist1m() when it exists (it generates and caches the set),
    else the cached files.  The cached top-100 is for all 1M rows: for fewer rows
    the ground truth is recomputed (Faiss IndexFlatL2)."""
    gen = getattr(datasets, "fmnist1m", None)
    if gen is not None:
        ds = gen()
        train, test = ds.train, ds.test
    else:
        base = os.path.join(CACHE, FMNIST1M)
        train = np.load(base + "-train.npy", mmap_mode="r")
        test = np.load(base + "-test.npy")
    train = np.ascontiguousarray(train[:rows], dtype=np.float32)
    test = np.ascontiguousarray(test[:nq], dtype=np.float32)
    gts = glob.glob(os.path.join(CACHE, FMNIST1M + "-*-gt100-ids.npy"))
    if rows == 1_000_000 and gts:
        return train, test, np.load(gts[0])[:nq, :K], "cached exact top-100 (Faiss IndexFlatL2)"
    import faiss
    index = faiss.IndexFlatL2(train.shape[1])
    index.add(train)
    _, ids = index.search(test, K)
    return train, test, ids, "exact top-10 recomputed on these rows (Faiss IndexFlatL2)"


# ---------------------------------------------------------------- clusters

class Node:
    def __init__(self, name, workdir, port):
        self.name, self.port = name, port
        self.dir = os.path.join(workdir, name)

    def connect(self):
        c = psycopg2.connect(host=self.dir, port=self.port, user="postgres", dbname="postgres")
        c.autocommit = True
        return c

    def sql(self, q, args=None, fetch=True):
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(q, args)
                return cur.fetchall() if fetch and cur.description else None
        finally:
            c.close()

    def pids(self):
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            pm = int(f.readline())
        out = [pm]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pm:
                    out.append(int(stat.split("/")[2]))
            except (OSError, IndexError, ValueError):
                pass
        return out

    def private_mb(self):
        """Private resident memory (RssAnon) summed over the cluster's processes:
        what the backends hold besides shared memory."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def buffers_mb(self):
        return self.sql("SELECT count(*) * 8192 / 1048576.0 FROM pg_buffercache "
                        "WHERE relfilenode IS NOT NULL")[0][0]


def start(node, settings):
    env = dict(os.environ)
    subprocess.run([CLUSTER_SH, "start", node.dir, str(node.port)], check=True, env=env)
    for k, v in settings.items():
        node.sql(f"ALTER SYSTEM SET {k} = '{v}'", fetch=False)
    subprocess.run([CLUSTER_SH, "stop", node.dir], check=True, env=env)
    subprocess.run([CLUSTER_SH, "start", node.dir, str(node.port)], check=True, env=env)


def stop(node):
    subprocess.run([CLUSTER_SH, "stop", node.dir], check=False)


# ---------------------------------------------------------------- steps

def timed(node, statements):
    t = time.perf_counter()
    c = node.connect()
    with c.cursor() as cur:
        for s in statements:
            if callable(s):
                s(cur)
            else:
                cur.execute(s)
    c.close()
    return time.perf_counter() - t


def copy_into(chunks):
    return lambda cur: cur.copy_expert("COPY items (id, embedding) FROM STDIN (FORMAT binary)",
                                       datasets.ChunkReader(chunks, b""), size=1 << 20)


def shard_rows(coord):
    """(shardid, shard table, worker port) of every placement of items."""
    return coord.sql("SELECT s.shardid, 'items_' || s.shardid, p.nodeport FROM pg_dist_shard s "
                     "JOIN pg_dist_placement pl USING (shardid) JOIN pg_dist_node p USING (groupid) "
                     "WHERE s.logicalrelid = 'items'::regclass ORDER BY 1")


def sizes(node, pattern):
    """(table bytes, index bytes) of the relations named like `pattern` on a node
    (shards included: Citus hides them from pg_class unless told not to)."""
    r = node.sql("SET citus.override_table_visibility = off; "
                 "SELECT coalesce(sum(pg_relation_size(c.oid)) FILTER (WHERE c.relkind = 'r'), 0), "
                 "coalesce(sum(pg_relation_size(c.oid)) FILTER (WHERE c.relkind = 'i' "
                 "AND am.amname = 'kdindex'), 0) FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam "
                 f"WHERE c.relname ~ '{pattern}'") if node.citus else node.sql(
        "SELECT pg_relation_size('items'), pg_relation_size('items_kd')")
    return int(r[0][0]), int(r[0][1])


def heap_blocks(node):
    """Heap blocks read (hit + read) so far from items or its shards on a node."""
    q = ("SELECT coalesce(sum(heap_blks_hit + heap_blks_read), 0) FROM pg_statio_user_tables "
         "WHERE relname ~ '^items(_[0-9]+)?$'")
    if node.citus:
        q = "SET citus.override_table_visibility = off; " + q
    return int(node.sql(q)[0][0])


def run_queries(node, sqls, keep=None):
    """Run the queries on a new connection; (ids per query, seconds per query).
    With a list as `keep`, the connection is left open and appended to it."""
    c = node.connect()
    found, lat = [], []
    with c.cursor() as cur:
        for s in sqls:
            t = time.perf_counter()
            cur.execute(s)
            rows = cur.fetchall()
            lat.append(time.perf_counter() - t)
            found.append([r[0] for r in rows])
    if keep is None:
        c.close()
    else:
        keep.append(c)
    return found, np.array(lat)


def set_rerank(node, r):
    node.sql(f"ALTER ROLE postgres SET kdindex.rerank = {int(r)}", fetch=False)


def pct(a, p):
    return float(np.percentile(a, p)) * 1000


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="citus", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--rerank", default="50,100,200")
    ap.add_argument("--cached-conns", type=int, default=0,
                    help="citus.max_cached_conns_per_worker (0: shards per worker)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=int(os.environ.get("KDINDEX_BENCH_PORT", 54351)))
    ap.add_argument("--workdir", default=os.environ.get("KDINDEX_BENCH_DIR") or "/tmp/kdindex-citusbench")
    ap.add_argument("--shared-buffers", default=os.environ.get("KDINDEX_SHARED_BUFFERS", "512MB"))
    ap.add_argument("--maint-mem", default=os.environ.get("KDINDEX_MAINT_MEM", "256MB"))
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "bench", "results", "citus.md"))
    ap.add_argument("--keep", action="store_true",
                    help="leave the clusters running (else they are stopped and removed)")
    a = ap.parse_args(argv)
    reranks = [int(x) for x in a.rerank.split(",")]
    a.cached_conns = a.cached_conns or max(1, a.shards // 2)
    t_all = time.perf_counter()

    say(f"== data: fmnist1m, first {a.rows:,} rows, {a.queries} queries")
    train, test, gt, gt_how = load_fmnist1m(a.rows, a.queries)
    say(f"   {train.shape}, ground truth: {gt_how}")
    t = time.perf_counter()
    chunks = list(datasets.copy_binary(train))  # loaded into both sides
    say(f"   COPY data made in {time.perf_counter() - t:.1f} s (not counted in load time)")
    qtext = [datasets.pg_array_text(q) for q in test]
    knn = [f"SELECT id FROM items ORDER BY embedding <-> '{q}'::real[] LIMIT {K}" for q in qtext]

    os.makedirs(a.workdir, exist_ok=True)
    if os.getuid() == 0:
        subprocess.run(["chown", "postgres:", a.workdir], check=True)
    one = Node("one", a.workdir, a.port)
    coord = Node("coordinator", a.workdir, a.port + 1)
    workers = [Node(f"worker{i}", a.workdir, a.port + 2 + i) for i in range(2)]
    nodes = [one, coord] + workers
    one.citus = False
    for n in [coord] + workers:
        n.citus = True
    base = {"shared_buffers": a.shared_buffers, "maintenance_work_mem": a.maint_mem,
            "work_mem": "64MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"}
    try:
        say("== clusters: one node, coordinator, 2 workers (this machine)")
        start(one, base)
        for n in [coord] + workers:
            start(n, dict(base, shared_preload_libraries="citus", listen_addresses="127.0.0.1",
                          max_connections="200", max_worker_processes="20",
                          max_prepared_transactions="100"))
            # (a citus.* setting is known only once citus.so is loaded)
            n.sql("ALTER SYSTEM SET citus.node_conninfo = 'sslmode=disable'", fetch=False)
            # keep a connection per shard of a worker open between queries, as an
            # application's pool would (the default, 1, makes each query on more
            # shards than that open and close the others: ms of connection setup)
            n.sql(f"ALTER SYSTEM SET citus.max_cached_conns_per_worker = {a.cached_conns}",
                  fetch=False)
            n.sql("SELECT pg_reload_conf()")
            n.sql("CREATE EXTENSION IF NOT EXISTS citus", fetch=False)
            n.sql("CREATE EXTENSION IF NOT EXISTS pg_buffercache", fetch=False)
        one.sql("CREATE EXTENSION IF NOT EXISTS kdindex; CREATE EXTENSION IF NOT EXISTS pg_buffercache",
                fetch=False)
        coord.sql(f"SELECT citus_set_coordinator_host('127.0.0.1', {coord.port})")
        for w in workers:
            coord.sql(f"SELECT citus_add_node('127.0.0.1', {w.port})")
        coord.sql("CREATE EXTENSION IF NOT EXISTS kdindex", fetch=False)
        citus_version = coord.sql("SELECT extversion FROM pg_extension WHERE extname = 'citus'")[0][0]

        res = {}
        say("== load")
        res["load", "one"] = timed(one, [
            "DROP TABLE IF EXISTS items",
            "CREATE TABLE items (id int NOT NULL, embedding real[])",
            copy_into(chunks), "ALTER TABLE items ADD PRIMARY KEY (id)", "VACUUM ANALYZE items"])
        res["load", "citus"] = timed(coord, [
            "DROP TABLE IF EXISTS items",
            f"SET citus.shard_count = {a.shards}",
            "CREATE TABLE items (id int NOT NULL, embedding real[])",
            "SELECT create_distributed_table('items', 'id')",
            copy_into(chunks), "ALTER TABLE items ADD PRIMARY KEY (id)", "VACUUM ANALYZE items"])
        say(f"   one node {res['load', 'one']:.1f} s, Citus {res['load', 'citus']:.1f} s")
        del chunks

        say("== CREATE INDEX")
        ddl = f"CREATE INDEX items_kd ON items USING kdindex (embedding) WITH (m = {a.m})"
        res["index", "one"] = timed(one, [ddl])
        res["index", "citus"] = timed(coord, [ddl])
        say(f"   one node {res['index', 'one']:.1f} s, Citus {res['index', 'citus']:.1f} s")
        shards = shard_rows(coord)
        plan = "\n".join(r[0] for r in coord.sql("EXPLAIN (COSTS OFF) " + knn[0]))
        pushed = bool(re.search(r"Limit\s.*\n.*Index Scan using items_kd_\d+", plan, re.S))
        say(f"   Citus plan pushes Limit -> Index Scan to the shards: {pushed}")
        if not pushed:
            say(plan)

        size = {"one": sizes(one, None), "coordinator": sizes(coord, r"^items(_kd)?$")}
        for w in workers:
            size[w.name] = sizes(w, r"^items(_kd)?_[0-9]+$")

        # ---- recall, heap reads, paired QPS at each re-rank depth
        shard1 = next(s for s in shards if s[2] == workers[0].port)
        shard_sql = [s.replace("FROM items ", f"FROM {shard1[1]} ") for s in knn]
        def use_rerank(r):
            set_rerank(one, r)
            set_rerank(coord, r)
            seen = coord.sql("SELECT current_setting('kdindex.rerank') FROM items WHERE id = 1")[0][0]
            assert seen == str(r), f"a shard sees kdindex.rerank = {seen}, not {r}"

        per = {}
        for r in reranks:              # recall and heap reads (also the warm-up)
            use_rerank(r)
            row = per[r] = {"qps": {"one": [], "citus": []}, "lat": {"one": [], "citus": []},
                            "shard": []}
            for side, node, ns in (("one", one, [one]), ("citus", coord, workers)):
                before = sum(heap_blocks(n) for n in ns)
                found, _ = run_queries(node, knn)
                time.sleep(0.5)
                row["recall", side] = datasets.recall(found, gt, K)
                row["heap", side] = (sum(heap_blocks(n) for n in ns) - before) / len(knn)
        # paired rounds: in every round each setting, both sides one after the
        # other (alternating which first), so that the machine's load drifts over
        # all settings and both sides alike
        for rnd in range(a.rounds):
            for r in reranks:
                use_rerank(r)
                row = per[r]
                order = (("one", one), ("citus", coord))
                for side, node in (order if rnd % 2 == 0 else order[::-1]):
                    _, lat = run_queries(node, knn)
                    row["qps"][side].append(len(knn) / lat.sum())
                    row["lat"][side].append(lat)
                row["shard"].append(run_queries(workers[0], shard_sql)[1])
        for r, row in per.items():
            row["ratios"] = [c / o for c, o in zip(row["qps"]["citus"], row["qps"]["one"])]
            for side in ("one", "citus"):
                row["qps", side] = float(np.median(row["qps"][side]))
                allat = np.concatenate(row["lat"][side])
                row["p50", side], row["p99", side] = pct(allat, 50), pct(allat, 99)
            row["p50", "shard"] = pct(np.concatenate(row["shard"]), 50)
            say(f"   rerank {r}: recall one {row['recall', 'one']:.3f} citus {row['recall', 'citus']:.3f}; "
                f"QPS one {row['qps', 'one']:.0f} citus {row['qps', 'citus']:.0f} "
                f"(ratio per round {', '.join(f'{x:.2f}' for x in row['ratios'])}); "
                f"heap blocks/query {row['heap', 'one']:.0f} vs {row['heap', 'citus']:.0f}; "
                f"p50 {row['p50', 'one']:.2f} / {row['p50', 'citus']:.2f} ms, one shard direct "
                f"{row['p50', 'shard']:.2f} ms")
        for n in (one, coord):
            n.sql("ALTER ROLE postgres RESET kdindex.rerank", fetch=False)

        # ---- fan-out floor: no vector work
        floor_sql = ["SELECT id FROM items ORDER BY id LIMIT 10"] * 300
        floor = {}
        for side, node in (("one", one), ("citus", coord), ("one", one), ("citus", coord)):
            floor.setdefault(side, []).append(run_queries(node, floor_sql)[1])
        floor = {s: pct(np.concatenate(v), 50) for s, v in floor.items()}
        say(f"   ORDER BY id LIMIT 10: p50 one {floor['one']:.2f} ms, Citus {floor['citus']:.2f} ms")

        # memory while a client of each side is connected (its Citus connections
        # to the workers open), after one more pass of the queries (default rerank)
        conns = []
        for node in (one, coord):
            run_queries(node, knn, keep=conns)
        mem = {n.name: (n.buffers_mb(), n.private_mb()) for n in nodes}
        for c in conns:
            c.close()
        loadavg = os.getloadavg()
        md = report(a, res, size, mem, per, floor, shards, citus_version, gt_how, loadavg,
                    time.perf_counter() - t_all)
        say("\n" + md)
        with open(a.out, "w") as f:
            f.write(md)
        say(f"written {os.path.relpath(a.out, ROOT)}")
    finally:
        if not a.keep:
            for n in nodes:
                stop(n)
                shutil.rmtree(n.dir, ignore_errors=True)


def report(a, res, size, mem, per, floor, shards, citus_version, gt_how, loadavg, wall):
    mb = 1 / 1048576
    tot_idx_c = sum(size[n][1] for n in size if n != "one")
    tot_tbl_c = sum(size[n][0] for n in size if n != "one")
    nper = {}
    for s in shards:
        nper[s[2]] = nper.get(s[2], 0) + 1
    L = [f"# kdindex on one node vs Citus (coordinator + 2 workers)",
         "",
         f"`make bench SUITE=citus` (`test/bench/citus.py --rows {a.rows} --queries {a.queries} "
         f"--shards {a.shards} --m {a.m} --rerank {a.rerank} --rounds {a.rounds} --cached-conns {a.cached_conns}`), "
         f"{datetime.date.today().isoformat()}, PostgreSQL 15, Citus {citus_version}, "
         f"{platform.machine()}, {os.cpu_count()} cores.",
         "",
         f"Data: the first {a.rows:,} rows of fmnist1m (augmented Fashion-MNIST, PCA to 128 "
         f"dimensions), the first {a.queries} of its held-out queries; ground truth: {gt_how}. "
         f"Index on both sides: `kdindex (embedding) WITH (m = {a.m})`, PQ, flat (every scan "
         f"reads every code of its table or shard). Citus: table distributed by `id` over "
         f"{a.shards} shards ({', '.join(str(v) for v in nper.values())} per worker). "
         f"`shared_buffers = {a.shared_buffers}` and `maintenance_work_mem = {a.maint_mem}` on "
         f"every node; `citus.max_cached_conns_per_worker = {a.cached_conns}` on the coordinator "
         "(a connection per shard of a worker stays open between queries, as with a pool; at the "
         "default 1 each query opens and closes the others).",
         "",
         "**All four clusters (the one node, the coordinator, both workers) ran on this one "
         f"{os.cpu_count()}-core machine, shared with other jobs (load average "
         f"{loadavg[0]:.1f} at the end).** Its shards' scans compete for the same two cores the "
         "one node has, where two workers on their own machines would each have theirs: that "
         "understates Citus. One client, queries one after another: a query on one node "
         "scans on one core, while Citus runs the shards' scans of one query on both cores at "
         "once (with as many clients as cores the one node would use both too; not measured "
         "here).",
         "",
         "| | one node | Citus (coordinator + 2 workers) |",
         "|---|---|---|",
         f"| load (COPY, primary key, VACUUM ANALYZE) | {res['load', 'one']:.1f} s | "
         f"{res['load', 'citus']:.1f} s |",
         f"| CREATE INDEX | {res['index', 'one']:.1f} s | {res['index', 'citus']:.1f} s "
         f"({a.shards} shard indexes) |",
         f"| index size | {size['one'][1] * mb:.1f} MB ({size['one'][1] / a.rows:.1f} B/row) | "
         f"{tot_idx_c * mb:.1f} MB ({tot_idx_c / a.rows:.1f} B/row): "
         + ", ".join(f"{n} {size[n][1] * mb:.1f}" for n in size if n != "one") + " |",
         f"| table size | {size['one'][0] * mb:.0f} MB | {tot_tbl_c * mb:.0f} MB: "
         + ", ".join(f"{n} {size[n][0] * mb:.0f}" for n in size if n != "one") + " |",
         f"| memory: shared buffers in use / private RSS of the cluster | {mem['one'][0]:.0f} / {mem['one'][1]:.0f} MB | "
         + ", ".join(f"{n} {mem[n][0]:.0f} / {mem[n][1]:.0f}" for n in mem if n != "one")
         + " MB |"]
    for r, row in per.items():
        L.append(f"| rerank {r}: recall@10 | {row['recall', 'one']:.3f} | {row['recall', 'citus']:.3f} |")
        L.append(f"| rerank {r}: heap blocks read per query | {row['heap', 'one']:.0f} | "
                 f"{row['heap', 'citus']:.0f} (all shards) |")
        L.append(f"| rerank {r}: QPS (median of {a.rounds} paired rounds) | {row['qps', 'one']:.0f} | "
                 f"{row['qps', 'citus']:.0f} (x{np.median(row['ratios']):.2f}; rounds "
                 + ", ".join(f"{x:.2f}" for x in row["ratios"]) + ") |")
        L.append(f"| rerank {r}: latency p50 / p99 | {row['p50', 'one']:.2f} / {row['p99', 'one']:.2f} ms | "
                 f"{row['p50', 'citus']:.2f} / {row['p99', 'citus']:.2f} ms (one shard alone, on its "
                 f"worker: p50 {row['p50', 'shard']:.2f} ms) |")
    L.append(f"| `ORDER BY id LIMIT 10` (fan-out floor, no vector work): p50 | {floor['one']:.2f} ms | "
             f"{floor['citus']:.2f} ms |")
    L += ["",
          "Heap blocks per query: `pg_statio_user_tables` (hits + reads) of the table or its shards, "
          "summed over the workers, over one pass of the queries: the re-rank reads (one block per "
          f"candidate's vector) and the scan's. On Citus every shard re-ranks `kdindex.rerank` "
          f"candidates of its own, so {a.shards} shards read about {a.shards} times as many. "
          "Memory: `pg_buffercache` buffers holding a page, and `RssAnon` (private resident memory) "
          "summed over the cluster's processes, with one client of each side connected after a "
          "pass of the queries at the default re-rank depth. "
          "`kdindex.rerank` set by `ALTER ROLE postgres SET` on the one node and on the "
          "coordinator (Citus carries it to the workers; checked on a shard), new connections "
          "for every pass.",
          "",
          f"Wall time of the run: {wall / 60:.1f} min.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
