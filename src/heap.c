/*
 * heap.c — reading an index's value back from the table by TID.
 *
 * The re-rank needs the exact vector of each candidate and an in-place
 * retrain needs the vectors of the rows an index already holds.  An index on
 * a plain column of a heap table reads the attribute straight from the
 * buffer-pinned tuple (heap_hot_search_buffer, heap_getattr): no slot, no
 * expression context, no FormIndexDatum (which measured under 0.2 us a row:
 * reading the page and the value from memory, and detoasting it, are the
 * cost).  An expression index, or a table of another access method, fetches
 * the tuple through the table AM and recomputes the indexed value with
 * FormIndexDatum.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "storage/bufmgr.h"

#include "kdindex.h"

struct KdHeapFetch
{
	Relation	heap;
	AttrNumber	attnum;			/* the plain heap column, or 0 */
	Buffer		buf;			/* pinned block of the plain path */

	/* the table AM path (expression indexes, other table AMs) */
	struct IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	EState	   *estate;
	IndexInfo  *indexInfo;
};

KdHeapFetch *
kd_heap_fetch_begin(Relation heap, Relation index)
{
	KdHeapFetch *hf = palloc0(sizeof(KdHeapFetch));

	hf->heap = heap;
	hf->buf = InvalidBuffer;
	hf->indexInfo = BuildIndexInfo(index);
	if (heap->rd_tableam == GetHeapamTableAmRoutine() &&
		hf->indexInfo->ii_Expressions == NIL)
		hf->attnum = hf->indexInfo->ii_IndexAttrNumbers[0];
	if (hf->attnum == 0)
	{
		hf->fetch = table_index_fetch_begin(heap);
		hf->slot = table_slot_create(heap, NULL);
		hf->estate = CreateExecutorState();
	}
	return hf;
}

/*
 * The plain path: heapam_index_fetch_tuple's steps without the slot.  The
 * caller's TID is a HOT chain's root (the one the index holds):
 * heap_hot_search_buffer overwrites its copy with the member it found.  The
 * tuple stays valid while its buffer is pinned: pruning and defragmenting a
 * page need a cleanup lock, which our pin blocks.
 */
static bool
fetch_plain(KdHeapFetch *hf, ItemPointer tid, Snapshot snapshot, Datum *value)
{
	ItemPointerData hot = *tid;
	HeapTupleData tuple;
	Buffer		prev = hf->buf;
	bool		all_dead;
	bool		found;
	bool		isnull;

	hf->buf = ReleaseAndReadBuffer(hf->buf, hf->heap, ItemPointerGetBlockNumber(tid));
	if (hf->buf != prev)
		heap_page_prune_opt(hf->heap, hf->buf);
	LockBuffer(hf->buf, BUFFER_LOCK_SHARE);
	found = heap_hot_search_buffer(&hot, hf->heap, hf->buf, snapshot, &tuple, &all_dead, true);
	LockBuffer(hf->buf, BUFFER_LOCK_UNLOCK);
	if (!found)
		return false;
	*value = heap_getattr(&tuple, hf->attnum, RelationGetDescr(hf->heap), &isnull);
	return !isnull;
}

/*
 * The indexed value of the row at tid visible to snapshot; false when there
 * is none or it is NULL.  *value (possibly toasted, possibly pointing into a
 * pinned buffer) stays valid until the next call.
 */
bool
kd_heap_fetch_value(KdHeapFetch *hf, ItemPointer tid, Snapshot snapshot, Datum *value)
{
	bool		call_again = false;
	bool		all_dead = false;
	ItemPointerData hot = *tid;
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

	if (hf->attnum != 0)
		return fetch_plain(hf, tid, snapshot, value);

	ExecClearTuple(hf->slot);
	ResetPerTupleExprContext(hf->estate);
	/* as in fetch_plain, the fetch overwrites the TID with the chain member */
	if (!table_index_fetch_tuple(hf->fetch, &hot, snapshot, hf->slot, &call_again, &all_dead))
		return false;
	GetPerTupleExprContext(hf->estate)->ecxt_scantuple = hf->slot;
	FormIndexDatum(hf->indexInfo, hf->slot, hf->estate, values, isnull);
	*value = values[0];
	return !isnull[0];
}

/*
 * Ask the kernel for the table blocks of tids (sorted) that are not in
 * shared buffers yet, ahead of reading them one by one.
 */
void
kd_heap_prefetch(KdHeapFetch *hf, const ItemPointerData *tids, int n)
{
#ifdef USE_PREFETCH
	BlockNumber last = InvalidBlockNumber;

	for (int i = 0; i < n; i++)
	{
		BlockNumber blk = ItemPointerGetBlockNumber(&tids[i]);

		if (blk != last)
			PrefetchBuffer(hf->heap, MAIN_FORKNUM, blk);
		last = blk;
	}
#endif
}

void
kd_heap_fetch_end(KdHeapFetch *hf)
{
	if (BufferIsValid(hf->buf))
		ReleaseBuffer(hf->buf);
	if (hf->slot)
	{
		ExecClearTuple(hf->slot);
		table_index_fetch_end(hf->fetch);
		ExecDropSingleTupleTableSlot(hf->slot);
		FreeExecutorState(hf->estate);
	}
	pfree(hf);
}
