/*
 * build.c — ambuild: sample -> train -> encode -> write pages.
 *
 * Two passes over the table.  The first validates every row and keeps a
 * reservoir sample (PostgreSQL's own reservoir sampling, seeded so that a
 * rebuild of the same table gives the same index) within
 * maintenance_work_mem; the quantizer is trained on it and its parameters are
 * written.  The second pass encodes rows in blocks (one sgemm per block and
 * sub-quantizer) and packs (TID, code) tuples into pages.  The meta page is
 * written last, so the index only points at complete data.
 *
 * A table with fewer rows than codewords gives an untrained index: tuples
 * hold TIDs only and scans compute exact distances on the heap until the
 * index is rebuilt with enough rows.
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xloginsert.h"
#include "catalog/index.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/shm_mq.h"
#include "storage/smgr.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/sampling.h"
#include "utils/snapmgr.h"

#include "distill/distill.h"
#include "kdindex.h"
#include "vector.h"

/* Rows encoded together */
#define KD_ENCODE_BATCH 1024
/* distill = on: queries drawn from the sample, and their teacher list length */
#define KD_BUILD_QUERIES 2000
#define KD_BUILD_TEACHER_K 100
/* Sample rows kdindex_info's reconstruction error is measured on */
#define KD_MSE_ROWS 8192
/* Fixed seed of the sampler: the same table gives the same index */
#define KD_SAMPLE_SEED 0x6B64

typedef struct KdBuildState KdBuildState;

/* Where rows come from: the table (CREATE INDEX), or the index's own TIDs */
typedef void (*KdRowSource) (KdBuildState *bs, IndexBuildCallback callback);

struct KdBuildState
{
	Relation	index;
	Relation	heap;
	IndexInfo  *indexInfo;
	KdRowSource source;
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
	KdLayout	layout;			/* of the pages written */
	char	   *pending;
	int32	   *pending_lists;
	int			npending;
	int			pending_cap;
	KdListEntry *chains;		/* nchains: where each chain begins and ends */
	int			nchains;
	Page		page;			/* page being filled, built locally */
	int64		ntuples;
};

/* m = 0: the largest divisor of dim not above 16 (16 bytes at nbits = 8) */
static int
choose_m(int dim, int m)
{
	if (m != 0)
		return m;
	for (m = Min(16, dim); m > 1; m--)
		if (dim % m == 0)
			return m;
	return 1;
}

/*
 * PQ and OPQ cut the vector into m sub-vectors; AQ's codebooks span it all.
 * Either way a code has to fit on a page.
 */
static void
check_m(KdQuantizerKind quantizer, int dim, int m, int nbits)
{
	KdLayout	layout;
	int			code_size = (m * nbits + 7) / 8 + (quantizer == KD_QUANT_AQ ? sizeof(float) : 0);

	kd_layout_for(&layout, quantizer, m, nbits, code_size);
	if (layout.capacity < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("m = %d gives codes of %d bytes, more than a page holds", m, code_size)));
	if (quantizer == KD_QUANT_AQ)
		return;
	if (m > dim)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("m = %d exceeds the vector dimension %d", m, dim)));
	if (dim % m != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vector dimension %d is not divisible by m = %d", dim, m),
				 errhint("Choose m dividing the dimension, or m = 0 to let kdindex choose.")));
}

/* NULL for a row the index leaves out (a zero vector under cosine) */
static float *
row_vector(KdBuildState *bs, Datum *values)
{
	int			dim;
	float	   *x = kd_row_vector(values[0], bs->typid, bs->metric, bs->dim, &dim);

	bs->dim = dim;
	return x;
}

static void
sample_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				bool tupleIsAlive, void *state)
{
	KdBuildState *bs = (KdBuildState *) state;
	MemoryContext old;
	float	   *x;
	int64		slot = -1;

	if (isnull[0])
		return;
	old = MemoryContextSwitchTo(bs->tmpcxt);
	x = row_vector(bs, values);
	MemoryContextSwitchTo(old);
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

		if (opaque->ntuples >= bs->layout.capacity)
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

static void
append_tuple(KdBuildState *bs, int list, ItemPointer tid, const uint8 *code)
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
static void
alloc_batch(KdBuildState *bs, int code_size)
{
	bs->batch = palloc_extended(sizeof(float) * KD_ENCODE_BATCH * Max(bs->dim, 1), MCXT_ALLOC_HUGE);
	bs->batch_tids = palloc(sizeof(ItemPointerData) * KD_ENCODE_BATCH);
	bs->batch_lists = palloc(sizeof(int32) * KD_ENCODE_BATCH);
	bs->codes = palloc(KD_ENCODE_BATCH * Max(code_size, 1));
}

/*
 * Parallel encoding: a worker sends each encoded batch to the leader as one
 * message, the batch's rows' lists followed by their (TID, code) tuples.
 */
static void
send_batch(KdBuildState *bs)
{
	int			tupsize = KdTupleSize(bs->quantizer->code_size);
	Size		size = bs->nbatch * (sizeof(int32) + tupsize);
	char	   *msg = palloc(size);
	char	   *tup = msg + bs->nbatch * sizeof(int32);

	memcpy(msg, bs->batch_lists, bs->nbatch * sizeof(int32));
	for (int i = 0; i < bs->nbatch; i++, tup += tupsize)
	{
		memcpy(tup, &bs->batch_tids[i], sizeof(ItemPointerData));
		memcpy(KdTupleCode(tup), bs->codes + (Size) i * bs->quantizer->code_size,
			   bs->quantizer->code_size);
	}
	if (shm_mq_send(bs->queue, size, msg, false, true) != SHM_MQ_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("kdindex: lost the connection to the parallel build leader")));
	pfree(msg);
	bs->nbatch = 0;
}

/* The leader: append the tuples of a worker's message */
static void
receive_batch(KdBuildState *bs, const char *msg, Size size)
{
	int			n = (int) (size / (sizeof(int32) + bs->tupsize));
	const char *tup = msg + n * sizeof(int32);

	for (int i = 0; i < n; i++, tup += bs->tupsize)
	{
		int32		list;

		memcpy(&list, msg + i * sizeof(int32), sizeof(int32));
		append_tuple(bs, list, (ItemPointer) tup, (const uint8 *) KdTupleCode(tup));
	}
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, bs->ntuples);
}

static void
flush_batch(KdBuildState *bs)
{
	KdQuantizer *q = bs->quantizer;

	if (bs->nbatch == 0)
		return;
	if (q)
		kd_quantizer_encode(q, bs->batch, bs->nbatch, bs->batch_lists, bs->codes);
	if (bs->queue)
	{
		send_batch(bs);
		return;
	}
	for (int i = 0; i < bs->nbatch; i++)
		append_tuple(bs, q ? bs->batch_lists[i] : 0, &bs->batch_tids[i],
					 q ? bs->codes + (Size) i * q->code_size : NULL);
	bs->nbatch = 0;
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, bs->ntuples);
}

static void
encode_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				bool tupleIsAlive, void *state)
{
	KdBuildState *bs = (KdBuildState *) state;
	MemoryContext old;
	float	   *x;

	if (isnull[0])
		return;
	old = MemoryContextSwitchTo(bs->tmpcxt);
	x = row_vector(bs, values);
	MemoryContextSwitchTo(old);
	if (x == NULL)
		return;
	memcpy(bs->batch + (Size) bs->nbatch * bs->dim, x, sizeof(float) * bs->dim);
	bs->batch_tids[bs->nbatch++] = *tid;
	MemoryContextReset(bs->tmpcxt);
	if (bs->nbatch == KD_ENCODE_BATCH)
		flush_batch(bs);
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
	kd_ivf_set_lists(trained, bs->lists);
	trained->balance = (float) bs->balance;
	kd_quantizer_train(trained, bs->sample, bs->nsample);
	if (bs->distill)
		distill_sample(bs, trained);
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
	meta->code_size = bs->quantizer->code_size;
}

static void
write_meta(Relation index, Buffer metabuf, const KdMetaPageData *meta)
{
	GenericXLogState *state = GenericXLogStart(index);
	Page		page = GenericXLogRegisterBuffer(state, metabuf, GENERIC_XLOG_FULL_IMAGE);

	kd_write_meta_page(page, meta);
	GenericXLogFinish(state);
}

static void
heap_rows(KdBuildState *bs, IndexBuildCallback callback)
{
	bs->reltuples = table_index_build_scan(bs->heap, bs->index, bs->indexInfo, true, true,
										   callback, bs, NULL);
}

/*
 * Parallel encoding (CREATE INDEX with max_parallel_maintenance_workers > 0).
 * The sample and training stay in the leader; then workers share the table
 * scan, encode their rows with the trained quantizer (read back from the
 * codebook pages) and send them to the leader through one message queue
 * each; the leader writes every page, so chains fill as densely as in a
 * serial build.  The leader only writes: encoding is where the time goes, so
 * two workers encode about twice as fast as one.
 */
#define KD_PARALLEL_KEY_SHARED		UINT64CONST(0xA4B4D4E400000001)
#define KD_PARALLEL_KEY_QUEUES		UINT64CONST(0xA4B4D4E400000002)
#define KD_PARALLEL_KEY_QUERY_TEXT	UINT64CONST(0xA4B4D4E400000003)
#define KD_PARALLEL_QUEUE_SIZE		((Size) 1 << 20)

typedef struct KdParallelShared
{
	Oid			heaprelid;
	Oid			indexrelid;
	bool		isconcurrent;
	int			dim;
	BlockNumber blob_head;
	uint32		blob_size;
	slock_t		mutex;
	double		reltuples;		/* summed over the workers */
	/* the ParallelTableScanDesc follows, BUFFERALIGNed */
} KdParallelShared;

#define KdParallelScan(shared) \
	((ParallelTableScanDesc) ((char *) (shared) + BUFFERALIGN(sizeof(KdParallelShared))))

PGDLLEXPORT void kd_parallel_build_main(dsm_segment *seg, shm_toc *toc);

/* A worker: encode its share of the table's rows and send them on */
void
kd_parallel_build_main(dsm_segment *seg, shm_toc *toc)
{
	KdParallelShared *shared = shm_toc_lookup(toc, KD_PARALLEL_KEY_SHARED, false);
	char	   *queues = shm_toc_lookup(toc, KD_PARALLEL_KEY_QUEUES, false);
	LOCKMODE	heaplock = shared->isconcurrent ? ShareUpdateExclusiveLock : ShareLock;
	LOCKMODE	indexlock = shared->isconcurrent ? RowExclusiveLock : AccessExclusiveLock;
	shm_mq	   *mq = (shm_mq *) (queues + ParallelWorkerNumber * KD_PARALLEL_QUEUE_SIZE);
	KdBuildState bs;
	char	   *blob;
	double		reltuples;

	debug_query_string = shm_toc_lookup(toc, KD_PARALLEL_KEY_QUERY_TEXT, true);
	pgstat_report_activity(STATE_RUNNING, debug_query_string);

	memset(&bs, 0, sizeof(bs));
	bs.heap = table_open(shared->heaprelid, heaplock);
	bs.index = index_open(shared->indexrelid, indexlock);
	bs.indexInfo = BuildIndexInfo(bs.index);
	bs.indexInfo->ii_Concurrent = shared->isconcurrent;
	bs.metric = kd_index_metric(bs.index);
	bs.typid = TupleDescAttr(RelationGetDescr(bs.index), 0)->atttypid;
	bs.dim = shared->dim;
	bs.tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex build row",
									  ALLOCSET_DEFAULT_SIZES);
	blob = kd_read_blob(bs.index, shared->blob_head, shared->blob_size);
	bs.quantizer = kd_quantizer_deserialize(blob, shared->blob_size);
	alloc_batch(&bs, bs.quantizer->code_size);
	shm_mq_set_sender(mq, MyProc);
	bs.queue = shm_mq_attach(mq, seg, NULL);

	reltuples = table_index_build_scan(bs.heap, bs.index, bs.indexInfo, true, false,
									   encode_callback, &bs,
									   table_beginscan_parallel(bs.heap, KdParallelScan(shared)));
	flush_batch(&bs);
	shm_mq_detach(bs.queue);

	SpinLockAcquire(&shared->mutex);
	shared->reltuples += reltuples;
	SpinLockRelease(&shared->mutex);

	kd_quantizer_free(bs.quantizer);
	index_close(bs.index, indexlock);
	table_close(bs.heap, heaplock);
}

/* The leader: write what the workers send until every one is done */
static void
receive_all(KdBuildState *bs, shm_mq_handle **mqh, int n)
{
	int			live = n;

	while (live > 0)
	{
		bool		got = false;

		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < n; i++)
		{
			Size		size;
			void	   *data;
			shm_mq_result res;

			if (mqh[i] == NULL)
				continue;
			res = shm_mq_receive(mqh[i], &size, &data, true);
			if (res == SHM_MQ_SUCCESS)
			{
				receive_batch(bs, data, size);
				got = true;
			}
			else if (res == SHM_MQ_DETACHED)
			{
				mqh[i] = NULL;
				live--;
			}
		}
		if (!got && live > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1,
							 WAIT_EVENT_MQ_RECEIVE);
			ResetLatch(MyLatch);
		}
	}
}

/*
 * Encode the table's rows with workers; false (nothing done) when none could
 * be launched, and the caller encodes them itself.
 */
static bool
parallel_encode(KdBuildState *bs, const KdMetaPageData *meta)
{
	int			nworkers = plan_create_index_workers(RelationGetRelid(bs->heap),
													 RelationGetRelid(bs->index));
	bool		concurrent = bs->indexInfo->ii_Concurrent;
	ParallelContext *pcxt;
	Snapshot	snapshot;
	Size		sharedsize;
	Size		querylen = debug_query_string ? strlen(debug_query_string) : 0;
	KdParallelShared *shared;
	char	   *queues;
	shm_mq_handle **mqh;
	int			launched;

	if (nworkers <= 0)
		return false;
	EnterParallelMode();
	pcxt = CreateParallelContext("kdindex", "kd_parallel_build_main", nworkers);
	snapshot = concurrent ? RegisterSnapshot(GetTransactionSnapshot()) : SnapshotAny;
	sharedsize = add_size(BUFFERALIGN(sizeof(KdParallelShared)),
						  table_parallelscan_estimate(bs->heap, snapshot));
	shm_toc_estimate_chunk(&pcxt->estimator, sharedsize);
	shm_toc_estimate_chunk(&pcxt->estimator, KD_PARALLEL_QUEUE_SIZE * nworkers);
	shm_toc_estimate_chunk(&pcxt->estimator, querylen + 1);
	shm_toc_estimate_keys(&pcxt->estimator, 3);
	InitializeParallelDSM(pcxt);
	if (pcxt->seg == NULL)
	{
		/* no dynamic shared memory: encode serially */
		if (IsMVCCSnapshot(snapshot))
			UnregisterSnapshot(snapshot);
		DestroyParallelContext(pcxt);
		ExitParallelMode();
		return false;
	}

	shared = shm_toc_allocate(pcxt->toc, sharedsize);
	memset(shared, 0, sizeof(KdParallelShared));
	shared->heaprelid = RelationGetRelid(bs->heap);
	shared->indexrelid = RelationGetRelid(bs->index);
	shared->isconcurrent = concurrent;
	shared->dim = bs->dim;
	shared->blob_head = meta->blob_head;
	shared->blob_size = meta->blob_size;
	SpinLockInit(&shared->mutex);
	table_parallelscan_initialize(bs->heap, KdParallelScan(shared), snapshot);
	shm_toc_insert(pcxt->toc, KD_PARALLEL_KEY_SHARED, shared);

	queues = shm_toc_allocate(pcxt->toc, KD_PARALLEL_QUEUE_SIZE * nworkers);
	for (int i = 0; i < nworkers; i++)
		shm_mq_set_receiver(shm_mq_create(queues + i * KD_PARALLEL_QUEUE_SIZE,
										  KD_PARALLEL_QUEUE_SIZE), MyProc);
	shm_toc_insert(pcxt->toc, KD_PARALLEL_KEY_QUEUES, queues);
	if (debug_query_string)
	{
		char	   *query = shm_toc_allocate(pcxt->toc, querylen + 1);

		memcpy(query, debug_query_string, querylen + 1);
		shm_toc_insert(pcxt->toc, KD_PARALLEL_KEY_QUERY_TEXT, query);
	}

	LaunchParallelWorkers(pcxt);
	launched = pcxt->nworkers_launched;
	if (launched > 0)
	{
		ereport(DEBUG1, (errmsg("kdindex: encoding with %d parallel workers", launched)));
		mqh = palloc(sizeof(shm_mq_handle *) * launched);
		for (int i = 0; i < launched; i++)
			mqh[i] = shm_mq_attach((shm_mq *) (queues + i * KD_PARALLEL_QUEUE_SIZE), pcxt->seg,
								   pcxt->worker[i].bgwhandle);
		receive_all(bs, mqh, launched);
		WaitForParallelWorkersToFinish(pcxt);
		bs->reltuples = shared->reltuples;
	}

	if (IsMVCCSnapshot(snapshot))
		UnregisterSnapshot(snapshot);
	DestroyParallelContext(pcxt);
	ExitParallelMode();
	return launched > 0;
}

/*
 * The rows an index holds, read back from the table by TID, from position
 * (from_blk, from_off) of its chain up to (stop_blk, stop_off), or to its end
 * when stop_blk is invalid.  Any version will do (SnapshotAny): the indexed
 * value is the same along a HOT chain, and a TID with no tuple left is dead,
 * so its entry is dropped.
 */
static void
index_rows(KdBuildState *bs, IndexBuildCallback callback)
{
	KdHeapFetch *hf = kd_heap_fetch_begin(bs->heap, bs->index);
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * KdPageCapacity(sizeof(ItemPointerData)));
	BlockNumber blkno = bs->from_blk;
	int			first = bs->from_off;

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
			if (kd_heap_fetch_value(hf, &tids[i], SnapshotAny, &value))
				callback(bs->index, &tids[i], &value, &isnull, true, bs);
		}
		first = 0;
	}
	pfree(tids);
	kd_heap_fetch_end(hf);
}

static void
init_build_state(KdBuildState *bs, Relation index, Relation heap, const KdMetaPageData *meta)
{
	KdOptions  *opts = (KdOptions *) index->rd_options;
	int			sample = opts ? opts->sample : 0;

	memset(bs, 0, sizeof(*bs));
	bs->iterations = opts ? opts->iterations : 0;
	bs->beam = opts ? opts->beam : 0;
	bs->distill = opts ? opts->distill : false;
	bs->lists = opts ? opts->lists : 0;
	bs->balance = opts ? opts->balance : 0;
	/* IVF trains the quantizer on a copy of the sample: the residuals */
	bs->train_copies = kd_quantizer_train_copies((KdQuantizerKind) meta->quantizer) +
		(bs->lists > 0 ? 1 : 0);
	bs->index = index;
	bs->heap = heap;
	bs->metric = kd_index_metric(index);
	bs->typid = TupleDescAttr(RelationGetDescr(index), 0)->atttypid;
	bs->tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex build row",
									   ALLOCSET_DEFAULT_SIZES);
	/* 256 rows per codeword, and at least 64 per list */
	bs->sample_cap = sample > 0 ? sample : Max(256 * (1 << meta->nbits), 64 * bs->lists);
	bs->rowstoskip = -1;
	bs->page = palloc(BLCKSZ);
}

/*
 * Get ready to encode rows into new data chains; tuples wait in memory within
 * a quarter of maintenance_work_mem
 */
static void
encode_start(KdBuildState *bs, const KdMetaPageData *meta, int code_size)
{
	int64		cap;

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, KDINDEX_PHASE_ENCODE);
	bs->tupsize = KdTupleSize(code_size);
	kd_layout_for(&bs->layout, meta->quantizer, meta->m, meta->nbits, code_size);
	alloc_batch(bs, code_size);
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
static void
encode_finish(KdBuildState *bs, KdMetaPageData *meta)
{
	flush_batch(bs);
	write_pending(bs);
	if (bs->quantizer && bs->quantizer->nlists > 0)
	{
		kd_write_lists(bs->index, bs->chains, bs->quantizer->nlists, meta);
		meta->data_head = meta->data_tail = InvalidBlockNumber;
	}
	else
	{
		meta->nlists = 0;
		meta->data_head = bs->chains[0].head;
		meta->data_tail = bs->chains[0].tail;
	}
}

/*
 * Sample, train when there are enough rows, encode every row into a new data
 * chain; meta gets the parameters and the chain.  Returns whether it trained.
 */
static bool
build_data(KdBuildState *bs, KdMetaPageData *meta, int min_train_rows)
{
	bool		trained = false;

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, KDINDEX_PHASE_SAMPLE);
	bs->source(bs, sample_callback);

	meta->dim = bs->dim;
	if (bs->dim > 0)
	{
		meta->m = choose_m(bs->dim, meta->m);
		check_m((KdQuantizerKind) meta->quantizer, bs->dim, meta->m, meta->nbits);
	}
	if (bs->nsample >= Max(min_train_rows, bs->lists))
	{
		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, KDINDEX_PHASE_TRAIN);
		train_quantizer(bs, meta);
		trained = true;
	}
	if (bs->sample)
		pfree(bs->sample);

	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, (int64) bs->seen);
	encode_start(bs, meta, meta->code_size);
	if (bs->seen > 0 &&
		!(bs->source == heap_rows && bs->quantizer && parallel_encode(bs, meta)))
		bs->source(bs, encode_callback);
	encode_finish(bs, meta);
	if (bs->quantizer)
		kd_quantizer_free(bs->quantizer);
	MemoryContextDelete(bs->tmpcxt);
	return trained;
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

IndexBuildResult *
kd_build(Relation heap, Relation index, IndexInfo *indexInfo)
{
	IndexBuildResult *result;
	KdBuildState bs;
	KdMetaPageData meta;
	KdOptions  *opts = (KdOptions *) index->rd_options;
	int			nbits = opts ? opts->nbits : 8;
	int			ksub = 1 << nbits;
	Buffer		metabuf;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));
	if (opts && opts->distill && opts->lists > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("distill = on is not supported with lists > 0"),
				 errhint("Distil a flat index (lists = 0).")));

	kd_init_meta(&meta, kd_index_metric(index), kd_options_quantizer(index), opts ? opts->m : 0, nbits);
	init_build_state(&bs, index, heap, &meta);
	bs.indexInfo = indexInfo;
	bs.source = heap_rows;
	metabuf = kd_new_buffer(index, MAIN_FORKNUM);
	Assert(BufferGetBlockNumber(metabuf) == KDINDEX_METAPAGE_BLKNO);
	/*
	 * Block 0 is ours; no one else can use the index before the build ends.
	 * Holding its content lock all along would hold off interrupts: the build
	 * could not be cancelled, nor start parallel workers.
	 */
	LockBuffer(metabuf, BUFFER_LOCK_UNLOCK);

	if (!build_data(&bs, &meta, ksub))
	{
		int			need = Max(ksub, bs.lists);

		meta.untrained_rows = bs.ntuples;
		ereport(NOTICE,
				(errmsg("kdindex \"%s\" has %lld rows, fewer than the %d needed to train its quantizer",
						RelationGetRelationName(index), (long long) bs.ntuples, need),
				 errdetail("Until it is trained the index answers with exact distances from the table."),
				 errhint("It trains itself once it holds %d rows; REINDEX trains it sooner.",
						 kd_autotrain_rows(index, nbits))));
	}
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	write_meta(index, metabuf, &meta);
	UnlockReleaseBuffer(metabuf);

	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = bs.reltuples;
	result->index_tuples = bs.ntuples;
	return result;
}

/*
 * Train an untrained index on the rows it holds and re-encode them into a new
 * chain.  The caller holds the index's training lock (KdLockTraining), so no
 * row arrives meanwhile and nobody else trains; scans keep reading the old
 * chain until the meta page switches to the new one in a single WAL record,
 * so a crash, an error or a cancel leaves the old index complete.  VACUUM
 * recycles the old chain's pages once no scan can be reading them.
 */
void
kd_train_in_place(Relation index, Relation heap)
{
	KdMetaPageData meta;
	KdBuildState bs;
	GenericXLogState *state;
	Buffer		metabuf;
	bool		trained;

	kd_read_meta(index, &meta);
	if (meta.trained || meta.untrained_rows < kd_autotrain_rows(index, meta.nbits))
		return;					/* someone else trained it first */
	init_build_state(&bs, index, heap, &meta);
	bs.source = index_rows;
	bs.from_blk = meta.data_head;
	bs.stop_blk = InvalidBlockNumber;
	kd_layout_for(&bs.old_layout, meta.quantizer, meta.m, meta.nbits, 0);
	trained = build_data(&bs, &meta, kd_autotrain_rows(index, meta.nbits));

	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	if (trained)
	{
		/* switch to the new parameters and chain */
		kd_retire_chains(&meta, bs.from_blk, InvalidBlockNumber);
		meta.generation++;
		meta.nfree = 0;
		meta.untrained_rows = 0;
		memcpy(KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0)), &meta, sizeof(meta));
	}
	else
	{
		/* too many of the rows were dead: keep the old chain, count the live ones */
		KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0))->untrained_rows = bs.ntuples;
	}
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);
	if (trained)
		ereport(NOTICE,
				(errmsg("kdindex \"%s\" trained its quantizer on %lld rows",
						RelationGetRelationName(index), (long long) meta.train_rows)));
}

/*
 * Switch a trained index to new parameters (kdindex_train): write them, then
 * re-encode every row the index holds into a new chain, and point the meta
 * page at both in one WAL record.  x (n rows) is a sample the blob's
 * precision and the reported reconstruction error are measured on.
 *
 * Scans and inserts go on meanwhile.  The caller holds the table's
 * ShareUpdateExclusiveLock, so VACUUM does not move tuples under us; inserts
 * append to the old chain's tail once its free-page list is emptied, so the
 * rows that arrive while the first pass runs are those after the position it
 * stopped at, and the second pass reads them with inserts held off
 * (KdLockTraining) until the switch.  Until then the old chain and codebooks
 * are what every reader sees: a crash or cancel leaves them.  VACUUM
 * recycles the old pages once no scan can be reading them.
 */
void
kd_retrain_switch(Relation index, Relation heap, KdQuantizer *trained, const float *x, int64 n,
				  double train_seconds, KdMetaPageData *result)
{
	KdMetaPageData meta,
				old;
	KdBuildState bs;
	GenericXLogState *state;
	Buffer		metabuf;
	char	   *blob;
	Size		size;
	BlockNumber blob_head;

	kd_read_meta(index, &meta);
	Assert(meta.trained);
	init_build_state(&bs, index, heap, &meta);
	bs.dim = meta.dim;
	bs.source = index_rows;
	blob = kd_quantizer_serialize(trained, x, n, &size);
	bs.quantizer = kd_quantizer_deserialize(blob, size);
	blob_head = kd_write_blob(index, blob, size);
	encode_start(&bs, &meta, bs.quantizer->code_size);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, 0);

	/* pass 1: the rows up to the chain's current end */
	KdLockTraining(index);
	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	memcpy(&meta, KdPageGetMeta(BufferGetPage(metabuf)), sizeof(meta));
	state = GenericXLogStart(index);
	KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0))->nfree = 0;
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);
	kd_layout(&bs.old_layout, &meta);
	bs.from_blk = meta.data_head;
	bs.from_off = 0;
	bs.stop_blk = meta.data_tail;
	bs.stop_off = 0;
	if (BlockNumberIsValid(meta.data_tail))
	{
		Buffer		buf = ReadBuffer(index, meta.data_tail);

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		bs.stop_off = KdPageGetOpaque(BufferGetPage(buf))->ntuples;
		UnlockReleaseBuffer(buf);
	}
	KdUnlockTraining(index);
	if (BlockNumberIsValid(bs.from_blk))
		index_rows(&bs, encode_callback);

	/* pass 2: what was inserted meanwhile, then the switch */
	KdLockTraining(index);
	if (BlockNumberIsValid(bs.stop_blk))
	{
		bs.from_blk = bs.stop_blk;
		bs.from_off = bs.stop_off;
		bs.stop_blk = InvalidBlockNumber;
		index_rows(&bs, encode_callback);
	}
	meta.blob_head = blob_head;
	meta.blob_size = size;
	encode_finish(&bs, &meta);

	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	old = *KdPageGetMeta(BufferGetPage(metabuf));
	meta.nretired = old.nretired;
	memcpy(meta.retired, old.retired, sizeof(meta.retired));
	kd_retire_chains(&meta, old.data_head, old.blob_head);
	meta.generation = old.generation + 1;
	meta.code_size = bs.quantizer->code_size;
	meta.nfree = 0;
	meta.train_seconds = train_seconds;
	meta.train_mse = kd_quantizer_mse(bs.quantizer, x, n);
	meta.train_rows = n;
	state = GenericXLogStart(index);
	memcpy(KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0)), &meta, sizeof(meta));
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);
	KdUnlockTraining(index);

	*result = meta;
	kd_quantizer_free(bs.quantizer);
	pfree(blob);
	MemoryContextDelete(bs.tmpcxt);
}

/* The init fork of an unlogged index: an empty, untrained meta page */
void
kd_buildempty(Relation index)
{
	Page		page = (Page) palloc(BLCKSZ);
	KdMetaPageData meta;
	KdOptions  *opts = (KdOptions *) index->rd_options;

	kd_init_meta(&meta, kd_index_metric(index), kd_options_quantizer(index),
				 opts ? opts->m : 0, opts ? opts->nbits : 8);
	kd_write_meta_page(page, &meta);
	PageSetChecksumInplace(page, KDINDEX_METAPAGE_BLKNO);
	smgrwrite(RelationGetSmgr(index), INIT_FORKNUM, KDINDEX_METAPAGE_BLKNO, (char *) page, true);
	log_newpage(&(RelationGetSmgr(index))->smgr_rnode.node, INIT_FORKNUM,
				KDINDEX_METAPAGE_BLKNO, page, true);
	smgrimmedsync(RelationGetSmgr(index), INIT_FORKNUM);
	pfree(page);
}
