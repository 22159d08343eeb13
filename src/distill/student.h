/*
 * student.h — the quantizer being distilled and a training batch, shared by
 * train.c (the loop), codewords.c (codeword gradients, balanced codes) and
 * ranking.c (the losses).
 */
#ifndef KDINDEX_STUDENT_H
#define KDINDEX_STUDENT_H

#include <math.h>

#include "distill/distill.h"
#include "distance.h"

/* the quantizer being trained, in the space its codebooks live in */
typedef struct Student
{
	KdQuantizer *q;				/* the index's quantizer */
	KdQuantizer *sq;			/* whose codebooks train: OPQ's inner PQ, else q */
	KdMetric	metric;
	bool		additive;		/* AQ: codewords span the whole vector */
	int			dim;
	int			dsub;			/* floats per codeword */
	float	   *cb;				/* sq's codebooks: m x ksub x dsub */
	Size		ncb;
	double		u;				/* score scale */
	/*
	 * The row term the index adds to a code's distance (quantizer.h), which
	 * the student scores too: a t under L2 and cosine, -a ||q|| t under inner
	 * product, with t = ||x - x̂||^2, or its root (root); a = 0: none
	 */
	double		a;
	bool		root;

	const KdDistillSet *set;
	float	   *docs;			/* ndocs x dim in the student's space, or NULL */
	uint8	   *codes;			/* ndocs codes of the current epoch */
	int			nneg;			/* mined negatives per query */
	int32	   *mined;			/* nq x nneg documents; -1 = none */

	/* IVF (student.c): rows are coded as residuals from their list's centroid */
	int			nlists;			/* 0: flat */
	const float *cents;			/* nlists x dim, in the student's space */
	int32	   *doclist;		/* ndocs: each document's list */
	int			nprobe;			/* lists a codes-only scan reads (< nlists), or 0: all */
	int32	   *list_start;		/* nlists + 1: list l's documents are */
	int32	   *list_docs;		/* list_docs[list_start[l] .. list_start[l + 1] - 1] */
	float	   *extra;			/* ndocs, L2: ||r||^2 + 2 c.r of the current codes */
	float	   *term;			/* ndocs: t of the current codes (a > 0) */
} Student;

/* One batch: queries, and each query's documents laid out one after another */
typedef struct Batch
{
	int			nb;
	float	   *q;				/* nb x dim */
	int		   *off;			/* query b's documents: off[b] .. off[b] + cnt[b] - 1 */
	int		   *cnt;
	int			nd;
	int32	   *doc;			/* nd document numbers */
	float	   *x;				/* nd x dim */
	uint8	   *codes;			/* nd codes */
	int32	   *lists;			/* nd lists (IVF) */
	float	   *xhat;			/* nd x dim */
	float	   *g;				/* nd x dim: dL / dxhat */
} Batch;

static inline double
metric_dist(KdMetric metric, const float *q, const float *x, int dim)
{
	return metric == KD_METRIC_IP ? -kd_dot(q, x, dim) : kd_l2sq(q, x, dim);
}

/* The row term's coefficient of t for query vector qv */
static inline double
term_coef(const Student *st, const float *qv)
{
	if (st->metric == KD_METRIC_IP)
		return -st->a * sqrt(kd_dot(qv, qv, st->dim));
	return st->a;
}

/* t of a document x coded as x̂ */
static inline double
term_value_of(const Student *st, const float *x, const float *xhat)
{
	double		r = kd_l2sq(x, xhat, st->dim);

	return st->root ? sqrt(r) : r;
}

/* student.c */
extern void kd_student_init(Student *st, KdQuantizer *q, KdMetric metric, const KdDistillSet *set,
							Size budget, int negatives, int probes);
extern void kd_student_docs(Student *st, const int32 *docs, int n, float *out);
extern void kd_student_query(const Student *st, int32 qi, float *out);
extern void kd_student_encode(const Student *st, const float *x, const int32 *lists, int n,
							  float *tmp, uint8 *codes);
extern void kd_student_decode(const Student *st, const uint8 *codes, const int32 *lists, int n,
							  float *xhat);
extern void kd_refresh_codes(Student *st);
extern void kd_mine_negatives(Student *st, const KdDistillParams *p, const int32 *qs, int nq);
extern double kd_code_recall(Student *st, const KdDistillParams *p, const int32 *qs, int nq);

/* codewords.c */
extern void kd_balanced_codes(const Student *st, Batch *b, double eps);
extern void kd_soft_grad(const Student *st, const Batch *b, double tau, float *gcb);
extern void kd_soft_decode(const Student *st, Batch *b, double tau);
extern void kd_scatter_grad(const Student *st, const Batch *b, float *gcb);

/* ranking.c */
extern double kd_listmle(const double *s, int n, int top, double *gs);
extern double kd_listnet(const double *s, const double *t, int n, double *gs);

#endif							/* KDINDEX_STUDENT_H */
