/*
 * vacuum.c — bulk delete of dead TIDs, page recycling, cleanup statistics.
 *
 * Each data page is compacted in place (tuples are fixed size, so the
 * survivors just slide down, as contrib/bloom does).  A page left empty is
 * unlinked from its chain, and the first page left with room becomes the
 * chain's insert cursor, so inserts refill every page with room before the
 * chain grows.  Both are published under the meta page's lock and only while
 * the index is at the generation the walk began in: a self-training or
 * kdindex_train may have switched it to new chains meanwhile, and no page of
 * a retired chain may reach the new one.
 *
 * An unlinked page keeps its link to the next page, so a scan standing on it
 * goes on, and is marked free with the next transaction id.  It goes to the
 * free space map, where kd_new_buffer finds it, once no scan that began
 * before the unlink can reach it: when no snapshot is that old (nbtree's
 * rule), or when no other transaction holds a lock on the index at all.  The
 * chains a retrain replaced are recycled by the same rule.  The cleanup reads
 * every page to find them, as nbtree does, which also rebuilds the free space
 * map after a crash (it is not WAL-logged).
 */
#include "postgres.h"

#include "access/transam.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/indexfsm.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "utils/snapmgr.h"

#include "kdindex.h"

/*
 * A chain's head, tail and insert cursor live on its holder page: the meta
 * page (the flat chain, list < 0) or a list directory page
 */
typedef struct KdChainRef
{
	const KdMetaPageData *meta; /* as the walk began */
	int			list;
	Buffer		metabuf;
	Buffer		holder;
} KdChainRef;

/*
 * Lock the meta page and the chain's holder exclusively (the order inserts
 * use); false, with nothing locked, when the index switched generation.
 */
static bool
lock_holder(Relation index, KdChainRef *c)
{
	c->metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(c->metabuf, BUFFER_LOCK_EXCLUSIVE);
	if (KdPageGetMeta(BufferGetPage(c->metabuf))->generation != c->meta->generation)
	{
		UnlockReleaseBuffer(c->metabuf);
		return false;
	}
	c->holder = c->metabuf;
	if (c->list >= 0)
	{
		c->holder = kd_list_buffer(index, c->meta, c->list);
		LockBuffer(c->holder, BUFFER_LOCK_EXCLUSIVE);
	}
	return true;
}

static void
unlock_holder(KdChainRef *c)
{
	if (c->holder != c->metabuf)
		UnlockReleaseBuffer(c->holder);
	UnlockReleaseBuffer(c->metabuf);
}

/*
 * Unlink blkno, which the walk left empty, from its chain; prev is the page
 * before it (invalid: it is the head).  False, changing nothing, when the
 * index switched generation or an insert refilled the page meanwhile.  *next
 * gets the page after it.
 */
static bool
unlink_page(Relation index, KdChainRef *c, BlockNumber prev, BlockNumber blkno, BlockNumber *next)
{
	Buffer		prevbuf = InvalidBuffer;
	Buffer		buf;
	Page		page;
	KdChainEnds ends;
	bool		ok;

	if (!lock_holder(index, c))
		return false;
	if (BlockNumberIsValid(prev))
	{
		prevbuf = ReadBuffer(index, prev);
		LockBuffer(prevbuf, BUFFER_LOCK_EXCLUSIVE);
	}
	buf = ReadBuffer(index, blkno);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	page = BufferGetPage(buf);
	kd_chain_get(BufferGetPage(c->holder), c->list, &ends);
	ok = (KdPageGetOpaque(page)->flags & KDINDEX_PAGE_DATA) && KdPageGetOpaque(page)->ntuples == 0 &&
		(BufferIsValid(prevbuf) ? KdPageGetOpaque(BufferGetPage(prevbuf))->nextblkno == blkno
		 : ends.head == blkno);
	if (ok)
	{
		GenericXLogState *state = GenericXLogStart(index);

		*next = KdPageGetOpaque(page)->nextblkno;
		if (BufferIsValid(prevbuf))
			KdPageGetOpaque(GenericXLogRegisterBuffer(state, prevbuf, 0))->nextblkno = *next;
		else
			ends.head = *next;
		if (ends.tail == blkno)
			ends.tail = prev;
		if (ends.cursor == blkno)
			ends.cursor = *next;
		kd_chain_set(GenericXLogRegisterBuffer(state, c->holder, 0), c->list, &ends);
		kd_page_set_free(GenericXLogRegisterBuffer(state, buf, 0), ReadNextFullTransactionId());
		GenericXLogFinish(state);
	}
	UnlockReleaseBuffer(buf);
	if (BufferIsValid(prevbuf))
		UnlockReleaseBuffer(prevbuf);
	unlock_holder(c);
	return ok;
}

/* Inserts start at room, the first page of the chain the walk left room on */
static void
publish_room(Relation index, KdChainRef *c, BlockNumber room)
{
	KdChainEnds ends;

	if (!BlockNumberIsValid(room) || !lock_holder(index, c))
		return;
	kd_chain_get(BufferGetPage(c->holder), c->list, &ends);
	if (ends.cursor != room && room != ends.tail)
	{
		GenericXLogState *state = GenericXLogStart(index);

		ends.cursor = room;
		kd_chain_set(GenericXLogRegisterBuffer(state, c->holder, 0), c->list, &ends);
		GenericXLogFinish(state);
	}
	unlock_holder(c);
}

/*
 * Walk one chain from head; remove the tuples callback reports dead when it
 * is set, and unlink the pages left empty.  Returns the first page left with
 * room, or InvalidBlockNumber.
 */
static BlockNumber
walk_chain(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
		   IndexBulkDeleteCallback callback, void *callback_state, const KdLayout *layout,
		   KdChainRef *c, BlockNumber head)
{
	Relation	index = info->index;
	BlockNumber prev = InvalidBlockNumber;
	BlockNumber blkno = head;
	BlockNumber room = InvalidBlockNumber;

	while (blkno != InvalidBlockNumber)
	{
		Buffer		buf;
		Page		page;
		int			ntup;
		int			kept = 0;
		BlockNumber next;

		vacuum_delay_point();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, info->strategy);
		LockBuffer(buf, callback ? BUFFER_LOCK_EXCLUSIVE : BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		ntup = KdPageGetOpaque(page)->ntuples;

		if (callback)
		{
			GenericXLogState *state = GenericXLogStart(index);
			Page		wpage = GenericXLogRegisterBuffer(state, buf, 0);

			for (int i = 0; i < ntup; i++)
			{
				if (callback(kd_tuple_tid(wpage, layout, i), callback_state))
				{
					stats->tuples_removed++;
					continue;
				}
				if (kept != i)
					kd_tuple_move(wpage, layout, i, kept);
				kept++;
			}
			if (kept < ntup)
			{
				kd_page_set_ntuples(wpage, layout, kept);
				GenericXLogFinish(state);
			}
			else
				GenericXLogAbort(state);
		}
		else
			kept = ntup;

		stats->num_index_tuples += kept;
		next = KdPageGetOpaque(page)->nextblkno;
		UnlockReleaseBuffer(buf);

		if (callback && kept == 0 && unlink_page(index, c, prev, blkno, &next))
			stats->pages_newly_deleted++;
		else
		{
			if (kept < layout->capacity && !BlockNumberIsValid(room))
				room = blkno;
			prev = blkno;
		}
		blkno = next;
	}
	return room;
}

/* Every chain of the generation meta describes: the flat one, or the lists */
static void
vacuum_chains(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			  IndexBulkDeleteCallback callback, void *callback_state, const KdMetaPageData *meta)
{
	int			nchains = kd_nchains(meta);
	BlockNumber *heads = palloc(sizeof(BlockNumber) * nchains);
	KdLayout	layout;
	KdChainRef	c;

	kd_layout(&layout, meta);
	kd_read_list_heads(info->index, meta, heads);
	c.meta = meta;
	for (int l = 0; l < nchains; l++)
	{
		BlockNumber room;

		c.list = meta->nlists > 0 ? l : -1;
		room = walk_chain(info, stats, callback, callback_state, &layout, &c, heads[l]);
		if (callback)
			publish_room(info->index, &c, room);
	}
	pfree(heads);
}

/*
 * An untrained index can train itself in an insert that runs alongside (it
 * takes the table's ShareUpdateExclusiveLock, which VACUUM holds, so only
 * until VACUUM starts), and copy TIDs this pass has not reached yet into its
 * new chain: when the generation changed, the new chain is cleaned too.
 */
IndexBulkDeleteResult *
kd_bulkdelete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			  IndexBulkDeleteCallback callback, void *callback_state)
{
	KdMetaPageData meta;
	uint32		generation;

	if (stats == NULL)
		stats = palloc0(sizeof(IndexBulkDeleteResult));
	do
	{
		kd_read_meta(info->index, &meta);
		generation = meta.generation;
		stats->num_index_tuples = 0;
		vacuum_chains(info, stats, callback, callback_state, &meta);
		kd_read_meta(info->index, &meta);
	} while (meta.generation != generation);
	stats->num_pages = RelationGetNumberOfBlocks(info->index);
	return stats;
}

/*
 * No other transaction holds a lock on the index, so none is in a scan of it:
 * a scan that begins from now on reads the chains as they are.  Scans on a
 * hot standby hold no lock here; a standby that reports its oldest snapshot
 * through a replication slot keeps the snapshot rule in force instead.
 */
static bool
index_unused(Relation index)
{
	LOCKTAG		tag;
	int			n;
	TransactionId slot_xmin;
	TransactionId slot_catalog_xmin;

	ProcArrayGetReplicationSlotXmin(&slot_xmin, &slot_catalog_xmin);
	if (TransactionIdIsValid(slot_xmin))
		return false;
	SET_LOCKTAG_RELATION(tag, MyDatabaseId, RelationGetRelid(index));
	(void) GetLockConflicts(&tag, AccessExclusiveLock, &n);
	return n == 0;
}

/* Can pages freed when xid was the next transaction id be reused? */
static bool
recyclable(Relation index, FullTransactionId xid, bool unused)
{
	return unused || GlobalVisCheckRemovableFullXid(index, xid);
}

/*
 * Mark every page of a chain free, for the page scan to record.  A chain of
 * list directory pages (a retired IVF generation) frees its lists first.
 */
static void
free_chain(Relation index, BlockNumber blkno)
{
	while (blkno != InvalidBlockNumber)
	{
		Buffer		buf = ReadBuffer(index, blkno);
		GenericXLogState *state;
		BlockNumber next;

		vacuum_delay_point();
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		if (KdPageGetOpaque(BufferGetPage(buf))->flags & KDINDEX_PAGE_LISTS)
		{
			int			n = KdPageGetOpaque(BufferGetPage(buf))->ntuples;
			KdListEntry *entries = palloc(sizeof(KdListEntry) * Max(n, 1));

			memcpy(entries, PageGetContents(BufferGetPage(buf)), sizeof(KdListEntry) * n);
			LockBuffer(buf, BUFFER_LOCK_UNLOCK);
			for (int l = 0; l < n; l++)
				free_chain(index, entries[l].head);
			pfree(entries);
			LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
		}
		next = KdPageGetOpaque(BufferGetPage(buf))->nextblkno;
		state = GenericXLogStart(index);
		kd_init_page(GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE), KDINDEX_PAGE_FREE);
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);
		blkno = next;
	}
}

/*
 * Free the retired chains no scan can reach any more.  They leave the meta
 * page first: a crash in between leaks their pages rather than letting a
 * later VACUUM walk pages that were reused.
 */
static void
recycle_retired(Relation index, bool unused)
{
	KdMetaPageData meta;
	KdRetiredChains done[KDINDEX_MAX_RETIRED];
	int			ndone = 0;
	Buffer		metabuf;
	GenericXLogState *state;
	KdMetaPage	wmeta;

	kd_read_meta(index, &meta);
	if (meta.nretired == 0)
		return;
	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	for (int i = 0; i < wmeta->nretired;)
	{
		if (recyclable(index, wmeta->retired[i].xid, unused))
		{
			done[ndone++] = wmeta->retired[i];
			wmeta->retired[i] = wmeta->retired[--wmeta->nretired];
		}
		else
			i++;
	}
	if (ndone > 0)
		GenericXLogFinish(state);
	else
		GenericXLogAbort(state);
	UnlockReleaseBuffer(metabuf);

	for (int i = 0; i < ndone; i++)
	{
		free_chain(index, done[i].data_head);
		free_chain(index, done[i].blob_head);
	}
}

/*
 * Read every page; record the free ones (and new ones an error left behind)
 * in the free space map, those unlinked since as soon as they are safe.
 */
static void
recycle_pages(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Relation	index = info->index;
	bool		unused = index_unused(index);
	BlockNumber nblocks;

	recycle_retired(index, unused);
	/* a page added from now on is locked by its extender until written */
	if (!RELATION_IS_LOCAL(index))
		LockRelationForExtension(index, ExclusiveLock);
	nblocks = RelationGetNumberOfBlocks(index);
	if (!RELATION_IS_LOCAL(index))
		UnlockRelationForExtension(index, ExclusiveLock);

	stats->pages_deleted = stats->pages_free = 0;
	for (BlockNumber blkno = KDINDEX_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buf;
		Page		page;
		FullTransactionId xid;

		vacuum_delay_point();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, info->strategy);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		if (PageIsNew(page) || (KdPageGetOpaque(page)->flags & KDINDEX_PAGE_FREE))
		{
			xid = PageIsNew(page) ? InvalidFullTransactionId : kd_page_free_xid(page);
			stats->pages_deleted++;
			if (FullTransactionIdIsValid(xid) && recyclable(index, xid, unused))
			{
				/* no scan can reach it: forget the id (only VACUUM frees pages) */
				GenericXLogState *state;

				LockBuffer(buf, BUFFER_LOCK_UNLOCK);
				LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
				state = GenericXLogStart(index);
				kd_init_page(GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE),
							 KDINDEX_PAGE_FREE);
				GenericXLogFinish(state);
				xid = InvalidFullTransactionId;
			}
			if (!FullTransactionIdIsValid(xid))
			{
				RecordFreeIndexPage(index, blkno);
				stats->pages_free++;
			}
		}
		UnlockReleaseBuffer(buf);
	}
	IndexFreeSpaceMapVacuum(index);
}

IndexBulkDeleteResult *
kd_vacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	if (info->analyze_only)
		return stats;
	if (stats == NULL)
	{
		/* no bulk delete ran: count the tuples */
		KdMetaPageData meta;

		stats = palloc0(sizeof(IndexBulkDeleteResult));
		kd_read_meta(info->index, &meta);
		vacuum_chains(info, stats, NULL, NULL, &meta);
	}
	recycle_pages(info, stats);
	stats->num_pages = RelationGetNumberOfBlocks(info->index);
	stats->estimated_count = false;
	return stats;
}
