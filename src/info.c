/*
 * info.c — kdindex_info(regclass): what an index holds and what it costs;
 * kdindex_lists(regclass): rows and pages of each IVF list.
 *
 * As pgstatindex: they need SELECT on the index's table or the rights of
 * pg_stat_scan_tables, and lock only the index.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_am.h"
#include "commands/defrem.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "miscadmin.h"
#include "utils/tuplestore.h"

#include "kdindex.h"

PG_FUNCTION_INFO_V1(kdindex_info);

static const char *
metric_name(KdMetric metric)
{
	switch (metric)
	{
		case KD_METRIC_L2:
			return "l2";
		case KD_METRIC_IP:
			return "inner_product";
		case KD_METRIC_COSINE:
			return "cosine";
		case KD_METRIC_L1:
			return "l1";
	}
	return "unknown";
}

/* Rows and pages of the chain starting at blkno */
static void
count_chain(Relation index, BlockNumber blkno, int64 *rows, int32 *pages)
{
	*rows = 0;
	*pages = 0;
	while (blkno != InvalidBlockNumber)
	{
		Buffer		buf = ReadBuffer(index, blkno);
		Page		page;

		CHECK_FOR_INTERRUPTS();
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		*rows += KdPageGetOpaque(page)->ntuples;
		(*pages)++;
		blkno = KdPageGetOpaque(page)->nextblkno;
		UnlockReleaseBuffer(buf);
	}
}

static int64
count_tuples(Relation index, const KdMetaPageData *meta)
{
	int			nchains = kd_nchains(meta);
	BlockNumber *heads = palloc(sizeof(BlockNumber) * nchains);
	int64		n = 0;

	kd_read_list_heads(index, meta, heads);
	for (int l = 0; l < nchains; l++)
	{
		int64		rows;
		int32		pages;

		count_chain(index, heads[l], &rows, &pages);
		n += rows;
	}
	pfree(heads);
	return n;
}

Relation
kd_open_index(Oid relid, LOCKMODE lockmode)
{
	Relation	index = index_open(relid, lockmode);

	if (index->rd_rel->relam != get_index_am_oid("kdindex", false))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a kdindex index", RelationGetRelationName(index))));
	return index;
}

Datum
kdindex_info(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			heapoid = kd_index_table_checked(relid, KD_PRIV_STATS);
	Relation	index = kd_lock_index(relid, heapoid, NoLock, AccessShareLock, NULL);
	TupleDesc	tupdesc;
	KdMetaPageData meta;
	Datum		values[18];
	bool		nulls[18] = {0};
	int64		rows;
	int64		total;
	int			i = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	/* a Citus table's index here is empty: report its shards' (citus.c) */
	if (kd_citus_table(heapoid))
	{
		index_close(index, NoLock);
		return kd_citus_call(fcinfo, "kdindex_citus_info");
	}

	kd_read_meta(index, &meta);
	rows = count_tuples(index, &meta);
	total = (int64) RelationGetNumberOfBlocks(index) * BLCKSZ;

	values[i++] = CStringGetTextDatum(kd_quantizer_name((KdQuantizerKind) meta.quantizer));
	values[i++] = CStringGetTextDatum(metric_name((KdMetric) meta.metric));
	values[i++] = Int32GetDatum(meta.dim);
	values[i++] = Int32GetDatum(meta.m);
	values[i++] = Int32GetDatum(meta.nbits);
	values[i++] = Int32GetDatum(meta.code_size);
	values[i++] = BoolGetDatum(meta.trained);
	values[i++] = Int64GetDatum(rows);
	values[i++] = Int64GetDatum(total);
	nulls[i] = rows == 0;
	values[i++] = Float8GetDatum(rows > 0 ? (double) total / rows : 0);
	values[i++] = Int64GetDatum(meta.blob_size);
	nulls[i] = !meta.trained;
	values[i++] = Int64GetDatum(meta.train_rows);
	nulls[i] = !meta.trained;
	values[i++] = Float8GetDatum(meta.train_mse);
	nulls[i] = !meta.trained;
	values[i++] = Float8GetDatum(meta.train_seconds);
	values[i++] = Int64GetDatum(meta.generation);
	values[i++] = Int32GetDatum(meta.nlists);
	/* the row term's weight a, when the codes carry the term */
	if (meta.trained && meta.version >= KDINDEX_LAYOUT_VERSION &&
		kd_get_quantizer(index, &meta)->term.mode != KD_ROWTERM_NONE)
		values[i++] = Float8GetDatum(rint(kd_get_quantizer(index, &meta)->term.weight * 1e4) / 1e4);
	else
		nulls[i++] = true;
	/* refinement bytes per row (within code_bytes) */
	values[i++] = Int32GetDatum(meta.trained && meta.version >= KDINDEX_LAYOUT_VERSION_REFINE ?
								meta.refine : 0);
	Assert(i == lengthof(values));

	index_close(index, AccessShareLock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * kdindex_lists(idx): one row per IVF list (list, rows, pages), or one row
 * (list 0) for a flat index: how evenly the lists share the rows.
 */
PG_FUNCTION_INFO_V1(kdindex_lists);
Datum
kdindex_lists(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			heapoid = kd_index_table_checked(PG_GETARG_OID(0), KD_PRIV_STATS);
	Relation	index = kd_lock_index(PG_GETARG_OID(0), heapoid, NoLock, AccessShareLock, NULL);
	KdMetaPageData meta;
	BlockNumber *heads;
	int			nchains;

	InitMaterializedSRF(fcinfo, 0);
	kd_read_meta(index, &meta);
	nchains = kd_nchains(&meta);
	heads = palloc(sizeof(BlockNumber) * nchains);
	kd_read_list_heads(index, &meta, heads);
	for (int l = 0; l < nchains; l++)
	{
		Datum		values[3];
		bool		nulls[3] = {0};
		int64		rows;
		int32		pages;

		count_chain(index, heads[l], &rows, &pages);
		values[0] = Int32GetDatum(l);
		values[1] = Int64GetDatum(rows);
		values[2] = Int32GetDatum(pages);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	index_close(index, AccessShareLock);
	return (Datum) 0;
}
