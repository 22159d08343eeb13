/*
 * pq.c — product quantization: the vector is cut into m sub-vectors of
 * dim/m floats, each replaced by the nearest of 2^nbits codewords learned by
 * k-means on that sub-space (Jégou et al.; Faiss's ProductQuantizer).
 */
#include "postgres.h"

#include <cblas.h>

#include "miscadmin.h"

#include "distance.h"
#include "quant/quantizer.h"

/* Lloyd iterations per sub-space, as Faiss's default */
#define KD_PQ_NITER 25
#define KD_PQ_SEED 1234
/* rows encoded per sgemm block */
#define KD_PQ_BLOCK 1024

typedef struct PqState
{
	int			dsub;
	float	   *centroids;		/* m x ksub x dsub */
	float	   *cnorms;			/* m x ksub squared norms */
} PqState;

static inline PqState *
pq_state(const KdQuantizer *q)
{
	return (PqState *) q->state;
}

static void
pq_prepare(KdQuantizer *q)
{
	PqState    *s = pq_state(q);

	for (int i = 0; i < q->m * q->ksub; i++)
	{
		const float *c = s->centroids + (int64) i * s->dsub;

		s->cnorms[i] = kd_dot(c, c, s->dsub);
	}
}

static void
pq_init(KdQuantizer *q)
{
	PqState    *s = palloc0(sizeof(PqState));

	Assert(q->dim % q->m == 0);
	s->dsub = q->dim / q->m;
	s->centroids = palloc_extended(sizeof(float) * q->m * q->ksub * s->dsub,
									MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	s->cnorms = palloc0(sizeof(float) * q->m * q->ksub);
	q->state = s;
}

/* k-means per sub-space; warm: continue from the current codebooks (OPQ) */
void
kd_pq_train_iters(KdQuantizer *q, const float *x, int64 n, int niter, bool warm)
{
	PqState    *s = pq_state(q);
	float	   *sub = palloc_extended(sizeof(float) * n * s->dsub, MCXT_ALLOC_HUGE);

	for (int j = 0; j < q->m; j++)
	{
		CHECK_FOR_INTERRUPTS();
		for (int64 i = 0; i < n; i++)
			memcpy(sub + i * s->dsub, x + i * q->dim + j * s->dsub, sizeof(float) * s->dsub);
		kd_kmeans(sub, n, s->dsub, q->ksub, niter, KD_PQ_SEED + j, warm,
				  s->centroids + (int64) j * q->ksub * s->dsub);
	}
	pfree(sub);
	pq_prepare(q);
}

/* Peak bytes of kd_pq_train_iters on n rows */
double
kd_pq_train_iters_memory(const KdQuantizer *q, int64 n)
{
	int			dsub = pq_state(q)->dsub;

	return sizeof(float) * (double) n * dsub + kd_kmeans_memory(n, dsub, q->ksub);
}

static double
pq_train_memory(const KdQuantizer *q, int64 n)
{
	return kd_pq_train_iters_memory(q, n);
}

static double
pq_encode_memory(const KdQuantizer *q, int64 n)
{
	int			dsub = pq_state(q)->dsub;
	int64		rows = Min(n, KD_PQ_BLOCK);

	return sizeof(int32) * (double) rows +
		sizeof(float) * (double) Min(rows, kd_nearest_block(dsub, q->ksub)) * q->ksub;
}

/* m x ksub codewords of dim / m floats, and their norms */
static double
pq_param_floats(int dim, int m, int ksub)
{
	return (double) ksub * dim + (double) m * ksub;
}

static void
pq_train(KdQuantizer *q, const float *x, int64 n)
{
	kd_pq_train_iters(q, x, n, KD_PQ_NITER, false);
}

static void
pq_encode(const KdQuantizer *q, const float *x, int64 n, uint8 *codes)
{
	PqState    *s = pq_state(q);
	int32	   *assign = palloc(sizeof(int32) * Min(n, KD_PQ_BLOCK));

	memset(codes, 0, n * q->code_size);
	for (int64 start = 0; start < n; start += KD_PQ_BLOCK)
	{
		int64		nb = Min(KD_PQ_BLOCK, n - start);

		for (int j = 0; j < q->m; j++)
		{
			kd_nearest(x + start * q->dim + j * s->dsub, nb, s->dsub, q->dim,
					   s->centroids + (int64) j * q->ksub * s->dsub, q->ksub,
					   s->cnorms + j * q->ksub, assign, NULL);
			for (int64 i = 0; i < nb; i++)
				kd_code_set(codes + (start + i) * q->code_size, q->nbits, j, assign[i]);
		}
	}
	pfree(assign);
	kd_rowterm_encode(q, x, n, codes);
}

static void
pq_decode(const KdQuantizer *q, const uint8 *codes, int64 n, float *x)
{
	PqState    *s = pq_state(q);

	for (int64 i = 0; i < n; i++)
		for (int j = 0; j < q->m; j++)
		{
			int			w = kd_code_get(codes + i * q->code_size, q->nbits, j);

			memcpy(x + i * q->dim + j * s->dsub,
				   s->centroids + ((int64) j * q->ksub + w) * s->dsub,
				   sizeof(float) * s->dsub);
		}
}

/*
 * L2, and cosine (rows and query normalised, where ||q - x||^2 = 2 - 2 cos):
 * lut[j][w] = ||q_j - c_jw||^2.  Inner product: lut[j][w] = -<q_j, c_jw>.
 * L1: lut[j][w] = |q_j - c_jw|_1, exact because L1 too is a sum over
 * coordinates (the codebooks are still trained by k-means under L2, as
 * Faiss's are).  Smaller is nearer for all metrics.
 *
 * The dot products of a sub-space are one sgemv over its codebook, and L2
 * is ||q_j||^2 - 2 q_j.c_jw + ||c_jw||^2 from them (the codeword norms are
 * kept): a table is m x 2^nbits dot products of dim / m floats, and one call
 * per codeword cost more than the products themselves.  The expansion
 * rounds like the IVF tables' split (ivftables.c), which scans use anyway.
 */
static void
pq_compute_lut(const KdQuantizer *q, const float *query, KdMetric metric, float *lut, float *bias)
{
	PqState    *s = pq_state(q);

	*bias = 0;
	for (int j = 0; j < q->m; j++)
	{
		const float *qj = query + j * s->dsub;
		const float *cj = s->centroids + (int64) j * q->ksub * s->dsub;
		float	   *lj = lut + j * q->ksub;

		if (metric == KD_METRIC_L1)
		{
			for (int w = 0; w < q->ksub; w++)
				lj[w] = kd_l1(qj, cj + (int64) w * s->dsub, s->dsub);
			continue;
		}
		cblas_sgemv(CblasRowMajor, CblasNoTrans, q->ksub, s->dsub,
					metric == KD_METRIC_IP ? -1.0f : -2.0f, cj, s->dsub, qj, 1, 0.0f, lj, 1);
		if (metric != KD_METRIC_IP)
		{
			const float *nj = s->cnorms + j * q->ksub;
			float		qq = kd_dot(qj, qj, s->dsub);

			for (int w = 0; w < q->ksub; w++)
				lj[w] = Max(lj[w] + nj[w] + qq, 0.0f);
		}
	}
}

static int
pq_nparams(const KdQuantizer *q)
{
	return 1;
}

static float *
pq_param(KdQuantizer *q, int i, Size *nfloats)
{
	PqState    *s = pq_state(q);

	*nfloats = (Size) q->m * q->ksub * s->dsub;
	return s->centroids;
}

const KdQuantizerOps kd_pq_ops = {
	.init = pq_init,
	.train = pq_train,
	.encode = pq_encode,
	.decode = pq_decode,
	.prepare = pq_prepare,
	.compute_lut = pq_compute_lut,
	.adc_scan = kd_adc_lut_only,
	.nparams = pq_nparams,
	.param = pq_param,
	.param_floats = pq_param_floats,
	.train_memory = pq_train_memory,
	.encode_memory = pq_encode_memory,
};
