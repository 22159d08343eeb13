/*
 * chains.h — kdindex_train reading the index's own chains (chains.c): the
 * held-out queries' recall over every code, and a sample of the table's rows.
 */
#ifndef KDINDEX_CHAINS_H
#define KDINDEX_CHAINS_H

#include "kdindex.h"

/* The held-out queries and the teacher's top-n of each */
typedef struct KdHeldOut
{
	int			n;
	int			topn;
	int			depth;			/* recall of the top n among the codes' first depth */
	int			probes;			/* lists: each query reads its probes nearest; 0 = all */
	const float *queries;		/* n x dim */
	ItemPointerData *sources;	/* rows to skip: the query's own */
	ItemPointerData *truth;		/* n x topn; invalid = none */
} KdHeldOut;

extern double kd_chain_recall(Relation index, const KdMetaPageData *meta, KdQuantizer *q,
							  KdMetric metric, const KdHeldOut *ho, int dim, double *first);
extern int	kd_chain_sample(Relation index, const KdMetaPageData *meta, int n, ItemPointerData *tids,
							int64 *rows);

#endif							/* KDINDEX_CHAINS_H */
