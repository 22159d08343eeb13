/*
 * student.c — the student's side of distillation (train.c drives it): its
 * documents and queries in the space its codebooks live in, every
 * document's codes, and the codes-only scans over all of them that mine
 * hard negatives and measure held-out recall.
 *
 * IVF indexes (lists > 0): a document's code is that of its residual from
 * its list's centroid, and its student score is that of the centroid plus
 * the decoded residual, as the index scan scores it.  Lists stay as the
 * index assigned them (the centroids do not train), so every document's
 * list is computed once.  A codes-only scan of all documents then uses one
 * inner-product table per query: under L2,
 *   ||q - c - r||^2 = ||q - c||^2 + (||r||^2 + 2 c.r) - 2 q.r
 * with the bracket a per-document constant refreshed with the codes; under
 * inner product -q.(c + r) = -q.c - q.r.  With probes, such a scan reads the
 * documents of the lists nearest the query only, as the index scan does:
 * rows of other lists are neither negatives nor candidates there, and at 1M
 * rows scanning every document cost most of an epoch.
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"

#include "distance.h"
#include "distill/distill.h"
#include "distill/student.h"

/* Vectors of documents in the student's space */
void
kd_student_docs(Student *st, const int32 *docs, int n, float *out)
{
	if (st->docs)
	{
		for (int i = 0; i < n; i++)
			memcpy(out + (Size) i * st->dim, st->docs + (Size) docs[i] * st->dim,
				   sizeof(float) * st->dim);
		return;
	}
	st->set->fetch(st->set->fetch_arg, docs, n, out);
	if (st->q->kind == KD_QUANT_OPQ)
	{
		float	   *tmp = palloc_extended(sizeof(float) * n * st->dim, MCXT_ALLOC_HUGE);

		kd_opq_rotate(st->q, out, n, tmp);
		memcpy(out, tmp, sizeof(float) * n * st->dim);
		pfree(tmp);
	}
}

static inline const float *
student_centroid(const Student *st, int32 list)
{
	return st->cents + (Size) list * st->dim;
}

/*
 * IVF: the centroids in the student's space (OPQ's rotation keeps distances
 * and inner products, so a row's nearest centroid is the same there), and
 * each document's list, picked as the index picks it: least distance plus
 * the list's balancing offset.
 */
static void
student_lists(Student *st)
{
	KdQuantizer *q = st->q;
	int32		ndocs = st->set->ndocs;
	const int	block = 1024;
	int32	   *ids = palloc(sizeof(int32) * block);
	float	   *x = palloc_extended(sizeof(float) * block * st->dim, MCXT_ALLOC_HUGE);
	float	   *shifted = palloc(sizeof(float) * q->nlists);
	int32	   *fill = palloc(sizeof(int32) * q->nlists);

	st->nlists = q->nlists;
	if (q->kind == KD_QUANT_OPQ)
	{
		float	   *rot = palloc_extended(sizeof(float) * q->nlists * st->dim, MCXT_ALLOC_HUGE);

		kd_opq_rotate(q, q->centroids, q->nlists, rot);
		st->cents = rot;
	}
	else
		st->cents = q->centroids;
	for (int l = 0; l < q->nlists; l++)
		shifted[l] = kd_dot(student_centroid(st, l), student_centroid(st, l), st->dim) +
			q->list_offsets[l];
	st->doclist = palloc_extended(sizeof(int32) * Max(ndocs, 1), MCXT_ALLOC_HUGE);
	st->extra = palloc_extended(sizeof(float) * Max(ndocs, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int32 start = 0; start < ndocs; start += block)
	{
		int			n = Min(block, ndocs - start);

		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < n; i++)
			ids[i] = start + i;
		kd_student_docs(st, ids, n, x);
		kd_nearest(x, n, st->dim, st->dim, st->cents, q->nlists, shifted, st->doclist + start, NULL);
	}
	/* each list's documents, in document order (a counting sort) */
	st->list_start = palloc0(sizeof(int32) * (q->nlists + 1));
	st->list_docs = palloc_extended(sizeof(int32) * Max(ndocs, 1), MCXT_ALLOC_HUGE);
	for (int32 d = 0; d < ndocs; d++)
		st->list_start[st->doclist[d] + 1]++;
	for (int l = 0; l < q->nlists; l++)
		st->list_start[l + 1] += st->list_start[l];
	memcpy(fill, st->list_start, sizeof(int32) * q->nlists);
	for (int32 d = 0; d < ndocs; d++)
		st->list_docs[fill[st->doclist[d]]++] = d;
	pfree(fill);
	pfree(ids);
	pfree(x);
	pfree(shifted);
}

/*
 * Codes of n document vectors (student's space) of lists lists (NULL: no
 * lists): of their residuals, formed in tmp (n x dim), with lists
 */
void
kd_student_encode(const Student *st, const float *x, const int32 *lists, int n, float *tmp,
				  uint8 *codes)
{
	if (st->nlists == 0)
	{
		st->sq->ops->encode(st->sq, x, n, codes);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		const float *c = student_centroid(st, lists[i]);

		for (int j = 0; j < st->dim; j++)
			tmp[(Size) i * st->dim + j] = x[(Size) i * st->dim + j] - c[j];
	}
	st->sq->ops->encode(st->sq, tmp, n, codes);
}

/* What the codes of n documents of lists lists stand for: centroid + residual */
void
kd_student_decode(const Student *st, const uint8 *codes, const int32 *lists, int n, float *xhat)
{
	st->sq->ops->decode(st->sq, codes, n, xhat);
	for (int i = 0; st->nlists > 0 && i < n; i++)
	{
		const float *c = student_centroid(st, lists[i]);

		for (int j = 0; j < st->dim; j++)
			xhat[(Size) i * st->dim + j] += c[j];
	}
}

/*
 * Encode every document with the current codebooks; with lists under L2
 * also each one's ||r||^2 + 2 c.r, with the row term each one's t
 */
void
kd_refresh_codes(Student *st)
{
	const int	block = 1024;
	int32	   *ids = palloc(sizeof(int32) * block);
	float	   *x = palloc_extended(sizeof(float) * block * st->dim, MCXT_ALLOC_HUGE);
	float	   *xhat = palloc_extended(sizeof(float) * block * st->dim, MCXT_ALLOC_HUGE);
	bool		lists_l2 = st->nlists > 0 && st->metric != KD_METRIC_IP;

	for (int32 start = 0; start < st->set->ndocs; start += block)
	{
		int			n = Min(block, st->set->ndocs - start);
		const int32 *lists = st->doclist ? st->doclist + start : NULL;
		uint8	   *codes = st->codes + (Size) start * st->sq->code_size;

		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < n; i++)
			ids[i] = start + i;
		kd_student_docs(st, ids, n, x);
		kd_student_encode(st, x, lists, n, xhat, codes);
		if (lists_l2)
		{
			/* the residuals' reconstructions first */
			st->sq->ops->decode(st->sq, codes, n, xhat);
			for (int i = 0; i < n; i++)
			{
				const float *r = xhat + (Size) i * st->dim;

				st->extra[start + i] = kd_dot(r, r, st->dim) +
					2 * kd_dot(student_centroid(st, lists[i]), r, st->dim);
			}
		}
		if (st->a > 0)
		{
			kd_student_decode(st, codes, lists, n, xhat);
			for (int i = 0; i < n; i++)
				st->term[start + i] = (float) term_value_of(st, x + (Size) i * st->dim,
															xhat + (Size) i * st->dim);
		}
	}
	pfree(ids);
	pfree(x);
	pfree(xhat);
}

/* Query qi in the student's space */
void
kd_student_query(const Student *st, int32 qi, float *out)
{
	const float *q = st->set->queries + (Size) qi * st->set->dim;

	if (st->q->kind == KD_QUANT_OPQ)
		kd_opq_rotate(st->q, q, 1, out);
	else
		memcpy(out, q, sizeof(float) * st->dim);
}

/* Scratch space of the codes-only scans */
typedef struct ScanScratch
{
	float	   *qv;
	float	   *lut;
	float	   *qc;				/* per list: the centroid's part of a score */
	float	   *dist;			/* per document scanned */
	int32	   *scanned;		/* probed lists: the documents dist[] is of */
	int32	   *probed;			/* nprobe lists, and their keys */
	float	   *pkey;
	int32	   *cand;
	float	   *cdist;
	int32	   *ids;
	float	   *x;
	double	   *exact;
} ScanScratch;

static void
scratch_init(ScanScratch *sc, const Student *st, int r)
{
	sc->qv = palloc(sizeof(float) * st->dim);
	sc->lut = palloc(sizeof(float) * st->sq->m * st->sq->ksub);
	sc->qc = palloc(sizeof(float) * Max(st->nlists, 1));
	sc->dist = palloc_extended(sizeof(float) * Max(st->set->ndocs, 1), MCXT_ALLOC_HUGE);
	sc->scanned = st->nprobe > 0 ?
		palloc_extended(sizeof(int32) * Max(st->set->ndocs, 1), MCXT_ALLOC_HUGE) : NULL;
	sc->probed = palloc(sizeof(int32) * Max(st->nprobe, 1));
	sc->pkey = palloc(sizeof(float) * Max(st->nprobe, 1));
	sc->cand = palloc(sizeof(int32) * r);
	sc->cdist = palloc(sizeof(float) * r);
	sc->ids = palloc(sizeof(int32) * (r + 1));
	sc->x = palloc_extended(sizeof(float) * (r + 1) * st->dim, MCXT_ALLOC_HUGE);
	sc->exact = palloc(sizeof(double) * (r + 1));
}

static void
scratch_free(ScanScratch *sc)
{
	pfree(sc->qv);
	pfree(sc->lut);
	pfree(sc->qc);
	pfree(sc->dist);
	if (sc->scanned)
		pfree(sc->scanned);
	pfree(sc->probed);
	pfree(sc->pkey);
	pfree(sc->cand);
	pfree(sc->cdist);
	pfree(sc->ids);
	pfree(sc->x);
	pfree(sc->exact);
}

/* Keep id scored key among the cap least, sorted (keys[0..*n - 1], ids beside) */
static inline void
keep_nearest(float *keys, int32 *ids, int *n, int cap, float key, int32 id)
{
	int			pos;

	if (*n == cap && key >= keys[cap - 1])
		return;
	pos = *n < cap ? (*n)++ : cap - 1;
	while (pos > 0 && keys[pos - 1] > key)
	{
		keys[pos] = keys[pos - 1];
		ids[pos] = ids[pos - 1];
		pos--;
	}
	keys[pos] = key;
	ids[pos] = id;
}

/*
 * The nprobe lists a scan of the query reads first, into sc->probed: least
 * centroid score plus the list's balancing offset, the index's order
 * (kd_ivf_rank_lists; ||q||^2, which it leaves out, orders nothing)
 */
static void
probed_lists(const Student *st, ScanScratch *sc)
{
	int			n = 0;

	for (int l = 0; l < st->nlists; l++)
		keep_nearest(sc->pkey, sc->probed, &n, st->nprobe, sc->qc[l] + st->q->list_offsets[l], l);
}

/*
 * The r documents whose current codes are nearest to query vector qv (in
 * the student's space), nearest first, into sc->cand / sc->cdist; returns
 * how many.  With probes, of the probed lists' documents only.
 */
static int
code_nearest(const Student *st, const float *qv, int r, ScanScratch *sc)
{
	KdQuantizer *sq = st->sq;
	int			nscan = st->set->ndocs;
	float	   *dist = sc->dist;
	const int32 *scanned = NULL;
	int			n = 0;
	float		bias;

	if (st->nlists == 0)
	{
		sq->ops->compute_lut(sq, qv, st->metric, sc->lut, &bias);
		sq->ops->adc_scan(sc->lut, sq->m, sq->nbits, st->metric, st->codes, sq->code_size, nscan, dist);
	}
	else
	{
		/* -q.r, then each document's list and constant (see the top) */
		sq->ops->compute_lut(sq, qv, KD_METRIC_IP, sc->lut, &bias);
		for (int l = 0; l < st->nlists; l++)
			sc->qc[l] = st->metric == KD_METRIC_IP ? -kd_dot(qv, student_centroid(st, l), st->dim) :
				kd_l2sq(qv, student_centroid(st, l), st->dim);
		if (st->nprobe > 0)
		{
			probed_lists(st, sc);
			nscan = 0;
			for (int p = 0; p < st->nprobe; p++)
				for (int32 i = st->list_start[sc->probed[p]]; i < st->list_start[sc->probed[p] + 1]; i++)
				{
					int32		d = st->list_docs[i];

					sq->ops->adc_scan(sc->lut, sq->m, sq->nbits, KD_METRIC_IP,
									  st->codes + (Size) d * sq->code_size, sq->code_size, 1,
									  dist + nscan);
					sc->scanned[nscan++] = d;
				}
			scanned = sc->scanned;
		}
		else
			sq->ops->adc_scan(sc->lut, sq->m, sq->nbits, KD_METRIC_IP, st->codes, sq->code_size,
							  nscan, dist);
		for (int k = 0; k < nscan; k++)
		{
			int32		d = scanned ? scanned[k] : k;

			dist[k] = st->metric == KD_METRIC_IP ? sc->qc[st->doclist[d]] + dist[k] + bias :
				sc->qc[st->doclist[d]] + st->extra[d] + 2 * (dist[k] + bias);
		}
	}
	/* the row term, but for flat AQ under L2: its stored norms hold a r already */
	if (st->a > 0 && !(st->additive && st->nlists == 0 && st->metric != KD_METRIC_IP))
	{
		double		coef = term_coef(st, qv);

		for (int k = 0; k < nscan; k++)
			dist[k] += (float) (coef * st->term[scanned ? scanned[k] : k]);
	}
	for (int k = 0; k < nscan; k++)
		keep_nearest(sc->cdist, sc->cand, &n, r, dist[k], scanned ? scanned[k] : k);
	return n;
}

static bool
in_list(const int32 *list, int k, int32 doc)
{
	for (int r = 0; r < k; r++)
		if (list[r] == doc)
			return true;
	return false;
}

/* Exact distances of query vector qv to documents docs[0..n-1] */
static void
exact_dists(Student *st, const float *qv, const int32 *docs, int n, float *x, double *out)
{
	kd_student_docs(st, docs, n, x);
	for (int i = 0; i < n; i++)
		out[i] = metric_dist(st->metric, qv, x + (Size) i * st->dim, st->dim);
}

/*
 * Hard negatives the student makes itself: for each query of qs, the
 * documents its current codes rank among the top n + nneg that are not on
 * the teacher's list and lie beyond the teacher's n-th document.  The
 * teacher's ranks n+1..K are negatives already, but a codes-only scan also
 * meets documents from outside the list whose codes sit near the query;
 * those intruders are what the ranking loss over the list alone never sees
 * (it raised recall within the lists while codes-only recall over the table
 * fell, for OPQ).  The distance check drops the query's own row (a teacher
 * on sampled rows leaves it off the list) and an approximate teacher's
 * misses.
 */
void
kd_mine_negatives(Student *st, const KdDistillParams *p, const int32 *qs, int nq)
{
	const KdDistillSet *set = st->set;
	int			r = p->topn + st->nneg;
	ScanScratch sc;

	scratch_init(&sc, st, r);
	for (int i = 0; i < nq; i++)
	{
		const int32 *list = set->lists + (Size) qs[i] * set->k;
		int32	   *out = st->mined + (Size) qs[i] * st->nneg;
		int			nc,
					nid = 0,
					nout = 0,
					last = -1;

		CHECK_FOR_INTERRUPTS();
		for (int j = 0; j < st->nneg; j++)
			out[j] = -1;
		for (int j = 0; j < Min(p->topn, set->k); j++)
			if (list[j] >= 0)
				last = j;
		if (last < 0)
			continue;
		kd_student_query(st, qs[i], sc.qv);
		nc = code_nearest(st, sc.qv, r, &sc);
		for (int c = 0; c < nc; c++)
			if (!in_list(list, set->k, sc.cand[c]))
				sc.ids[nid++] = sc.cand[c];
		/* the teacher's n-th last, as the bound */
		sc.ids[nid] = list[last];
		exact_dists(st, sc.qv, sc.ids, nid + 1, sc.x, sc.exact);
		for (int c = 0; c < nid && nout < st->nneg; c++)
			if (sc.exact[c] > sc.exact[nid])
				out[nout++] = sc.ids[c];
	}
	scratch_free(&sc);
}

/*
 * Codes-only recall@n of queries qs over all the documents: how many of the
 * teacher's top n are among the n (p->depth, when larger: what a re-rank of
 * that many candidates finds) documents the codes rank first.  A
 * document off the list and nearer than the teacher's first is the query's
 * own row (a sampled-row teacher leaves it off) and is passed over.
 */
double
kd_code_recall(Student *st, const KdDistillParams *p, const int32 *qs, int nq)
{
	const KdDistillSet *set = st->set;
	int			n = Min(p->topn, set->k);
	int			depth = Max(n, p->depth);
	int			r = depth + 4;
	double		hits = 0,
				total = 0;
	ScanScratch sc;

	scratch_init(&sc, st, r);
	for (int i = 0; i < nq; i++)
	{
		const int32 *list = set->lists + (Size) qs[i] * set->k;
		int			nc,
					taken = 0;

		CHECK_FOR_INTERRUPTS();
		if (list[0] < 0)
			continue;
		kd_student_query(st, qs[i], sc.qv);
		nc = code_nearest(st, sc.qv, r, &sc);
		memcpy(sc.ids, sc.cand, sizeof(int32) * nc);
		sc.ids[nc] = list[0];
		exact_dists(st, sc.qv, sc.ids, nc + 1, sc.x, sc.exact);
		for (int c = 0; c < nc && taken < depth; c++)
		{
			if (in_list(list, n, sc.cand[c]))
				hits++;
			else if (!in_list(list, set->k, sc.cand[c]) && sc.exact[c] < sc.exact[nc])
				continue;
			taken++;
		}
		for (int j = 0; j < n; j++)
			total += list[j] >= 0;
	}
	scratch_free(&sc);
	return total > 0 ? hits / total : 0;
}

void
kd_student_init(Student *st, KdQuantizer *q, KdMetric metric, const KdDistillSet *set, Size budget,
				int negatives, int probes)
{
	memset(st, 0, sizeof(*st));
	st->q = q;
	st->sq = q->kind == KD_QUANT_OPQ ? kd_opq_inner(q) : q;
	st->metric = metric;
	st->additive = q->kind == KD_QUANT_AQ;
	st->dim = q->dim;
	st->dsub = st->additive ? q->dim : q->dim / q->m;
	st->cb = st->sq->ops->param(st->sq, 0, &st->ncb);
	st->set = set;
	st->u = 1.0;
	/* the term as the index scores it: rowterm.c fits a = 0 where it does not help */
	if (q->term.mode != KD_ROWTERM_NONE && metric != KD_METRIC_L1)
	{
		st->a = q->term.weight;
		st->root = q->term.root;
	}

	/* documents in memory when they fit, else fetched batch by batch */
	if ((Size) set->ndocs * set->dim * sizeof(float) <= budget)
	{
		int32	   *all = palloc(sizeof(int32) * set->ndocs);
		float	   *docs = palloc_extended(sizeof(float) * set->ndocs * set->dim, MCXT_ALLOC_HUGE);

		for (int32 i = 0; i < set->ndocs; i++)
			all[i] = i;
		for (int32 start = 0; start < set->ndocs; start += 4096)
		{
			CHECK_FOR_INTERRUPTS();
			kd_student_docs(st, all + start, Min(4096, set->ndocs - start),
						 docs + (Size) start * set->dim);
		}
		st->docs = docs;
		pfree(all);
	}
	if (q->nlists > 0)
		student_lists(st);
	if (probes > 0 && probes < st->nlists)
		st->nprobe = probes;
	st->codes = palloc_extended((Size) Max(set->ndocs, 1) * st->sq->code_size, MCXT_ALLOC_HUGE);
	if (st->a > 0)
		st->term = palloc_extended(sizeof(float) * Max(set->ndocs, 1), MCXT_ALLOC_HUGE);
	kd_refresh_codes(st);
	st->nneg = negatives;
	if (negatives > 0)
		st->mined = palloc_extended(sizeof(int32) * set->nq * negatives, MCXT_ALLOC_HUGE);
}
