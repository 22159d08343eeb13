/*
 * verify.h — what verify.c (the pages, chains and heap of kdindex_verify)
 * shares with verifyblob.c (the codebook blob).
 */
#ifndef KD_VERIFY_H
#define KD_VERIFY_H

#include "utils/relcache.h"

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

extern void kd_corrupt(Relation index, const char *fmt,...) pg_attribute_printf(2, 3) pg_attribute_noreturn();
extern void kd_verify_blob(Relation index, const KdMetaPageData *meta, const char *blob);

#endif
