/*
 * chains.c — what kdindex_train (retrain.c) reads from the index's own
 * chains, every list's with lists: the held-out queries' recall over every
 * code, before and after the switch, and a sample of the table's rows (their
 * TIDs), which stand for the table beside the teacher's documents when the
 * row term's weight is refitted.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"

#include "distill/chains.h"

typedef struct KdHit
{
	float		dist;
	ItemPointerData tid;
} KdHit;

/*
 * The tuples of chain page *blkno in row form (TID, code; tupsize apart,
 * whatever the page layout) into rows; returns how many, and moves *blkno
 * to the chain's next page
 */
static int
read_rows(Relation index, const KdLayout *layout, int tupsize, char *rows, BlockNumber *blkno)
{
	Buffer		buf = ReadBuffer(index, *blkno);
	Page		page;
	int			ntup;

	CHECK_FOR_INTERRUPTS();
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	ntup = KdPageGetOpaque(page)->ntuples;
	for (int i = 0; i < ntup; i++)
	{
		memcpy(rows + (Size) i * tupsize, kd_tuple_tid(page, layout, i), sizeof(ItemPointerData));
		kd_tuple_code(page, layout, i, (uint8 *) KdTupleCode(rows + (Size) i * tupsize));
	}
	*blkno = KdPageGetOpaque(page)->nextblkno;
	UnlockReleaseBuffer(buf);
	return ntup;
}

/*
 * Merge the ntup codes of rows (row form, tupsize apart) into one held-out
 * query's sorted top n (hb, *nb of them), skipping the query's own row
 */
static void
top_codes(KdQuantizer *q, KdMetric metric, const float *lut, float bias, const char *rows,
		  int tupsize, int ntup, ItemPointer source, KdHit *hb, int *nb, int n, float *dists)
{
	q->ops->adc_scan(lut, kd_lut_rows(q), q->nbits, metric, (const uint8 *) KdTupleCode(rows), tupsize, ntup, dists);
	for (int i = 0; i < ntup; i++)
	{
		ItemPointer tid = (ItemPointer) (rows + (Size) i * tupsize);
		float		d = dists[i] + bias;
		int			pos;

		if (*nb == n && d >= hb[n - 1].dist)
			continue;
		if (ItemPointerEquals(tid, source))
			continue;
		/* insertion into the sorted top n */
		pos = *nb < n ? (*nb)++ : n - 1;
		while (pos > 0 && hb[pos - 1].dist > d)
		{
			hb[pos] = hb[pos - 1];
			pos--;
		}
		hb[pos].dist = d;
		hb[pos].tid = *tid;
	}
}

/*
 * Codes-only recall@topn (among the codes' first depth) of the held-out
 * queries over the codes of the data chains that meta describes (the flat
 * one, or each query's ho->probes nearest lists, as a scan reads them),
 * decoded with q; and into *first that among the codes' first topn, the
 * recall of a scan without re-rank.
 */
double
kd_chain_recall(Relation index, const KdMetaPageData *meta, KdQuantizer *q, KdMetric metric,
			 const KdHeldOut *ho, int dim, double *first)
{
	int			lutsize = kd_lut_rows(q) * q->ksub;
	int			tupsize = KdTupleSize(meta->code_size);
	int			nchains = Max(meta->nlists, 1);
	KdLayout	layout;
	char	   *rows;
	float	   *luts = palloc_extended(sizeof(float) * ho->n * lutsize, MCXT_ALLOC_HUGE);
	float	   *bias = palloc(sizeof(float) * ho->n);
	KdHit	   *best = palloc(sizeof(KdHit) * ho->n * ho->depth);
	int		   *nbest = palloc0(sizeof(int) * ho->n);
	BlockNumber *heads = palloc(sizeof(BlockNumber) * nchains);
	float	   *dists;
	bool	   *reads = NULL;	/* n x nchains: does query h read list c */
	int64		hits = 0,
				first_hits = 0,
				total = 0;

	if (meta->nlists > 0 && ho->probes > 0 && ho->probes < meta->nlists)
	{
		int32	   *order = palloc(sizeof(int32) * meta->nlists);

		reads = palloc_extended(Max((Size) ho->n * nchains, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		for (int h = 0; h < ho->n; h++)
		{
			kd_ivf_rank_lists(q, ho->queries + (Size) h * dim, metric, order, NULL);
			for (int p = 0; p < ho->probes; p++)
				reads[(Size) h * nchains + order[p]] = true;
		}
		pfree(order);
	}
	kd_layout(&layout, meta);
	rows = palloc((Size) layout.capacity * tupsize);
	dists = palloc(sizeof(float) * layout.capacity);
	kd_read_list_heads(index, meta, heads);

	for (int c = 0; c < nchains; c++)
	{
		BlockNumber blkno = heads[c];

		/* a list's codes are scored with the table of the query less its centroid */
		for (int h = 0; BlockNumberIsValid(blkno) && h < ho->n; h++)
		{
			if (reads && !reads[(Size) h * nchains + c])
				continue;
			kd_ivf_list_lut(q, ho->queries + (Size) h * dim, metric, c, luts + (Size) h * lutsize, &bias[h]);
			kd_rowterm_lut(q, metric, ho->queries + (Size) h * dim, luts + (Size) h * lutsize);
		}
		while (blkno != InvalidBlockNumber)
		{
			int			ntup = read_rows(index, &layout, tupsize, rows, &blkno);

			for (int h = 0; h < ho->n; h++)
				if (!reads || reads[(Size) h * nchains + c])
					top_codes(q, metric, luts + (Size) h * lutsize, bias[h], rows, tupsize, ntup,
							  &ho->sources[h], best + (Size) h * ho->depth, &nbest[h], ho->depth, dists);
		}
	}
	for (int h = 0; h < ho->n; h++)
		for (int r = 0; r < ho->topn; r++)
		{
			ItemPointer truth = &ho->truth[(Size) h * ho->topn + r];

			if (!ItemPointerIsValid(truth))
				continue;
			total++;
			for (int i = 0; i < nbest[h]; i++)
				if (ItemPointerEquals(&best[(Size) h * ho->depth + i].tid, truth))
				{
					hits++;
					first_hits += i < ho->topn;
					break;
				}
		}
	pfree(luts);
	pfree(bias);
	pfree(best);
	pfree(nbest);
	pfree(heads);
	pfree(dists);
	pfree(rows);
	if (reads)
		pfree(reads);
	*first = total > 0 ? (double) first_hits / total : 0;
	return total > 0 ? (double) hits / total : 0;
}


/*
 * A row's place in the sample: a hash of its TID, so that the same table
 * gives the same sample whatever order its index's chains hold the rows in
 * (a parallel build's workers append in the order they finish)
 */
static inline uint64
tid_rank(const ItemPointerData *tid)
{
	return hash_bytes_uint32_extended(ItemPointerGetBlockNumber(tid), 0) ^
		hash_bytes_uint32_extended(ItemPointerGetOffsetNumber(tid), 0x6B64);
}

/* Keep tid among the n of least rank (a max-heap of ranks, TIDs beside) */
static void
keep_least(uint64 *hr, ItemPointerData *ht, int *k, int n, uint64 r, const ItemPointerData *tid)
{
	int			i;

	if (*k < n)
	{
		for (i = (*k)++; i > 0 && hr[(i - 1) / 2] < r; i = (i - 1) / 2)
		{
			hr[i] = hr[(i - 1) / 2];
			ht[i] = ht[(i - 1) / 2];
		}
	}
	else
	{
		if (r >= hr[0])
			return;
		for (i = 0;;)
		{
			int			c = 2 * i + 1;

			if (c >= n)
				break;
			if (c + 1 < n && hr[c + 1] > hr[c])
				c++;
			if (hr[c] <= r)
				break;
			hr[i] = hr[c];
			ht[i] = ht[c];
			i = c;
		}
	}
	hr[i] = r;
	ht[i] = *tid;
}

static int
tid_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
}

/*
 * Up to n TIDs of the rows the chains meta describes into tids, the n of
 * least tid_rank (a uniform sample, the same for the same rows), in TID
 * order; returns how many, and in rows how many the chains hold (dead ones
 * too).  Rows inserted meanwhile may or may not be seen; either is a fair
 * sample.
 */
int
kd_chain_sample(Relation index, const KdMetaPageData *meta, int n, ItemPointerData *tids,
				int64 *rows)
{
	int			nchains = Max(meta->nlists, 1);
	BlockNumber *heads = palloc(sizeof(BlockNumber) * nchains);
	int			tupsize = KdTupleSize(meta->code_size);
	KdLayout	layout;
	char	   *rowbuf;
	uint64	   *ranks = palloc(sizeof(uint64) * Max(n, 1));
	int			kept = 0;
	int64		seen = 0;

	kd_layout(&layout, meta);
	rowbuf = palloc((Size) layout.capacity * tupsize);
	kd_read_list_heads(index, meta, heads);
	for (int c = 0; c < nchains && n > 0; c++)
	{
		BlockNumber blkno = heads[c];

		while (blkno != InvalidBlockNumber)
		{
			int			ntup = read_rows(index, &layout, tupsize, rowbuf, &blkno);

			for (int i = 0; i < ntup; i++, seen++)
			{
				ItemPointer tid = (ItemPointer) (rowbuf + (Size) i * tupsize);

				keep_least(ranks, tids, &kept, n, tid_rank(tid), tid);
			}
		}
	}
	qsort(tids, kept, sizeof(ItemPointerData), tid_cmp);
	pfree(heads);
	pfree(rowbuf);
	pfree(ranks);
	*rows = seen;
	return kept;
}
