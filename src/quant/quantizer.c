/*
 * quantizer.c — what all quantizers share: creation, code packing, and the
 * blob that carries their parameters to and from index pages.
 *
 * Parameters are stored in the most compact precision that costs nothing:
 * 8-bit steps between a per-group minimum and maximum, IEEE half floats, or
 * float32.  "Costs nothing" is measured: with the rounded parameters, the
 * reconstruction error on (part of) the training sample may grow by at most
 * 1%.  For 784-d PQ codebooks of Fashion-MNIST pixels this stores 803 KB of
 * float32 in 207 KB, with 0.01% more reconstruction error.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "miscadmin.h"

#include "kdindex.h"
#include "distance.h"
#include "quant/quantizer.h"

#define KD_BLOB_MAGIC 0x4B44424C	/* "KDBL" */
/* the same, a KdRowTerm after the header (layout 3: codes carry the row term) */
#define KD_BLOB_MAGIC_ROWTERM 0x4B444232	/* "KDB2" */
/*
 * Layout 4 (refine.c): the KdRowTerm (its mode may be none), then the
 * refinement's own blob, its length first, then the parameters
 */
#define KD_BLOB_MAGIC_REFINE 0x4B444233	/* "KDB3" */

typedef struct KdBlobHeader
{
	uint32		magic;
	int32		kind;
	int32		dim;
	int32		m;
	int32		nbits;
	int32		precision;		/* KdPrecision of the parameters */
	int32		nlists;			/* IVF centroids after the parameters */
} KdBlobHeader;

typedef enum KdPrecision
{
	KD_PREC_F32 = 0,
	KD_PREC_F16 = 1,
	KD_PREC_U8 = 2				/* groups: float min, float step, uint8 values */
} KdPrecision;

#define KD_U8_GROUP 256

const char *
kd_quantizer_name(KdQuantizerKind kind)
{
	switch (kind)
	{
		case KD_QUANT_PQ:
			return "pq";
		case KD_QUANT_OPQ:
			return "opq";
		case KD_QUANT_AQ:
			return "aq";
	}
	return "unknown";
}

static const KdQuantizerOps *
quantizer_ops(KdQuantizerKind kind)
{
	switch (kind)
	{
		case KD_QUANT_PQ:
			return &kd_pq_ops;
		case KD_QUANT_OPQ:
			return &kd_opq_ops;
		case KD_QUANT_AQ:
			return &kd_aq_ops;
		default:
			elog(ERROR, "kdindex: quantizer %s is not implemented", kd_quantizer_name(kind));
	}
	return NULL;
}

int
kd_quantizer_train_copies(KdQuantizerKind kind)
{
	return quantizer_ops(kind)->train_copies;
}

/*
 * Parameters travel as one blob, built in a StringInfo: with the IVF
 * centroids (nlists x dim) they must fit in 1 GB in float32.  Checked before
 * anything is allocated (AQ's m x 256 x dim codebooks reach 262 GB within
 * the options' ranges).
 */
void
kd_check_param_bytes(KdQuantizerKind kind, int dim, int m, int nlists, double bytes)
{
	if (bytes + sizeof(KdBlobHeader) < MaxAllocSize)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("%s with m = %d at %d dimensions%s needs %.0f MB of parameters, more than the 1 GB an index holds",
					kd_quantizer_name(kind), m, dim,
					nlists > 0 ? psprintf(" and %d lists", nlists) : "",
					ceil(bytes / (1024.0 * 1024.0))),
			 errhint("Choose a smaller m%s.", nlists > 0 ? " or fewer lists" : "")));
}

/* Bytes of q's parameters and IVF centroids in float32 */
double
kd_quantizer_param_bytes(const KdQuantizer *q)
{
	return sizeof(float) * (q->ops->param_floats(q->dim, q->m, q->ksub) +
							(double) q->nlists * (q->dim + 1));
}

KdQuantizer *
kd_quantizer_create(KdQuantizerKind kind, int dim, int m, int nbits)
{
	MemoryContext cxt;
	MemoryContext old;
	KdQuantizer *q;
	const KdQuantizerOps *ops = quantizer_ops(kind);

	Assert(nbits == 4 || nbits == 8);
	Assert(dim > 0 && m > 0);
	kd_check_param_bytes(kind, dim, m, 0, sizeof(float) * ops->param_floats(dim, m, 1 << nbits));
	cxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex quantizer", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	q = palloc0(sizeof(KdQuantizer));
	q->kind = kind;
	q->dim = dim;
	q->m = m;
	q->nbits = nbits;
	q->ksub = 1 << nbits;
	q->code_size = (m * nbits + 7) / 8;
	q->ops = ops;
	q->cxt = cxt;
	q->ops->init(q);
	MemoryContextSwitchTo(old);
	return q;
}

void
kd_quantizer_free(KdQuantizer *q)
{
	MemoryContextDelete(q->cxt);
}

void
kd_adc_lut_only(const float *lut, int m, int nbits, KdMetric metric,
				const uint8 *codes, int stride, int n, float *out)
{
	kd_adc_scan(lut, m, nbits, codes, stride, n, out);
}

int
kd_code_get(const uint8 *code, int nbits, int j)
{
	if (nbits == 8)
		return code[j];
	return (code[j >> 1] >> ((j & 1) << 2)) & 0xF;
}

void
kd_code_set(uint8 *code, int nbits, int j, int value)
{
	if (nbits == 8)
		code[j] = (uint8) value;
	else
	{
		int			shift = (j & 1) << 2;

		code[j >> 1] = (uint8) ((code[j >> 1] & ~(0xF << shift)) | (value << shift));
	}
}

/* IEEE 754 binary16 <-> binary32, round to nearest even */
static uint16
float_to_half(float f)
{
	uint32		x;
	uint32		sign,
				mant;
	int32		exp;

	memcpy(&x, &f, sizeof(x));
	sign = (x >> 16) & 0x8000;
	exp = (int32) ((x >> 23) & 0xFF) - 127 + 15;
	mant = x & 0x7FFFFF;

	if (exp >= 31)
		return (uint16) (sign | 0x7C00);	/* callers keep values in range */
	if (exp <= 0)
	{
		uint32		shift;
		uint32		half_mant;

		if (exp < -10)
			return (uint16) sign;
		mant |= 0x800000;
		shift = (uint32) (14 - exp);
		half_mant = mant >> shift;
		if ((mant >> (shift - 1)) & 1 && ((mant & ((1u << (shift - 1)) - 1)) || (half_mant & 1)))
			half_mant++;
		return (uint16) (sign | half_mant);
	}
	else
	{
		uint32		h = sign | ((uint32) exp << 10) | (mant >> 13);

		/* round to nearest even; a carry into the exponent is correct */
		if ((mant & 0x1000) && ((mant & 0xFFF) || (h & 1)))
			h++;
		return (uint16) h;
	}
}

static float
half_to_float(uint16 h)
{
	uint32		sign = (uint32) (h & 0x8000) << 16;
	int32		exp = (h >> 10) & 0x1F;
	uint32		mant = h & 0x3FF;
	uint32		x;
	float		f;

	if (exp == 0)
	{
		/* zero or subnormal: value = mant * 2^-24 */
		f = ldexpf((float) mant, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		x = sign | 0x7F800000 | (mant << 13);
	else
		x = sign | ((uint32) (exp - 15 + 127) << 23) | (mant << 13);
	memcpy(&f, &x, sizeof(f));
	return f;
}

static Size
packed_size(KdPrecision prec, Size n)
{
	switch (prec)
	{
		case KD_PREC_F16:
			return n * sizeof(uint16);
		case KD_PREC_U8:
			return n + (n + KD_U8_GROUP - 1) / KD_U8_GROUP * 2 * sizeof(float);
		default:
			return n * sizeof(float);
	}
}

static void
pack(KdPrecision prec, const float *src, Size n, char *dst)
{
	if (prec == KD_PREC_F32)
		memcpy(dst, src, n * sizeof(float));
	else if (prec == KD_PREC_F16)
	{
		for (Size i = 0; i < n; i++)
		{
			uint16		h = float_to_half(src[i]);

			memcpy(dst + i * sizeof(uint16), &h, sizeof(h));
		}
	}
	else
	{
		for (Size g = 0; g < n; g += KD_U8_GROUP)
		{
			Size		len = Min(KD_U8_GROUP, n - g);
			float		lo = src[g],
						hi = src[g],
						step;

			for (Size i = 1; i < len; i++)
			{
				lo = Min(lo, src[g + i]);
				hi = Max(hi, src[g + i]);
			}
			step = (hi - lo) / 255;
			memcpy(dst, &lo, sizeof(float));
			memcpy(dst + sizeof(float), &step, sizeof(float));
			dst += 2 * sizeof(float);
			for (Size i = 0; i < len; i++)
				*dst++ = (char) (uint8) (step > 0 ? rintf((src[g + i] - lo) / step) : 0);
		}
	}
}

static void
unpack(KdPrecision prec, const char *src, Size n, float *dst)
{
	if (prec == KD_PREC_F32)
		memcpy(dst, src, n * sizeof(float));
	else if (prec == KD_PREC_F16)
	{
		for (Size i = 0; i < n; i++)
		{
			uint16		h;

			memcpy(&h, src + i * sizeof(uint16), sizeof(h));
			dst[i] = half_to_float(h);
		}
	}
	else
	{
		for (Size g = 0; g < n; g += KD_U8_GROUP)
		{
			Size		len = Min(KD_U8_GROUP, n - g);
			float		lo,
						step;

			memcpy(&lo, src, sizeof(float));
			memcpy(&step, src + sizeof(float), sizeof(float));
			src += 2 * sizeof(float);
			for (Size i = 0; i < len; i++)
				dst[g + i] = lo + step * (uint8) *src++;
		}
	}
}

/* Rows of the sample on which a rounding precision is judged */
#define KD_PRECISION_CHECK_ROWS 4096

static char *
serialize_at(KdQuantizer *q, KdPrecision prec, const char *refine, uint32 refine_size, Size *size)
{
	StringInfoData buf;
	KdBlobHeader hdr;
	int			n = q->ops->nparams(q);

	hdr.magic = refine ? KD_BLOB_MAGIC_REFINE :
		q->term.mode != KD_ROWTERM_NONE ? KD_BLOB_MAGIC_ROWTERM : KD_BLOB_MAGIC;
	hdr.kind = q->kind;
	hdr.dim = q->dim;
	hdr.m = q->m;
	hdr.nbits = q->nbits;
	hdr.precision = prec;
	hdr.nlists = q->nlists;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &hdr, sizeof(hdr));
	if (q->term.mode != KD_ROWTERM_NONE || refine)
		appendBinaryStringInfo(&buf, (char *) &q->term, sizeof(KdRowTerm));
	if (refine)
	{
		appendBinaryStringInfo(&buf, (char *) &refine_size, sizeof(refine_size));
		appendBinaryStringInfo(&buf, refine, refine_size);
	}
	for (int i = 0; i < n; i++)
	{
		Size		len;
		float	   *p = q->ops->param(q, i, &len);
		Size		bytes = packed_size(prec, len);

		enlargeStringInfo(&buf, bytes);
		pack(prec, p, len, buf.data + buf.len);
		buf.len += bytes;
	}
	if (q->nlists > 0)
	{
		appendBinaryStringInfo(&buf, (char *) q->centroids, sizeof(float) * (Size) q->nlists * q->dim);
		appendBinaryStringInfo(&buf, (char *) q->list_offsets, sizeof(float) * q->nlists);
	}
	*size = buf.len;
	return buf.data;
}

/*
 * Serialise q's parameters in the most compact precision whose rounding adds
 * at most 1% to the reconstruction error on the first rows of x (the
 * training sample).
 */
char *
kd_quantizer_serialize(KdQuantizer *q, const float *x, int64 n, Size *size)
{
	static const KdPrecision candidates[] = {KD_PREC_U8, KD_PREC_F16};
	int64		ncheck = Min(n, KD_PRECISION_CHECK_ROWS);
	double		exact = kd_quantizer_mse(q, x, ncheck);
	Size		refine_size = 0;
	char	   *refine = q->refine ? kd_refine_serialize(q, x, ncheck, &refine_size) : NULL;

	for (int i = 0; i < lengthof(candidates); i++)
	{
		char	   *blob = serialize_at(q, candidates[i], refine, refine_size, size);
		KdQuantizer *rounded = kd_quantizer_deserialize(blob, *size);
		double		mse = kd_quantizer_mse(rounded, x, ncheck);

		kd_quantizer_free(rounded);
		if (mse <= exact * 1.01)
			return blob;
		pfree(blob);
	}
	return serialize_at(q, KD_PREC_F32, refine, refine_size, size);
}

KdQuantizer *
kd_quantizer_deserialize(const char *blob, Size size)
{
	KdBlobHeader hdr;
	KdQuantizer *q;
	const char *p = blob + sizeof(hdr);
	int			n;
	KdRowTerm	term = {0};
	KdQuantizer *refine = NULL;

	if (size < sizeof(hdr))
		elog(ERROR, "kdindex: codebook blob truncated");
	memcpy(&hdr, blob, sizeof(hdr));
	if (hdr.magic != KD_BLOB_MAGIC && hdr.magic != KD_BLOB_MAGIC_ROWTERM &&
		hdr.magic != KD_BLOB_MAGIC_REFINE)
		elog(ERROR, "kdindex: codebook blob has a bad magic number");
	if (hdr.magic != KD_BLOB_MAGIC)
	{
		if (p + sizeof(term) > blob + size)
			elog(ERROR, "kdindex: codebook blob truncated");
		memcpy(&term, p, sizeof(term));
		p += sizeof(term);
		if ((term.mode == KD_ROWTERM_NONE && hdr.magic == KD_BLOB_MAGIC_ROWTERM) ||
			term.mode < KD_ROWTERM_NONE || term.mode > KD_ROWTERM_FOLDED ||
			!isfinite(term.weight) || !isfinite(term.lo) || !isfinite(term.step) ||
			term.weight < 0 || term.step < 0)
			elog(ERROR, "kdindex: codebook blob's row term is corrupt");
	}
	if (hdr.magic == KD_BLOB_MAGIC_REFINE)
	{
		uint32		refine_size;

		if (p + sizeof(refine_size) > blob + size)
			elog(ERROR, "kdindex: codebook blob truncated");
		memcpy(&refine_size, p, sizeof(refine_size));
		p += sizeof(refine_size);
		if (refine_size > size || p + refine_size > blob + size)
			elog(ERROR, "kdindex: codebook blob truncated");
		refine = kd_quantizer_deserialize(p, refine_size);
		p += refine_size;
		if (refine->kind != KD_QUANT_PQ || refine->nlists > 0 || refine->refine ||
			refine->term.mode != KD_ROWTERM_NONE || refine->nbits != 8)
			elog(ERROR, "kdindex: codebook blob's refinement is corrupt");
	}
	if (hdr.kind < KD_QUANT_PQ || hdr.kind > KD_QUANT_AQ ||
		hdr.dim < 1 || hdr.dim > KDINDEX_MAX_DIM || hdr.m < 1 || hdr.m > KDINDEX_MAX_DIM ||
		(hdr.nbits != 4 && hdr.nbits != 8) ||
		hdr.precision < KD_PREC_F32 || hdr.precision > KD_PREC_U8 ||
		hdr.nlists < 0 || hdr.nlists > KDINDEX_MAX_LISTS ||
		(refine && refine->dim != hdr.dim))
		elog(ERROR, "kdindex: codebook blob header is corrupt");
	q = kd_quantizer_create((KdQuantizerKind) hdr.kind, hdr.dim, hdr.m, hdr.nbits);
	kd_rowterm_enable(q, &term);
	if (refine)
		kd_refine_attach(q, refine);
	n = q->ops->nparams(q);
	for (int i = 0; i < n; i++)
	{
		Size		len;
		float	   *dst = q->ops->param(q, i, &len);
		Size		bytes = packed_size((KdPrecision) hdr.precision, len);

		if (p + bytes > blob + size)
			elog(ERROR, "kdindex: codebook blob truncated");
		unpack((KdPrecision) hdr.precision, p, len, dst);
		p += bytes;
	}
	if (hdr.nlists > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(q->cxt);

		kd_ivf_set_lists(q, hdr.nlists);
		MemoryContextSwitchTo(old);
		/* the centroids, then the lists' offsets */
		if (p + sizeof(float) * (Size) q->nlists * (q->dim + 1) > blob + size)
			elog(ERROR, "kdindex: codebook blob truncated");
		memcpy(q->centroids, p, sizeof(float) * (Size) q->nlists * q->dim);
		p += sizeof(float) * (Size) q->nlists * q->dim;
		memcpy(q->list_offsets, p, sizeof(float) * q->nlists);
		kd_ivf_after_load(q);
	}
	q->ops->prepare(q);
	return q;
}

/* Rows kd_quantizer_mse encodes at once */
#define KD_MSE_BATCH 1024

/*
 * Peak bytes kd_quantizer_serialize adds to q: a rounded blob (a StringInfo,
 * up to twice its length: at most the parameters' size in half floats), the
 * rounded copy it is judged by and the error measurement's batch, or the
 * float32 blob.  The build then holds a copy and the blob likewise.
 */
double
kd_quantizer_serialize_memory(const KdQuantizer *q, int64 n)
{
	int64		rows = Min(n, KD_MSE_BATCH);
	double		params = kd_quantizer_param_bytes(q);
	/* codes, lists, reconstructions, and IVF's residuals or OPQ's rotated rows */
	double		batch = (double) rows * (q->code_size + sizeof(int32) + 2.0 * sizeof(float) * q->dim);

	return 2 * params + batch + q->ops->encode_memory(q, rows);
}

/* Mean squared reconstruction error per dimension of n rows */
double
kd_quantizer_mse(const KdQuantizer *q, const float *x, int64 n)
{
	const int64 batch = Max(Min(n, KD_MSE_BATCH), 1);
	uint8	   *codes = palloc(batch * q->code_size);
	int32	   *lists = palloc(batch * sizeof(int32));
	float	   *xhat = palloc_extended(batch * q->dim * sizeof(float), MCXT_ALLOC_HUGE);
	double		err = 0;

	for (int64 start = 0; start < n; start += batch)
	{
		int64		nb = Min(batch, n - start);

		kd_quantizer_encode(q, x + start * q->dim, nb, lists, codes);
		kd_quantizer_decode(q, lists, codes, nb, xhat);
		CHECK_FOR_INTERRUPTS();
		for (int64 i = 0; i < nb * q->dim; i++)
		{
			double		r = (double) x[start * q->dim + i] - xhat[i];

			err += r * r;
		}
	}
	pfree(codes);
	pfree(lists);
	pfree(xhat);
	return n > 0 ? err / ((double) n * q->dim) : 0;
}

/*
 * A workspace size from a LAPACK workspace query.  LAPACK returns it in a
 * float, which above 2^24 holds only every other integer or fewer: ssyevd's
 * 1 + 6d + 2d^2 at 2,896 dimensions came back one short, and the call then
 * failed (info -8).  Round up past the float's error, take at least the
 * documented minimum, and refuse what a LAPACK int cannot hold.
 */
int
kd_lapack_lwork(float query, double minimum, const char *routine)
{
	double		lwork = Max(ceil((double) query * (1 + FLT_EPSILON)), minimum);

	if (lwork > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("LAPACK %s needs a workspace of %.0f floats, more than it can address", routine, lwork)));
	return (int) lwork;
}

/* ssyevd's workspace sizes for a d x d matrix, from its query */
static void
eigen_workspace(int d, int *lwork, int *liwork)
{
	float		wsize,
				dummy = 0;
	int			iwsize;
	int			query = -1,
				info;

	ssyevd_("V", "L", &d, &dummy, &d, &dummy, &wsize, &query, &iwsize, &query, &info);
	if (info != 0)
		elog(ERROR, "kdindex: ssyevd workspace query failed (info %d)", info);
	*lwork = kd_lapack_lwork(wsize, 1 + 6.0 * d + 2.0 * d * d, "ssyevd");
	*liwork = Max(iwsize, 3 + 5 * d);
}

/* Bytes kd_symmetric_eigen allocates for a d x d matrix */
double
kd_symmetric_eigen_memory(int d)
{
	int			lwork,
				liwork;

	eigen_workspace(d, &lwork, &liwork);
	return (double) sizeof(float) * lwork + (double) sizeof(int) * liwork;
}

/*
 * Eigenvalues (ascending, into eig) and eigenvectors of the symmetric d x d
 * matrix whose upper triangle is in a (row-major); on return row j of a is the
 * eigenvector of eig[j].  LAPACK's ssyevd, with its workspace query.  One
 * call cannot be interrupted: 0.04 s at 784 dimensions, 0.6 s at 2,048,
 * 4.7 s at 4,096 (README).
 */
void
kd_symmetric_eigen(float *a, int d, float *eig)
{
	int			lwork,
				liwork,
				info;
	float	   *work;
	int		   *iwork;

	eigen_workspace(d, &lwork, &liwork);
	work = palloc_extended(sizeof(float) * (Size) lwork, MCXT_ALLOC_HUGE);
	iwork = palloc_extended(sizeof(int) * (Size) liwork, MCXT_ALLOC_HUGE);
	CHECK_FOR_INTERRUPTS();
	/* LAPACK sees the upper triangle as the lower one of the transpose */
	ssyevd_("V", "L", &d, a, &d, eig, work, &lwork, iwork, &liwork, &info);
	if (info < 0)
		elog(ERROR, "kdindex: ssyevd rejected its argument %d", -info);
	if (info > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("eigendecomposition of a %d x %d covariance matrix did not converge (LAPACK ssyevd info %d)",
						d, d, info)));
	pfree(work);
	pfree(iwork);
}
