/*
 * vacuum.c — bulk delete of dead TIDs and cleanup statistics.
 *
 * Each data page is compacted in place (tuples are fixed size, so the
 * survivors just slide down, as contrib/bloom does).  Pages that end up with
 * room are remembered in the meta page for inserts to refill; pages stay in
 * their chain, so no scan ever loses its way.  Chains a retrain replaced
 * go to the free space map once no scan can still be reading them.
 */
#include "postgres.h"

#include "access/transam.h"
#include "commands/vacuum.h"
#include "storage/indexfsm.h"
#include "utils/snapmgr.h"
#include "miscadmin.h"

#include "kdindex.h"

/* Walk the data chain; remove tuples callback reports dead when it is set */
static void
scan_chain(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
		   IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	KdMetaPageData meta;
	int			tupsize;
	BlockNumber blkno;
	BlockNumber freepages[KDINDEX_MAX_FREE_PAGES];
	int			nfree = 0;

	kd_read_meta(index, &meta);
	tupsize = KdTupleSize(meta.code_size);
	blkno = meta.data_head;
	while (blkno != InvalidBlockNumber)
	{
		Buffer		buf;
		Page		page;
		KdPageOpaque opaque;
		int			ntup;
		int			kept = 0;

		vacuum_delay_point();
		buf = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, info->strategy);
		LockBuffer(buf, callback ? BUFFER_LOCK_EXCLUSIVE : BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		opaque = KdPageGetOpaque(page);
		ntup = opaque->ntuples;

		if (callback)
		{
			GenericXLogState *state = GenericXLogStart(index);
			Page		wpage = GenericXLogRegisterBuffer(state, buf, 0);

			for (int i = 0; i < ntup; i++)
			{
				char	   *tup = KdPageTuple(wpage, tupsize, i);

				if (callback((ItemPointer) tup, callback_state))
				{
					stats->tuples_removed++;
					continue;
				}
				if (kept != i)
					memmove(KdPageTuple(wpage, tupsize, kept), tup, tupsize);
				kept++;
			}
			if (kept < ntup)
			{
				KdPageGetOpaque(wpage)->ntuples = kept;
				((PageHeader) wpage)->pd_lower -= (ntup - kept) * tupsize;
				GenericXLogFinish(state);
				if (blkno != meta.data_tail && nfree < KDINDEX_MAX_FREE_PAGES)
					freepages[nfree++] = blkno;
			}
			else
				GenericXLogAbort(state);
		}
		else
			kept = ntup;

		stats->num_index_tuples += kept;
		blkno = KdPageGetOpaque(page)->nextblkno;
		UnlockReleaseBuffer(buf);
	}

	if (nfree > 0)
	{
		Buffer		metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
		GenericXLogState *state;
		KdMetaPage wmeta;

		LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
		state = GenericXLogStart(index);
		wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
		/* pages already listed stay; add ours while there is room */
		for (int i = 0; i < nfree && wmeta->nfree < KDINDEX_MAX_FREE_PAGES; i++)
		{
			bool		listed = false;

			for (int j = 0; j < wmeta->nfree; j++)
				listed |= wmeta->free_pages[j] == freepages[i];
			if (!listed)
				wmeta->free_pages[wmeta->nfree++] = freepages[i];
		}
		GenericXLogFinish(state);
		UnlockReleaseBuffer(metabuf);
	}
}

/*
 * An untrained index can train itself in an insert that runs alongside, and
 * copy TIDs this pass has not reached yet into its new chain: when the
 * generation changed, the new chain is cleaned too.
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
		scan_chain(info, stats, callback, callback_state);
		kd_read_meta(info->index, &meta);
	} while (meta.generation != generation);
	stats->num_pages = RelationGetNumberOfBlocks(info->index);
	return stats;
}

/* Mark every page of a chain free and tell the free space map */
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
		next = KdPageGetOpaque(BufferGetPage(buf))->nextblkno;
		state = GenericXLogStart(index);
		kd_init_page(GenericXLogRegisterBuffer(state, buf, GENERIC_XLOG_FULL_IMAGE), KDINDEX_PAGE_FREE);
		GenericXLogFinish(state);
		UnlockReleaseBuffer(buf);
		RecordFreeIndexPage(index, blkno);
		blkno = next;
	}
}

/*
 * Recycle the retired chains no snapshot can see any more.  They leave the
 * meta page first: a crash in between leaks their pages rather than letting
 * a later VACUUM walk pages that were reused.
 */
static void
recycle_retired(Relation index)
{
	KdMetaPageData meta;
	KdRetiredChains done[KDINDEX_MAX_RETIRED];
	int			ndone = 0;
	Buffer		metabuf;
	GenericXLogState *state;
	KdMetaPage wmeta;

	kd_read_meta(index, &meta);
	if (meta.nretired == 0)
		return;
	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	for (int i = 0; i < wmeta->nretired;)
	{
		if (GlobalVisCheckRemovableFullXid(index, wmeta->retired[i].xid))
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
	if (ndone > 0)
		IndexFreeSpaceMapVacuum(index);
}

IndexBulkDeleteResult *
kd_vacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	if (info->analyze_only)
		return stats;
	recycle_retired(info->index);
	if (stats == NULL)
	{
		/* no bulk delete ran: count the tuples */
		stats = palloc0(sizeof(IndexBulkDeleteResult));
		scan_chain(info, stats, NULL, NULL);
	}
	stats->num_pages = RelationGetNumberOfBlocks(info->index);
	stats->estimated_count = false;
	return stats;
}
