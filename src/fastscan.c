/*
 * fastscan.c — the 4-bit fast scan (André, Kermarrec, Le Scouarnec; Faiss's
 * PQ fast scan): PQ and OPQ codes at nbits = 4 are stored in blocks of 32
 * rows (pages.c), their float lookup table is rounded to 8 bits, and one
 * byte shuffle looks up 32 rows' entries of a sub-quantizer at once.
 *
 * Table rounding: each sub-quantizer's 16 entries less their minimum, in
 * steps of one shared scale chosen so the widest range fits in 0..255.  The
 * distance of a code is then bias + scale * (sum of m bytes), the sum exact
 * in 16 bits for any m up to 257.  The rounding error, at most m * scale / 2,
 * is what the exact re-rank absorbs.
 *
 * The AVX2 kernel and the scalar one compute the same integer sums, so the
 * answers do not depend on the CPU; the kernel is picked at the first call.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "common/pg_prng.h"
#include "utils/builtins.h"

#include "kdindex.h"

#ifdef __x86_64__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KD_HAVE_AVX2_KERNEL 1
#endif

/*
 * One sub-quantizer's 16 entries to bytes: min(255, rint((x - lo) / step)).
 * SSE2 (every x86-64) does 4 at a time with the same IEEE division and the
 * same rounding (to nearest even, as rintf), so the bytes are the same.
 */
static inline void
round_row(const float *row, float lo, float step, uint8 *out)
{
#ifdef __x86_64__
	__m128		l = _mm_set1_ps(lo);
	__m128		s = _mm_set1_ps(step);
	__m128i		r[4];

	for (int i = 0; i < 4; i++)
		r[i] = _mm_cvtps_epi32(_mm_div_ps(_mm_sub_ps(_mm_loadu_ps(row + 4 * i), l), s));
	/* non-negative ints to bytes, saturating at 255 */
	_mm_storeu_si128((__m128i *) out, _mm_packus_epi16(_mm_packs_epi32(r[0], r[1]),
													   _mm_packs_epi32(r[2], r[3])));
#else
	for (int k = 0; k < 16; k++)
		out[k] = (uint8) Min(255, rintf((row[k] - lo) / step));
#endif
}

/*
 * Round a float table (m x 16) to bytes (mb x 16, a padding row zero).  An
 * IVF scan rounds one table per probed list, so the scale and each row's
 * minimum are kept in locals: through the pointers, every byte stored could
 * alias them and they would be reloaded for each entry.
 */
void
kd_fastscan_lut(const float *lut, int m, uint8 *qlut, float *scale, float *bias)
{
	float		range = 0;
	double		sum_min = 0;
	float		step;

	for (int j = 0; j < m; j++)
	{
		float		lo = lut[j * 16],
					hi = lut[j * 16];

		for (int k = 1; k < 16; k++)
		{
			lo = Min(lo, lut[j * 16 + k]);
			hi = Max(hi, lut[j * 16 + k]);
		}
		range = Max(range, hi - lo);
		sum_min += lo;
	}
	step = range > 0 ? range / 255 : 1;
	*scale = step;
	*bias = (float) sum_min;
	memset(qlut + m * 16, 0, KdFastScanLutSize(m) - m * 16);
	for (int j = 0; j < m; j++)
	{
		const float *row = lut + j * 16;
		uint8	   *out = qlut + j * 16;
		float		lo = row[0];

		for (int k = 1; k < 16; k++)
			lo = Min(lo, row[k]);
		round_row(row, lo, step, out);
	}
}

static uint32
block_scalar(const uint8 *qlut, int mb, const uint8 *codes, uint16 limit, uint16 *sums)
{
	uint32		below = 0;

	memset(sums, 0, sizeof(uint16) * KDINDEX_BLOCK_ROWS);
	for (int j = 0; j < mb; j++)
	{
		const uint8 *c = codes + j * 16;
		const uint8 *l = qlut + j * 16;

		for (int s = 0; s < 16; s++)
		{
			sums[s] += l[c[s] & 0xF];
			sums[s + 16] += l[c[s] >> 4];
		}
	}
	for (int s = 0; s < KDINDEX_BLOCK_ROWS; s++)
		if (sums[s] <= limit)
			below |= (uint32) 1 << s;
	return below;
}

#ifdef KD_HAVE_AVX2_KERNEL
/*
 * Two sub-quantizers per step: their 16 code bytes side by side in one
 * register (lane 0: j, lane 1: j + 1), and so are their tables, so a shuffle
 * of the low nibbles gives rows 0-15 of both and one of the high nibbles rows
 * 16-31.  Widening bytes to 16 bits would take as many shuffle-port
 * instructions as the lookups, so, as Faiss does, the results are added as
 * 16-bit words (odd row in the high byte) and their high bytes apart; the
 * even rows' sums are recovered at the end (modulo 2^16, which is exact), and
 * the two lanes, two sub-quantizer sets, are added then too.
 */
__attribute__((target("avx2")))
static inline __m256i
rows_in_order(__m256i words, __m256i odd)
{
	__m256i		even = _mm256_sub_epi16(words, _mm256_slli_epi16(odd, 8));
	__m128i		e = _mm_add_epi16(_mm256_castsi256_si128(even), _mm256_extracti128_si256(even, 1));
	__m128i		o = _mm_add_epi16(_mm256_castsi256_si128(odd), _mm256_extracti128_si256(odd, 1));

	return _mm256_set_m128i(_mm_unpackhi_epi16(e, o), _mm_unpacklo_epi16(e, o));
}

__attribute__((target("avx2")))
static uint32
block_avx2(const uint8 *qlut, int mb, const uint8 *codes, uint16 limit, uint16 *sums)
{
	const __m256i nibble = _mm256_set1_epi8(0x0F);
	const __m256i lim = _mm256_set1_epi16((short) limit);
	__m256i		words_lo = _mm256_setzero_si256(),
				odd_lo = _mm256_setzero_si256(),
				words_hi = _mm256_setzero_si256(),
				odd_hi = _mm256_setzero_si256();
	__m256i		rows_lo,
				rows_hi,
				le_lo,
				le_hi;

	for (int j = 0; j < mb; j += 2)
	{
		__m256i		c = _mm256_loadu_si256((const __m256i *) (codes + j * 16));
		__m256i		l = _mm256_loadu_si256((const __m256i *) (qlut + j * 16));
		__m256i		lo = _mm256_shuffle_epi8(l, _mm256_and_si256(c, nibble));
		__m256i		hi = _mm256_shuffle_epi8(l, _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble));

		words_lo = _mm256_add_epi16(words_lo, lo);
		odd_lo = _mm256_add_epi16(odd_lo, _mm256_srli_epi16(lo, 8));
		words_hi = _mm256_add_epi16(words_hi, hi);
		odd_hi = _mm256_add_epi16(odd_hi, _mm256_srli_epi16(hi, 8));
	}
	rows_lo = rows_in_order(words_lo, odd_lo);
	rows_hi = rows_in_order(words_hi, odd_hi);
	_mm256_storeu_si256((__m256i *) sums, rows_lo);
	_mm256_storeu_si256((__m256i *) (sums + 16), rows_hi);

	/*
	 * sum <= limit, unsigned: max(sum, limit) == limit.  Packing the 16-bit
	 * results to bytes interleaves the lanes (rows 0-7, 16-23, 8-15, 24-31);
	 * a 64-bit permute puts them back in row order for the byte mask.
	 */
	le_lo = _mm256_cmpeq_epi16(_mm256_max_epu16(rows_lo, lim), lim);
	le_hi = _mm256_cmpeq_epi16(_mm256_max_epu16(rows_hi, lim), lim);
	return (uint32) _mm256_movemask_epi8(_mm256_permute4x64_epi64(_mm256_packs_epi16(le_lo, le_hi), 0xD8));
}
#endif

typedef uint32 (*KdBlockKernel) (const uint8 *qlut, int mb, const uint8 *codes, uint16 limit,
								 uint16 *sums);

static KdBlockKernel block_kernel;

static void
choose_kernel(void)
{
	block_kernel = block_scalar;
#ifdef KD_HAVE_AVX2_KERNEL
	if (__builtin_cpu_supports("avx2"))
		block_kernel = block_avx2;
#endif
}

/*
 * The 32 rows' sums of a block whose codes start at codes (mb rows of 16
 * bytes), and the bit mask of the rows whose sum is at most limit: a scan
 * looks at those only.
 */
uint32
kd_fastscan_block(const uint8 *qlut, int mb, const uint8 *codes, uint16 limit, uint16 *sums)
{
	if (block_kernel == NULL)
		choose_kernel();
	return block_kernel(qlut, mb, codes, limit, sums);
}

const char *
kd_fastscan_kernel_name(void)
{
	if (block_kernel == NULL)
		choose_kernel();
	return block_kernel == block_scalar ? "scalar" : "avx2";
}

/*
 * kdindex_fastscan_check(blocks, m): the kernel in use against the scalar
 * one on random tables, codes and limits; returns the number of rows whose
 * sum or below-the-limit bit differ.  Anyone may call it, so its work is
 * bounded (a second or so at the limits) and cancellable.
 */
#define KD_FASTSCAN_CHECK_MAX_BLOCKS	100000
PG_FUNCTION_INFO_V1(kdindex_fastscan_check);
Datum
kdindex_fastscan_check(PG_FUNCTION_ARGS)
{
	int			nblocks = PG_GETARG_INT32(0);
	int			m = PG_GETARG_INT32(1);
	int			mb;
	pg_prng_state rng;
	uint8	   *qlut;
	uint8	   *codes;
	int64		differ = 0;

	if (nblocks < 1 || m < 1 || m > 256)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("blocks must be positive and m between 1 and 256")));
	if (nblocks > KD_FASTSCAN_CHECK_MAX_BLOCKS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("blocks must be at most %d, not %d", KD_FASTSCAN_CHECK_MAX_BLOCKS, nblocks)));
	mb = KdFastScanRows(m);
	qlut = palloc(KdFastScanLutSize(m));
	codes = palloc(mb * 16);
	pg_prng_seed(&rng, 42);
	for (int b = 0; b < nblocks; b++)
	{
		uint16		fast[KDINDEX_BLOCK_ROWS],
					slow[KDINDEX_BLOCK_ROWS];
		uint16		limit = (uint16) pg_prng_uint32(&rng);
		uint32		fast_below,
					slow_below;

		CHECK_FOR_INTERRUPTS();

		for (int i = 0; i < mb * 16; i++)
		{
			qlut[i] = (uint8) pg_prng_uint32(&rng);
			codes[i] = (uint8) pg_prng_uint32(&rng);
		}
		fast_below = kd_fastscan_block(qlut, mb, codes, limit, fast);
		slow_below = block_scalar(qlut, mb, codes, limit, slow);
		for (int s = 0; s < KDINDEX_BLOCK_ROWS; s++)
			differ += fast[s] != slow[s] || ((fast_below ^ slow_below) >> s & 1);
	}
	PG_RETURN_INT64(differ);
}

/* kdindex_fastscan_kernel(): the kernel this CPU runs, avx2 or scalar */
PG_FUNCTION_INFO_V1(kdindex_fastscan_kernel);
Datum
kdindex_fastscan_kernel(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(kd_fastscan_kernel_name()));
}
