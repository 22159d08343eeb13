/*
 * kdindex.c — the access method handler: capabilities, reloptions, GUCs,
 * cost estimate and opclass validation.
 */
#include "postgres.h"

#include <cblas.h>
#include <float.h>

#include "access/amvalidate.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "catalog/pg_amop.h"
#include "catalog/pg_amproc.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_type.h"
#include "commands/progress.h"
#include "commands/vacuum.h"
#include "fmgr.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/selfuncs.h"
#include "utils/spccache.h"
#include "utils/syscache.h"

#include "kdindex.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(kdindex_handler);

int			kdindex_rerank = 200;
int			kdindex_probes = 8;
int			kdindex_max_scan_tuples = 0;
int			kdindex_iterative_scan = KD_ITERATIVE_RELAXED;
int			kdindex_max_probes = KDINDEX_MAX_LISTS;
double		kdindex_scan_mem_multiplier = 1;
int			kdindex_ivf_table_mem = 65536;
double		kdindex_rerank_margin = 0;
int			kdindex_refine_rerank = 40;

static const struct config_enum_entry iterative_scan_options[] = {
	{"off", KD_ITERATIVE_OFF, false},
	{"relaxed_order", KD_ITERATIVE_RELAXED, false},
	{"strict_order", KD_ITERATIVE_STRICT, false},
	{NULL, 0, false}
};

static relopt_kind kd_relopt_kind;

/* openblas_set_num_threads is OpenBLAS's own, not part of cblas.h everywhere */
extern void openblas_set_num_threads(int num_threads);

static void
validate_quantizer(const char *value)
{
	if (value == NULL || strcmp(value, "pq") == 0 || strcmp(value, "opq") == 0 ||
		strcmp(value, "aq") == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for quantizer: \"%s\"", value),
			 errdetail("Valid values are \"pq\", \"opq\" and \"aq\".")));
}

void
_PG_init(void)
{
	/*
	 * A backend must not run OpenBLAS's thread pool behind PostgreSQL's back
	 * (signals, fork, cores shared with other backends).
	 */
	openblas_set_num_threads(1);

	kd_relopt_kind = add_reloption_kind();
	add_string_reloption(kd_relopt_kind, "quantizer",
						 "Quantizer: pq, opq or aq",
						 "pq", validate_quantizer, AccessExclusiveLock);
	add_int_reloption(kd_relopt_kind, "m",
					  "Number of sub-quantizers (0: the largest divisor of the dimension up to 16)",
					  0, 0, KDINDEX_MAX_DIM, AccessExclusiveLock);
	add_int_reloption(kd_relopt_kind, "nbits",
					  "Bits per sub-quantizer code (4 or 8)",
					  8, 1, 16, AccessExclusiveLock);
	add_int_reloption(kd_relopt_kind, "iterations",
					  "Training alternations of OPQ (default 25) and AQ (default 1); 0: the default",
					  0, 0, 1000, AccessExclusiveLock);
	add_int_reloption(kd_relopt_kind, "beam",
					  "Beam width of the AQ encoder (0: its default, 8)",
					  0, 0, 256, AccessExclusiveLock);
	add_bool_reloption(kd_relopt_kind, "distill",
					   "Distil the quantizer at build time from an exact teacher on sampled rows",
					   false, AccessExclusiveLock);
	add_bool_reloption(kd_relopt_kind, "rowterm",
					   "Store each row's reconstruction error in its code (one byte; AQ: in its norm) and add a fitted multiple of it to the code distance",
					   true, AccessExclusiveLock);
	add_int_reloption(kd_relopt_kind, "sample",
					  "Rows sampled to train the quantizer (0: 256 per codeword, 64 per list)",
					  0, 0, INT_MAX, AccessExclusiveLock);
	add_int_reloption(kd_relopt_kind, "lists",
					  "IVF lists: rows coded as residuals from the nearest of this many centroids (0: one flat list)",
					  0, 0, KDINDEX_MAX_LISTS, AccessExclusiveLock);
	add_real_reloption(kd_relopt_kind, "balance",
					   "Balanced IVF lists: Sinkhorn-Knopp temperature, as a multiple of the mean distance to the nearest centroid (0: plain k-means)",
					   0, 0, 10, AccessExclusiveLock);
	add_int_reloption(kd_relopt_kind, "fillfactor",
					  "Packs every data page a build writes only this full (percent): room for the new versions of updated rows until VACUUM frees the old ones",
					  100, 10, 100, ShareUpdateExclusiveLock);
	add_int_reloption(kd_relopt_kind, "refine",
					  "Bytes per row of a finer refinement code (an 8-bit PQ of the rows' residuals) that re-scores candidates before the heap (0: none)",
					  0, 0, KDINDEX_MAX_REFINE, AccessExclusiveLock);

	DefineCustomIntVariable("kdindex.rerank",
							"Candidates re-scored with the exact distance before the first rows (0: codes only).",
							"The best candidates by code distance are re-ranked on the heap's vectors "
							"and returned in exact order; with kdindex.rerank_margin set, each row as "
							"soon as no candidate left could be nearer, this many at most.",
							&kdindex_rerank, 200, 0, 100000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("kdindex.probes",
							"IVF lists a scan reads first, nearest centroids first.",
							"When the executor asks for more rows (a WHERE clause rejected some), "
							"the scan goes on to the next lists, this many at a time.",
							&kdindex_probes, 8, 1, KDINDEX_MAX_LISTS,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("kdindex.iterative_scan",
							 "What a scan does when the executor wants rows past the first candidates.",
							 "relaxed_order goes on and returns a row found late (nearer than "
							 "rows already returned) when it meets it; strict_order goes on and "
							 "drops such rows; off returns only the first kdindex.rerank candidates "
							 "of the first kdindex.probes lists.",
							 &kdindex_iterative_scan, KD_ITERATIVE_RELAXED, iterative_scan_options,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("kdindex.max_scan_tuples",
							"Candidates an iterative scan consumes at most before it stops returning rows.",
							"Bounds the work of a filtered query whose filter rejects most rows; "
							"0 means no bound: the scan may re-rank every row.",
							&kdindex_max_scan_tuples, 0, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("kdindex.max_probes",
							"IVF lists an iterative scan reads at most (never fewer than kdindex.probes).",
							NULL,
							&kdindex_max_probes, KDINDEX_MAX_LISTS, 1, KDINDEX_MAX_LISTS,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("kdindex.scan_mem_multiplier",
							 "Multiple of work_mem a scan's candidate passes and lookup tables may use.",
							 NULL,
							 &kdindex_scan_mem_multiplier, 1, 1, 1000,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("kdindex.ivf_table_mem",
							"Memory a backend may keep precomputed IVF lookup-table terms in.",
							"Per list of an IVF index the query-independent part of its lookup "
							"table (lists x m x 2^nbits floats), built once per backend; an index "
							"whose tables do not fit builds each probed list's table per query "
							"instead.  0 turns them off.",
							&kdindex_ivf_table_mem, 65536, 0, MAX_KILOBYTES,
							PGC_USERSET, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomRealVariable("kdindex.rerank_margin",
							 "Early stop of the re-rank: standard deviations of the code distance error it allows for (0: off).",
							 "A row is returned once the next candidate's code distance, less the mean "
							 "error and this many standard deviations (measured on the query's re-ranked "
							 "rows), is not below its exact distance. Lower is faster and loses more rows; "
							 "0 re-ranks kdindex.rerank candidates before the first row.",
							 &kdindex_rerank_margin, 0, 0, 100,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("kdindex.refine_rerank",
							"With refine: candidates re-ranked on the heap before the first rows.",
							"Of the first kdindex.rerank candidates by code distance, this many with "
							"the best refined distances are re-ranked exactly before the first rows "
							"(at most kdindex.rerank); the rest follow if the executor asks for more.",
							&kdindex_refine_rerank, 40, 1, 100000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("kdindex");
}

/* m = 0: the largest divisor of dim not above 16 (16 bytes at nbits = 8) */
int
kd_choose_m(int dim, int m)
{
	if (m != 0)
		return m;
	for (m = Min(16, dim); m > 1; m--)
		if (dim % m == 0)
			return m;
	return 1;
}

/*
 * A code, with its refinement, has to fit on a page (with the 4-bit block
 * layout, a block of them)
 */
static void
check_code_fits(KdQuantizerKind quantizer, int m, int nbits, int refine)
{
	KdLayout	layout;
	/* with the row term's byte (AQ folds it into its norm) */
	int			code_size = (m * nbits + 7) / 8 + (quantizer == KD_QUANT_AQ ? sizeof(float) : 1) + refine;

	kd_layout_for(&layout, quantizer, m, nbits, code_size, refine);
	if (layout.capacity < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("m = %d gives codes of %d bytes, more than a page holds", m, code_size)));
}

/*
 * PQ and OPQ cut the vector into m sub-vectors; AQ's codebooks span it all.
 * Either way a code has to fit on a page.
 */
void
kd_check_m(KdQuantizerKind quantizer, int dim, int m, int nbits)
{
	check_code_fits(quantizer, m, nbits, 0);
	if (quantizer == KD_QUANT_AQ)
		return;
	if (m > dim)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("m = %d exceeds the vector dimension %d", m, dim)));
	if (dim % m != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vector dimension %d is not divisible by m = %d", dim, m),
				 errhint("Choose m dividing the dimension, or m = 0 to let kdindex choose.")));
}

/*
 * Combinations that could never train are refused when they are set (CREATE
 * INDEX, ALTER INDEX SET), not found out by a self-training that fails in
 * every insert.  m against the dimension is checked once the dimension is
 * known: at CREATE INDEX, or by the first row of an index on an empty table.
 */
static void
check_options(const KdOptions *opts)
{
	const char *name = opts->quantizer_offset ? (const char *) opts + opts->quantizer_offset : "pq";
	KdQuantizerKind quantizer = strcmp(name, "aq") == 0 ? KD_QUANT_AQ :
		strcmp(name, "opq") == 0 ? KD_QUANT_OPQ : KD_QUANT_PQ;

	if (opts->balance > 0 && opts->lists == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("balance applies to IVF lists"),
				 errhint("Set lists > 0 too.")));
	if (opts->nbits != 4 && opts->nbits != 8)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nbits must be 4 or 8, not %d", opts->nbits)));
	if (opts->sample > 0 && opts->sample < (1 << opts->nbits))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample = %d is smaller than the %d codewords of nbits = %d",
						opts->sample, 1 << opts->nbits, opts->nbits),
				 errhint("Set sample to 0 (256 rows per codeword) or at least %d.", 1 << opts->nbits)));
	if (opts->sample > 0 && opts->sample < opts->lists)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample = %d is smaller than lists = %d", opts->sample, opts->lists),
				 errhint("Set sample to 0 (64 rows per list) or at least %d.", opts->lists)));
	kd_refine_check_options(opts->refine, quantizer, opts->nbits, opts->lists);
	if (opts->m > 0)
		check_code_fits(quantizer, opts->m, opts->nbits, opts->refine);
}

static bytea *
kd_options(Datum reloptions, bool validate)
{
	static const relopt_parse_elt tab[] = {
		{"quantizer", RELOPT_TYPE_STRING, offsetof(KdOptions, quantizer_offset)},
		{"m", RELOPT_TYPE_INT, offsetof(KdOptions, m)},
		{"nbits", RELOPT_TYPE_INT, offsetof(KdOptions, nbits)},
		{"sample", RELOPT_TYPE_INT, offsetof(KdOptions, sample)},
		{"iterations", RELOPT_TYPE_INT, offsetof(KdOptions, iterations)},
		{"beam", RELOPT_TYPE_INT, offsetof(KdOptions, beam)},
		{"distill", RELOPT_TYPE_BOOL, offsetof(KdOptions, distill)},
		{"lists", RELOPT_TYPE_INT, offsetof(KdOptions, lists)},
		{"balance", RELOPT_TYPE_REAL, offsetof(KdOptions, balance)},
		{"fillfactor", RELOPT_TYPE_INT, offsetof(KdOptions, fillfactor)},
		{"rowterm", RELOPT_TYPE_BOOL, offsetof(KdOptions, rowterm)},
		{"refine", RELOPT_TYPE_INT, offsetof(KdOptions, refine)},
	};
	KdOptions  *opts = build_reloptions(reloptions, validate, kd_relopt_kind,
										sizeof(KdOptions), tab, lengthof(tab));

	if (validate && opts)
		check_options(opts);
	return (bytea *) opts;
}

KdQuantizerKind
kd_options_quantizer(Relation index)
{
	KdOptions  *opts = (KdOptions *) index->rd_options;
	const char *name;

	if (opts == NULL || opts->quantizer_offset == 0)
		return KD_QUANT_PQ;
	name = (const char *) opts + opts->quantizer_offset;
	if (strcmp(name, "opq") == 0)
		return KD_QUANT_OPQ;
	if (strcmp(name, "aq") == 0)
		return KD_QUANT_AQ;
	return KD_QUANT_PQ;
}

/* The metric of the index's opclass, from its support function 1 */
KdMetric
kd_index_metric(Relation index)
{
	FmgrInfo   *proc = index_getprocinfo(index, 1, KDINDEX_METRIC_PROC);

	return (KdMetric) DatumGetInt32(FunctionCall1(proc, PointerGetDatum(NULL)));
}

/*
 * Re-ranking `rows` rows: a heap fetch and an exact distance each, in the
 * sequential scan's units (cpu_tuple_cost and the operator's
 * cpu_operator_cost a row), plus the heap pages they fall on (Mackert and
 * Lohman, as cost_index counts them).  Pages that are most of the heap are
 * charged as a sequential scan reads them: the re-rank touches each once,
 * and they stay cached for the rows after.  The detoast of a re-ranked
 * value is not charged: the sequential scan and sort it competes with
 * detoast every row and the planner charges them nothing for it either
 * (pgvector's cost estimates say the same), so charging it here only would
 * pick the slower plan.
 */
static double
rerank_cost(PlannerInfo *root, IndexOptInfo *index, double rows)
{
	double		heap_pages = Max(index->rel->pages, 1);
	double		pages;
	double		spc_random_page_cost;
	double		spc_seq_page_cost;

	if (rows <= 0)
		return 0;
	get_tablespace_page_costs(index->rel->reltablespace, &spc_random_page_cost, &spc_seq_page_cost);
	pages = index_pages_fetched(rows, (BlockNumber) heap_pages, (double) index->pages, root);
	return pages * (pages >= heap_pages / 2 ? spc_seq_page_cost : spc_random_page_cost) +
		rows * (cpu_tuple_cost + cpu_operator_cost);
}

/*
 * An ordering scan (scan.c): the first row costs a pass over the codes of
 * the first kdindex.probes lists (all codes when flat: index pages read in
 * order and a code distance each) and the re-rank of the first
 * kdindex.rerank candidates; every further row the re-rank of one more
 * candidate, with a further pass over the codes each time the candidates
 * run out (passes widen fourfold) and, with lists, the codes of the other
 * lists.  An untrained index re-ranks every row before the first.  The
 * executor's own heap fetches of the rows returned are cost_index's.  An
 * ORDER BY without LIMIT therefore loses to a sequential scan and a sort,
 * and a LIMIT makes the planner weigh only the first rows.  kdindex is
 * never used without an ordering operator.
 */
static void
kd_costestimate(PlannerInfo *root, IndexPath *path, double loop_count,
				Cost *indexStartupCost, Cost *indexTotalCost,
				Selectivity *indexSelectivity, double *indexCorrelation,
				double *indexPages)
{
	IndexOptInfo *index = path->indexinfo;
	double		ntuples = Max(index->tuples, 1);
	double		spc_seq_page_cost;
	double		codes;
	double		first;
	double		rows;
	double		passes;
	Relation	rel;
	KdMetaPageData meta;

	/* every row of the index, which for a partial index is not the table */
	*indexSelectivity = index->indpred != NIL && index->rel->tuples > 0 ?
		Min(1.0, index->tuples / index->rel->tuples) : 1.0;
	*indexCorrelation = 0;
	*indexPages = index->pages;
	if (path->indexorderbys == NIL)
	{
		*indexStartupCost = get_float8_infinity();
		*indexTotalCost = get_float8_infinity();
		return;
	}
	rel = index_open(index->indexoid, NoLock);
	kd_read_meta(rel, &meta);
	index_close(rel, NoLock);
	get_tablespace_page_costs(index->reltablespace, NULL, &spc_seq_page_cost);

	/*
	 * A pass over every code: its pages in chain order, a distance each.
	 * Not the codebooks' pages: a backend reads them once and keeps them.
	 */
	codes = Max((double) index->pages - 1 - ceil((double) meta.blob_size / BLCKSZ), 1) * spc_seq_page_cost +
		ntuples * (cpu_index_tuple_cost + (meta.trained ? cpu_operator_cost : 0));
	if (!meta.trained)
	{
		/* every row re-ranked (exactly) before the first is returned */
		*indexStartupCost = codes + rerank_cost(root, index, ntuples);
		*indexTotalCost = *indexStartupCost;
		return;
	}

	/* the first pass, over the first lists; the rows the first batch re-ranks */
	first = kdindex_rerank > 0 ? Min(kdindex_rerank, ntuples) : Min(64, ntuples);
	*indexStartupCost = codes * (meta.nlists > 0 ? Min(1.0, (double) kdindex_probes / meta.nlists) : 1.0) +
		(kdindex_rerank > 0 ? rerank_cost(root, index, first) : 0);

	/* all the rows the settings let the scan reach */
	rows = ntuples;
	if (kdindex_iterative_scan == KD_ITERATIVE_OFF)
		rows = first;
	else if (kdindex_max_scan_tuples > 0)
		rows = Min(rows, kdindex_max_scan_tuples);
	passes = rows > first ? ceil(log(rows / first) / log(4)) : 0;
	*indexTotalCost = *indexStartupCost + passes * codes +
		(kdindex_rerank > 0 ? rerank_cost(root, index, rows) - rerank_cost(root, index, first) : 0);
}

static char *
kd_buildphasename(int64 phasenum)
{
	switch (phasenum)
	{
		case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
			return "initializing";
		case KDINDEX_PHASE_SAMPLE:
			return "sampling rows";
		case KDINDEX_PHASE_TRAIN:
			return "training quantizer";
		case KDINDEX_PHASE_ENCODE:
			return "encoding rows";
		case KDINDEX_PHASE_DISTILL:
			return "distilling quantizer";
		default:
			return NULL;
	}
}

/*
 * An opclass has one ordering operator (strategy 1, returning float8) and
 * one support function (1: the metric, int4 of internal).
 */
static bool
kd_validate(Oid opclassoid)
{
	bool		result = true;
	HeapTuple	classtup;
	Form_pg_opclass classform;
	Oid			opfamilyoid;
	CatCList   *oprlist;
	CatCList   *proclist;
	bool		has_op = false;
	bool		has_proc = false;

	classtup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
	classform = (Form_pg_opclass) GETSTRUCT(classtup);
	opfamilyoid = classform->opcfamily;

	oprlist = SearchSysCacheList1(AMOPSTRATEGY, ObjectIdGetDatum(opfamilyoid));
	proclist = SearchSysCacheList1(AMPROCNUM, ObjectIdGetDatum(opfamilyoid));

	for (int i = 0; i < proclist->n_members; i++)
	{
		Form_pg_amproc procform = (Form_pg_amproc) GETSTRUCT(&proclist->members[i]->tuple);

		if (procform->amprocnum != KDINDEX_METRIC_PROC ||
			!check_amproc_signature(procform->amproc, INT4OID, true, 1, 1, INTERNALOID))
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("kdindex operator class \"%s\" has an invalid support function %d",
							NameStr(classform->opcname), procform->amprocnum)));
			result = false;
		}
		else
			has_proc = true;
	}
	for (int i = 0; i < oprlist->n_members; i++)
	{
		Form_pg_amop oprform = (Form_pg_amop) GETSTRUCT(&oprlist->members[i]->tuple);

		if (oprform->amopstrategy != KDINDEX_DISTANCE_STRATEGY ||
			oprform->amoppurpose != AMOP_ORDER ||
			!check_amop_signature(oprform->amopopr, FLOAT8OID,
								  oprform->amoplefttype, oprform->amoprighttype))
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("kdindex operator class \"%s\" has an invalid operator %s",
							NameStr(classform->opcname),
							format_operator(oprform->amopopr))));
			result = false;
		}
		else
			has_op = true;
	}
	if (!has_op || !has_proc)
	{
		ereport(INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("kdindex operator class \"%s\" needs an ordering operator and support function 1",
						NameStr(classform->opcname))));
		result = false;
	}
	ReleaseCatCacheList(proclist);
	ReleaseCatCacheList(oprlist);
	ReleaseSysCache(classtup);
	return result;
}

Datum
kdindex_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *amroutine = makeNode(IndexAmRoutine);

	amroutine->amstrategies = 0;
	amroutine->amsupport = KDINDEX_NPROCS;
	amroutine->amoptsprocnum = 0;
	amroutine->amcanorder = false;
	amroutine->amcanorderbyop = true;
	amroutine->amcanbackward = false;
	amroutine->amcanunique = false;
	amroutine->amcanmulticol = false;
	amroutine->amoptionalkey = true;
	amroutine->amsearcharray = false;
	amroutine->amsearchnulls = false;
	amroutine->amstorage = false;
	amroutine->amclusterable = false;
	amroutine->ampredlocks = false;
	amroutine->amcanparallel = false;
	amroutine->amcaninclude = false;
	amroutine->amusemaintenanceworkmem = true;
	amroutine->amparallelvacuumoptions = VACUUM_OPTION_PARALLEL_BULKDEL;
	amroutine->amkeytype = InvalidOid;

	amroutine->ambuild = kd_build;
	amroutine->ambuildempty = kd_buildempty;
	amroutine->aminsert = kd_insert;
	amroutine->ambulkdelete = kd_bulkdelete;
	amroutine->amvacuumcleanup = kd_vacuumcleanup;
	amroutine->amcanreturn = NULL;
	amroutine->amcostestimate = kd_costestimate;
	amroutine->amoptions = kd_options;
	amroutine->amproperty = NULL;
	amroutine->ambuildphasename = kd_buildphasename;
	amroutine->amvalidate = kd_validate;
	amroutine->amadjustmembers = NULL;
	amroutine->ambeginscan = kd_beginscan;
	amroutine->amrescan = kd_rescan;
	amroutine->amgettuple = kd_gettuple;
	amroutine->amgetbitmap = NULL;
	amroutine->amendscan = kd_endscan;
	amroutine->ammarkpos = NULL;
	amroutine->amrestrpos = NULL;
	amroutine->amestimateparallelscan = NULL;
	amroutine->aminitparallelscan = NULL;
	amroutine->amparallelrescan = NULL;

	PG_RETURN_POINTER(amroutine);
}
