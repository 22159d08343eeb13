/*
 * train.c — distillation: train a quantizer's codebooks so that the ranking
 * its codes give each query follows the teacher's (PAPER.md).
 *
 * The student score of a document is s = -dist(q, x̂) / u, with x̂ the
 * document decoded from its codes, dist the index's metric (squared L2, or
 * minus the inner product) and u a scale taken from the data, so that the
 * constants below mean the same on pixels and on unit vectors.  Queries are
 * not compressed (ADC).  Two ranking losses:
 *
 *   ListMLE (default): Plackett-Luce over the teacher's top-n order, whose
 *   every denominator also holds the teacher's ranks n+1..K as hard negatives:
 *     L_q = -sum_{i<=n} [ s_{pi_i} - log sum_{j in {pi_i..pi_n} u {pi_n+1..pi_K}} exp s_j ]
 *   ListNet: cross-entropy between softmax(teacher scores) and softmax(s)
 *   over the query's list plus the other batch queries' top-n (in-batch
 *   negatives); teacher scores are the exact ones, -dist(q, x) / u.
 *
 * With the row term (quantizer.h) the score is the index's: s = -(dist(q,
 * x̂) + c_q t) / u, t = ||x - x̂||^2 (its root under inner product) and c_q
 * the weight a the build fitted (-a ||q|| under inner product), so that the
 * codebooks learn to rank as the scan will; the weight is refitted after.
 *
 * plus rec_weight * mean ||x - x̂||^2 / u, which keeps codewords near data.
 * Codes are the quantizer's own encoding of the current codebooks (forward
 * hard); the loss is differentiated with respect to the codewords the codes
 * select, so every step is exact for the codes it used.  PQ and OPQ
 * re-encode the batch at every step; AQ, whose beam-search encoder is
 * expensive, uses all documents' codes refreshed once per epoch.  OPQ's
 * rotation is kept (it stays orthogonal); its PQ codebooks train in the
 * rotated space, where distances are the same.
 *
 * Besides the teacher's ranks n+1..K, each query's denominators hold the
 * documents its codes wrongly rank high, mined from all documents' codes at
 * the start of every epoch (kd_mine_negatives, student.c).
 *
 * Adam updates the codebooks, its step decaying along a half cosine over all
 * the epochs.  The codebooks kept are the average of those after each epoch
 * of the second half (stochastic weight averaging): picking the best epoch
 * by the held-out queries' recall followed their noise (README).  A fraction
 * of the queries, picked by the seed, is held out: their codes-only recall@n
 * over all the documents, before and after, is reported, and the starting
 * codebooks are kept when the average is clearly worse.
 */
#include "postgres.h"

#include <math.h>

#include <cblas.h>

#include "commands/progress.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"

#include "distance.h"
#include "distill/distill.h"
#include "distill/student.h"

#define KD_DISTILL_SEED 0x4B44
/* u relative to the median top-n distance gap (measured: see score_scale) */
#define KD_SCORE_SCALE 0.227
/* Held-out queries that refit the row term by themselves, without training queries */
#define KD_FIT_QUERIES 128

void
kd_distill_defaults(KdDistillParams *p)
{
	p->loss = KD_LOSS_LISTMLE;
	p->epochs = 5;
	p->batch = 32;
	p->topn = 10;
	p->depth = 0;
	p->probes = 0;
	p->lr = 5e-3;
	p->rec_weight = 1e-3;
	p->holdout = 0.1;
	p->tau = 0;
	p->balance = 0;
	p->negatives = 20;
	p->seed = 0;
	p->mem_budget = 64 * 1024 * 1024;
	p->batch_budget = 16 * 1024 * 1024;
}

/* g += w * d s(q, x̂) / d x̂, where s = -dist(q, x̂) / u */
static inline void
add_score_grad(const Student *st, const float *q, const float *xhat, double w, float *g)
{
	if (st->metric == KD_METRIC_IP)
		for (int i = 0; i < st->dim; i++)
			g[i] += (float) (w * q[i] / st->u);
	else
		for (int i = 0; i < st->dim; i++)
			g[i] += (float) (w * 2.0 * (q[i] - xhat[i]) / st->u);
}


/* Gather queries qs[0..nb-1] with their valid documents; maxdocs: per query */
static void
batch_load(Student *st, Batch *b, const int32 *qs, int nb, int maxdocs, bool mined, double balance)
{
	const KdDistillSet *set = st->set;
	int			cs = st->sq->code_size;

	b->nb = nb;
	b->nd = 0;
	for (int i = 0; i < nb; i++)
	{
		const int32 *list = set->lists + (Size) qs[i] * set->k;

		kd_student_query(st, qs[i], b->q + (Size) i * st->dim);
		b->off[i] = b->nd;
		for (int r = 0; r < Min(set->k, maxdocs); r++)
			if (list[r] >= 0)
				b->doc[b->nd++] = list[r];
		/* after the teacher's ranks: negatives like its ranks n+1..K */
		for (int r = 0; mined && r < st->nneg; r++)
			if (st->mined[(Size) qs[i] * st->nneg + r] >= 0)
				b->doc[b->nd++] = st->mined[(Size) qs[i] * st->nneg + r];
		b->cnt[i] = b->nd - b->off[i];
	}
	kd_student_docs(st, b->doc, b->nd, b->x);
	for (int i = 0; st->nlists > 0 && i < b->nd; i++)
		b->lists[i] = st->doclist[b->doc[i]];
	if (st->additive)
		for (int i = 0; i < b->nd; i++)
			memcpy(b->codes + (Size) i * cs, st->codes + (Size) b->doc[i] * cs, cs);
	else if (balance > 0)
		kd_balanced_codes(st, b, balance);
	else
		kd_student_encode(st, b->x, b->lists, b->nd, b->xhat, b->codes);
	kd_student_decode(st, b->codes, b->lists, b->nd, b->xhat);
}

/*
 * Loss of a batch (ranking loss averaged over its queries, plus the weighted
 * reconstruction loss averaged over its documents); with b->g set, its
 * gradient with respect to every x̂.
 */
static double
batch_loss(const Student *st, const KdDistillParams *p, Batch *b, bool grad, double *rank_loss)
{
	int			dim = st->dim;
	int			maxn = b->nd;
	double	   *s = palloc(sizeof(double) * maxn);
	double	   *t = palloc(sizeof(double) * maxn);
	double	   *gs = palloc(sizeof(double) * maxn);
	int		   *who = palloc(sizeof(int) * maxn);
	double	   *term = NULL;
	double	   *termw = NULL;
	double		rank = 0,
				rec = 0;

	if (grad)
		memset(b->g, 0, sizeof(float) * b->nd * dim);
	/* each document's t, and the weight its gradient gathers over the queries */
	if (st->a > 0)
	{
		term = palloc(sizeof(double) * maxn);
		termw = palloc0(sizeof(double) * maxn);
		for (int d = 0; d < b->nd; d++)
			term[d] = term_value_of(st, b->x + (Size) d * dim, b->xhat + (Size) d * dim);
	}
	for (int qi = 0; qi < b->nb; qi++)
	{
		const float *q = b->q + (Size) qi * dim;
		double		coef = term ? term_coef(st, q) : 0;
		int			n = 0;

		/* candidates: the query's list, then (ListNet) others' top-n */
		for (int j = 0; j < b->cnt[qi]; j++)
			who[n++] = b->off[qi] + j;
		if (p->loss == KD_LOSS_LISTNET)
			for (int o = 0; o < b->nb; o++)
				for (int j = 0; o != qi && j < Min(p->topn, b->cnt[o]); j++)
					who[n++] = b->off[o] + j;
		if (n == 0)
			continue;
		for (int j = 0; j < n; j++)
		{
			s[j] = -metric_dist(st->metric, q, b->xhat + (Size) who[j] * dim, dim) / st->u;
			if (term)
				s[j] -= coef * term[who[j]] / st->u;
			/* ListNet's teacher scores: the exact ones */
			if (p->loss == KD_LOSS_LISTNET)
				t[j] = -metric_dist(st->metric, q, b->x + (Size) who[j] * dim, dim) / st->u;
			gs[j] = 0;
		}
		if (p->loss == KD_LOSS_LISTNET)
			rank += kd_listnet(s, t, n, gs);
		else
			rank += kd_listmle(s, n, p->topn, gs);
		if (grad)
			for (int j = 0; j < n; j++)
			{
				add_score_grad(st, q, b->xhat + (Size) who[j] * dim, gs[j] / b->nb,
							   b->g + (Size) who[j] * dim);
				if (term)
					termw[who[j]] -= coef * gs[j] / (b->nb * st->u);
			}
	}
	/* d t / d x̂ = -2 (x - x̂), or -(x - x̂) / t for the root */
	for (int d = 0; grad && term && d < b->nd; d++)
	{
		const float *x = b->x + (Size) d * dim;
		const float *xh = b->xhat + (Size) d * dim;
		float	   *g = b->g + (Size) d * dim;
		double		w = st->root ? (term[d] > 0 ? -termw[d] / term[d] : 0) : -2 * termw[d];

		for (int i = 0; i < dim; i++)
			g[i] += (float) (w * (x[i] - xh[i]));
	}
	for (int d = 0; d < b->nd; d++)
	{
		const float *x = b->x + (Size) d * dim;
		const float *xh = b->xhat + (Size) d * dim;

		rec += kd_l2sq(x, xh, dim);
		if (grad)
		{
			float	   *g = b->g + (Size) d * dim;
			double		w = -2.0 * p->rec_weight / (st->u * b->nd);

			for (int i = 0; i < dim; i++)
				g[i] += (float) (w * (x[i] - xh[i]));
		}
	}
	pfree(s);
	pfree(t);
	pfree(gs);
	pfree(who);
	if (term)
	{
		pfree(term);
		pfree(termw);
	}
	rank /= Max(b->nb, 1);
	if (rank_loss)
		*rank_loss = rank;
	return rank + p->rec_weight * rec / (st->u * Max(b->nd, 1));
}

/*
 * Held-out queries: mean ranking loss over their teacher lists, and their
 * codes-only recall over all the documents.
 */
static double
evaluate(Student *st, const KdDistillParams *p, Batch *b, const int32 *held, int nheld,
		 double *loss)
{
	double		lsum = 0;

	for (int h = 0; h < nheld; h++)
	{
		double		rank;

		CHECK_FOR_INTERRUPTS();
		batch_load(st, b, held + h, 1, st->set->k, false, 0);
		batch_loss(st, p, b, false, &rank);
		lsum += rank;
	}
	*loss = lsum / Max(nheld, 1);
	return kd_code_recall(st, p, held, nheld);
}

static int
double_cmp(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/*
 * The score scale u: KD_SCORE_SCALE times the median, over (up to 256)
 * queries, of the distance gap between the teacher's n-th and first
 * document.  Fixing u relative to that gap makes the softmaxes over scores
 * equally sharp on any data.
 */
static double
score_scale(Student *st, const KdDistillParams *p, Batch *b, const int32 *qs, int nq)
{
	double	   *gaps = palloc(sizeof(double) * Min(nq, 256));
	int			count = 0;
	double		u;

	for (int i = 0; i < Min(nq, 256); i++)
	{
		int			n;

		batch_load(st, b, qs + i, 1, st->set->k, false, 0);
		n = b->cnt[0];
		if (n < 2)
			continue;
		gaps[count++] = metric_dist(st->metric, b->q, b->x + (Size) (Min(p->topn, n) - 1) * st->dim, st->dim) -
			metric_dist(st->metric, b->q, b->x, st->dim);
	}
	qsort(gaps, count, sizeof(double), double_cmp);
	u = count > 0 ? KD_SCORE_SCALE * gaps[count / 2] : 0;
	pfree(gaps);
	return u > 0 ? u : 1.0;
}

/*
 * Adam; codebook j (block j of n / m floats) moves at lr[j], so that every
 * codebook's step is relative to its own scale.
 */
static void
adam_step(float *w, const float *g, float *m1, float *m2, Size n, int m, const double *lr,
		  double decay, int t)
{
	const double beta1 = 0.9,
				beta2 = 0.999,
				eps = 1e-12;
	double		c1 = 1 - pow(beta1, t),
				c2 = 1 - pow(beta2, t);
	Size		block = n / m;

	for (Size i = 0; i < n; i++)
	{
		m1[i] = beta1 * m1[i] + (1 - beta1) * g[i];
		m2[i] = beta2 * m2[i] + (1 - beta2) * g[i] * g[i];
		w[i] -= (float) (decay * lr[i / block] * (m1[i] / c1) / (sqrt(m2[i] / c2) + eps));
	}
}

/*
 * When a run's average does not raise the held-out queries' recall above
 * the start's, its step may have learnt the training queries' own
 * neighbourhoods: one more run from the start at this share of the rate, and
 * the better of the two is kept (if not clearly worse than the start).
 * Fashion-MNIST AQ16 (20,000 rows; AQ's codewords span every dimension): at
 * the default rate the 1,800 training queries gained 12 points of codes-only
 * recall and unseen ones lost 1.1; at a fifth, +5.8 and +0.6.  The
 * inner-product set's AQ16 gains 19.3 points at the default rate and 18.0 at
 * a fifth, so the full rate goes first.
 */
#define KD_BACKOFF 0.2

/*
 * Step sizes: p->lr times each codebook's RMS entry.  OPQ's rotated
 * sub-spaces and AQ's residual stages differ in scale by orders of
 * magnitude; one absolute step would be noise for the small ones.
 */
static double *
codebook_rates(const Student *st, double lr)
{
	int			m = st->sq->m;
	Size		block = st->ncb / m;
	double	   *rates = palloc(sizeof(double) * m);

	for (int j = 0; j < m; j++)
	{
		double		ss = 0;

		for (Size i = 0; i < block; i++)
			ss += (double) st->cb[j * block + i] * st->cb[j * block + i];
		rates[j] = lr * (ss > 0 ? sqrt(ss / block) : 1.0);
	}
	return rates;
}

static void
batch_alloc(Batch *b, int nb, int nd, int dim, int code_size)
{
	b->q = palloc(sizeof(float) * nb * dim);
	b->off = palloc(sizeof(int) * nb);
	b->cnt = palloc(sizeof(int) * nb);
	b->doc = palloc(sizeof(int32) * nd);
	b->x = palloc_extended(sizeof(float) * nd * dim, MCXT_ALLOC_HUGE);
	b->xhat = palloc_extended(sizeof(float) * nd * dim, MCXT_ALLOC_HUGE);
	b->g = palloc_extended(sizeof(float) * nd * dim, MCXT_ALLOC_HUGE);
	b->codes = palloc(nd * code_size);
	b->lists = palloc(sizeof(int32) * nd);
}


/*
 * When the teacher's queries are the workload's and the table's own rows
 * (kdindex_teacher's table_queries), what the held-out queries measure and
 * refit must be the workload: rows as queries can rank their neighbours
 * otherwise (on the 1M-row set, made of augmented copies of 60,000 images, a
 * row's nearest are its own image's copies; a guard judging mostly rows
 * passed an OPQ16 training that lost 2.5 points on real queries).  So the
 * shuffled order is regrouped, rows first, then the workload's queries, and
 * the holdout fraction of those is held out.  Returns how many to hold out.
 */
static int
hold_out_workload(const KdDistillSet *set, double holdout, int32 *order, int nheld)
{
	int			nrows = 0;
	int32	   *regrouped;
	int			r = 0,
				w;

	if (set->table_query == NULL)
		return nheld;
	for (int i = 0; i < set->nq; i++)
		nrows += set->table_query[i];
	if (nrows == 0 || nrows == set->nq)
		return nheld;
	regrouped = palloc(sizeof(int32) * set->nq);
	w = nrows;
	for (int i = 0; i < set->nq; i++)
		regrouped[set->table_query[order[i]] ? r++ : w++] = order[i];
	memcpy(order, regrouped, sizeof(int32) * set->nq);
	pfree(regrouped);
	return (int) ((set->nq - nrows) * holdout);
}

/*
 * One training run: p->epochs epochs of Adam at rate lr from the student's
 * codebooks, which end as the average of those after each epoch of the
 * second half (stochastic weight averaging); returns that average's recall
 * on the held-out queries, its loss into *loss.  Progress counts on from
 * done training queries.
 */
static double
train_run(Student *st, const KdDistillParams *p, Batch *b, const int32 *order, int ntrain,
		  int batch, double lr, int64 done, const int32 *held, int nheld, double *loss)
{
	double	   *rates = codebook_rates(st, lr);
	int			total_steps = p->epochs * ((ntrain + batch - 1) / batch);
	float	   *gcb = palloc_extended(sizeof(float) * st->ncb, MCXT_ALLOC_HUGE);
	float	   *m1 = palloc_extended(sizeof(float) * st->ncb, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	float	   *m2 = palloc_extended(sizeof(float) * st->ncb, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	float	   *avg = palloc_extended(sizeof(float) * st->ncb, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	int			step = 0,
				naveraged = 0;
	double		recall;

	for (int epoch = 1; epoch <= p->epochs; epoch++)
	{
		if (st->mined)
			kd_mine_negatives(st, p, order, ntrain);
		for (int b0 = 0; b0 < ntrain; b0 += batch)
		{
			CHECK_FOR_INTERRUPTS();
			batch_load(st, b, order + b0, Min(batch, ntrain - b0), st->set->k, true,
					   st->additive ? 0 : p->balance);
			batch_loss(st, p, b, true, NULL);
			kd_scatter_grad(st, b, gcb);
			if (p->tau > 0 && !st->additive)
				kd_soft_grad(st, b, p->tau, gcb);
			/* cosine decay of the step over all epochs */
			adam_step(st->cb, gcb, m1, m2, st->ncb, st->sq->m, rates,
					  0.5 * (1 + cos(M_PI * step / Max(total_steps, 1))), step + 1);
			step++;
			st->sq->ops->prepare(st->sq);
			pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
										 done + (int64) (epoch - 1) * ntrain + b0 + b->nb);
		}
		if (epoch > p->epochs / 2)
		{
			naveraged++;
			for (Size i = 0; i < st->ncb; i++)
				avg[i] += (st->cb[i] - avg[i]) / naveraged;
		}
		/* the next epoch's mined negatives (and AQ's batches) use every code */
		if (epoch < p->epochs)
			kd_refresh_codes(st);
	}
	memcpy(st->cb, avg, sizeof(float) * st->ncb);
	st->sq->ops->prepare(st->sq);
	kd_refresh_codes(st);
	recall = evaluate(st, p, b, held, nheld, loss);
	pfree(rates);
	pfree(gcb);
	pfree(m1);
	pfree(m2);
	pfree(avg);
	return recall;
}

void
kd_distill(KdQuantizer *q, KdMetric metric, const KdDistillSet *set,
		   const KdDistillParams *p, KdDistillResult *res)
{
	Student		st;
	Batch		b;
	pg_prng_state rng;
	int32	   *order = palloc(sizeof(int32) * set->nq);
	int			nheld = (int) (set->nq * p->holdout);
	int			ntrain;
	float	   *best,
			   *trained;
	double		trained_recall = 0,
				trained_loss = 0;
	int			batch;
	instr_time	start,
				duration;

	/* shuffle; the last nheld queries are held out */
	pg_prng_seed(&rng, KD_DISTILL_SEED ^ (uint64) p->seed);
	for (int i = 0; i < set->nq; i++)
		order[i] = i;
	for (int i = set->nq - 1; i > 0; i--)
	{
		int			j = (int) pg_prng_uint64_range(&rng, 0, i);
		int32		tmp = order[i];

		order[i] = order[j];
		order[j] = tmp;
	}
	nheld = hold_out_workload(set, p->holdout, order, nheld);
	if (p->holdout > 0 && set->nq >= 2)
		nheld = Max(nheld, 1);
	ntrain = set->nq - nheld;

	/*
	 * With the row term the first half of the held-out queries refits its
	 * weight and the second judges the result (here and in kdindex_train's
	 * guard): a guard on the queries the weight was fitted to passed a refit
	 * that lost 0.5 point on unseen queries (1M rows, README).
	 */
	res->nfit = q->term.mode != KD_ROWTERM_NONE && nheld >= 2 ? nheld / 2 : 0;
	res->fit = order + ntrain;
	res->held = order + ntrain + res->nfit;
	res->nheld = nheld = nheld - res->nfit;

	kd_student_init(&st, q, metric, set, p->mem_budget, p->negatives, p->probes);
	/* a query brings k documents: vectors, reconstructions and gradients */
	batch = (int) Min((Size) p->batch,
					  p->batch_budget / ((Size) Max(set->k, 1) * st.dim * sizeof(float) * 3));
	batch = Max(batch, 1);
	batch_alloc(&b, batch, batch * (set->k + st.nneg), st.dim, st.sq->code_size);
	st.u = score_scale(&st, p, &b, order, set->nq);

	best = palloc_extended(sizeof(float) * st.ncb, MCXT_ALLOC_HUGE);
	trained = palloc_extended(sizeof(float) * st.ncb, MCXT_ALLOC_HUGE);
	memcpy(best, st.cb, sizeof(float) * st.ncb);
	res->recall_before = evaluate(&st, p, &b, res->held, nheld, &res->loss_before);
	res->recall_after = res->recall_before;
	elog(DEBUG1, "kdindex distill: start: held-out recall %.4f, loss %.4f",
		 res->recall_before, res->loss_before);
	res->loss_after = res->loss_before;
	res->best_epoch = 0;
	res->epochs = 0;

	/* progress: training queries processed, over all epochs */
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, (int64) p->epochs * ntrain);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);
	INSTR_TIME_SET_CURRENT(start);
	for (int run = 0; run < 2 && ntrain > 0 && p->epochs > 0; run++)
	{
		double		lr = run == 0 ? p->lr : p->lr * KD_BACKOFF;
		double		recall,
					loss;

		if (run > 0)
		{
			/* from the start again, its codes too (AQ's and the mined negatives') */
			memcpy(st.cb, best, sizeof(float) * st.ncb);
			st.sq->ops->prepare(st.sq);
			kd_refresh_codes(&st);
			pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, (int64) 2 * p->epochs * ntrain);
		}
		recall = train_run(&st, p, &b, order, ntrain, batch, lr, (int64) run * p->epochs * ntrain,
						   res->held, nheld, &loss);
		res->epochs += p->epochs;
		elog(DEBUG1, "kdindex distill: rate %g, average of epochs %d-%d: held-out recall %.4f, loss %.4f",
			 lr, p->epochs / 2 + 1, p->epochs, recall, loss);
		if (run == 0 || recall > trained_recall)
		{
			trained_recall = recall;
			trained_loss = loss;
			memcpy(trained, st.cb, sizeof(float) * st.ncb);
		}
		/* a run that gains on the held-out queries needs no second */
		if (nheld == 0 || trained_recall > res->recall_before)
			break;
	}
	/* the starting codebooks only when the better run is clearly worse */
	if (res->epochs > 0 && (nheld == 0 || trained_recall >= res->recall_before - KD_WORSE))
	{
		res->recall_after = trained_recall;
		res->best_epoch = res->epochs;
		res->loss_after = trained_loss;
		memcpy(best, trained, sizeof(float) * st.ncb);
	}
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	res->seconds_per_epoch = res->epochs > 0 ? INSTR_TIME_GET_DOUBLE(duration) / res->epochs : 0;
	memcpy(st.cb, best, sizeof(float) * st.ncb);
	st.sq->ops->prepare(st.sq);
	q->ops->prepare(q);
	/* the row term's weight, for the codebooks kept (epochs = 0 changes nothing) */
	if (res->epochs > 0 && q->term.mode != KD_ROWTERM_NONE)
	{
		/*
		 * The fitting half first; when it is small, training queries too,
		 * from the end of the training part back (the workload's queries
		 * before the table's rows, see hold_out_workload)
		 */
		int			nfitq = res->nfit >= KD_FIT_QUERIES ? res->nfit : res->nfit + ntrain;
		int32	   *fitq = palloc(sizeof(int32) * Max(nfitq, 1));

		memcpy(fitq, res->fit, sizeof(int32) * res->nfit);
		for (int i = 0; i < nfitq - res->nfit; i++)
			fitq[res->nfit + i] = order[ntrain - 1 - i];
		kd_rowterm_fit_teacher(q, metric, set, fitq, nfitq, p->depth);
		pfree(fitq);
	}
}

/*
 * Self-test of the hand-written gradients: on a small random problem with
 * the codes held fixed, the gradient of every loss with respect to every
 * codebook entry against central finite differences.  Returns the largest
 * relative error.
 */
double
kd_distill_gradient_check(KdQuantizerKind kind, KdMetric metric, KdDistillLoss loss, bool soft,
						  bool lists, bool term)
{
	const int	dim = 8,
				m = 2,
				nb = 3,
				per = 6;
	const double h = 1e-2;
	KdQuantizer *q = kd_quantizer_create(kind, dim, m, 4);
	KdDistillParams p;
	Student		st;
	Batch		b;
	pg_prng_state rng;
	float	   *grad;
	float		cents[3 * 8];
	double		worst = 0;

	kd_distill_defaults(&p);
	p.loss = loss;
	p.topn = 3;
	p.rec_weight = 0.5;
	memset(&st, 0, sizeof(st));
	st.q = st.sq = q;
	st.metric = metric;
	st.additive = kind == KD_QUANT_AQ;
	st.dim = dim;
	st.dsub = st.additive ? dim : dim / m;
	st.cb = q->ops->param(q, 0, &st.ncb);
	st.u = 2.0;
	/* term: the row term's t (its root under inner product, as the index has it) */
	st.a = term ? 0.5 : 0;
	st.root = term && metric == KD_METRIC_IP;
	pg_prng_seed(&rng, KD_DISTILL_SEED);
	for (Size i = 0; i < st.ncb; i++)
		st.cb[i] = (float) (pg_prng_double(&rng) * 2 - 1);
	q->ops->prepare(q);

	batch_alloc(&b, nb, nb * per, dim, q->code_size);
	b.nb = nb;
	b.nd = nb * per;
	for (int i = 0; i < nb; i++)
	{
		b.off[i] = i * per;
		b.cnt[i] = per;
	}
	for (int i = 0; i < nb * dim; i++)
		b.q[i] = (float) (pg_prng_double(&rng) * 2 - 1);
	for (int i = 0; i < b.nd * dim; i++)
		b.x[i] = (float) (pg_prng_double(&rng) * 2 - 1);
	memset(b.codes, 0, b.nd * q->code_size);
	for (int d = 0; d < b.nd; d++)
		for (int j = 0; j < m; j++)
			kd_code_set(b.codes + (Size) d * q->code_size, q->nbits, j,
						(int) pg_prng_uint64_range(&rng, 0, q->ksub - 1));
	/* lists: x̂ is a fixed centroid (one of 3) plus the decoded residual */
	if (lists)
	{
		st.nlists = 3;
		st.cents = cents;
		for (int i = 0; i < lengthof(cents); i++)
			cents[i] = (float) (pg_prng_double(&rng) * 2 - 1);
		for (int d = 0; d < b.nd; d++)
			b.lists[d] = (int32) pg_prng_uint64_range(&rng, 0, 2);
	}

	/* hard: x̂ from the fixed codes; soft: x̂ the soft reconstruction */
#define RECONSTRUCT() (soft ? kd_soft_decode(&st, &b, 1.0) : kd_student_decode(&st, b.codes, b.lists, b.nd, b.xhat))
	RECONSTRUCT();
	grad = palloc(sizeof(float) * st.ncb);
	batch_loss(&st, &p, &b, true, NULL);
	if (soft)
	{
		memset(grad, 0, sizeof(float) * st.ncb);
		kd_soft_grad(&st, &b, 1.0, grad);
	}
	else
		kd_scatter_grad(&st, &b, grad);
	for (Size i = 0; i < st.ncb; i++)
	{
		float		keep = st.cb[i];
		double		up,
					down,
					fd;

		st.cb[i] = keep + h;
		q->ops->prepare(q);
		RECONSTRUCT();
		up = batch_loss(&st, &p, &b, false, NULL);
		st.cb[i] = keep - h;
		q->ops->prepare(q);
		RECONSTRUCT();
		down = batch_loss(&st, &p, &b, false, NULL);
		st.cb[i] = keep;
		q->ops->prepare(q);
		fd = (up - down) / (2 * h);
		worst = Max(worst, fabs(fd - grad[i]) / Max(Max(fabs(fd), fabs(grad[i])), 1e-2));
	}
#undef RECONSTRUCT
	kd_quantizer_free(q);
	return worst;
}
