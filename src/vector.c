/*
 * vector.c — from SQL values to float arrays, and the distance operators.
 *
 * Three input types: real[] (always), and pgvector's vector and halfvec,
 * whose datums are read directly (varlena header, int16 dim, int16 unused,
 * then float4 or IEEE half values) so that kdindex needs nothing from
 * pgvector but its types.  The operators on real[] follow pgvector's
 * semantics and error messages.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "distance.h"
#include "kdindex.h"
#include "vector.h"

PG_FUNCTION_INFO_V1(kdindex_l2_distance);
PG_FUNCTION_INFO_V1(kdindex_negative_inner_product);
PG_FUNCTION_INFO_V1(kdindex_cosine_distance);
PG_FUNCTION_INFO_V1(kdindex_l1_distance);
PG_FUNCTION_INFO_V1(kdindex_l2_metric);
PG_FUNCTION_INFO_V1(kdindex_ip_metric);
PG_FUNCTION_INFO_V1(kdindex_cosine_metric);
PG_FUNCTION_INFO_V1(kdindex_l1_metric);

/* What kdindex reads a type's datums as */
typedef enum KdVecKind
{
	KD_KIND_NONE,
	KD_KIND_REAL_ARRAY,
	KD_KIND_VECTOR,
	KD_KIND_HALFVEC
} KdVecKind;

/* pgvector's on-disk vector and halfvec */
typedef struct PgVector
{
	int32		vl_len_;
	int16		dim;
	int16		unused;
	float		x[FLEXIBLE_ARRAY_MEMBER];
} PgVector;

typedef struct PgHalfVector
{
	int32		vl_len_;
	int16		dim;
	int16		unused;
	uint16		x[FLEXIBLE_ARRAY_MEMBER];	/* IEEE 754 binary16 */
} PgHalfVector;

static bool
input_is_c(Oid funcid)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	bool		result;

	if (!HeapTupleIsValid(tup))
		return false;
	result = ((Form_pg_proc) GETSTRUCT(tup))->prolang == ClanguageId;
	ReleaseSysCache(tup);
	return result;
}

/*
 * Which of pgvector's types typid is, if any.  Not any type of that name: a
 * role can create mallory.vector, even a domain over int, and reading its
 * datums as vectors would crash.  pgvector's are base varlena types, members
 * of the extension named vector, whose input function is C.
 */
static KdVecKind
pgvector_kind(Oid typid)
{
	HeapTuple	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	Form_pg_type form;
	KdVecKind	kind = KD_KIND_NONE;
	Oid			ext;

	if (!HeapTupleIsValid(tup))
		return KD_KIND_NONE;
	form = (Form_pg_type) GETSTRUCT(tup);
	if (form->typtype == TYPTYPE_BASE && form->typlen == -1 && input_is_c(form->typinput))
	{
		if (strcmp(NameStr(form->typname), "vector") == 0)
			kind = KD_KIND_VECTOR;
		else if (strcmp(NameStr(form->typname), "halfvec") == 0)
			kind = KD_KIND_HALFVEC;
	}
	ReleaseSysCache(tup);
	if (kind == KD_KIND_NONE)
		return KD_KIND_NONE;
	ext = getExtensionOfObject(TypeRelationId, typid);
	if (!OidIsValid(ext) || ext != get_extension_oid("vector", true))
		return KD_KIND_NONE;
	return kind;
}

/* Is typid pgvector's vector or halfvec? */
bool
kd_is_pgvector_type(Oid typid)
{
	return pgvector_kind(typid) != KD_KIND_NONE;
}

/*
 * The last type kd_vector_base_type was asked about (datums come by the
 * million, of one type), forgotten whenever pg_type changes.
 */
static Oid	cached_type = InvalidOid;
static Oid	cached_base = InvalidOid;
static KdVecKind cached_kind = KD_KIND_NONE;

static void
forget_cached_type(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_type = InvalidOid;
}

/* typid's base type and what kdindex reads it as (KD_KIND_NONE: nothing) */
static KdVecKind
vector_kind(Oid typid, Oid *base)
{
	static bool registered = false;

	if (typid == FLOAT4ARRAYOID)
	{
		*base = typid;
		return KD_KIND_REAL_ARRAY;
	}
	if (typid != cached_type || !OidIsValid(typid))
	{
		if (!registered)
		{
			CacheRegisterSyscacheCallback(TYPEOID, forget_cached_type, (Datum) 0);
			registered = true;
		}
		cached_base = getBaseType(typid);
		cached_kind = cached_base == FLOAT4ARRAYOID ? KD_KIND_REAL_ARRAY : pgvector_kind(cached_base);
		if (cached_kind == KD_KIND_NONE)
			cached_base = InvalidOid;
		cached_type = typid;
	}
	*base = cached_base;
	return cached_kind;
}

/*
 * FLOAT4ARRAYOID when typid is real[] or a domain over it, pgvector's vector
 * or halfvec when it is one of those or a domain over it, InvalidOid
 * otherwise.
 */
Oid
kd_vector_base_type(Oid typid)
{
	Oid			base;

	vector_kind(typid, &base);
	return base;
}

/* An IEEE binary16 value as a float (exact: every half is a float) */
static inline float
half_to_float(uint16 h)
{
	uint32		exp = (h >> 10) & 0x1F;
	uint32		mant = h & 0x3FF;
	union
	{
		uint32		i;
		float		f;
	}			u;

	if (exp == 0)
	{
		/* zero or subnormal: mant * 2^-24 */
		float		v = ldexpf((float) mant, -24);

		return (h & 0x8000) ? -v : v;
	}
	if (exp == 31)
		u.i = 0x7F800000 | (mant << 13);	/* infinity or NaN */
	else
		u.i = ((exp - 15 + 127) << 23) | (mant << 13);
	u.i |= (uint32) (h & 0x8000) << 16;
	return u.f;
}

/*
 * The floats of a real[], vector or halfvec datum (typid may be a domain over
 * any), without copying when the datum is a detoasted real[] or vector; a
 * halfvec's are converted into a palloc'd array.  Arrays must be
 * one-dimensional, non-empty, without NULL elements.
 */
float *
kd_datum_floats(Datum value, Oid typid, int *dim)
{
	Oid			base;
	KdVecKind	kind = vector_kind(typid, &base);

	if (kind == KD_KIND_REAL_ARRAY)
	{
		ArrayType  *a = DatumGetArrayTypeP(value);

		if (ARR_NDIM(a) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("vector must have at least 1 dimension")));
		if (ARR_NDIM(a) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("array must be 1-D")));
		if (ARR_ELEMTYPE(a) != FLOAT4OID)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("array must be of type real[]")));
		if (ARR_HASNULL(a) && array_contains_nulls(a))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("array must not contain nulls")));
		*dim = ARR_DIMS(a)[0];
		return (float *) ARR_DATA_PTR(a);
	}
	else if (kind == KD_KIND_VECTOR)
	{
		PgVector   *v = (PgVector *) PG_DETOAST_DATUM(value);

		*dim = v->dim;
		return v->x;
	}
	else if (kind == KD_KIND_HALFVEC)
	{
		PgHalfVector *v = (PgHalfVector *) PG_DETOAST_DATUM(value);
		float	   *x = palloc(sizeof(float) * Max(v->dim, 1));

		for (int i = 0; i < v->dim; i++)
			x[i] = half_to_float(v->x[i]);
		*dim = v->dim;
		if ((Pointer) v != DatumGetPointer(value))
			pfree(v);
		return x;
	}
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("type %s is neither real[] nor pgvector's vector or halfvec",
					format_type_be(typid))));
	return NULL;
}

void
kd_check_finite(const float *x, int dim)
{
	if (kd_all_finite(x, dim))
		return;
	for (int i = 0; i < dim; i++)
	{
		if (isnan(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("NaN not allowed in vector")));
		if (isinf(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("infinite value not allowed in vector")));
	}
}

static void
check_same_dim(int a, int b)
{
	if (a != b)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", a, b)));
}

/* Scale x to unit length; false for a zero vector */
bool
kd_normalize(float *x, int dim)
{
	float		norm = sqrtf(kd_dot(x, x, dim));

	if (norm == 0)
		return false;
	for (int i = 0; i < dim; i++)
		x[i] /= norm;
	return true;
}

/*
 * A palloc'd copy of a row's value, ready for the quantizer: validated, of
 * dimension expect_dim when that is not 0, normalised under cosine.  NULL
 * for a zero vector under cosine: it has no cosine distance to anything, so
 * the index leaves it out as it does a NULL (as pgvector's indexes do).
 */
/* A row of dim dimensions for an index of expect_dim (0: not known yet) */
void
kd_check_dim(int expect_dim, int dim)
{
	if (expect_dim != 0 && dim != expect_dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d", expect_dim, dim)));
}

float *
kd_row_vector(Datum value, Oid typid, KdMetric metric, int expect_dim, int *dim)
{
	Oid			base;
	float	   *src = kd_datum_floats(value, typid, dim);
	float	   *x;

	if (*dim > KDINDEX_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("vector cannot have more than %d dimensions for kdindex index",
						KDINDEX_MAX_DIM)));
	kd_check_dim(expect_dim, *dim);
	kd_check_finite(src, *dim);
	if (vector_kind(typid, &base) == KD_KIND_HALFVEC)
		x = src;				/* already a copy */
	else
	{
		x = palloc(sizeof(float) * *dim);
		memcpy(x, src, sizeof(float) * *dim);
	}
	if (metric == KD_METRIC_COSINE && !kd_normalize(x, *dim))
	{
		pfree(x);
		return NULL;
	}
	return x;
}

/* As kd_row_vector, where a zero vector under cosine is an error */
float *
kd_index_vector(Datum value, Oid typid, KdMetric metric, int expect_dim, int *dim)
{
	float	   *x = kd_row_vector(value, typid, metric, expect_dim, dim);

	if (x == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("zero vector has no cosine distance")));
	return x;
}

/*
 * Does the index hold this (non-NULL) row?  All but zero vectors under
 * cosine; kdindex_verify's heapallindexed asks.
 */
bool
kd_row_indexed(Datum value, Oid typid, KdMetric metric)
{
	Oid			base;
	int			dim;
	float	   *x;
	bool		indexed;
	struct varlena *detoasted;

	if (metric != KD_METRIC_COSINE)
		return true;
	/* callers scan whole tables: free what this row needed */
	detoasted = PG_DETOAST_DATUM(value);
	x = kd_datum_floats(PointerGetDatum(detoasted), typid, &dim);
	indexed = kd_dot(x, x, dim) != 0;	/* kd_normalize's test */
	if (vector_kind(typid, &base) == KD_KIND_HALFVEC)
		pfree(x);
	if ((Pointer) detoasted != DatumGetPointer(value))
		pfree(detoasted);
	return indexed;
}

/* The exact distance the opclass's operator returns, from raw floats */
/*
 * Sums in double, for the vectors whose float sums overflow (components near
 * FLT_MAX): their distances are finite in float8, and an infinite or NaN
 * distance would give rows no order at all.
 */
static double
l2sq_double(const float *a, const float *b, int dim)
{
	double		s = 0;

	for (int i = 0; i < dim; i++)
		s += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
	return s;
}

static double
dot_checked(const float *a, const float *b, int dim)
{
	double		s = kd_dot(a, b, dim);

	if (isfinite(s))
		return s;
	s = 0;
	for (int i = 0; i < dim; i++)
		s += (double) a[i] * b[i];
	return s;
}

static double
l1_double(const float *a, const float *b, int dim)
{
	double		s = 0;

	for (int i = 0; i < dim; i++)
		s += fabs((double) a[i] - b[i]);
	return s;
}

double
kd_exact_distance(KdMetric metric, const float *a, const float *b, int dim)
{
	switch (metric)
	{
		case KD_METRIC_L2:
			{
				double		d = kd_l2sq(a, b, dim);

				return sqrt(isinf(d) ? l2sq_double(a, b, dim) : d);
			}
		case KD_METRIC_IP:
			return -dot_checked(a, b, dim);
		case KD_METRIC_COSINE:
			{
				double		na = dot_checked(a, a, dim);
				double		nb = dot_checked(b, b, dim);
				double		sim = dot_checked(a, b, dim) / sqrt(na * nb);

				/* zero vectors give NaN, as pgvector */
				if (sim > 1)
					sim = 1;
				else if (sim < -1)
					sim = -1;
				return 1 - sim;
			}
		case KD_METRIC_L1:
			{
				double		d = kd_l1(a, b, dim);

				return isinf(d) ? l1_double(a, b, dim) : d;
			}
	}
	return 0;
}

static double
real_array_distance(FunctionCallInfo fcinfo, KdMetric metric)
{
	int			da,
				db;
	float	   *a = kd_datum_floats(PG_GETARG_DATUM(0), FLOAT4ARRAYOID, &da);
	float	   *b = kd_datum_floats(PG_GETARG_DATUM(1), FLOAT4ARRAYOID, &db);

	check_same_dim(da, db);
	kd_check_finite(a, da);
	kd_check_finite(b, db);
	return kd_exact_distance(metric, a, b, da);
}

Datum
kdindex_l2_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(real_array_distance(fcinfo, KD_METRIC_L2));
}

Datum
kdindex_negative_inner_product(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(real_array_distance(fcinfo, KD_METRIC_IP));
}

Datum
kdindex_cosine_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(real_array_distance(fcinfo, KD_METRIC_COSINE));
}

Datum
kdindex_l1_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(real_array_distance(fcinfo, KD_METRIC_L1));
}

/* Support function 1 of each opclass: which metric its operator computes */
Datum
kdindex_l2_metric(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(KD_METRIC_L2);
}

Datum
kdindex_ip_metric(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(KD_METRIC_IP);
}

Datum
kdindex_cosine_metric(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(KD_METRIC_COSINE);
}

Datum
kdindex_l1_metric(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(KD_METRIC_L1);
}
