/*
 * vacuum.c — bulk delete of dead TIDs and cleanup statistics.
 *
 * Each data page is compacted in place (tuples are fixed size, so the
 * survivors just slide down, as contrib/bloom does).  Pages that end up with
 * room are remembered for inserts to refill: in the meta page for a flat
 * index, one per list in an IVF index's directory.  Pages stay in their
 * chain, so no scan ever loses its way.  Chains a retrain replaced
 * go to the free space map once no scan can still be reading them.
 */
#include "postgres.h"

#include "access/transam.h"
#include "commands/vacuum.h"
#include "storage/indexfsm.h"
#include "utils/snapmgr.h"
#include "miscadmin.h"

#include "kdindex.h"

/*
 * Walk one data chain; remove the tuples callback reports dead when it is
 * set.  Pages left with room go to freepages (up to maxfree of them).
 */
static void
walk_chain(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
		   IndexBulkDeleteCallback callback, void *callback_state, const KdLayout *layout,
		   BlockNumber blkno, BlockNumber *freepages, int *nfree, int maxfree)
{
	Relation	index = info->index;

	while (blkno != InvalidBlockNumber)
	{
		Buffer		buf;
		Page		page;
		int			ntup;
		int			kept = 0;

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
				if (*nfree < maxfree)
					freepages[(*nfree)++] = blkno;
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
}

/* The flat chain: pages with room join the meta page's list */
static void
vacuum_flat(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			IndexBulkDeleteCallback callback, void *callback_state, const KdMetaPageData *meta)
{
	Relation	index = info->index;
	BlockNumber freepages[KDINDEX_MAX_FREE_PAGES + 1];
	int			nfree = 0;
	Buffer		metabuf;
	GenericXLogState *state;
	KdMetaPage wmeta;
	KdLayout	layout;

	kd_layout(&layout, meta);
	walk_chain(info, stats, callback, callback_state, &layout,
			   meta->data_head, freepages, &nfree, lengthof(freepages));
	if (nfree == 0)
		return;
	metabuf = ReadBuffer(index, KDINDEX_METAPAGE_BLKNO);
	LockBuffer(metabuf, BUFFER_LOCK_EXCLUSIVE);
	state = GenericXLogStart(index);
	wmeta = KdPageGetMeta(GenericXLogRegisterBuffer(state, metabuf, 0));
	/* pages already listed stay; add ours (not the tail) while there is room */
	for (int i = 0; i < nfree && wmeta->nfree < KDINDEX_MAX_FREE_PAGES; i++)
	{
		bool		listed = freepages[i] == meta->data_tail;

		for (int j = 0; j < wmeta->nfree; j++)
			listed |= wmeta->free_pages[j] == freepages[i];
		if (!listed)
			wmeta->free_pages[wmeta->nfree++] = freepages[i];
	}
	GenericXLogFinish(state);
	UnlockReleaseBuffer(metabuf);
}

/* Each IVF list: the first page left with room becomes its free page */
static void
vacuum_lists(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			 IndexBulkDeleteCallback callback, void *callback_state, const KdMetaPageData *meta)
{
	Relation	index = info->index;
	BlockNumber *heads = palloc(sizeof(BlockNumber) * meta->nlists);
	KdLayout	layout;

	kd_layout(&layout, meta);
	kd_read_list_heads(index, meta, heads);
	for (int l = 0; l < meta->nlists; l++)
	{
		BlockNumber freepage;
		int			nfree = 0;
		Buffer		dirbuf;

		walk_chain(info, stats, callback, callback_state, &layout,
				   heads[l], &freepage, &nfree, 1);
		if (nfree == 0)
			continue;
		dirbuf = kd_list_buffer(index, meta, l);
		LockBuffer(dirbuf, BUFFER_LOCK_EXCLUSIVE);
		if (!BlockNumberIsValid(KdListEntryOf(BufferGetPage(dirbuf), l)->free))
		{
			GenericXLogState *state = GenericXLogStart(index);

			KdListEntryOf(GenericXLogRegisterBuffer(state, dirbuf, 0), l)->free = freepage;
			GenericXLogFinish(state);
		}
		UnlockReleaseBuffer(dirbuf);
	}
	pfree(heads);
}

static void
scan_chain(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
		   IndexBulkDeleteCallback callback, void *callback_state)
{
	KdMetaPageData meta;

	kd_read_meta(info->index, &meta);
	if (meta.nlists > 0)
		vacuum_lists(info, stats, callback, callback_state, &meta);
	else
		vacuum_flat(info, stats, callback, callback_state, &meta);
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
