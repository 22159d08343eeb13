/*
 * scan.c — ordered scans: candidate passes over the codes (scanlists.c),
 * exact re-rank on the heap, the access method's scan calls.
 *
 * The codes a scan reads are the flat index's one chain, or in an IVF index
 * the kdindex.probes lists whose centroids are nearest the query (each list
 * scored with its own lookup table).  A pass reads those codes once and keeps,
 * in a bounded max-heap, the best `cap` candidates (by code distance, ties by
 * TID) that come after the last candidate already consumed; the next pass, if
 * the executor keeps asking, resumes after that one with a larger cap.  The
 * scan goes on to the next kdindex.probes lists when the lists read so far
 * have nothing left, or, past the first rows, as soon as the next lists
 * could hold a row nearer than the one about to be returned: a WHERE clause
 * that rejects most rows still gets its LIMIT (up to kdindex.max_scan_tuples
 * candidates and kdindex.max_probes lists, when set).  The passes and lists
 * are scanlists.c's.
 *
 * Re-rank: candidates are re-scored with the exact distance on the heap tuple
 * (fetched under the scan's snapshot by heap.c, in batches in block order)
 * into a pool that returns its nearest first.  The first kdindex.rerank
 * candidates fill the pool; with kdindex.rerank_margin set, each of the first
 * rows leaves as soon as the next candidate by code distance could not be
 * nearer (by the errors of the code distances re-ranked so far), so the scan
 * re-ranks only as deep as the rows the executor asks for need.  Past the
 * first rows, further candidates are re-ranked while the next one could
 * still be nearer than the row about to leave.  Rows invisible to the
 * snapshot drop out there.  With kdindex.rerank = 0 candidates are returned
 * in code order.
 *
 * Refinement (WITH (refine = N), refine.c): candidates are taken from the
 * passes a chunk at a time (the first kdindex.rerank of them, then further
 * chunks), re-scored by their finer refinement codes and handed to the
 * re-rank in that order; the first rows wait for kdindex.refine_rerank of
 * them, not kdindex.rerank.  Every candidate taken is still re-ranked when
 * the executor asks for more rows, so none is lost.
 *
 * The executor trusts the order (xs_recheckorderby is false) and never
 * checks it.  A row the first candidates missed can re-rank nearer than rows
 * already returned (a strict order would need most of the table re-ranked:
 * code distances have no cheap tight lower bound).  kdindex.iterative_scan
 * says what becomes of such a late row, in pgvector's terms:
 * relaxed_order (the default) returns it when the scan meets it, with its
 * exact distance, so every row reached is returned exactly once, in exact
 * order among the rows re-ranked together; strict_order drops it, so the
 * order is exact and the row is skipped; off stops after the first batch.
 * The pool's hold-back and the early opening of lists keep late rows rare.
 * Only those bounds stop a scan before its lists run out.
 */
#include "postgres.h"

#include <math.h>

#include "access/relscan.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/float.h"
#include "utils/memutils.h"

#include "distance.h"
#include "refine.h"
#include "scan.h"
#include "vector.h"

/* What the operator would return, from a code distance */
static double
code_distance_value(KdMetric metric, double d)
{
	switch (metric)
	{
		case KD_METRIC_L2:
			return sqrt(Max(d, 0));
		case KD_METRIC_IP:
			return d;
		case KD_METRIC_COSINE:
			/* squared distance of unit vectors: 2 - 2 cos */
			return (double) d / 2;
		case KD_METRIC_L1:
			/* the table sums |q_j - c_j| over coordinates already */
			return d;
	}
	return d;
}

/* Min-heap of the pool, by distance then TID */
static void
pool_push(KdScanOpaque so, const KdCandidate *c)
{
	int			i;

	if (so->npool == so->pool_cap)
	{
		so->pool_cap = Max(64, so->pool_cap * 2);
		if (so->pool == NULL)
			so->pool = MemoryContextAllocHuge(so->querycxt, sizeof(KdCandidate) * so->pool_cap);
		else
			so->pool = repalloc_huge(so->pool, sizeof(KdCandidate) * so->pool_cap);
	}
	i = so->npool++;
	while (i > 0 && cand_cmp(&so->pool[(i - 1) / 2], c) > 0)
	{
		so->pool[i] = so->pool[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	so->pool[i] = *c;
}

static KdCandidate
pool_pop(KdScanOpaque so)
{
	KdCandidate top = so->pool[0];
	KdCandidate item = so->pool[--so->npool];
	int			i = 0;

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= so->npool)
			break;
		if (child + 1 < so->npool && cand_cmp(&so->pool[child + 1], &so->pool[child]) < 0)
			child++;
		if (cand_cmp(&so->pool[child], &item) >= 0)
			break;
		so->pool[i] = so->pool[child];
		i = child;
	}
	if (so->npool > 0)
		so->pool[i] = item;
	return top;
}

/*
 * Has the scan consumed all the candidates (index entries, dead ones too) it
 * may?  The rows already re-ranked are still returned.
 */
static inline bool
scan_bounded(KdScanOpaque so)
{
	return so->max_consumed > 0 && so->taken >= so->max_consumed;
}

/*
 * The bounds of kdindex.iterative_scan and kdindex.max_scan_tuples /
 * max_probes (see the file header).  off stops where pgvector's off stops,
 * after the first batch (its ef_search or probes): the first kdindex.rerank
 * candidates (the first pass, of at least 64, when codes only), from the
 * first kdindex.probes lists.  Untrained indexes and unordered queries have
 * no code order to cut: they return every row.
 */
static void
set_bounds(KdScanOpaque so)
{
	bool		bounded = so->meta.trained && !so->unordered;
	bool		off = kdindex_iterative_scan == KD_ITERATIVE_OFF;

	so->max_consumed = 0;
	so->max_lists = so->nchains;
	so->strict = bounded && kdindex_iterative_scan == KD_ITERATIVE_STRICT;
	if (!bounded)
		return;
	so->max_consumed = kdindex_max_scan_tuples;
	if (off)
	{
		int64		first = kdindex_rerank > 0 ? kdindex_rerank : so->main.cap;

		so->max_consumed = so->max_consumed > 0 ? Min(so->max_consumed, first) : first;
	}
	if (so->meta.nlists > 0)
		so->max_lists = Min(so->nchains,
							off ? kdindex_probes : Max(kdindex_probes, kdindex_max_probes));
}

/* The next candidate of the passes, by code distance */
static bool
take_candidate(IndexScanDesc scan, KdCandidate *c)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *from;
	KdCandidate *next;

	if (scan_bounded(so))
		return false;
	next = kd_scan_peek(scan, &from);
	if (next == NULL)
		return false;
	*c = *next;
	from->pos++;
	from->cursor = *c;
	from->have_cursor = true;
	so->taken++;
	return true;
}

static int
cand_qsort_cmp(const void *a, const void *b)
{
	return cand_cmp((const KdCandidate *) a, (const KdCandidate *) b);
}

/* Candidates a refined chunk takes from the passes after the first (kdindex.rerank) */
#define KD_REFINE_CHUNK 64

/*
 * With refinement: the next chunk of candidates from the passes, re-scored
 * by their refinement codes, nearest first; false when none is left.  The
 * first chunk is the first kdindex.rerank candidates, so what the refinement
 * sees before the first rows is what the re-rank would have seen without it.
 */
static bool
refill_refined(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	int			want = so->taken == 0 ? Max(kdindex_rerank, 1) : Max(kdindex_rerank, KD_REFINE_CHUNK);
	int			n = 0;

	if (want > so->refined_cap)
	{
		if (so->refined)
			pfree(so->refined);
		so->refined = MemoryContextAllocHuge(so->querycxt, sizeof(KdCandidate) * want);
		so->refined_cap = want;
	}
	while (n < want && take_candidate(scan, &so->refined[n]))
		n++;
	so->nrefined = so->refined_pos = 0;
	if (n == 0)
		return false;
	kd_refine_candidates(scan, so->refined, n);
	qsort(so->refined, n, sizeof(KdCandidate), cand_qsort_cmp);
	so->nrefined = n;
	return true;
}

/*
 * The next candidate the re-rank gets (not consumed): by code distance, or
 * with refinement, by refined distance within its chunk; NULL when none is
 * left or the scan's bounds are reached
 */
static KdCandidate *
peek_candidate(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *from;

	if (so->refine == NULL)
		return scan_bounded(so) ? NULL : kd_scan_peek(scan, &from);
	if (so->refined_pos >= so->nrefined && !refill_refined(scan))
		return NULL;
	return &so->refined[so->refined_pos];
}

static bool
next_candidate(IndexScanDesc scan, KdCandidate *c)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;

	if (so->refine == NULL)
	{
		if (!take_candidate(scan, c))
			return false;
	}
	else
	{
		if (peek_candidate(scan) == NULL)
			return false;
		*c = so->refined[so->refined_pos++];
	}
	so->consumed++;
	return true;
}

/*
 * The exact distance of the row at tid, or false when no version of it is
 * visible to the scan's snapshot.  The value is detoasted once, into tmpcxt
 * (or not at all when stored inline uncompressed: the distance is then
 * computed on the buffer's copy).
 */
static bool
exact_distance(IndexScanDesc scan, ItemPointer tid, double *dist)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	MemoryContext old;
	Datum		value;
	bool		found;

	MemoryContextReset(so->tmpcxt);
	old = MemoryContextSwitchTo(so->tmpcxt);
	found = kd_heap_fetch_value(so->heapfetch, tid, scan->xs_snapshot, &value);
	if (found)
	{
		int			dim;
		float	   *x = kd_datum_floats(value, so->typid, &dim);

		*dist = kd_exact_distance(so->metric, so->query, x, dim);
	}
	MemoryContextSwitchTo(old);
	return found;
}

/* Candidates re-ranked together, in table order */
#define KD_RERANK_BATCH 16

static int
cand_tid_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) &((const KdCandidate *) a)->tid,
							  (ItemPointer) &((const KdCandidate *) b)->tid);
}

/*
 * Re-rank a batch of candidates into the pool.  They are fetched in TID
 * order, their blocks prefetched first: rows of one block share a buffer
 * lookup, and a table larger than shared buffers is read in block order.
 * The pool orders them by exact distance again.
 */
static void
rerank_batch(IndexScanDesc scan, KdCandidate *batch, int n)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	ItemPointerData tids[KD_RERANK_BATCH];

	if (so->heapfetch == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(so->scancxt);

		so->heapfetch = kd_heap_fetch_begin(scan->heapRelation, scan->indexRelation);
		MemoryContextSwitchTo(old);
	}
	qsort(batch, n, sizeof(KdCandidate), cand_tid_cmp);
	for (int i = 0; i < n; i++)
		tids[i] = batch[i].tid;
	kd_heap_prefetch(so->heapfetch, tids, n);

	for (int i = 0; i < n; i++)
	{
		KdCandidate c = batch[i];
		double		code = code_distance_value(so->metric, c.dist);

		so->reranked++;
		if (!exact_distance(scan, &c.tid, &c.dist))
			continue;
		pool_push(so, &c);
		so->nerr++;
		so->err_sum += code - c.dist;
		so->err_sumsq += (code - c.dist) * (code - c.dist);
		if (so->centroids)
		{
			double		nearer = so->centroids[c.rank] - distance_scale(so->metric, c.dist);

			so->reach = so->have_reach ? Max(so->reach, nearer) : nearer;
			so->have_reach = true;
		}
	}
}

/* Re-rank up to n more candidates into the pool; false when none was left */
static bool
rerank_more(IndexScanDesc scan, int64 n)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	bool		any = false;

	if (so->batch == NULL)
		so->batch = MemoryContextAlloc(so->querycxt, sizeof(KdCandidate) * KD_RERANK_BATCH);
	while (n > 0)
	{
		int			nb = 0;

		while (nb < Min(n, KD_RERANK_BATCH) && next_candidate(scan, &so->batch[nb]))
			nb++;
		if (nb == 0)
			break;
		any = true;
		n -= nb;
		rerank_batch(scan, so->batch, nb);
	}
	return any;
}

/* Rows re-ranked before code distance errors are trusted to bound others */
#define KD_MIN_ERR_SAMPLE 16

/*
 * Standard deviations of the error the hold-back past the first rows allows
 * for when kdindex.rerank_margin is 0 (no early stop for the first rows)
 */
#define KD_HOLD_MARGIN 3

/*
 * A lower bound on the exact distance (the ORDER BY value) of candidate c,
 * not re-ranked yet.  How far code distances stray from exact ones is
 * measured on the query's own re-ranked rows: c's code distance less the
 * mean error and z standard deviations.  That is a statistical bound, not a
 * proof: the rows re-ranked first are those whose codes flattered them most,
 * and where exact distances crowd (many rows nearly as near) the error grows
 * with the code distance, so rows are missed.  A per-row bound on the coding
 * error (||x - x^|| for L2) would make it a true one: code distance less that
 * row's bound.
 */
static double
candidate_lower_bound(KdScanOpaque so, const KdCandidate *c, double z)
{
	double		mean = so->err_sum / so->nerr;
	double		var = Max(so->err_sumsq / so->nerr - mean * mean, 0);

	return code_distance_value(so->metric, c->dist) - mean - z * sqrt(var);
}

/*
 * Could a candidate not re-ranked yet be nearer than a row at exact distance
 * d?  Candidates come in code distance order and candidate_lower_bound is
 * monotonic in it, so the next one's bound bounds them all.  (A per-row
 * bound would not be: it would take the largest error bound of the rows
 * left, such as the index's largest.)  Too few rows re-ranked to measure
 * the error: yes.  No candidate left, or the scan's bounds reached: no.
 */
static bool
next_may_be_nearer(IndexScanDesc scan, double d, double z)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdCandidate *next = peek_candidate(scan);

	if (next == NULL)
		return false;
	if (so->nerr < KD_MIN_ERR_SAMPLE)
		return true;
	return d > candidate_lower_bound(so, next, z);
}

/*
 * Rows the pool returns before it may re-rank past kdindex.rerank
 * candidates to prove one, and before it holds rows back for lists not
 * opened yet.  A plain ORDER BY ... LIMIT 10 stops before that, so
 * kdindex.rerank bounds its work; a query that asks for more (a filter
 * rejecting rows, a deep LIMIT) gets the held-back, stricter order.
 */
#define KD_HOLD_AFTER_ROWS 16

/*
 * May the pool's nearest row be returned?  The first rows: once
 * kdindex.rerank candidates are re-ranked, or, with kdindex.rerank_margin
 * set, as soon as no candidate left could be nearer, so the scan re-ranks
 * only as deep as the rows asked for need (the executor stops asking at the
 * LIMIT; the index never learns k).  Later rows: once no candidate left could
 * be nearer, nor a list not opened yet hold a nearer row.
 */
static bool
pool_top_ready(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	double		z = kdindex_rerank_margin > 0 ? kdindex_rerank_margin : KD_HOLD_MARGIN;
	double		d;

	if (so->npool == 0 || so->catching_up)
		return false;
	d = so->pool[0].dist;
	if (so->nreturned < KD_HOLD_AFTER_ROWS)
		return so->consumed >= so->heap_depth ||
			(kdindex_rerank_margin > 0 && !next_may_be_nearer(scan, d, z));
	return !kd_scan_open_lists(scan, d) && !next_may_be_nearer(scan, d, z);
}

/* The next row to return, by exact distance when re-ranking */
static bool
next_row(IndexScanDesc scan, KdCandidate *c)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;

	if (!so->exact)
		return next_candidate(scan, c);
	if (!so->meta.trained)
	{
		/* untrained: every row is re-ranked, no bound applies */
		if (so->consumed == 0)
			while (rerank_more(scan, INT_MAX))
				;
	}
	else
	{
		while (!pool_top_ready(scan))
		{
			int64		n = KD_RERANK_BATCH;

			/*
			 * The first pass holds kdindex.rerank candidates: going past
			 * them before the first rows are out would read the codes again
			 */
			if (so->nreturned < KD_HOLD_AFTER_ROWS && so->consumed < so->heap_depth)
				n = Min(n, so->heap_depth - so->consumed);
			if (!rerank_more(scan, n))
				break;
		}
	}
	if (so->npool == 0)
		return false;
	*c = pool_pop(so);
	so->nreturned++;
	return true;
}

/* The re-rank's depth, for tuning kdindex.rerank and kdindex.rerank_margin */
static void
report_depth(KdScanOpaque so)
{
	if (so->started && so->exact && so->meta.trained && so->refine)
		elog(DEBUG1, "kdindex scan: rows returned: %lld, candidates refined: %lld, re-ranked: %lld",
			 (long long) so->nreturned, (long long) kd_refine_count(so->refine),
			 (long long) so->reranked);
	else if (so->started && so->exact && so->meta.trained)
		elog(DEBUG1, "kdindex scan: rows returned: %lld, candidates re-ranked: %lld",
			 (long long) so->nreturned, (long long) so->reranked);
}

/* Read the index state, prepare the query and the first lists */
static void
start_scan(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	MemoryContext old = MemoryContextSwitchTo(so->querycxt);

	pgstat_count_index_scan(scan->indexRelation);
	kd_read_meta(scan->indexRelation, &so->meta);
	if (so->meta.nlists == 0 && so->meta.data_head == InvalidBlockNumber)
		so->empty = true;
	if (!so->empty && !so->null_query && so->meta.dim != 0 && so->dim != so->meta.dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", so->meta.dim, so->dim)));

	so->nchains = kd_nchains(&so->meta);
	kd_layout(&so->layout, &so->meta);
	so->heads = palloc(sizeof(BlockNumber) * so->nchains);
	so->order = palloc(sizeof(int32) * so->nchains);
	if (!so->empty)
		kd_read_list_heads(scan->indexRelation, &so->meta, so->heads);
	for (int l = 0; l < so->nchains; l++)
		so->order[l] = l;
	so->main.first = 0;
	so->main.last = so->meta.nlists > 0 ? Min(kdindex_probes, so->nchains) : 1;

	if (!so->empty && !so->unordered && so->meta.trained)
	{
		KdQuantizer *q = kd_get_quantizer(scan->indexRelation, &so->meta);

		so->unit = so->query;
		if (so->metric == KD_METRIC_COSINE)
		{
			so->unit = palloc(sizeof(float) * so->dim);
			memcpy(so->unit, so->query, sizeof(float) * so->dim);
			kd_normalize(so->unit, so->dim);
		}
		so->lutsize = kd_lut_rows(q) * q->ksub;
		so->adc_scan = q->ops->adc_scan;
		if (q->nlists > 0 && kdindex_rerank > 0)
			kd_scan_rank_lists(so, q);
		else if (q->nlists > 0)
			kd_ivf_rank_lists(q, so->unit, so->metric, so->order, NULL);
		kd_scan_prepare_lists(scan, &so->main);
		if (kdindex_rerank > 0)
			so->refine = kd_refine_begin(so, q);
	}
	so->main.cap = so->meta.trained ? Max(kdindex_rerank, 64) : 1024;
	so->exact = !so->unordered && (!so->meta.trained || kdindex_rerank > 0);
	so->heap_depth = so->refine ? Min(kdindex_refine_rerank, kdindex_rerank) : kdindex_rerank;
	set_bounds(so);
	so->started = true;
	MemoryContextSwitchTo(old);
}

IndexScanDesc
kd_beginscan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	KdScanOpaque so = palloc0(sizeof(KdScanOpaqueData));

	so->metric = kd_index_metric(index);
	so->typid = TupleDescAttr(RelationGetDescr(index), 0)->atttypid;
	so->scancxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex scan",
										ALLOCSET_DEFAULT_SIZES);
	so->querycxt = AllocSetContextCreate(so->scancxt, "kdindex scan query",
										 ALLOCSET_DEFAULT_SIZES);
	so->tmpcxt = AllocSetContextCreate(so->scancxt, "kdindex scan tuple",
									   ALLOCSET_DEFAULT_SIZES);
	scan->opaque = so;
	/* the AM provides the order-by value arrays (as GiST does) */
	scan->xs_orderbyvals = palloc0(sizeof(Datum) * Max(norderbys, 1));
	scan->xs_orderbynulls = palloc(sizeof(bool) * Max(norderbys, 1));
	return scan;
}

void
kd_rescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	MemoryContext old;

	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys, scan->numberOfOrderBys * sizeof(ScanKeyData));

	report_depth(so);
	MemoryContextReset(so->querycxt);
	so->started = false;
	so->empty = false;
	so->null_query = false;
	so->unordered = false;
	so->query = NULL;
	so->unit = NULL;
	so->ivf_qlut = NULL;
	memset(&so->main, 0, sizeof(KdPass));
	memset(&so->catchup, 0, sizeof(KdPass));
	so->catching_up = false;
	so->centroids = NULL;
	so->have_reach = false;
	so->pool = NULL;
	so->batch = NULL;
	so->refine = NULL;
	so->refined = NULL;
	so->nrefined = so->refined_pos = so->refined_cap = 0;
	so->taken = 0;
	so->reranked = 0;
	so->pool_cap = so->npool = 0;
	so->consumed = 0;
	so->nreturned = 0;
	so->have_last = false;
	so->nerr = 0;
	so->err_sum = so->err_sumsq = 0;

	if (scan->numberOfOrderBys == 0)
	{
		/* the planner only uses kdindex to order */
		so->empty = true;
		return;
	}
	if (scan->orderByData[0].sk_flags & SK_ISNULL)
	{
		so->null_query = true;
		so->unordered = true;
		return;
	}

	old = MemoryContextSwitchTo(so->querycxt);
	{
		float	   *src = kd_datum_floats(scan->orderByData[0].sk_argument, so->typid, &so->dim);

		kd_check_finite(src, so->dim);
		so->query = palloc(sizeof(float) * so->dim);
		memcpy(so->query, src, sizeof(float) * so->dim);
		/*
		 * A zero query has no cosine distance: the operator gives NaN for
		 * every row, so any order is the exact one (pgvector returns every
		 * row too).
		 */
		if (so->metric == KD_METRIC_COSINE && kd_dot(so->query, so->query, so->dim) == 0)
			so->unordered = true;
	}
	MemoryContextSwitchTo(old);
}

bool
kd_gettuple(IndexScanDesc scan, ScanDirection dir)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdCandidate c;

	double		value = 0;

	if (!so->started)
		start_scan(scan);

	/*
	 * relaxed_order returns every row reached, a late one too (nearer than a
	 * row returned before it): the executor trusts the order and does not
	 * check it.  strict_order drops a late row, as pgvector's does: the
	 * order is exact, and the row is lost to this scan.
	 */
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (so->empty || !next_row(scan, &c))
			return false;
		if (so->null_query || so->unordered)
			break;
		value = so->exact ? c.dist : code_distance_value(so->metric, c.dist);
		if (!(so->strict && so->have_last && value < so->last_value))
			break;
	}
	so->have_last = true;
	so->last_value = value;

	scan->xs_heaptid = c.tid;
	scan->xs_recheck = false;
	scan->xs_recheckorderby = false;
	if (so->null_query)
	{
		scan->xs_orderbyvals[0] = (Datum) 0;
		scan->xs_orderbynulls[0] = true;
	}
	else if (so->unordered)
	{
		scan->xs_orderbyvals[0] = Float8GetDatum(get_float8_nan());
		scan->xs_orderbynulls[0] = false;
	}
	else
	{
		scan->xs_orderbyvals[0] = Float8GetDatum(value);
		scan->xs_orderbynulls[0] = false;
	}
	return true;
}

void
kd_endscan(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;

	report_depth(so);
	if (so->heapfetch)
		kd_heap_fetch_end(so->heapfetch);
	MemoryContextDelete(so->scancxt);
	pfree(so);
	scan->opaque = NULL;
}
