/*
 * citus.c — kdindex's SQL functions on Citus distributed and reference
 * tables, found at run time: kdindex never links against Citus nor needs it.
 *
 * On a Citus coordinator a distributed table is an empty shell; its rows and
 * the kdindex index that serves them live in shards (one table and index per
 * shard, on the workers).  kdindex_info, kdindex_teacher, kdindex_train and
 * kdindex_recall, given such a table or its index, check the caller's rights
 * on the coordinator as they always do, then hand their arguments to a SQL
 * function of the same extension (kdindex_citus_info, ..._teacher, ..._train,
 * ..._recall in the install script), which runs the work on every shard
 * placement through Citus's own master_run_on_worker, as the calling role,
 * so each worker checks that role's rights on its shards again.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "kdindex.h"

/*
 * Is relid a table Citus distributes (hash, range or append), replicates
 * (a reference table) or manages on the coordinator (a Citus local table)?
 * False wherever Citus's catalog is absent.  Shards are plain tables to
 * Citus, so on a worker kdindex works on them as on any table.
 */
bool
kd_citus_table(Oid relid)
{
	bool		found;
	Oid			argtype = OIDOID;
	Datum		arg = ObjectIdGetDatum(relid);

	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		return false;
	SPI_connect();
	if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1",
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "kdindex: reading pg_dist_partition failed");
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * Call the SQL function fn of kdindex's schema with the calling function's
 * arguments (same types, same order) and return its result: its one row as
 * the caller's composite result, or its one scalar.
 */
Datum
kd_citus_call(FunctionCallInfo fcinfo, const char *fn)
{
	Oid			fnoid = fcinfo->flinfo->fn_oid;
	Oid		   *argtypes;
	int			nargs;
	StringInfoData sql;
	Datum	   *values;
	char	   *nulls;
	TupleDesc	desc;
	Datum		result;
	bool		isnull;
	MemoryContext outer = CurrentMemoryContext;

	get_func_signature(fnoid, &argtypes, &nargs);
	Assert(nargs == PG_NARGS());
	values = palloc(sizeof(Datum) * Max(nargs, 1));
	nulls = palloc(Max(nargs, 1));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT * FROM %s.%s(",
					 quote_identifier(get_namespace_name(get_func_namespace(fnoid))),
					 quote_identifier(fn));
	for (int i = 0; i < nargs; i++)
	{
		appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", i + 1);
		values[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	appendStringInfoChar(&sql, ')');

	SPI_connect();
	if (SPI_execute_with_args(sql.data, nargs, argtypes, values, nulls, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "kdindex: %s returned no result", fn);
	if (get_call_result_type(fcinfo, NULL, &desc) == TYPEFUNC_COMPOSITE)
	{
		int			natts = desc->natts;
		Datum	   *rv = palloc(sizeof(Datum) * natts);
		bool	   *rn = palloc(sizeof(bool) * natts);
		MemoryContext old;

		if (SPI_tuptable->tupdesc->natts != natts)
			elog(ERROR, "kdindex: %s returned %d columns, not %d", fn,
				 SPI_tuptable->tupdesc->natts, natts);
		for (int i = 0; i < natts; i++)
			rv[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &rn[i]);
		/* heap_form_tuple copies the values out of SPI's memory */
		old = MemoryContextSwitchTo(outer);
		result = HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), rv, rn));
		MemoryContextSwitchTo(old);
		isnull = false;
	}
	else
	{
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		/* only pass-by-value scalars (kdindex_teacher's int) come this way */
		Assert(SPI_tuptable->tupdesc->attrs[0].attbyval);
	}
	SPI_finish();
	if (isnull)
		PG_RETURN_NULL();
	return result;
}
