/*
 * verify.h — what verify.c (the pages and chains of kdindex_verify) shares
 * with verifyblob.c (the codebook blob) and verifyheap.c (heapallindexed).
 */
#ifndef KD_VERIFY_H
#define KD_VERIFY_H

#include "storage/itemptr.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"

#include "kdindex.h"

/*
 * The header kd_quantizer_serialize writes first (quant/quantizer.c keeps its
 * definition to itself).  It is checked against the meta page before the blob
 * is decoded: the decoder trusts it, and a corrupt m or nbits would divide by
 * zero or ask for a giant allocation.
 */
typedef struct KdVerifyBlobHeader
{
	uint32		magic;
	int32		kind;
	int32		dim;
	int32		m;
	int32		nbits;
	int32		precision;
	int32		nlists;
} KdVerifyBlobHeader;

#define KD_VERIFY_BLOB_MAGIC	0x4B44424C	/* "KDBL" */
#define KD_VERIFY_BLOB_MAGIC_ROWTERM	0x4B444232	/* "KDB2": layout 3, with the row term */
#define KD_VERIFY_BLOB_MAGIC_REFINE	0x4B444233	/* "KDB3": layout 4, with refinement */
#define KD_VERIFY_MAX_PRECISION 2

/* heapallindexed: the heap TIDs of the live chains, within maintenance_work_mem */
typedef struct KdVerifyTids
{
	Relation	index;
	uint64	   *tids;			/* block << 16 | offset */
	int64		n;
	int64		max;			/* allocated */
	int64		limit;			/* most maintenance_work_mem holds */
} KdVerifyTids;

extern void kd_corrupt(Relation index, const char *fmt,...) pg_attribute_printf(2, 3) pg_attribute_noreturn();
extern void kd_verify_blob(Relation index, const KdMetaPageData *meta, const char *blob);
extern void kd_verify_tids_init(KdVerifyTids *t, Relation index);
extern void kd_verify_tids_add(KdVerifyTids *t, ItemPointer tid);
extern void kd_verify_heap(KdVerifyTids *t, Relation heap, Snapshot snapshot, bool check_duplicates);

#endif
