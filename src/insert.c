/*
 * insert.c — aminsert: encode one row with the current codebooks and append
 * its (TID, code) tuple.
 *
 * The row is encoded before the meta page is locked; it is then locked
 * exclusively for the append, which serialises appends (they are short) and
 * lets the generation be re-checked: if the codebooks changed in between, the
 * row is encoded again.  An untrained index trains itself in the insert that
 * gives it enough rows.  The tuple goes to a page vacuum found
 * room on, else to the chain's tail, else to a new page linked after it.
 */
#include "postgres.h"

#include "utils/memutils.h"

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

/* Put the tuple on page buf (locked) if it has room */
static bool
put_if_room(Relation index, Buffer buf, const KdLayout *layout, ItemPointer tid, const KdEncoded *enc)
{
	GenericXLogState *state;

	if (KdPageGetOpaque(BufferGetPage(buf))->ntuples >= layout->capacity)
		return false;
	state = GenericXLogStart(index);
	put_tuple(GenericXLogRegisterBuffer(state, buf, 0), layout, tid, enc);
	GenericXLogFinish(state);
	return true;
}

/*
 * Add the tuple to its IVF list: on the page vacuum left room on, else on the
 * tail, else on a new page linked after it.  The meta page is locked
 * exclusively, so appends do not race; the list's directory page is locked
 * after it and before any data page.
 */
static void
append_to_list(Relation index, Buffer metabuf, ItemPointer tid, const KdEncoded *enc)
{
	KdMetaPage meta = KdPageGetMeta(BufferGetPage(metabuf));
	KdLayout	layout;
	Buffer		dirbuf = kd_list_buffer(index, meta, enc->list);
	KdListEntry entry;
	GenericXLogState *state;
	KdListEntry *wentry;
	Buffer		buf = InvalidBuffer;
	Buffer		newbuf;
	Page		newpage;

	kd_layout(&layout, meta);
	LockBuffer(dirbuf, BUFFER_LOCK_EXCLUSIVE);
	entry = *KdListEntryOf(BufferGetPage(dirbuf), enc->list);
	if (BlockNumberIsValid(entry.free))
	{
		buf = ReadBuffer(index, entry.free);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		if (put_if_room(index, buf, &layout, tid, enc))
			goto done;
		/* refilled: forget it */
		UnlockReleaseBuffer(buf);
		buf = InvalidBuffer;
		state = GenericXLogStart(index);
		KdListEntryOf(GenericXLogRegisterBuffer(state, dirbuf, 0), enc->list)->free = InvalidBlockNumber;
		GenericXLogFinish(state);
	}
	if (BlockNumberIsValid(entry.tail))
	{
		buf = ReadBuffer(index, entry.tail);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		if (put_if_room(index, buf, &layout, tid, enc))
			goto done;
	}

	/* an empty list, or a full tail: a new page */
	newbuf = kd_new_buffer(index, MAIN_FORKNUM);
	state = GenericXLogStart(index);
	wentry = KdListEntryOf(GenericXLogRegisterBuffer(state, dirbuf, 0), enc->list);
	newpage = GenericXLogRegisterBuffer(state, newbuf, GENERIC_XLOG_FULL_IMAGE);
	kd_init_page(newpage, KDINDEX_PAGE_DATA);
	put_tuple(newpage, &layout, tid, enc);
	if (BufferIsValid(buf))
		KdPageGetOpaque(GenericXLogRegisterBuffer(state, buf, 0))->nextblkno = BufferGetBlockNumber(newbuf);
	else
		wentry->head = BufferGetBlockNumber(newbuf);
	wentry->tail = BufferGetBlockNumber(newbuf);
	GenericXLogFinish(state);
	UnlockReleaseBuffer(newbuf);
done:
	if (BufferIsValid(buf))
		UnlockReleaseBuffer(buf);
	UnlockReleaseBuffer(dirbuf);
}

/* Add the tuple to the data chain; the meta page is locked exclusively */
static void
append_tuple(Relation index, Buffer metabuf, ItemPointer tid, const KdEncoded *enc)
{
	Page		metapage = BufferGetPage(metabuf);
	KdMetaPage meta = KdPageGetMeta(metapage);
	KdLayout	layout;

	kd_layout(&layout, meta);
	for (;;)
	{
		GenericXLogState *state;
		BlockNumber blkno;
		Buffer		buf;
		Buffer		newbuf;
		Page		page;
		Page		newpage;
		KdMetaPage wmeta;
		bool		from_free_list = meta->nfree > 0;

		blkno = from_free_list ? meta->free_pages[meta->nfree - 1] : meta->data_tail;
		if (blkno == InvalidBlockNumber)
		{
			/* first tuple of an empty index */
			newbuf = kd_new_buffer(index, MAIN_FORKNUM);
			state = GenericXLogStart(index);
			wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
			newpage = GenericXLogRegisterBuffer(state, newbuf, GENERIC_XLOG_FULL_IMAGE);
			kd_init_page(newpage, KDINDEX_PAGE_DATA);
			put_tuple(newpage, &layout, tid, enc);
			wmeta->data_head = wmeta->data_tail = BufferGetBlockNumber(newbuf);
			GenericXLogFinish(state);
			UnlockReleaseBuffer(newbuf);
			return;
		}

		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		if (KdPageGetOpaque(BufferGetPage(buf))->ntuples < layout.capacity)
		{
			state = GenericXLogStart(index);
			page = GenericXLogRegisterBuffer(state, buf, 0);
			put_tuple(page, &layout, tid, enc);
			GenericXLogFinish(state);
			UnlockReleaseBuffer(buf);
			return;
		}

		if (from_free_list)
		{
			/* refilled meanwhile: forget it and try the next */
			UnlockReleaseBuffer(buf);
			state = GenericXLogStart(index);
			wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
			wmeta->nfree--;
			GenericXLogFinish(state);
			continue;
		}

		/* the tail is full: link a new page after it */
		newbuf = kd_new_buffer(index, MAIN_FORKNUM);
		state = GenericXLogStart(index);
		wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
		page = GenericXLogRegisterBuffer(state, buf, 0);
		newpage = GenericXLogRegisterBuffer(state, newbuf, GENERIC_XLOG_FULL_IMAGE);
		kd_init_page(newpage, KDINDEX_PAGE_DATA);
		put_tuple(newpage, &layout, tid, enc);
		KdPageGetOpaque(page)->nextblkno = BufferGetBlockNumber(newbuf);
		wmeta->data_tail = BufferGetBlockNumber(newbuf);
		GenericXLogFinish(state);
		UnlockReleaseBuffer(newbuf);
		UnlockReleaseBuffer(buf);
		return;
	}
}

/* Encode x for the index as meta describes it */
static KdEncoded *
encode_row(Relation index, const KdMetaPageData *meta, Datum value)
{
	KdMetric	metric = (KdMetric) meta->metric;
	Oid			typid = TupleDescAttr(RelationGetDescr(index), 0)->atttypid;
	KdEncoded  *enc = palloc0(offsetof(KdEncoded, code) + Max(meta->code_size, 1));
	float	   *x = kd_index_vector(value, typid, metric, meta->dim, &enc->dim);

	enc->generation = meta->generation;
	enc->trained = meta->trained;
	if (meta->trained)
	{
		KdQuantizer *q = kd_get_quantizer(index, meta);

		kd_quantizer_encode(q, x, 1, &enc->list, enc->code);
	}
	return enc;
}

/*
 * An untrained index counts its rows; true when it has enough to train.
 */
static bool
count_untrained_row(Relation index, Buffer metabuf)
{
	GenericXLogState *state = GenericXLogStart(index);
	KdMetaPage wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	bool		train;

	wmeta->untrained_rows++;
	train = wmeta->untrained_rows >= kd_autotrain_rows(index, wmeta->nbits);
	GenericXLogFinish(state);
	return train;
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

	/* NULLs and zero vectors under cosine are not indexed */
	if (isnull[0] || !kd_row_indexed(values[0], TupleDescAttr(RelationGetDescr(index), 0)->atttypid,
									 kd_index_metric(index)))
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return false;
	}

	KdLockInserts(index);
	kd_read_meta(index, &snapshot);
	enc = encode_row(index, &snapshot, values[0]);

	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	for (;;)
	{
		KdMetaPage meta = KdPageGetMeta(BufferGetPage(metabuf));

		if (meta->generation == enc->generation && meta->trained == enc->trained &&
			(meta->dim == 0 || meta->dim == enc->dim))
			break;
		/* codebooks changed while we encoded: encode again under the lock */
		memcpy(&snapshot, meta, sizeof(snapshot));
		enc = encode_row(index, &snapshot, values[0]);
	}
	if (KdPageGetMeta(BufferGetPage(metabuf))->dim == 0)
	{
		/* the first row of an index built on an empty table fixes its dimension */
		GenericXLogState *state = GenericXLogStart(index);
		KdMetaPage wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));

		wmeta->dim = enc->dim;
		GenericXLogFinish(state);
	}
	if (KdPageGetMeta(BufferGetPage(metabuf))->nlists > 0)
		append_to_list(index, metabuf, heap_tid, enc);
	else
		append_tuple(index, metabuf, heap_tid, enc);
	if (!enc->trained)
		train = count_untrained_row(index, metabuf);
	UnlockReleaseBuffer(metabuf);
	KdUnlockInserts(index);

	if (train)
	{
		/* this insert trains the index: a few seconds, cancellable */
		KdLockTraining(index);
		kd_train_in_place(index, heap);
		KdUnlockTraining(index);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return false;
}
