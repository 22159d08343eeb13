/*
 * scan.h — the state of an ordered scan, shared by scan.c (re-rank, the
 * access method's calls) and scanlists.c (candidate passes over the lists).
 */
#ifndef KDINDEX_SCAN_H
#define KDINDEX_SCAN_H

#include <math.h>

#include "access/relscan.h"
#include "miscadmin.h"

#include "kdindex.h"

/* dist is double: re-ranked rows must sort exactly as the operator's values */
typedef struct KdCandidate
{
	ItemPointerData tid;
	int16		rank;			/* its list's place in the order (0: flat) */
	uint16		off;			/* where the pass saw it: tuple off of block blkno */
	BlockNumber blkno;
	double		dist;
} KdCandidate;

typedef struct KdRefineScan KdRefineScan;

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
	int			lutsize;		/* m x ksub, then the row term's tables */
	KdLayout	layout;			/* of the data pages */
	void		(*adc_scan) (const float *lut, int m, int nbits, KdMetric metric,
							 const uint8 *codes, int stride, int n, float *out);
	float	   *ivf_qlut;		/* IVF: the query's table shared by the lists */
	float		ivf_qbias;		/* (ivftables.c), NULL until built */

	/*
	 * Bounds, from the settings when the scan starts: candidates it may
	 * consume (kdindex.max_scan_tuples, or the first kdindex.rerank with
	 * kdindex.iterative_scan = off), lists it may read, and whether a row
	 * nearer than one already returned is dropped (strict_order).
	 */
	int64		max_consumed;	/* 0: no bound */
	int			max_lists;
	bool		strict;
	bool		have_last;
	double		last_value;		/* ORDER BY value of the row returned last */

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

	/*
	 * With refinement (refine.c): candidates taken from the passes a chunk
	 * at a time, re-scored by their refinement codes, and handed to the
	 * re-rank in that order; heap_depth of them before the first rows
	 */
	KdRefineScan *refine;		/* NULL: none */
	KdCandidate *refined;
	int			nrefined;
	int			refined_pos;
	int			refined_cap;
	int64		taken;			/* candidates taken from the passes */
	int			heap_depth;		/* kdindex.rerank, or kdindex.refine_rerank */

	/* heap access for the re-rank, and its batch of candidates */
	KdHeapFetch *heapfetch;
	KdCandidate *batch;
	int64		reranked;		/* candidates re-ranked (for DEBUG1) */

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
	/* unordered: a NaN (a lookup table overflowed) sorts after every number */
	if (isnan(a->dist) != isnan(b->dist))
		return isnan(a->dist) ? 1 : -1;
	return ItemPointerCompare((ItemPointer) &a->tid, (ItemPointer) &b->tid);
}

/*
 * The scale on which a row's nearness and a centroid's compare: L2 distance
 * (cosine distance is half the squared distance of unit vectors), or minus
 * the inner product.
 */
static inline double
distance_scale(KdMetric metric, double d)
{
	return metric == KD_METRIC_COSINE ? sqrt(Max(2 * d, 0)) : d;
}

/* The memory a scan's passes and lookup tables may use */
static inline double
kd_scan_mem(void)
{
	return (double) work_mem * 1024 * kdindex_scan_mem_multiplier;
}

/* ivftables.c */
extern void kd_ivf_scan_luts(IndexScanDesc scan, const int32 *lists, int n, float *luts,
							 float *biases);

/* scanlists.c */
extern void kd_scan_prepare_lists(IndexScanDesc scan, KdPass *p);
extern void kd_scan_rank_lists(KdScanOpaque so, const KdQuantizer *q);
extern KdCandidate *kd_scan_peek(IndexScanDesc scan, KdPass **from);
extern bool kd_scan_open_lists(IndexScanDesc scan, double d);

#endif							/* KDINDEX_SCAN_H */
