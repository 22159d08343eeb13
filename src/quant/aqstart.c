/*
 * aqstart.c — the start of additive quantization training: residual
 * quantization, each stage's codebook k-means of what the earlier stages left
 * over, clustered progressively over the residuals' leading principal axes
 * (Faiss's ProgressiveDimClustering).  aq.c then alternates least-squares
 * codebook updates with re-encoding from here.
 */
#include "postgres.h"

#include <cblas.h>
#include <math.h>

#include "miscadmin.h"

#include "distance.h"
#include "quant/aq.h"

/*
 * Rows each residual stage's k-means runs on: 256 full-dimensional centroids
 * fitted to 64 residuals each memorise them (Fashion-MNIST, 16,384 rows: 550
 * per dim on those rows, 849 on the others), so take up to 256 per centroid,
 * as Faiss does.
 */
#define KD_AQ_KMEANS_ROWS 65536
/*
 * Each stage's k-means first clusters the residuals' coordinates on their
 * leading principal axes, d^(1/10), d^(2/10), ... of them (1, 3, 7, ..., 208
 * for d = 784) up to KD_AQ_PCA_DIM, each step warm-started from the last,
 * then finishes with full-dimensional iterations.  Plain k-means from sampled
 * rows leaves more of the error on the leading axes, which are where a query
 * and its neighbours differ, so its error hurts the ranking more than its
 * size says.  Fashion-MNIST, m = 16, after the alternations: 513 per dim
 * (88.6 of it on the 50 leading axes of the data) and recall@10 0.631;
 * Faiss's RQ, which clusters this way: 503 (73.2) and 0.676; this start
 * with one alternation: 466 and 0.681.
 */
#define KD_AQ_PCA_DIM 208
/*
 * The axes cost a dim x dim covariance and its eigendecomposition per stage
 * (cubic in dim): above this dimension stages are plain k-means instead, with
 * KD_AQ_PLAIN_NITER iterations.
 */
#define KD_AQ_PCA_MAX_DIM 1024
#define KD_AQ_PLAIN_NITER 5
#define KD_AQ_PCA_STEPS 10
#define KD_AQ_PCA_NITER 5
/* rows the principal axes are estimated from */
#define KD_AQ_PCA_ROWS 16384
/* full-dimensional k-means iterations that finish each stage */
#define KD_AQ_KMEANS_NITER 3
#define KD_AQ_SEED 2718

/* Centred rows the covariance takes per ssyrk: at most 256 */
static int64
pca_block(int d)
{
	return kd_block_rows((double) d * d / 2, 256);
}

/* Bytes principal_axes allocates */
static double
principal_axes_memory(int d)
{
	return sizeof(float) * ((double) d * d + (double) pca_block(d) * d + d) +
		sizeof(double) * d + kd_symmetric_eigen_memory(d);
}

/*
 * The r leading principal axes of n rows (r x dim, largest first) and the
 * rows' mean, from a strided sample of KD_AQ_PCA_ROWS rows.
 */
static void
principal_axes(const KdQuantizer *q, const float *x, int64 n, int r, float *axes, float *mean)
{
	int			d = q->dim;
	int64		nc = Min(n, KD_AQ_PCA_ROWS);
	int64		block = pca_block(d);
	float	   *cov = palloc_extended(mul_size(sizeof(float), mul_size(d, d)), MCXT_ALLOC_HUGE);
	float	   *centred = palloc(sizeof(float) * block * d);
	double	   *sum = palloc0(sizeof(double) * d);
	float	   *eig = palloc(sizeof(float) * d);

	for (int64 i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		for (int c = 0; c < d; c++)
			sum[c] += x[i * d + c];
	}
	for (int c = 0; c < d; c++)
		mean[c] = (float) (sum[c] / n);
	/* the covariance, a block of centred rows at a time */
	for (int64 start = 0; start < nc; start += block)
	{
		int64		nb = Min(block, nc - start);

		CHECK_FOR_INTERRUPTS();
		for (int64 t = 0; t < nb; t++)
		{
			const float *xi = x + ((start + t) * n / nc) * d;

			for (int c = 0; c < d; c++)
				centred[t * d + c] = xi[c] - mean[c];
		}
		cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, d, nb, 1.0f / nc, centred, d,
					start > 0 ? 1.0f : 0.0f, cov, d);
	}

	kd_symmetric_eigen(cov, d, eig);
	/* eigenvalues ascend: the leading axes are the last rows */
	for (int t = 0; t < r; t++)
		memcpy(axes + (int64) t * d, cov + (int64) (d - 1 - t) * d, sizeof(float) * d);
	pfree(cov);
	pfree(centred);
	pfree(sum);
	pfree(eig);
}

/* Bytes progressive_kmeans allocates for n rows */
static double
progressive_memory(const KdQuantizer *q, int64 n)
{
	int			d = q->dim;
	int			K = q->ksub;
	int			r = Min(KD_AQ_PCA_DIM, d);
	double		inner = Max(principal_axes_memory(d), kd_kmeans_memory(n, r, K));

	inner = Max(inner, kd_kmeans_memory(n, d, K));
	return sizeof(float) * ((double) r * d + d + r + 2.0 * n * r + 2.0 * K * r) + inner;
}

/*
 * k-means of n rows into ksub centroids (cb, seeded on entry), progressively
 * over the leading principal axes and then in full dimension; see
 * KD_AQ_PCA_DIM.  A step's new coordinates start at zero, the mean, as in
 * Faiss.
 */
static void
progressive_kmeans(const KdQuantizer *q, const float *x, int64 n, uint64 seed, float *cb)
{
	int			d = q->dim;
	int			K = q->ksub;
	int			r = Min(KD_AQ_PCA_DIM, d);
	float	   *axes = palloc(sizeof(float) * r * d);
	float	   *mean = palloc(sizeof(float) * d);
	float	   *shift = palloc(sizeof(float) * r);
	float	   *proj = palloc_extended(sizeof(float) * n * r, MCXT_ALLOC_HUGE);
	float	   *sub = palloc_extended(sizeof(float) * n * r, MCXT_ALLOC_HUGE);
	float	   *cp = palloc(sizeof(float) * K * r);
	float	   *csub = palloc(sizeof(float) * K * r);
	int64		block = kd_block_rows((double) r * d, n);
	int			dprev = 0;

	principal_axes(q, x, n, r, axes, mean);

	/* coordinates of the rows and the seeds on the axes, about the mean */
	cblas_sgemv(CblasRowMajor, CblasNoTrans, r, d, 1.0f, axes, d, mean, 1, 0.0f, shift, 1);
	for (int64 start = 0; start < n; start += block)
	{
		int64		nb = Min(block, n - start);

		CHECK_FOR_INTERRUPTS();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, r, d, 1.0f, x + start * d, d,
					axes, d, 0.0f, proj + start * r, r);
		for (int64 i = start; i < start + nb; i++)
			for (int t = 0; t < r; t++)
				proj[i * r + t] -= shift[t];
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, r, d, 1.0f, cb, d, axes, d, 0.0f, cp, r);
	for (int k = 0; k < K; k++)
		for (int t = 0; t < r; t++)
			cp[k * r + t] -= shift[t];

	for (int step = 0; step < KD_AQ_PCA_STEPS; step++)
	{
		int			di = (int) pow(d, (1.0 + step) / KD_AQ_PCA_STEPS);

		if (di > r)
			break;
		if (di <= dprev)
			continue;
		CHECK_FOR_INTERRUPTS();
		for (int64 i = 0; i < n; i++)
			memcpy(sub + i * di, proj + i * r, sizeof(float) * di);
		/* the first step starts from the seeds, later ones from the last */
		for (int k = 0; k < K; k++)
		{
			int			keep = dprev > 0 ? dprev : di;

			memcpy(csub + k * di, cp + k * r, sizeof(float) * keep);
			memset(csub + k * di + keep, 0, sizeof(float) * (di - keep));
		}
		kd_kmeans(sub, n, di, K, KD_AQ_PCA_NITER, seed + step, true, csub);
		for (int k = 0; k < K; k++)
			memcpy(cp + k * r, csub + k * di, sizeof(float) * di);
		dprev = di;
	}

	/* back to full dimension: the mean plus the coordinates on the axes */
	for (int k = 0; k < K; k++)
	{
		memset(cp + k * r + dprev, 0, sizeof(float) * (r - dprev));
		memcpy(cb + (int64) k * d, mean, sizeof(float) * d);
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, d, r, 1.0f, cp, r, axes, d, 1.0f, cb, d);
	kd_kmeans(x, n, d, K, KD_AQ_KMEANS_NITER, seed, true, cb);
	pfree(axes);
	pfree(mean);
	pfree(shift);
	pfree(proj);
	pfree(sub);
	pfree(cp);
	pfree(csub);
}

/*
 * Whether the residual stages start progressively (KD_AQ_PCA_DIM): not above
 * KD_AQ_PCA_MAX_DIM, and not under inner product.  There it lowers the
 * reconstruction error but loses ranking: the 200k x 256 inner-product set
 * (queries unlike the rows), AQ8 codes-only recall@10 0.372 with it, 0.473
 * with plain k-means stages (MSE 0.0095 against 0.0101), and AQ16 went from
 * 0.591 to 0.558 when it came in.  It fits the codewords to the residuals'
 * leading axes, and what an inner product ranks by is the error along the
 * queries, which lie elsewhere; L2 ranks by the whole error, which it
 * lowers (Fashion-MNIST AQ16 0.631 -> 0.681).  Cosine indexes hold unit
 * rows and rank in the L2 form.
 */
static bool
progressive_start(const KdQuantizer *q)
{
	return q->dim <= KD_AQ_PCA_MAX_DIM && q->metric != KD_METRIC_IP;
}

/* every (n / nr)-th row of x */
static float *
strided_rows(const KdQuantizer *q, const float *x, int64 n, int64 nr)
{
	float	   *rows = palloc_extended(sizeof(float) * nr * q->dim, MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < nr; i++)
		memcpy(rows + i * q->dim, x + (i * n / nr) * q->dim, sizeof(float) * q->dim);
	return rows;
}

/*
 * Residual quantization start: stage j's codebook is k-means of what stages
 * 0..j-1 left of the rows (greedy, one codeword per stage).  Faiss trains a
 * stage on the residuals of every beam entry instead; with plain k-means that
 * was worse here (596 per dim, recall@10 0.595, against 558 and 0.621 greedy,
 * Fashion-MNIST m = 16) and costs a beam search of all rows per stage.
 */
void
kd_aq_residual_start(const KdQuantizer *q, const float *x, int64 n, float *codebooks, float *cnorms)
{
	int64		nr = Min(n, KD_AQ_KMEANS_ROWS);
	float	   *resid = strided_rows(q, x, n, nr);
	int32	   *assign = palloc(sizeof(int32) * nr);
	bool		progressive = progressive_start(q);

	for (int j = 0; j < q->m; j++)
	{
		float	   *cb = codebooks + (int64) j * q->ksub * q->dim;

		CHECK_FOR_INTERRUPTS();
		/* seed with ksub spread-out residual rows (k-means++ costs ksub passes) */
		for (int k = 0; k < q->ksub; k++)
			memcpy(cb + (int64) k * q->dim, resid + ((int64) k * nr / q->ksub + j % Max(nr / q->ksub, 1)) * q->dim,
				   sizeof(float) * q->dim);
		if (progressive)
			progressive_kmeans(q, resid, nr, KD_AQ_SEED + j, cb);
		else
			kd_kmeans(resid, nr, q->dim, q->ksub, KD_AQ_PLAIN_NITER, KD_AQ_SEED + j, true, cb);
		for (int k = 0; k < q->ksub; k++)
			cnorms[j * q->ksub + k] = kd_dot(cb + (int64) k * q->dim, cb + (int64) k * q->dim, q->dim);
		kd_nearest(resid, nr, q->dim, q->dim, cb, q->ksub, cnorms + j * q->ksub, assign, NULL);
		CHECK_FOR_INTERRUPTS();
		for (int64 i = 0; i < nr; i++)
			cblas_saxpy(q->dim, -1.0f, cb + (int64) assign[i] * q->dim, 1, resid + i * q->dim, 1);
	}
	pfree(resid);
	pfree(assign);
}

/*
 * Bytes kd_aq_residual_start allocates for n training rows: the assignments
 * and a stage's k-means (its residual copy is the sample copy of train_copies)
 */
double
kd_aq_start_memory(const KdQuantizer *q, int64 n)
{
	int64		nr = Min(n, KD_AQ_KMEANS_ROWS);

	return sizeof(int32) * (double) nr +
		(progressive_start(q) ? progressive_memory(q, nr) : kd_kmeans_memory(nr, q->dim, q->ksub));
}
