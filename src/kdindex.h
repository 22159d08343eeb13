/*
 * kdindex.h — page layouts, options and shared declarations of the kdindex
 * access method.
 *
 * An index is: a meta page (block 0), a chain of codebook pages holding the
 * quantizer's parameters as one blob, and a chain of data pages holding
 * fixed-size (heap TID, code) tuples packed densely after the page header, the
 * way contrib/bloom packs its signatures.  Every page change is WAL-logged with
 * GenericXLog (or log_newpage_range after a bulk build).
 */
#ifndef KDINDEX_H
#define KDINDEX_H

#include "postgres.h"

#include "access/amapi.h"
#include "access/generic_xlog.h"
#include "access/reloptions.h"
#include "access/transam.h"
#include "nodes/execnodes.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/relcache.h"

#include "quant/quantizer.h"

#define KDINDEX_MAGIC			0x4B44494E	/* "KDIN" */
/*
 * Layout 3: codes may carry the per-row error term (quantizer.h), and the
 * blob says how.  An index without it (rowterm = off, or built before) is
 * written as layout 2, which older kdindex builds read too.
 */
#define KDINDEX_LAYOUT_VERSION	3
#define KDINDEX_LAYOUT_VERSION_NOTERM	2
/*
 * Layout 4: rows carry refinement codes after their codes (refine.c), the
 * meta page says how many bytes (refine), and the blob holds its parameters.
 * Indexes without refinement are still written as layout 2 or 3.
 */
#define KDINDEX_LAYOUT_VERSION_REFINE	4
#define KdLayoutVersionFor(q) \
	((q)->refine ? KDINDEX_LAYOUT_VERSION_REFINE : \
	 (q)->term.mode != KD_ROWTERM_NONE ? KDINDEX_LAYOUT_VERSION : KDINDEX_LAYOUT_VERSION_NOTERM)

#define KDINDEX_METAPAGE_BLKNO	0

/* Support function numbers (one: the metric of the opclass) */
#define KDINDEX_METRIC_PROC		1
#define KDINDEX_NPROCS			1

/* Strategy: the one ordering operator of an opclass */
#define KDINDEX_DISTANCE_STRATEGY	1

/* pgvector's upper bound, and ours */
#define KDINDEX_MAX_DIM			16000

/* Page flags */
#define KDINDEX_PAGE_META		(1 << 0)
#define KDINDEX_PAGE_BLOB		(1 << 1)
#define KDINDEX_PAGE_DATA		(1 << 2)
#define KDINDEX_PAGE_FREE		(1 << 3)	/* in no chain: recycled, or unlinked and waiting */
#define KDINDEX_PAGE_LISTS		(1 << 4)	/* IVF list directory */

#define KDINDEX_PAGE_ID			0xFF8A

/* Opaque area at the end of every kdindex page */
typedef struct KdPageOpaqueData
{
	BlockNumber nextblkno;		/* next page of this chain */
	uint16		ntuples;		/* data page: tuples stored */
	uint16		flags;
	uint16		unused;
	uint16		page_id;		/* for pg_filedump and friends */
} KdPageOpaqueData;

typedef KdPageOpaqueData *KdPageOpaque;

#define KdPageGetOpaque(page) ((KdPageOpaque) PageGetSpecialPointer(page))

/* Bytes after the page header and before the opaque area */
#define KdPageUsable \
	(BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - MAXALIGN(sizeof(KdPageOpaqueData)))

/*
 * The flat chain's insert cursor, as KdListEntry.free: free_pages[0] when
 * nfree is 1 (layout 2 kept a list of pages with room there; one is enough).
 */
#define KDINDEX_MAX_FREE_PAGES	64

/*
 * Chains replaced by a retrain (data, and codebooks): scans that began
 * before the switch may still read them, so VACUUM recycles their pages only
 * once no snapshot older than the switch (xid) remains, as nbtree does with
 * deleted pages.
 */
#define KDINDEX_MAX_RETIRED		8

typedef struct KdRetiredChains
{
	BlockNumber data_head;
	BlockNumber blob_head;
	FullTransactionId xid;		/* next xid when they were replaced */
} KdRetiredChains;

/*
 * IVF indexes keep one data chain per list; the list directory, an array of
 * these entries on pages the meta page names, says where each begins and
 * ends.  free is the first page of the list that may have room (VACUUM
 * moves it back): inserts try it, then the pages after it, then the tail.
 */
typedef struct KdListEntry
{
	BlockNumber head;
	BlockNumber tail;
	BlockNumber free;
} KdListEntry;

#define KDINDEX_LISTS_PER_PAGE	((int) (KdPageUsable / sizeof(KdListEntry)))
#define KDINDEX_MAX_LISTS		32768
#define KDINDEX_MAX_DIR_PAGES \
	((KDINDEX_MAX_LISTS + KDINDEX_LISTS_PER_PAGE - 1) / KDINDEX_LISTS_PER_PAGE)
#define KdListEntryOf(page, list) \
	((KdListEntry *) PageGetContents(page) + (list) % KDINDEX_LISTS_PER_PAGE)

typedef struct KdMetaPageData
{
	uint32		magic;
	uint32		version;
	uint32		generation;		/* bumped whenever codebooks and codes change */
	int32		dim;			/* 0 until the first vector is seen */
	int16		metric;			/* KdMetric */
	int16		quantizer;		/* KdQuantizerKind */
	int16		m;				/* sub-quantizers */
	int16		nbits;			/* bits per sub-quantizer code */
	int16		code_size;		/* bytes per code; 0 while untrained */
	bool		trained;		/* false: tuples hold TIDs only, scans are exact */
	BlockNumber blob_head;		/* first codebook page, or InvalidBlockNumber */
	uint32		blob_size;		/* bytes of the codebook blob */
	BlockNumber data_head;		/* first data page */
	BlockNumber data_tail;		/* last data page */
	uint16		nfree;			/* 0, or 1: free_pages[0] is the insert cursor */
	BlockNumber free_pages[KDINDEX_MAX_FREE_PAGES];
	float8		train_seconds;	/* training statistics for kdindex_info */
	float8		train_mse;		/* mean squared reconstruction error */
	int64		train_rows;		/* rows in the training sample */
	int64		untrained_rows; /* rows inserted while untrained, for auto-training */
	uint16		nretired;
	KdRetiredChains retired[KDINDEX_MAX_RETIRED];
	/* IVF: 0 lists is one flat chain (data_head, data_tail, free_pages) */
	int32		nlists;
	BlockNumber dir_pages[KDINDEX_MAX_DIR_PAGES];
	int64		autotrain_at;	/* after a failed self-training: retry at this count */
	/* layout 4: refinement bytes at the end of code_size (older layouts: 0) */
	int32		refine;
} KdMetaPageData;

typedef KdMetaPageData *KdMetaPage;

#define KdPageGetMeta(page) ((KdMetaPage) PageGetContents(page))

/*
 * Data tuples.  Row layout: a heap TID followed by the code, no alignment
 * padding, tuple after tuple.  Block layout (PQ and OPQ at nbits = 4, for the
 * fast scan): blocks of 32 rows, their 32 TIDs then, for each sub-quantizer,
 * 16 bytes holding the rows' 4-bit codes (row s in byte s % 16, the low
 * nibble for s < 16), an even number of such rows.  Everything that reads or
 * writes tuples goes through a KdLayout (pages.c).
 */
#define KDINDEX_BLOCK_ROWS		32
#define KdFastScanRows(m)		(((m) + 1) & ~1)
#define KdFastScanLutSize(m)	(KdFastScanRows(m) * 16)

typedef struct KdLayout
{
	bool		blocked;
	int			m;				/* sub-codes: the quantizer's, then the row term's */
	int			code_size;		/* bytes of a code in row form (nibbles packed) */
	int			tupsize;		/* row layout: bytes per tuple */
	int			blocksize;		/* block layout: bytes per block */
	int			capacity;		/* tuples per page */
} KdLayout;

#define KdTupleSize(code_size)	(sizeof(ItemPointerData) + (code_size))
#define KdTupleCode(tup)		((uint8 *) (tup) + sizeof(ItemPointerData))

#define KdPageCapacity(tupsize)	((int) (KdPageUsable / (tupsize)))
#define KdPageTuple(page, tupsize, i) \
	((char *) PageGetContents(page) + (size_t) (i) * (tupsize))

/* Where tuple i's TID is, in either layout (scans call this per row) */
static inline ItemPointer
kd_tuple_tid(Page page, const KdLayout *l, int i)
{
	char	   *contents = (char *) PageGetContents(page);

	if (!l->blocked)
		return (ItemPointer) (contents + (Size) i * l->tupsize);
	return (ItemPointer) (contents + (Size) (i / KDINDEX_BLOCK_ROWS) * l->blocksize +
						  (i % KDINDEX_BLOCK_ROWS) * sizeof(ItemPointerData));
}

/* The codes of block b: KdFastScanRows(m) rows of 16 bytes */
static inline const uint8 *
kd_block_codes(Page page, const KdLayout *l, int block)
{
	return (const uint8 *) PageGetContents(page) + (Size) block * l->blocksize +
		KDINDEX_BLOCK_ROWS * sizeof(ItemPointerData);
}

/* refine: bytes of refinement code per row at most (a row fits a page) */
#define KDINDEX_MAX_REFINE		4096

/* Bytes of blob payload per codebook page */
#define KdBlobPageCapacity	((int) KdPageUsable)

/* Reloptions */
typedef struct KdOptions
{
	int32		vl_len_;		/* varlena header (do not touch directly!) */
	int			quantizer_offset;	/* offset of the quantizer name string */
	int			m;				/* 0: choose from the dimension */
	int			nbits;
	int			sample;			/* training sample rows; 0: 256 per codeword */
	int			iterations;		/* training alternations; 0: the quantizer's default */
	int			beam;			/* AQ beam width; 0: its default */
	bool		distill;		/* distil from sampled rows at build time */
	int			lists;			/* IVF lists; 0: one flat list */
	double		balance;		/* balanced lists: Sinkhorn temperature factor; 0: off */
	int			fillfactor;		/* percent of a data page a build fills */
	bool		rowterm;		/* codes carry the per-row error term */
	int			refine;			/* refinement bytes per row; 0: none */
} KdOptions;

/* GUCs */
extern int	kdindex_rerank;
extern int	kdindex_probes;
extern int	kdindex_max_scan_tuples;
extern int	kdindex_iterative_scan;
extern int	kdindex_max_probes;
extern double kdindex_scan_mem_multiplier;
extern int	kdindex_ivf_table_mem;
extern double kdindex_rerank_margin;
extern int	kdindex_refine_rerank;

/* kdindex.iterative_scan, as pgvector's hnsw.iterative_scan */
typedef enum KdIterativeScan
{
	KD_ITERATIVE_OFF,
	KD_ITERATIVE_RELAXED,
	KD_ITERATIVE_STRICT
} KdIterativeScan;

/* Progress subphases of CREATE INDEX */
#define KDINDEX_PHASE_SAMPLE	2
#define KDINDEX_PHASE_TRAIN		3
#define KDINDEX_PHASE_ENCODE	4
#define KDINDEX_PHASE_DISTILL	5

/* kdindex.c */
extern void _PG_init(void);
extern int	kd_choose_m(int dim, int m);
extern void kd_check_m(KdQuantizerKind quantizer, int dim, int m, int nbits);
extern KdMetric kd_index_metric(Relation index);
extern KdQuantizerKind kd_options_quantizer(Relation index);

/* heap.c */
typedef struct KdHeapFetch KdHeapFetch;

extern KdHeapFetch *kd_heap_fetch_begin(Relation heap, Relation index);
extern bool kd_heap_fetch_value(KdHeapFetch *hf, ItemPointer tid, Snapshot snapshot, Datum *value);
extern void kd_heap_prefetch(KdHeapFetch *hf, const ItemPointerData *tids, int n);
extern void kd_heap_fetch_end(KdHeapFetch *hf);

/* security.c: run table code as VACUUM and REINDEX do */
typedef struct KdSecurityState
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} KdSecurityState;

extern void kd_become_owner(Relation heap, KdSecurityState *save);
extern void kd_restore_user(const KdSecurityState *save);

/* what a function needs on the table of an index */
typedef enum KdPrivilege
{
	KD_PRIV_OWNER,				/* kdindex_train: as REINDEX */
	KD_PRIV_SELECT,				/* kdindex_recall */
	KD_PRIV_STATS				/* kdindex_info: SELECT or pg_stat_scan_tables */
} KdPrivilege;

extern Oid	kd_index_table_checked(Oid indexoid, KdPrivilege need);
extern Relation kd_lock_index(Oid indexoid, Oid heapoid, LOCKMODE heaplock, LOCKMODE indexlock,
							  Relation *heap);
extern void kd_check_select(Oid relid);
extern int	kd_pin_search_path(void);
extern void kd_unpin_search_path(int nestlevel);

/* citus.c: Citus distributed and reference tables, found at run time */
extern bool kd_citus_table(Oid relid);
extern Datum kd_citus_call(FunctionCallInfo fcinfo, const char *fn);

/* info.c */
extern Relation kd_open_index(Oid relid, LOCKMODE lockmode);

/* build.c */
extern IndexBuildResult *kd_build(Relation heap, Relation index, IndexInfo *indexInfo);
extern void kd_buildempty(Relation index);

/* generation.c */
extern void kd_train_in_place(Relation index, Relation heap);
extern void kd_retrain_switch(Relation index, Relation heap, KdQuantizer *trained, const float *x,
							  int64 n, double train_seconds, KdMetaPageData *result);

/*
 * Inserts hold the meta page's heavyweight lock in share mode; training in
 * place holds it exclusively, so it sees every row and waits, cancellably,
 * for inserts under way.
 */
#define KdLockInserts(index)	LockPage((index), KDINDEX_METAPAGE_BLKNO, ShareLock)
#define KdUnlockInserts(index)	UnlockPage((index), KDINDEX_METAPAGE_BLKNO, ShareLock)
#define KdLockTraining(index)	LockPage((index), KDINDEX_METAPAGE_BLKNO, ExclusiveLock)
#define KdUnlockTraining(index) UnlockPage((index), KDINDEX_METAPAGE_BLKNO, ExclusiveLock)
extern int	kd_autotrain_rows(Relation index, int nbits);

/* refine.c: the refine option (the rest in quantizer.h and refine.h) */
extern void kd_refine_check_options(int refine, KdQuantizerKind quantizer, int nbits, int lists);
extern void kd_refine_check_dim(int refine, int dim);

/* insert.c */
extern bool kd_insert(Relation index, Datum *values, bool *isnull, ItemPointer heap_tid,
					  Relation heap, IndexUniqueCheck checkUnique, bool indexUnchanged,
					  IndexInfo *indexInfo);

/* scan.c */
extern IndexScanDesc kd_beginscan(Relation index, int nkeys, int norderbys);
extern void kd_rescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys, int norderbys);
extern bool kd_gettuple(IndexScanDesc scan, ScanDirection dir);
extern void kd_endscan(IndexScanDesc scan);

/* vacuum.c */
extern IndexBulkDeleteResult *kd_bulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
											IndexBulkDeleteCallback callback, void *callback_state);
extern IndexBulkDeleteResult *kd_vacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats);

/* pages.c */
extern void kd_init_page(Page page, uint16 flags);
extern Buffer kd_new_buffer(Relation index, ForkNumber fork);
extern void kd_page_set_free(Page page, FullTransactionId xid);

/* A chain's ends and insert cursor, on the meta page (list < 0) or its directory page */
typedef struct KdChainEnds
{
	BlockNumber head;
	BlockNumber tail;
	BlockNumber cursor;			/* first page inserts try; invalid: the tail */
} KdChainEnds;

extern void kd_chain_get(Page holder, int list, KdChainEnds *ends);
extern void kd_chain_set(Page holder, int list, const KdChainEnds *ends);
extern FullTransactionId kd_page_free_xid(Page page);
extern void kd_read_meta(Relation index, KdMetaPageData *meta);
extern void kd_write_meta_page(Page page, const KdMetaPageData *meta);
extern void kd_init_meta(KdMetaPageData *meta, KdMetric metric, KdQuantizerKind quantizer,
						 int m, int nbits);
extern char *kd_read_blob(Relation index, BlockNumber head, Size size);
extern BlockNumber kd_write_blob(Relation index, const char *data, Size size);
extern void kd_layout_for(KdLayout *l, int quantizer, int m, int nbits, int code_size, int refine);
extern void kd_layout(KdLayout *l, const KdMetaPageData *meta);
extern void kd_tuple_code(Page page, const KdLayout *l, int i, uint8 *code);
extern void kd_tuple_set(Page page, const KdLayout *l, int i, ItemPointer tid, const uint8 *code);
extern void kd_tuple_move(Page page, const KdLayout *l, int from, int to);
extern void kd_page_set_ntuples(Page page, const KdLayout *l, int n);

/* fastscan.c */
extern void kd_fastscan_lut(const float *lut, int m, uint8 *qlut, float *scale, float *bias);
extern uint32 kd_fastscan_block(const uint8 *qlut, int mb, const uint8 *codes, uint16 limit,
								uint16 *sums);
extern const char *kd_fastscan_kernel_name(void);

extern int	kd_nchains(const KdMetaPageData *meta);
extern void kd_read_list_heads(Relation index, const KdMetaPageData *meta, BlockNumber *heads);
extern Buffer kd_list_buffer(Relation index, const KdMetaPageData *meta, int list);
extern void kd_write_lists(Relation index, const KdListEntry *entries, int nlists,
						   KdMetaPageData *meta);
extern bool kd_retire_chains(KdMetaPageData *meta, BlockNumber data_head, BlockNumber blob_head);

extern KdQuantizer *kd_get_quantizer(Relation index, const KdMetaPageData *meta);
extern void kd_forget_index(Relation index);
extern void kd_ivf_tables_forget(const RelFileNode *node);

#endif							/* KDINDEX_H */
