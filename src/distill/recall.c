/*
 * recall.c — kdindex_recall(idx, teacher, k): recall@k of an index against a
 * teacher table (kdindex_teacher's output), codes only and re-ranked at the
 * session's kdindex.rerank.
 *
 * Each teacher query is an ordered scan of this index itself (not whichever
 * index the planner would pick: a column may carry several kdindex indexes to
 * compare), fetching the first k visible rows as ORDER BY ... LIMIT k does.
 * The caller needs SELECT on the table and on the teacher table; the teacher
 * is read as the caller, under a search_path holding nothing a user created;
 * the scans, whose re-rank evaluates the index's expression, run as the
 * table's owner in a security-restricted operation (a superuser measuring
 * someone's index must not run their functions with its rights).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "distill/distill.h"
#include "kdindex.h"
#include "vector.h"

PG_FUNCTION_INFO_V1(kdindex_recall);

/* One teacher row: the query, its own row, its first k neighbours, sorted */
typedef struct KdRecallQuery
{
	Datum		query;
	bool		has_source;
	ItemPointerData source;
	int			ntruth;
	ItemPointerData *truth;
} KdRecallQuery;

static int
tid_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
}

/*
 * The teacher's rows, read as the caller; *longest is the longest list.
 * Lists are cut to k, their NULLs left out.
 */
static KdRecallQuery *
read_teacher(Oid teacher, Oid vectype, int k, int *nq, int *longest)
{
	char	   *sql = psprintf("SELECT query, source, tids FROM %s ORDER BY query_id",
							   quote_qualified_identifier(get_namespace_name(get_rel_namespace(teacher)),
														  get_rel_name(teacher)));
	MemoryContext cxt = CurrentMemoryContext;
	KdRecallQuery *qs;
	int16		typlen;
	bool		typbyval;

	get_typlenbyval(vectype, &typlen, &typbyval);
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "kdindex_recall: could not read \"%s\"", get_rel_name(teacher));
	*nq = (int) SPI_processed;
	*longest = 0;
	if (*nq == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("teacher table \"%s\" is empty", get_rel_name(teacher))));
	qs = MemoryContextAllocZero(cxt, sizeof(KdRecallQuery) * *nq);
	for (int qi = 0; qi < *nq; qi++)
	{
		HeapTuple	tup = SPI_tuptable->vals[qi];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		KdRecallQuery *q = &qs[qi];
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, 1, &isnull);
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("teacher table \"%s\" has a NULL query", get_rel_name(teacher))));
		q->query = datumCopy(d, typbyval, typlen);
		d = SPI_getbinval(tup, desc, 2, &isnull);
		q->has_source = !isnull;
		if (!isnull)
			q->source = *(ItemPointer) DatumGetPointer(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		kd_teacher_tids(d, isnull, teacher, &elems, &nulls, &n);
		*longest = Max(*longest, n);
		q->truth = MemoryContextAlloc(cxt, sizeof(ItemPointerData) * Max(1, Min(n, k)));
		for (int r = 0; r < n && r < k; r++)
			if (!nulls[r])
				q->truth[q->ntruth++] = *(ItemPointer) DatumGetPointer(elems[r]);
		qsort(q->truth, q->ntruth, sizeof(ItemPointerData), tid_cmp);
	}
	/* the datums were copied into the caller's context: the rows can go */
	SPI_freetuptable(SPI_tuptable);
	return qs;
}

static void
set_guc(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
							 false);
}

/*
 * The query's first k visible rows through the index (its own row left out);
 * how many of its truth they hold
 */
static int64
hits(Relation heap, Relation index, Snapshot snapshot, TupleTableSlot *slot,
	 const KdRecallQuery *q, int k)
{
	IndexScanDesc scan = index_beginscan(heap, index, snapshot, 0, 1);
	ScanKeyData key;
	int64		found = 0;
	int			n = 0;

	ScanKeyEntryInitialize(&key, SK_ORDER_BY, 1, KDINDEX_DISTANCE_STRATEGY,
						   index->rd_opcintype[0], InvalidOid, InvalidOid, q->query);
	index_rescan(scan, NULL, 0, &key, 1);
	while (n < k && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		if (q->has_source && ItemPointerEquals(&slot->tts_tid, (ItemPointer) &q->source))
			continue;
		n++;
		if (bsearch(&slot->tts_tid, q->truth, q->ntruth, sizeof(ItemPointerData), tid_cmp) != NULL)
			found++;
	}
	index_endscan(scan);
	return found;
}

Datum
kdindex_recall(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	Oid			teacher = PG_GETARG_OID(1);
	int			k = PG_GETARG_INT32(2);
	char	   *depth = psprintf("%d", kdindex_rerank);
	Oid			heapoid;
	Oid			vectype;
	Relation	heap;
	Relation	index;
	KdRecallQuery *qs;
	int			nq;
	int			longest;
	int			nestlevel;
	KdSecurityState sec;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	int64		truth = 0,
				codes_hits = 0,
				rerank_hits = 0;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "kdindex_recall: return type must be a row type");
	heapoid = kd_index_table_checked(indexoid, KD_PRIV_SELECT);
	if (k < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be positive, not %d", k)));
	vectype = kd_vector_base_type(get_atttype(indexoid, 1));
	kd_check_teacher_table(teacher, vectype);
	index = kd_lock_index(indexoid, heapoid, AccessShareLock, AccessShareLock, &heap);

	/*
	 * The queries run as the owner, who sees every row (unless the policies
	 * are forced on the owner too): they would tell the caller about rows its
	 * own policies hide.
	 */
	if (check_enable_rls(heapoid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("kdindex_recall is not available on \"%s\": row-level security applies to you",
						RelationGetRelationName(heap))));
	/* a Citus table's index here is empty: measure through the coordinator */
	if (kd_citus_table(heapoid))
	{
		index_close(index, NoLock);
		table_close(heap, NoLock);
		return kd_citus_call(fcinfo, "kdindex_citus_recall");
	}

	SPI_connect();
	nestlevel = kd_pin_search_path();
	qs = read_teacher(teacher, vectype, k, &nq, &longest);
	if (k > longest)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k = %d exceeds the teacher's lists, which hold at most %d neighbours",
						k, longest),
				 errhint("Ask for recall at k <= %d, or make a teacher with a larger k.", longest)));

	kd_become_owner(heap, &sec);
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	slot = table_slot_create(heap, NULL);
	for (int qi = 0; qi < nq; qi++)
	{
		CHECK_FOR_INTERRUPTS();
		truth += qs[qi].ntruth;
		set_guc("kdindex.rerank", "0");
		codes_hits += hits(heap, index, snapshot, slot, &qs[qi], k);
		set_guc("kdindex.rerank", depth);
		rerank_hits += hits(heap, index, snapshot, slot, &qs[qi], k);
	}
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	kd_restore_user(&sec);
	kd_unpin_search_path(nestlevel);
	SPI_finish();

	values[0] = Int32GetDatum(nq);
	nulls[1] = nulls[2] = truth == 0;
	values[1] = Float8GetDatum(truth > 0 ? (double) codes_hits / truth : 0);
	values[2] = Float8GetDatum(truth > 0 ? (double) rerank_hits / truth : 0);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
