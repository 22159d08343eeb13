/*
 * vacuum.c — bulk delete of dead TIDs and cleanup statistics.
 *
 * Each data page is compacted in place (tuples are fixed size, so the
 * survivors just slide down, as contrib/bloom does).  Pages that end up with
 * room are remembered in the meta page for inserts to refill; pages stay in
 * their chain, so no scan ever loses its way.
 */
#include "postgres.h"

#include "commands/vacuum.h"
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

IndexBulkDeleteResult *
kd_vacuumcleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	if (info->analyze_only)
		return stats;
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
