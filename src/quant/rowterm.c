/*
 * rowterm.c — the per-row error term of the code distance (quantizer.h
 * explains the score): storing r = ||x - x̂||^2 in a byte, its lookup table
 * and the bound it gives.  rowtermfit.c fits its weight a.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "utils/float.h"

#include "distance.h"
#include "quant/rowterm.h"

static int
base_code_size(int quantizer, int m, int nbits)
{
	return (m * nbits + 7) / 8 + (quantizer == KD_QUANT_AQ ? (int) sizeof(float) : 0);
}

/*
 * Sub-codes a term adds to codes of code_size bytes (the data pages' layout
 * needs it before any blob is read): PQ and OPQ codes one byte longer than
 * their m sub-codes carry the term as one 8-bit or two 4-bit sub-codes.
 */
int
kd_rowterm_subcodes(int quantizer, int m, int nbits, int code_size)
{
	if (quantizer == KD_QUANT_AQ || code_size <= base_code_size(quantizer, m, nbits))
		return 0;
	return nbits == 8 ? 1 : 2;
}

/* Give q the term (its mode follows q's kind) with term's weight and levels */
void
kd_rowterm_enable(KdQuantizer *q, const KdRowTerm *term)
{
	q->term = *term;
	q->code_size = base_code_size(q->kind, q->m, q->nbits);
	if (term->mode == KD_ROWTERM_NONE)
	{
		memset(&q->term, 0, sizeof(q->term));
		return;
	}
	if (q->kind == KD_QUANT_AQ)
	{
		q->term.mode = KD_ROWTERM_FOLDED;
		q->term.nsub = 0;
	}
	else
	{
		q->term.mode = KD_ROWTERM_CODE;
		q->term.nsub = q->nbits == 8 ? 1 : 2;
		q->code_size = ((q->m + q->term.nsub) * q->nbits + 7) / 8;
	}
	/* OPQ's PQ writes the codes, in the rotated space where r is the same */
	if (q->kind == KD_QUANT_OPQ)
		kd_rowterm_enable(kd_opq_inner(q), &q->term);
}

/* The smallest level at or above v, or the last one (no bound) */
int
kd_rowterm_level_of(const KdRowTerm *t, float v)
{
	double		b;
	int			level;

	if (v <= t->lo)
		return 0;
	if (!(t->step > 0) || !(v <= level_value(t, KD_ROWTERM_LEVELS - 2)))
		return KD_ROWTERM_LEVELS - 1;	/* also NaN, infinity */
	b = ceil(((double) v - t->lo) / t->step);
	if (b >= KD_ROWTERM_LEVELS - 1)
		return KD_ROWTERM_LEVELS - 1;
	level = (int) b;
	/* float rounding of lo + step b must not fall below r: the bound */
	while (level < KD_ROWTERM_LEVELS - 1 && level_value(t, level) < v)
		level++;
	return level;
}

static void
set_level(const KdQuantizer *q, uint8 *code, int b)
{
	if (q->nbits == 8)
		kd_code_set(code, 8, q->m, b);
	else
	{
		kd_code_set(code, 4, q->m, b & 0xF);
		kd_code_set(code, 4, q->m + 1, b >> 4);
	}
}

static int
get_level(const KdQuantizer *q, const uint8 *code)
{
	if (q->nbits == 8)
		return kd_code_get(code, 8, q->m);
	return kd_code_get(code, 4, q->m) | kd_code_get(code, 4, q->m + 1) << 4;
}

/*
 * Write the term's sub-codes of n codes whose m sub-codes are set: r of each
 * row from q's own decoding (the rotated space for OPQ's PQ, the residual
 * with lists: both have the row's r)
 */
void
kd_rowterm_encode(const KdQuantizer *q, const float *x, int64 n, uint8 *codes)
{
	float	   *xhat;

	if (q->term.mode != KD_ROWTERM_CODE)
		return;
	xhat = palloc(sizeof(float) * q->dim);
	for (int64 i = 0; i < n; i++)
	{
		uint8	   *code = codes + i * q->code_size;

		q->ops->decode(q, code, 1, xhat);
		set_level(q, code, kd_rowterm_level_of(&q->term, term_value(&q->term, kd_l2sq(x + i * q->dim, xhat, q->dim))));
	}
	pfree(xhat);
}

/*
 * Append the term's lookup tables for query, q->term.nsub x ksub entries,
 * after the m x ksub of lut (a no-op for codes without term sub-codes).
 * With w = a (L2, cosine) or -b ||query|| (inner product): at 8 bits
 * w level(b); at 4 bits the low nibble's w (lo + step l) and the high
 * nibble's w step 16 h, whose sum is w level(16 h + l).
 */
void
kd_rowterm_lut(const KdQuantizer *q, KdMetric metric, const float *query, float *lut)
{
	const KdRowTerm *t = &q->term;
	float		w = t->weight;

	if (t->mode != KD_ROWTERM_CODE)
		return;
	if (metric == KD_METRIC_IP)
		w = -w * sqrtf(kd_dot(query, query, q->dim));
	lut += q->m * q->ksub;
	if (q->nbits == 8)
		for (int b = 0; b < KD_ROWTERM_LEVELS; b++)
			lut[b] = w * level_value(t, b);
	else
		for (int l = 0; l < 16; l++)
		{
			lut[l] = w * (t->lo + t->step * l);
			lut[16 + l] = w * t->step * 16 * l;
		}
}

/*
 * The levels bound r as the encoder computed it, in float: a sum of dim
 * squares, within dim x FLT_EPSILON of the exact one (relative), which the
 * bound adds
 */
double
kd_rowterm_bound(const KdQuantizer *q, const uint8 *code)
{
	const KdRowTerm *t = &q->term;
	double		slack = 1 + (q->dim + 4) * (double) FLT_EPSILON;

	if (t->mode == KD_ROWTERM_CODE)
	{
		int			b = get_level(q, code);
		double		level = Max((double) level_value(t, b), 0.0);

		if (b == KD_ROWTERM_LEVELS - 1)
			return get_float8_infinity();
		return t->root ? level * sqrt(slack) : sqrt(level * slack);
	}
	if (t->mode == KD_ROWTERM_FOLDED && t->weight > 0)
	{
		/* the stored float is fl(||x̂||^2 + fl(a r)), x̂ decoded the same way */
		float	   *xhat = palloc(sizeof(float) * q->dim);
		float		stored;
		double		norm,
					r;

		q->ops->decode(q, code, 1, xhat);
		norm = kd_dot(xhat, xhat, q->dim);
		memcpy(&stored, code + (q->m * q->nbits + 7) / 8, sizeof(float));
		pfree(xhat);
		r = ((double) stored - norm + 4 * FLT_EPSILON * (fabs(stored) + fabs(norm))) /
			t->weight * slack;
		return sqrt(Max(r, 0.0));
	}
	return get_float8_infinity();
}
