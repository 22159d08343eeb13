/*
 * generation.c — one way to lay out an index generation: sample rows, train
 * the quantizer, write its codebooks, encode every row into new data chains,
 * and switch the meta page to them.  CREATE INDEX (build.c) reads the rows
 * from the table and writes the meta page whole; an untrained index training
 * itself and kdindex_train (switch.c) read them back from the index's own
 * chain by TID (kd_index_rows) and switch a live index.
 */
#include "postgres.h"

#include "access/tableam.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "distill/distill.h"
#include "generation.h"
#include "vector.h"

/* distill = on: queries drawn from the sample, and their teacher list length */
#define KD_BUILD_QUERIES 2000
#define KD_BUILD_TEACHER_K 100
/* Sample rows kdindex_info's reconstruction error is measured on */
#define KD_MSE_ROWS 8192
/* Fixed seed of the sampler: the same table gives the same index */
#define KD_SAMPLE_SEED 0x6B64

/*
 * The row's vector, in bs->tmpcxt (the caller resets it), or NULL for a row
 * the index leaves out: a NULL, or a zero vector under cosine
 */
static float *
row_vector(KdBuildState *bs, Datum *values, bool *isnull)
{
	MemoryContext old;
	int			dim;
	float	   *x;

	if (isnull[0])
		return NULL;
	old = MemoryContextSwitchTo(bs->tmpcxt);
	x = kd_row_vector(values[0], bs->typid, bs->metric, bs->dim, &dim);
	MemoryContextSwitchTo(old);
	bs->dim = dim;
	if (x == NULL)
		MemoryContextReset(bs->tmpcxt);
	return x;
}

static void
sample_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				bool tupleIsAlive, void *state)
{
	KdBuildState *bs = (KdBuildState *) state;
	float	   *x;
	int64		slot = -1;

	x = row_vector(bs, values, isnull);
	if (x == NULL)
		return;

	if (bs->sample == NULL)
	{
		Size		rowbytes = sizeof(float) * bs->dim;

		bs->sample_cap = Min(bs->sample_cap,
							 (int64) maintenance_work_mem * 1024 / (rowbytes * (1 + bs->train_copies)));
		bs->sample_cap = Max(bs->sample_cap, 1);
		bs->sample = palloc_extended(rowbytes * bs->sample_cap, MCXT_ALLOC_HUGE);
		reservoir_init_selection_state(&bs->rstate, (int) bs->sample_cap);
		sampler_random_init_state(KD_SAMPLE_SEED, &bs->rstate.randstate);
	}

	/* Vitter's algorithm Z, as ANALYZE does */
	if (bs->nsample < bs->sample_cap)
		slot = bs->nsample++;
	else
	{
		if (bs->rowstoskip < 0)
			bs->rowstoskip = reservoir_get_next_S(&bs->rstate, bs->seen, (int) bs->sample_cap);
		if (bs->rowstoskip <= 0)
			slot = (int64) (bs->sample_cap * sampler_random_fract(&bs->rstate.randstate));
		bs->rowstoskip -= 1;
	}
	if (slot >= 0)
		memcpy(bs->sample + slot * bs->dim, x, sizeof(float) * bs->dim);
	bs->seen += 1;
	MemoryContextReset(bs->tmpcxt);
}

/* Write the locally built page to buf (locked) and release it */
static void
put_page(KdBuildState *bs, Buffer buf)
{
	GenericXLogState *state = GenericXLogStart(bs->index);
	Page		page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);

	memcpy(page, bs->page, BLCKSZ);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(buf);
}

/*
 * Append n pending tuples (positions in order[]) to a chain: fill up its
 * tail page, then link new pages after it.
 */
static void
append_run(KdBuildState *bs, KdListEntry *chain, const int32 *order, int n)
{
	Buffer		buf;

	if (BlockNumberIsValid(chain->tail))
	{
		buf = ReadBuffer(bs->index, chain->tail);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		memcpy(bs->page, BufferGetPage(buf), BLCKSZ);
	}
	else
	{
		buf = kd_new_buffer(bs->index, MAIN_FORKNUM);
		chain->head = chain->tail = BufferGetBlockNumber(buf);
		kd_init_page(bs->page, KDINDEX_PAGE_DATA);
	}
	for (int i = 0; i < n; i++)
	{
		KdPageOpaque opaque = KdPageGetOpaque(bs->page);
		char	   *tup;

		if (opaque->ntuples >= bs->fill)
		{
			Buffer		next = kd_new_buffer(bs->index, MAIN_FORKNUM);

			chain->tail = opaque->nextblkno = BufferGetBlockNumber(next);
			put_page(bs, buf);
			buf = next;
			kd_init_page(bs->page, KDINDEX_PAGE_DATA);
			opaque = KdPageGetOpaque(bs->page);
		}
		tup = bs->pending + (Size) order[i] * bs->tupsize;
		kd_tuple_set(bs->page, &bs->layout, opaque->ntuples, (ItemPointer) tup,
					 (const uint8 *) KdTupleCode(tup));
		kd_page_set_ntuples(bs->page, &bs->layout, opaque->ntuples + 1);
	}
	put_page(bs, buf);
}

/* Write the pending tuples out, grouped by list (a counting sort) */
static void
write_pending(KdBuildState *bs)
{
	int32	   *start = palloc0(sizeof(int32) * (bs->nchains + 1));
	int32	   *order = palloc(sizeof(int32) * Max(bs->npending, 1));

	for (int i = 0; i < bs->npending; i++)
		start[bs->pending_lists[i] + 1]++;
	for (int l = 0; l < bs->nchains; l++)
		start[l + 1] += start[l];
	for (int i = 0; i < bs->npending; i++)
		order[start[bs->pending_lists[i]]++] = i;
	/* start[l] is now where list l + 1 begins */
	for (int l = 0, from = 0; l < bs->nchains; from = start[l], l++)
	{
		CHECK_FOR_INTERRUPTS();
		if (start[l] > from)
			append_run(bs, &bs->chains[l], order + from, start[l] - from);
	}
	bs->npending = 0;
	pfree(order);
	pfree(start);
}

void
kd_append_encoded(KdBuildState *bs, int list, ItemPointer tid, const uint8 *code)
{
	char	   *tup;

	if (bs->npending == bs->pending_cap)
		write_pending(bs);
	tup = bs->pending + (Size) bs->npending * bs->tupsize;
	memcpy(tup, tid, sizeof(ItemPointerData));
	if (bs->tupsize > sizeof(ItemPointerData))
		memcpy(KdTupleCode(tup), code, bs->tupsize - sizeof(ItemPointerData));
	bs->pending_lists[bs->npending++] = list;
	bs->ntuples++;
}

/* Room for one batch of rows to encode, and their codes */
void
kd_alloc_batch(KdBuildState *bs, int code_size)
{
	bs->batch = palloc_extended(sizeof(float) * KD_ENCODE_BATCH * Max(bs->dim, 1), MCXT_ALLOC_HUGE);
	bs->batch_tids = palloc(sizeof(ItemPointerData) * KD_ENCODE_BATCH);
	bs->batch_lists = palloc(sizeof(int32) * KD_ENCODE_BATCH);
	bs->codes = palloc(KD_ENCODE_BATCH * Max(code_size, 1));
}

void
kd_flush_batch(KdBuildState *bs)
{
	KdQuantizer *q = bs->quantizer;

	if (bs->nbatch == 0)
		return;
	if (q)
		kd_encode_rows(q, bs->batch, bs->nbatch, bs->batch_lists, bs->codes);
	if (bs->send)
	{
		bs->send(bs);
		return;
	}
	for (int i = 0; i < bs->nbatch; i++)
		kd_append_encoded(bs, q ? bs->batch_lists[i] : 0, &bs->batch_tids[i],
					 q ? bs->codes + (Size) i * kd_row_code_size(q) : NULL);
	bs->nbatch = 0;
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, bs->ntuples);
}

void
kd_encode_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				bool tupleIsAlive, void *state)
{
	KdBuildState *bs = (KdBuildState *) state;
	float	   *x;

	x = row_vector(bs, values, isnull);
	if (x == NULL)
		return;
	memcpy(bs->batch + (Size) bs->nbatch * bs->dim, x, sizeof(float) * bs->dim);
	bs->batch_tids[bs->nbatch++] = *tid;
	MemoryContextReset(bs->tmpcxt);
	if (bs->nbatch == KD_ENCODE_BATCH)
		kd_flush_batch(bs);
}

static void
sample_fetch(void *arg, const int32 *docs, int n, float *out)
{
	KdBuildState *bs = (KdBuildState *) arg;

	for (int i = 0; i < n; i++)
		memcpy(out + (Size) i * bs->dim, bs->sample + (Size) docs[i] * bs->dim, sizeof(float) * bs->dim);
}

/*
 * distill = on: queries are every (n / nq)-th sampled row, the teacher is the
 * exact top-K within the sample (each query's own row left out), and the
 * trained quantizer is distilled from it.
 */
static void
distill_sample(KdBuildState *bs, KdQuantizer *q)
{
	KdDistillSet set;
	KdDistillParams p;
	KdDistillResult res;
	int			nq = (int) Min(KD_BUILD_QUERIES, bs->nsample / 10);
	int32	   *qrows;

	if (nq < 10)
		return;
	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, KDINDEX_PHASE_DISTILL);
	memset(&set, 0, sizeof(set));
	set.dim = bs->dim;
	set.nq = nq;
	set.k = (int) Min(KD_BUILD_TEACHER_K, bs->nsample - 1);
	set.ndocs = (int32) bs->nsample;
	set.fetch = sample_fetch;
	set.fetch_arg = bs;
	qrows = palloc(sizeof(int32) * nq);
	set.queries = palloc_extended(sizeof(float) * nq * bs->dim, MCXT_ALLOC_HUGE);
	for (int i = 0; i < nq; i++)
	{
		qrows[i] = (int32) ((int64) i * bs->nsample / nq);
		memcpy(set.queries + (Size) i * bs->dim, bs->sample + (Size) qrows[i] * bs->dim,
			   sizeof(float) * bs->dim);
	}
	set.lists = palloc_extended(sizeof(int32) * nq * set.k, MCXT_ALLOC_HUGE);
	kd_teacher_in_memory(bs->sample, bs->nsample, bs->dim, bs->metric, qrows, nq, set.k, set.lists);

	kd_distill_defaults(&p);
	p.mem_budget = 0;			/* the sample is in memory already */
	p.batch_budget = (Size) maintenance_work_mem * 1024 / 4;
	kd_distill(q, bs->metric, &set, &p, &res);
	elog(DEBUG1, "kdindex distill: %d queries, held-out recall %.4f -> %.4f, best epoch %d",
		 nq, res.recall_before, res.recall_after, res.best_epoch);
	pfree(qrows);
	pfree(set.queries);
	pfree(set.lists);
}

/*
 * The reconstruction error kdindex_info reports, on every k-th row of the
 * sample, at most KD_MSE_ROWS of them: encoding the whole sample once more
 * just for it would cost AQ a fifth of its build.
 */
static double
sample_mse(KdBuildState *bs)
{
	int64		n = Min(bs->nsample, KD_MSE_ROWS);
	float	   *rows = palloc_extended(sizeof(float) * n * bs->dim, MCXT_ALLOC_HUGE);
	double		mse;

	for (int64 i = 0; i < n; i++)
		memcpy(rows + i * bs->dim, bs->sample + (i * bs->nsample / n) * bs->dim,
			   sizeof(float) * bs->dim);
	mse = kd_quantizer_mse(bs->quantizer, rows, n);
	pfree(rows);
	return mse;
}

/* Train on the sample and write the parameters; the meta records where */
static void
train_quantizer(KdBuildState *bs, KdMetaPageData *meta)
{
	KdQuantizer *trained;
	instr_time	start,
				duration;
	char	   *blob;
	Size		size;

	INSTR_TIME_SET_CURRENT(start);
	trained = kd_quantizer_create(meta->quantizer, bs->dim, meta->m, meta->nbits);
	trained->iterations = bs->iterations;
	trained->beam = bs->beam;
	trained->metric = bs->metric;
	kd_ivf_set_lists(trained, bs->lists);
	trained->balance = (float) bs->balance;
	kd_quantizer_train(trained, bs->sample, bs->nsample);
	if (bs->rowterm)
	{
		KdRowTerm	term = {.mode = KD_ROWTERM_CODE};

		/* fitted on the sample; distillation refits it from its teacher */
		kd_rowterm_enable(trained, &term);
		kd_rowterm_fit(trained, bs->metric, bs->sample, bs->nsample, (int64) bs->seen);
	}
	if (bs->distill)
		distill_sample(bs, trained);
	/* on the residuals of the codes as trained, distilled and with the term */
	if (bs->refine > 0)
		kd_refine_train(trained, bs->sample, bs->nsample, bs->refine);
	blob = kd_quantizer_serialize(trained, bs->sample, bs->nsample, &size);
	meta->blob_head = kd_write_blob(bs->index, blob, size);
	meta->blob_size = size;

	/* encode with exactly what the pages hold (parameters may be half floats) */
	bs->quantizer = kd_quantizer_deserialize(blob, size);
	meta->train_mse = sample_mse(bs);
	kd_quantizer_free(trained);
	pfree(blob);

	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	meta->train_seconds = INSTR_TIME_GET_DOUBLE(duration);
	meta->train_rows = bs->nsample;
	meta->trained = true;
	meta->code_size = kd_row_code_size(bs->quantizer);
	meta->refine = bs->refine;
	meta->version = KdLayoutVersionFor(bs->quantizer);
}


/*
 * The rows an index holds, read back from the table by TID, from position
 * (from_blk, from_off) of its chain up to (stop_blk, stop_off), or to its end
 * when stop_blk is invalid.  Every version some transaction may still see
 * counts (a non-vacuumable snapshot): the indexed value is the same along a
 * HOT chain, and a row dead to everyone (deleted long ago, or inserted by a
 * transaction that aborted) is dropped, so the rows counted are the live ones.
 */
void
kd_index_rows(KdBuildState *bs, IndexBuildCallback callback)
{
	KdHeapFetch *hf = kd_heap_fetch_begin(bs->heap, bs->index);
	SnapshotData snapshot;
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * KdPageCapacity(sizeof(ItemPointerData)));
	BlockNumber blkno = bs->from_blk;
	int			first = bs->from_off;

	InitNonVacuumableSnapshot(snapshot, GlobalVisTestFor(bs->heap));
	while (blkno != InvalidBlockNumber)
	{
		Buffer		buf = ReadBuffer(bs->index, blkno);
		Page		page;
		int			ntup;
		bool		last = blkno == bs->stop_blk;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		ntup = last ? bs->stop_off : KdPageGetOpaque(page)->ntuples;
		for (int i = first; i < ntup; i++)
			tids[i - first] = *kd_tuple_tid(page, &bs->old_layout, i);
		blkno = last ? InvalidBlockNumber : KdPageGetOpaque(page)->nextblkno;
		UnlockReleaseBuffer(buf);

		for (int i = 0; i < ntup - first; i++)
		{
			Datum		value;
			bool		isnull = false;

			CHECK_FOR_INTERRUPTS();
			if (kd_heap_fetch_value(hf, &tids[i], &snapshot, &value))
				callback(bs->index, &tids[i], &value, &isnull, true, bs);
		}
		first = 0;
	}
	pfree(tids);
	kd_heap_fetch_end(hf);
}

void
kd_init_build_state(KdBuildState *bs, Relation index, Relation heap, const KdMetaPageData *meta)
{
	KdOptions  *opts = (KdOptions *) index->rd_options;
	int			sample = opts ? opts->sample : 0;

	memset(bs, 0, sizeof(*bs));
	bs->iterations = opts ? opts->iterations : 0;
	bs->beam = opts ? opts->beam : 0;
	bs->lists = opts ? opts->lists : 0;
	bs->balance = opts ? opts->balance : 0;
	/* IVF trains the quantizer on a copy of the sample: the residuals */
	bs->train_copies = kd_quantizer_train_copies((KdQuantizerKind) meta->quantizer) +
		(bs->lists > 0 ? 1 : 0);
	bs->index = index;
	bs->heap = heap;
	bs->metric = kd_index_metric(index);
	/* kd_build refuses it under L1, but ALTER INDEX ... SET can turn it on */
	bs->distill = opts && opts->distill && bs->metric != KD_METRIC_L1;
	bs->rowterm = opts ? opts->rowterm : true;
	bs->refine = opts ? opts->refine : 0;
	bs->typid = TupleDescAttr(RelationGetDescr(index), 0)->atttypid;
	bs->tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex build row",
									   ALLOCSET_DEFAULT_SIZES);
	/* 256 rows per codeword, and at least 64 per list */
	bs->sample_cap = sample > 0 ? sample : Max(256 * (1 << meta->nbits), 64 * bs->lists);
	bs->rowstoskip = -1;
	bs->page = palloc(BLCKSZ);
}

/*
 * Tuples a build, self-training or retrain puts on a data page: all it holds,
 * or fillfactor percent of it (whole blocks of the fast-scan layout), so that
 * the new versions of updated rows fit beside the old until VACUUM, as
 * btree's fillfactor leaves room.  Inserts fill pages completely.
 */
static int
fill_rows(Relation index, const KdLayout *l)
{
	KdOptions  *opts = (KdOptions *) index->rd_options;
	int			fill;

	if (opts == NULL || opts->fillfactor >= 100)
		return l->capacity;
	fill = l->capacity * opts->fillfactor / 100;
	if (l->blocked)
		fill -= fill % KDINDEX_BLOCK_ROWS;
	return Max(fill, l->blocked ? Min(KDINDEX_BLOCK_ROWS, l->capacity) : 1);
}

/*
 * Get ready to encode rows into new data chains; tuples wait in memory within
 * a quarter of maintenance_work_mem
 */
void
kd_encode_start(KdBuildState *bs, const KdMetaPageData *meta, int code_size, int refine)
{
	int64		cap;

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, KDINDEX_PHASE_ENCODE);
	bs->tupsize = KdTupleSize(code_size);
	kd_layout_for(&bs->layout, meta->quantizer, meta->m, meta->nbits, code_size, refine);
	bs->fill = fill_rows(bs->index, &bs->layout);
	kd_alloc_batch(bs, code_size);
	cap = (int64) maintenance_work_mem * 1024 / 4 / (bs->tupsize + sizeof(int32));
	bs->pending_cap = (int) Min(Max(cap, KD_ENCODE_BATCH), MaxAllocSize / bs->tupsize);
	bs->pending = palloc_extended((Size) bs->pending_cap * bs->tupsize, MCXT_ALLOC_HUGE);
	bs->pending_lists = palloc_extended(sizeof(int32) * bs->pending_cap, MCXT_ALLOC_HUGE);
	bs->nchains = bs->quantizer ? Max(bs->quantizer->nlists, 1) : 1;
	bs->chains = palloc_extended(sizeof(KdListEntry) * bs->nchains, MCXT_ALLOC_HUGE);
	for (int l = 0; l < bs->nchains; l++)
		bs->chains[l].head = bs->chains[l].tail = bs->chains[l].free = InvalidBlockNumber;
}

/* Write out what is pending; meta gets the new chain or list directory */
void
kd_encode_finish(KdBuildState *bs, KdMetaPageData *meta)
{
	kd_flush_batch(bs);
	write_pending(bs);
	/* pages left with room (fillfactor): inserts refill them from the head */
	if (bs->fill < bs->layout.capacity)
		for (int l = 0; l < bs->nchains; l++)
			bs->chains[l].free = bs->chains[l].head;
	if (bs->quantizer && bs->quantizer->nlists > 0)
	{
		kd_write_lists(bs->index, bs->chains, bs->quantizer->nlists, meta);
		meta->data_head = meta->data_tail = InvalidBlockNumber;
		meta->nfree = 0;
	}
	else
	{
		meta->nlists = 0;
		meta->data_head = bs->chains[0].head;
		meta->data_tail = bs->chains[0].tail;
		meta->nfree = BlockNumberIsValid(bs->chains[0].free) ? 1 : 0;
		meta->free_pages[0] = bs->chains[0].free;
	}
}

/*
 * Sample the rows; train when there are at least min_rows of them and the
 * sample holds a row per codeword and per list.  meta gets the dimension and,
 * when trained, the parameters.  Returns whether it trained.
 */
bool
kd_sample_train(KdBuildState *bs, KdMetaPageData *meta, int64 min_rows)
{
	bool		trained = false;

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, KDINDEX_PHASE_SAMPLE);
	bs->source(bs, sample_callback);

	meta->dim = bs->dim;
	if (bs->dim > 0)
	{
		meta->m = kd_choose_m(bs->dim, meta->m);
		kd_check_m((KdQuantizerKind) meta->quantizer, bs->dim, meta->m, meta->nbits);
		kd_refine_check_dim(bs->refine, bs->dim);
	}
	if (bs->seen >= min_rows && bs->nsample >= Max(1 << meta->nbits, bs->lists))
	{
		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, KDINDEX_PHASE_TRAIN);
		train_quantizer(bs, meta);
		trained = true;
	}
	if (bs->sample)
		pfree(bs->sample);
	bs->sample = NULL;
	return trained;
}

/* Encode every row into new data chains; meta gets them */
void
kd_encode_all(KdBuildState *bs, KdMetaPageData *meta)
{
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, (int64) bs->seen);
	kd_encode_start(bs, meta, meta->code_size, meta->trained ? meta->refine : 0);
	if (bs->seen > 0 &&
		!(bs->encode_parallel && bs->quantizer && bs->encode_parallel(bs, meta)))
		bs->source(bs, kd_encode_callback);
	kd_encode_finish(bs, meta);
	if (bs->quantizer)
		kd_quantizer_free(bs->quantizer);
	bs->quantizer = NULL;
}

/*
 * Rows an untrained index collects before it trains itself: 39 per codeword
 * and per list, Faiss's minimum for a k-means worth having (9,984 at
 * nbits = 8).
 */
int
kd_autotrain_rows(Relation index, int nbits)
{
	KdOptions  *opts = (KdOptions *) index->rd_options;

	return 39 * Max(1 << nbits, opts ? opts->lists : 0);
}
