/*
 * scan.c — ordered scans: ADC lookup table, candidate passes over the codes,
 * exact re-rank on the heap.
 *
 * A pass reads every code once and keeps, in a bounded max-heap, the best
 * `cap` candidates (by code distance, ties by TID) that come after the last
 * candidate already consumed; the next pass, if the executor keeps asking,
 * resumes after that one with a larger cap.  Candidates are consumed in
 * batches of kdindex.rerank: each batch is re-scored with the exact distance
 * on the heap tuple (fetched under the scan's snapshot, the indexed value
 * recomputed with FormIndexDatum so expression indexes work), sorted, and
 * returned.  Rows invisible to the snapshot drop out there.  With
 * kdindex.rerank = 0 candidates are returned in code order.
 *
 * The executor trusts this order (xs_recheckorderby is false): each batch
 * is in exact order; a later batch, needed only when a LIMIT exceeds the
 * re-rank depth or a filter rejects rows, continues with the next
 * candidates by code distance.
 */
#include "postgres.h"

#include <math.h>

#include "access/relscan.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "distance.h"
#include "kdindex.h"
#include "vector.h"

typedef struct KdCandidate
{
	ItemPointerData tid;
	float		dist;
} KdCandidate;

typedef struct KdScanOpaqueData
{
	/* the query */
	KdMetric	metric;
	Oid			typid;
	bool		started;
	bool		empty;			/* nothing to return (zero query under cosine) */
	bool		null_query;		/* ORDER BY col <-> NULL: any order */
	float	   *query;
	int			dim;

	/* index state read at the first call */
	KdMetaPageData meta;
	float	   *lut;
	float		bias;
	void		(*adc_scan) (const float *lut, int m, int nbits, KdMetric metric,
							 const uint8 *codes, int stride, int n, float *out);

	/* candidate passes */
	KdCandidate *cands;			/* current pass, ascending */
	int			ncands;
	int			pos;
	int			cap;
	bool		exhausted;		/* the last pass found everything left */
	bool		have_cursor;
	KdCandidate cursor;			/* last candidate consumed */

	/* re-ranked batch */
	KdCandidate *batch;
	int			batch_cap;
	int			nbatch;
	int			batch_pos;
	bool		exact;			/* batch holds exact distances */

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

/*
 * One pass over all codes: the best so->cap candidates after the cursor.
 * Untrained indexes (and NULL queries) have no code distance: every tuple
 * scores 0, so candidates come in TID order.
 */
static void
run_pass(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	int			tupsize = KdTupleSize(so->meta.code_size);
	bool		use_codes = so->meta.trained && !so->null_query;
	float	   *dists = palloc(sizeof(float) * KdPageCapacity(tupsize));
	BlockNumber blkno = so->meta.data_head;
	int			n = 0;

	if (so->cands == NULL)
		so->cands = MemoryContextAllocHuge(so->querycxt, sizeof(KdCandidate) * so->cap);
	else
		so->cands = repalloc_huge(so->cands, sizeof(KdCandidate) * so->cap);

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
		if (use_codes)
			so->adc_scan(so->lut, so->meta.m, so->meta.nbits, so->metric,
						 (const uint8 *) KdTupleCode(KdPageTuple(page, tupsize, 0)),
						 tupsize, ntup, dists);
		for (int i = 0; i < ntup; i++)
		{
			KdCandidate c;

			c.dist = use_codes ? dists[i] + so->bias : 0;
			/* most codes lose to the worst kept candidate: reject before anything else */
			if (n == so->cap && c.dist > so->cands[0].dist)
				continue;
			memcpy(&c.tid, KdPageTuple(page, tupsize, i), sizeof(ItemPointerData));
			if (so->have_cursor && cand_cmp(&c, &so->cursor) <= 0)
				continue;
			heap_push(so->cands, &n, so->cap, &c);
		}
		blkno = KdPageGetOpaque(page)->nextblkno;
		UnlockReleaseBuffer(buf);
	}
	pfree(dists);

	qsort(so->cands, n, sizeof(KdCandidate), cand_qsort_cmp);
	so->ncands = n;
	so->pos = 0;
	so->exhausted = n < so->cap;
}

/* The next candidate by code distance, running a new pass when needed */
static bool
next_candidate(IndexScanDesc scan, KdCandidate *c)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;

	if (so->pos >= so->ncands)
	{
		if (so->exhausted)
			return false;
		/* widen each further pass, within work_mem */
		if (so->ncands > 0)
			so->cap = (int) Max(so->cap, Min((int64) so->cap * 4,
											 (int64) work_mem * 1024 / sizeof(KdCandidate)));
		run_pass(scan);
		if (so->ncands == 0)
			return false;
	}
	*c = so->cands[so->pos++];
	so->cursor = *c;
	so->have_cursor = true;
	return true;
}

/*
 * The exact distance of the row at tid, or false when no version of it is
 * visible to the scan's snapshot.
 */
static bool
exact_distance(IndexScanDesc scan, ItemPointer tid, float *dist)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
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
	found = kd_heap_fetch_value(so->heapfetch, tid, scan->xs_snapshot, &value);
	if (found)
	{
		int			dim;
		float	   *x = kd_datum_floats(value, so->typid, &dim);

		*dist = (float) kd_exact_distance(so->metric, so->query, x, dim);
	}
	MemoryContextSwitchTo(old);
	return found;
}

/*
 * Fill the next batch.  Re-rank: the next kdindex.rerank candidates (all of
 * them while the index is untrained) with exact distances, sorted.  Codes
 * only: the next candidates as they are.
 */
static bool
next_batch(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	bool		untrained = !so->meta.trained && !so->null_query;
	int			depth = untrained ? INT_MAX : (so->null_query ? 0 : kdindex_rerank);
	int			want = depth > 0 ? Min(depth, so->cap) : Min(so->cap, 1024);
	KdCandidate c;

	so->nbatch = 0;
	so->batch_pos = 0;
	so->exact = depth > 0;
	while ((untrained || so->nbatch < want) && next_candidate(scan, &c))
	{
		if (so->exact && !exact_distance(scan, &c.tid, &c.dist))
			continue;
		if (so->nbatch >= so->batch_cap)
		{
			/* untrained indexes re-rank everything: the batch grows */
			so->batch_cap = Max(want, so->batch_cap * 2);
			if (so->batch == NULL)
				so->batch = MemoryContextAllocHuge(so->querycxt, sizeof(KdCandidate) * so->batch_cap);
			else
				so->batch = repalloc_huge(so->batch, sizeof(KdCandidate) * so->batch_cap);
		}
		so->batch[so->nbatch++] = c;
	}
	if (so->exact)
		qsort(so->batch, so->nbatch, sizeof(KdCandidate), cand_qsort_cmp);
	return so->nbatch > 0;
}

/* Read the index state, prepare the query and its lookup table */
static void
start_scan(IndexScanDesc scan)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	MemoryContext old = MemoryContextSwitchTo(so->querycxt);

	kd_read_meta(scan->indexRelation, &so->meta);
	if (so->meta.data_head == InvalidBlockNumber)
		so->empty = true;
	if (!so->empty && !so->null_query)
	{
		if (so->meta.dim != 0 && so->dim != so->meta.dim)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("different vector dimensions %d and %d", so->meta.dim, so->dim)));
		if (so->meta.trained)
		{
			KdQuantizer *q = kd_get_quantizer(scan->indexRelation, &so->meta);
			float	   *unit = so->query;

			if (so->metric == KD_METRIC_COSINE)
			{
				unit = palloc(sizeof(float) * so->dim);
				memcpy(unit, so->query, sizeof(float) * so->dim);
				kd_normalize(unit, so->dim);
			}
			so->lut = palloc(sizeof(float) * q->m * q->ksub);
			q->ops->compute_lut(q, unit, so->metric, so->lut, &so->bias);
			so->adc_scan = q->ops->adc_scan;
		}
	}
	so->cap = so->meta.trained ? Max(kdindex_rerank, 64) : 1024;
	so->started = true;
	MemoryContextSwitchTo(old);
}

/* What the operator would return, from a code distance */
static double
code_distance_value(KdMetric metric, float d)
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
	so->query = NULL;
	so->lut = NULL;
	so->cands = NULL;
	so->batch = NULL;
	so->batch_cap = 0;
	so->ncands = so->pos = so->nbatch = so->batch_pos = 0;
	so->exhausted = false;
	so->have_cursor = false;

	if (scan->numberOfOrderBys == 0)
	{
		/* the planner only uses kdindex to order */
		so->empty = true;
		return;
	}
	if (scan->orderByData[0].sk_flags & SK_ISNULL)
	{
		so->null_query = true;
		return;
	}

	old = MemoryContextSwitchTo(so->querycxt);
	{
		float	   *src = kd_datum_floats(scan->orderByData[0].sk_argument, so->typid, &so->dim);

		kd_check_finite(src, so->dim);
		so->query = palloc(sizeof(float) * so->dim);
		memcpy(so->query, src, sizeof(float) * so->dim);
		/* a zero query has no cosine distance to anything (pgvector returns no rows too) */
		if (so->metric == KD_METRIC_COSINE && kd_dot(so->query, so->query, so->dim) == 0)
			so->empty = true;
	}
	MemoryContextSwitchTo(old);
}

bool
kd_gettuple(IndexScanDesc scan, ScanDirection dir)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdCandidate *c;

	if (!so->started)
		start_scan(scan);
	if (so->empty)
		return false;
	if (so->batch_pos >= so->nbatch && !next_batch(scan))
		return false;

	c = &so->batch[so->batch_pos++];
	scan->xs_heaptid = c->tid;
	scan->xs_recheck = false;
	scan->xs_recheckorderby = false;
	if (so->null_query)
	{
		scan->xs_orderbyvals[0] = (Datum) 0;
		scan->xs_orderbynulls[0] = true;
	}
	else
	{
		double		value = so->exact ? c->dist : code_distance_value(so->metric, c->dist);

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
