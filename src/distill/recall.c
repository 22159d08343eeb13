/*
 * recall.c — kdindex_recall(idx, teacher, k): recall@k of an index against a
 * teacher table (kdindex_teacher's output), codes only and re-ranked at the
 * session's kdindex.rerank.
 *
 * Each teacher query runs as ORDER BY <indexed expression> <operator> query
 * LIMIT k through the planner, which must pick the index, so the answer is
 * what a user's query gets.  The caller needs SELECT on the table and on the
 * teacher table; the teacher is read as the caller, the nearest-neighbour
 * queries, which evaluate the index's expression, run as the table's owner
 * in a security-restricted operation (a superuser measuring someone's index
 * must not run their functions with its rights).  Every query is built
 * from catalog entries, quoted and schema-qualified, under a search_path
 * holding nothing a user created.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/plannodes.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/ruleutils.h"
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

/* Does the plan scan index indexoid (under a Limit, a Result...)? */
static bool
plan_uses_index(Plan *plan, Oid indexoid)
{
	if (plan == NULL)
		return false;
	if (IsA(plan, IndexScan) && ((IndexScan *) plan)->indexid == indexoid)
		return true;
	return plan_uses_index(plan->lefttree, indexoid) || plan_uses_index(plan->righttree, indexoid);
}

/* The opclass's ordering operator as OPERATOR(schema.name) */
static char *
ordering_operator(Relation index)
{
	Oid			opno = get_opfamily_member(index->rd_opfamily[0], index->rd_opcintype[0],
										   index->rd_opcintype[0], KDINDEX_DISTANCE_STRATEGY);
	HeapTuple	tup;
	Form_pg_operator form;
	char	   *result;

	if (!OidIsValid(opno))
		elog(ERROR, "kdindex_recall: the opclass of \"%s\" has no ordering operator",
			 RelationGetRelationName(index));
	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator %u", opno);
	form = (Form_pg_operator) GETSTRUCT(tup);
	result = psprintf("OPERATOR(%s.%s)", quote_identifier(get_namespace_name(form->oprnamespace)),
					  NameStr(form->oprname));
	ReleaseSysCache(tup);
	return result;
}

static void
set_guc(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
							 false);
}

/* Run the query's nearest-neighbour search; how many of its truth it finds */
static int64
hits(SPIPlanPtr plan, const KdRecallQuery *q)
{
	Datum		args[2];
	char		nulls[2] = {' ', q->has_source ? ' ' : 'n'};
	int64		found = 0;

	args[0] = q->query;
	args[1] = PointerGetDatum(&q->source);
	if (SPI_execute_plan(plan, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "kdindex_recall: nearest-neighbour query failed");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		Datum		tid = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull && bsearch(DatumGetPointer(tid), q->truth, q->ntruth, sizeof(ItemPointerData),
							   tid_cmp) != NULL)
			found++;
	}
	SPI_freetuptable(SPI_tuptable);
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
	char	   *sql;
	Oid			argtypes[2];
	SPIPlanPtr	plan;
	CachedPlan *cplan;
	bool		uses_index;
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
	set_guc("enable_seqscan", "off");
	set_guc("enable_indexscan", "on");
	/* a query sampled from the table does not count its own row */
	sql = psprintf("SELECT ctid FROM %s WHERE ctid IS DISTINCT FROM $2 ORDER BY (%s) %s $1 LIMIT %d",
				   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(heap)),
											  RelationGetRelationName(heap)),
				   pg_get_indexdef_columns(indexoid, false), ordering_operator(index), k);
	argtypes[0] = index->rd_opcintype[0];
	argtypes[1] = TIDOID;
	plan = SPI_prepare(sql, 2, argtypes);
	if (plan == NULL)
		elog(ERROR, "kdindex_recall: could not prepare \"%s\"", sql);
	cplan = SPI_plan_get_cached_plan(plan);
	uses_index = cplan != NULL && list_length(cplan->stmt_list) == 1 &&
		plan_uses_index(linitial_node(PlannedStmt, cplan->stmt_list)->planTree, indexoid);
	if (cplan != NULL)
		ReleaseCachedPlan(cplan, NULL);
	if (!uses_index)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the planner does not use \"%s\" for its nearest-neighbour queries",
						RelationGetRelationName(index)),
				 errdetail("The query was: %s", sql)));

	for (int qi = 0; qi < nq; qi++)
	{
		CHECK_FOR_INTERRUPTS();
		truth += qs[qi].ntruth;
		set_guc("kdindex.rerank", "0");
		codes_hits += hits(plan, &qs[qi]);
		set_guc("kdindex.rerank", depth);
		rerank_hits += hits(plan, &qs[qi]);
	}
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
