/*
 * ivf.c — the coarse quantizer of IVF indexes (WITH (lists = n)).
 *
 * k-means on the training sample gives nlists centroids.  A row goes to the
 * list of its nearest centroid, and the quantizer codes its residual x - c,
 * which is smaller than x and so better coded (Jégou et al.'s IVFADC).  A
 * scan ranks the lists by the query's distance to their centroids, and
 * scores list l's codes with the lookup table of q - c_l under L2, which
 * gives ||q - c_l - r̂||^2, or with q's own table and the bias -q.c_l under
 * inner product, which gives -q.(c_l + r̂).  Cosine indexes hold unit rows
 * and use the L2 form.
 *
 * The centroids belong to the quantizer (its blob carries them), so
 * everything that encodes or scores rows goes through the functions here and
 * does not care whether there are lists; with none they pass straight to the
 * quantizer's own operations.
 */
#include "postgres.h"

#include <cblas.h>

#include "miscadmin.h"

#include "distance.h"
#include "quant/quantizer.h"

/* Faiss trains its IVF coarse quantizers with 10 iterations too */
#define KD_IVF_KMEANS_NITER 10
#define KD_IVF_SEED 1234
/* rows assigned and encoded together: block x dim floats of residuals */
#define KD_IVF_BLOCK 1024

/* Give q room for nlists centroids (called in q's memory context) */
void
kd_ivf_set_lists(KdQuantizer *q, int nlists)
{
	q->nlists = nlists;
	if (nlists == 0)
		return;
	q->centroids = MemoryContextAllocHuge(q->cxt, sizeof(float) * nlists * q->dim);
	q->centroid_norms = MemoryContextAlloc(q->cxt, sizeof(float) * nlists);
}

static void
compute_norms(KdQuantizer *q)
{
	for (int l = 0; l < q->nlists; l++)
		q->centroid_norms[l] = kd_dot(q->centroids + (Size) l * q->dim,
									  q->centroids + (Size) l * q->dim, q->dim);
}

/* The rows' lists and residuals (n <= KD_IVF_BLOCK) */
static void
residuals(const KdQuantizer *q, const float *x, int64 n, int32 *lists, float *resid)
{
	kd_nearest(x, n, q->dim, q->dim, q->centroids, q->nlists, q->centroid_norms, lists, NULL);
	for (int64 i = 0; i < n; i++)
	{
		const float *c = q->centroids + (Size) lists[i] * q->dim;

		for (int d = 0; d < q->dim; d++)
			resid[i * q->dim + d] = x[i * q->dim + d] - c[d];
	}
}

/* Learn the centroids, then the quantizer on the residuals */
void
kd_quantizer_train(KdQuantizer *q, const float *x, int64 n)
{
	float	   *resid;
	int32	   *lists;

	if (q->nlists == 0)
	{
		q->ops->train(q, x, n);
		return;
	}
	kd_kmeans(x, n, q->dim, q->nlists, KD_IVF_KMEANS_NITER, KD_IVF_SEED, false, q->centroids);
	compute_norms(q);
	resid = palloc_extended(sizeof(float) * n * q->dim, MCXT_ALLOC_HUGE);
	lists = palloc(sizeof(int32) * KD_IVF_BLOCK);
	for (int64 start = 0; start < n; start += KD_IVF_BLOCK)
		residuals(q, x + start * q->dim, Min(KD_IVF_BLOCK, n - start), lists,
				  resid + start * q->dim);
	q->ops->train(q, resid, n);
	pfree(lists);
	pfree(resid);
}

/*
 * n rows to codes (n x code_size) and, with lists, to the list each belongs
 * to (lists may be NULL for a flat quantizer)
 */
void
kd_quantizer_encode(const KdQuantizer *q, const float *x, int64 n, int32 *lists, uint8 *codes)
{
	float	   *resid;

	if (q->nlists == 0)
	{
		if (lists)
			memset(lists, 0, sizeof(int32) * n);
		q->ops->encode(q, x, n, codes);
		return;
	}
	resid = palloc(sizeof(float) * Min(n, KD_IVF_BLOCK) * q->dim);
	for (int64 start = 0; start < n; start += KD_IVF_BLOCK)
	{
		int64		nb = Min(KD_IVF_BLOCK, n - start);

		CHECK_FOR_INTERRUPTS();
		residuals(q, x + start * q->dim, nb, lists + start, resid);
		q->ops->encode(q, resid, nb, codes + start * q->code_size);
	}
	pfree(resid);
}

void
kd_quantizer_decode(const KdQuantizer *q, const int32 *lists, const uint8 *codes, int64 n,
					float *x)
{
	q->ops->decode(q, codes, n, x);
	for (int64 i = 0; q->nlists > 0 && i < n; i++)
		cblas_saxpy(q->dim, 1.0f, q->centroids + (Size) lists[i] * q->dim, 1, x + i * q->dim, 1);
}

typedef struct ListDist
{
	float		dist;
	int32		list;
} ListDist;

static int
list_dist_cmp(const void *a, const void *b)
{
	const ListDist *x = a;
	const ListDist *y = b;

	if (x->dist != y->dist)
		return x->dist < y->dist ? -1 : 1;
	return x->list - y->list;
}

/*
 * All lists, nearest to the query first (query already normalised under
 * cosine); dists (may be NULL) gets the centroid distances in that order.
 */
void
kd_ivf_rank_lists(const KdQuantizer *q, const float *query, KdMetric metric, int32 *order,
				  float *dists)
{
	float	   *dots = palloc(sizeof(float) * q->nlists);
	ListDist   *ld = palloc(sizeof(ListDist) * q->nlists);

	cblas_sgemv(CblasRowMajor, CblasNoTrans, q->nlists, q->dim, 1.0f, q->centroids, q->dim,
				query, 1, 0.0f, dots, 1);
	for (int l = 0; l < q->nlists; l++)
	{
		ld[l].list = l;
		ld[l].dist = metric == KD_METRIC_IP ? -dots[l] : q->centroid_norms[l] - 2 * dots[l];
	}
	qsort(ld, q->nlists, sizeof(ListDist), list_dist_cmp);
	for (int l = 0; l < q->nlists; l++)
	{
		order[l] = ld[l].list;
		if (dists)
			dists[l] = ld[l].dist;
	}
	pfree(ld);
	pfree(dots);
}

/* The lookup table (m x ksub) and bias that score the codes of one list */
void
kd_ivf_list_lut(const KdQuantizer *q, const float *query, KdMetric metric, int list,
				float *lut, float *bias)
{
	const float *c;
	float	   *shifted;

	if (q->nlists == 0)
	{
		q->ops->compute_lut(q, query, metric, lut, bias);
		return;
	}
	c = q->centroids + (Size) list * q->dim;
	if (metric == KD_METRIC_IP)
	{
		q->ops->compute_lut(q, query, metric, lut, bias);
		*bias -= kd_dot(query, c, q->dim);
		return;
	}
	shifted = palloc(sizeof(float) * q->dim);
	for (int d = 0; d < q->dim; d++)
		shifted[d] = query[d] - c[d];
	q->ops->compute_lut(q, shifted, metric, lut, bias);
	pfree(shifted);
}

/* Serialisation: the centroids follow the quantizer's parameters, in float32 */
Size
kd_ivf_blob_size(const KdQuantizer *q)
{
	return sizeof(float) * (Size) q->nlists * q->dim;
}

void
kd_ivf_after_load(KdQuantizer *q)
{
	if (q->nlists > 0)
		compute_norms(q);
}
