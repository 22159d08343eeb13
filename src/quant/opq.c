/*
 * opq.c — optimized product quantization: PQ after a learned orthogonal
 * rotation R (Ge et al., "Optimized Product Quantization"; Faiss's
 * OPQMatrix).
 *
 * Training starts from the parametric solution (eigenvalue allocation) and
 * alternates the two halves of the problem: PQ codebooks for the rotated rows
 * X R^T, then the rotation that
 * best maps the rows onto their reconstructions — an orthogonal Procrustes
 * problem, solved exactly from the SVD of X^T Y (LAPACK sgesdd).  Each step
 * can only lower the reconstruction error.  Queries are rotated once per scan
 * (sgemv); their lookup table is then PQ's.
 *
 * The dimension must be divisible by m, as for PQ: no padded output space.
 */
#include "postgres.h"

#include <cblas.h>
#include <math.h>

#include "miscadmin.h"

#include "quant/quantizer.h"

/*
 * Alternations of the default training.  On Fashion-MNIST (m = 16) codes-only
 * recall@10 is 0.594 after 10 and 0.606 after 25; Faiss's OPQ16 reaches 0.604
 * with 50 from a random rotation.
 */
#define KD_OPQ_NITER 25
/* k-means iterations per alternation, after a full first PQ training */
#define KD_OPQ_PQ_NITER 4
#define KD_OPQ_PQ_NITER_FIRST 25

/*
 * Rows the alternations use at most: 128 per codeword (32,768 at nbits = 8),
 * and 64 per dimension, as the rotation has dim^2 entries.  The alternations'
 * codebooks only steer the rotation; the final ones are trained on the whole
 * sample.  Their k-means is most of the training, so this halves it where
 * the sample is 65,536 rows of up to 512 dimensions (64 per codeword lost
 * 0.4-0.5 points of recall@10 on fmnist1m, 128 dimensions; 32,768 rows lost
 * 0.7 codes-only on Fashion-MNIST, 784).
 */
#define KD_OPQ_ROWS_PER_CODEWORD 128
#define KD_OPQ_ROWS_PER_DIM 64

typedef struct OpqState
{
	float	   *rotation;		/* dim x dim, row-major: rotated = R x */
	KdQuantizer *pq;			/* PQ in the rotated space */
} OpqState;

static inline OpqState *
opq_state(const KdQuantizer *q)
{
	return (OpqState *) q->state;
}

static void
opq_init(KdQuantizer *q)
{
	OpqState   *s = palloc0(sizeof(OpqState));

	s->rotation = palloc_extended(mul_size(sizeof(float), mul_size(q->dim, q->dim)),
								  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int i = 0; i < q->dim; i++)
		s->rotation[(int64) i * q->dim + i] = 1;
	s->pq = kd_quantizer_create(KD_QUANT_PQ, q->dim, q->m, q->nbits);
	MemoryContextSetParent(s->pq->cxt, q->cxt);
	q->state = s;
}

/* out (n x dim) = x R^T, a block of rows at a time */
static void
rotate(const KdQuantizer *q, const float *x, int64 n, float *out)
{
	int			d = q->dim;
	int64		block = kd_block_rows((double) d * d, n);

	for (int64 start = 0; start < n; start += block)
	{
		CHECK_FOR_INTERRUPTS();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Min(block, n - start), d, d,
					1.0f, x + start * d, d, opq_state(q)->rotation, d, 0.0f, out + start * d, d);
	}
}

/* For distillation, which trains the PQ codebooks in the rotated space */
void
kd_opq_rotate(const KdQuantizer *q, const float *x, int64 n, float *out)
{
	rotate(q, x, n, out);
}

KdQuantizer *
kd_opq_inner(KdQuantizer *q)
{
	return opq_state(q)->pq;
}

/*
 * sgesdd's workspace for a d x d matrix, from its query; at least its own
 * minimum for JOBZ = 'A' on a square matrix, 3d^2 + 7d
 */
static int
svd_workspace(int d)
{
	float		wsize,
				dummy = 0;
	int			idummy = 0,
				query = -1,
				info;

	sgesdd_("A", &d, &d, &dummy, &d, &dummy, &dummy, &d, &dummy, &d, &wsize, &query, &idummy, &info);
	if (info != 0)
		elog(ERROR, "kdindex: sgesdd workspace query failed (info %d)", info);
	return kd_lapack_lwork(wsize, 3.0 * d * d + 7.0 * d, "sgesdd");
}

/* Bytes procrustes allocates: M, U, V^T, the singular values and workspaces */
static double
procrustes_memory(int d)
{
	return sizeof(float) * (3.0 * d * d + d) + sizeof(int) * 8.0 * d +
		sizeof(float) * (double) svd_workspace(d);
}

/*
 * rotation = the orthogonal matrix nearest to M (d x d, row-major; mt is
 * overwritten): with M = U S V^T, it is U V^T.  The SVD is one LAPACK call
 * that cannot be interrupted: 0.09 s at 784 dimensions, 1.7 s at 2,048,
 * 24 s at 4,096 (README).
 */
static void
nearest_orthogonal(int d, float *mt, float *rotation)
{
	Size		dd = mul_size((Size) d, (Size) d);
	float	   *u = palloc_extended(mul_size(sizeof(float), dd), MCXT_ALLOC_HUGE);
	float	   *vt = palloc_extended(mul_size(sizeof(float), dd), MCXT_ALLOC_HUGE);
	float	   *sv = palloc(sizeof(float) * d);
	int		   *iwork = palloc(sizeof(int) * 8 * d);
	int			lwork = svd_workspace(d);
	float	   *work = palloc_extended(sizeof(float) * (Size) lwork, MCXT_ALLOC_HUGE);
	int64		block = kd_block_rows((double) d * d, d);
	int			info;

	CHECK_FOR_INTERRUPTS();
	sgesdd_("A", &d, &d, mt, &d, sv, u, &d, vt, &d, work, &lwork, iwork, &info);
	if (info < 0)
		elog(ERROR, "kdindex: sgesdd rejected its argument %d", -info);
	if (info > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("SVD of the %d x %d OPQ rotation update did not converge (LAPACK sgesdd info %d)",
						d, d, info)));
	pfree(work);
	/*
	 * LAPACK reads the row-major M as M^T = U' S V'^T (u, vt), so U = V' and
	 * V = U', and the answer is V' U'^T.  Its transpose U' V'^T, computed
	 * column-major, is the answer laid out row-major: a block of columns at
	 * a time.
	 */
	for (int64 c = 0; c < d; c += block)
	{
		CHECK_FOR_INTERRUPTS();
		cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, d, Min(block, d - c), d,
					1.0f, u, d, vt + c * d, d, 0.0f, rotation + c * d, d);
	}
	pfree(u);
	pfree(vt);
	pfree(sv);
	pfree(iwork);
}

/*
 * The rotation minimising ||X R^T - Y|| over orthogonal R: R^T is the
 * orthogonal matrix nearest to X^T Y (orthogonal Procrustes), so R is the
 * one nearest to Y^T X, summed over blocks of rows.
 */
static void
procrustes(KdQuantizer *q, const float *x, const float *y, int64 n)
{
	int			d = q->dim;
	float	   *m = palloc_extended(mul_size(sizeof(float), mul_size(d, d)), MCXT_ALLOC_HUGE);
	int64		block = kd_block_rows((double) d * d, n);

	for (int64 start = 0; start < n; start += block)
	{
		CHECK_FOR_INTERRUPTS();
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, Min(block, n - start),
					1.0f, y + start * d, d, x + start * d, d, start > 0 ? 1.0f : 0.0f, m, d);
	}
	nearest_orthogonal(d, m, opq_state(q)->rotation);
	pfree(m);
}

/*
 * The parametric OPQ start (Ge et al., eigenvalue allocation): the principal
 * directions of the sample, dealt out to the m sub-spaces so that the
 * products of their variances come out as even as possible — greedily, the
 * next largest eigenvalue to the sub-space with room and the smallest
 * log-product so far.  Rows of R are the eigenvectors so allocated.
 */
static void
eigen_allocation(KdQuantizer *q, const float *x, int64 n)
{
	int			d = q->dim;
	int			dsub = d / q->m;
	float	   *cov = palloc_extended(mul_size(sizeof(float), mul_size(d, d)),
										MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	double	   *mean = palloc0(sizeof(double) * d);
	float	   *eig = palloc(sizeof(float) * d);
	double	   *logsum = palloc0(sizeof(double) * q->m);
	int		   *filled = palloc0(sizeof(int) * q->m);
	int64		block = kd_block_rows((double) d * d / 2, n);
	float		floor_eig;

	/* covariance of the centred sample */
	for (int64 i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		for (int j = 0; j < d; j++)
			mean[j] += x[i * d + j];
	}
	for (int j = 0; j < d; j++)
		mean[j] /= n;
	for (int64 start = 0; start < n; start += block)
	{
		CHECK_FOR_INTERRUPTS();
		cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, Min(block, n - start), 1.0f / n,
					x + start * d, d, 1.0f, cov, d);
	}
	for (int a = 0; a < d; a++)
		for (int b = a; b < d; b++)
			cov[(int64) a * d + b] -= (float) (mean[a] * mean[b]);

	kd_symmetric_eigen(cov, d, eig);
	/* eigenvalues ascend; row j is the eigenvector of eig[j] */
	floor_eig = Max(eig[d - 1], 1e-30f) * 1e-6f;
	for (int j = d - 1; j >= 0; j--)
	{
		int			best = -1;

		for (int b = 0; b < q->m; b++)
			if (filled[b] < dsub && (best < 0 || logsum[b] < logsum[best]))
				best = b;
		memcpy(opq_state(q)->rotation + (int64) (best * dsub + filled[best]) * d,
			   cov + (int64) j * d, sizeof(float) * d);
		filled[best]++;
		logsum[best] += log(Max(eig[j], floor_eig));
	}
	pfree(cov);
	pfree(mean);
	pfree(eig);
	pfree(logsum);
	pfree(filled);
}

/* Rows the alternations train on, out of n */
static int64
alternation_rows(const KdQuantizer *q, int64 n)
{
	int64		rows = Max((int64) KD_OPQ_ROWS_PER_CODEWORD * q->ksub,
						   (int64) KD_OPQ_ROWS_PER_DIM * q->dim);

	return Min(n, rows);
}

/* Every (n / nsub)-th row of x: the sample's order may follow the table's */
static float *
subsample(const float *x, int64 n, int d, int64 nsub)
{
	float	   *sub = palloc_extended(sizeof(float) * nsub * d, MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < nsub; i++)
		memcpy(sub + i * d, x + (i * n / nsub) * d, sizeof(float) * d);
	return sub;
}

static void
opq_train(KdQuantizer *q, const float *x, int64 n)
{
	OpqState   *s = opq_state(q);
	int			niter = q->iterations > 0 ? q->iterations : KD_OPQ_NITER;
	int64		nalt = alternation_rows(q, n);
	const float *xa = nalt < n ? subsample(x, n, q->dim, nalt) : x;
	float	   *xr = palloc_extended(sizeof(float) * n * q->dim, MCXT_ALLOC_HUGE);
	float	   *y = palloc_extended(sizeof(float) * nalt * q->dim, MCXT_ALLOC_HUGE);
	uint8	   *codes = palloc_extended((Size) nalt * q->code_size, MCXT_ALLOC_HUGE);

	ereport(DEBUG1,
			(errmsg_internal("kdindex: OPQ alternations on %lld of %lld sampled rows",
							 (long long) nalt, (long long) n)));
	eigen_allocation(q, x, n);
	for (int it = 0; it < niter; it++)
	{
		CHECK_FOR_INTERRUPTS();
		rotate(q, xa, nalt, xr);
		kd_pq_train_iters(s->pq, xr, nalt, it == 0 ? KD_OPQ_PQ_NITER_FIRST : KD_OPQ_PQ_NITER, it > 0);
		s->pq->ops->encode(s->pq, xr, nalt, codes);
		s->pq->ops->decode(s->pq, codes, nalt, y);
		procrustes(q, xa, y, nalt);
	}
	/* codebooks for the final rotation, on the whole sample, to convergence */
	rotate(q, x, n, xr);
	kd_pq_train_iters(s->pq, xr, n, KD_OPQ_PQ_NITER_FIRST, niter > 0);

	if (xa != x)
		pfree((float *) xa);
	pfree(xr);
	pfree(y);
	pfree(codes);
}

static void
opq_encode(const KdQuantizer *q, const float *x, int64 n, uint8 *codes)
{
	const int64 block = 1024;
	float	   *xr = palloc(sizeof(float) * Min(n, block) * q->dim);

	for (int64 start = 0; start < n; start += block)
	{
		int64		nb = Min(block, n - start);

		rotate(q, x + start * q->dim, nb, xr);
		opq_state(q)->pq->ops->encode(opq_state(q)->pq, xr, nb, codes + start * q->code_size);
	}
	pfree(xr);
}

/* x = R^T y, row by row: x_row = y_row R */
static void
opq_decode(const KdQuantizer *q, const uint8 *codes, int64 n, float *x)
{
	int			d = q->dim;
	float	   *y = palloc_extended(sizeof(float) * n * d, MCXT_ALLOC_HUGE);
	int64		block = kd_block_rows((double) d * d, n);

	opq_state(q)->pq->ops->decode(opq_state(q)->pq, codes, n, y);
	for (int64 start = 0; start < n; start += block)
	{
		CHECK_FOR_INTERRUPTS();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Min(block, n - start), d, d,
					1.0f, y + start * d, d, opq_state(q)->rotation, d, 0.0f, x + start * d, d);
	}
	pfree(y);
}

static void
opq_prepare(KdQuantizer *q)
{
	opq_state(q)->pq->ops->prepare(opq_state(q)->pq);
}

static void
opq_compute_lut(const KdQuantizer *q, const float *query, KdMetric metric, float *lut, float *bias)
{
	float	   *qr = palloc(sizeof(float) * q->dim);

	cblas_sgemv(CblasRowMajor, CblasNoTrans, q->dim, q->dim, 1.0f, opq_state(q)->rotation, q->dim,
				query, 1, 0.0f, qr, 1);
	opq_state(q)->pq->ops->compute_lut(opq_state(q)->pq, qr, metric, lut, bias);
	pfree(qr);
}

/* the rotation, then PQ's codebooks */
static double
opq_param_floats(int dim, int m, int ksub)
{
	return (double) dim * dim + kd_pq_ops.param_floats(dim, m, ksub);
}

/*
 * Training holds the codes of the sample, and at its peak either the
 * covariance and ssyevd's workspace, PQ's k-means, PQ's encoding, or M and
 * its SVD (6 dim^2 floats: 400 MB at 4,096 dimensions)
 */
static double
opq_train_memory(const KdQuantizer *q, int64 n)
{
	KdQuantizer *pq = opq_state(q)->pq;
	int			d = q->dim;
	double		eigen = sizeof(float) * ((double) d * d + d) + sizeof(double) * (d + q->m) +
		sizeof(int) * q->m + kd_symmetric_eigen_memory(d);
	double		peak = Max(eigen, procrustes_memory(d));

	peak = Max(peak, kd_pq_train_iters_memory(pq, n));
	peak = Max(peak, pq->ops->encode_memory(pq, n));
	/* the alternations' rows, when fewer than the sample: a copy of their own */
	if (alternation_rows(q, n) < n)
		peak += sizeof(float) * (double) alternation_rows(q, n) * d;
	return (double) n * q->code_size + peak;
}

static double
opq_encode_memory(const KdQuantizer *q, int64 n)
{
	KdQuantizer *pq = opq_state(q)->pq;
	int64		rows = Min(n, 1024);

	return sizeof(float) * (double) rows * q->dim + pq->ops->encode_memory(pq, rows);
}

static int
opq_nparams(const KdQuantizer *q)
{
	return 2;
}

static float *
opq_param(KdQuantizer *q, int i, Size *nfloats)
{
	OpqState   *s = opq_state(q);

	if (i == 0)
	{
		*nfloats = (Size) q->dim * q->dim;
		return s->rotation;
	}
	return s->pq->ops->param(s->pq, 0, nfloats);
}

const KdQuantizerOps kd_opq_ops = {
	.init = opq_init,
	.train = opq_train,
	.encode = opq_encode,
	.decode = opq_decode,
	.prepare = opq_prepare,
	.compute_lut = opq_compute_lut,
	.adc_scan = kd_adc_lut_only,
	.nparams = opq_nparams,
	.param = opq_param,
	.param_floats = opq_param_floats,
	.train_memory = opq_train_memory,
	.encode_memory = opq_encode_memory,
	.train_copies = 2,
};
