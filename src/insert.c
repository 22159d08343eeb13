/*
 * insert.c — aminsert: encode one row with the current codebooks and append
 * its (TID, code) tuple.
 *
 * The row is encoded before the meta page is locked; it is then locked
 * exclusively for the append, which serialises appends (they are short) and
 * lets the generation be re-checked: if the codebooks changed in between, the
 * row is encoded again.  An untrained index trains itself in the insert that
 * gives it enough rows (in a subtransaction: its failure is a WARNING).  The
 * tuple goes to the first page with room from the chain's insert cursor on,
 * else to a new page linked after the tail.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "kdindex.h"
#include "vector.h"

typedef struct KdEncoded
{
	uint32		generation;
	bool		trained;
	int			dim;
	int32		list;			/* IVF list of the row */
	uint8		code[FLEXIBLE_ARRAY_MEMBER];
} KdEncoded;

static void
put_tuple(Page page, const KdLayout *layout, ItemPointer tid, const KdEncoded *enc)
{
	int			n = KdPageGetOpaque(page)->ntuples;

	kd_tuple_set(page, layout, n, tid, enc->code);
	kd_page_set_ntuples(page, layout, n + 1);
}

/*
 * Put the tuple on the first page with room from its chain's insert cursor
 * on (the tail when the cursor is invalid): the pages after the cursor are
 * tried in chain order, so the room VACUUM leaves anywhere is refilled before
 * the chain grows (as pgvector's IVFFlat does).  The chain's ends and cursor
 * are on holder (the meta page, list < 0, or the list's directory page),
 * locked exclusively by the caller, and change in the same WAL record as the
 * page.  A new page is linked after the tail when nothing has room.
 */
static void
put_in_chain(Relation index, Buffer holder, int list, const KdLayout *layout,
			 ItemPointer tid, const KdEncoded *enc)
{
	KdChainEnds ends;
	BlockNumber blkno;
	Buffer		buf = InvalidBuffer;
	GenericXLogState *state;
	Buffer		newbuf;
	Page		newpage;

	kd_chain_get(BufferGetPage(holder), list, &ends);
	blkno = BlockNumberIsValid(ends.cursor) ? ends.cursor : ends.tail;
	while (BlockNumberIsValid(blkno))
	{
		BlockNumber next;

		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		if (KdPageGetOpaque(BufferGetPage(buf))->ntuples < layout->capacity)
		{
			state = GenericXLogStart(index);
			if (blkno != ends.cursor && BlockNumberIsValid(ends.cursor))
			{
				/* the pages before this one are full: start here next time */
				ends.cursor = blkno == ends.tail ? InvalidBlockNumber : blkno;
				kd_chain_set(GenericXLogRegisterBuffer(state, holder, 0), list, &ends);
			}
			put_tuple(GenericXLogRegisterBuffer(state, buf, 0), layout, tid, enc);
			GenericXLogFinish(state);
			UnlockReleaseBuffer(buf);
			return;
		}
		next = KdPageGetOpaque(BufferGetPage(buf))->nextblkno;
		if (!BlockNumberIsValid(next))
			break;				/* the tail, full */
		UnlockReleaseBuffer(buf);
		buf = InvalidBuffer;
		blkno = next;
	}

	/* an empty chain, or a full tail: a new page */
	newbuf = kd_new_buffer(index, MAIN_FORKNUM);
	state = GenericXLogStart(index);
	newpage = GenericXLogRegisterBuffer(state, newbuf, GENERIC_XLOG_FULL_IMAGE);
	kd_init_page(newpage, KDINDEX_PAGE_DATA);
	put_tuple(newpage, layout, tid, enc);
	if (BufferIsValid(buf))
		KdPageGetOpaque(GenericXLogRegisterBuffer(state, buf, 0))->nextblkno = BufferGetBlockNumber(newbuf);
	else
		ends.head = BufferGetBlockNumber(newbuf);
	ends.tail = BufferGetBlockNumber(newbuf);
	ends.cursor = InvalidBlockNumber;
	kd_chain_set(GenericXLogRegisterBuffer(state, holder, 0), list, &ends);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(newbuf);
	if (BufferIsValid(buf))
		UnlockReleaseBuffer(buf);
}

/*
 * Add the tuple to its chain: the flat one or its IVF list's.  The meta page
 * is locked exclusively, so appends do not race; a directory page is locked
 * after it and before any data page.
 */
static void
append_tuple(Relation index, Buffer metabuf, ItemPointer tid, const KdEncoded *enc)
{
	KdMetaPage	meta = KdPageGetMeta(BufferGetPage(metabuf));
	KdLayout	layout;
	Buffer		dirbuf;

	kd_layout(&layout, meta);
	if (meta->nlists == 0)
	{
		put_in_chain(index, metabuf, -1, &layout, tid, enc);
		return;
	}
	dirbuf = kd_list_buffer(index, meta, enc->list);
	LockBuffer(dirbuf, BUFFER_LOCK_EXCLUSIVE);
	put_in_chain(index, dirbuf, enc->list, &layout, tid, enc);
	UnlockReleaseBuffer(dirbuf);
}

/* Encode x for the index as meta describes it */
static KdEncoded *
encode_row(Relation index, const KdMetaPageData *meta, const float *x, int dim)
{
	KdEncoded  *enc = palloc0(offsetof(KdEncoded, code) + Max(meta->code_size, 1));

	kd_check_dim(meta->dim, dim);
	enc->dim = dim;
	enc->generation = meta->generation;
	enc->trained = meta->trained;
	if (meta->trained)
	{
		KdQuantizer *q = kd_get_quantizer(index, meta);

		kd_encode_rows(q, x, 1, &enc->list, enc->code);
	}
	return enc;
}

/*
 * An untrained index counts its rows; true when it has enough to train (or,
 * after a self-training failed, twice as many as it had then).  Aborted
 * inserts count too: the training recounts the live rows first.
 */
static bool
count_untrained_row(Relation index, Buffer metabuf)
{
	GenericXLogState *state = GenericXLogStart(index);
	KdMetaPage	wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	bool		train;

	wmeta->untrained_rows++;
	train = wmeta->untrained_rows >= Max(kd_autotrain_rows(index, wmeta->nbits), wmeta->autotrain_at);
	GenericXLogFinish(state);
	return train;
}

/* A failed self-training is tried again once the index holds twice the rows */
static int64
back_off(Relation index)
{
	Buffer		metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	GenericXLogState *state;
	KdMetaPage	wmeta;
	int64		at;

	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	at = wmeta->autotrain_at = 2 * Max(wmeta->untrained_rows, 1);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);
	return at;
}

/*
 * The insert that gives an untrained index enough rows trains it, as the
 * table's owner in a security-restricted operation (index expressions run
 * with the owner's rights, as in REINDEX), inside a subtransaction: training
 * is the index's business, so its failure must not fail the insert.  An error
 * becomes a WARNING and the index stays untrained until it has twice the rows;
 * a cancel still cancels the statement.  Training holds the table's
 * ShareUpdateExclusiveLock, as kdindex_train does: a VACUUM running meanwhile
 * would remove rows the new chain copies, and publish pages of the old one.
 * When VACUUM (or another training) holds it, a later insert trains.
 */
static void
self_train(Relation index, Relation heap)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (ConditionalLockRelation(heap, ShareUpdateExclusiveLock))
		{
			KdSecurityState sec;

			kd_become_owner(heap, &sec);
			KdLockTraining(index);
			kd_train_in_place(index, heap);
			KdUnlockTraining(index);
			kd_restore_user(&sec);
			UnlockRelation(heap, ShareUpdateExclusiveLock);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int64		retry_at;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		retry_at = back_off(index);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("kdindex \"%s\" could not train itself: %s",
						RelationGetRelationName(index), edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("The index stays untrained (exact) and tries again at %lld rows; fix the cause and REINDEX to train it now.",
						 (long long) retry_at)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

static void
first_row_context(void *arg)
{
	errcontext("first row of kdindex \"%s\", created on an empty table: "
			   "ALTER INDEX ... SET its options and REINDEX it, or drop it", (const char *) arg);
}

/*
 * The first row of an index built on an empty table fixes its dimension:
 * options that cannot code it are refused here, before anything is written.
 */
static void
fix_dimension(Relation index, Buffer metabuf, int dim)
{
	KdMetaPage	meta = KdPageGetMeta(BufferGetPage(metabuf));
	ErrorContextCallback context;
	GenericXLogState *state;

	context.callback = first_row_context;
	context.arg = RelationGetRelationName(index);
	context.previous = error_context_stack;
	error_context_stack = &context;
	kd_check_m((KdQuantizerKind) meta->quantizer, dim, kd_choose_m(dim, meta->m), meta->nbits);
	error_context_stack = context.previous;

	state = GenericXLogStart(index);
	KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0))->dim = dim;
	GenericXLogFinish(state);
}

bool
kd_insert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
		  Relation heap, IndexUniqueCheck checkUnique, bool indexUnchanged,
		  IndexInfo *indexInfo)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex insert",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	KdMetaPageData snapshot;
	KdEncoded  *enc;
	Buffer		metabuf;
	bool		train = false;
	float	   *x;
	int			dim;

	/* NULLs and zero vectors under cosine are not indexed */
	x = isnull[0] ? NULL :
		kd_row_vector(values[0], TupleDescAttr(RelationGetDescr(index), 0)->atttypid,
					  kd_index_metric(index), 0, &dim);
	if (x == NULL)
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return false;
	}

	KdLockInserts(index);
	kd_read_meta(index, &snapshot);
	enc = encode_row(index, &snapshot, x, dim);

	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	for (;;)
	{
		KdMetaPage	meta = KdPageGetMeta(BufferGetPage(metabuf));

		if (meta->generation == enc->generation && meta->trained == enc->trained &&
			(meta->dim == 0 || meta->dim == enc->dim))
			break;
		/* codebooks changed while we encoded: encode again under the lock */
		memcpy(&snapshot, meta, sizeof(snapshot));
		enc = encode_row(index, &snapshot, x, dim);
	}
	if (KdPageGetMeta(BufferGetPage(metabuf))->dim == 0)
		fix_dimension(index, metabuf, enc->dim);
	append_tuple(index, metabuf, heap_tid, enc);
	if (!enc->trained)
		train = count_untrained_row(index, metabuf);
	UnlockReleaseBuffer(metabuf);
	KdUnlockInserts(index);

	if (train)
		self_train(index, heap);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return false;
}
