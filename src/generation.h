/*
 * generation.h — writing an index generation (codebooks and data chains):
 * what CREATE INDEX (build.c) shares with the switches of switch.c.
 */
#ifndef KDINDEX_GENERATION_H
#define KDINDEX_GENERATION_H

#include "access/tableam.h"
#include "storage/shm_mq.h"
#include "utils/sampling.h"

#include "kdindex.h"

/* Rows encoded together */
#define KD_ENCODE_BATCH 1024

typedef struct KdBuildState KdBuildState;

/* Where rows come from: the table (CREATE INDEX), or the index's own TIDs */
typedef void (*KdRowSource) (KdBuildState *bs, IndexBuildCallback callback);

struct KdBuildState
{
	Relation	index;
	Relation	heap;
	IndexInfo  *indexInfo;
	KdRowSource source;
	/* CREATE INDEX: encode with parallel workers; false when none started */
	bool		(*encode_parallel) (KdBuildState *bs, const KdMetaPageData *meta);
	/* a parallel worker: ship the encoded batch to the leader */
	void		(*send) (KdBuildState *bs);
	/* in place: the part of the old chain to read, and its tuple size */
	BlockNumber from_blk;
	int			from_off;
	BlockNumber stop_blk;
	int			stop_off;
	KdLayout	old_layout;
	double		reltuples;		/* live table rows, NULLs included */
	KdMetric	metric;
	Oid			typid;
	int			dim;			/* 0 until the first row */
	MemoryContext tmpcxt;		/* reset per row */

	/* sampling */
	float	   *sample;
	int64		sample_cap;
	int			train_copies;	/* sample-sized arrays the quantizer's training adds */
	int			iterations;
	int			beam;
	bool		distill;		/* distil from sampled queries after training */
	bool		rowterm;		/* codes carry the per-row error term */
	int			refine;			/* refinement bytes per row (refine.c) */
	int64		nsample;
	double		seen;
	double		rowstoskip;
	ReservoirStateData rstate;

	int			lists;			/* IVF lists wanted; 0: flat */
	double		balance;		/* balanced lists (Sinkhorn temperature factor) */

	/* encoding */
	KdQuantizer *quantizer;		/* NULL: untrained, TIDs only */
	shm_mq_handle *queue;		/* parallel worker: encoded rows go to the leader */
	float	   *batch;
	ItemPointerData *batch_tids;
	int32	   *batch_lists;
	int			nbatch;
	uint8	   *codes;

	/*
	 * page writing: encoded tuples wait in memory, then each list's go to the
	 * end of its chain
	 */
	int			tupsize;		/* pending tuples are in row form */
	KdLayout	layout;
	int			fill;			/* tuples a build puts on a page (fillfactor) */			/* of the pages written */
	char	   *pending;
	int32	   *pending_lists;
	int			npending;
	int			pending_cap;
	KdListEntry *chains;		/* nchains: where each chain begins and ends */
	int			nchains;
	Page		page;			/* page being filled, built locally */
	int64		ntuples;
};

extern void kd_init_build_state(KdBuildState *bs, Relation index, Relation heap,
								const KdMetaPageData *meta);
extern bool kd_sample_train(KdBuildState *bs, KdMetaPageData *meta, int64 min_rows);
extern void kd_encode_all(KdBuildState *bs, KdMetaPageData *meta);
extern void kd_alloc_batch(KdBuildState *bs, int code_size);
extern void kd_flush_batch(KdBuildState *bs);
extern void kd_encode_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
							   bool tupleIsAlive, void *state);
extern void kd_append_encoded(KdBuildState *bs, int list, ItemPointer tid, const uint8 *code);
/* what the switches of switch.c share with the build */
extern void kd_index_rows(KdBuildState *bs, IndexBuildCallback callback);
extern void kd_encode_start(KdBuildState *bs, const KdMetaPageData *meta, int code_size, int refine);
extern void kd_encode_finish(KdBuildState *bs, KdMetaPageData *meta);

#endif							/* KDINDEX_GENERATION_H */
