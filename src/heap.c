/*
 * heap.c — reading an index's value back from the table by TID.
 *
 * The re-rank needs the exact vector of each candidate and an in-place
 * retrain needs the vectors of the rows an index already holds; both fetch the
 * heap tuple through the table AM and recompute the indexed value with
 * FormIndexDatum, so expression indexes work the same way as plain ones.
 * (Reading a plain column straight from the pinned tuple was measured: it
 * saved nothing, the page access and the detoast are the cost.)
 */
#include "postgres.h"

#include "access/tableam.h"
#include "catalog/index.h"
#include "executor/executor.h"

#include "kdindex.h"

struct KdHeapFetch
{
	Relation	heap;
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
	hf->fetch = table_index_fetch_begin(heap);
	hf->slot = table_slot_create(heap, NULL);
	hf->estate = CreateExecutorState();
	hf->indexInfo = BuildIndexInfo(index);
	return hf;
}

/*
 * The indexed value of the row at tid visible to snapshot; false when there
 * is none or it is NULL.  *value (possibly toasted) stays valid until the
 * next call.
 */
bool
kd_heap_fetch_value(KdHeapFetch *hf, ItemPointer tid, Snapshot snapshot, Datum *value)
{
	bool		call_again = false;
	bool		all_dead = false;
	ItemPointerData hot = *tid;
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

	ExecClearTuple(hf->slot);
	ResetPerTupleExprContext(hf->estate);
	/*
	 * The fetch follows a HOT chain and overwrites the TID it is given with
	 * the member it found; the caller's TID is the chain's root, the one the
	 * index holds and the executor must be handed back.
	 */
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
	ExecClearTuple(hf->slot);
	table_index_fetch_end(hf->fetch);
	ExecDropSingleTupleTableSlot(hf->slot);
	FreeExecutorState(hf->estate);
	pfree(hf);
}
