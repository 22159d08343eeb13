/*
 * rowtermfit.c — fitting the per-row error term's weight a (rowterm.c
 * stores the term): a is the weight under which the codes rank a set of
 * queries' true neighbours best (recall@10 of the code distance plus
 * a level(b), on a grid of a, smoothed over neighbouring grid points).
 * CREATE INDEX takes queries and documents from its sample (kd_rowterm_fit);
 * kdindex_train takes the teacher's queries and lists, and a sample of the
 * table (kd_rowterm_fit_teacher).  One global number cannot overfit the way
 * codebooks can.  Under L1, and for AQ under inner product, a = 0 and the
 * byte (PQ, OPQ) only carries the bound.
 */
#include "postgres.h"

#include <cblas.h>
#include <float.h>
#include <math.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "portability/instr_time.h"

#include "distance.h"
#include "distill/distill.h"
#include "quant/rowterm.h"

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
 * Code the documents (docs' rows, or the rows rows names) with q: set q's
 * levels from their r (or e) and give each document its level's value in
 * level (nd); with cd, the nq x nd code scores of queries (score_block).
 * Returns false when no levels can be set (rows near the float range).
 */
static bool
code_documents(KdQuantizer *q, KdMetric metric, const float *queries, int nq, const float *docs,
			   const int64 *rows, int64 nd, float *cd, float *level)
{
	KdRowTerm  *t = &q->term;
	int			dim = q->dim;
	uint8	   *codes = palloc(KD_ROWTERM_BATCH * q->code_size);
	int32	   *lists = palloc(sizeof(int32) * KD_ROWTERM_BATCH);
	float	   *batch = palloc(sizeof(float) * KD_ROWTERM_BATCH * dim);
	float	   *xhat = palloc(sizeof(float) * KD_ROWTERM_BATCH * dim);
	float		hi = 0,
				lo = FLT_MAX;
	bool		ok = true;

	t->root = metric == KD_METRIC_IP && q->kind != KD_QUANT_AQ;
	for (int64 j0 = 0; j0 < nd; j0 += KD_ROWTERM_BATCH)
	{
		int			nb = (int) Min(KD_ROWTERM_BATCH, nd - j0);

		gather(docs, rows, j0, nb, dim, batch);
		kd_quantizer_encode(q, batch, nb, lists, codes);
		kd_quantizer_decode(q, lists, codes, nb, xhat);
		for (int j = 0; j < nb; j++)
		{
			float		v = term_value(t, kd_l2sq(batch + (Size) j * dim, xhat + (Size) j * dim, dim));

			level[j0 + j] = v;
			if (isfinite(v))
			{
				lo = Min(lo, v);
				hi = Max(hi, v);
			}
		}
		if (cd)
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
		t->lo = 0;
		t->step = 0;
		ok = false;
	}
	for (int64 j = 0; j < nd; j++)
		level[j] = level_value(t, kd_rowterm_level_of(t, level[j]));
	return ok;
}

/* Whether the term has a weight to fit under metric (L1, and AQ under inner product: a = 0) */
static bool
weight_fitted(const KdQuantizer *q, KdMetric metric)
{
	return metric == KD_METRIC_L2 || metric == KD_METRIC_COSINE ||
		(metric == KD_METRIC_IP && q->kind != KD_QUANT_AQ);
}

/* The level's weight for query i: 1, or -||q|| under inner product (a then is b) */
static float
query_sign(KdMetric metric, const float *query, int dim)
{
	return metric == KD_METRIC_IP ? -sqrtf(kd_dot(query, query, dim)) : 1;
}

/* hits[g] smoothed over neighbouring grid points */
static double
smoothed(const double *hits, int g)
{
	return (2 * hits[g] + hits[Max(g - 1, 0)] + hits[Min(g + 1, KD_ROWTERM_GRID - 1)]) / 4;
}

/*
 * Set q's weight to the grid point of most hits (hits[g] at a = g x step
 * among the codes' first depth), smoothed over neighbouring points.  When
 * depth > k, a re-rank's recall is often flat over a wide range of a, and the
 * point of most hits is then a matter of sampling noise (at 245 lists, two
 * seeds picked 0.35 and 0.6 on the same curve): so among the points within
 * one standard error of the best (the binomial one of total trials), take
 * the one of most codes-only hits (hits_k, the truth among the first k),
 * which the scan without a re-rank, and the candidates a re-rank sees first,
 * depend on.  Ties go to the best point, then to the smallest weight.
 */
static void
pick_weight(KdQuantizer *q, const double *hits, const double *hits_k, double total, int nq,
			int64 nd, int depth, instr_time start)
{
	int			best = 0;
	int			pick = 0;
	double		p;
	double		slack;
	instr_time	duration;

	for (int g = 1; g < KD_ROWTERM_GRID; g++)
		if (smoothed(hits, g) > smoothed(hits, best))
			best = g;
	p = smoothed(hits, best) / Max(total, 1);
	slack = depth > KD_ROWTERM_K ? sqrt(Max(total, 1) * p * (1 - p)) : 0;
	pick = best;
	for (int g = 0; g < KD_ROWTERM_GRID; g++)
		if (smoothed(hits, g) >= smoothed(hits, best) - slack &&
			smoothed(hits_k, g) > smoothed(hits_k, pick))
			pick = g;
	q->term.weight = (float) (pick * KD_ROWTERM_GRID_STEP);
	if (message_level_is_interesting(DEBUG2))
	{
		StringInfoData curve;

		initStringInfo(&curve);
		for (int g = 0; g < KD_ROWTERM_GRID; g++)
			appendStringInfo(&curve, " %.4f", hits[g] / Max(total, 1));
		if (depth > KD_ROWTERM_K)
		{
			appendStringInfo(&curve, "; in the top %d:", KD_ROWTERM_K);
			for (int g = 0; g < KD_ROWTERM_GRID; g++)
				appendStringInfo(&curve, " %.4f", hits_k[g] / Max(total, 1));
		}
		INSTR_TIME_SET_CURRENT(duration);
		INSTR_TIME_SUBTRACT(duration, start);
		elog(DEBUG2, "kdindex rowterm: a = %.2f (best in the top %d: %.2f) on %d queries x " INT64_FORMAT " rows in %.2f s; recall@%d in the top %d at a = 0, %.2f, ...:%s",
			 q->term.weight, depth, best * KD_ROWTERM_GRID_STEP, nq, nd,
			 INSTR_TIME_GET_DOUBLE(duration), KD_ROWTERM_K, depth, KD_ROWTERM_GRID_STEP, curve.data);
		pfree(curve.data);
	}
}

/*
 * Fit the term to queries whose true k nearest among the documents are truth
 * (nq x k numbers into the documents, -1 = none): the levels from the
 * documents' r (or e), and the weight of best recall@k of the codes: of the
 * truth among the depth (>= k) documents the codes rank first, which an
 * exact re-rank of that many candidates returns in order.  The
 * documents are docs' rows, or the rows rows names; they are coded in
 * batches, so besides them the fit holds nq x nd scores.
 */
void
kd_rowterm_fit_ranked(KdQuantizer *q, KdMetric metric, const float *queries, int nq,
					  const float *docs, const int64 *rows, int64 nd, const int32 *truth, int k,
					  int depth)
{
	int			dim = q->dim;
	float	   *level = palloc(sizeof(float) * Max(nd, 1));
	double		hits[KD_ROWTERM_GRID] = {0};
	double		hits_k[KD_ROWTERM_GRID] = {0};
	float	   *cd;
	float	   *hs;
	int32	   *hid;
	float	   *sign = palloc(sizeof(float) * Max(nq, 1));
	instr_time	start;
	bool		fitted = weight_fitted(q, metric) && nq > 0 && nd > k;

	Assert(q->term.mode != KD_ROWTERM_NONE);
	INSTR_TIME_SET_CURRENT(start);
	depth = (int) Min(Max(depth, k), Max(nd - 1, k));
	hs = palloc(sizeof(float) * depth);
	hid = palloc(sizeof(int32) * depth);
	cd = palloc_extended(sizeof(float) * (Size) (fitted ? nq : 0) * nd + 1, MCXT_ALLOC_HUGE);
	fitted &= code_documents(q, metric, queries, nq, docs, rows, nd, fitted ? cd : NULL, level);
	for (int i = 0; i < nq && fitted; i++)
		sign[i] = query_sign(metric, queries + (Size) i * dim, dim);
	for (int g = 0; g < KD_ROWTERM_GRID && fitted; g++)
	{
		for (int i = 0; i < nq; i++)
		{
			const float *row = cd + (Size) i * nd;
			const int32 *want = truth + (Size) i * k;
			float		a = (float) (g * KD_ROWTERM_GRID_STEP) * sign[i];
			int			n = 0;

			CHECK_FOR_INTERRUPTS();
			for (int64 j = 0; j < nd; j++)
				keep_best(hs, hid, &n, depth, row[j] + a * level[j], (int32) j);
			for (int h = 0; h < n; h++)
				for (int w = 0; w < k; w++)
					if (want[w] == hid[h])
					{
						int			rank = 0;

						for (int o = 0; o < n; o++)
							rank += hs[o] < hs[h];
						hits[g]++;
						hits_k[g] += rank < k;
						break;
					}
		}
	}
	if (fitted)
		pick_weight(q, hits, hits_k, (double) nq * k, nq, nd, depth, start);
	pfree(cd);
	pfree(level);
	pfree(sign);
	pfree(hs);
	pfree(hid);
	kd_rowterm_enable(q, &q->term);
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
 * The union of the lists of queries qs (K each) as sorted document numbers
 * into pool (room for nq K); returns how many
 */
static int64
list_union(const KdDistillSet *set, const int32 *qs, int nq, int32 *pool)
{
	int64		nd = 0,
				u = 1;

	for (int i = 0; i < nq; i++)
		for (int j = 0; j < set->k; j++)
			if (set->lists[(Size) qs[i] * set->k + j] >= 0)
				pool[nd++] = set->lists[(Size) qs[i] * set->k + j];
	if (nd == 0)
		return 0;
	qsort(pool, nd, sizeof(int32), int32_cmp);
	for (int64 j = 1; j < nd; j++)
		if (pool[j] != pool[u - 1])
			pool[u++] = pool[j];
	return u;
}

/* Where document doc sits in pool (nd sorted numbers), or -1 */
static int32
pool_index(const int32 *pool, int64 nd, int32 doc)
{
	int32	   *at = doc < 0 ? NULL : bsearch(&doc, pool, nd, sizeof(int32), int32_cmp);

	return at ? (int32) (at - pool) : -1;
}

/*
 * Recall hits of query i at weight a (times its sign): each of its truth
 * (k pool positions) counts when fewer than depth rows outrank it: those of
 * its own list (K pool positions) by count, and the table's sampled rows
 * beyond its list (ns of them from pool position nl, those with valid set)
 * each as w rows; *hits_k counts those fewer than k rows outrank.  best (m)
 * takes the sampled rows' least scores.
 */
static int
weighted_hits(const float *cd, const float *level, float a, const int32 *truth, int k,
			  const int32 *own, int K, int64 nl, int ns, const bool *valid, double w,
			  int depth, float *best, int32 *bid, int m, double *hits_k)
{
	int			nbest = 0,
				hits = 0;

	for (int v = 0; v < ns; v++)
		if (valid[v])
			keep_best(best, bid, &nbest, m, cd[nl + v] + a * level[nl + v], v);
	for (int t = 0; t < k; t++)
	{
		float		st;
		double		rank = 0;

		if (truth[t] < 0)
			continue;
		st = cd[truth[t]] + a * level[truth[t]];
		for (int u = 0; u < K; u++)
			if (own[u] >= 0 && own[u] != truth[t] && cd[own[u]] + a * level[own[u]] < st)
				rank++;
		for (int b = 0; b < nbest; b++)
			if (best[b] < st)
				rank += w;
		hits += rank < depth;
		*hits_k += rank < k;
	}
	return hits;
}

/*
 * Fit with a sample of the table: queries qs[0..nq-1] rank their own lists
 * and set->table's rows; see kd_rowterm_fit_teacher.  Holds nq x (the lists'
 * union + the sample) code scores and nq x the sample exact ones.
 */
static void
fit_with_table(KdQuantizer *q, KdMetric metric, const KdDistillSet *set, const int32 *qs, int nq,
			   int ns, int depth)
{
	int			dim = set->dim;
	int			k = Min(KD_ROWTERM_K, set->k);
	int32	   *pool = palloc_extended(sizeof(int32) * Max((Size) nq * set->k, 1), MCXT_ALLOC_HUGE);
	int64		nl = list_union(set, qs, nq, pool);
	int64		nd = nl + ns;
	float	   *docs = palloc_extended(sizeof(float) * Max(nd, 1) * dim, MCXT_ALLOC_HUGE);
	float	   *queries = palloc(sizeof(float) * Max(nq, 1) * dim);
	float	   *cd = palloc_extended(sizeof(float) * Max((Size) nq * nd, 1), MCXT_ALLOC_HUGE);
	float	   *ex = palloc_extended(sizeof(float) * Max((Size) nq * ns, 1), MCXT_ALLOC_HUGE);
	float	   *level = palloc_extended(sizeof(float) * Max(nd, 1), MCXT_ALLOC_HUGE);
	int32	   *truth = palloc(sizeof(int32) * Max(nq, 1) * k);
	int32	   *own = palloc(sizeof(int32) * Max(nq, 1) * set->k);
	bool	   *valid = palloc(sizeof(bool) * Max(ns, 1));
	double		w = Max(set->table_weight, 1.0);
	int			m = Min((int) ceil(depth / w) + 1, Max(ns, 1));
	float	   *best = palloc(sizeof(float) * m);
	int32	   *bid = palloc(sizeof(int32) * m);
	float	   *sign = palloc(sizeof(float) * Max(nq, 1));
	double		hits[KD_ROWTERM_GRID] = {0};
	double		hits_k[KD_ROWTERM_GRID] = {0};
	double		total = 0;
	instr_time	start;

	INSTR_TIME_SET_CURRENT(start);
	for (int64 start_doc = 0; start_doc < nl; start_doc += 4096)
	{
		CHECK_FOR_INTERRUPTS();
		set->fetch(set->fetch_arg, pool + start_doc, (int) Min(4096, nl - start_doc),
				   docs + (Size) start_doc * dim);
	}
	memcpy(docs + (Size) nl * dim, set->table, sizeof(float) * ns * dim);
	for (int i = 0; i < nq; i++)
	{
		const int32 *list = set->lists + (Size) qs[i] * set->k;

		memcpy(queries + (Size) i * dim, set->queries + (Size) qs[i] * dim, sizeof(float) * dim);
		for (int j = 0; j < set->k; j++)
			own[(Size) i * set->k + j] = pool_index(pool, nl, list[j]);
		for (int j = 0; j < k; j++)
			truth[(Size) i * k + j] = own[(Size) i * set->k + j];
		sign[i] = query_sign(metric, queries + (Size) i * dim, dim);
	}
	/* the sampled rows' exact scores, in score_block's form */
	for (int v0 = 0; v0 < ns; v0 += KD_ROWTERM_BATCH)
		score_block(queries, nq, set->table + (Size) v0 * dim, Min(KD_ROWTERM_BATCH, ns - v0), dim,
					metric, ex + v0, ns);
	if (code_documents(q, metric, queries, nq, docs, NULL, nd, cd, level))
	{
		for (int i = 0; i < nq; i++)
		{
			const int32 *o = own + (Size) i * set->k;
			float		last = -FLT_MAX;

			/* the rows the list holds are those up to its last: a sampled row there is one of them */
			for (int j = 0; j < set->k; j++)
				if (o[j] >= 0)
				{
					const float *x = docs + (Size) o[j] * dim;
					const float *qv = queries + (Size) i * dim;

					last = Max(last, metric == KD_METRIC_IP ? -kd_dot(qv, x, dim) :
							   kd_dot(x, x, dim) - 2 * kd_dot(qv, x, dim));
				}
			for (int v = 0; v < ns; v++)
				valid[v] = ex[(Size) i * ns + v] > last;
			for (int j = 0; j < k; j++)
				total += truth[(Size) i * k + j] >= 0;
			for (int g = 0; g < KD_ROWTERM_GRID; g++)
			{
				CHECK_FOR_INTERRUPTS();
				hits[g] += weighted_hits(cd + (Size) i * nd, level,
										 (float) (g * KD_ROWTERM_GRID_STEP) * sign[i],
										 truth + (Size) i * k, k, o, set->k, nl, ns, valid, w,
										 depth, best, bid, m, &hits_k[g]);
			}
		}
		pick_weight(q, hits, hits_k, total, nq, nd, depth, start);
	}
	pfree(pool);
	pfree(docs);
	pfree(queries);
	pfree(cd);
	pfree(ex);
	pfree(level);
	pfree(truth);
	pfree(own);
	pfree(valid);
	pfree(best);
	pfree(bid);
	pfree(sign);
	kd_rowterm_enable(q, &q->term);
}

/*
 * kdindex_train's fit, after the codebooks are trained: up to
 * KD_ROWTERM_QUERIES of the teacher's queries qs (in that order: ones it did
 * not train on first), the first KD_ROWTERM_K of each one's list as the
 * truth, and the weight of best recall@k among the codes' first depth (>
 * k: what a re-rank of that many finds, for an index scanned with
 * kdindex.rerank; at most half the lists).  A query's competitors are its
 * own list (ranks k + 1 to K) and, when kdindex_train sampled the table
 * (set->ntable), the rest of the table: the sampled rows beyond its list,
 * each counting as table_weight rows.  The teacher's documents are no
 * stand-in for the table: all lie near some query, and on 1M rows, where
 * they were 17% of the table, the fit on them chose a = 0 while the table
 * ranks best at 0.2-0.3.  Without a sample (the build's distillation, whose
 * documents are a sample of the table already), the union of the lists.
 */
void
kd_rowterm_fit_teacher(KdQuantizer *q, KdMetric metric, const KdDistillSet *set,
					   const int32 *qs, int nqs, int depth)
{
	int			dim = set->dim;
	int			k = Min(KD_ROWTERM_K, set->k);
	/* AQ's encoder is slow: fewer rows (see KD_ROWTERM_DOCS_AQ) */
	int			ns = (int) Min(set->ntable, q->kind == KD_QUANT_AQ ? KD_ROWTERM_DOCS_AQ : KD_ROWTERM_DOCS);
	int			nq = Min(KD_ROWTERM_QUERIES, nqs);
	double		half = (double) maintenance_work_mem * 1024 / 2;
	int32	   *pool;
	int32	   *truth;
	float	   *queries;
	float	   *docs;
	int64		nd;

	if (q->term.mode == KD_ROWTERM_NONE)
		return;
	depth = Min(Max(depth, k), Max(set->k / 2, k));
	/* the documents' vectors within half of maintenance_work_mem, the scores within the other */
	while (nq > 1 && ((double) nq * set->k + ns) * dim * sizeof(float) > half)
		nq /= 2;
	while (nq > 1 && (double) nq * ((double) nq * set->k + 2 * ns) * sizeof(float) > half)
		nq /= 2;
	if (ns > 0 && nq > 0 && weight_fitted(q, metric))
	{
		fit_with_table(q, metric, set, qs, nq, ns, depth);
		return;
	}
	pool = palloc_extended(sizeof(int32) * Max((Size) nq * set->k, 1), MCXT_ALLOC_HUGE);
	nd = list_union(set, qs, nq, pool);
	truth = palloc(sizeof(int32) * Max(nq, 1) * k);
	queries = palloc(sizeof(float) * Max(nq, 1) * dim);
	for (int i = 0; i < nq; i++)
	{
		memcpy(queries + (Size) i * dim, set->queries + (Size) qs[i] * dim, sizeof(float) * dim);
		for (int j = 0; j < k; j++)
			truth[(Size) i * k + j] = pool_index(pool, nd, set->lists[(Size) qs[i] * set->k + j]);
	}
	docs = palloc_extended(sizeof(float) * (Size) Max(nd, 1) * dim, MCXT_ALLOC_HUGE);
	for (int64 start = 0; start < nd; start += 4096)
	{
		CHECK_FOR_INTERRUPTS();
		set->fetch(set->fetch_arg, pool + start, (int) Min(4096, nd - start), docs + (Size) start * dim);
	}
	kd_rowterm_fit_ranked(q, metric, queries, nq, docs, NULL, nd, truth, k, depth);
	pfree(pool);
	pfree(truth);
	pfree(queries);
	pfree(docs);
}
