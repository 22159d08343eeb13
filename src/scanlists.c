/*
 * scanlists.c — the candidate passes of an ordered scan over the lists (or
 * the flat chain): lookup tables, passes keeping the best candidates after a
 * cursor (the 4-bit fast scan among them), moving on to further lists, and
 * opening lists early while a walk goes on.  scan.c re-ranks what these
 * passes yield.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "miscadmin.h"
#include "port/pg_bitutils.h"
#include "utils/memutils.h"

#include "distance.h"
#include "scan.h"

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

/* Lookup tables for the lists of a pass */
void
kd_scan_prepare_lists(IndexScanDesc scan, KdPass *p)
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
	kd_ivf_scan_luts(scan, so->order + p->first, n, p->luts, p->biases);
	/* the row term's tables, after the m x ksub entries */
	for (int i = 0; i < n; i++)
		kd_rowterm_lut(q, so->metric, so->unit, p->luts + (Size) i * so->lutsize);
	if (so->layout.blocked)
	{
		if (p->qluts)
		{
			pfree(p->qluts);
			pfree(p->qscales);
		}
		p->qluts = palloc(KdFastScanLutSize(so->layout.m) * n);
		p->qscales = palloc(sizeof(float) * n);
		for (int i = 0; i < n; i++)
		{
			float		qbias;

			kd_fastscan_lut(p->luts + (Size) i * so->lutsize, so->layout.m,
							p->qluts + (Size) i * KdFastScanLutSize(so->layout.m), &p->qscales[i], &qbias);
			p->biases[i] += qbias;
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * Keep a candidate if it beats the worst kept one and comes after the cursor
 * (with where it is, for refine.c to read its codes back)
 */
static inline void
consider(KdPass *p, int *n, double dist, ItemPointer tid, int rank, BlockNumber blkno, int off)
{
	KdCandidate c;

	if (*n == p->cap && dist > p->cands[0].dist)
		return;
	c.dist = dist;
	c.tid = *tid;
	c.rank = rank;
	c.blkno = blkno;
	c.off = (uint16) off;
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
scan_blocks(KdScanOpaque so, KdPass *p, Page page, BlockNumber blkno, int ntup, int set, int *n)
{
	int			mb = KdFastScanRows(so->layout.m);
	const uint8 *qlut = p->qluts + (Size) set * KdFastScanLutSize(so->layout.m);
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
					 kd_tuple_tid(page, &so->layout, b * KDINDEX_BLOCK_ROWS + s), p->first + set,
					 blkno, b * KDINDEX_BLOCK_ROWS + s);
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
				scan_blocks(so, p, page, blkno, ntup, set, &n);
			else
			{
				if (use_codes)
					so->adc_scan(p->luts + (Size) set * so->lutsize, so->layout.m, so->meta.nbits,
								 so->metric,
								 (const uint8 *) KdTupleCode(KdPageTuple(page, so->layout.tupsize, 0)),
								 so->layout.tupsize, ntup, dists);
				for (int i = 0; i < ntup; i++)
					consider(p, &n, use_codes ? dists[i] + bias : 0, kd_tuple_tid(page, &so->layout, i), k,
							 blkno, i);
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
		/* widen each further pass, within kd_scan_mem() */
		if (p->ncands > 0)
			p->cap = (int) Max(p->cap, Min((double) p->cap * 4,
										   Min(kd_scan_mem() / sizeof(KdCandidate), INT_MAX / 2)));
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
		Size		qsize = KdFastScanLutSize(so->layout.m);

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
KdCandidate *
kd_scan_peek(IndexScanDesc scan, KdPass **from)
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
		if (m->last >= so->max_lists)
			return NULL;
		m->first = m->last;
		m->last = Min(so->max_lists, m->last + kdindex_probes);
		m->have_cursor = false;
		m->exhausted = false;
		m->ncands = m->pos = 0;
		if (so->meta.trained && !so->unordered)
			kd_scan_prepare_lists(scan, m);
	}
	return next;
}

/*
 * Open the next kdindex.probes lists early when they could hold a row nearer
 * than d: when their nearest centroid, less the reach, is.  They first catch
 * up with the main lists: their rows up to the main cursor, due by code
 * distance already, are re-ranked at once; then they join the main lists.
 * So a walk past the first lists does not return all the far rows of the
 * lists read first before the near rows of the next.  The lookup tables of
 * the lists read at once stay within kd_scan_mem(); past that, lists open only
 * when those read run out.
 */
bool
kd_scan_open_lists(IndexScanDesc scan, double d)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdPass	   *m = &so->main;
	KdPass	   *c = &so->catchup;
	int			n = Min(kdindex_probes, so->max_lists - m->last);
	Size		perlist = sizeof(float) * (so->lutsize + 1) +
		(so->layout.blocked ? KdFastScanLutSize(so->layout.m) + sizeof(float) : 0);

	if (so->centroids == NULL || so->catching_up || n <= 0 || !so->have_reach ||
		distance_scale(so->metric, d) <= so->centroids[m->last] - so->reach ||
		(m->last - m->first + n) * perlist > kd_scan_mem())
		return false;
	memset(c, 0, sizeof(KdPass));
	c->first = m->last;
	c->last = m->last + n;
	c->cap = Max(kdindex_rerank, 64);
	kd_scan_prepare_lists(scan, c);
	so->catching_up = true;
	return true;
}

/*
 * Rank the lists for the query, and put how near each centroid is on the
 * distance_scale (without the offsets of balanced lists): for L2 and cosine
 * the rank's distances are |q - c|^2 - |q|^2, for inner product -q.c, for
 * L1 |q - c|_1.
 */
void
kd_scan_rank_lists(KdScanOpaque so, const KdQuantizer *q)
{
	double		qq = kd_dot(so->unit, so->unit, so->dim);

	so->centroids = palloc(sizeof(float) * so->nchains);
	kd_ivf_rank_lists(q, so->unit, so->metric, so->order, so->centroids);
	if (so->metric == KD_METRIC_L1)
		return;					/* L1 distances already, without offsets */
	for (int k = 0; k < so->nchains; k++)
	{
		double		d = so->centroids[k] - q->list_offsets[so->order[k]];

		so->centroids[k] = so->metric == KD_METRIC_IP ? d : sqrt(Max(d + qq, 0));
	}
}
