/*
 * ivftables.c — the lookup tables of the IVF lists a scan probes, with the
 * query-independent part of each list's table precomputed (Jégou et al.;
 * Faiss's IndexIVFPQ::precomputed_table).
 *
 * List l codes residuals r = x - c_l, so under L2 (and cosine, on unit rows)
 *   ||q - c_l - r̂||^2 = ||q - c_l||^2 - 2 q.r̂ + (||r̂||^2 + 2 c_l.r̂).
 * The last term does not depend on the query: per list it is a table,
 * term_l = lut(0, L2) - 2 lut(c_l, IP) in the quantizer's own tables (PQ's
 * ||y_jw||^2 + 2 c_lj.y_jw, OPQ's the same in the rotated space, AQ's
 * 2 c_l.C_jk, its ||r̂||^2 being in every code).  The middle one is one
 * table per query, 2 lut(q, IP), shared by all lists, and ||q - c_l||^2 is a
 * dim-long sum.  So a probed list costs m x 2^nbits additions, not a table
 * built from q - c_l (and, for OPQ, a rotation of it, dim^2).  Inner product
 * needs no term: q.(c_l + r̂) = q.c_l + q.r̂, one table for all lists and a
 * bias per list.  L1 has no such split and keeps the per-list tables.
 *
 * The terms live per backend, built list by list the first time a scan
 * probes the list, keyed by the index's relfilenode and generation like the
 * quantizer cache (pages.c), so REINDEX, TRUNCATE and retraining all miss
 * (and a build under the same relfilenode drops them: kd_forget_index).
 * All indexes' terms together stay within kdindex.ivf_table_mem; an index
 * whose terms alone exceed it gets per-list tables as before.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "distance.h"
#include "scan.h"

#define KD_IVF_TABLES_CACHE 4

typedef struct KdIvfTables
{
	RelFileNode node;
	uint32		generation;
	uint64		last_used;
	MemoryContext cxt;			/* NULL: the slot is free */
	Size		bytes;
	int			nlists;
	int			lutsize;
	float	   *base;			/* lut(0, L2): ||r̂||^2 terms, and its bias */
	float		base_bias;
	float	   *terms;			/* nlists x lutsize, valid where ready */
	float	   *term_biases;
	bool	   *ready;
} KdIvfTables;

static KdIvfTables ivf_tables[KD_IVF_TABLES_CACHE];
static uint64 ivf_tables_clock;

static Size
tables_bytes(const KdQuantizer *q)
{
	Size		lutsize = (Size) q->m * q->ksub;

	return sizeof(float) * (lutsize * (q->nlists + 1) + q->nlists) + q->nlists +
		sizeof(KdIvfTables) + ALLOCSET_SMALL_INITSIZE;
}

static void
tables_free(KdIvfTables *t)
{
	if (t->cxt)
		MemoryContextDelete(t->cxt);
	t->cxt = NULL;
}

static Size
tables_in_use(void)
{
	Size		total = 0;

	for (int i = 0; i < KD_IVF_TABLES_CACHE; i++)
		if (ivf_tables[i].cxt)
			total += ivf_tables[i].bytes;
	return total;
}

/* Drop the tables of an index being built anew (kd_forget_index) */
void
kd_ivf_tables_forget(const RelFileNode *node)
{
	for (int i = 0; i < KD_IVF_TABLES_CACHE; i++)
		if (ivf_tables[i].cxt && RelFileNodeEquals(ivf_tables[i].node, *node))
			tables_free(&ivf_tables[i]);
}

/* Free the least recently used tables other than keep */
static void
evict_one(KdIvfTables *keep)
{
	KdIvfTables *victim = NULL;

	for (int i = 0; i < KD_IVF_TABLES_CACHE; i++)
	{
		KdIvfTables *e = &ivf_tables[i];

		if (e->cxt && e != keep && (victim == NULL || e->last_used < victim->last_used))
			victim = e;
	}
	Assert(victim != NULL);
	tables_free(victim);
}

/* A slot for new tables: a free one, else the least recently used */
static KdIvfTables *
new_slot(void)
{
	KdIvfTables *t = &ivf_tables[0];

	for (int i = 0; i < KD_IVF_TABLES_CACHE; i++)
	{
		if (ivf_tables[i].cxt == NULL)
			return &ivf_tables[i];
		if (ivf_tables[i].last_used < t->last_used)
			t = &ivf_tables[i];
	}
	tables_free(t);
	return t;
}

/*
 * The tables of the index at meta's generation, from the cache or new (no
 * term computed yet), or NULL when they would not fit in
 * kdindex.ivf_table_mem.  Older tables are dropped to make room (also when
 * the setting was lowered).
 */
static KdIvfTables *
get_tables(Relation index, const KdMetaPageData *meta, const KdQuantizer *q)
{
	double		limit = (double) kdindex_ivf_table_mem * 1024;
	Size		bytes = tables_bytes(q);
	KdIvfTables *t = NULL;
	MemoryContext cxt,
				old;
	float	   *base,
			   *zero,
				base_bias;

	for (int i = 0; i < KD_IVF_TABLES_CACHE; i++)
	{
		KdIvfTables *e = &ivf_tables[i];

		if (e->cxt && RelFileNodeEquals(e->node, index->rd_node) && e->generation == meta->generation)
			t = e;
	}
	if (bytes > limit)
	{
		if (t)
			tables_free(t);
		ereport(DEBUG1,
				(errmsg_internal("kdindex: IVF tables of index \"%s\" need %zu kB, more than kdindex.ivf_table_mem: per-list tables",
								 RelationGetRelationName(index), bytes / 1024)));
		return NULL;
	}
	while (tables_in_use() + (t ? 0 : bytes) > limit)
		evict_one(t);
	if (t)
	{
		t->last_used = ++ivf_tables_clock;
		return t;
	}

	/* in a context of the query until complete: an error leaves no half-built slot */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex IVF tables", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	base = palloc(sizeof(float) * q->m * q->ksub);
	zero = palloc0(sizeof(float) * q->dim);
	q->ops->compute_lut(q, zero, KD_METRIC_L2, base, &base_bias);
	pfree(zero);
	t = new_slot();
	t->node = index->rd_node;
	t->generation = meta->generation;
	t->last_used = ++ivf_tables_clock;
	t->bytes = bytes;
	t->nlists = q->nlists;
	t->lutsize = q->m * q->ksub;
	t->base = base;
	t->base_bias = base_bias;
	t->terms = MemoryContextAllocHuge(cxt, sizeof(float) * t->lutsize * t->nlists);
	t->term_biases = palloc(sizeof(float) * t->nlists);
	t->ready = palloc0(sizeof(bool) * t->nlists);
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, TopMemoryContext);
	t->cxt = cxt;
	ereport(DEBUG1,
			(errmsg_internal("kdindex: precomputed IVF tables for index \"%s\": %d lists, %zu kB",
							 RelationGetRelationName(index), t->nlists, bytes / 1024)));
	return t;
}

/* List l's term: lut(0, L2) - 2 lut(c_l, IP) */
static void
compute_term(KdIvfTables *t, const KdQuantizer *q, int l)
{
	float	   *term = t->terms + (Size) l * t->lutsize;
	float		bias;

	q->ops->compute_lut(q, q->centroids + (Size) l * q->dim, KD_METRIC_IP, term, &bias);
	for (int k = 0; k < t->lutsize; k++)
		term[k] = t->base[k] - 2 * term[k];
	t->term_biases[l] = t->base_bias - 2 * bias;
	t->ready[l] = true;
}

/*
 * The query's table shared by the lists: lut(q, IP), doubled under L2 and
 * cosine.  Built once per query (rescan clears it).
 */
static void
query_table(KdScanOpaque so, const KdQuantizer *q)
{
	float		factor = so->metric == KD_METRIC_IP ? 1 : 2;

	if (so->ivf_qlut)
		return;
	so->ivf_qlut = MemoryContextAlloc(so->querycxt, sizeof(float) * so->lutsize);
	q->ops->compute_lut(q, so->unit, KD_METRIC_IP, so->ivf_qlut, &so->ivf_qbias);
	for (int k = 0; k < q->m * q->ksub; k++)
		so->ivf_qlut[k] *= factor;
	so->ivf_qbias *= factor;
}

/*
 * The lookup tables (n x lutsize) and biases that score the codes of the n
 * lists, for the scan's query: from the precomputed terms where there are,
 * else built per list from q - c (kd_ivf_list_lut).  Each table's first
 * m x ksub entries; the row term's, after them, are the caller's.
 */
void
kd_ivf_scan_luts(IndexScanDesc scan, const int32 *lists, int n, float *luts, float *biases)
{
	KdScanOpaque so = (KdScanOpaque) scan->opaque;
	KdQuantizer *q = kd_get_quantizer(scan->indexRelation, &so->meta);
	KdIvfTables *t = NULL;

	Size		base = (Size) q->m * q->ksub;

	Assert(so->lutsize >= base);
	if (q->nlists > 0 && (so->metric == KD_METRIC_L2 || so->metric == KD_METRIC_COSINE))
		t = get_tables(scan->indexRelation, &so->meta, q);
	if (t == NULL && !(q->nlists > 0 && so->metric == KD_METRIC_IP))
	{
		for (int i = 0; i < n; i++)
			kd_ivf_list_lut(q, so->unit, so->metric, lists[i], luts + (Size) i * so->lutsize, &biases[i]);
		return;
	}

	query_table(so, q);
	for (int i = 0; i < n; i++)
	{
		int			l = lists[i];
		const float *c = q->centroids + (Size) l * q->dim;
		float	   *lut = luts + (Size) i * so->lutsize;

		CHECK_FOR_INTERRUPTS();
		if (t == NULL)
		{
			/* inner product: -q.(c + r̂) */
			memcpy(lut, so->ivf_qlut, sizeof(float) * base);
			biases[i] = so->ivf_qbias - kd_dot(so->unit, c, q->dim);
			continue;
		}
		if (!t->ready[l])
			compute_term(t, q, l);
		kd_add_floats(lut, so->ivf_qlut, t->terms + (Size) l * t->lutsize, t->lutsize);
		biases[i] = kd_l2sq(so->unit, c, q->dim) + so->ivf_qbias + t->term_biases[l];
	}
}
