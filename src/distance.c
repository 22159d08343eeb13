/*
 * distance.c — distance kernels.
 *
 * Plain loops the compiler vectorises (this file is built with -O3 and
 * reassociation allowed), cloned for AVX2 and AVX-512; the dynamic loader
 * picks the clone the CPU supports, so one .so runs on any x86-64.
 * Elsewhere the plain build is used.
 */
#include "c.h"

#include <math.h>

#include "distance.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* by feature, not "arch=": an arch clone only matches that exact CPU model */
#define KD_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define KD_CLONES
#endif

KD_CLONES
float
kd_l2sq(const float *a, const float *b, int n)
{
	float		s = 0;

	for (int i = 0; i < n; i++)
	{
		float		d = a[i] - b[i];

		s += d * d;
	}
	return s;
}

KD_CLONES
float
kd_l1(const float *a, const float *b, int n)
{
	float		s = 0;

	for (int i = 0; i < n; i++)
		s += fabsf(a[i] - b[i]);
	return s;
}

KD_CLONES
float
kd_dot(const float *a, const float *b, int n)
{
	float		s = 0;

	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/*
 * Asymmetric distance of n codes laid out stride bytes apart: the sum of one
 * lookup-table entry per sub-quantizer.  lut is m x 2^nbits.
 */
void
kd_adc_scan(const float *lut, int m, int nbits, const uint8 *codes, int stride,
			int n, float *out)
{
	if (nbits == 8)
	{
		for (int t = 0; t < n; t++)
		{
			const uint8 *code = codes + (size_t) t * stride;
			const float *l = lut;
			float		s0 = 0,
						s1 = 0;
			int			j;

			/* two chains of additions: the sum is latency-bound, not load-bound */
			for (j = 0; j + 1 < m; j += 2, l += 512)
			{
				s0 += l[code[j]];
				s1 += l[256 + code[j + 1]];
			}
			if (j < m)
				s0 += l[code[j]];
			out[t] = s0 + s1;
		}
	}
	else
	{
		for (int t = 0; t < n; t++)
		{
			const uint8 *code = codes + (size_t) t * stride;
			const float *l = lut;
			float		s = 0;
			int			j;

			for (j = 0; j + 1 < m; j += 2, l += 32)
			{
				s += l[code[j >> 1] & 0xF];
				s += l[16 + (code[j >> 1] >> 4)];
			}
			if (j < m)
				s += l[code[j >> 1] & 0xF];
			out[t] = s;
		}
	}
}
