/*
 * codewords.c — what distillation does per codeword (train.c drives it):
 * the gradient of the loss with respect to the codebooks, through the hard
 * codes or the soft straight-through path, and the balanced (Sinkhorn-Knopp)
 * assignment of a batch's documents to codewords against collapse.
 */
#include "postgres.h"

#include <math.h>

#include <cblas.h>

#include "miscadmin.h"

#include "distance.h"
#include "distill/student.h"

/* row / column normalisation rounds of the balanced assignment */
#define KD_SINKHORN_ITERS 50

/*
 * Sub-space j of PQ: squared distances (nd x ksub) of the batch's documents
 * to its codewords, ||x||^2 - 2 x.c + ||c||^2 with one sgemm.
 */
static void
subspace_distances(const Student *st, const Batch *b, int j, float *xsub, float *dist)
{
	KdQuantizer *sq = st->sq;
	const float *cb = st->cb + (Size) j * sq->ksub * st->dsub;
	float	   *cnorms = palloc(sizeof(float) * sq->ksub);

	for (int d = 0; d < b->nd; d++)
		memcpy(xsub + (Size) d * st->dsub, b->x + (Size) d * st->dim + j * st->dsub,
			   sizeof(float) * st->dsub);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->nd, sq->ksub, st->dsub, -2.0f,
				xsub, st->dsub, cb, st->dsub, 0.0f, dist, sq->ksub);
	for (int w = 0; w < sq->ksub; w++)
		cnorms[w] = kd_dot(cb + (Size) w * st->dsub, cb + (Size) w * st->dsub, st->dsub);
	for (int d = 0; d < b->nd; d++)
	{
		float		xn = kd_dot(xsub + (Size) d * st->dsub, xsub + (Size) d * st->dsub, st->dsub);

		for (int w = 0; w < sq->ksub; w++)
			dist[(Size) d * sq->ksub + w] += xn + cnorms[w];
	}
	pfree(cnorms);
}

/*
 * Balanced codes for the batch (Sinkhorn-Knopp, as RepCONC): per sub-space,
 * distances rescaled to [-1, 1], Q = exp(-d / eps), rows and columns
 * normalised in turn so that every codeword gets an equal share of the
 * batch, then each document takes its largest entry.
 */
void
kd_balanced_codes(const Student *st, Batch *b, double eps)
{
	KdQuantizer *sq = st->sq;
	int			W = sq->ksub;
	float	   *xsub = palloc(sizeof(float) * b->nd * st->dsub);
	float	   *dist = palloc_extended(sizeof(float) * b->nd * W, MCXT_ALLOC_HUGE);
	double	   *Q = palloc_extended(sizeof(double) * b->nd * W, MCXT_ALLOC_HUGE);

	memset(b->codes, 0, b->nd * sq->code_size);
	for (int j = 0; j < sq->m; j++)
	{
		float		lo = INFINITY,
					hi = -INFINITY;

		subspace_distances(st, b, j, xsub, dist);
		for (Size i = 0; i < (Size) b->nd * W; i++)
		{
			lo = Min(lo, dist[i]);
			hi = Max(hi, dist[i]);
		}
		for (Size i = 0; i < (Size) b->nd * W; i++)
			Q[i] = exp(-(hi > lo ? 2.0 * (dist[i] - lo) / (hi - lo) - 1.0 : 0.0) / eps);
		for (int it = 0; it < KD_SINKHORN_ITERS; it++)
		{
			CHECK_FOR_INTERRUPTS();
			for (int w = 0; w < W; w++)
			{
				double		sum = 0;

				for (int d = 0; d < b->nd; d++)
					sum += Q[(Size) d * W + w];
				for (int d = 0; d < b->nd && sum > 0; d++)
					Q[(Size) d * W + w] /= sum * W;
			}
			for (int d = 0; d < b->nd; d++)
			{
				double		sum = 0;

				for (int w = 0; w < W; w++)
					sum += Q[(Size) d * W + w];
				for (int w = 0; w < W && sum > 0; w++)
					Q[(Size) d * W + w] /= sum * b->nd;
			}
		}
		for (int d = 0; d < b->nd; d++)
		{
			int			best = 0;

			for (int w = 1; w < W; w++)
				if (Q[(Size) d * W + w] > Q[(Size) d * W + best])
					best = w;
			kd_code_set(b->codes + (Size) d * sq->code_size, sq->nbits, j, best);
		}
	}
	pfree(xsub);
	pfree(dist);
	pfree(Q);
}

/*
 * The soft half of the straight-through estimator (PQ, OPQ): x̂ is the hard
 * codeword in the forward pass, but its gradient is taken as that of the soft
 * reconstruction s = sum_w p_w c_w, p = softmax_w(-||x - c_w||^2 / T), T =
 * tau u.  For each codeword:
 *   dL/dc_w += p_w g + (2 / T) p_w (g.c_w - g.s) (x - c_w)
 * Four sgemms per sub-space.
 */
void
kd_soft_grad(const Student *st, const Batch *b, double tau, float *gcb)
{
	KdQuantizer *sq = st->sq;
	int			W = sq->ksub;
	int			ds = st->dsub;
	double		T = tau * st->u;
	float	   *xsub = palloc(sizeof(float) * b->nd * ds);
	float	   *gsub = palloc(sizeof(float) * b->nd * ds);
	float	   *P = palloc_extended(sizeof(float) * b->nd * W, MCXT_ALLOC_HUGE);
	float	   *GC = palloc_extended(sizeof(float) * b->nd * W, MCXT_ALLOC_HUGE);
	float	   *colsum = palloc(sizeof(float) * W);

	for (int j = 0; j < sq->m; j++)
	{
		const float *cb = st->cb + (Size) j * W * ds;
		float	   *gc = gcb + (Size) j * W * ds;

		subspace_distances(st, b, j, xsub, P);
		for (int d = 0; d < b->nd; d++)
		{
			float	   *row = P + (Size) d * W;
			double		mx = -INFINITY,
						sum = 0;

			memcpy(gsub + (Size) d * ds, b->g + (Size) d * st->dim + j * ds, sizeof(float) * ds);
			for (int w = 0; w < W; w++)
				mx = Max(mx, -row[w] / T);
			for (int w = 0; w < W; w++)
				sum += (row[w] = (float) exp(-row[w] / T - mx));
			for (int w = 0; w < W; w++)
				row[w] /= sum;
		}
		/* GC = g.c_w, then the coefficient B = (2/T) p (g.c_w - g.s) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b->nd, W, ds, 1.0f,
					gsub, ds, cb, ds, 0.0f, GC, W);
		memset(colsum, 0, sizeof(float) * W);
		for (int d = 0; d < b->nd; d++)
		{
			float	   *pr = P + (Size) d * W;
			float	   *gr = GC + (Size) d * W;
			double		gs = 0;

			for (int w = 0; w < W; w++)
				gs += pr[w] * gr[w];
			for (int w = 0; w < W; w++)
			{
				gr[w] = (float) (2.0 / T * pr[w] * (gr[w] - gs));
				colsum[w] += gr[w];
			}
		}
		/* dC += P^T G + B^T X - diag(colsum B) C */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, W, ds, b->nd, 1.0f,
					P, W, gsub, ds, 1.0f, gc, ds);
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, W, ds, b->nd, 1.0f,
					GC, W, xsub, ds, 1.0f, gc, ds);
		for (int w = 0; w < W; w++)
			for (int i = 0; i < ds; i++)
				gc[(Size) w * ds + i] -= colsum[w] * cb[(Size) w * ds + i];
	}
	pfree(xsub);
	pfree(gsub);
	pfree(P);
	pfree(GC);
	pfree(colsum);
}

/* The soft reconstruction itself (for the gradient check of soft_grad) */
void
kd_soft_decode(const Student *st, Batch *b, double tau)
{
	KdQuantizer *sq = st->sq;
	int			W = sq->ksub;
	int			ds = st->dsub;
	float	   *xsub = palloc(sizeof(float) * b->nd * ds);
	float	   *P = palloc(sizeof(float) * b->nd * W);
	float	   *out = palloc(sizeof(float) * b->nd * ds);

	for (int j = 0; j < sq->m; j++)
	{
		subspace_distances(st, b, j, xsub, P);
		for (int d = 0; d < b->nd; d++)
		{
			float	   *row = P + (Size) d * W;
			double		mx = -INFINITY,
						sum = 0;

			for (int w = 0; w < W; w++)
				mx = Max(mx, -row[w] / (tau * st->u));
			for (int w = 0; w < W; w++)
				sum += (row[w] = (float) exp(-row[w] / (tau * st->u) - mx));
			for (int w = 0; w < W; w++)
				row[w] /= sum;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b->nd, ds, W, 1.0f,
					P, W, st->cb + (Size) j * W * ds, ds, 0.0f, out, ds);
		for (int d = 0; d < b->nd; d++)
			memcpy(b->xhat + (Size) d * st->dim + j * ds, out + (Size) d * ds, sizeof(float) * ds);
	}
	pfree(xsub);
	pfree(P);
	pfree(out);
}

/* dL/dcodebooks from dL/dx̂: each code's codeword receives its part of g */
void
kd_scatter_grad(const Student *st, const Batch *b, float *gcb)
{
	KdQuantizer *sq = st->sq;

	memset(gcb, 0, sizeof(float) * st->ncb);
	for (int d = 0; d < b->nd; d++)
	{
		const uint8 *code = b->codes + (Size) d * sq->code_size;
		const float *g = b->g + (Size) d * st->dim;

		for (int j = 0; j < sq->m; j++)
		{
			float	   *gc = gcb + ((Size) j * sq->ksub + kd_code_get(code, sq->nbits, j)) * st->dsub;
			const float *gj = st->additive ? g : g + j * st->dsub;

			for (int i = 0; i < st->dsub; i++)
				gc[i] += gj[i];
		}
	}
}
