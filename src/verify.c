/*
 * verify.c — kdindex_verify(idx, heapallindexed): check that an index's pages
 * are sound, in the spirit of amcheck's bt_index_check.
 *
 * It reads the meta page first and holds every later check to it: the
 * codebook chain must hold exactly the blob the meta page sizes, and the blob
 * must decode to the quantizer the meta page describes; every data chain (the
 * flat one or one per IVF list, found through the list directory) must carry
 * data pages with no more tuples than a page holds and valid heap TIDs, and
 * end at the tail the meta page or directory names; the chains retired by a
 * retrain must be chains of the right pages.  No page may be reachable from
 * two places (an array of owners, one per block, catches cycles too).  With
 * heapallindexed, every live row of the table (that the index's predicate
 * admits and whose value is not NULL) must be in the index exactly once.
 *
 * The first problem found is raised as an ERROR with ERRCODE_INDEX_CORRUPTED.
 * Pages no chain reaches and that are neither new nor flagged free (a crash or
 * a cancelled training between writing pages and linking them leaves some)
 * are only counted, in a NOTICE.
 *
 * Locks.  Without heapallindexed, AccessShareLock on the table and the index,
 * as bt_index_check: inserts, scans, VACUUM and training go on meanwhile.
 * Every page is copied under its buffer share lock.  Chains only grow at
 * their end, and the chains of the meta page read first stay intact while
 * the snapshot it registers first is held (VACUUM recycles a retired chain only
 * once no snapshot older than its retirement remains), so what such a chain
 * says is checked as is; what concurrent writers can explain is re-checked
 * before it is reported: a block past the end (the relation grew), pages after
 * a chain's tail (the tail moved on), a problem on a chain retired before the
 * check began (VACUUM may be recycling it: the meta page must still list it).
 * Pages being written for a chain not linked yet look leaked, so leaked pages
 * are only counted when the table is locked against writers.
 *
 * With heapallindexed, ShareLock on the table (as bt_index_parent_check): no
 * insert, VACUUM or training can run, so the index holds still, duplicates
 * and leaked pages are what they seem.  The table is then read with a fresh
 * MVCC snapshot: rows visible to it must be indexed; dead rows still indexed
 * are fine (VACUUM removes them), and recently dead ones need not be (CREATE
 * INDEX CONCURRENTLY does not index them).  A hot standby cannot take
 * ShareLock: there the check runs under AccessShareLock with a snapshot taken
 * before the index is read, which is enough for the missing-row check; the
 * duplicate check is skipped if WAL was replayed meanwhile.
 *
 * Memory: two bytes per index block for the owners, and with heapallindexed
 * eight bytes per indexed row, within maintenance_work_mem.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_am_d.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "kdindex.h"
#include "verify.h"

PG_FUNCTION_INFO_V1(kdindex_verify);

/* Who reached a page (VerifyState.owner) */
#define OWN_NONE			0
#define OWN_META			1
#define OWN_BLOB			2
#define OWN_DIR				3
#define OWN_RETIRED_DATA(i)	(4 + (i))
#define OWN_RETIRED_BLOB(i)	(4 + KDINDEX_MAX_RETIRED + (i))
#define OWN_LIST(l)			(4 + 2 * KDINDEX_MAX_RETIRED + (l))

StaticAssertDecl(OWN_LIST(KDINDEX_MAX_LISTS) <= PG_UINT16_MAX, "page owners fit in uint16");

/* Where a page's contents begin */
#define KD_CONTENTS_OFFSET	((int) MAXALIGN(SizeOfPageHeaderData))

typedef struct VerifyState
{
	Relation	index;
	Relation	heap;
	BufferAccessStrategy strategy;
	bool		stable;			/* the table is locked against writers */
	KdMetaPageData meta;		/* as read first: what the checks hold to */
	KdLayout	layout;			/* of the live chains */
	BlockNumber nblocks;		/* index blocks owner[] covers */
	uint16	   *owner;			/* OWN_* of each block */
	BlockNumber heap_nblocks;
	OffsetNumber max_offset;	/* largest valid heap TID offset */
	KdVerifyTids *tids;			/* heapallindexed: the live chains' TIDs */
} VerifyState;

/* One chain to walk, and what was found on it */
typedef struct ChainWalk
{
	uint16		owner;
	uint16		flags;			/* the flag its pages carry */
	const KdLayout *layout;		/* data chain: its layout; NULL: not known (retired) */
	bool		live;			/* check (and collect) its heap TIDs */
	char	   *blob;			/* codebook chain: gather blob_size bytes here */
	Size		blob_size;
	BlockNumber last;			/* result: its last page */
	Size		blob_read;
} ChainWalk;

static char *
owner_name(VerifyState *vs, uint16 owner)
{
	if (owner == OWN_META)
		return "the meta page";
	if (owner == OWN_BLOB)
		return "the codebook chain";
	if (owner == OWN_DIR)
		return "the list directory";
	if (owner < OWN_RETIRED_BLOB(0))
		return psprintf("retired data chain %d", owner - OWN_RETIRED_DATA(0));
	if (owner < OWN_LIST(0))
		return psprintf("retired codebook chain %d", owner - OWN_RETIRED_BLOB(0));
	if (vs->meta.nlists == 0)
		return "the data chain";
	return psprintf("the data chain of list %d", owner - OWN_LIST(0));
}

/* Whether blkno is a block of the index, which may have grown since we looked */
static bool
in_index(VerifyState *vs, BlockNumber blkno)
{
	BlockNumber nblocks;

	if (blkno < vs->nblocks)
		return true;
	if (blkno == InvalidBlockNumber)
		return false;
	nblocks = RelationGetNumberOfBlocks(vs->index);
	if (blkno >= nblocks)
		return false;
	vs->owner = repalloc_huge(vs->owner, sizeof(uint16) * nblocks);
	memset(vs->owner + vs->nblocks, 0, sizeof(uint16) * (nblocks - vs->nblocks));
	vs->nblocks = nblocks;
	return true;
}

/* Copy block blkno, read under its share lock, to page */
static void
read_page(VerifyState *vs, BlockNumber blkno, Page page)
{
	Buffer		buf = ReadBufferExtended(vs->index, MAIN_FORKNUM, blkno, RBM_NORMAL, vs->strategy);

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(page, BufferGetPage(buf), BLCKSZ);
	UnlockReleaseBuffer(buf);
}

/* Record that owner reached blkno; a problem if someone did already */
static char *
claim(VerifyState *vs, BlockNumber blkno, uint16 owner)
{
	uint16		prev = vs->owner[blkno];

	if (prev == OWN_NONE)
	{
		vs->owner[blkno] = owner;
		return NULL;
	}
	if (prev == owner)
		return psprintf("%s loops back to block %u", owner_name(vs, owner), blkno);
	return psprintf("block %u is on %s and on %s", blkno, owner_name(vs, prev), owner_name(vs, owner));
}

/* A kdindex page of owner, carrying flags */
static char *
check_header(VerifyState *vs, Page page, BlockNumber blkno, uint16 owner, uint16 flags)
{
	KdPageOpaque opaque;

	if (PageIsNew(page))
		return psprintf("block %u of %s is an uninitialized page", blkno, owner_name(vs, owner));
	if (PageGetSpecialSize(page) != MAXALIGN(sizeof(KdPageOpaqueData)))
		return psprintf("block %u of %s has a special area of %u bytes, not %u",
						blkno, owner_name(vs, owner), (unsigned) PageGetSpecialSize(page),
						(unsigned) MAXALIGN(sizeof(KdPageOpaqueData)));
	opaque = KdPageGetOpaque(page);
	if (opaque->page_id != KDINDEX_PAGE_ID)
		return psprintf("block %u of %s has page id 0x%04X, not 0x%04X",
						blkno, owner_name(vs, owner), opaque->page_id, KDINDEX_PAGE_ID);
	if (opaque->flags != flags && (opaque->flags & KDINDEX_PAGE_FREE))
		return psprintf("block %u of %s is marked free", blkno, owner_name(vs, owner));
	if (opaque->flags != flags)
		return psprintf("block %u of %s has flags 0x%04X, not 0x%04X",
						blkno, owner_name(vs, owner), opaque->flags, flags);
	return NULL;
}

/* Tuple count, tuple extent and (live chains) heap TIDs of a data page */
static char *
check_data_page(VerifyState *vs, Page page, BlockNumber blkno, const ChainWalk *w)
{
	int			ntup = KdPageGetOpaque(page)->ntuples;
	const KdLayout *l = w->layout;
	Size		used;

	if (l == NULL)
	{
		/* a retired chain: its layout is gone, TIDs alone take the least room */
		if (ntup > KdPageCapacity(sizeof(ItemPointerData)))
			return psprintf("block %u of %s holds %d tuples, more than a page has room for",
							blkno, owner_name(vs, w->owner), ntup);
		return NULL;
	}
	if (ntup > l->capacity)
		return psprintf("block %u of %s holds %d tuples, more than the %d a page has room for",
						blkno, owner_name(vs, w->owner), ntup, l->capacity);
	used = l->blocked ? (Size) ((ntup + KDINDEX_BLOCK_ROWS - 1) / KDINDEX_BLOCK_ROWS) * l->blocksize
		: (Size) ntup * l->tupsize;
	/* generic WAL treats what lies past pd_lower as a hole */
	if (((PageHeader) page)->pd_lower < KD_CONTENTS_OFFSET + used)
		return psprintf("block %u of %s has pd_lower %u, short of the end of its %d tuples (%zu)",
						blkno, owner_name(vs, w->owner), ((PageHeader) page)->pd_lower, ntup,
						KD_CONTENTS_OFFSET + used);
	if (!w->live)
		return NULL;
	for (int i = 0; i < ntup; i++)
	{
		ItemPointer tid = kd_tuple_tid(page, l, i);
		BlockNumber hblk = ItemPointerGetBlockNumberNoCheck(tid);
		OffsetNumber off = ItemPointerGetOffsetNumberNoCheck(tid);

		if (off < FirstOffsetNumber || off > vs->max_offset)
			return psprintf("tuple %d on block %u of %s has heap TID (%u,%u), an invalid offset",
							i, blkno, owner_name(vs, w->owner), hblk, off);
		/* the table may have grown since we looked */
		if (hblk >= vs->heap_nblocks &&
			hblk >= (vs->heap_nblocks = RelationGetNumberOfBlocks(vs->heap)))
			return psprintf("tuple %d on block %u of %s points to block %u of table \"%s\", "
							"which has %u blocks", i, blkno, owner_name(vs, w->owner), hblk,
							RelationGetRelationName(vs->heap), vs->heap_nblocks);
		if (vs->tids)
			kd_verify_tids_add(vs->tids, tid);
	}
	return NULL;
}

/* A codebook page holds the next part of the blob, all a page holds */
static char *
check_blob_page(VerifyState *vs, Page page, BlockNumber blkno, ChainWalk *w)
{
	Size		chunk;
	int			held = (int) ((PageHeader) page)->pd_lower - KD_CONTENTS_OFFSET;

	if (w->blob == NULL)
		return NULL;			/* a retired codebook: its size is gone */
	chunk = Min(w->blob_size - w->blob_read, (Size) KdBlobPageCapacity);
	if (chunk == 0)
		return psprintf("the codebook chain goes on past its %zu bytes, to block %u",
						w->blob_size, blkno);
	if (held != (int) chunk)
		return psprintf("block %u of the codebook chain holds %d bytes, not %zu",
						blkno, held, chunk);
	memcpy(w->blob + w->blob_read, PageGetContents(page), chunk);
	w->blob_read += chunk;
	return NULL;
}

/* Walk the chain starting at blkno; a problem, or NULL when it is sound */
static char *
walk_chain(VerifyState *vs, BlockNumber blkno, ChainWalk *w)
{
	PGAlignedBlock page;
	BlockNumber prev = InvalidBlockNumber;

	w->last = InvalidBlockNumber;
	w->blob_read = 0;
	while (blkno != InvalidBlockNumber)
	{
		char	   *problem;

		CHECK_FOR_INTERRUPTS();
		if (!in_index(vs, blkno))
		{
			if (prev == InvalidBlockNumber)
				return psprintf("%s begins at block %u, past the end of the index (%u blocks)",
								owner_name(vs, w->owner), blkno, vs->nblocks);
			return psprintf("block %u of %s links to block %u, past the end of the index (%u blocks)",
							prev, owner_name(vs, w->owner), blkno, vs->nblocks);
		}
		if ((problem = claim(vs, blkno, w->owner)) != NULL)
			return problem;
		read_page(vs, blkno, page.data);
		if (!vs->stable && w->flags == KDINDEX_PAGE_DATA &&
			(KdPageGetOpaque(page.data)->flags & KDINDEX_PAGE_FREE) &&
			FullTransactionIdIsValid(kd_page_free_xid(page.data)))
		{
			/* unlinked by a VACUUM running alongside: it still links on */
			blkno = KdPageGetOpaque(page.data)->nextblkno;
			continue;
		}
		problem = check_header(vs, page.data, blkno, w->owner, w->flags);
		if (problem == NULL)
			problem = w->flags == KDINDEX_PAGE_BLOB ? check_blob_page(vs, page.data, blkno, w)
				: check_data_page(vs, page.data, blkno, w);
		if (problem)
			return problem;
		w->last = prev = blkno;
		blkno = KdPageGetOpaque(page.data)->nextblkno;
	}
	if (w->blob && w->blob_read < w->blob_size)
		return psprintf("the codebook chain ends after %zu of its %zu bytes", w->blob_read, w->blob_size);
	return NULL;
}

/* The meta page: block 0, and fields that agree with one another */
static void
check_meta(VerifyState *vs)
{
	PGAlignedBlock page;
	KdMetaPageData *m = &vs->meta;
	char	   *problem;
	int			code_size;

	if (vs->nblocks == 0)
		kd_corrupt(vs->index, "it has no meta page");
	vs->owner[KDINDEX_METAPAGE_BLKNO] = OWN_META;
	read_page(vs, KDINDEX_METAPAGE_BLKNO, page.data);
	if ((problem = check_header(vs, page.data, KDINDEX_METAPAGE_BLKNO, OWN_META, KDINDEX_PAGE_META)))
		kd_corrupt(vs->index, "%s", problem);
	memcpy(m, KdPageGetMeta(page.data), sizeof(KdMetaPageData));

	if (m->magic != KDINDEX_MAGIC)
		kd_corrupt(vs->index, "the meta page has magic number 0x%08X, not 0x%08X", m->magic, KDINDEX_MAGIC);
	if (m->version < KDINDEX_LAYOUT_VERSION_NOTERM || m->version > KDINDEX_LAYOUT_VERSION_REFINE)
		kd_corrupt(vs->index, "the meta page has layout version %u, not %d to %d", m->version,
				KDINDEX_LAYOUT_VERSION_NOTERM, KDINDEX_LAYOUT_VERSION_REFINE);
	if (m->version == KDINDEX_LAYOUT_VERSION_REFINE &&
		(!m->trained || m->refine < 1 || m->refine > KDINDEX_MAX_REFINE || m->refine > m->dim))
		kd_corrupt(vs->index, "the meta page of layout %d has %d refinement bytes (trained: %s, dim = %d)",
				m->version, m->refine, m->trained ? "yes" : "no", m->dim);
	if (m->metric != kd_index_metric(vs->index))
		kd_corrupt(vs->index, "the meta page has metric %d, its operator class %d",
				m->metric, (int) kd_index_metric(vs->index));
	if (m->quantizer < KD_QUANT_PQ || m->quantizer > KD_QUANT_AQ)
		kd_corrupt(vs->index, "the meta page names quantizer %d", m->quantizer);
	if (m->nbits != 4 && m->nbits != 8)
		kd_corrupt(vs->index, "the meta page has nbits = %d", m->nbits);
	if (m->dim < 0 || m->dim > KDINDEX_MAX_DIM || m->m < 0 || m->m > KDINDEX_MAX_DIM)
		kd_corrupt(vs->index, "the meta page has dim = %d and m = %d", m->dim, m->m);
	if (m->nfree > KDINDEX_MAX_FREE_PAGES || m->nretired > KDINDEX_MAX_RETIRED ||
		m->nlists < 0 || m->nlists > KDINDEX_MAX_LISTS)
		kd_corrupt(vs->index, "the meta page lists %u free pages, %u retired chains and %d lists",
				m->nfree, m->nretired, m->nlists);

	code_size = m->trained ? (m->m * m->nbits + 7) / 8 + (m->quantizer == KD_QUANT_AQ ? sizeof(float) : 0) : 0;
	/* layout 3: PQ and OPQ codes may end in the row term's byte; layout 4 may too */
	if (m->version == KDINDEX_LAYOUT_VERSION_REFINE)
		code_size += m->refine;
	if (m->trained && m->version >= KDINDEX_LAYOUT_VERSION && m->quantizer != KD_QUANT_AQ &&
		m->code_size == code_size + 1)
		code_size++;
	if (m->code_size != code_size)
		kd_corrupt(vs->index, "the meta page has codes of %d bytes, not %d", m->code_size, code_size);
	if (m->trained)
	{
		if (m->dim == 0 || m->m == 0 || (m->quantizer != KD_QUANT_AQ && m->dim % m->m != 0))
			kd_corrupt(vs->index, "the meta page of a trained index has dim = %d and m = %d", m->dim, m->m);
		/* (bounded before it is allocated) */
		if (!BlockNumberIsValid(m->blob_head) || m->blob_size < sizeof(KdVerifyBlobHeader) ||
			m->blob_size > (uint64) vs->nblocks * KdBlobPageCapacity)
			kd_corrupt(vs->index, "the meta page of a trained index has a codebook of %u bytes at block %u",
					m->blob_size, m->blob_head);
	}
	else if (BlockNumberIsValid(m->blob_head) || m->nlists > 0)
		kd_corrupt(vs->index, "the meta page of an untrained index has a codebook at block %u and %d lists",
				m->blob_head, m->nlists);
	if (m->nlists > 0 &&
		(BlockNumberIsValid(m->data_head) || BlockNumberIsValid(m->data_tail) || m->nfree > 0))
		kd_corrupt(vs->index, "the meta page of an index with lists has a flat chain from block %u to %u",
				m->data_head, m->data_tail);
	if (BlockNumberIsValid(m->data_head) != BlockNumberIsValid(m->data_tail))
		kd_corrupt(vs->index, "the meta page has a data chain from block %u to block %u", m->data_head, m->data_tail);
	if (!BlockNumberIsValid(m->data_head) && m->nfree > 0)
		kd_corrupt(vs->index, "the meta page lists free pages but no data chain");
	if (m->dim == 0 && BlockNumberIsValid(m->data_head))
		kd_corrupt(vs->index, "the meta page has no dimension but a data chain");

	kd_layout(&vs->layout, m);
	if (m->trained && vs->layout.capacity < 1)
		kd_corrupt(vs->index, "codes of %d bytes do not fit on a page", m->code_size);
}

static void
check_codebook(VerifyState *vs)
{
	ChainWalk	w = {0};
	char	   *problem;

	if (!vs->meta.trained)
		return;
	w.owner = OWN_BLOB;
	w.flags = KDINDEX_PAGE_BLOB;
	w.blob_size = vs->meta.blob_size;
	w.blob = palloc_extended(w.blob_size, MCXT_ALLOC_HUGE);
	if ((problem = walk_chain(vs, vs->meta.blob_head, &w)) != NULL)
		kd_corrupt(vs->index, "%s", problem);
	kd_verify_blob(vs->index, &vs->meta, w.blob);
	pfree(w.blob);
}

/*
 * A walked data chain ends at tail.  Inserts may have linked pages after it
 * since it was read (they move the tail on in the same WAL record); a tail
 * that is not on the chain at all is corruption either way.
 */
static void
check_tail(VerifyState *vs, const ChainWalk *w, BlockNumber tail,
		   BlockNumber (*current_tail) (VerifyState *, int), int list)
{
	if (w->last == tail)
		return;
	if (tail >= vs->nblocks || vs->owner[tail] != w->owner)
		kd_corrupt(vs->index, "%s ends at block %u, but its tail is block %u",
				owner_name(vs, w->owner), w->last, tail);
	if (vs->stable || current_tail(vs, list) == tail)
		kd_corrupt(vs->index, "%s goes on past its tail, block %u, to block %u",
				owner_name(vs, w->owner), tail, w->last);
}

/* The flat chain's tail as the meta page says now */
static BlockNumber
current_flat_tail(VerifyState *vs, int list)
{
	KdMetaPageData meta;

	kd_read_meta(vs->index, &meta);
	return meta.generation == vs->meta.generation ? meta.data_tail : InvalidBlockNumber;
}

/* List list's tail as its directory entry says now */
static BlockNumber
current_list_tail(VerifyState *vs, int list)
{
	PGAlignedBlock page;

	read_page(vs, vs->meta.dir_pages[list / KDINDEX_LISTS_PER_PAGE], page.data);
	return KdListEntryOf(page.data, list)->tail;
}

/* One live data chain: list (0 when flat), from head to tail */
static void
check_data_chain(VerifyState *vs, int list, BlockNumber head, BlockNumber tail,
				 BlockNumber (*current_tail) (VerifyState *, int))
{
	ChainWalk	w = {0};
	char	   *problem;

	w.owner = OWN_LIST(list);
	w.flags = KDINDEX_PAGE_DATA;
	w.layout = &vs->layout;
	w.live = true;
	if ((problem = walk_chain(vs, head, &w)) != NULL)
		kd_corrupt(vs->index, "%s", problem);
	check_tail(vs, &w, tail, current_tail, list);
}

/* A page named as having room for inserts must be a page of the chain */
static void
check_free_page(VerifyState *vs, BlockNumber blkno, int list, const char *who)
{
	if (blkno >= vs->nblocks || vs->owner[blkno] != OWN_LIST(list))
		kd_corrupt(vs->index, "%s names block %u as a page with room, but it is not on %s",
				who, blkno, owner_name(vs, OWN_LIST(list)));
}

static void
check_flat(VerifyState *vs)
{
	KdMetaPageData *m = &vs->meta;

	if (!BlockNumberIsValid(m->data_head))
		return;
	check_data_chain(vs, 0, m->data_head, m->data_tail, current_flat_tail);
	for (int i = 0; i < m->nfree; i++)
		check_free_page(vs, m->free_pages[i], 0, "the meta page");
}

/* The list directory, and every list's chain */
static void
check_lists(VerifyState *vs)
{
	KdMetaPageData *m = &vs->meta;
	int			ndir = (m->nlists + KDINDEX_LISTS_PER_PAGE - 1) / KDINDEX_LISTS_PER_PAGE;
	KdListEntry *entries = palloc(sizeof(KdListEntry) * Max(m->nlists, 1));
	PGAlignedBlock page;

	for (int d = 0; d < ndir; d++)
	{
		BlockNumber blkno = m->dir_pages[d];
		int			n = Min(m->nlists - d * KDINDEX_LISTS_PER_PAGE, KDINDEX_LISTS_PER_PAGE);
		char	   *problem;

		CHECK_FOR_INTERRUPTS();
		if (!in_index(vs, blkno))
			kd_corrupt(vs->index, "list directory page %d is block %u, past the end of the index (%u blocks)",
					d, blkno, vs->nblocks);
		if ((problem = claim(vs, blkno, OWN_DIR)) != NULL)
			kd_corrupt(vs->index, "%s", problem);
		read_page(vs, blkno, page.data);
		if ((problem = check_header(vs, page.data, blkno, OWN_DIR, KDINDEX_PAGE_LISTS)) != NULL)
			kd_corrupt(vs->index, "%s", problem);
		if (KdPageGetOpaque(page.data)->ntuples != n ||
			((PageHeader) page.data)->pd_lower < KD_CONTENTS_OFFSET + sizeof(KdListEntry) * n)
			kd_corrupt(vs->index, "block %u of the list directory holds %d entries (pd_lower %u), not %d",
					blkno, KdPageGetOpaque(page.data)->ntuples, ((PageHeader) page.data)->pd_lower, n);
		memcpy(entries + d * KDINDEX_LISTS_PER_PAGE, PageGetContents(page.data), sizeof(KdListEntry) * n);
	}

	for (int l = 0; l < m->nlists; l++)
	{
		KdListEntry *e = &entries[l];

		if (BlockNumberIsValid(e->head) != BlockNumberIsValid(e->tail) ||
			(!BlockNumberIsValid(e->head) && BlockNumberIsValid(e->free)))
			kd_corrupt(vs->index, "list %d has head block %u, tail block %u and free block %u",
					l, e->head, e->tail, e->free);
		if (!BlockNumberIsValid(e->head))
			continue;
		check_data_chain(vs, l, e->head, e->tail, current_list_tail);
		if (BlockNumberIsValid(e->free))
			check_free_page(vs, e->free, l, psprintf("the directory entry of list %d", l));
	}
	pfree(entries);
}

/* Whether the meta page still lists retired chain r (VACUUM may recycle it) */
static bool
still_retired(VerifyState *vs, const KdRetiredChains *r)
{
	KdMetaPageData meta;

	kd_read_meta(vs->index, &meta);
	for (int i = 0; i < Min(meta.nretired, KDINDEX_MAX_RETIRED); i++)
		if (meta.retired[i].data_head == r->data_head && meta.retired[i].blob_head == r->blob_head)
			return true;
	return false;
}

/* Whether blkno is a list directory page: a retired IVF generation's head */
static bool
is_directory(VerifyState *vs, BlockNumber blkno)
{
	PGAlignedBlock page;

	if (!BlockNumberIsValid(blkno) || !in_index(vs, blkno))
		return false;
	read_page(vs, blkno, page.data);
	return (KdPageGetOpaque(page.data)->flags & KDINDEX_PAGE_LISTS) != 0;
}

/* A retired IVF generation (number i): its directory pages and their lists */
static char *
walk_retired_lists(VerifyState *vs, BlockNumber blkno, int i)
{
	PGAlignedBlock page;
	char	   *problem;

	while (blkno != InvalidBlockNumber)
	{
		KdListEntry *entries = (KdListEntry *) PageGetContents(page.data);
		int			n;

		if (!in_index(vs, blkno))
			return psprintf("%s links to block %u, past the end of the index (%u blocks)",
							owner_name(vs, OWN_RETIRED_DATA(i)), blkno, vs->nblocks);
		if ((problem = claim(vs, blkno, OWN_RETIRED_DATA(i))) != NULL)
			return problem;
		read_page(vs, blkno, page.data);
		if ((problem = check_header(vs, page.data, blkno, OWN_RETIRED_DATA(i), KDINDEX_PAGE_LISTS)) != NULL)
			return problem;
		n = Min(KdPageGetOpaque(page.data)->ntuples, KDINDEX_LISTS_PER_PAGE);
		for (int l = 0; l < n; l++)
		{
			ChainWalk	w = {0};

			w.owner = OWN_RETIRED_DATA(i);
			w.flags = KDINDEX_PAGE_DATA;
			if ((problem = walk_chain(vs, entries[l].head, &w)) != NULL)
				return problem;
		}
		blkno = KdPageGetOpaque(page.data)->nextblkno;
	}
	return NULL;
}

/*
 * The chains a retrain replaced: chains of data and codebook pages, or of
 * list directory pages (an IVF generation) whose lists are data chains
 */
static void
check_retired(VerifyState *vs)
{
	for (int i = 0; i < vs->meta.nretired; i++)
	{
		KdRetiredChains *r = &vs->meta.retired[i];

		for (int blob = 0; blob <= 1; blob++)
		{
			ChainWalk	w = {0};
			BlockNumber head = blob ? r->blob_head : r->data_head;
			char	   *problem;

			w.owner = blob ? OWN_RETIRED_BLOB(i) : OWN_RETIRED_DATA(i);
			w.flags = blob ? KDINDEX_PAGE_BLOB : KDINDEX_PAGE_DATA;
			if (!BlockNumberIsValid(head))
				continue;
			problem = !blob && is_directory(vs, head) ? walk_retired_lists(vs, head, i) :
				walk_chain(vs, head, &w);
			if (problem != NULL && (vs->stable || still_retired(vs, r)))
				kd_corrupt(vs->index, "%s", problem);
		}
	}
}

/*
 * Pages no chain reaches: fine when new (extended, never written) or flagged
 * free (recycled); else leaked.  Only meaningful when nothing is being
 * written: a chain being built is not linked yet.
 */
static void
count_leaked(VerifyState *vs)
{
	PGAlignedBlock page;
	BlockNumber leaked = 0;

	for (BlockNumber blkno = 0; blkno < vs->nblocks; blkno++)
	{
		KdPageOpaque opaque;

		CHECK_FOR_INTERRUPTS();
		if (vs->owner[blkno] != OWN_NONE)
			continue;
		read_page(vs, blkno, page.data);
		if (PageIsNew(page.data))
			continue;
		opaque = KdPageGetOpaque(page.data);
		if (PageGetSpecialSize(page.data) == MAXALIGN(sizeof(KdPageOpaqueData)) &&
			opaque->page_id == KDINDEX_PAGE_ID && opaque->flags == KDINDEX_PAGE_FREE)
			continue;
		leaked++;
	}
	if (leaked > 0)
		ereport(NOTICE,
				(errmsg_plural("index \"%s\" has %u page that no chain reaches",
							   "index \"%s\" has %u pages that no chain reaches",
							   leaked, RelationGetRelationName(vs->index), leaked),
				 errdetail("A crash or a cancelled training between writing pages and linking them leaves such pages behind."),
				 errhint("They are never used; REINDEX reclaims them.")));
}

static void
verify_index(VerifyState *vs, bool heapallindexed)
{
	XLogRecPtr	replayed = RecoveryInProgress() ? GetXLogReplayRecPtr(NULL) : InvalidXLogRecPtr;

	/*
	 * Taken before the index is read: every row it sees was indexed by then,
	 * and the chains the meta page names are not recycled while it is held.
	 */
	Snapshot	snapshot = RegisterSnapshot(GetTransactionSnapshot());

	if (heapallindexed)
	{
		/* as amcheck: an old transaction snapshot may predate a broken HOT chain */
		if (IsolationUsesXactSnapshot() && vs->index->rd_index->indcheckxmin &&
			!TransactionIdPrecedes(HeapTupleHeaderGetXmin(vs->index->rd_indextuple->t_data),
								   snapshot->xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("index \"%s\" cannot be verified using transaction snapshot",
							RelationGetRelationName(vs->index))));
		vs->tids = palloc(sizeof(KdVerifyTids));
		kd_verify_tids_init(vs->tids, vs->index);
	}

	vs->nblocks = RelationGetNumberOfBlocks(vs->index);
	vs->owner = palloc_extended(sizeof(uint16) * Max(vs->nblocks, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	vs->heap_nblocks = RelationGetNumberOfBlocks(vs->heap);
	vs->max_offset = vs->heap->rd_rel->relam == HEAP_TABLE_AM_OID ? MaxHeapTuplesPerPage : MaxOffsetNumber;
	vs->strategy = GetAccessStrategy(BAS_BULKREAD);

	check_meta(vs);
	check_codebook(vs);
	if (vs->meta.nlists > 0)
		check_lists(vs);
	else
		check_flat(vs);
	check_retired(vs);
	if (vs->stable)
		count_leaked(vs);
	if (heapallindexed)
		kd_verify_heap(vs->tids, vs->heap, snapshot, vs->stable || GetXLogReplayRecPtr(NULL) == replayed);
	UnregisterSnapshot(snapshot);
}

Datum
kdindex_verify(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	bool		heapallindexed = PG_GETARG_BOOL(1);
	/* a hot standby cannot take ShareLock */
	bool		stable = heapallindexed && !RecoveryInProgress();
	LOCKMODE	heaplock = stable ? ShareLock : AccessShareLock;
	/* the table's owner, as REINDEX; checked before any lock */
	Oid			heapoid = kd_index_table_checked(indexoid, KD_PRIV_OWNER);
	Relation	heap;
	Relation	index = kd_lock_index(indexoid, heapoid, heaplock, AccessShareLock, &heap);
	MemoryContext cxt;
	MemoryContext old;
	VerifyState vs;

	if (RELATION_IS_OTHER_TEMP(index))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot verify temporary indexes of other sessions")));
	if (!index->rd_index->indisvalid)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot verify index \"%s\"", RelationGetRelationName(index)),
				 errdetail("Index is not valid.")));
	if (!RelationIsPermanent(index) && RecoveryInProgress())
	{
		/* a standby has only the init fork of unlogged relations */
		ereport(NOTICE,
				(errmsg("cannot verify unlogged index \"%s\" during recovery, skipping",
						RelationGetRelationName(index))));
	}
	else
	{
		cxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex verify", ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(cxt);
		memset(&vs, 0, sizeof(vs));
		vs.index = index;
		vs.heap = heap;
		vs.stable = stable;
		verify_index(&vs, heapallindexed);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
	}
	index_close(index, AccessShareLock);
	table_close(heap, heaplock);
	PG_RETURN_VOID();
}
