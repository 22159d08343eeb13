/*
 * scan.c — ordered scans: ADC lookup tables, candidate passes over the codes,
 * exact re-rank on the heap.
 *
 * The codes a scan reads are the flat index's one chain, or in an IVF index
 * the kdindex.probes lists whose centroids are nearest the query (each list
 * scored with its own lookup table).  A pass reads those codes once and keeps,
 * in a bounded max-heap, the best `cap` candidates (by code distance, ties by
 * TID) that come after the last candidate already consumed; the next pass, if
 * the executor keeps asking, resumes after that one with a larger cap.  The
 * scan goes on to the next kdindex.probes lists when the lists read so far
 * have nothing left, or, past the first rows, as soon as the next lists
 * could hold a row nearer than the one about to be returned (open_nearer_
 * lists): a WHERE clause that rejects most rows still gets its LIMIT, up to
 * kdindex.max_scan_tuples candidates.
 *
 * Re-rank: candidates are re-scored with the exact distance on the heap tuple
 * (fetched under the scan's snapshot, the indexed value recomputed with
 * FormIndexDatum so expression indexes work) into a pool that returns its
 * nearest first.  The first kdindex.rerank candidates fill the pool; before a
 * row leaves it, further candidates are re-ranked while the next one by code
 * distance could still be nearer than that row (by the errors of the code
 * distances re-ranked so far).  Rows invisible to the snapshot drop out there.
 * With kdindex.rerank = 0 candidates are returned in code order.
 *
 * The executor trusts the order (xs_recheckorderby is false) and never
 * checks it.  A row the first candidates missed can re-rank nearer than rows
 * already returned (a strict order would need most of the table re-ranked:
 * code distances have no cheap tight lower bound); such a late row is
 * returned when the scan meets it, with its exact distance, as pgvector's
 * relaxed_order does, never dropped.  So every row reached is returned
 * exactly once, in exact order among the rows re-ranked together; the pool's
 * hold-back and the early opening of lists keep late rows rare.  Only
 * kdindex.max_scan_tuples stops a scan before its lists run out.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/relscan.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_bitutils.h"
#include "utils/float.h"
#include "utils/memutils.h"

#include "distance.h"
#include "kdindex.h"
#include "vector.h"

/* dist is double: re-ranked rows must sort exactly as the operator's values */
typedef struct KdCandidate
{
	ItemPointerData tid;
	int16		rank;			/* its list's place in the order (0: flat) */
	double		dist;
} KdCandidate;

/*
 * Candidate passes over the lists order[first, last): the best cap
 * candidates after the cursor, and the lookup tables of those lists.
 */
typedef struct KdPass
{
	int			first;
	int			last;
	float	   *luts;			/* lookup tables and biases, one per list */
	float	   *biases;
	uint8	   *qluts;			/* block layout: the tables in bytes, */
	float	   *qscales;		/* with their scale (biases include theirs) */
	KdCandidate *cands;			/* current pass, ascending */
	int			ncands;
	int			pos;
	int			cap;
	bool		exhausted;		/* the last pass found everything left */
	bool		have_cursor;
	KdCandidate cursor;			/* last candidate consumed */
} KdPass;

typedef struct KdScanOpaqueData
{
	/* the query */
	KdMetric	metric;
	Oid			typid;
	bool		started;
	bool		empty;			/* nothing to return */
	bool		null_query;		/* ORDER BY col <-> NULL */
	bool		unordered;		/* NULL or zero cosine query: every row, TID order */
	float	   *query;
	int			dim;

	/* index state read at the first call */
	KdMetaPageData meta;
	float	   *unit;			/* the query as the codes see it (normalised) */
	int			lutsize;		/* m x ksub */
	KdLayout	layout;			/* of the data pages */
	void		(*adc_scan) (const float *lut, int m, int nbits, KdMetric metric,
							 const uint8 *codes, int stride, int n, float *out);

	/* chains: the lists, nearest centroid first, or the flat chain */
	int			nchains;
	BlockNumber *heads;
	int32	   *order;

	/*
	 * The lists read now, and lists opened early catching up with them to
	 * their cursor.  centroids: how near each list's centroid is, and reach:
	 * how much nearer than its centroid a re-ranked row was at most (both
	 * in distance_scale units).
	 */
	KdPass		main;
	KdPass		catchup;
	bool		catching_up;
	float	   *centroids;
	bool		have_reach;
	double		reach;

	/* re-ranked rows not returned yet: a min-heap */
	KdCandidate *pool;
	int			pool_cap;
	int			npool;
	bool		exact;			/* rows are returned with exact distances */
	int64		consumed;		/* candidates taken from the passes */
	int64		nreturned;		/* rows the pool gave out */
	int64		nerr;			/* code minus exact distance of re-ranked rows: */
	double		err_sum;		/* their count, sum and sum of squares */
	double		err_sumsq;

	/* heap access for the re-rank */
	KdHeapFetch *heapfetch;

	MemoryContext scancxt;		/* lives across rescans */
	MemoryContext querycxt;		/* reset per rescan */
	MemoryContext tmpcxt;		/* reset per heap tuple */
} KdScanOpaqueData;

typedef KdScanOpaqueData *KdScanOpaque;

static inline int
cand_cmp(const KdCandidate *a, const KdCandidate *b)
{
	if (a->dist < b->dist)
		return -1;
	if (a->dist > b->dist)
		return 1;
	return ItemPointerCompare((ItemPointer) &a->tid, (ItemPointer) &b->tid);
}

static int
cand_qsort_cmp(const void *a, const void *b)
{
	return cand_cmp((const KdCandidate *) a, (const KdCandidate *) b);
}

/* Bounded max-heap: heap[0] is the worst candidate kept */
static void
heap_sift_down(KdCandidate *heap, int n, int i)
{
	KdCandidate item = heap[i];

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= n)
			break;
		if (child + 1 < n && cand_cmp(&heap[child + 1], &heap[child]) > 0)
			child++;
		if (cand_cmp(&heap[child], &item) <= 0)
			break;
		heap[i] = heap[child];
		i = child;
	}
	heap[i] = item;
}

static void
heap_push(KdCandidate *heap, int *n, int cap, const KdCandidate *c)
{
	if (*n < cap)
	{
		int			i = (*n)++;

		while (i > 0)
		{
			int			parent = (i - 1) / 2;

			if (cand_cmp(&heap[parent], c) >= 0)
				break;
			heap[i] = heap[parent];
			i = parent;
		}
		heap[i] = *c;
	}
	else if (cand_cmp(c, &heap[0]) < 0)
	{
		heap[0] = *c;
		heap_sift_down(heap, *n, 0);
	}
}

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

/* Lookup tables for the lists of a pass */
static void
prepare_set(IndexScanDesc scan, KdPass *p)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdQuantizer *q = kd_get_quantizer(scan->indexRelation, &so->meta);
	int			n = p->last - p->first;
	MemoryContext old = MemoryContextSwitchTo(so->querycxt);

	if (p->luts)
	{
		pfree(p->luts);
		pfree(p->biases);
	}
	p->luts = palloc(sizeof(float) * so->lutsize * n);
	p->biases = palloc(sizeof(float) * n);
	for (int i = 0; i < n; i++)
		kd_ivf_list_lut(q, so->unit, so->metric, so->order[p->first + i],
						p->luts + (Size) i * so->lutsize, &p->biases[i]);
	if (so->layout.blocked)
	{
		if (p->qluts)
		{
			pfree(p->qluts);
			pfree(p->qscales);
		}
		p->qluts = palloc(KdFastScanLutSize(q->m) * n);
		p->qscales = palloc(sizeof(float) * n);
		for (int i = 0; i < n; i++)
		{
			float		qbias;

			kd_fastscan_lut(p->luts + (Size) i * so->lutsize, q->m,
							p->qluts + (Size) i * KdFastScanLutSize(q->m), &p->qscales[i], &qbias);
			p->biases[i] += qbias;
		}
	}
	MemoryContextSwitchTo(old);
}

/* Keep a candidate if it beats the worst kept one and comes after the cursor */
static inline void
consider(KdPass *p, int *n, double dist, ItemPointer tid, int rank)
{
	KdCandidate c;

	if (*n == p->cap && dist > p->cands[0].dist)
		return;
	c.dist = dist;
	c.tid = *tid;
	c.rank = rank;
	if (p->have_cursor && cand_cmp(&c, &p->cursor) <= 0)
		return;
	heap_push(p->cands, n, p->cap, &c);
}

/*
 * The largest byte-table sum of a row whose distance, scale * sum + bias
 * computed in float, can be at most worst.  The slack covers that float
 * rounding (a few units in the last place of the distance and the bias,
 * which can be many table steps when the bias dwarfs the scale), so a row
 * tying the worst kept candidate, which may still win on its TID, is looked
 * at: later passes resume after the worst one, and a row missed here would
 * be lost.
 */
static uint16
sum_limit(double worst, float scale, float bias)
{
	double		slack = 4 * FLT_EPSILON * (fabs(worst) + fabs(bias)) / scale;
	double		lim = floor((worst - bias) / scale + slack) + 1;

	if (lim <= 0)
		return 0;
	return isnan(lim) || lim >= PG_UINT16_MAX ? PG_UINT16_MAX : (uint16) lim;
}

/*
 * The fast scan of a block-layout page: per block of 32 rows the kernel sums
 * the byte tables and flags the rows whose sum could still beat the worst
 * kept candidate; only those are looked at.
 */
static void
scan_blocks(KdScanOpaque so, KdPass *p, Page page, int ntup, int set, int *n)
{
	int			mb = KdFastScanRows(so->meta.m);
	const uint8 *qlut = p->qluts + (Size) set * KdFastScanLutSize(so->meta.m);
	float		scale = p->qscales[set];
	float		bias = p->biases[set];

	for (int b = 0; b * KDINDEX_BLOCK_ROWS < ntup; b++)
	{
		uint16		sums[KDINDEX_BLOCK_ROWS];
		int			nb = Min(KDINDEX_BLOCK_ROWS, ntup - b * KDINDEX_BLOCK_ROWS);
		uint16		limit = *n == p->cap ? sum_limit(p->cands[0].dist, scale, bias) : PG_UINT16_MAX;
		uint32		below;

		below = kd_fastscan_block(qlut, mb, kd_block_codes(page, &so->layout, b), limit, sums);
		if (nb < KDINDEX_BLOCK_ROWS)
			below &= ((uint32) 1 << nb) - 1;
		while (below)
		{
			int			s = pg_rightmost_one_pos32(below);

			below &= below - 1;
			consider(p, n, scale * sums[s] + bias,
					 kd_tuple_tid(page, &so->layout, b * KDINDEX_BLOCK_ROWS + s), p->first + set);
		}
	}
}

/*
 * One pass over the codes of a pass's lists: the best p->cap candidates
 * after the cursor.  Untrained indexes and unordered queries have no code
 * distance: every tuple scores 0, so candidates come in TID order.
 */
static void
run_pass(IndexScanDesc scan, KdPass *p)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	bool		use_codes = so->meta.trained && !so->unordered;
	float	   *dists = palloc(sizeof(float) * so->layout.capacity);
	int			n = 0;

	if (p->cands == NULL)
		p->cands = MemoryContextAllocHuge(so->querycxt, sizeof(KdCandidate) * p->cap);
	else
		p->cands = repalloc_huge(p->cands, sizeof(KdCandidate) * p->cap);

	for (int k = p->first; k < p->last; k++)
	{
		BlockNumber blkno = so->heads[so->order[k]];
		int			set = k - p->first;
		float		bias = use_codes ? p->biases[set] : 0;

		while (blkno != InvalidBlockNumber)
		{
			Buffer		buf;
			Page		page;
			int			ntup;

			CHECK_FOR_INTERRUPTS();
			buf = ReadBufferExtended(scan->indexRelation, MAIN_FORKNUM, blkno, RBM_NORMAL, NULL);
			LockBuffer(buf, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buf);
			ntup = KdPageGetOpaque(page)->ntuples;
			if (use_codes && so->layout.blocked)
				scan_blocks(so, p, page, ntup, set, &n);
			else
			{
				if (use_codes)
					so->adc_scan(p->luts + (Size) set * so->lutsize, so->meta.m, so->meta.nbits,
								 so->metric,
								 (const uint8 *) KdTupleCode(KdPageTuple(page, so->layout.tupsize, 0)),
								 so->layout.tupsize, ntup, dists);
				for (int i = 0; i < ntup; i++)
					consider(p, &n, use_codes ? dists[i] + bias : 0, kd_tuple_tid(page, &so->layout, i), k);
			}
			blkno = KdPageGetOpaque(page)->nextblkno;
			UnlockReleaseBuffer(buf);
		}
	}
	pfree(dists);

	qsort(p->cands, n, sizeof(KdCandidate), cand_qsort_cmp);
	p->ncands = n;
	p->pos = 0;
	p->exhausted = n < p->cap;
}

/*
 * The next candidate of a pass by code distance (not consumed), running a
 * new pass when needed; NULL when its lists have nothing left.
 */
static KdCandidate *
pass_peek(IndexScanDesc scan, KdPass *p)
{
	while (p->pos >= p->ncands)
	{
		if (p->exhausted)
			return NULL;
		/* widen each further pass, within work_mem */
		if (p->ncands > 0)
			p->cap = (int) Max(p->cap, Min((int64) p->cap * 4,
										   (int64) work_mem * 1024 / sizeof(KdCandidate)));
		run_pass(scan, p);
	}
	return &p->cands[p->pos];
}

/*
 * The catch-up lists have no row left up to the main cursor: they join the
 * main lists, whose next pass reads them too (after that cursor).
 */
static void
merge_catchup(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *m = &so->main;
	KdPass	   *c = &so->catchup;
	int			nm = m->last - m->first;
	int			nc = c->last - c->first;

	Assert(c->first == m->last);
	m->luts = repalloc(m->luts, sizeof(float) * so->lutsize * (nm + nc));
	memcpy(m->luts + (Size) nm * so->lutsize, c->luts, sizeof(float) * so->lutsize * nc);
	m->biases = repalloc(m->biases, sizeof(float) * (nm + nc));
	memcpy(m->biases + nm, c->biases, sizeof(float) * nc);
	if (so->layout.blocked)
	{
		Size		qsize = KdFastScanLutSize(so->meta.m);

		m->qluts = repalloc(m->qluts, qsize * (nm + nc));
		memcpy(m->qluts + qsize * nm, c->qluts, qsize * nc);
		m->qscales = repalloc(m->qscales, sizeof(float) * (nm + nc));
		memcpy(m->qscales + nm, c->qscales, sizeof(float) * nc);
		pfree(c->qluts);
		pfree(c->qscales);
	}
	pfree(c->luts);
	pfree(c->biases);
	if (c->cands)
		pfree(c->cands);
	m->last = c->last;
	m->ncands = m->pos = 0;
	m->exhausted = false;
	so->catching_up = false;
}

/*
 * The next candidate by code distance (not consumed) and the pass it comes
 * from: lists catching up first, up to the main cursor, then the main lists,
 * moving on to the next ones when those run out.  NULL when there is none.
 */
static KdCandidate *
peek_candidate(IndexScanDesc scan, KdPass **from)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *m = &so->main;
	KdCandidate *next;

	if (so->catching_up)
	{
		next = pass_peek(scan, &so->catchup);
		if (next && m->have_cursor && cand_cmp(next, &m->cursor) <= 0)
		{
			*from = &so->catchup;
			return next;
		}
		merge_catchup(scan);
	}
	*from = m;
	while ((next = pass_peek(scan, m)) == NULL)
	{
		/* these lists are done: the next ones, with a fresh cursor */
		if (m->last >= so->nchains)
			return NULL;
		m->first = m->last;
		m->last = Min(so->nchains, m->last + kdindex_probes);
		m->have_cursor = false;
		m->exhausted = false;
		m->ncands = m->pos = 0;
		if (so->meta.trained && !so->unordered)
			prepare_set(scan, m);
	}
	return next;
}

/*
 * Has the scan consumed kdindex.max_scan_tuples candidates (index entries,
 * dead ones too)?  The rows already re-ranked are still returned.  Untrained
 * indexes and unordered queries are not bounded: they return every row.
 */
static inline bool
scan_bounded(KdScanOpaque so)
{
	return so->meta.trained && !so->unordered && kdindex_max_scan_tuples > 0 &&
		so->consumed >= kdindex_max_scan_tuples;
}

static bool
next_candidate(IndexScanDesc scan, KdCandidate *c)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *from;
	KdCandidate *next;

	if (scan_bounded(so))
		return false;
	next = peek_candidate(scan, &from);
	if (next == NULL)
		return false;
	*c = *next;
	from->pos++;
	from->cursor = *c;
	from->have_cursor = true;
	so->consumed++;
	return true;
}

/*
 * The exact distance of the row at tid, or false when no version of it is
 * visible to the scan's snapshot.
 */
static bool
exact_distance(IndexScanDesc scan, ItemPointer tid, double *dist)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	ItemPointerData fetchtid = *tid;
	MemoryContext old;
	Datum		value;
	bool		found;

	if (so->heapfetch == NULL)
	{
		old = MemoryContextSwitchTo(so->scancxt);
		so->heapfetch = kd_heap_fetch_begin(scan->heapRelation, scan->indexRelation);
		MemoryContextSwitchTo(old);
	}

	MemoryContextReset(so->tmpcxt);
	old = MemoryContextSwitchTo(so->tmpcxt);
	/*
	 * The fetch moves its TID to the version it found, a heap-only tuple of
	 * a HOT chain; the executor must get the chain's root, as the index holds
	 * it, or its own fetch finds nothing.
	 */
	found = kd_heap_fetch_value(so->heapfetch, &fetchtid, scan->xs_snapshot, &value);
	if (found)
	{
		int			dim;
		float	   *x = kd_datum_floats(value, so->typid, &dim);

		*dist = kd_exact_distance(so->metric, so->query, x, dim);
	}
	MemoryContextSwitchTo(old);
	return found;
}

/*
 * The scale on which a row's nearness and a centroid's compare: L2 distance
 * (cosine distance is half the squared distance of unit vectors), or minus
 * the inner product.
 */
static double
distance_scale(KdMetric metric, double d)
{
	return metric == KD_METRIC_COSINE ? sqrt(Max(2 * d, 0)) : d;
}

/* Re-rank up to n more candidates into the pool; false when none was left */
static bool
rerank_more(IndexScanDesc scan, int64 n)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdCandidate c;
	bool		any = false;

	while (n-- > 0 && next_candidate(scan, &c))
	{
		double		code = code_distance_value(so->metric, c.dist);

		any = true;
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
	return any;
}

/*
 * Could the next candidate be nearer than a row at exact distance d?  How far
 * code distances stray from exact ones is measured on the rows re-ranked so
 * far: the next one could be nearer if its code distance, less the mean
 * error and three standard deviations, is.
 */
static bool
next_may_be_nearer(IndexScanDesc scan, double d)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *from;
	KdCandidate *next;
	double		mean,
				var;

	if (scan_bounded(so) || so->nerr < 2)
		return false;
	next = peek_candidate(scan, &from);
	if (next == NULL)
		return false;
	mean = so->err_sum / so->nerr;
	var = Max(so->err_sumsq / so->nerr - mean * mean, 0);
	return d > code_distance_value(so->metric, next->dist) - mean - 3 * sqrt(var);
}

/*
 * Open the next kdindex.probes lists early when they could hold a row nearer
 * than d: when their nearest centroid, less the reach, is.  They first catch
 * up with the main lists: their rows up to the main cursor, due by code
 * distance already, are re-ranked at once; then they join the main lists.
 * So a walk past the first lists does not return all the far rows of the
 * lists read first before the near rows of the next.  The lookup tables of
 * the lists read at once stay within work_mem; past that, lists open only
 * when those read run out.
 */
static bool
open_nearer_lists(IndexScanDesc scan, double d)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *m = &so->main;
	KdPass	   *c = &so->catchup;
	int			n = Min(kdindex_probes, so->nchains - m->last);
	Size		perlist = sizeof(float) * (so->lutsize + 1) +
		(so->layout.blocked ? KdFastScanLutSize(so->meta.m) + sizeof(float) : 0);

	if (so->centroids == NULL || so->catching_up || n <= 0 || !so->have_reach ||
		distance_scale(so->metric, d) <= so->centroids[m->last] - so->reach ||
		(m->last - m->first + n) * perlist > (Size) work_mem * 1024)
		return false;
	memset(c, 0, sizeof(KdPass));
	c->first = m->last;
	c->last = m->last + n;
	c->cap = Max(kdindex_rerank, 64);
	prepare_set(scan, c);
	so->catching_up = true;
	return true;
}

/*
 * Rows the pool returns before it starts holding rows back.  A plain
 * ORDER BY ... LIMIT 10 stops before that and gets the first kdindex.rerank
 * candidates in exact order, as the setting says; a query that asks for more
 * (a filter rejecting rows, a deep LIMIT) gets the held-back, strict order.
 */
#define KD_HOLD_AFTER_ROWS 16

/* Re-rank candidates at each step of the pool (kdindex.rerank / 4, or 16) */
#define KD_RERANK_STEP(rerank)	Max((rerank) / 4, 16)

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
		if (so->consumed == 0)
			rerank_more(scan, kdindex_rerank);
		while (so->npool == 0 || so->catching_up ||
			   (so->nreturned >= KD_HOLD_AFTER_ROWS &&
				(open_nearer_lists(scan, so->pool[0].dist) ||
				 next_may_be_nearer(scan, so->pool[0].dist))))
			if (!rerank_more(scan, KD_RERANK_STEP(kdindex_rerank)))
				break;
	}
	if (so->npool == 0)
		return false;
	*c = pool_pop(so);
	so->nreturned++;
	return true;
}

/*
 * Rank the lists for the query, and put how near each centroid is on the
 * distance_scale (without the offsets of balanced lists): for L2 and cosine
 * the rank's distances are |q - c|^2 - |q|^2, for inner product -q.c.
 */
static void
set_centroids(KdScanOpaque so, const KdQuantizer *q)
{
	double		qq = kd_dot(so->unit, so->unit, so->dim);

	so->centroids = palloc(sizeof(float) * so->nchains);
	kd_ivf_rank_lists(q, so->unit, so->metric, so->order, so->centroids);
	for (int k = 0; k < so->nchains; k++)
	{
		double		d = so->centroids[k] - q->list_offsets[so->order[k]];

		so->centroids[k] = so->metric == KD_METRIC_IP ? d : sqrt(Max(d + qq, 0));
	}
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
		so->lutsize = q->m * q->ksub;
		so->adc_scan = q->ops->adc_scan;
		if (q->nlists > 0 && kdindex_rerank > 0)
			set_centroids(so, q);
		else if (q->nlists > 0)
			kd_ivf_rank_lists(q, so->unit, so->metric, so->order, NULL);
		prepare_set(scan, &so->main);
	}
	so->main.cap = so->meta.trained ? Max(kdindex_rerank, 64) : 1024;
	so->exact = !so->unordered && (!so->meta.trained || kdindex_rerank > 0);
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

	MemoryContextReset(so->querycxt);
	so->started = false;
	so->empty = false;
	so->null_query = false;
	so->unordered = false;
	so->query = NULL;
	so->unit = NULL;
	memset(&so->main, 0, sizeof(KdPass));
	memset(&so->catchup, 0, sizeof(KdPass));
	so->catching_up = false;
	so->centroids = NULL;
	so->have_reach = false;
	so->pool = NULL;
	so->pool_cap = so->npool = 0;
	so->consumed = 0;
	so->nreturned = 0;
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

	if (!so->started)
		start_scan(scan);
	if (so->empty || !next_row(scan, &c))
		return false;

	/*
	 * Every row reached is returned, a late one too (nearer than a row
	 * returned before it): the executor trusts the order and does not check
	 * it, and dropping the row would lose it for good.
	 */
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
		double		value = so->exact ? c.dist : code_distance_value(so->metric, c.dist);

		scan->xs_orderbyvals[0] = Float8GetDatum(value);
		scan->xs_orderbynulls[0] = false;
	}
	return true;
}

void
kd_endscan(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;

	if (so->heapfetch)
		kd_heap_fetch_end(so->heapfetch);
	MemoryContextDelete(so->scancxt);
	pfree(so);
	scan->opaque = NULL;
}
