/*
 * distill.h — knowledge distillation of a quantizer from a teacher's top-K.
 *
 * The trainer sees queries, each with the teacher's ranked list of documents
 * (numbers into a document set), and a way to fetch document vectors; it
 * changes the quantizer's codebooks in place.  Where the queries and
 * documents come from (a teacher table and the heap, or the build's sample)
 * is the caller's business.
 */
#ifndef KDINDEX_DISTILL_H
#define KDINDEX_DISTILL_H

#include "postgres.h"

#include "quant/quantizer.h"

typedef enum KdDistillLoss
{
	KD_LOSS_LISTMLE = 1,		/* Plackett-Luce over the top-n, ranks n+1..K as negatives */
	KD_LOSS_LISTNET = 2			/* softmax cross-entropy, teacher list + in-batch docs */
} KdDistillLoss;

/* fetch the vectors of documents docs[0..n-1] into out (n x dim) */
typedef void (*KdDocFetch) (void *arg, const int32 *docs, int n, float *out);

typedef struct KdDistillSet
{
	int			dim;
	int			nq;
	float	   *queries;		/* nq x dim, in the index's metric form */
	int			k;				/* teacher list length */
	int32	   *lists;			/* nq x k document numbers, best first; -1 = none */
	int32		ndocs;			/* documents are numbered 0..ndocs-1 */
	KdDocFetch	fetch;
	void	   *fetch_arg;
	/*
	 * Per query: one of the table's own rows (kdindex_teacher's table_queries),
	 * not one of the workload's; NULL: no such mark.  With both kinds, only
	 * workload queries are held out (see kd_distill).
	 */
	const bool *table_query;
	/* kdindex_train: rows sampled from the whole table, each standing for table_weight */
	const float *table;			/* ntable x dim, or NULL */
	int32		ntable;
	double		table_weight;
} KdDistillSet;

typedef struct KdDistillParams
{
	KdDistillLoss loss;
	int			epochs;
	int			batch;			/* queries per Adam step */
	int			topn;			/* ranks whose order is learnt (the recall@n target) */
	int			depth;			/* > topn: recall@n is of the codes' first depth, as a
								 * re-rank of that many finds it (held-out recall, the
								 * row term's weight); 0 = codes only */
	int			probes;			/* IVF: the student's codes-only scans (mined negatives,
								 * held-out recall) read the lists a scan probes
								 * first, as it does; 0 = every list */
	double		lr;				/* Adam step, relative to the data's scale */
	double		rec_weight;		/* weight of the reconstruction loss */
	double		holdout;		/* fraction of queries held out: measured, and a guard */
	double		tau;			/* PQ/OPQ: soft straight-through temperature; 0 = hard only */
	double		balance;		/* PQ/OPQ: Sinkhorn epsilon of balanced batch codes; 0 = off */
	int			negatives;		/* per query: documents its codes wrongly rank high */
	int64		seed;			/* the held-out pick and the batch order */
	Size		mem_budget;		/* bytes for cached document vectors */
	Size		batch_budget;	/* bytes for a batch's vectors: fewer queries when short */
} KdDistillParams;

typedef struct KdDistillResult
{
	double		loss_before;	/* ranking loss on the held-out queries */
	double		loss_after;
	double		recall_before;	/* held-out: teacher top-n among the codes' top-n (or depth) */
	double		recall_after;
	int			epochs;			/* epochs run */
	int			best_epoch;		/* the last epoch averaged; 0 = the starting codebooks kept */
	double		seconds_per_epoch;
	int			nheld;
	int32	   *held;			/* held-out query numbers that judge the result */
	int			nfit;
	int32	   *fit;			/* held-out query numbers that refit the row term */
} KdDistillResult;

extern void kd_distill_defaults(KdDistillParams *p);
/* retrain.c: the teacher tables kdindex_train and kdindex_recall read */
extern void kd_check_teacher_table(Oid teacher, Oid vectype);
extern void kd_teacher_tids(Datum d, bool isnull, Oid teacher, Datum **elems, bool **nulls, int *n);
/* teacher.c */
extern void kd_teacher_in_memory(const float *x, int64 n, int dim, KdMetric metric,
								 const int32 *qrows, int nq, int k, int32 *lists);

extern double kd_distill_gradient_check(KdQuantizerKind kind, KdMetric metric, KdDistillLoss loss,
										bool soft, bool lists, bool term);
extern void kd_distill(KdQuantizer *q, KdMetric metric, const KdDistillSet *set,
					   const KdDistillParams *p, KdDistillResult *res);

/*
 * Averaged codebooks are kept unless their held-out recall is below the
 * starting codebooks' by more than this: differences of 0.7 points on 500
 * held-out queries went the other way on 5,000 unseen ones (README)
 */
#define KD_WORSE 0.01

#endif							/* KDINDEX_DISTILL_H */
