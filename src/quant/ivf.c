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
 * and use the L2 form.  Scans get those tables from ivftables.c, which
 * splits off the query-independent part per list; kd_ivf_list_lut is what
 * they fall back to.
 *
 * Balanced lists (WITH (balance = t)): plain k-means leaves some lists far
 * larger than others, and a scan of a large list costs more while finding no
 * more neighbours per row read.  Balancing solves, on the sample, the
 * entropic transport of rows to lists with equal list sizes by
 * Sinkhorn-Knopp: rows are spread over lists by softmax(-(d + offset) / T),
 * each row's weights normalised to one, and each list's offset moved by
 * T log(its mass / its share) until the masses are equal.  The offsets are
 * Sinkhorn's column scalings in log form; k-means then alternates them with
 * the centroid update, and a row's list is the one with the least distance
 * plus offset, for the sample, for every row encoded later, and for the
 * order in which a query probes the lists.  T is balance times the mean
 * distance of a row to its nearest centroid.
 *
 * The centroids belong to the quantizer (its blob carries them), so
 * everything that encodes or scores rows goes through the functions here and
 * does not care whether there are lists; with none they pass straight to the
 * quantizer's own operations.
 */
#include "postgres.h"

#include <cblas.h>
#include <float.h>
#include <math.h>

#include "miscadmin.h"

#include "distance.h"
#include "quant/quantizer.h"

/* Faiss trains its IVF coarse quantizers with 10 iterations too */
#define KD_IVF_KMEANS_NITER 10
/*
 * balanced lists: k-means rounds, each after this many Sinkhorn sweeps over
 * (a stride through) the sample, of this many rows per list at most
 */
#define KD_IVF_BALANCE_ROUNDS 3
#define KD_IVF_SINKHORN_SWEEPS 8
#define KD_IVF_SINKHORN_ROWS_PER_LIST 64
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
	kd_check_param_bytes(q->kind, q->dim, q->m, nlists, kd_quantizer_param_bytes(q));
	q->centroids = MemoryContextAllocHuge(q->cxt, sizeof(float) * nlists * q->dim);
	q->centroid_norms = MemoryContextAlloc(q->cxt, sizeof(float) * nlists);
	q->list_offsets = MemoryContextAllocZero(q->cxt, sizeof(float) * nlists);
}

static void
compute_norms(KdQuantizer *q)
{
	for (int l = 0; l < q->nlists; l++)
		q->centroid_norms[l] = kd_dot(q->centroids + (Size) l * q->dim,
									  q->centroids + (Size) l * q->dim, q->dim);
}

/*
 * Each row's list: the least distance plus offset.  The offsets enter as
 * part of the centroid norms kd_nearest adds (||c||^2 + offset).
 */
static void
assign_lists(const KdQuantizer *q, const float *x, int64 n, int32 *lists)
{
	float	   *shifted = palloc(sizeof(float) * q->nlists);

	for (int l = 0; l < q->nlists; l++)
		shifted[l] = q->centroid_norms[l] + q->list_offsets[l];
	kd_nearest(x, n, q->dim, q->dim, q->centroids, q->nlists, shifted, lists, NULL);
	pfree(shifted);
}

/* The rows' lists and residuals (n <= KD_IVF_BLOCK) */
static void
residuals(const KdQuantizer *q, const float *x, int64 n, int32 *lists, float *resid)
{
	assign_lists(q, x, n, lists);
	for (int64 i = 0; i < n; i++)
	{
		const float *c = q->centroids + (Size) lists[i] * q->dim;

		for (int d = 0; d < q->dim; d++)
			resid[i * q->dim + d] = x[i * q->dim + d] - c[d];
	}
}

/*
 * Sinkhorn sweeps: move the offsets until every list gets an equal share of
 * the soft assignment, at temperature t, of every stride-th of the n rows.
 * Distances come block by block from one sgemm each (the rows x nlists
 * matrix is never held).
 */
static void
sinkhorn_offsets(KdQuantizer *q, const float *x, int64 n, float t)
{
	int64		stride = Max(1, n / ((int64) KD_IVF_SINKHORN_ROWS_PER_LIST * q->nlists));
	int64		rows = (n + stride - 1) / stride;
	int64		block = Min(rows, kd_nearest_block(q->dim, q->nlists));
	float	   *dots = palloc_extended(sizeof(float) * block * q->nlists, MCXT_ALLOC_HUGE);
	float	   *picked = palloc_extended(sizeof(float) * block * q->dim, MCXT_ALLOC_HUGE);
	double	   *mass = palloc(sizeof(double) * q->nlists);
	double		share = (double) rows / q->nlists;

	for (int sweep = 0; sweep < KD_IVF_SINKHORN_SWEEPS; sweep++)
	{
		memset(mass, 0, sizeof(double) * q->nlists);
		for (int64 start = 0; start < rows; start += block)
		{
			int64		nb = Min(block, rows - start);

			CHECK_FOR_INTERRUPTS();
			for (int64 i = 0; i < nb; i++)
				memcpy(picked + i * q->dim, x + (start + i) * stride * q->dim, sizeof(float) * q->dim);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, q->nlists, q->dim,
						1.0f, picked, q->dim, q->centroids, q->dim, 0.0f, dots, q->nlists);
			for (int64 i = 0; i < nb; i++)
			{
				float	   *row = dots + i * q->nlists;
				float		best = FLT_MAX;
				double		z = 0;

				/* cost up to the row's constant ||x||^2, which the softmax ignores */
				for (int l = 0; l < q->nlists; l++)
				{
					row[l] = q->centroid_norms[l] - 2 * row[l] + q->list_offsets[l];
					best = Min(best, row[l]);
				}
				for (int l = 0; l < q->nlists; l++)
				{
					row[l] = expf((best - row[l]) / t);
					z += row[l];
				}
				for (int l = 0; l < q->nlists; l++)
					mass[l] += row[l] / z;
			}
		}
		for (int l = 0; l < q->nlists; l++)
			q->list_offsets[l] += t * (float) log(Max(mass[l], 1e-9) / share);
	}
	pfree(mass);
	pfree(picked);
	pfree(dots);
}

/* Balanced k-means: Sinkhorn offsets, then centroids of the offset assignment */
static void
balance_lists(KdQuantizer *q, const float *x, int64 n)
{
	int32	   *lists = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	double	   *sums = palloc_extended(sizeof(double) * q->nlists * q->dim, MCXT_ALLOC_HUGE);
	int64	   *sizes = palloc(sizeof(int64) * q->nlists);
	float	   *dist = palloc_extended(sizeof(float) * n, MCXT_ALLOC_HUGE);
	double		mean = 0;
	float		t;

	/* the temperature: balance x the mean distance to the nearest centroid */
	kd_nearest(x, n, q->dim, q->dim, q->centroids, q->nlists, q->centroid_norms, lists, dist);
	for (int64 i = 0; i < n; i++)
		mean += dist[i];
	t = (float) Max(q->balance * mean / Max(n, 1), 1e-6);

	for (int round = 0; round < KD_IVF_BALANCE_ROUNDS; round++)
	{
		sinkhorn_offsets(q, x, n, t);
		assign_lists(q, x, n, lists);
		memset(sums, 0, sizeof(double) * q->nlists * q->dim);
		memset(sizes, 0, sizeof(int64) * q->nlists);
		for (int64 i = 0; i < n; i++)
		{
			double	   *sum = sums + (Size) lists[i] * q->dim;

			CHECK_FOR_INTERRUPTS();
			for (int d = 0; d < q->dim; d++)
				sum[d] += x[i * q->dim + d];
			sizes[lists[i]]++;
		}
		for (int l = 0; l < q->nlists; l++)
			for (int d = 0; sizes[l] > 0 && d < q->dim; d++)
				q->centroids[(Size) l * q->dim + d] = (float) (sums[(Size) l * q->dim + d] / sizes[l]);
		compute_norms(q);
	}
	/* offsets for the final centroids */
	sinkhorn_offsets(q, x, n, t);
	pfree(dist);
	pfree(sizes);
	pfree(sums);
	pfree(lists);
}

/* Peak bytes of the coarse k-means and of balancing the lists */
static double
ivf_train_memory(const KdQuantizer *q, int64 n)
{
	int64		block = Min(n, kd_nearest_block(q->dim, q->nlists));
	double		kmeans = kd_kmeans_memory(n, q->dim, q->nlists);
	double		balance = 8.0 * n + 16.0 * q->nlists * q->dim + 16.0 * q->nlists +
		sizeof(float) * (double) block * (q->nlists + q->dim);

	return q->balance > 0 ? Max(kmeans, balance) : kmeans;
}

/*
 * Bytes training on n rows, and the encoding that follows it, allocate
 * besides the sample and the copies of it that build.c already sized the
 * sample for (train_copies): the parameters, and the largest of the coarse
 * k-means, the quantizer's own training (dim x dim matrices and LAPACK
 * workspaces for OPQ and AQ's axes, AQ's codeword cross table) and the
 * serialisation of the parameters.
 */
double
kd_quantizer_memory_needed(const KdQuantizer *q, int64 n)
{
	double		need = q->ops->train_memory(q, n) + (q->nlists > 0 ? sizeof(int32) * KD_IVF_BLOCK : 0);

	if (q->nlists > 0)
		need = Max(need, ivf_train_memory(q, n));
	need = Max(need, kd_quantizer_serialize_memory(q, n));
	return need + kd_quantizer_param_bytes(q);
}

/* Refuse, before anything large is allocated, what exceeds maintenance_work_mem */
void
kd_quantizer_check_memory(const KdQuantizer *q, int64 n)
{
	double		need = kd_quantizer_memory_needed(q, n);

	if (need <= (double) maintenance_work_mem * 1024)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("training quantizer \"%s\" (m = %d, %d dimensions%s) needs %.0f MB of memory, more than maintenance_work_mem (%d MB)",
					kd_quantizer_name(q->kind), q->m, q->dim,
					q->nlists > 0 ? psprintf(", %d lists", q->nlists) : "",
					ceil(need / (1024.0 * 1024.0)), maintenance_work_mem / 1024),
			 errdetail("This is besides the training sample, which is sized to fit maintenance_work_mem on its own."),
			 errhint("Raise maintenance_work_mem to at least %.0f MB.", ceil(need / (1024.0 * 1024.0)))));
}

/*
 * Squared distances between the rows must stay finite in float: rows whose
 * squared norm exceeds a quarter of FLT_MAX (|x| above 9.2e18) would fill the
 * parameters with infinities and NaN.  They are left out of the training
 * sample (no codebook could represent them anyway; they are still indexed,
 * and the exact re-rank orders them), so that one such row cannot keep an
 * index from ever training.  Returns x, or a copy without them.
 */
static const float *
trainable_rows(const KdQuantizer *q, const float *x, int64 *n)
{
	float	   *kept = NULL;
	int64		nkept = 0;

	for (int64 i = 0; i < *n; i++)
	{
		const float *row = x + i * q->dim;
		double		norm = 0;

		CHECK_FOR_INTERRUPTS();
		for (int d = 0; d < q->dim; d++)
			norm += (double) row[d] * row[d];
		if (norm <= FLT_MAX / 4)
		{
			if (kept != NULL)
				memcpy(kept + nkept * q->dim, row, sizeof(float) * q->dim);
			nkept++;
		}
		else if (kept == NULL)
		{
			kept = palloc_extended(sizeof(float) * *n * q->dim, MCXT_ALLOC_HUGE);
			memcpy(kept, x, sizeof(float) * nkept * q->dim);
		}
	}
	if (kept == NULL)
		return x;
	ereport(DEBUG1,
			(errmsg("kdindex: %lld of %lld sampled rows have a norm above %g and are left out of training",
					(long long) (*n - nkept), (long long) *n, sqrt(FLT_MAX / 4))));
	if (nkept == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("kdindex cannot train: every sampled vector has a norm above %g", sqrt(FLT_MAX / 4)),
				 errdetail("Squared distances between such vectors overflow real.")));
	*n = nkept;
	return kept;
}

/* Learn the centroids, then the quantizer on the residuals */
void
kd_quantizer_train(KdQuantizer *q, const float *x, int64 n)
{
	float	   *resid;
	int32	   *lists;

	if (n < 1)
		elog(ERROR, "kdindex: no rows to train the quantizer on");
	kd_quantizer_check_memory(q, n);
	x = trainable_rows(q, x, &n);
	if (q->nlists == 0)
	{
		q->ops->train(q, x, n);
		return;
	}
	kd_kmeans(x, n, q->dim, q->nlists, KD_IVF_KMEANS_NITER, KD_IVF_SEED, false, q->centroids);
	compute_norms(q);
	if (q->balance > 0)
		balance_lists(q, x, n);
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

static inline int
list_dist_cmp(const ListDist *x, const ListDist *y)
{
	if (x->dist != y->dist)
		return x->dist < y->dist ? -1 : 1;
	return x->list - y->list;
}

/*
 * sort_list_dists(): the comparison inlined (qsort's calls through a pointer
 * were a third of ranking 245 lists for a query)
 */
#define ST_SORT sort_list_dists
#define ST_ELEMENT_TYPE ListDist
#define ST_COMPARE(a, b) list_dist_cmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

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
		/*
		 * L1 ranks by the operator's own distance (squared-L2 offsets do not
		 * add to it), so the scan's reach compares like with like
		 */
		if (metric == KD_METRIC_L1)
			ld[l].dist = kd_l1(query, q->centroids + (Size) l * q->dim, q->dim);
		else
			ld[l].dist = (metric == KD_METRIC_IP ? -dots[l] : q->centroid_norms[l] - 2 * dots[l]) +
				q->list_offsets[l];
	}
	sort_list_dists(ld, q->nlists);
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

/* Derived values once the centroids are read from the blob */
void
kd_ivf_after_load(KdQuantizer *q)
{
	if (q->nlists > 0)
		compute_norms(q);
}
