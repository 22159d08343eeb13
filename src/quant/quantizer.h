/*
 * quantizer.h — the one interface every kdindex quantizer implements.
 *
 * Build, insert, scan (and later distillation) see only this: train on a
 * sample, encode rows to codes, decode codes, and build a query's ADC lookup
 * table so that the distance of a code is the sum of one table entry per
 * sub-quantizer (plus the table's bias).  Parameters travel to and from index
 * pages as one blob (serialize / deserialize).
 */
#ifndef KDINDEX_QUANTIZER_H
#define KDINDEX_QUANTIZER_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"

typedef enum KdMetric
{
	KD_METRIC_L2 = 1,			/* <-> : Euclidean */
	KD_METRIC_IP = 2,			/* <#> : negative inner product */
	KD_METRIC_COSINE = 3,		/* <=> : cosine distance; rows normalised */
	KD_METRIC_L1 = 4			/* <+> : taxicab (Manhattan) distance */
} KdMetric;

typedef enum KdQuantizerKind
{
	KD_QUANT_PQ = 1,
	KD_QUANT_OPQ = 2,
	KD_QUANT_AQ = 3
} KdQuantizerKind;

typedef struct KdQuantizer KdQuantizer;

/*
 * The per-row error term (rowterm.c).  A code loses detail: r = ||x - x̂||^2.
 * A query that is not the row's neighbour does not share that detail, so its
 * true squared distance is nearer ||q - x̂||^2 + a r than ||q - x̂||^2; the
 * code distance adds a * level(b), b a byte per row holding r rounded up to
 * one of 256 uniform levels (level(b) = lo + step b >= r for b < 255; 255
 * also stands for anything larger).
 *
 * PQ and OPQ carry b as extra sub-codes after their m: one byte at
 * nbits = 8, two nibbles (low, high) at nbits = 4, whose lookup tables,
 * a (lo + step l) and a step 16 h, are appended after the m x ksub entries
 * (kd_rowterm_lut), so every ADC path, the 4-bit fast scan included, sums
 * them as it sums any sub-code.  AQ folds a r into the float norm it already
 * stores, exactly and at no cost.  Parameters travel in the blob, so each
 * generation carries its own.
 *
 * Inner product has no ||e||^2 in -<q, x> = -<q, x̂> - <q, e>; but among the
 * rows a query ranks first, <q, e> leans positive, and more so the larger
 * e = ||x - x̂|| (the error's component along q, ScaNN's observation): the
 * score there is -<q, x̂> - b ||q|| e, the byte holding e.  AQ, whose inner
 * product ignores its stored norm, and L1 keep a = 0.
 */
typedef enum KdRowTermMode
{
	KD_ROWTERM_NONE = 0,		/* layout 2 and rowterm = off */
	KD_ROWTERM_CODE = 1,		/* PQ, OPQ: extra sub-codes */
	KD_ROWTERM_FOLDED = 2		/* AQ: in the stored norm */
} KdRowTermMode;

typedef struct KdRowTerm
{
	int32		mode;			/* KdRowTermMode */
	int32		nsub;			/* sub-codes the term adds to a code */
	int32		root;			/* levels are of e = ||x - x̂|| (inner product), not of r */
	float		weight;			/* a, or b under inner product; 0 where it does not help */
	float		lo;				/* level(b) = lo + step * b */
	float		step;
} KdRowTerm;

#define KD_ROWTERM_LEVELS 256

typedef struct KdQuantizerOps
{
	/* allocate zeroed parameters */
	void		(*init) (KdQuantizer *q);
	/* learn parameters from n rows x (row-major, n x dim) */
	void		(*train) (KdQuantizer *q, const float *x, int64 n);
	/* codes: n x code_size bytes */
	void		(*encode) (const KdQuantizer *q, const float *x, int64 n, uint8 *codes);
	void		(*decode) (const KdQuantizer *q, const uint8 *codes, int64 n, float *x);
	/*
	 * Code distances of n codes laid out stride bytes apart, from the lookup
	 * table (static: a scan keeps it after the quantizer left the cache)
	 */
	void		(*adc_scan) (const float *lut, int m, int nbits, KdMetric metric,
							 const uint8 *codes, int stride, int n, float *out);
	/* derive cached values (norms) after parameters were set */
	void		(*prepare) (KdQuantizer *q);
	/* lut: m x ksub entries; distance(code) = bias + sum_j lut[j][code_j] */
	void		(*compute_lut) (const KdQuantizer *q, const float *query, KdMetric metric,
								float *lut, float *bias);
	/* n x dim float arrays training needs besides the sample (memory budget) */
	int			train_copies;
	/* floats of parameters at this shape (checked before they are allocated) */
	double		(*param_floats) (int dim, int m, int ksub);
	/*
	 * Peak bytes training on n rows allocates besides the sample, its
	 * train_copies and the parameters; encoding n rows at once
	 */
	double		(*train_memory) (const KdQuantizer *q, int64 n);
	double		(*encode_memory) (const KdQuantizer *q, int64 n);
	/* parameters as float arrays, for the blob */
	int			(*nparams) (const KdQuantizer *q);
	float	   *(*param) (KdQuantizer *q, int i, Size *nfloats);
} KdQuantizerOps;

struct KdQuantizer
{
	KdQuantizerKind kind;
	int			dim;
	int			m;				/* sub-quantizers */
	int			nbits;			/* 4 or 8 */
	int			ksub;			/* 2^nbits codewords per sub-quantizer */
	int			code_size;		/* bytes per encoded row */
	const KdQuantizerOps *ops;
	int			iterations;		/* training alternations; 0: the quantizer's default */
	int			beam;			/* AQ encoder's beam width; 0: its default */
	KdMetric	metric;			/* training: the index's metric (0: not known) */
	/*
	 * IVF: rows are coded as their residual from the nearest of nlists coarse
	 * centroids (nlists x dim); 0 lists: one flat list, rows coded as they are
	 */
	int			nlists;
	float	   *centroids;
	float	   *centroid_norms;
	float	   *list_offsets;	/* balanced lists: added to a row's distance to pick its list */
	float		balance;		/* training: Sinkhorn temperature factor, 0 = plain k-means */
	KdRowTerm	term;			/* the per-row error term, KD_ROWTERM_NONE: none */
	/*
	 * In-index refinement (refine.c): a PQ of the rows' residuals, whose
	 * codes follow the code_size bytes of q's in a row; NULL: none
	 */
	struct KdQuantizer *refine;
	MemoryContext cxt;			/* holds the quantizer and its parameters */
	void	   *state;			/* kind-specific parameters */
};

extern const char *kd_quantizer_name(KdQuantizerKind kind);
extern KdQuantizer *kd_quantizer_create(KdQuantizerKind kind, int dim, int m, int nbits);
extern void kd_quantizer_free(KdQuantizer *q);
extern int	kd_quantizer_train_copies(KdQuantizerKind kind);
extern char *kd_quantizer_serialize(KdQuantizer *q, const float *x, int64 n, Size *size);
extern KdQuantizer *kd_quantizer_deserialize(const char *blob, Size size);
extern double kd_quantizer_mse(const KdQuantizer *q, const float *x, int64 n);
extern double kd_quantizer_param_bytes(const KdQuantizer *q);
extern double kd_quantizer_serialize_memory(const KdQuantizer *q, int64 n);
extern void kd_check_param_bytes(KdQuantizerKind kind, int dim, int m, int nlists, double bytes);
extern double kd_quantizer_memory_needed(const KdQuantizer *q, int64 n);
extern void kd_quantizer_check_memory(const KdQuantizer *q, int64 n);

/*
 * Work between interrupt checks: products are cut into blocks of about this
 * many multiply-adds (some 10-50 ms of sgemm), which also keeps BLAS's int
 * arguments in range
 */
#define KD_BLOCK_FLOPS ((double) (1 << 29))

/* Rows per block when each row costs flops_per_row, within [1, max_rows] */
static inline int64
kd_block_rows(double flops_per_row, int64 max_rows)
{
	double		rows = KD_BLOCK_FLOPS / Max(flops_per_row, 1.0);

	return (int64) Max(1.0, Min(rows, (double) Max(max_rows, 1)));
}

/* ivf.c: the coarse quantizer in front of any of them */
extern void kd_ivf_set_lists(KdQuantizer *q, int nlists);
extern void kd_quantizer_train(KdQuantizer *q, const float *x, int64 n);
extern void kd_quantizer_encode(const KdQuantizer *q, const float *x, int64 n, int32 *lists,
								uint8 *codes);
extern void kd_quantizer_decode(const KdQuantizer *q, const int32 *lists, const uint8 *codes,
								int64 n, float *x);
extern void kd_ivf_rank_lists(const KdQuantizer *q, const float *query, KdMetric metric,
							  int32 *order, float *dists);
extern void kd_ivf_after_load(KdQuantizer *q);
extern void kd_ivf_list_lut(const KdQuantizer *q, const float *query, KdMetric metric, int list,
							float *lut, float *bias);
extern int	kd_code_get(const uint8 *code, int nbits, int j);
extern void kd_code_set(uint8 *code, int nbits, int j, int value);

/* kmeans.c */
extern float kd_kmeans(const float *x, int64 n, int d, int k, int niter, uint64 seed,
					   bool warm, float *centroids);
extern double kd_kmeans_memory(int64 n, int d, int k);
extern int64 kd_nearest_block(int d, int k);
extern void kd_nearest(const float *x, int64 n, int d, int ldx, const float *centroids, int k,
					   const float *cnorms, int32 *assign, float *dist);

/* pq.c */
extern const KdQuantizerOps kd_pq_ops;
extern void kd_pq_train_iters(KdQuantizer *q, const float *x, int64 n, int niter, bool warm);
extern double kd_pq_train_iters_memory(const KdQuantizer *q, int64 n);

/* opq.c */
extern const KdQuantizerOps kd_opq_ops;
extern void kd_opq_rotate(const KdQuantizer *q, const float *x, int64 n, float *out);
extern KdQuantizer *kd_opq_inner(KdQuantizer *q);

/* aq.c */
extern const KdQuantizerOps kd_aq_ops;

/* rowterm.c */
extern void kd_rowterm_enable(KdQuantizer *q, const KdRowTerm *term);
extern int	kd_rowterm_subcodes(int quantizer, int m, int nbits, int code_size);
extern void kd_rowterm_encode(const KdQuantizer *q, const float *x, int64 n, uint8 *codes);
extern void kd_rowterm_lut(const KdQuantizer *q, KdMetric metric, const float *query, float *lut);

/* Sub-codes of a code, and so rows of its lookup table: the term's after q's */
static inline int
kd_lut_rows(const KdQuantizer *q)
{
	return q->m + q->term.nsub;
}
extern double kd_rowterm_bound(const KdQuantizer *q, const uint8 *code);
extern void kd_rowterm_fit(KdQuantizer *q, KdMetric metric, const float *x, int64 n,
						   int64 table_rows);
extern void kd_rowterm_fit_ranked(KdQuantizer *q, KdMetric metric, const float *queries, int nq,
								  const float *docs, const int64 *rows, int64 nd,
								  const int32 *truth, int k, int depth);
struct KdDistillSet;
extern void kd_rowterm_fit_teacher(KdQuantizer *q, KdMetric metric, const struct KdDistillSet *set,
								   const int32 *qs, int nqs, int depth);

/*
 * kd_rowterm_bound(q, code): an upper bound of ||x - x̂||, the distance of the
 * row from its reconstruction (in the space the codes are in: the unit
 * vector under cosine), from what the code stores: level(b) rounded up, or
 * for AQ (norm + a r - ||x̂||^2) / a with its float rounding; +infinity when
 * the code holds no bound (no term, b = 255, AQ with a = 0).  For the exact
 * re-rank: |d(q, x) - d(q, x̂)| <= bound.
 */

/* refine.c: the refinement codes, after q's own in a row */
extern void kd_refine_train(KdQuantizer *q, const float *x, int64 n, int bytes);
extern void kd_refine_drop(KdQuantizer *q);
extern void kd_refine_attach(KdQuantizer *q, KdQuantizer *refine);
extern void kd_encode_rows(const KdQuantizer *q, const float *x, int64 n, int32 *lists,
						   uint8 *rows);
extern char *kd_refine_serialize(KdQuantizer *q, const float *x, int64 n, Size *size);

/* Bytes of a row's codes: q's, then the refinement's */
static inline int
kd_row_code_size(const KdQuantizer *q)
{
	return q->code_size + (q->refine ? q->refine->code_size : 0);
}

/* the lookup-table sum alone, for quantizers with nothing to add */
extern void kd_adc_lut_only(const float *lut, int m, int nbits, KdMetric metric,
							const uint8 *codes, int stride, int n, float *out);

extern void kd_symmetric_eigen(float *a, int d, float *eig);
extern double kd_symmetric_eigen_memory(int d);
extern int	kd_lapack_lwork(float query, double minimum, const char *routine);

/* LAPACK, from OpenBLAS */
extern void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda,
					float *s, float *u, const int *ldu, float *vt, const int *ldvt,
					float *work, const int *lwork, int *iwork, int *info);
extern void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
					float *w, float *work, const int *lwork, int *iwork, const int *liwork,
					int *info);

#endif							/* KDINDEX_QUANTIZER_H */
