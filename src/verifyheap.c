/*
 * verifyheap.c — kdindex_verify's heapallindexed: the heap TIDs the live
 * chains hold (gathered by verify.c as it walks them, eight bytes each within
 * maintenance_work_mem), then every row the table's own index build scan
 * would index looked up among them, as amcheck's bt_index_check does.
 */
#include "postgres.h"

#include "access/tableam.h"
#include "catalog/index.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "kdindex.h"
#include "vector.h"
#include "verify.h"

/* The TIDs are kept as block << 16 | offset, which sorts as TIDs do */
static inline uint64
tid_key(BlockNumber blkno, OffsetNumber off)
{
	return ((uint64) blkno << 16) | off;
}

void
kd_verify_tids_init(KdVerifyTids *t, Relation index)
{
	t->index = index;
	t->limit = Max((int64) maintenance_work_mem * 1024 / (int64) sizeof(uint64), 1024);
	t->max = 1024;
	t->n = 0;
	t->tids = palloc(sizeof(uint64) * t->max);
}

/* Remember a heap TID, within maintenance_work_mem */
void
kd_verify_tids_add(KdVerifyTids *t, ItemPointer tid)
{
	if (t->n == t->max)
	{
		if (t->max >= t->limit)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("index \"%s\" holds more rows than heapallindexed can keep in maintenance_work_mem",
							RelationGetRelationName(t->index)),
					 errdetail("Each row takes 8 bytes."),
					 errhint("Raise maintenance_work_mem.")));
		t->max = Min(t->max * 2, t->limit);
		t->tids = repalloc_huge(t->tids, sizeof(uint64) * t->max);
	}
	t->tids[t->n++] = tid_key(ItemPointerGetBlockNumberNoCheck(tid), ItemPointerGetOffsetNumberNoCheck(tid));
}

static int
cmp_tid(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : x > y;
}

typedef struct HeapCheck
{
	KdVerifyTids *tids;
	Relation	heap;
} HeapCheck;

static void
heap_row_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				  bool tupleIsAlive, void *state)
{
	HeapCheck  *hc = (HeapCheck *) state;
	uint64		key = tid_key(ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid));

	if (isnull[0] || !kd_row_indexed(values[0], TupleDescAttr(RelationGetDescr(index), 0)->atttypid,
									 kd_index_metric(index)))
		return;					/* NULLs, zero vectors under cosine are not indexed */
	if (bsearch(&key, hc->tids->tids, hc->tids->n, sizeof(uint64), cmp_tid) == NULL)
		kd_corrupt(index, "row (%u,%u) of table \"%s\" is not in the index",
				   ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid),
				   RelationGetRelationName(hc->heap));
}

/*
 * Every TID once (when check_duplicates: no row moved between chains while
 * they were walked), and every row snapshot sees in the index (the table's own
 * index build scan decides which rows an index holds: predicate, expressions,
 * HOT chains).
 */
void
kd_verify_heap(KdVerifyTids *t, Relation heap, Snapshot snapshot, bool check_duplicates)
{
	IndexInfo  *indexInfo = BuildIndexInfo(t->index);
	HeapCheck	hc = {t, heap};
	KdSecurityState sec;
	TableScanDesc scan;

	qsort(t->tids, t->n, sizeof(uint64), cmp_tid);
	for (int64 i = 1; check_duplicates && i < t->n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (t->tids[i] == t->tids[i - 1])
			kd_corrupt(t->index, "row (%u,%u) of table \"%s\" is indexed twice",
					   (BlockNumber) (t->tids[i] >> 16), (OffsetNumber) (t->tids[i] & 0xFFFF),
					   RelationGetRelationName(heap));
	}

	/* rows visible to the snapshot, not SnapshotAny's recently dead ones */
	indexInfo->ii_Concurrent = true;
	kd_become_owner(heap, &sec);
	scan = table_beginscan_strat(heap, snapshot, 0, NULL, true, true);
	table_index_build_scan(heap, t->index, indexInfo, true, false,
						   heap_row_callback, &hc, scan);
	kd_restore_user(&sec);
}
