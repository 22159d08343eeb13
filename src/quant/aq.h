/*
 * aq.h — what aq.c (encoding, the alternations) takes from aqstart.c (the
 * residual start of training).
 */
#ifndef KD_AQ_H
#define KD_AQ_H

#include "quant/quantizer.h"

extern void kd_aq_residual_start(const KdQuantizer *q, const float *x, int64 n,
								 float *codebooks, float *cnorms);
extern double kd_aq_start_memory(const KdQuantizer *q, int64 n);

#endif
