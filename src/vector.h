/*
 * vector.h — SQL values to floats, validation, exact distances.
 */
#ifndef KDINDEX_VECTOR_H
#define KDINDEX_VECTOR_H

#include "postgres.h"

#include "quant/quantizer.h"

extern float *kd_datum_floats(Datum value, Oid typid, int *dim);
extern void kd_check_finite(const float *x, int dim);
extern bool kd_normalize(float *x, int dim);
extern bool kd_is_pgvector_type(Oid typid);
extern Oid	kd_vector_base_type(Oid typid);
extern void kd_check_dim(int expect_dim, int dim);
extern float *kd_row_vector(Datum value, Oid typid, KdMetric metric, int expect_dim, int *dim);
extern bool kd_row_indexed(Datum value, Oid typid, KdMetric metric);
extern float *kd_index_vector(Datum value, Oid typid, KdMetric metric, int expect_dim, int *dim);
extern double kd_exact_distance(KdMetric metric, const float *a, const float *b, int dim);

#endif							/* KDINDEX_VECTOR_H */
