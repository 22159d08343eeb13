/*
 * rowterm.c — the per-row error term of the code distance (quantizer.h
 * explains the score): storing r = ||x - x̂||^2 in a byte, its lookup table,
 * the bound it gives, and fitting its weight a.
 *
 * Fitting: a is the weight under which the codes rank a set of queries' true
 * neighbours best (recall@10 of the code distance plus a level(b), on a grid
 * of a, smoothed over neighbouring grid points).  CREATE INDEX takes queries
 * and documents from its sample (kd_rowterm_fit); kdindex_train takes the
 * teacher's queries and lists (kd_rowterm_fit_teacher).  One global number
 * cannot overfit the way codebooks can.  Under L1, and for AQ under inner
 * product, a = 0 and the byte (PQ, OPQ) only carries the bound.
 */
#include "postgres.h"

#include <cblas.h>
#include <float.h>
#include <math.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/float.h"

#include "distance.h"
#include "distill/distill.h"
#include "quant/quantizer.h"

/* Sample rows the build's fit takes as queries, and as their documents */
#define KD_ROWTERM_QUERIES 512
#define KD_ROWTERM_DOCS 16384
/*
 * AQ's beam encoder is slow (16,384 784-d rows took 20 s of a 236 s AQ16
 * build on a loaded machine): a quarter of them
 */
#define KD_ROWTERM_DOCS_AQ 4096
/* Neighbours whose recall the weight maximises */
#define KD_ROWTERM_K 10
/* Documents coded and scored at once */
#define KD_ROWTERM_BATCH 1024
/* Weights tried: 0, 0.05, ..., 1 */
#define KD_ROWTERM_GRID 21
#define KD_ROWTERM_GRID_STEP 0.05

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

/* What the levels are of: r, or e = sqrt(r) (inner product) */
static inline float
term_value(const KdRowTerm *t, float r)
{
	return t->root ? sqrtf(r) : r;
}

/* level(b) = lo + step b, in float as the scan's table has it */
static inline float
level_value(const KdRowTerm *t, int b)
{
	return t->lo + t->step * (float) b;
}

/* The smallest level at or above v, or the last one (no bound) */
static int
level_of(const KdRowTerm *t, float v)
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
		set_level(q, code, level_of(&q->term, term_value(&q->term, kd_l2sq(x + i * q->dim, xhat, q->dim))));
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

/* Insert doc j scored s into the k best (a max-heap of scores, ids beside) */
static inline void
keep_best(float *hs, int32 *hi, int *n, int k, float s, int32 j)
{
	int			i;

	if (*n < k)
	{
		i = (*n)++;
		while (i > 0 && hs[(i - 1) / 2] < s)
		{
			hs[i] = hs[(i - 1) / 2];
			hi[i] = hi[(i - 1) / 2];
			i = (i - 1) / 2;
		}
		hs[i] = s;
		hi[i] = j;
		return;
	}
	if (s >= hs[0])
		return;
	i = 0;
	for (;;)
	{
		int			c = 2 * i + 1;

		if (c >= k)
			break;
		if (c + 1 < k && hs[c + 1] > hs[c])
			c++;
		if (hs[c] <= s)
			break;
		hs[i] = hs[c];
		hi[i] = hi[c];
		i = c;
	}
	hs[i] = s;
	hi[i] = j;
}

/*
 * Scores of nb rows for nq queries into out (row i at out + i * ldo):
 * squared distances less ||q||^2 (constant per query), ||x||^2 - 2 q.x, or
 * under inner product -q.x
 */
static void
score_block(const float *queries, int nq, const float *x, int nb, int dim, KdMetric metric,
			float *out, int64 ldo)
{
	bool		ip = metric == KD_METRIC_IP;
	float		norms[KD_ROWTERM_BATCH];

	Assert(nb <= KD_ROWTERM_BATCH);
	CHECK_FOR_INTERRUPTS();
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nb, dim, ip ? -1.0f : -2.0f,
				queries, dim, x, dim, 0.0f, out, ldo);
	if (ip)
		return;
	for (int j = 0; j < nb; j++)
		norms[j] = kd_dot(x + (Size) j * dim, x + (Size) j * dim, dim);
	for (int i = 0; i < nq; i++)
		for (int j = 0; j < nb; j++)
			out[i * ldo + j] += norms[j];
}

/* Rows [j0, j0 + nb) of the documents into batch: docs' rows, or those rows names */
static void
gather(const float *docs, const int64 *rows, int64 j0, int nb, int dim, float *batch)
{
	for (int j = 0; j < nb; j++)
		memcpy(batch + (Size) j * dim, docs + (Size) (rows ? rows[j0 + j] : j0 + j) * dim,
			   sizeof(float) * dim);
}

/* Documents a fit takes at most: its nq x nd scores within half of maintenance_work_mem */
static int64
max_docs(int nq)
{
	return Max((int64) maintenance_work_mem * 1024 / 2 / ((int64) sizeof(float) * Max(nq, 1)),
			   KD_ROWTERM_BATCH);
}

/*
 * Fit the term to queries whose true k nearest among the documents are truth
 * (nq x k numbers into the documents, -1 = none): the levels from the
 * documents' r (or e), and the weight of best recall@k of the codes: of the
 * truth among the depth (>= k) documents the codes rank first, which an
 * exact re-rank of that many candidates returns in order.  The
 * documents are docs' rows, or the rows rows names; they are coded in
 * batches, so besides them the fit holds nq x nd scores.  L1, and AQ under
 * inner product: a = 0.
 */
void
kd_rowterm_fit_ranked(KdQuantizer *q, KdMetric metric, const float *queries, int nq,
					  const float *docs, const int64 *rows, int64 nd, const int32 *truth, int k,
					  int depth)
{
	KdRowTerm  *t = &q->term;
	int			dim = q->dim;
	uint8	   *codes = palloc(KD_ROWTERM_BATCH * q->code_size);
	int32	   *lists = palloc(sizeof(int32) * KD_ROWTERM_BATCH);
	float	   *batch = palloc(sizeof(float) * KD_ROWTERM_BATCH * dim);
	float	   *xhat = palloc(sizeof(float) * KD_ROWTERM_BATCH * dim);
	float	   *r = palloc(sizeof(float) * Max(nd, 1));
	float	   *level = palloc(sizeof(float) * Max(nd, 1));
	float		hi = 0,
				lo = FLT_MAX;
	double		hits[KD_ROWTERM_GRID] = {0};
	int			best = 0;
	float	   *cd;
	float	   *hs;
	int32	   *hid;
	float	   *qnorm = palloc(sizeof(float) * Max(nq, 1));
	instr_time	start,
				duration;
	bool		fitted = metric == KD_METRIC_L2 || metric == KD_METRIC_COSINE ||
		(metric == KD_METRIC_IP && q->kind != KD_QUANT_AQ);

	Assert(t->mode != KD_ROWTERM_NONE);
	INSTR_TIME_SET_CURRENT(start);
	t->root = metric == KD_METRIC_IP && q->kind != KD_QUANT_AQ;
	depth = (int) Min(Max(depth, k), Max(nd - 1, k));
	hs = palloc(sizeof(float) * depth);
	hid = palloc(sizeof(int32) * depth);
	if (nq == 0 || nd <= k)
		fitted = false;
	cd = palloc_extended(sizeof(float) * (Size) (fitted ? nq : 0) * nd + 1, MCXT_ALLOC_HUGE);
	for (int64 j0 = 0; j0 < nd; j0 += KD_ROWTERM_BATCH)
	{
		int			nb = (int) Min(KD_ROWTERM_BATCH, nd - j0);

		gather(docs, rows, j0, nb, dim, batch);
		kd_quantizer_encode(q, batch, nb, lists, codes);
		kd_quantizer_decode(q, lists, codes, nb, xhat);
		for (int j = 0; j < nb; j++)
		{
			float		v = term_value(t, kd_l2sq(batch + (Size) j * dim, xhat + (Size) j * dim, dim));

			r[j0 + j] = v;
			if (isfinite(v))
			{
				lo = Min(lo, v);
				hi = Max(hi, v);
			}
		}
		if (fitted)
			score_block(queries, nq, xhat, nb, dim, metric, cd + j0, nd);
	}
	pfree(codes);
	pfree(lists);
	pfree(batch);
	pfree(xhat);
	/* the documents' largest r is the last bounded level */
	t->lo = lo <= hi ? lo : 0;
	t->step = lo < hi ? (hi - lo) / (KD_ROWTERM_LEVELS - 2) : 0;
	t->weight = 0;
	if (!isfinite(t->step) || !isfinite(level_value(t, KD_ROWTERM_LEVELS - 1)))
	{
		/* rows near the float range: no levels, no term */
		t->lo = 0;
		t->step = 0;
		fitted = false;
	}
	for (int64 j = 0; j < nd; j++)
		level[j] = level_value(t, level_of(t, r[j]));
	pfree(r);

	/* inner product: the level's weight is -b ||q|| */
	for (int i = 0; i < nq && fitted; i++)
		qnorm[i] = metric == KD_METRIC_IP ?
			-sqrtf(kd_dot(queries + (Size) i * dim, queries + (Size) i * dim, dim)) : 1;
	for (int g = 0; g < KD_ROWTERM_GRID && fitted; g++)
	{
		for (int i = 0; i < nq; i++)
		{
			const float *row = cd + (Size) i * nd;
			const int32 *want = truth + (Size) i * k;
			float		a = (float) (g * KD_ROWTERM_GRID_STEP) * qnorm[i];
			int			n = 0;

			CHECK_FOR_INTERRUPTS();
			for (int64 j = 0; j < nd; j++)
				keep_best(hs, hid, &n, depth, row[j] + a * level[j], (int32) j);
			for (int h = 0; h < n; h++)
				for (int w = 0; w < k; w++)
					if (want[w] == hid[h])
					{
						hits[g]++;
						break;
					}
		}
	}
	/* the best of the curve smoothed over neighbouring weights, the smallest on ties */
	if (fitted)
	{
		double		best_score = -1;

		for (int g = 0; g < KD_ROWTERM_GRID; g++)
		{
			double		s = 2 * hits[g] + hits[Max(g - 1, 0)] + hits[Min(g + 1, KD_ROWTERM_GRID - 1)];

			if (s > best_score)
			{
				best_score = s;
				best = g;
			}
		}
		t->weight = (float) (best * KD_ROWTERM_GRID_STEP);
	}
	if (fitted && message_level_is_interesting(DEBUG2))
	{
		StringInfoData curve;

		initStringInfo(&curve);
		for (int g = 0; g < KD_ROWTERM_GRID; g++)
			appendStringInfo(&curve, " %.4f", hits[g] / ((double) nq * k));
		INSTR_TIME_SET_CURRENT(duration);
		INSTR_TIME_SUBTRACT(duration, start);
		elog(DEBUG2, "kdindex rowterm: a = %.2f on %d queries x " INT64_FORMAT " rows in %.2f s; recall@%d in the top %d at a = 0, %.2f, ...:%s",
			 t->weight, nq, nd, INSTR_TIME_GET_DOUBLE(duration), k, depth, KD_ROWTERM_GRID_STEP, curve.data);
		pfree(curve.data);
	}
	pfree(cd);
	pfree(level);
	pfree(qnorm);
	pfree(hs);
	pfree(hid);
	kd_rowterm_enable(q, t);
}

/*
 * CREATE INDEX's fit: KD_ROWTERM_QUERIES rows of the sample x (n rows, in
 * the index's metric form) as queries, up to KD_ROWTERM_DOCS others as their
 * documents, the exact top-k among those as the truth.  The documents are
 * sparser than the table's rows (table_rows), so a query's k nearest among
 * them lie as far as its k table_rows / nd nearest in the table, and a
 * larger a pays off there (Fashion-MNIST, PQ16, 16,384 of 60,000 rows: best
 * a 0.6-0.7 for the top-10, 0.4-0.6 for the top-3, 0.5-0.6 on the whole
 * table): k is scaled by nd / table_rows.
 */
void
kd_rowterm_fit(KdQuantizer *q, KdMetric metric, const float *x, int64 n, int64 table_rows)
{
	int			dim = q->dim;
	int			nq = (int) Min(KD_ROWTERM_QUERIES, n / 8);
	int64		nd = Min(Min(q->kind == KD_QUANT_AQ ? KD_ROWTERM_DOCS_AQ : KD_ROWTERM_DOCS, n - nq),
						 max_docs(nq));
	float	   *queries = palloc(sizeof(float) * Max(nq, 1) * dim);
	int64	   *rows = palloc(sizeof(int64) * Max(nd, 1));
	float	   *batch = palloc(sizeof(float) * KD_ROWTERM_BATCH * dim);
	float	   *block = palloc(sizeof(float) * Max(nq, 1) * KD_ROWTERM_BATCH);
	float	   *hs;
	int			k;
	int		   *cnt;
	int32	   *truth;
	int64		stride;
	int64		j = 0;
	instr_time	start,
				duration;

	INSTR_TIME_SET_CURRENT(start);
	k = (int) rint((double) KD_ROWTERM_K * nd / Max(table_rows, n));
	k = Max(1, Min(k, KD_ROWTERM_K));
	truth = palloc(sizeof(int32) * Max(nq, 1) * k);
	hs = palloc(sizeof(float) * Max(nq, 1) * k);
	cnt = palloc0(sizeof(int) * Max(nq, 1));

	/* evenly spread: queries every (n / nq)-th row, documents the rows between */
	stride = nq > 0 ? n / nq : n + 1;
	for (int i = 0; i < nq; i++)
		memcpy(queries + (Size) i * dim, x + (Size) i * stride * dim, sizeof(float) * dim);
	for (int64 row = 0; row < n && j < nd; row++)
		if (!(row % stride == 0 && row / stride < nq))
			rows[j++] = row;
	nd = j;

	/* the truth: each query's k nearest documents, a batch at a time */
	for (int64 j0 = 0; j0 < nd && nq > 0; j0 += KD_ROWTERM_BATCH)
	{
		int			nb = (int) Min(KD_ROWTERM_BATCH, nd - j0);

		gather(x, rows, j0, nb, dim, batch);
		score_block(queries, nq, batch, nb, dim, metric, block, nb);
		for (int i = 0; i < nq; i++)
			for (int b = 0; b < nb; b++)
				keep_best(hs + (Size) i * k, truth + (Size) i * k, &cnt[i], k,
						  block[(Size) i * nb + b], (int32) (j0 + b));
	}
	pfree(batch);
	pfree(block);
	pfree(hs);
	pfree(cnt);
	kd_rowterm_fit_ranked(q, metric, queries, nq, x, rows, nd, truth, k, k);
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	elog(DEBUG2, "kdindex rowterm: fitted on the sample in %.2f s", INSTR_TIME_GET_DOUBLE(duration));
	pfree(queries);
	pfree(rows);
	pfree(truth);
}

static int
int32_cmp(const void *a, const void *b)
{
	int32		x = *(const int32 *) a,
				y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/*
 * kdindex_train's fit, after the codebooks are trained: up to
 * KD_ROWTERM_QUERIES of the teacher's queries qs (in that order: ones it
 * did not train on first), the
 * first KD_ROWTERM_K of each one's list as the truth, and as the documents
 * their lists, then as many of the teacher's other documents as memory
 * allows.  The lists hold each query's nearest competitors, ranks k + 1 to
 * K; the other documents stand for the rest of the table, whose rows a
 * codes-only scan also meets (fitted on the lists alone, the weight was
 * too large for 1M rows).  depth > k: the weight of best recall after an
 * exact re-rank of the codes' first depth (an index scanned with
 * kdindex.rerank); at most half the lists, the rest of each list being the
 * competitors.
 */
void
kd_rowterm_fit_teacher(KdQuantizer *q, KdMetric metric, const KdDistillSet *set,
					   const int32 *qs, int nqs, int depth)
{
	/* AQ's encoder is slow: fewer others (see KD_ROWTERM_DOCS_AQ) */
	int64		others = q->kind == KD_QUANT_AQ ? KD_ROWTERM_DOCS_AQ : set->ndocs;
	int			dim = set->dim;
	int			k = Min(KD_ROWTERM_K, set->k);
	/* the documents within half of maintenance_work_mem, the scores within the other */
	int64		budget = Max((int64) maintenance_work_mem * 1024 / 2 / ((int64) sizeof(float) * dim),
							 set->k);
	int			nq = (int) Min(Min(KD_ROWTERM_QUERIES, nqs), Max(budget / Max(set->k, 1), 1));
	int64		ndocs;
	int32	   *pool;
	int32	   *truth;
	float	   *queries;
	float	   *docs;
	int64		nd = 0;

	if (q->term.mode == KD_ROWTERM_NONE)
		return;
	while (nq > 1 && (double) nq * nq * set->k * sizeof(float) > (double) maintenance_work_mem * 1024 / 2)
		nq /= 2;
	/* as many documents as the scores' half allows, with at least the lists */
	ndocs = Min(Min(budget, others + (int64) nq * set->k), max_docs(nq));
	ndocs = Max(ndocs, (int64) nq * set->k);
	pool = palloc_extended(sizeof(int32) * Max(ndocs, 1), MCXT_ALLOC_HUGE);
	truth = palloc(sizeof(int32) * Max(nq, 1) * k);
	queries = palloc(sizeof(float) * Max(nq, 1) * dim);
	for (int i = 0; i < nq; i++)
	{
		const int32 *list = set->lists + (Size) qs[i] * set->k;

		memcpy(queries + (Size) i * dim, set->queries + (Size) qs[i] * dim, sizeof(float) * dim);
		for (int j = 0; j < set->k; j++)
			if (list[j] >= 0)
				pool[nd++] = list[j];
	}
	/* the others evenly spread over the documents */
	for (int64 j = 0, n = ndocs - nd; j < n; j++)
		pool[nd++] = (int32) (j * set->ndocs / n);
	if (nd > 0)
	{
		int64		u = 1;

		qsort(pool, nd, sizeof(int32), int32_cmp);
		for (int64 j = 1; j < nd; j++)
			if (pool[j] != pool[u - 1])
				pool[u++] = pool[j];
		nd = u;
	}
	for (int i = 0; i < nq; i++)
	{
		const int32 *list = set->lists + (Size) qs[i] * set->k;

		for (int j = 0; j < k; j++)
		{
			int32	   *at = list[j] < 0 ? NULL :
				bsearch(&list[j], pool, nd, sizeof(int32), int32_cmp);

			truth[(Size) i * k + j] = at ? (int32) (at - pool) : -1;
		}
	}
	docs = palloc_extended(sizeof(float) * (Size) Max(nd, 1) * dim, MCXT_ALLOC_HUGE);
	for (int64 start = 0; start < nd; start += 4096)
	{
		CHECK_FOR_INTERRUPTS();
		set->fetch(set->fetch_arg, pool + start, (int) Min(4096, nd - start), docs + (Size) start * dim);
	}
	kd_rowterm_fit_ranked(q, metric, queries, nq, docs, NULL, nd, truth, k,
						  Min(Max(depth, k), Max(set->k / 2, k)));
	pfree(pool);
	pfree(truth);
	pfree(queries);
	pfree(docs);
}
