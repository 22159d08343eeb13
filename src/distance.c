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

/*
 * The least of base[j] - 2 dots[j] over j < k, and its index (the first one
 * on ties, as a plain scan's): the nearest of k centroids from one row of
 * sgemm dot products (kd_nearest).  16 lanes keep their own least, in GCC
 * vectors (blends, no branches: a scalar loop's branch mispredicts were most
 * of k-means at 8-float sub-spaces); 2 dots[j] is exact, so a fused
 * multiply-add rounds as the plain expression does.
 */
#define KD_ARGMIN_LANES 16
typedef float kd_v16f __attribute__((vector_size(64)));
typedef int32 kd_v16i __attribute__((vector_size(64)));

KD_CLONES
int
kd_argmin_dist(const float *base, const float *dots, int k, float *least)
{
	kd_v16f		bv;
	kd_v16i		bi = {0},
				jv;
	float		best = INFINITY;
	int			bestj = 0;
	int			j = 0;

	for (int l = 0; l < KD_ARGMIN_LANES; l++)
	{
		bv[l] = INFINITY;
		jv[l] = l;
	}
	for (; j + KD_ARGMIN_LANES <= k; j += KD_ARGMIN_LANES)
	{
		kd_v16f		b,
					d,
					v;
		kd_v16i		lt;

		memcpy(&b, base + j, sizeof(b));
		memcpy(&d, dots + j, sizeof(d));
		v = b - 2 * d;
		lt = v < bv;
		bv = (kd_v16f) (((kd_v16i) v & lt) | ((kd_v16i) bv & ~lt));
		bi = (jv & lt) | (bi & ~lt);
		jv += KD_ARGMIN_LANES;
	}
	for (int l = 0; l < KD_ARGMIN_LANES; l++)
		if (bv[l] < best || (bv[l] == best && bi[l] < bestj))
		{
			best = bv[l];
			bestj = bi[l];
		}
	for (; j < k; j++)
	{
		float		v = base[j] - 2 * dots[j];

		if (v < best)
		{
			best = v;
			bestj = j;
		}
	}
	/* nothing below infinity (or NaN): the first, as a plain scan */
	if (!(best < INFINITY))
	{
		best = base[0] - 2 * dots[0];
		bestj = 0;
	}
	*least = best;
	return bestj;
}

/* out = a + b, n floats (the three do not overlap) */
KD_CLONES
void
kd_add_floats(float *restrict out, const float *restrict a, const float *restrict b, int n)
{
	for (int i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

/*
 * Are all n floats finite?  An OR over the exponent bits, which vectorises
 * (a query's 784 floats checked one by one with isnan and isinf cost 2% of
 * an IVF query).
 */
KD_CLONES
bool
kd_all_finite(const float *x, int n)
{
	uint32		bad = 0;

	for (int i = 0; i < n; i++)
	{
		uint32		bits;

		memcpy(&bits, x + i, sizeof(bits));
		bad |= (bits & 0x7f800000) == 0x7f800000;
	}
	return bad == 0;
}
