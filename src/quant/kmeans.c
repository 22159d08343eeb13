/*
 * kmeans.c — k-means with k-means++ seeding; distances through OpenBLAS sgemm.
 *
 * ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2: the cross term for a block of rows
 * against all centroids is one sgemm, which is where the time goes.  Empty
 * clusters are split off large ones as Faiss does.
 */
#include "postgres.h"

#include <cblas.h>

#include "common/pg_prng.h"
#include "miscadmin.h"

#include "distance.h"
#include "quant/quantizer.h"

/* Rows per sgemm block at most: 1024 x k floats of scratch */
#define KD_KMEANS_BLOCK 1024

/* Rows kd_nearest scores per sgemm, between interrupt checks */
int64
kd_nearest_block(int d, int k)
{
	return kd_block_rows((double) k * d, KD_KMEANS_BLOCK);
}

static void
squared_norms(const float *x, int64 n, int d, float *norms)
{
	for (int64 i = 0; i < n; i++)
		norms[i] = kd_dot(x + i * d, x + i * d, d);
}

/*
 * For each of n rows of x (d floats, ldx apart), the nearest of k centroids
 * and its squared distance (dist may be NULL).  cnorms holds the centroids'
 * squared norms.
 */
void
kd_nearest(const float *x, int64 n, int d, int ldx, const float *centroids, int k,
		   const float *cnorms, int32 *assign, float *dist)
{
	int64		block = Min(n, kd_nearest_block(d, k));
	float	   *dots = palloc_extended(sizeof(float) * block * k, MCXT_ALLOC_HUGE);

	for (int64 start = 0; start < n; start += block)
	{
		int64		nb = Min(block, n - start);

		CHECK_FOR_INTERRUPTS();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, k, d,
					1.0f, x + start * ldx, ldx, centroids, d, 0.0f, dots, k);
		for (int64 i = 0; i < nb; i++)
		{
			float		best;

			assign[start + i] = kd_argmin_dist(cnorms, dots + i * k, k, &best);
			if (dist)
			{
				const float *xi = x + (start + i) * ldx;
				float		xn = kd_dot(xi, xi, d);

				dist[start + i] = Max(best + xn, 0.0f);
			}
		}
	}
	pfree(dots);
}

/* k-means++: each next centroid drawn with probability ~ D(x)^2 */
static void
kmeanspp_init(const float *x, int64 n, int d, int k, pg_prng_state *rng, float *centroids)
{
	float	   *mind = palloc_extended(sizeof(float) * n, MCXT_ALLOC_HUGE);
	int64		first = (int64) pg_prng_uint64_range(rng, 0, n - 1);

	memcpy(centroids, x + first * d, sizeof(float) * d);
	for (int64 i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		mind[i] = kd_l2sq(x + i * d, centroids, d);
	}

	for (int c = 1; c < k; c++)
	{
		double		total = 0;
		double		target;
		int64		pick = n - 1;
		const float *newc = centroids + (int64) c * d;

		CHECK_FOR_INTERRUPTS();
		for (int64 i = 0; i < n; i++)
			total += mind[i];
		target = pg_prng_double(rng) * total;
		for (int64 i = 0; i < n; i++)
		{
			target -= mind[i];
			if (target < 0)
			{
				pick = i;
				break;
			}
		}
		memcpy(centroids + (int64) c * d, x + pick * d, sizeof(float) * d);
		for (int64 i = 0; i < n; i++)
		{
			float		dd;

			CHECK_FOR_INTERRUPTS();
			dd = kd_l2sq(x + i * d, newc, d);

			if (dd < mind[i])
				mind[i] = dd;
		}
	}
	pfree(mind);
}

/*
 * Give every empty cluster half of a large one: pick a cluster with
 * probability proportional to its size, copy its centroid with a small
 * symmetric perturbation (Faiss's split_clusters).  With n >= k, the
 * clusters left hold more rows than there are of them, so one has two or
 * more and the search ends.  With fewer rows than clusters it might not: the
 * empty ones keep their centroids.
 */
static void
split_empty_clusters(int64 n, int d, int k, int64 *sizes, pg_prng_state *rng, float *centroids)
{
	const float eps = 1.0f / 1024;

	if (n < k)
		return;
	for (int ci = 0; ci < k; ci++)
	{
		int			cj;

		if (sizes[ci] != 0)
			continue;
		for (cj = 0;; cj = (cj + 1) % k)
		{
			double		p = n > k ? (double) (sizes[cj] - 1) / (double) (n - k) : sizes[cj] > 1;

			if (pg_prng_double(rng) < p)
				break;
		}
		memcpy(centroids + (int64) ci * d, centroids + (int64) cj * d, sizeof(float) * d);
		for (int j = 0; j < d; j++)
		{
			float	   *a = centroids + (int64) ci * d + j;
			float	   *b = centroids + (int64) cj * d + j;

			if (j % 2 == 0)
			{
				*a *= 1 + eps;
				*b *= 1 - eps;
			}
			else
			{
				*a *= 1 - eps;
				*b *= 1 + eps;
			}
		}
		sizes[ci] = sizes[cj] / 2;
		sizes[cj] -= sizes[ci];
	}
}

/*
 * Peak bytes kd_kmeans allocates for n rows of dimension d and k centroids
 */
double
kd_kmeans_memory(int64 n, int d, int k)
{
	double		block = (double) Min(n, kd_nearest_block(d, k));

	return 8.0 * n + 4.0 * k + 8.0 * k * d + 8.0 * k +
		Max(4.0 * n, 4.0 * block * k);
}

/*
 * Cluster n rows of dimension d into k centroids, seeding with k-means++ or,
 * when warm, starting from the centroids given.  With fewer rows than
 * centroids (n < k) some centroids repeat.  Returns the mean squared
 * distance of the rows to their centroids.
 */
float
kd_kmeans(const float *x, int64 n, int d, int k, int niter, uint64 seed, bool warm,
		  float *centroids)
{
	pg_prng_state rng;
	int32	   *assign;
	float	   *dist;
	float	   *cnorms;
	double	   *sums;
	int64	   *sizes;
	double		obj = 0;

	if (n < 1)
		elog(ERROR, "kdindex: k-means needs at least one row");
	assign = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	dist = palloc_extended(sizeof(float) * n, MCXT_ALLOC_HUGE);
	cnorms = palloc(sizeof(float) * k);
	sums = palloc_extended(mul_size(sizeof(double) * k, d), MCXT_ALLOC_HUGE);
	sizes = palloc(sizeof(int64) * k);
	pg_prng_seed(&rng, seed);
	if (!warm)
		kmeanspp_init(x, n, d, k, &rng, centroids);

	for (int it = 0; it <= niter; it++)
	{
		squared_norms(centroids, k, d, cnorms);
		kd_nearest(x, n, d, d, centroids, k, cnorms, assign, dist);
		obj = 0;
		for (int64 i = 0; i < n; i++)
			obj += dist[i];
		if (it == niter)
			break;

		memset(sums, 0, sizeof(double) * k * d);
		memset(sizes, 0, sizeof(int64) * k);
		for (int64 i = 0; i < n; i++)
		{
			double	   *s = sums + (int64) assign[i] * d;
			const float *row = x + i * d;

			CHECK_FOR_INTERRUPTS();
			for (int j = 0; j < d; j++)
				s[j] += row[j];
			sizes[assign[i]]++;
		}
		for (int c = 0; c < k; c++)
			if (sizes[c] > 0)
				for (int j = 0; j < d; j++)
					centroids[(int64) c * d + j] = (float) (sums[(int64) c * d + j] / sizes[c]);
		split_empty_clusters(n, d, k, sizes, &rng, centroids);
	}

	pfree(assign);
	pfree(dist);
	pfree(cnorms);
	pfree(sums);
	pfree(sizes);
	return (float) (obj / n);
}
