/*
 * refine.h — in-index refinement (refine.c): what a scan calls to re-score
 * its candidates by their refinement codes.
 */
#ifndef KDINDEX_REFINE_H
#define KDINDEX_REFINE_H

#include "scan.h"

extern KdRefineScan *kd_refine_begin(KdScanOpaque so, const KdQuantizer *q);
extern void kd_refine_candidates(IndexScanDesc scan, KdCandidate *cands, int n);
extern int64 kd_refine_count(const KdRefineScan *rs);

#endif							/* KDINDEX_REFINE_H */
