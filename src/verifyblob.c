/*
 * verifyblob.c — kdindex_verify's check of the codebook blob: its header
 * against the meta page, then that it decodes (verify.c walks the pages and
 * gathers the blob; this file decides whether it is sound).
 */
#include "postgres.h"

#include <math.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "kdindex.h"
#include "verify.h"

/* Raise the corruption of index: ERRCODE_INDEX_CORRUPTED, the index named */
void
kd_corrupt(Relation index, const char *fmt,...)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" is corrupt: %s", RelationGetRelationName(index), buf.data)));
}

/* The blob's magic number at each layout */
static uint32
blob_magic(uint32 version)
{
	if (version == KDINDEX_LAYOUT_VERSION_REFINE)
		return KD_VERIFY_BLOB_MAGIC_REFINE;
	return version == KDINDEX_LAYOUT_VERSION ? KD_VERIFY_BLOB_MAGIC_ROWTERM : KD_VERIFY_BLOB_MAGIC;
}

/*
 * Layout 4: the blob's refinement codes the rows' last refine bytes, and
 * every code decodes to finite values (each codeword of each sub-quantizer:
 * an 8-bit refinement code may hold any byte)
 */
static void
check_refinement(Relation index, const KdMetaPageData *meta, const KdQuantizer *q)
{
	const KdQuantizer *r = q->refine;
	uint8	   *code;
	float	   *x;

	if (r == NULL || r->code_size != meta->refine || r->dim != q->dim)
		kd_corrupt(index, "the codebook blob has a refinement of %d bytes, the meta page says %d",
				r ? r->code_size : 0, meta->refine);
	code = palloc(r->code_size);
	x = palloc(sizeof(float) * r->dim);
	for (int c = 0; c < r->ksub; c++)
	{
		memset(code, c, r->code_size);
		r->ops->decode(r, code, 1, x);
		for (int j = 0; j < r->dim; j++)
			if (!isfinite(x[j]))
				kd_corrupt(index, "refinement codeword %d of sub-quantizer %d is not finite",
						c, j / (r->dim / r->m));
	}
	pfree(code);
	pfree(x);
}

/*
 * Decode the codebook blob.  The header must describe what the meta page
 * does; an error the decoder still raises (the blob is shorter than its
 * parameters) becomes a corruption report.
 */
void
kd_verify_blob(Relation index, const KdMetaPageData *m, const char *blob)
{
	KdVerifyBlobHeader hdr;
	MemoryContext cxt = CurrentMemoryContext;
	KdQuantizer *q = NULL;

	memcpy(&hdr, blob, sizeof(hdr));
	if (hdr.magic != blob_magic(m->version))
		kd_corrupt(index, "the codebook blob has magic number 0x%08X, not 0x%08X", hdr.magic,
				blob_magic(m->version));
	if (hdr.kind != m->quantizer || hdr.dim != m->dim || hdr.m != m->m || hdr.nbits != m->nbits ||
		hdr.nlists != m->nlists || hdr.precision < 0 || hdr.precision > KD_VERIFY_MAX_PRECISION)
		kd_corrupt(index, "the codebook blob describes quantizer %d, dim = %d, m = %d, nbits = %d, %d lists "
				"(precision %d), the meta page quantizer %d, dim = %d, m = %d, nbits = %d, %d lists",
				hdr.kind, hdr.dim, hdr.m, hdr.nbits, hdr.nlists, hdr.precision,
				m->quantizer, m->dim, m->m, m->nbits, m->nlists);

	PG_TRY();
	{
		q = kd_quantizer_deserialize(blob, m->blob_size);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_INTERNAL_ERROR)
			PG_RE_THROW();		/* a cancel, out of memory: not ours to rename */
		/* nothing more is done here: the new error aborts at once */
		FlushErrorState();
		kd_corrupt(index, "the codebook blob does not decode: %s", edata->message);
	}
	PG_END_TRY();

	if (kd_row_code_size(q) != m->code_size || q->nlists != m->nlists)
		kd_corrupt(index, "the codebook blob decodes to codes of %d bytes in %d lists, "
				"the meta page says %d bytes in %d lists", kd_row_code_size(q), q->nlists,
				m->code_size, m->nlists);
	if (m->version == KDINDEX_LAYOUT_VERSION_REFINE)
		check_refinement(index, m, q);
	kd_quantizer_free(q);
}
