/*
 * teacher.c — kdindex_teacher: each query's top-K neighbours from a
 * high-precision teacher, written to a table for distillation and for
 * measuring an index (kdindex_recall).
 *
 * teacher => 'exact' reads the table once per chunk of queries, in blocks of
 * rows, and scores each block against the chunk with one sgemm, keeping a
 * bounded max-heap per query; the chunk is sized so that queries, heaps and
 * the score block fit in maintenance_work_mem.  teacher => 'index' runs one
 * ORDER BY ... LIMIT per query through SPI, so whatever index the planner
 * picks on the column is the teacher.
 *
 * Queries are a table's rows (queries => NULL: a deterministic sample of
 * the table itself, each query's own row left out of its list) or the rows
 * of a query table with an integer id and a vector column of the same name,
 * followed by table_queries sampled rows of the table (distillation from a
 * few thousand real queries alone learns their neighbourhoods and little
 * that carries over to other queries; the table's rows spread it).
 * The result has one row per query: query_id, query, source (the row a
 * sampled query came from), and the ranked neighbours as arrays of heap
 * TIDs, primary keys (when the table has a single integer one) and distances
 * — arrays, so the query vector is stored once, not k times.
 *
 * Everything runs as the caller, who needs SELECT on the table and the query
 * table and the right to create the result table; the table must have TIDs
 * (a table or materialized view, not a view).  Queries are built quoted and
 * schema-qualified, under a search_path that holds nothing a user created.
 */
#include "postgres.h"

#include <cblas.h>
#include <math.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "distance.h"
#include "distill/distill.h"
#include "kdindex.h"
#include "vector.h"

PG_FUNCTION_INFO_V1(kdindex_teacher);

/* rows scored per sgemm */
#define KD_TEACHER_BLOCK 1024

typedef struct KdNeighbour
{
	float		dist;
	ItemPointerData tid;
	int64		id;
} KdNeighbour;

typedef struct KdTeacher
{
	Oid			relid;
	char	   *col;			/* quoted column name */
	char	   *pk;				/* quoted single integer primary key, or NULL */
	char	   *op;				/* OPERATOR(schema.op) of the metric */
	Oid			typid;			/* real[] or pgvector's vector (never a domain) */
	KdMetric	metric;
	int			k;
	int			dim;
	bool		self;			/* some queries are rows of the table */

	int			nq;
	float	   *queries;		/* nq x dim */
	float	   *qnorms;
	ItemPointerData *qtids;		/* the rows queries came from (invalid: a query table's) */
	Datum	   *qvalues;		/* the query values as given, for the result */

	KdNeighbour *heaps;			/* nq x k, max-heaps on dist */
	int		   *nheap;
} KdTeacher;

static char *
relation_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

static KdMetric
parse_metric(const char *name)
{
	if (strcmp(name, "l2") == 0)
		return KD_METRIC_L2;
	if (strcmp(name, "ip") == 0)
		return KD_METRIC_IP;
	if (strcmp(name, "cosine") == 0)
		return KD_METRIC_COSINE;
	if (strcmp(name, "l1") == 0)
		return KD_METRIC_L1;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid metric \"%s\"", name),
			 errdetail("Valid metrics are \"l2\", \"ip\", \"cosine\" and \"l1\".")));
	return KD_METRIC_L2;
}

/*
 * The metric's operator on the vector type, schema-qualified: kdindex's own
 * (in the schema of the calling function) for real[], pgvector's for vector.
 */
static char *
metric_operator(KdMetric metric, Oid typid, Oid fnoid)
{
	const char *ops[] = {[KD_METRIC_L2] = "<->", [KD_METRIC_IP] = "<#>",
	[KD_METRIC_COSINE] = "<=>", [KD_METRIC_L1] = "<+>"};
	const char *op = ops[metric];
	char	   *nsp;

	if (typid == FLOAT4ARRAYOID)
		nsp = get_namespace_name(get_func_namespace(fnoid));
	else
	{
		HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for type %u", typid);
		nsp = get_namespace_name(((Form_pg_type) GETSTRUCT(tup))->typnamespace);
		ReleaseSysCache(tup);
	}
	if (!OidIsValid(OpernameGetOprid(list_make2(makeString(nsp), makeString(pstrdup(op))), typid, typid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("operator does not exist: %s %s.%s %s", format_type_be(typid), nsp, op,
						format_type_be(typid))));
	return psprintf("OPERATOR(%s.%s)", quote_identifier(nsp), op);
}

/* The table's primary key, when it is one integer column */
static char *
integer_pk(Oid relid)
{
	char	   *sql = psprintf("SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
							   "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
							   "WHERE i.indrelid = %u AND i.indisprimary AND i.indnatts = 1 "
							   "AND a.atttypid IN (%u, %u, %u)",
							   relid, INT2OID, INT4OID, INT8OID);

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "kdindex_teacher: primary key lookup failed");
	if (SPI_processed == 0)
		return NULL;
	return pstrdup(quote_identifier(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)));
}

/*
 * The vector column's type: real[] or pgvector's vector (or a domain over
 * either: then the type it is over).  The caller holds a lock on the
 * relation, so the type does not change before the column is read.
 */
static Oid
vector_column_type(Oid relid, const char *col, const char *what)
{
	AttrNumber	attnum = get_attnum(relid, col);
	Oid			typid;

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of %s \"%s\" does not exist", col, what, get_rel_name(relid))));
	typid = get_atttype(relid, attnum);
	if (!OidIsValid(kd_vector_base_type(typid)))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of %s \"%s\" is of type %s, not real[] or vector",
						col, what, get_rel_name(relid), format_type_be(typid))));
	return kd_vector_base_type(typid);
}

/* A row's vector into dst, checking its dimension against the teacher's */
static void
read_vector(KdTeacher *t, Datum value, float *dst)
{
	int			dim;
	float	   *x = kd_datum_floats(value, t->typid, &dim);

	if (t->dim == 0)
		t->dim = dim;
	if (dim != t->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", t->dim, dim)));
	kd_check_finite(x, dim);
	memcpy(dst, x, sizeof(float) * dim);
}

/* Append the queries an SPI query returns: (tid or NULL, vector) rows */
static void
append_queries(KdTeacher *t, const char *sql, MemoryContext cxt)
{
	int			n0 = t->nq;

	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "kdindex_teacher: reading the queries failed");
	if (SPI_processed == 0)
		return;
	if ((uint64) t->nq + SPI_processed > (uint64) PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many queries")));
	t->nq += (int) SPI_processed;
	if (t->qtids == NULL)
	{
		bool		isnull;
		int			dim;

		kd_datum_floats(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull),
						t->typid, &dim);
		t->dim = dim;
		t->qtids = MemoryContextAlloc(cxt, sizeof(ItemPointerData) * t->nq);
		t->qvalues = MemoryContextAlloc(cxt, sizeof(Datum) * t->nq);
		t->queries = MemoryContextAllocHuge(cxt, sizeof(float) * t->nq * t->dim);
	}
	else
	{
		t->qtids = repalloc(t->qtids, sizeof(ItemPointerData) * t->nq);
		t->qvalues = repalloc(t->qvalues, sizeof(Datum) * t->nq);
		t->queries = repalloc_huge(t->queries, sizeof(float) * t->nq * t->dim);
	}
	for (int i = n0; i < t->nq; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i - n0];
		bool		notid;
		bool		isnull;
		Datum		tid = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &notid);
		Datum		value = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		read_vector(t, value, t->queries + (int64) i * t->dim);
		t->qvalues[i] = PointerGetDatum(PG_DETOAST_DATUM_COPY(value));
		if (notid)
			ItemPointerSetInvalid(&t->qtids[i]);
		else
		{
			t->qtids[i] = *(ItemPointer) DatumGetPointer(tid);
			t->self = true;
		}
		MemoryContextSwitchTo(old);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Load the queries: the query table's first nqueries rows by id and
 * table_queries of the table's, or (no query table) nqueries of the table's.
 * The table's rows are the first by a hash of their TID: the same table gives
 * the same sample.
 */
static void
load_queries(KdTeacher *t, Oid queries, int nqueries, int table_queries)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			nsampled = OidIsValid(queries) ? table_queries : nqueries;

	if (OidIsValid(queries))
	{
		AttrNumber	idatt = get_attnum(queries, "id");

		if (idatt == InvalidAttrNumber ||
			!(get_atttype(queries, idatt) == INT2OID || get_atttype(queries, idatt) == INT4OID ||
			  get_atttype(queries, idatt) == INT8OID))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("query table \"%s\" needs an integer column \"id\"", get_rel_name(queries))));
		if (vector_column_type(queries, t->col, "query table") != t->typid)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" has different types in the table and the query table", t->col)));
		append_queries(t, psprintf("SELECT NULL::tid, %s FROM %s WHERE %s IS NOT NULL ORDER BY id LIMIT %d",
								   quote_identifier(t->col), relation_name(queries),
								   quote_identifier(t->col), nqueries), cxt);
	}
	if (nsampled > 0)
		append_queries(t, psprintf("SELECT ctid, %s FROM %s WHERE %s IS NOT NULL "
								   "ORDER BY hashtext(ctid::text), ctid LIMIT %d",
								   quote_identifier(t->col), relation_name(t->relid),
								   quote_identifier(t->col), nsampled), cxt);
	if (t->nq == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no queries: the query source has no non-NULL vectors")));
	/*
	 * A zero vector has no cosine distance to anything: such queries are left
	 * out, as the index leaves such rows out
	 */
	t->qnorms = MemoryContextAlloc(cxt, sizeof(float) * t->nq);
	{
		int			kept = 0;

		for (int i = 0; i < t->nq; i++)
		{
			float	   *q = t->queries + (int64) i * t->dim;
			float		norm = kd_dot(q, q, t->dim);

			if (t->metric == KD_METRIC_COSINE && norm == 0)
				continue;
			if (kept != i)
			{
				memcpy(t->queries + (int64) kept * t->dim, q, sizeof(float) * t->dim);
				t->qvalues[kept] = t->qvalues[i];
				t->qtids[kept] = t->qtids[i];
			}
			t->qnorms[kept++] = norm;
		}
		if (kept == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("no queries: every query vector is zero, which has no cosine distance")));
		t->nq = kept;
	}
}

/* Whether row tid is query qi's own (a sampled query leaves its row out) */
static inline bool
own_row(const KdTeacher *t, int qi, const ItemPointerData *tid)
{
	return t->self && ItemPointerIsValid(&t->qtids[qi]) &&
		ItemPointerEquals((ItemPointer) &t->qtids[qi], (ItemPointer) tid);
}

static void
heap_offer(KdTeacher *t, int qi, const KdNeighbour *n)
{
	KdNeighbour *heap = t->heaps + (int64) qi * t->k;
	int			size = t->nheap[qi];
	int			i;

	if (size == t->k)
	{
		if (n->dist >= heap[0].dist)
			return;
		i = 0;
		for (;;)
		{
			int			child = 2 * i + 1;

			if (child >= size)
				break;
			if (child + 1 < size && heap[child + 1].dist > heap[child].dist)
				child++;
			if (heap[child].dist <= n->dist)
				break;
			heap[i] = heap[child];
			i = child;
		}
		heap[i] = *n;
		return;
	}
	i = t->nheap[qi]++;
	while (i > 0 && heap[(i - 1) / 2].dist < n->dist)
	{
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = *n;
}

/*
 * Score a block of rows against queries [q0, q1).  The sgemm form of the L2
 * and cosine distances cancels badly between near neighbours (||q||^2 +
 * ||x||^2 - 2 q.x in float), so it only screens: a row whose screened
 * distance, less its rounding bound, beats the query's k-th gets its exact
 * distance computed directly.
 */
static void
score_block(KdTeacher *t, int q0, int q1, const float *x, const float *xnorms,
			const ItemPointerData *tids, const int64 *ids, int nb, float *dots)
{
	/* L1 has no product form: every row gets its exact distance */
	if (t->metric != KD_METRIC_L1)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q1 - q0, nb, t->dim,
					1.0f, t->queries + (int64) q0 * t->dim, t->dim, x, t->dim, 0.0f, dots, nb);
	for (int qi = q0; qi < q1; qi++)
	{
		const float *row = dots + (int64) (qi - q0) * nb;
		const float *q = t->queries + (int64) qi * t->dim;
		KdNeighbour *heap = t->heaps + (int64) qi * t->k;

		for (int r = 0; r < nb; r++)
		{
			KdNeighbour n;
			const float *xr = x + (int64) r * t->dim;
			bool		full = t->nheap[qi] == t->k;

			if (own_row(t, qi, &tids[r]))
				continue;
			if (t->metric == KD_METRIC_L1)
				n.dist = (float) kd_exact_distance(KD_METRIC_L1, q, xr, t->dim);
			else if (t->metric == KD_METRIC_IP)
			{
				n.dist = -row[r];
				if (full && n.dist >= heap[0].dist)
					continue;
			}
			else if (t->metric == KD_METRIC_L2)
			{
				float		bound = 1e-4f * (t->qnorms[qi] + xnorms[r]);
				float		screened = t->qnorms[qi] + xnorms[r] - 2 * row[r];

				if (full && screened - bound > heap[0].dist * heap[0].dist)
					continue;
				n.dist = sqrtf(kd_l2sq(q, xr, t->dim));
			}
			else
			{
				float		screened = 1 - row[r] / sqrtf(t->qnorms[qi] * xnorms[r]);

				if (isnan(screened) || (full && screened - 1e-4f > heap[0].dist))
					continue;
				n.dist = (float) kd_exact_distance(KD_METRIC_COSINE, q, xr, t->dim);
			}
			n.tid = tids[r];
			n.id = ids[r];
			heap_offer(t, qi, &n);
		}
	}
}

/* One pass over the table for queries [q0, q1) */
static void
exact_pass(KdTeacher *t, int q0, int q1)
{
	char	   *sql = psprintf("SELECT ctid, %s, %s FROM %s WHERE %s IS NOT NULL",
							   t->pk ? t->pk : "NULL::int8", quote_identifier(t->col),
							   relation_name(t->relid), quote_identifier(t->col));
	SPIPlanPtr	plan = SPI_prepare(sql, 0, NULL);
	Portal		portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	float	   *x = palloc_extended(sizeof(float) * KD_TEACHER_BLOCK * t->dim, MCXT_ALLOC_HUGE);
	float	   *xnorms = palloc(sizeof(float) * KD_TEACHER_BLOCK);
	ItemPointerData *tids = palloc(sizeof(ItemPointerData) * KD_TEACHER_BLOCK);
	int64	   *ids = palloc(sizeof(int64) * KD_TEACHER_BLOCK);
	float	   *dots = palloc_extended(sizeof(float) * (int64) (q1 - q0) * KD_TEACHER_BLOCK,
									   MCXT_ALLOC_HUGE);
	MemoryContext blockcxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex teacher block",
												   ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		int			nb;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, KD_TEACHER_BLOCK);
		nb = (int) SPI_processed;
		if (nb == 0)
			break;
		/* detoasted vectors live until the block is scored */
		old = MemoryContextSwitchTo(blockcxt);
		for (int r = 0; r < nb; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			bool		isnull;
			Datum		id = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);

			tids[r] = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
			ids[r] = isnull ? 0 : DatumGetInt64(id);
			read_vector(t, SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull),
						x + (int64) r * t->dim);
			xnorms[r] = kd_dot(x + (int64) r * t->dim, x + (int64) r * t->dim, t->dim);
			if (t->metric == KD_METRIC_COSINE && xnorms[r] == 0)
				xnorms[r] = NAN;	/* no cosine distance: sorts nowhere */
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(blockcxt);
		SPI_freetuptable(SPI_tuptable);
		score_block(t, q0, q1, x, xnorms, tids, ids, nb, dots);
	}
	MemoryContextDelete(blockcxt);
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
	pfree(x);
	pfree(xnorms);
	pfree(tids);
	pfree(ids);
	pfree(dots);
}

/* The teacher is an index scan: one ORDER BY ... LIMIT per query */
static void
index_teacher(KdTeacher *t)
{
	char	   *sql = psprintf("SELECT ctid, %s, %s %s $1 FROM %s WHERE %s IS NOT NULL "
							   "ORDER BY %s %s $1 LIMIT %d",
							   t->pk ? t->pk : "NULL::int8", quote_identifier(t->col),
							   t->op, relation_name(t->relid),
							   quote_identifier(t->col), quote_identifier(t->col),
							   t->op, t->k + (t->self ? 1 : 0));
	Oid			argtype = t->typid;
	SPIPlanPtr	plan = SPI_prepare(sql, 1, &argtype);

	for (int qi = 0; qi < t->nq; qi++)
	{
		CHECK_FOR_INTERRUPTS();
		if (SPI_execute_plan(plan, &t->qvalues[qi], NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "kdindex_teacher: index query failed");
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			bool		isnull;
			KdNeighbour n;
			Datum		id = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);

			n.id = isnull ? 0 : DatumGetInt64(id);
			n.tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
			n.dist = (float) DatumGetFloat8(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
			if (own_row(t, qi, &n.tid))
				continue;
			heap_offer(t, qi, &n);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_freeplan(plan);
}

static int
neighbour_cmp(const void *a, const void *b)
{
	const KdNeighbour *x = a;
	const KdNeighbour *y = b;

	if (x->dist != y->dist)
		return x->dist < y->dist ? -1 : 1;
	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

/* into: a quoted, schema-qualified name */
static void
write_result(KdTeacher *t, const char *into)
{
	char	   *create = psprintf("CREATE TABLE %s (query_id int PRIMARY KEY, query %s, source tid, "
								  "tids tid[], ids bigint[], distances float8[])",
								  into, format_type_be_qualified(t->typid));
	char	   *insert = psprintf("INSERT INTO %s VALUES ($1, $2, $3, $4, $5, $6)", into);
	Oid			types[6] = {INT4OID, t->typid, TIDOID, TIDARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID};
	SPIPlanPtr	plan;
	Datum	   *tids = palloc(sizeof(Datum) * t->k);
	Datum	   *ids = palloc(sizeof(Datum) * t->k);
	Datum	   *dists = palloc(sizeof(Datum) * t->k);

	if (SPI_execute(create, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "kdindex_teacher: could not create \"%s\"", into);
	plan = SPI_prepare(insert, 6, types);
	for (int qi = 0; qi < t->nq; qi++)
	{
		KdNeighbour *heap = t->heaps + (int64) qi * t->k;
		int			n = t->nheap[qi];
		Datum		values[6];
		char		nulls[6] = {' ', ' ', ItemPointerIsValid(&t->qtids[qi]) ? ' ' : 'n', ' ',
		t->pk ? ' ' : 'n', ' '};

		qsort(heap, n, sizeof(KdNeighbour), neighbour_cmp);
		for (int r = 0; r < n; r++)
		{
			ItemPointer tid = palloc(sizeof(ItemPointerData));

			*tid = heap[r].tid;
			tids[r] = PointerGetDatum(tid);
			ids[r] = Int64GetDatum(heap[r].id);
			dists[r] = Float8GetDatum(heap[r].dist);
		}
		values[0] = Int32GetDatum(qi + 1);
		values[1] = t->qvalues[qi];
		values[2] = PointerGetDatum(&t->qtids[qi]);
		values[3] = PointerGetDatum(construct_array(tids, n, TIDOID, sizeof(ItemPointerData),
													false, TYPALIGN_SHORT));
		values[4] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
													TYPALIGN_DOUBLE));
		values[5] = PointerGetDatum(construct_array(dists, n, FLOAT8OID, 8, FLOAT8PASSBYVAL,
													TYPALIGN_DOUBLE));
		if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "kdindex_teacher: could not write to \"%s\"", into);
	}
	SPI_freeplan(plan);
}

/*
 * A relation kdindex_teacher reads, checked before it is locked: the caller
 * may SELECT it, and the table proper has TIDs.  The lock keeps its columns
 * as they are checked until the queries read them.
 */
static void
check_relation(Oid relid, bool needs_tids)
{
	char		relkind;

	kd_check_select(relid);
	relkind = get_rel_relkind(relid);
	if (needs_tids && relkind != RELKIND_RELATION && relkind != RELKIND_MATVIEW)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table or materialized view", get_rel_name(relid)),
				 errdetail("kdindex_teacher lists neighbours by their TIDs, which only tables and "
						   "materialized views have.")));
	LockRelationOid(relid, AccessShareLock);
	if (get_rel_relkind(relid) != relkind)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u was dropped meanwhile", relid)));
}

/*
 * The result table's name, possibly schema-qualified ("public.evil" is the
 * table evil in public, not a table of that name), quoted and qualified
 * with the schema the caller's search_path creates it in.
 */
static char *
qualified_result_name(const char *into)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(into));
	Oid			nsp = RangeVarGetCreationNamespace(rv);

	return quote_qualified_identifier(get_namespace_name(nsp), rv->relname);
}

Datum
kdindex_teacher(PG_FUNCTION_ARGS)
{
	KdTeacher	t;
	char	   *into;
	char	   *teacher;
	int			nqueries;
	/* an 0.1.0 install's declaration has no table_queries */
	int			table_queries;
	bool		has_queries = !PG_ARGISNULL(3);
	int64		chunk;
	int			nestlevel;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4) ||
		PG_ARGISNULL(5) || PG_ARGISNULL(6) || PG_ARGISNULL(7) || (PG_NARGS() > 8 && PG_ARGISNULL(8)))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("only queries may be NULL")));
	memset(&t, 0, sizeof(t));
	t.relid = PG_GETARG_OID(0);
	t.col = NameStr(*PG_GETARG_NAME(1));
	into = text_to_cstring(PG_GETARG_TEXT_PP(2));
	t.k = PG_GETARG_INT32(4);
	nqueries = PG_GETARG_INT32(5);
	teacher = text_to_cstring(PG_GETARG_TEXT_PP(6));
	t.metric = parse_metric(text_to_cstring(PG_GETARG_TEXT_PP(7)));
	table_queries = PG_NARGS() > 8 ? PG_GETARG_INT32(8) : 0;
	if (t.k < 1 || t.k > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and 10000, not %d", t.k)));
	if (nqueries < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nqueries must be positive, not %d", nqueries)));
	if (table_queries < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table_queries must not be negative, not %d", table_queries)));
	if (table_queries > 0 && !has_queries)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table_queries adds the table's rows to a query table"),
				 errhint("Without queries, nqueries rows of the table are the queries.")));
	if (strcmp(teacher, "exact") != 0 && strcmp(teacher, "index") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid teacher \"%s\"", teacher),
				 errdetail("Valid teachers are \"exact\" and \"index\".")));
	into = qualified_result_name(into);
	check_relation(t.relid, true);
	if (has_queries)
		check_relation(PG_GETARG_OID(3), false);
	t.typid = vector_column_type(t.relid, t.col, "table");
	/* TIDs are shard-local on Citus: lists by primary key there (citus.c) */
	if (kd_citus_table(t.relid))
	{
		fcinfo->args[2].value = CStringGetTextDatum(into);	/* qualified */
		return kd_citus_call(fcinfo, "kdindex_citus_teacher");
	}
	if (strcmp(teacher, "index") == 0)
		t.op = metric_operator(t.metric, t.typid, fcinfo->flinfo->fn_oid);

	SPI_connect();
	nestlevel = kd_pin_search_path();
	t.pk = integer_pk(t.relid);
	load_queries(&t, has_queries ? PG_GETARG_OID(3) : InvalidOid, nqueries, table_queries);
	/* the lists are held until written: as much as maintenance_work_mem allows */
	if ((double) t.nq * t.k * sizeof(KdNeighbour) > (double) maintenance_work_mem * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%d queries with k = %d need %.0f kB of lists, more than maintenance_work_mem",
						t.nq, t.k, (double) t.nq * t.k * sizeof(KdNeighbour) / 1024),
				 errhint("Ask for fewer queries or a smaller k, or raise maintenance_work_mem.")));
	t.heaps = palloc_extended(sizeof(KdNeighbour) * t.nq * t.k, MCXT_ALLOC_HUGE);
	t.nheap = palloc0(sizeof(int) * t.nq);

	if (strcmp(teacher, "index") == 0)
		index_teacher(&t);
	else
	{
		/* queries per pass: their score block fits in maintenance_work_mem */
		chunk = (int64) maintenance_work_mem * 1024 / ((int64) KD_TEACHER_BLOCK * sizeof(float));
		chunk = Max(1, Min(chunk, t.nq));
		for (int q0 = 0; q0 < t.nq; q0 += (int) chunk)
			exact_pass(&t, q0, (int) Min(t.nq, q0 + chunk));
	}
	write_result(&t, into);
	kd_unpin_search_path(nestlevel);
	SPI_finish();
	PG_RETURN_INT32(t.nq);
}

/*
 * The exact top-k within an in-memory set of n rows for the queries that are
 * rows qrows[0..nq-1] of it, each query's own row excluded (distill = on).
 * lists: nq x k row numbers, nearest first, -1 where there are fewer rows.
 * The sgemm form ||x||^2 - 2 q.x ranks well enough to train on.
 */
void
kd_teacher_in_memory(const float *x, int64 n, int dim, KdMetric metric, const int32 *qrows,
					 int nq, int k, int32 *lists)
{
	int			block = KD_TEACHER_BLOCK;
	float	   *q = palloc_extended(sizeof(float) * nq * dim, MCXT_ALLOC_HUGE);
	float	   *scores = palloc_extended(sizeof(float) * nq * block, MCXT_ALLOC_HUGE);
	float	   *xnorms = palloc(sizeof(float) * block);
	KdNeighbour *heaps = palloc_extended(sizeof(KdNeighbour) * nq * k, MCXT_ALLOC_HUGE);
	int		   *nheap = palloc0(sizeof(int) * nq);
	KdTeacher	t;

	memset(&t, 0, sizeof(t));
	t.k = k;
	t.heaps = heaps;
	t.nheap = nheap;
	for (int i = 0; i < nq; i++)
		memcpy(q + (Size) i * dim, x + (Size) qrows[i] * dim, sizeof(float) * dim);
	for (int64 start = 0; start < n; start += block)
	{
		int			nb = (int) Min(block, n - start);

		CHECK_FOR_INTERRUPTS();
		for (int j = 0; j < nb; j++)
			xnorms[j] = metric == KD_METRIC_IP ? 0 : kd_dot(x + (start + j) * dim, x + (start + j) * dim, dim);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nb, dim, -2.0f, q, dim,
					x + start * dim, dim, 0.0f, scores, nb);
		for (int i = 0; i < nq; i++)
			for (int j = 0; j < nb; j++)
			{
				KdNeighbour nb_;

				if (start + j == qrows[i])
					continue;
				nb_.dist = metric == KD_METRIC_IP ? scores[(Size) i * nb + j] / 2 :
					scores[(Size) i * nb + j] + xnorms[j];
				nb_.id = start + j;
				ItemPointerSetInvalid(&nb_.tid);
				heap_offer(&t, i, &nb_);
			}
	}
	for (int i = 0; i < nq; i++)
	{
		KdNeighbour *h = heaps + (Size) i * k;

		qsort(h, nheap[i], sizeof(KdNeighbour), neighbour_cmp);
		for (int r = 0; r < k; r++)
			lists[(Size) i * k + r] = r < nheap[i] ? (int32) h[r].id : -1;
	}
	pfree(q);
	pfree(scores);
	pfree(xnorms);
	pfree(heaps);
	pfree(nheap);
}
