/*
 * rowterm.h — the per-row error term's levels, shared by rowterm.c (codes,
 * tables, bound) and rowtermfit.c (the weight's fit).
 */
#ifndef KDINDEX_ROWTERM_H
#define KDINDEX_ROWTERM_H

#include <math.h>

#include "quant/quantizer.h"

/* What the levels are of: r, or e = sqrt(r) (inner product) */
static inline float
term_value(const KdRowTerm *t, float r)
{
	return t->root ? sqrtf(r) : r;
}

/* level(b) = lo + step b, in float as the scan's table has it */
static inline float
level_value(const KdRowTerm *t, int b)
{
	return t->lo + t->step * (float) b;
}

extern int	kd_rowterm_level_of(const KdRowTerm *t, float v);

#endif							/* KDINDEX_ROWTERM_H */
