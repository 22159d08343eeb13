/*
 * quantizer.c — what all quantizers share: creation, code packing, and the
 * blob that carries their parameters to and from index pages.
 *
 * Parameters are stored as IEEE half floats when that costs nothing: the
 * rounding error is checked against the quantizer's own reconstruction error
 * and float32 is kept when half precision would add more than 1% to it (or
 * when a value is out of half range).  For 784-d PQ codebooks this halves the
 * fixed part of the index (800 KB -> 400 KB).
 */
#include "postgres.h"

#include <math.h>

#include "quant/quantizer.h"

#define KD_BLOB_MAGIC 0x4B44424C	/* "KDBL" */

typedef struct KdBlobHeader
{
	uint32		magic;
	int32		kind;
	int32		dim;
	int32		m;
	int32		nbits;
	int32		half;			/* parameters stored as half floats */
} KdBlobHeader;

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
	switch (kind)
	{
		case KD_QUANT_PQ:
			q->ops = &kd_pq_ops;
			break;
		default:
			elog(ERROR, "kdindex: quantizer %s is not implemented", kd_quantizer_name(kind));
	}
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

/*
 * Would storing the parameters as half floats cost accuracy?  Compare the
 * squared rounding error per parameter with the quantizer's reconstruction
 * error per dimension.
 */
static bool
half_is_lossless(KdQuantizer *q, float mse_per_dim)
{
	int			n = q->ops->nparams(q);
	double		err = 0;
	Size		total = 0;

	for (int i = 0; i < n; i++)
	{
		Size		len;
		float	   *p = q->ops->param(q, i, &len);

		for (Size j = 0; j < len; j++)
		{
			float		r;

			if (fabsf(p[j]) > 65504.0f)
				return false;
			r = half_to_float(float_to_half(p[j])) - p[j];
			err += (double) r * r;
		}
		total += len;
	}
	if (total == 0)
		return true;
	return err / total <= 0.01 * mse_per_dim;
}

/*
 * Serialise q's parameters.  mse is the quantizer's reconstruction error per
 * dimension on its training sample, which decides half vs float storage.
 */
char *
kd_quantizer_serialize(KdQuantizer *q, Size *size)
{
	StringInfoData buf;
	KdBlobHeader hdr;
	int			n = q->ops->nparams(q);

	hdr.magic = KD_BLOB_MAGIC;
	hdr.kind = q->kind;
	hdr.dim = q->dim;
	hdr.m = q->m;
	hdr.nbits = q->nbits;
	hdr.half = half_is_lossless(q, q->train_mse);

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (char *) &hdr, sizeof(hdr));
	for (int i = 0; i < n; i++)
	{
		Size		len;
		float	   *p = q->ops->param(q, i, &len);

		if (hdr.half)
		{
			for (Size j = 0; j < len; j++)
			{
				uint16		h = float_to_half(p[j]);

				appendBinaryStringInfo(&buf, (char *) &h, sizeof(h));
			}
		}
		else
			appendBinaryStringInfo(&buf, (char *) p, len * sizeof(float));
	}
	*size = buf.len;
	return buf.data;
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
		Size		bytes = len * (hdr.half ? sizeof(uint16) : sizeof(float));

		if (p + bytes > blob + size)
			elog(ERROR, "kdindex: codebook blob truncated");
		if (hdr.half)
		{
			for (Size j = 0; j < len; j++)
			{
				uint16		h;

				memcpy(&h, p + j * sizeof(uint16), sizeof(h));
				dst[j] = half_to_float(h);
			}
		}
		else
			memcpy(dst, p, bytes);
		p += bytes;
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
	float	   *xhat = palloc(batch * q->dim * sizeof(float));
	double		err = 0;

	for (int64 start = 0; start < n; start += batch)
	{
		int64		nb = Min(batch, n - start);

		q->ops->encode(q, x + start * q->dim, nb, codes);
		q->ops->decode(q, codes, nb, xhat);
		for (int64 i = 0; i < nb * q->dim; i++)
		{
			double		r = (double) x[start * q->dim + i] - xhat[i];

			err += r * r;
		}
	}
	pfree(codes);
	pfree(xhat);
	return n > 0 ? err / ((double) n * q->dim) : 0;
}
