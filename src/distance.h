/*
 * distance.h — float kernels shared by the operators, the quantizers and the
 * scan.  distance.c compiles them for baseline x86-64 and for AVX2/AVX-512,
 * picking a clone at load time.
 */
#ifndef KDINDEX_DISTANCE_H
#define KDINDEX_DISTANCE_H

#include "c.h"

extern float kd_l2sq(const float *a, const float *b, int n);
extern float kd_l1(const float *a, const float *b, int n);
extern float kd_dot(const float *a, const float *b, int n);
extern void kd_add_floats(float *restrict out, const float *restrict a, const float *restrict b,
						  int n);
extern bool kd_all_finite(const float *x, int n);
extern int	kd_argmin_dist(const float *base, const float *dots, int k, float *least);
extern void kd_adc_scan(const float *lut, int m, int nbits, const uint8 *codes, int stride,
						int n, float *out);

#endif							/* KDINDEX_DISTANCE_H */
