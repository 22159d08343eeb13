/*
 * refine.c — in-index refinement (WITH (refine = N)): a second, finer code
 * per row that re-scores a scan's candidates before the heap is touched.
 *
 * The refinement is an 8-bit PQ of N sub-quantizers (N bytes a row) trained
 * on the rows' residuals x - x̂, x̂ what the index's own code decodes to, in
 * the space its codes live in: the row itself for PQ and AQ (less its list's
 * centroid with lists, which x̂ adds back), OPQ's rotated space for OPQ.  A
 * row's refined reconstruction is x̂ + r̂, and a candidate's refined distance
 * is the index's metric between the query (in the same space) and x̂ + r̂, on
 * the scale of code distances (squared L2; squared distance of unit vectors
 * under cosine; minus the inner product; L1).  Rotations keep all but L1,
 * which only PQ supports anyway.
 *
 * Its codes follow the index's own in each row tuple (the row layout only:
 * the 4-bit block layout keeps codes transposed for the fast scan), so a
 * candidate's refinement code is read back from the index position the
 * candidate pass saw it at; the pass itself reads only the first bytes of
 * each tuple.  Its parameters travel inside the quantizer's blob, so build,
 * self-training, kdindex_train and REINDEX write them through the one way
 * generation.c lays out a generation.
 *
 * Per candidate a refined distance costs decoding both codes and one pass
 * over the dimensions (about a microsecond at 784 dimensions), against a few
 * microseconds for a heap fetch and its detoast.
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "distance.h"
#include "refine.h"
#include "scan.h"

/* Rows the refinement is trained on at most (Faiss's PQ takes 256 a codeword) */
#define KD_REFINE_TRAIN_ROWS 65536
/* Rows encoded at once */
#define KD_REFINE_BATCH 1024

/*
 * Refuse what cannot be refined, when the options are set: the 4-bit block
 * layout has no room for more bytes per row, and OPQ with lists codes each
 * row's residual from its centroid in the rotated space, where a scan would
 * have to rotate every list's centroid too.
 */
void
kd_refine_check_options(int refine, KdQuantizerKind quantizer, int nbits, int lists)
{
	if (refine == 0)
		return;
	if (nbits != 8)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("refine needs nbits = 8"),
				 errdetail("The 4-bit fast-scan layout stores codes transposed in blocks, with no room for refinement codes.")));
	if (quantizer == KD_QUANT_OPQ && lists > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("refine is not supported for quantizer = 'opq' with lists"),
				 errhint("Use refine with flat OPQ (lists = 0), or with PQ or AQ.")));
}

/* ... and once the dimension is known: N sub-vectors of whole dimensions */
void
kd_refine_check_dim(int refine, int dim)
{
	if (refine == 0 || dim == 0)
		return;
	if (refine > dim)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refine = %d exceeds the vector dimension %d", refine, dim),
				 errdetail("The refinement spends one byte per sub-vector of at least one dimension.")));
	if (dim % refine != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vector dimension %d is not divisible by refine = %d", dim, refine),
				 errhint("Choose refine dividing the dimension.")));
}

/* Give q the refinement r (q frees it); NULL drops q's */
void
kd_refine_attach(KdQuantizer *q, KdQuantizer *r)
{
	if (q->refine)
		kd_quantizer_free(q->refine);
	q->refine = r;
	if (r)
		MemoryContextSetParent(r->cxt, q->cxt);
}

void
kd_refine_drop(KdQuantizer *q)
{
	kd_refine_attach(q, NULL);
}

/*
 * Residuals of n rows from what their codes (n x q->code_size) decode to,
 * in the refinement's space (see the file header)
 */
static void
residuals(const KdQuantizer *q, const float *x, int64 n, const int32 *lists,
		  const uint8 *codes, float *out)
{
	float	   *xhat = palloc_extended(sizeof(float) * n * q->dim, MCXT_ALLOC_HUGE);

	if (q->kind == KD_QUANT_OPQ)
	{
		KdQuantizer *inner = kd_opq_inner((KdQuantizer *) q);

		kd_opq_rotate(q, x, n, out);
		inner->ops->decode(inner, codes, n, xhat);
	}
	else
	{
		memcpy(out, x, sizeof(float) * n * q->dim);
		kd_quantizer_decode(q, lists, codes, n, xhat);
	}
	for (int64 i = 0; i < n * q->dim; i++)
		out[i] -= xhat[i];
	pfree(xhat);
}

/* Residuals of the n rows x from their codes, encoded here a batch at a time */
static void
batch_residuals(const KdQuantizer *q, const float *x, int64 n, float *out)
{
	uint8	   *codes = palloc(sizeof(uint8) * KD_REFINE_BATCH * q->code_size);
	int32	   *lists = palloc(sizeof(int32) * KD_REFINE_BATCH);

	for (int64 start = 0; start < n; start += KD_REFINE_BATCH)
	{
		int64		nb = Min(KD_REFINE_BATCH, n - start);

		CHECK_FOR_INTERRUPTS();
		kd_quantizer_encode(q, x + start * q->dim, nb, lists, codes);
		residuals(q, x + start * q->dim, nb, lists, codes, out + start * q->dim);
	}
	pfree(codes);
	pfree(lists);
}

/*
 * Train a refinement of `bytes` sub-quantizers for q on n sample rows x
 * (replacing q's): on at most KD_REFINE_TRAIN_ROWS of them, spread over the
 * sample, and as many as a quarter of maintenance_work_mem holds.
 */
void
kd_refine_train(KdQuantizer *q, const float *x, int64 n, int bytes)
{
	Size		rowbytes = sizeof(float) * q->dim;
	int64		ntrain = Min(n, KD_REFINE_TRAIN_ROWS);
	float	   *rows;
	float	   *resid;
	KdQuantizer *r;

	kd_refine_check_dim(bytes, q->dim);
	ntrain = Min(ntrain, (int64) maintenance_work_mem * 1024 / 4 / (2 * rowbytes));
	ntrain = Max(ntrain, Min(n, 256));
	rows = palloc_extended(rowbytes * ntrain, MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < ntrain; i++)
		memcpy(rows + i * q->dim, x + (i * n / ntrain) * q->dim, rowbytes);
	resid = palloc_extended(rowbytes * ntrain, MCXT_ALLOC_HUGE);
	batch_residuals(q, rows, ntrain, resid);
	pfree(rows);

	r = kd_quantizer_create(KD_QUANT_PQ, q->dim, bytes, 8);
	r->metric = KD_METRIC_L2;
	kd_quantizer_train(r, resid, ntrain);
	pfree(resid);
	kd_refine_attach(q, r);
}

/*
 * The refinement's blob, its precision judged on the residuals of the first
 * n rows of x (kd_quantizer_serialize embeds it in q's)
 */
char *
kd_refine_serialize(KdQuantizer *q, const float *x, int64 n, Size *size)
{
	float	   *resid = palloc_extended(sizeof(float) * Max(n, 1) * q->dim, MCXT_ALLOC_HUGE);
	char	   *blob;

	batch_residuals(q, x, n, resid);
	blob = kd_quantizer_serialize(q->refine, resid, n, size);
	pfree(resid);
	return blob;
}

/*
 * Encode n rows to row codes (n x kd_row_code_size(q)): q's code, then the
 * refinement's code of the residual.  lists as kd_quantizer_encode's.
 */
void
kd_encode_rows(const KdQuantizer *q, const float *x, int64 n, int32 *lists, uint8 *rows)
{
	const KdQuantizer *r = q->refine;
	int			rs = kd_row_code_size(q);
	uint8	   *codes;
	uint8	   *rcodes;
	int32	   *blists;
	float	   *resid;

	if (r == NULL)
	{
		kd_quantizer_encode(q, x, n, lists, rows);
		return;
	}
	codes = palloc(sizeof(uint8) * KD_REFINE_BATCH * q->code_size);
	rcodes = palloc(sizeof(uint8) * KD_REFINE_BATCH * r->code_size);
	blists = palloc(sizeof(int32) * KD_REFINE_BATCH);
	resid = palloc_extended(sizeof(float) * Min(n, KD_REFINE_BATCH) * q->dim, MCXT_ALLOC_HUGE);
	for (int64 start = 0; start < n; start += KD_REFINE_BATCH)
	{
		int64		nb = Min(KD_REFINE_BATCH, n - start);

		kd_quantizer_encode(q, x + start * q->dim, nb, blists, codes);
		residuals(q, x + start * q->dim, nb, blists, codes, resid);
		r->ops->encode(r, resid, nb, rcodes);
		for (int64 i = 0; i < nb; i++)
		{
			uint8	   *row = rows + (start + i) * rs;

			memcpy(row, codes + i * q->code_size, q->code_size);
			memcpy(row + q->code_size, rcodes + i * r->code_size, r->code_size);
		}
		if (lists)
			memcpy(lists + start, blists, sizeof(int32) * nb);
	}
	pfree(codes);
	pfree(rcodes);
	pfree(blists);
	pfree(resid);
}

/* A scan's refinement: the query in the refinement's space, and room to decode */
struct KdRefineScan
{
	float	   *query;
	float	   *xhat;
	float	   *rhat;
	int64		refined;		/* candidates re-scored (for DEBUG1) */
};

/*
 * Get a scan ready to refine its candidates, or NULL when its index has no
 * refinement (called in querycxt, at the start of each query)
 */
KdRefineScan *
kd_refine_begin(KdScanOpaque so, const KdQuantizer *q)
{
	KdRefineScan *rs;

	if (q->refine == NULL || so->layout.blocked)
		return NULL;
	rs = palloc0(sizeof(KdRefineScan));
	rs->query = palloc(sizeof(float) * q->dim);
	rs->xhat = palloc(sizeof(float) * q->dim);
	rs->rhat = palloc(sizeof(float) * q->dim);
	if (q->kind == KD_QUANT_OPQ)
		kd_opq_rotate(q, so->unit, 1, rs->query);
	else
		memcpy(rs->query, so->unit, sizeof(float) * q->dim);
	return rs;
}

int64
kd_refine_count(const KdRefineScan *rs)
{
	return rs ? rs->refined : 0;
}

/* The refined distance of a row code in list, on the code distance scale */
static double
refined_distance(KdRefineScan *rs, const KdQuantizer *q, KdMetric metric, const uint8 *code,
				 int32 list)
{
	const KdQuantizer *r = q->refine;
	double		d = 0;

	if (q->kind == KD_QUANT_OPQ)
	{
		KdQuantizer *inner = kd_opq_inner((KdQuantizer *) q);

		inner->ops->decode(inner, code, 1, rs->xhat);
	}
	else
		kd_quantizer_decode(q, &list, code, 1, rs->xhat);
	r->ops->decode(r, code + q->code_size, 1, rs->rhat);
	for (int j = 0; j < q->dim; j++)
		rs->xhat[j] += rs->rhat[j];
	switch (metric)
	{
		case KD_METRIC_L2:
		case KD_METRIC_COSINE:
			d = kd_l2sq(rs->query, rs->xhat, q->dim);
			break;
		case KD_METRIC_IP:
			d = -kd_dot(rs->query, rs->xhat, q->dim);
			break;
		case KD_METRIC_L1:
			d = kd_l1(rs->query, rs->xhat, q->dim);
			break;
	}
	return d;
}

static int
cand_pos_cmp(const void *a, const void *b)
{
	const KdCandidate *x = a;
	const KdCandidate *y = b;

	if (x->blkno != y->blkno)
		return x->blkno < y->blkno ? -1 : 1;
	return (int) x->off - (int) y->off;
}

/*
 * Where c's tuple is on page: where the pass saw it, or, after a VACUUM
 * compacted the page, wherever it went on it; -1 when it left the page
 */
static int
find_tuple(Page page, const KdLayout *l, const KdCandidate *c)
{
	/* (a page recycled into another layout must not be read past its end) */
	int			ntup = Min(KdPageGetOpaque(page)->ntuples, l->capacity);

	if (!(KdPageGetOpaque(page)->flags & KDINDEX_PAGE_DATA))
		return -1;
	if (c->off < ntup && ItemPointerEquals(kd_tuple_tid(page, l, c->off), (ItemPointer) &c->tid))
		return c->off;
	for (int i = 0; i < ntup; i++)
		if (ItemPointerEquals(kd_tuple_tid(page, l, i), (ItemPointer) &c->tid))
			return i;
	return -1;
}

/*
 * Replace the code distances of n candidates by their refined distances,
 * reading each one's codes back at its index position, page by page (the
 * candidates end up in position order).  A candidate whose tuple VACUUM
 * removed meanwhile keeps its code distance: its row is dead, the re-rank
 * drops it.
 */
void
kd_refine_candidates(IndexScanDesc scan, KdCandidate *cands, int n)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdRefineScan *rs = so->refine;
	const KdQuantizer *q = kd_get_quantizer(scan->indexRelation, &so->meta);
	const KdLayout *l = &so->layout;
	int			i = 0;

	qsort(cands, n, sizeof(KdCandidate), cand_pos_cmp);
	while (i < n)
	{
		BlockNumber blkno = cands[i].blkno;
		Buffer		buf = ReadBuffer(scan->indexRelation, blkno);
		Page		page;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		for (; i < n && cands[i].blkno == blkno; i++)
		{
			int			at = find_tuple(page, l, &cands[i]);

			if (at < 0)
				continue;
			cands[i].dist = refined_distance(rs, q, so->metric,
											 (const uint8 *) KdTupleCode(KdPageTuple(page, l->tupsize, at)),
											 so->order[cands[i].rank]);
			rs->refined++;
		}
		UnlockReleaseBuffer(buf);
	}
}
