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

#include <math.h>

#include "distance.h"
#include "quant/quantizer.h"

#define KD_BLOB_MAGIC 0x4B44424C	/* "KDBL" */

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

KdQuantizer *
kd_quantizer_create(KdQuantizerKind kind, int dim, int m, int nbits)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "kdindex quantizer",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	KdQuantizer *q = palloc0(sizeof(KdQuantizer));

	Assert(nbits == 4 || nbits == 8);
	q->kind = kind;
	q->dim = dim;
	q->m = m;
	q->nbits = nbits;
	q->ksub = 1 << nbits;
	q->code_size = (m * nbits + 7) / 8;
	q->ops = quantizer_ops(kind);
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
serialize_at(KdQuantizer *q, KdPrecision prec, Size *size)
{
	StringInfoData buf;
	KdBlobHeader hdr;
	int			n = q->ops->nparams(q);

	hdr.magic = KD_BLOB_MAGIC;
	hdr.kind = q->kind;
	hdr.dim = q->dim;
	hdr.m = q->m;
	hdr.nbits = q->nbits;
	hdr.precision = prec;
	hdr.nlists = q->nlists;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &hdr, sizeof(hdr));
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

	for (int i = 0; i < lengthof(candidates); i++)
	{
		char	   *blob = serialize_at(q, candidates[i], size);
		KdQuantizer *rounded = kd_quantizer_deserialize(blob, *size);
		double		mse = kd_quantizer_mse(rounded, x, ncheck);

		kd_quantizer_free(rounded);
		if (mse <= exact * 1.01)
			return blob;
		pfree(blob);
	}
	return serialize_at(q, KD_PREC_F32, size);
}

KdQuantizer *
kd_quantizer_deserialize(const char *blob, Size size)
{
	KdBlobHeader hdr;
	KdQuantizer *q;
	const char *p = blob + sizeof(hdr);
	int			n;

	if (size < sizeof(hdr))
		elog(ERROR, "kdindex: codebook blob truncated");
	memcpy(&hdr, blob, sizeof(hdr));
	if (hdr.magic != KD_BLOB_MAGIC)
		elog(ERROR, "kdindex: codebook blob has a bad magic number");
	q = kd_quantizer_create((KdQuantizerKind) hdr.kind, hdr.dim, hdr.m, hdr.nbits);
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

/* Mean squared reconstruction error per dimension of n rows */
double
kd_quantizer_mse(const KdQuantizer *q, const float *x, int64 n)
{
	const int64 batch = 1024;
	uint8	   *codes = palloc(batch * q->code_size);
	int32	   *lists = palloc(batch * sizeof(int32));
	float	   *xhat = palloc(batch * q->dim * sizeof(float));
	double		err = 0;

	for (int64 start = 0; start < n; start += batch)
	{
		int64		nb = Min(batch, n - start);

		kd_quantizer_encode(q, x + start * q->dim, nb, lists, codes);
		kd_quantizer_decode(q, lists, codes, nb, xhat);
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
 * Eigenvalues (ascending, into eig) and eigenvectors of the symmetric d x d
 * matrix whose upper triangle is in a (row-major); on return row j of a is the
 * eigenvector of eig[j].  LAPACK's ssyevd, with its workspace query.
 */
void
kd_symmetric_eigen(float *a, int d, float *eig)
{
	float		wsize;
	int			iwsize;
	int			lwork = -1,
				liwork = -1,
				info;
	float	   *work;
	int		   *iwork;

	/* LAPACK sees the upper triangle as the lower one of the transpose */
	ssyevd_("V", "L", &d, a, &d, eig, &wsize, &lwork, &iwsize, &liwork, &info);
	lwork = (int) wsize;
	liwork = iwsize;
	work = palloc_extended(sizeof(float) * lwork, MCXT_ALLOC_HUGE);
	iwork = palloc(sizeof(int) * liwork);
	ssyevd_("V", "L", &d, a, &d, eig, work, &lwork, iwork, &liwork, &info);
	if (info != 0)
		elog(ERROR, "kdindex: eigendecomposition failed (ssyevd info %d)", info);
	pfree(work);
	pfree(iwork);
}
