/*
 * build.c — ambuild (CREATE INDEX, REINDEX): sample -> train -> encode ->
 * write pages, reading the table; generation.c does the steps themselves.
 *
 * Two passes over the table.  The first validates every row and keeps a
 * reservoir sample (PostgreSQL's own reservoir sampling, seeded so that a
 * rebuild of the same table gives the same index) within
 * maintenance_work_mem; the quantizer is trained on it and its parameters are
 * written.  The second pass encodes rows in blocks (one sgemm per block and
 * sub-quantizer), with parallel workers when the planner allows them, and
 * packs (TID, code) tuples into pages.  The meta page is written last, so the
 * index only points at complete data.
 *
 * A table with fewer rows than codewords gives an untrained index: tuples
 * hold TIDs only and scans compute exact distances on the heap until the
 * index trains itself (insert.c) or is rebuilt with enough rows.
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
#include "storage/smgr.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "generation.h"
#include "vector.h"

/*
 * Parallel encoding: a worker sends each encoded batch to the leader as one
 * message, the batch's rows' lists followed by their (TID, code) tuples.
 */
static void
send_batch(KdBuildState *bs)
{
	int			code_size = kd_row_code_size(bs->quantizer);
	int			tupsize = KdTupleSize(code_size);
	Size		size = bs->nbatch * (sizeof(int32) + tupsize);
	char	   *msg = palloc(size);
	char	   *tup = msg + bs->nbatch * sizeof(int32);

	memcpy(msg, bs->batch_lists, bs->nbatch * sizeof(int32));
	for (int i = 0; i < bs->nbatch; i++, tup += tupsize)
	{
		memcpy(tup, &bs->batch_tids[i], sizeof(ItemPointerData));
		memcpy(KdTupleCode(tup), bs->codes + (Size) i * code_size, code_size);
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
		kd_append_encoded(bs, list, (ItemPointer) tup, (const uint8 *) KdTupleCode(tup));
	}
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, bs->ntuples);
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
	kd_alloc_batch(&bs, kd_row_code_size(bs.quantizer));
	shm_mq_set_sender(mq, MyProc);
	bs.queue = shm_mq_attach(mq, seg, NULL);
	bs.send = send_batch;

	reltuples = table_index_build_scan(bs.heap, bs.index, bs.indexInfo, true, false,
									   kd_encode_callback, &bs,
									   table_beginscan_parallel(bs.heap, KdParallelScan(shared)));
	kd_flush_batch(&bs);
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
		ereport(DEBUG1, (errmsg_plural("kdindex: encoding with %d parallel worker",
									   "kdindex: encoding with %d parallel workers",
									   launched, launched)));
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
 * The dimension an empty table's index is declared with (pgvector's
 * vector(n)), so that options that cannot fit it fail now rather than at the
 * first insert; 0 when the type does not say.
 */
static int
declared_dim(Relation index)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(index), 0);

	return kd_is_pgvector_type(att->atttypid) && att->atttypmod > 0 ? att->atttypmod : 0;
}

static void
untrained_notice(Relation index, const KdBuildState *bs, int nbits)
{
	int			need = Max(1 << nbits, bs->lists);

	/*
	 * Too few rows is no one's fault: the index answers exactly and trains
	 * itself when it has enough (an empty table after TRUNCATE or CREATE
	 * TABLE ... PARTITION OF is the common case), so that is not for the
	 * client.  A sample cut short by maintenance_work_mem stays so until the
	 * user raises it.
	 */
	if (bs->seen >= need)
		ereport(NOTICE,
				(errmsg("kdindex \"%s\" is untrained: maintenance_work_mem holds only %lld of the %d rows its quantizer needs",
						RelationGetRelationName(index), (long long) bs->nsample, need),
				 errhint("Raise maintenance_work_mem and REINDEX.")));
	else
		ereport(DEBUG1,
				(errmsg_plural("kdindex \"%s\" has %lld row, fewer than the %d needed to train its quantizer; it trains itself at %d rows",
							   "kdindex \"%s\" has %lld rows, fewer than the %d needed to train its quantizer; it trains itself at %d rows",
							   (unsigned long) bs->ntuples,
							   RelationGetRelationName(index), (long long) bs->ntuples, need,
							   kd_autotrain_rows(index, nbits))));
}

/*
 * Under L1 only PQ's lookup tables sum to the distance: OPQ's rotation does
 * not preserve it, AQ's codewords overlap in every coordinate, and the
 * distillation's gradients are written for L2, inner product and cosine.
 * (The options alone do not tell the metric: it is the opclass's.)
 */
static void
check_l1(Relation index, const KdOptions *opts)
{
	KdQuantizerKind kind = kd_options_quantizer(index);

	if (kd_index_metric(index) != KD_METRIC_L1)
		return;
	if (kind != KD_QUANT_PQ)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("quantizer = '%s' does not support L1 distance", kd_quantizer_name(kind)),
				 errdetail("Only PQ's lookup tables add up to an L1 distance."),
				 errhint("Use quantizer = 'pq'.")));
	if (opts && opts->distill)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("distill = on does not support L1 distance")));
}

IndexBuildResult *
kd_build(Relation heap, Relation index, IndexInfo *indexInfo)
{
	IndexBuildResult *result;
	KdBuildState bs;
	KdMetaPageData meta;
	KdOptions  *opts = (KdOptions *) index->rd_options;
	int			nbits = opts ? opts->nbits : 8;
	Buffer		metabuf;
	bool		trained;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));
	check_l1(index, opts);
	kd_forget_index(index);

	kd_init_meta(&meta, kd_index_metric(index), kd_options_quantizer(index), opts ? opts->m : 0, nbits);
	kd_init_build_state(&bs, index, heap, &meta);
	bs.indexInfo = indexInfo;
	bs.source = heap_rows;
	bs.encode_parallel = parallel_encode;
	metabuf = kd_new_buffer(index, MAIN_FORKNUM);
	Assert(BufferGetBlockNumber(metabuf) == KDINDEX_METAPAGE_BLKNO);
	/*
	 * Block 0 is ours; no one else can use the index before the build ends.
	 * Holding its content lock all along would hold off interrupts: the build
	 * could not be cancelled, nor start parallel workers.
	 */
	LockBuffer(metabuf, BUFFER_LOCK_UNLOCK);

	trained = kd_sample_train(&bs, &meta, 1 << nbits);
	if (meta.dim == 0 && declared_dim(index) > 0)
		kd_check_m(meta.quantizer, declared_dim(index),
				   kd_choose_m(declared_dim(index), meta.m), nbits);
	kd_encode_all(&bs, &meta);
	if (!trained)
	{
		meta.untrained_rows = bs.ntuples;
		untrained_notice(index, &bs, nbits);
	}
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	write_meta(index, metabuf, &meta);
	UnlockReleaseBuffer(metabuf);

	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = bs.reltuples;
	result->index_tuples = bs.ntuples;
	return result;
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
