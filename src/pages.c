/*
 * pages.c — page initialisation, the meta page, and the codebook blob that
 * spans a chain of pages.  Every page written here goes through GenericXLog.
 */
#include "postgres.h"

#include "access/transam.h"
#include "storage/indexfsm.h"
#include "storage/lmgr.h"

#include "kdindex.h"

void
kd_init_page(Page page, uint16 flags)
{
	KdPageOpaque opaque;

	PageInit(page, BLCKSZ, sizeof(KdPageOpaqueData));
	opaque = KdPageGetOpaque(page);
	opaque->nextblkno = InvalidBlockNumber;
	opaque->ntuples = 0;
	opaque->flags = flags;
	opaque->page_id = KDINDEX_PAGE_ID;
}

/*
 * An unlinked page: free, but scans that began before may still stand on it,
 * so it keeps its link to the next page and records the next transaction id,
 * for VACUUM to tell when it can be reused (pd_lower covers the id until
 * then).
 */
void
kd_page_set_free(Page page, FullTransactionId xid)
{
	KdPageOpaque opaque = KdPageGetOpaque(page);

	opaque->flags = KDINDEX_PAGE_FREE;
	opaque->ntuples = 0;
	memcpy(PageGetContents(page), &xid, sizeof(xid));
	((PageHeader) page)->pd_lower =
		((char *) PageGetContents(page) - (char *) page) + sizeof(xid);
}

/*
 * The id an unlinked page waits for, or invalid when the page is free to
 * reuse (or is no free page at all)
 */
FullTransactionId
kd_page_free_xid(Page page)
{
	FullTransactionId xid = InvalidFullTransactionId;

	if ((KdPageGetOpaque(page)->flags & KDINDEX_PAGE_FREE) && KdPageGetOpaque(page)->ntuples == 0 &&
		((PageHeader) page)->pd_lower ==
		((char *) PageGetContents(page) - (char *) page) + sizeof(xid))
		memcpy(&xid, PageGetContents(page), sizeof(xid));
	return xid;
}

/*
 * A page for a new chain, returned exclusively locked: one VACUUM recycled
 * (the free space map's word is checked against the page, as bloom does),
 * else a new one at the end of the relation.
 */
Buffer
kd_new_buffer(Relation index, ForkNumber fork)
{
	Buffer		buf;
	bool		lock = !RELATION_IS_LOCAL(index);

	while (fork == MAIN_FORKNUM)
	{
		BlockNumber blkno = GetFreeIndexPage(index);

		if (blkno == InvalidBlockNumber)
			break;
		buf = ReadBuffer(index, blkno);
		if (ConditionalLockBuffer(buf))
		{
			Page		page = BufferGetPage(buf);

			if (PageIsNew(page) ||
				((KdPageGetOpaque(page)->flags & KDINDEX_PAGE_FREE) &&
				 !FullTransactionIdIsValid(kd_page_free_xid(page))))
				return buf;
			LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		}
		ReleaseBuffer(buf);
	}

	if (lock)
		LockRelationForExtension(index, ExclusiveLock);
	buf = ReadBufferExtended(index, fork, P_NEW, RBM_NORMAL, NULL);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	if (lock)
		UnlockRelationForExtension(index, ExclusiveLock);
	return buf;
}

/*
 * Note chains a retrain replaced, for VACUUM to recycle; false (and they
 * stay unused) when the meta page has no room left.
 */
bool
kd_retire_chains(KdMetaPageData *meta, BlockNumber data_head, BlockNumber blob_head)
{
	KdRetiredChains *r;

	if (meta->nretired >= KDINDEX_MAX_RETIRED)
		return false;
	r = &meta->retired[meta->nretired++];
	r->data_head = data_head;
	r->blob_head = blob_head;
	r->xid = ReadNextFullTransactionId();
	return true;
}

void
kd_init_meta(KdMetaPageData *meta, KdMetric metric, KdQuantizerKind quantizer, int m, int nbits)
{
	memset(meta, 0, sizeof(*meta));
	meta->magic = KDINDEX_MAGIC;
	meta->version = KDINDEX_LAYOUT_VERSION_NOTERM;	/* until a quantizer with the term */
	meta->metric = metric;
	meta->quantizer = quantizer;
	meta->m = m;
	meta->nbits = nbits;
	meta->blob_head = InvalidBlockNumber;
	meta->data_head = InvalidBlockNumber;
	meta->data_tail = InvalidBlockNumber;
}

void
kd_chain_get(Page holder, int list, KdChainEnds *ends)
{
	if (list < 0)
	{
		KdMetaPage	meta = KdPageGetMeta(holder);

		ends->head = meta->data_head;
		ends->tail = meta->data_tail;
		ends->cursor = meta->nfree > 0 ? meta->free_pages[0] : InvalidBlockNumber;
	}
	else
	{
		KdListEntry *entry = KdListEntryOf(holder, list);

		ends->head = entry->head;
		ends->tail = entry->tail;
		ends->cursor = entry->free;
	}
}

void
kd_chain_set(Page holder, int list, const KdChainEnds *ends)
{
	if (list < 0)
	{
		KdMetaPage	meta = KdPageGetMeta(holder);

		meta->data_head = ends->head;
		meta->data_tail = ends->tail;
		meta->nfree = BlockNumberIsValid(ends->cursor) ? 1 : 0;
		meta->free_pages[0] = ends->cursor;
	}
	else
	{
		KdListEntry *entry = KdListEntryOf(holder, list);

		entry->head = ends->head;
		entry->tail = ends->tail;
		entry->free = ends->cursor;
	}
}

/* Lay meta out on a page, with pd_lower past it so the hole compresses */
void
kd_write_meta_page(Page page, const KdMetaPageData *meta)
{
	kd_init_page(page, KDINDEX_PAGE_META);
	memcpy(KdPageGetMeta(page), meta, sizeof(KdMetaPageData));
	((PageHeader) page)->pd_lower =
		((char *) KdPageGetMeta(page) + sizeof(KdMetaPageData)) - (char *) page;
}

void
kd_read_meta(Relation index, KdMetaPageData *meta)
{
	Buffer		buf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	Page		page;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	memcpy(meta, KdPageGetMeta(page), sizeof(KdMetaPageData));
	UnlockReleaseBuffer(buf);

	if (meta->magic != KDINDEX_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" is not a kdindex index", RelationGetRelationName(index))));
	if (meta->version < KDINDEX_LAYOUT_VERSION_NOTERM || meta->version > KDINDEX_LAYOUT_VERSION_REFINE)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has layout version %u, this kdindex reads versions %d to %d",
						RelationGetRelationName(index), meta->version,
						KDINDEX_LAYOUT_VERSION_NOTERM, KDINDEX_LAYOUT_VERSION_REFINE),
				 errhint("REINDEX the index.")));
}

/*
 * Write size bytes as a chain of new pages; returns the first block.  Each
 * page is registered before its successor exists, so the link to the next
 * page is set when that page is allocated.
 */
BlockNumber
kd_write_blob(Relation index, const char *data, Size size)
{
	BlockNumber head = InvalidBlockNumber;
	Buffer		buf = kd_new_buffer(index, MAIN_FORKNUM);
	Size		off = 0;

	head = BufferGetBlockNumber(buf);
	for (;;)
	{
		Size		chunk = Min(size - off, (Size) KdBlobPageCapacity);
		Buffer		next = InvalidBuffer;
		GenericXLogState *state;
		Page		page;

		if (off + chunk < size)
			next = kd_new_buffer(index, MAIN_FORKNUM);
		state = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);
		kd_init_page(page, KDINDEX_PAGE_BLOB);
		memcpy(PageGetContents(page), data + off, chunk);
		((PageHeader) page)->pd_lower += chunk;
		if (BufferIsValid(next))
			KdPageGetOpaque(page)->nextblkno = BufferGetBlockNumber(next);
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);
		off += chunk;
		if (!BufferIsValid(next))
			break;
		buf = next;
	}
	return head;
}

char *
kd_read_blob(Relation index, BlockNumber head, Size size)
{
	char	   *data = palloc_extended(size, MCXT_ALLOC_HUGE);
	BlockNumber blkno = head;
	Size		off = 0;

	while (off < size)
	{
		Buffer		buf;
		Page		page;
		Size		chunk = Min(size - off, (Size) KdBlobPageCapacity);

		if (blkno == InvalidBlockNumber)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("codebook chain of index \"%s\" ends early",
							RelationGetRelationName(index))));
		buf = ReadBuffer(index, blkno);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		memcpy(data + off, PageGetContents(page), chunk);
		blkno = KdPageGetOpaque(page)->nextblkno;
		UnlockReleaseBuffer(buf);
		off += chunk;
	}
	return data;
}

/*
 * Decoded quantizers of recently used indexes, so a scan or an insert does
 * not re-read the codebook pages.  Keyed by relfilenode and generation, so
 * REINDEX, TRUNCATE and retraining all miss.  Callers use the quantizer right
 * away (to build a lookup table or encode a row) and never hold it across
 * another kd_get_quantizer call, so eviction is safe.
 */
#define KD_CACHE_SIZE 4

typedef struct KdCacheEntry
{
	RelFileNode node;
	uint32		generation;
	uint64		last_used;
	KdQuantizer *quantizer;
} KdCacheEntry;

static KdCacheEntry kd_cache[KD_CACHE_SIZE];
static uint64 kd_cache_clock;

/* The quantizer described by meta (which must be trained) */
KdQuantizer *
kd_get_quantizer(Relation index, const KdMetaPageData *meta)
{
	KdCacheEntry *victim = &kd_cache[0];
	char	   *blob;
	MemoryContext old;

	Assert(meta->trained);
	for (int i = 0; i < KD_CACHE_SIZE; i++)
	{
		KdCacheEntry *e = &kd_cache[i];

		if (e->quantizer && RelFileNodeEquals(e->node, index->rd_node) &&
			e->generation == meta->generation)
		{
			e->last_used = ++kd_cache_clock;
			return e->quantizer;
		}
		if (e->last_used < victim->last_used)
			victim = e;
	}

	blob = kd_read_blob(index, meta->blob_head, meta->blob_size);
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (victim->quantizer)
		kd_quantizer_free(victim->quantizer);
	victim->quantizer = NULL;
	victim->quantizer = kd_quantizer_deserialize(blob, meta->blob_size);
	MemoryContextSwitchTo(old);
	pfree(blob);
	victim->node = index->rd_node;
	victim->generation = meta->generation;
	victim->last_used = ++kd_cache_clock;
	return victim->quantizer;
}

/*
 * Forget what this backend cached of index, before a build writes it anew.
 * A build starts again at generation 0, and TRUNCATE in the transaction that
 * created the table rebuilds its indexes under the same relfilenode, so
 * (relfilenode, generation) can come back with other codebooks.  Only this
 * backend can have cached those (the table is not committed yet).
 */
void
kd_forget_index(Relation index)
{
	for (int i = 0; i < KD_CACHE_SIZE; i++)
	{
		KdCacheEntry *e = &kd_cache[i];

		if (e->quantizer && RelFileNodeEquals(e->node, index->rd_node))
		{
			kd_quantizer_free(e->quantizer);
			e->quantizer = NULL;
			e->last_used = 0;
		}
	}
	kd_ivf_tables_forget(&index->rd_node);
}

/* Data chains of the index: one per IVF list, or the one flat chain */
int
kd_nchains(const KdMetaPageData *meta)
{
	return meta->nlists > 0 ? meta->nlists : 1;
}

/* The directory page holding list's entry, pinned, not locked */
Buffer
kd_list_buffer(Relation index, const KdMetaPageData *meta, int list)
{
	Assert(list >= 0 && list < meta->nlists);
	return ReadBuffer(index, meta->dir_pages[list / KDINDEX_LISTS_PER_PAGE]);
}

/* The first page of every chain (kd_nchains of them) */
void
kd_read_list_heads(Relation index, const KdMetaPageData *meta, BlockNumber *heads)
{
	if (meta->nlists == 0)
	{
		heads[0] = meta->data_head;
		return;
	}
	for (int l = 0; l < meta->nlists; l += KDINDEX_LISTS_PER_PAGE)
	{
		Buffer		buf = kd_list_buffer(index, meta, l);
		Page		page;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		for (int i = l; i < Min(meta->nlists, l + KDINDEX_LISTS_PER_PAGE); i++)
			heads[i] = KdListEntryOf(page, i)->head;
		UnlockReleaseBuffer(buf);
	}
}

/* Write a new list directory; meta records its pages */
void
kd_write_lists(Relation index, const KdListEntry *entries, int nlists, KdMetaPageData *meta)
{
	Buffer		prev = InvalidBuffer;

	meta->nlists = nlists;
	for (int l = 0; l < nlists; l += KDINDEX_LISTS_PER_PAGE)
	{
		Buffer		buf = kd_new_buffer(index, MAIN_FORKNUM);
		int			n = Min(nlists - l, KDINDEX_LISTS_PER_PAGE);
		GenericXLogState *state = GenericXLogStart(index);
		Page		page = GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE);

		kd_init_page(page, KDINDEX_PAGE_LISTS);
		/* pages linked in order too: a retrain retires the directory as one chain */
		if (BufferIsValid(prev))
			KdPageGetOpaque(GenericXLogRegisterBuffer(state, prev, 0))->nextblkno = BufferGetBlockNumber(buf);
		memcpy(PageGetContents(page), entries + l, sizeof(KdListEntry) * n);
		((PageHeader) page)->pd_lower += sizeof(KdListEntry) * n;
		KdPageGetOpaque(page)->ntuples = n;
		GenericXLogFinish(state);
		meta->dir_pages[l / KDINDEX_LISTS_PER_PAGE] = BufferGetBlockNumber(buf);
		if (BufferIsValid(prev))
			UnlockReleaseBuffer(prev);
		prev = buf;
	}
	if (BufferIsValid(prev))
		UnlockReleaseBuffer(prev);
}

/*
 * The tuple layout of data pages holding codes of code_size bytes
 * (0: untrained, TIDs only), the last refine of them refinement codes; the
 * block layout carries the row term's two nibbles as two more sub-codes
 */
void
kd_layout_for(KdLayout *l, int quantizer, int m, int nbits, int code_size, int refine)
{
	memset(l, 0, sizeof(*l));
	l->m = m + kd_rowterm_subcodes(quantizer, m, nbits, code_size - refine);
	l->code_size = code_size;
	l->blocked = code_size > 0 && nbits == 4 && quantizer != KD_QUANT_AQ;
	l->tupsize = KdTupleSize(code_size);
	if (l->blocked)
	{
		l->blocksize = KDINDEX_BLOCK_ROWS * sizeof(ItemPointerData) + KdFastScanLutSize(l->m);
		l->capacity = (KdPageUsable / l->blocksize) * KDINDEX_BLOCK_ROWS;
	}
	else
		l->capacity = KdPageCapacity(l->tupsize);
}

void
kd_layout(KdLayout *l, const KdMetaPageData *meta)
{
	kd_layout_for(l, meta->quantizer, meta->m, meta->nbits, meta->code_size,
				  meta->version >= KDINDEX_LAYOUT_VERSION_REFINE ? meta->refine : 0);
}

/* Tuple i's code, in row form (nibbles packed two to a byte) */
void
kd_tuple_code(Page page, const KdLayout *l, int i, uint8 *code)
{
	const uint8 *codes;
	int			s = i % KDINDEX_BLOCK_ROWS;

	if (!l->blocked)
	{
		memcpy(code, KdTupleCode(KdPageTuple(page, l->tupsize, i)), l->code_size);
		return;
	}
	codes = kd_block_codes(page, l, i / KDINDEX_BLOCK_ROWS);
	memset(code, 0, l->code_size);
	for (int j = 0; j < l->m; j++)
		kd_code_set(code, 4, j, (codes[j * 16 + s % 16] >> (s < 16 ? 0 : 4)) & 0xF);
}

void
kd_tuple_set(Page page, const KdLayout *l, int i, ItemPointer tid, const uint8 *code)
{
	uint8	   *codes;
	int			s = i % KDINDEX_BLOCK_ROWS;
	int			shift = s < 16 ? 0 : 4;

	memcpy(kd_tuple_tid(page, l, i), tid, sizeof(ItemPointerData));
	if (!l->blocked)
	{
		if (l->code_size > 0)
			memcpy(KdTupleCode(KdPageTuple(page, l->tupsize, i)), code, l->code_size);
		return;
	}
	codes = (uint8 *) kd_block_codes(page, l, i / KDINDEX_BLOCK_ROWS);
	for (int j = 0; j < l->m; j++)
	{
		uint8	   *b = &codes[j * 16 + s % 16];

		*b = (uint8) ((*b & ~(0xF << shift)) | (kd_code_get(code, 4, j) << shift));
	}
}

void
kd_tuple_move(Page page, const KdLayout *l, int from, int to)
{
	uint8	   *codes;
	int			sf = from % KDINDEX_BLOCK_ROWS,
				st = to % KDINDEX_BLOCK_ROWS;

	if (!l->blocked)
	{
		memmove(KdPageTuple(page, l->tupsize, to), KdPageTuple(page, l->tupsize, from), l->tupsize);
		return;
	}
	memmove(kd_tuple_tid(page, l, to), kd_tuple_tid(page, l, from), sizeof(ItemPointerData));
	for (int j = 0; j < l->m; j++)
	{
		uint8		nib;
		uint8	   *b;

		codes = (uint8 *) kd_block_codes(page, l, from / KDINDEX_BLOCK_ROWS);
		nib = (codes[j * 16 + sf % 16] >> (sf < 16 ? 0 : 4)) & 0xF;
		codes = (uint8 *) kd_block_codes(page, l, to / KDINDEX_BLOCK_ROWS);
		b = &codes[j * 16 + st % 16];
		*b = (uint8) ((*b & ~(0xF << (st < 16 ? 0 : 4))) | (nib << (st < 16 ? 0 : 4)));
	}
}

/* Set the page's tuple count; pd_lower follows, so WAL skips the rest */
void
kd_page_set_ntuples(Page page, const KdLayout *l, int n)
{
	Size		used = l->blocked
		? (Size) ((n + KDINDEX_BLOCK_ROWS - 1) / KDINDEX_BLOCK_ROWS) * l->blocksize
		: (Size) n * l->tupsize;

	KdPageGetOpaque(page)->ntuples = n;
	((PageHeader) page)->pd_lower = ((char *) PageGetContents(page) - (char *) page) + used;
}
