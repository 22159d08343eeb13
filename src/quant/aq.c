/*
 * aq.c — additive quantization: x̂ = sum of one codeword from each of m
 * full-dimensional codebooks (Babenko & Lempitsky; Faiss's
 * ResidualQuantizer and LocalSearchQuantizer).
 *
 * Training starts as residual quantization, each stage's codebook k-means of
 * what the previous stages left over (aqstart.c), then alternates,
 * LSQ-style, a least-squares update of the codebooks for the current codes
 * with re-encoding.  Encoding is beam search over the stages.  For a block of
 * rows it uses Faiss's lookup-table form: the distance of a partial code
 * extended by codeword c is
 *   d + ||c||^2 - 2 x.c + 2 sum_{i<j} c_i.c,
 * with x.c for all codewords from one sgemm and the codeword cross products
 * from a table built once per call; a single row (an insert) gets its cross
 * terms from one sgemv per beam entry instead of the table.
 *
 * Codes carry the reconstruction's squared norm as a float after the m code
 * bytes, so L2 distances from codes are exact given x̂:
 *   ||q - x̂||^2 = ||q||^2 - 2 sum_j q.c_j + ||x̂||^2.
 */
#include "postgres.h"

#include <cblas.h>
#include <math.h>

#include "miscadmin.h"

#include "distance.h"
#include "quant/aq.h"

/* beam width of the default encoder */
#define KD_AQ_BEAM 8
/*
 * least-squares / re-encode alternations of the default training: each costs
 * an encode of every row, and after the progressive start (below) one gives
 * Fashion-MNIST (m = 16) 466 per dim and recall@10 0.681
 */
#define KD_AQ_NITER 1
/* block coordinate sweeps per least-squares update */
#define KD_AQ_SWEEPS 4
/* rows encoded per block; blocks of fewer rows skip the cross table */
#define KD_AQ_BLOCK 256
#define KD_AQ_TABLE_MIN_ROWS 64

typedef struct AqState
{
	float	   *codebooks;		/* m x ksub x dim */
	float	   *cnorms;			/* m x ksub squared norms */
} AqState;

static inline AqState *
aq_state(const KdQuantizer *q)
{
	return (AqState *) q->state;
}

static inline int
aq_beam(const KdQuantizer *q)
{
	return q->beam > 0 ? q->beam : KD_AQ_BEAM;
}

static inline int
aq_code_bytes(const KdQuantizer *q)
{
	return q->code_size - (int) sizeof(float);
}

static void
aq_init(KdQuantizer *q)
{
	AqState    *s = palloc0(sizeof(AqState));

	s->codebooks = palloc_extended(sizeof(float) * q->m * q->ksub * q->dim,
								   MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	s->cnorms = palloc0(sizeof(float) * q->m * q->ksub);
	q->state = s;
	/* m codes and the float norm of the reconstruction */
	q->code_size = (q->m * q->nbits + 7) / 8 + sizeof(float);
}

static void
aq_prepare(KdQuantizer *q)
{
	AqState    *s = aq_state(q);

	for (int i = 0; i < q->m * q->ksub; i++)
	{
		const float *c = s->codebooks + (int64) i * q->dim;

		s->cnorms[i] = kd_dot(c, c, q->dim);
	}
}

/* One partial encoding in the beam */
typedef struct AqCand
{
	float		dist;			/* ||x - x̂||^2 so far */
	int			parent;			/* beam entry it extends */
	int			code;			/* codeword chosen at this stage */
} AqCand;

/* Keep the best `width` of the candidates offered: a max-heap on dist */
static void
beam_offer(AqCand *heap, int *n, int width, AqCand c)
{
	int			i;

	if (*n == width)
	{
		if (c.dist >= heap[0].dist)
			return;
		/* replace the worst and sift down */
		i = 0;
		for (;;)
		{
			int			child = 2 * i + 1;

			if (child >= width)
				break;
			if (child + 1 < width && heap[child + 1].dist > heap[child].dist)
				child++;
			if (heap[child].dist <= c.dist)
				break;
			heap[i] = heap[child];
			i = child;
		}
		heap[i] = c;
		return;
	}
	i = (*n)++;
	while (i > 0 && heap[(i - 1) / 2].dist < c.dist)
	{
		heap[i] = heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	heap[i] = c;
}

/*
 * The codeword cross table holds c_ik . c_jl for stages i < j only: per
 * stage i a ksub x ((m - 1 - i) ksub) block, row k the products of c_ik with
 * every codeword of the later stages.  m (m - 1) / 2 ksub^2 floats: 30 MB
 * at m = 16, 2 GB at m = 128.
 */
static double
cross_bytes(const KdQuantizer *q)
{
	return sizeof(float) * (double) q->ksub * q->ksub * q->m * (q->m - 1) / 2;
}

/* The products of codeword `code` of stage i with those of stage j > i */
static inline const float *
cross_row(const KdQuantizer *q, const float *cross, int i, int code, int j)
{
	int64		K = q->ksub;
	int64		width = (q->m - 1 - i) * K;
	int64		offset = K * K * ((int64) i * (q->m - 1) - (int64) i * (i - 1) / 2);

	return cross + offset + code * width + (j - i - 1) * K;
}

/*
 * Beam search for one row.  xc: x.c for every codeword (m x ksub); cross,
 * when given, the codeword cross products (cross_row).  Without it the
 * cross terms come from the beam entries' reconstructions.  Writes the
 * codes of the best encoding (one int per stage) and returns its distance.
 */
static float
beam_encode(const KdQuantizer *q, const float *x, const float *xc, const float *cross,
			int *best_codes)
{
	AqState    *s = aq_state(q);
	int			width = aq_beam(q);
	int			K = q->ksub;
	int		   *codes = palloc(sizeof(int) * width * q->m);
	int		   *next_codes = palloc(sizeof(int) * width * q->m);
	float	   *dists = palloc(sizeof(float) * width);
	float	   *extra = palloc(sizeof(float) * K);
	float	   *recon = cross ? NULL : palloc(sizeof(float) * q->dim);
	AqCand	   *heap = palloc(sizeof(AqCand) * width);
	int			nbeam = 1;
	int			best = 0;
	float		result;

	dists[0] = kd_dot(x, x, q->dim);
	for (int j = 0; j < q->m; j++)
	{
		const float *cn = s->cnorms + j * K;
		const float *xcj = xc + j * K;
		int			nheap = 0;

		for (int b = 0; b < nbeam; b++)
		{
			const int  *bc = codes + b * q->m;

			/* extra[k] = 2 x̂_b . c_jk */
			if (j == 0)
				memset(extra, 0, sizeof(float) * K);
			else if (cross)
			{
				memset(extra, 0, sizeof(float) * K);
				for (int i = 0; i < j; i++)
				{
					const float *row = cross_row(q, cross, i, bc[i], j);

					for (int k = 0; k < K; k++)
						extra[k] += row[k];
				}
				for (int k = 0; k < K; k++)
					extra[k] *= 2;
			}
			else
			{
				memset(recon, 0, sizeof(float) * q->dim);
				for (int i = 0; i < j; i++)
					cblas_saxpy(q->dim, 1.0f, s->codebooks + ((int64) i * K + bc[i]) * q->dim, 1,
								recon, 1);
				cblas_sgemv(CblasRowMajor, CblasNoTrans, K, q->dim, 2.0f,
							s->codebooks + (int64) j * K * q->dim, q->dim, recon, 1, 0.0f, extra, 1);
			}
			for (int k = 0; k < K; k++)
			{
				AqCand		c;

				c.dist = dists[b] + cn[k] - 2 * xcj[k] + extra[k];
				c.parent = b;
				c.code = k;
				beam_offer(heap, &nheap, width, c);
			}
		}
		for (int b = 0; b < nheap; b++)
		{
			memcpy(next_codes + b * q->m, codes + heap[b].parent * q->m, sizeof(int) * j);
			next_codes[b * q->m + j] = heap[b].code;
			dists[b] = heap[b].dist;
		}
		memcpy(codes, next_codes, sizeof(int) * nheap * q->m);
		nbeam = nheap;
	}
	for (int b = 1; b < nbeam; b++)
		if (dists[b] < dists[best])
			best = b;
	memcpy(best_codes, codes + best * q->m, sizeof(int) * q->m);
	result = dists[best];
	pfree(codes);
	pfree(next_codes);
	pfree(dists);
	pfree(extra);
	if (recon)
		pfree(recon);
	pfree(heap);
	return result;
}

/*
 * The codeword cross table (cross_row): per stage i, sgemms of its codebook
 * against a group of later stages' codebooks
 */
static float *
cross_table(const KdQuantizer *q)
{
	const float *cb = aq_state(q)->codebooks;
	int			K = q->ksub;
	int			d = q->dim;
	float	   *cross = palloc_extended((Size) cross_bytes(q), MCXT_ALLOC_HUGE);

	for (int i = 0; i + 1 < q->m; i++)
	{
		int64		later = q->m - 1 - i;
		int64		group = kd_block_rows((double) K * K * d, later);
		float	   *block = (float *) cross_row(q, cross, i, 0, i + 1);

		for (int64 g = 0; g < later; g += group)
		{
			CHECK_FOR_INTERRUPTS();
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, Min(group, later - g) * K, d,
						1.0f, cb + (int64) i * K * d, d, cb + (i + 1 + g) * K * d, d,
						0.0f, block + g * K, later * K);
		}
	}
	return cross;
}

/* x̂ = the sum of the chosen codewords */
static void
reconstruct(const KdQuantizer *q, const int *stage_codes, float *x)
{
	memset(x, 0, sizeof(float) * q->dim);
	for (int j = 0; j < q->m; j++)
		cblas_saxpy(q->dim, 1.0f, aq_state(q)->codebooks + ((int64) j * q->ksub + stage_codes[j]) * q->dim,
					1, x, 1);
}

static void
unpack_code(const KdQuantizer *q, const uint8 *code, int *stage_codes)
{
	for (int j = 0; j < q->m; j++)
		stage_codes[j] = kd_code_get(code, q->nbits, j);
}

/*
 * Encoding n rows builds the cross table when there are enough of them to
 * pay for it, and it fits in maintenance_work_mem (training has checked
 * that; a later encode in a session with less falls back to the slower
 * form).
 */
static bool
use_cross_table(const KdQuantizer *q, int64 n)
{
	return n >= KD_AQ_TABLE_MIN_ROWS && cross_bytes(q) <= (double) maintenance_work_mem * 1024;
}

/* Rows whose x.c one sgemm computes: at most KD_AQ_BLOCK */
static int64
encode_block(const KdQuantizer *q, int64 n)
{
	return Min(n, kd_block_rows((double) q->m * q->ksub * q->dim, KD_AQ_BLOCK));
}

static void
aq_encode(const KdQuantizer *q, const float *x, int64 n, uint8 *codes)
{
	int			mk = q->m * q->ksub;
	float	   *cross = use_cross_table(q, n) ? cross_table(q) : NULL;
	int64		block = encode_block(q, n);
	float	   *xc = palloc_extended(sizeof(float) * block * mk, MCXT_ALLOC_HUGE);
	int		   *stage_codes = palloc(sizeof(int) * q->m);
	float	   *xhat = palloc(sizeof(float) * q->dim);

	for (int64 start = 0; start < n; start += block)
	{
		int64		nb = Min(block, n - start);

		CHECK_FOR_INTERRUPTS();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, mk, q->dim,
					1.0f, x + start * q->dim, q->dim, aq_state(q)->codebooks, q->dim,
					0.0f, xc, mk);
		for (int64 i = 0; i < nb; i++)
		{
			uint8	   *code = codes + (start + i) * q->code_size;

			float		norm;

			beam_encode(q, x + (start + i) * q->dim, xc + i * mk, cross, stage_codes);
			memset(code, 0, q->code_size);
			for (int j = 0; j < q->m; j++)
				kd_code_set(code, q->nbits, j, stage_codes[j]);
			/*
			 * The norm the scan adds is that of the reconstruction itself,
			 * plus the row term a ||x - x̂||^2 (rowterm.c)
			 */
			reconstruct(q, stage_codes, xhat);
			norm = kd_dot(xhat, xhat, q->dim);
			if (q->term.mode == KD_ROWTERM_FOLDED && q->term.weight > 0)
				norm += q->term.weight * kd_l2sq(x + (start + i) * q->dim, xhat, q->dim);
			memcpy(code + aq_code_bytes(q), &norm, sizeof(float));
		}
	}
	if (cross)
		pfree(cross);
	pfree(xc);
	pfree(stage_codes);
	pfree(xhat);
}

static void
aq_decode(const KdQuantizer *q, const uint8 *codes, int64 n, float *x)
{
	int		   *stage_codes = palloc(sizeof(int) * q->m);

	for (int64 i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		unpack_code(q, codes + i * q->code_size, stage_codes);
		reconstruct(q, stage_codes, x + i * q->dim);
	}
	pfree(stage_codes);
}

/*
 * Least-squares codebooks for fixed codes, minimising ||X - sum_j C_j[b_j]||^2
 * by exact block coordinate descent: with the other codebooks fixed, the best
 * codeword k of codebook j is the mean of x - (x̂ - c_j[b_j]) over the rows
 * coded k there.  Each block step is exact, so the error never grows, and the
 * sweeps converge to the joint least-squares solution without forming (or
 * inverting, in a precision float32 cannot offer) the (m*ksub)^2 normal
 * equations, whose additive gauge makes them singular.
 */
static void
least_squares_update(KdQuantizer *q, const float *x, int64 n, const uint8 *codes, int sweeps)
{
	AqState    *s = aq_state(q);
	int			d = q->dim;
	int			K = q->ksub;
	float	   *xhat = palloc_extended(sizeof(float) * n * d, MCXT_ALLOC_HUGE);
	double	   *sums = palloc_extended(sizeof(double) * K * d, MCXT_ALLOC_HUGE);
	int64	   *counts = palloc(sizeof(int64) * K);
	float	   *delta = palloc_extended(sizeof(float) * K * d, MCXT_ALLOC_HUGE);

	aq_decode(q, codes, n, xhat);
	for (int sweep = 0; sweep < sweeps; sweep++)
	{
		for (int j = 0; j < q->m; j++)
		{
			float	   *cb = s->codebooks + (int64) j * K * d;

			CHECK_FOR_INTERRUPTS();
			memset(sums, 0, sizeof(double) * K * d);
			memset(counts, 0, sizeof(int64) * K);
			for (int64 i = 0; i < n; i++)
			{
				int			k = kd_code_get(codes + i * q->code_size, q->nbits, j);
				const float *xi = x + i * d;
				const float *hi = xhat + i * d;
				const float *ck = cb + (int64) k * d;
				double	   *sk = sums + (int64) k * d;

				CHECK_FOR_INTERRUPTS();
				for (int c = 0; c < d; c++)
					sk[c] += xi[c] - hi[c] + ck[c];
				counts[k]++;
			}
			for (int k = 0; k < K; k++)
				for (int c = 0; c < d; c++)
				{
					float		updated = counts[k] > 0 ? (float) (sums[(int64) k * d + c] / counts[k])
						: cb[(int64) k * d + c];

					delta[(int64) k * d + c] = updated - cb[(int64) k * d + c];
					cb[(int64) k * d + c] = updated;
				}
			for (int64 i = 0; i < n; i++)
			{
				int			k = kd_code_get(codes + i * q->code_size, q->nbits, j);

				CHECK_FOR_INTERRUPTS();
				cblas_saxpy(d, 1.0f, delta + (int64) k * d, 1, xhat + i * d, 1);
			}
		}
	}
	aq_prepare(q);
	pfree(xhat);
	pfree(sums);
	pfree(counts);
	pfree(delta);
}

static void
aq_train(KdQuantizer *q, const float *x, int64 n)
{
	int			niter = q->iterations > 0 ? q->iterations : KD_AQ_NITER;
	uint8	   *codes = palloc_extended((Size) n * q->code_size, MCXT_ALLOC_HUGE);

	/*
	 * The alternations use the whole sample: m x 256 full-dimensional
	 * codewords overfit a smaller one (on Fashion-MNIST, 16,384 rows gave a
	 * lower training error and a higher one on the table).
	 */
	kd_aq_residual_start(q, x, n, aq_state(q)->codebooks, aq_state(q)->cnorms);
	for (int it = 0; it < niter; it++)
	{
		aq_encode(q, x, n, codes);
		least_squares_update(q, x, n, codes, KD_AQ_SWEEPS);
	}
	pfree(codes);
}

/* m x ksub full-dimensional codewords and their norms */
static double
aq_param_floats(int dim, int m, int ksub)
{
	return (double) m * ksub * dim + (double) m * ksub;
}

/* The cross table, when used, the block of x.c, and a beam search's arrays */
static double
aq_encode_memory(const KdQuantizer *q, int64 n)
{
	int			width = aq_beam(q);
	double		beam = sizeof(int) * (2.0 * width * q->m + q->m) + sizeof(float) * (width + q->ksub + 2.0 * q->dim) +
		sizeof(AqCand) * width;

	return (n >= KD_AQ_TABLE_MIN_ROWS ? cross_bytes(q) : 0) +
		sizeof(float) * (double) encode_block(q, n) * q->m * q->ksub + beam;
}

/*
 * Training holds the sample's codes, and at its peak either a residual
 * stage's k-means, the encoding of the sample (with the cross table, which
 * training insists on: without it encoding costs m^2 dim per beam entry and
 * row), or the least-squares sums.  The residuals of the start and the
 * reconstructions of the update are the sample copy of train_copies.
 */
static double
aq_train_memory(const KdQuantizer *q, int64 n)
{
	int			K = q->ksub;
	double		start = kd_aq_start_memory(q, n);
	double		update = (sizeof(double) + sizeof(float)) * (double) K * q->dim + sizeof(int64) * K;
	double		peak = Max(start, update);

	peak = Max(peak, aq_encode_memory(q, n));
	return (double) n * q->code_size + peak;
}

/*
 * L2, and cosine on normalised rows (||q - x||^2 = 2 - 2 cos there):
 * lut[j][k] = -2 q.c_jk, bias ||q||^2, and the scan adds each code's stored
 * ||x̂||^2.  Inner product: lut[j][k] = -q.c_jk.
 */
static void
aq_compute_lut(const KdQuantizer *q, const float *query, KdMetric metric, float *lut, float *bias)
{
	float		scale = metric == KD_METRIC_IP ? -1.0f : -2.0f;

	cblas_sgemv(CblasRowMajor, CblasNoTrans, q->m * q->ksub, q->dim, scale,
				aq_state(q)->codebooks, q->dim, query, 1, 0.0f, lut, 1);
	*bias = metric == KD_METRIC_IP ? 0 : kd_dot(query, query, q->dim);
}

static void
aq_adc_scan(const float *lut, int m, int nbits, KdMetric metric, const uint8 *codes,
			int stride, int n, float *out)
{
	int			normoff = (m * nbits + 7) / 8;

	kd_adc_scan(lut, m, nbits, codes, stride, n, out);
	if (metric != KD_METRIC_IP)
		for (int t = 0; t < n; t++)
		{
			float		norm;

			memcpy(&norm, codes + (size_t) t * stride + normoff, sizeof(float));
			out[t] += norm;
		}
}

static int
aq_nparams(const KdQuantizer *q)
{
	return 1;
}

static float *
aq_param(KdQuantizer *q, int i, Size *nfloats)
{
	*nfloats = (Size) q->m * q->ksub * q->dim;
	return aq_state(q)->codebooks;
}

const KdQuantizerOps kd_aq_ops = {
	.init = aq_init,
	.train = aq_train,
	.encode = aq_encode,
	.decode = aq_decode,
	.prepare = aq_prepare,
	.compute_lut = aq_compute_lut,
	.adc_scan = aq_adc_scan,
	.nparams = aq_nparams,
	.param = aq_param,
	.param_floats = aq_param_floats,
	.train_memory = aq_train_memory,
	.encode_memory = aq_encode_memory,
	.train_copies = 1,
};
