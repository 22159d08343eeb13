"""distill.py --lists: IVF indexes before and after kdindex_train, at several probes and
re-rank depths, recall@10 and QPS in paired rounds (see distill.py's docstring)."""

import datetime
import os
import statistics
import time

import bench as B
from bench import slug

HERE = os.path.dirname(os.path.abspath(__file__))

# distill.py --oracle: the results' title and the first thing their header says
ORACLE_TITLE = " ORACLE (training saw the evaluation queries)"
ORACLE_NOTE = ("**Oracle run (--oracle): the teacher's queries are the evaluation queries themselves "
               "(the same vectors), so kdindex_train saw the very queries recall is measured on. "
               "The gain is an upper bound on what distillation can give here, not a held-out result.**")


def say(msg=""):
    print(msg, flush=True)


def ints(spec):
    return [int(x) for x in str(spec).split(",") if x.strip()]


def recall_at(cur, idx, truth, probes, rerank):
    """(codes-only, re-ranked at rerank) recall@10 of idx against truth"""
    cur.execute(f"SET kdindex.probes = {probes}")
    cur.execute(f"SET kdindex.rerank = {rerank}")
    cur.execute("SELECT codes_recall, reranked_recall FROM kdindex_recall(%s, %s)", (idx, truth))
    codes, rr = cur.fetchone()
    cur.execute("RESET kdindex.probes")
    cur.execute("RESET kdindex.rerank")
    return codes, rr


def grid(cur, a, idx, truth):
    """{(probes, rerank): recall}, rerank 0 = codes only"""
    out = {}
    for p in ints(a.probes):
        for r in ints(a.rerank):
            out[(p, 0)], out[(p, r)] = recall_at(cur, idx, truth, p, r)
    return out


def timed(cur, table, op, idx, other, probes, rerank, qtexts, nested=False):
    """(wall-clock QPS, backend-CPU QPS or None) of one pass through idx (other dropped
    inside the transaction, or inside a savepoint when nested in one: --reuse-build's
    copy).  On a loaded machine the backend's CPU seconds move less than the wall clock."""
    cur.execute("DEALLOCATE ALL")
    cur.execute("SAVEPOINT timed" if nested else "BEGIN")
    try:
        cur.execute(f"DROP INDEX {other}")
        cur.execute(f"SET LOCAL kdindex.probes = {probes}")
        cur.execute(f"SET LOCAL kdindex.rerank = {rerank}")
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute(f"PREPARE knn(real[]) AS SELECT id FROM {table} ORDER BY embedding {op} $1 LIMIT {B.K}")
        for q in qtexts[:20]:       # warm-up, outside the CPU count
            cur.execute("EXECUTE knn(%s)", (q,))
            cur.fetchall()
        cpu0 = B.backend_cpu_s(cur)
        _, qps, _, _ = B.run_sql_point(cur, qtexts, 1, 0)
        cpu1 = B.backend_cpu_s(cur)
    finally:
        cur.execute("ROLLBACK TO SAVEPOINT timed" if nested else "ROLLBACK")
        cur.execute("DEALLOCATE ALL")
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return qps[0], (len(qtexts) / cpu if cpu else None)


def qps_ratio(cur, a, table, op, base, trained, probes, rr_base, rr_trained, qtexts,
              probes_trained=None):
    """medians over paired rounds of (trained QPS / base QPS), wall-clock and backend CPU
    (None when /proc cannot be read), and the wall-clock QPS medians; None with
    --qps-rounds 0 (recall only).  The trained index is timed at probes_trained when given."""
    if a.qps_rounds <= 0:
        return None
    rb, rt = [], []
    for _ in range(a.qps_rounds):
        rb.append(timed(cur, table, op, base, trained, probes, rr_base, qtexts, a.reuse_build))
        rt.append(timed(cur, table, op, trained, base, probes_trained or probes, rr_trained,
                        qtexts, a.reuse_build))
    ratio = statistics.median(t[0] / b[0] for t, b in zip(rt, rb))
    cpu = (statistics.median(t[1] / b[1] for t, b in zip(rt, rb))
           if all(x[1] for x in rt + rb) else None)
    return ratio, statistics.median(b[0] for b in rb), statistics.median(t[0] for t in rt), cpu


def ratios(qr):
    """(wall-clock, backend-CPU) QPS ratios of a qps_ratio result (nan when not timed)"""
    nan = float("nan")
    return (qr[0], qr[3] if qr[3] is not None else nan) if qr else (nan, nan)


def mean_ratios(rs):
    return tuple(statistics.mean(r[i] for r in rs) for i in range(2))


def fmt_ratios(r):
    return f"x{r[0]:.2f} (CPU x{r[1]:.2f})"


def train_extra(a):
    """kdindex_train's arguments from --epochs and --train-args (", epochs => 10"), on both
    paths"""
    extra = f", epochs => {a.epochs}" if a.epochs is not None else ""
    return extra + (f", {a.train_args}" if a.train_args else "")


def train_args_md(a):
    """how the results name kdindex_train's arguments: its defaults, or those given"""
    extra = train_extra(a)
    return f"its defaults but `{extra[2:]}`" if extra else "its defaults"


def rowterm_weight(cur, idx):
    """kdindex_info(idx).rowterm rounded (None without a term)"""
    cur.execute("SELECT round(rowterm::numeric, 3) FROM kdindex_info(%s)", (idx,))
    w = cur.fetchone()[0]
    return None if w is None else float(w)


def least_rerank(cur, idx, truth, probes, depth, target):
    """the least re-rank depth, in steps of a twentieth down to half of depth, at which
    idx's re-ranked recall at these probes is still >= target (None if not even depth)"""
    best = None
    for k in range(20, 9, -1):
        r = depth * k // 20
        rec = recall_at(cur, idx, truth, probes, r)[1]
        if rec < target:
            break
        best = (probes, r, rec)
    return best


def cheaper_settings(cur, a, idx, truth, probes, depth, target):
    """for these probes and every smaller --probes value, the least re-rank at which idx
    still reaches target: the settings at which the trained index may be faster at equal
    recall (the same probes and re-rank excluded)"""
    out = []
    for p in ints(a.probes):
        if p <= probes:
            s = least_rerank(cur, idx, truth, p, depth, target)
            if s and (s[0], s[1]) != (probes, depth):
                out.append(s)
    return out


def rowterm_off(cur, a, table, opclass, cfg, truth):
    """--rowterm-off: the grid of the configuration built WITH (rowterm = off)"""
    kind, m = cfg.split(":")[0], int(cfg.split(":")[1])
    idx = f"{table}_{kind}{m}_l{a.lists}_off"
    cur.execute(f"DROP INDEX IF EXISTS {idx}")
    cur.execute(f"CREATE INDEX {idx} ON {table} USING kdindex (embedding {opclass}) "
                f"WITH (quantizer = '{kind}', m = {m}, lists = {a.lists}, rowterm = off)")
    out = grid(cur, a, idx, truth)
    cur.execute(f"DROP INDEX {idx}")
    say(f"{cfg} lists {a.lists} rowterm = off: " +
        ", ".join(f"p{p}/r{r} {v:.4f}" for (p, r), v in sorted(out.items())))
    return out


def run_lists(cur, a, ds, table, opclass, op, cfgs, teacher, truth, qeval, nq, teacher_s, commit):
    qtexts = ["{" + ",".join(repr(float(v)) for v in row) + "}" for row in qeval[:a.qps_queries]]
    md = [f"# Distillation with lists{ORACLE_TITLE if a.oracle else ''}: {ds.name} "
          f"({ds.train.shape[0]} x {ds.dim}, {ds.metric})", ""] + ([ORACLE_NOTE, ""] if a.oracle else []) + [
          f"{datetime.date.today()}, kdindex {commit or '?'}. IVF with {a.lists} lists. recall@10 of "
          f"{qeval.shape[0]} evaluation queries against their exact top-10 (codes only = "
          f"kdindex.rerank 0), before and after `kdindex_train` with {train_args_md(a)} from the "
          f"exact top-100 of " + (f"the same {nq} evaluation queries (oracle)" if a.oracle
                                  else f"{nq} other queries")
          + (f" and {a.table_queries} of the table's rows (table_queries)" if a.table_queries else "")
          + f" ({teacher_s:.0f} s); mean of {a.seeds} seeds ({a.first_seed}-{a.first_seed + a.seeds - 1}) with "
          f"the worst run's gain beside it. "
          + (f"QPS ratio = trained / undistilled, the median of {a.qps_rounds} paired rounds of "
             f"{len(qtexts)} queries each, by the wall clock and by the backend's CPU seconds "
             f"(shared, loaded machine: ratios only)." if a.qps_rounds > 0
             else "QPS not timed (--qps-rounds 0): recall only."), ""]
    for cfg in cfgs:
        kind, m = cfg.split(":")[0], int(cfg.split(":")[1])
        base = f"{table}_{kind}{m}_l{a.lists}_base"
        idx = f"{table}_{kind}{m}_l{a.lists}_kd"
        with_ = f"WITH (quantizer = '{kind}', m = {m}, lists = {a.lists})"
        cur.execute("SELECT to_regclass(%s)", (base,))
        build_s = None
        if cur.fetchone()[0] is None:
            t = time.perf_counter()
            cur.execute(f"CREATE INDEX {base} ON {table} USING kdindex (embedding {opclass}) {with_}")
            build_s = time.perf_counter() - t
        before = grid(cur, a, base, truth)
        say(f"{cfg} lists {a.lists}: undistilled (row-term weight {rowterm_weight(cur, base)}) " +
            ", ".join(f"p{p}/r{r} {v:.4f}" for (p, r), v in sorted(before.items())))
        off = rowterm_off(cur, a, table, opclass, cfg, truth) if a.rowterm_off else None
        runs = []
        if a.reuse_build and a.qps_rounds <= 0:   # each seed trains a rolled-back copy of base
            idx = base
        elif a.reuse_build:     # timed beside base: one more build, copied for each seed
            cur.execute(f"DROP INDEX IF EXISTS {idx}")
            cur.execute(f"CREATE INDEX {idx} ON {table} USING kdindex (embedding {opclass}) {with_}")
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            if a.reuse_build:
                cur.execute("BEGIN")
                cur.execute(f"ALTER INDEX {idx} SET TABLESPACE kdindex_scratch")
            else:
                cur.execute(f"DROP INDEX IF EXISTS {idx}")
                t = time.perf_counter()
                cur.execute(f"CREATE INDEX {idx} ON {table} USING kdindex (embedding {opclass}) {with_}")
                build_s = build_s or time.perf_counter() - t
            w0 = rowterm_weight(cur, idx)
            del cur.connection.notices[:]
            cur.execute("SET client_min_messages = debug2")   # the refit's curve, the guard
            cur.execute("SELECT epochs, best_epoch, seconds_per_epoch, seconds, recall_before, "
                        f"recall_after FROM kdindex_train(%s, %s, seed => %s{train_extra(a)})",
                        (idx, teacher, seed))
            ep, best, spe, secs, hb, ha = cur.fetchone()
            cur.execute("RESET client_min_messages")
            notes = [n.strip() for n in cur.connection.notices if "kdindex" in n]
            w1 = rowterm_weight(cur, idx)
            say(f"  seed {seed}: row-term weight {w0} -> {w1}")
            for n in notes:
                say(f"    {n}")
            after = grid(cur, a, idx, truth)
            qps = {}
            for (p, r) in sorted(after):
                if r > 0 and a.qps_rounds > 0:
                    qps[(p, r)] = qps_ratio(cur, a, table, op, base, idx, p, r, r, qtexts)
            eq = {}
            if a.equal_recall:
                for (p, r) in sorted(after):
                    if r > 0:
                        eq[(p, r)] = []
                        for p2, r2, rec2 in cheaper_settings(cur, a, idx, truth, p, r, before[(p, r)]):
                            qr = qps_ratio(cur, a, table, op, base, idx, p, r, r2, qtexts, p2)
                            eq[(p, r)].append((p2, r2, rec2) + (ratios(qr)))
            say(f"  seed {seed}: held-out {hb:.4f} -> {ha:.4f}, best epoch {best}/{ep}, "
                f"{spe:.1f} s/epoch, train {secs:.0f} s; " +
                ", ".join(f"p{p}/r{r} {after[(p, r)]:.4f} ({100 * (after[(p, r)] - before[(p, r)]):+.2f})"
                          + (" qps " + fmt_ratios(ratios(qps[(p, r)])) if (p, r) in qps else "")
                          + "".join(f" [p{e[0]}/r{e[1]}: {e[2]:.4f}, qps {fmt_ratios(e[3:])}]"
                                    for e in eq.get((p, r), []))
                          for (p, r) in sorted(after)))
            runs.append(dict(after=after, qps=qps, eq=eq, spe=spe, secs=secs, hb=hb, ha=ha, best=best,
                             w0=w0, w1=w1, notes=notes))
            if a.reuse_build:
                cur.execute("ROLLBACK")
        if a.reuse_build:
            check = grid(cur, a, idx, truth)
            say(f"  {idx} after {len(runs)} rolled-back trainings of copies: "
                + ("as undistilled" if check == before else f"DIFFERS from the undistilled index: {check}"))
        if idx != base:
            cur.execute(f"DROP INDEX IF EXISTS {idx}")
        md += [f"## {kind.upper()}{m}, {a.lists} lists (build {build_s or 0:.0f} s; kdindex_train "
               f"{statistics.mean(r['secs'] for r in runs):.0f} s, "
               f"{statistics.mean(r['spe'] for r in runs):.1f} s per epoch; held-out recall "
               + "; ".join(f"{r['hb']:.4f} -> {r['ha']:.4f}" for r in runs) + "; row-term weight "
               + "; ".join(f"{r['w0']} -> {r['w1']}" for r in runs) + ")", "",
               "| probes | re-rank | " + ("term off | " if off else "") +
               "undistilled | distilled (mean) | worst distilled | gain (pt) | worst gain (pt) | "
               "QPS ratio (mean; wall, backend CPU) | distilled at fewer probes or a lower re-rank: setting, recall, QPS ratio |",
               "|---:|---:|" + ("---:|" if off else "") + "---:|---:|---:|---:|---:|---:|---|"]
        for key in sorted(before):
            p, r = key
            gains = [100 * (x["after"][key] - before[key]) for x in runs]
            mean_after = statistics.mean(x["after"][key] for x in runs)
            qr = [ratios(x["qps"][key]) for x in runs if key in x["qps"]]
            eqs = [e for x in runs for e in x["eq"].get(key, [])]
            md.append(f"| {p} | {r or 'codes only'} | " + (f"{off[key]:.4f} | " if off else "") +
                      f"{before[key]:.4f} | {mean_after:.4f} | {min(x['after'][key] for x in runs):.4f} | "
                      f"{statistics.mean(gains):+.2f} | {min(gains):+.2f} | "
                      f"{fmt_ratios(mean_ratios(qr)) if qr else ''} | "
                      + "; ".join(f"p{e[0]}/r{e[1]}: {e[2]:.4f}, {fmt_ratios(e[3:])}" for e in eqs) + " |")
        md.append("")
    say("\n".join(md))
    if not a.no_commit_results:
        dest = os.path.join(HERE, "results",
                            f"distill-ivf-{slug(ds.name)}-lists{a.lists}{a.results_suffix}.md")
        with open(dest, "w") as f:
            f.write("\n".join(md) + "\n")
        say(f"written: {dest}")
