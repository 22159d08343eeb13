/*
 * switch.c — a live index moved to a new generation (generation.c lays it
 * out): an untrained index training itself once it holds enough rows
 * (kd_train_in_place), and kdindex_train's trained quantizer
 * (kd_retrain_switch).  Both read the rows back from the index's own chains
 * by TID while inserts go on.
 *
 * A switch is one WAL record that updates the meta page in place under its
 * buffer lock (never a stale copy written back): the fields of the new
 * generation change, the generation counter is bumped, the chains replaced
 * are retired for VACUUM to recycle once no scan can be reading them, and
 * whatever else changed meanwhile is kept.  Until then every reader sees the
 * old generation, so an error, a cancel or a crash leaves it whole.  Those
 * who publish pages of a chain (VACUUM, inserts) re-check the generation under
 * the same lock.
 */
#include "postgres.h"

#include "commands/progress.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/memutils.h"

#include "generation.h"
#include "vector.h"

/*
 * Switch the meta page to the generation gen describes (its codebooks, chains
 * and training statistics), if it is still at the generation the caller
 * started from.  The current chains are retired, read under the lock.
 */
static void
switch_meta(Relation index, const KdMetaPageData *gen, uint32 generation)
{
	Buffer		metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	GenericXLogState *state;
	KdMetaPage	wmeta;

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	if (KdPageGetMeta(BufferGetPage(metabuf))->generation != generation)
		elog(ERROR, "kdindex \"%s\" switched generation during its training",
			 RelationGetRelationName(index));
	state = GenericXLogStart(index);
	wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	/* with lists, the directory heads the retired chains (VACUUM frees its lists) */
	kd_retire_chains(wmeta, wmeta->nlists > 0 ? wmeta->dir_pages[0] : wmeta->data_head,
					 wmeta->blob_head);
	wmeta->generation++;
	wmeta->version = gen->version;
	wmeta->dim = gen->dim;
	wmeta->m = gen->m;
	wmeta->code_size = gen->code_size;
	wmeta->refine = gen->refine;
	wmeta->trained = gen->trained;
	wmeta->blob_head = gen->blob_head;
	wmeta->blob_size = gen->blob_size;
	wmeta->data_head = gen->data_head;
	wmeta->data_tail = gen->data_tail;
	wmeta->nfree = gen->nfree;
	wmeta->free_pages[0] = gen->free_pages[0];
	wmeta->nlists = gen->nlists;
	memcpy(wmeta->dir_pages, gen->dir_pages, sizeof(wmeta->dir_pages));
	wmeta->train_seconds = gen->train_seconds;
	wmeta->train_mse = gen->train_mse;
	wmeta->train_rows = gen->train_rows;
	wmeta->untrained_rows = 0;
	wmeta->autotrain_at = 0;
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);
}

/* The untrained-row count, recounted from the chain */
static void
set_untrained_rows(Relation index, int64 rows)
{
	Buffer		metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	GenericXLogState *state;

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0))->untrained_rows = rows;
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);
}

/*
 * Train an untrained index on the rows it holds and re-encode them into a new
 * chain.  The caller (insert.c's self-training) holds the index's training
 * lock (KdLockTraining), so no row arrives meanwhile and nobody else trains,
 * and the table's ShareUpdateExclusiveLock, so no VACUUM removes rows this
 * copies.  The insert counter is a hint (aborted inserts count too): when the
 * chain turns out to hold fewer live rows than training needs, the count is
 * corrected and nothing else changes.
 */
void
kd_train_in_place(Relation index, Relation heap)
{
	KdMetaPageData meta;
	KdBuildState bs;
	int64		need;
	uint32		generation;

	kd_read_meta(index, &meta);
	need = kd_autotrain_rows(index, meta.nbits);
	if (meta.trained || meta.untrained_rows < Max(need, meta.autotrain_at))
		return;					/* someone else trained it first */
	generation = meta.generation;
	kd_init_build_state(&bs, index, heap, &meta);
	bs.source = kd_index_rows;
	bs.from_blk = meta.data_head;
	bs.stop_blk = InvalidBlockNumber;
	kd_layout_for(&bs.old_layout, meta.quantizer, meta.m, meta.nbits, 0, 0);
	if (!kd_sample_train(&bs, &meta, need))
	{
		if (bs.seen >= need)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("kdindex \"%s\" sampled %lld rows within maintenance_work_mem, fewer than the %d its quantizer needs",
							RelationGetRelationName(index), (long long) bs.nsample,
							Max(1 << meta.nbits, bs.lists)),
					 errhint("Raise maintenance_work_mem.")));
		set_untrained_rows(index, (int64) bs.seen);
		return;
	}
	kd_encode_all(&bs, &meta);
	switch_meta(index, &meta, generation);
	/* the server's log, not the client: an INSERT has nothing to tell */
	ereport(LOG,
			(errmsg_plural("kdindex \"%s\" trained its quantizer on %lld row",
						   "kdindex \"%s\" trained its quantizer on %lld rows",
						   (unsigned long) meta.train_rows,
						   RelationGetRelationName(index), (long long) meta.train_rows)));
}

/* Where the first pass of a retrain stops in a chain: its tail then, and the tuples it held */
typedef struct ChainStop
{
	BlockNumber head;
	BlockNumber tail;
	int			ntup;
} ChainStop;

/*
 * Under the training lock: where every chain (the flat one, or each list's)
 * ends now.  Each insert cursor is reset, so that rows inserted from now on
 * go after these ends, to the tails.  meta gets the meta page.
 */
static ChainStop *
stop_chains(Relation index, KdMetaPageData *meta)
{
	Buffer		metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	ChainStop  *stops;

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	memcpy(meta, KdPageGetMeta(BufferGetPage(metabuf)), sizeof(*meta));
	stops = palloc(sizeof(ChainStop) * Max(meta->nlists, 1));
	for (int c = 0; c < Max(meta->nlists, 1); c++)
	{
		int			list = meta->nlists > 0 ? c : -1;
		Buffer		holder = list < 0 ? metabuf : kd_list_buffer(index, meta, list);
		GenericXLogState *state;
		Page		page;
		KdChainEnds ends;

		if (list >= 0)
			LockBuffer(holder, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, holder, 0);
		kd_chain_get(page, list, &ends);
		stops[c].head = ends.head;
		stops[c].tail = ends.tail;
		stops[c].ntup = 0;
		ends.cursor = InvalidBlockNumber;
		kd_chain_set(page, list, &ends);
		GenericXLogFinish(state);
		if (list >= 0)
			UnlockReleaseBuffer(holder);
		if (BlockNumberIsValid(ends.tail))
		{
			Buffer		buf = ReadBuffer(index, ends.tail);

			LockBuffer(buf, BUFFER_LOCK_SHARE);
			stops[c].ntup = KdPageGetOpaque(BufferGetPage(buf))->ntuples;
			UnlockReleaseBuffer(buf);
		}
	}
	UnlockReleaseBuffer(metabuf);
	return stops;
}

/* Encode the rows of a chain from (blkno, off) up to (stop, stop_off) (see kd_index_rows) */
static void
read_chain(KdBuildState *bs, BlockNumber blkno, int off, BlockNumber stop, int stop_off)
{
	if (!BlockNumberIsValid(blkno))
		return;
	bs->from_blk = blkno;
	bs->from_off = off;
	bs->stop_blk = stop;
	bs->stop_off = stop_off;
	kd_index_rows(bs, kd_encode_callback);
}

/*
 * Switch a trained index to new parameters (kdindex_train): write them, then
 * re-encode every row the index holds into a new chain, and point the meta
 * page at both in one WAL record.  x (n rows) is a sample the blob's
 * precision and the reported reconstruction error are measured on.
 *
 * Scans and inserts go on meanwhile.  The caller holds the table's
 * ShareUpdateExclusiveLock, so VACUUM does not move tuples under us; inserts
 * append to the old chain's tail once its insert cursor is reset, so the
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
				now;
	KdBuildState bs;
	ChainStop  *stops;
	BlockNumber *heads;
	char	   *blob;
	Size		size;
	BlockNumber blob_head;

	kd_read_meta(index, &meta);
	Assert(meta.trained);
	kd_init_build_state(&bs, index, heap, &meta);
	bs.dim = meta.dim;
	bs.source = kd_index_rows;
	/* the refinement the options ask for, on the residuals of the new codes */
	if (bs.refine > 0)
		kd_refine_train(trained, x, n, bs.refine);
	else
		kd_refine_drop(trained);
	blob = kd_quantizer_serialize(trained, x, n, &size);
	bs.quantizer = kd_quantizer_deserialize(blob, size);
	blob_head = kd_write_blob(index, blob, size);
	kd_encode_start(&bs, &meta, kd_row_code_size(bs.quantizer), bs.refine);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, 0);

	/* pass 1: the rows up to every chain's current end */
	KdLockTraining(index);
	stops = stop_chains(index, &meta);
	KdUnlockTraining(index);
	kd_layout(&bs.old_layout, &meta);
	for (int c = 0; c < Max(meta.nlists, 1); c++)
		read_chain(&bs, stops[c].head, 0, stops[c].tail, stops[c].ntup);

	/* pass 2: what was inserted meanwhile, then the switch */
	KdLockTraining(index);
	heads = palloc(sizeof(BlockNumber) * Max(meta.nlists, 1));
	kd_read_meta(index, &now);
	kd_read_list_heads(index, &now, heads);
	for (int c = 0; c < Max(meta.nlists, 1); c++)
	{
		if (BlockNumberIsValid(stops[c].head))
			read_chain(&bs, stops[c].tail, stops[c].ntup, InvalidBlockNumber, 0);
		else
			read_chain(&bs, heads[c], 0, InvalidBlockNumber, 0);
	}
	meta.blob_head = blob_head;
	meta.blob_size = size;
	kd_encode_finish(&bs, &meta);
	meta.code_size = kd_row_code_size(bs.quantizer);
	meta.refine = bs.refine;
	meta.version = KdLayoutVersionFor(bs.quantizer);
	meta.train_seconds = train_seconds;
	meta.train_mse = kd_quantizer_mse(bs.quantizer, x, n);
	meta.train_rows = n;
	switch_meta(index, &meta, meta.generation);
	KdUnlockTraining(index);

	kd_read_meta(index, result);
	kd_quantizer_free(bs.quantizer);
	pfree(blob);
	pfree(stops);
	pfree(heads);
	MemoryContextDelete(bs.tmpcxt);
}
