-- kdindex: compressed vector index trained by knowledge distillation
\echo Use "CREATE EXTENSION kdindex" to load this file. \quit

-- Distances on real[], with pgvector's semantics and operators
CREATE FUNCTION kdindex_l2_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_negative_inner_product(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_cosine_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_l1_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR <-> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = kdindex_l2_distance,
	COMMUTATOR = '<->'
);
CREATE OPERATOR <#> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = kdindex_negative_inner_product,
	COMMUTATOR = '<#>'
);
CREATE OPERATOR <=> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = kdindex_cosine_distance,
	COMMUTATOR = '<=>'
);
CREATE OPERATOR <+> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = kdindex_l1_distance,
	COMMUTATOR = '<+>'
);

-- The access method
CREATE FUNCTION kdindex_handler(internal) RETURNS index_am_handler
	AS 'MODULE_PATHNAME' LANGUAGE C;
CREATE ACCESS METHOD kdindex TYPE INDEX HANDLER kdindex_handler;
COMMENT ON ACCESS METHOD kdindex IS 'compressed vector index (PQ codes, exact re-rank)';

-- Support function 1 of every opclass: the metric its operator computes
CREATE FUNCTION kdindex_l2_metric(internal) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_ip_metric(internal) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_cosine_metric(internal) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_l1_metric(internal) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR CLASS float4_l2_ops
	DEFAULT FOR TYPE real[] USING kdindex AS
	OPERATOR 1 <-> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 kdindex_l2_metric(internal);
CREATE OPERATOR CLASS float4_ip_ops
	FOR TYPE real[] USING kdindex AS
	OPERATOR 1 <#> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 kdindex_ip_metric(internal);
CREATE OPERATOR CLASS float4_cosine_ops
	FOR TYPE real[] USING kdindex AS
	OPERATOR 1 <=> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 kdindex_cosine_metric(internal);
CREATE OPERATOR CLASS float4_l1_ops
	FOR TYPE real[] USING kdindex AS
	OPERATOR 1 <+> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 kdindex_l1_metric(internal);

CREATE FUNCTION kdindex_info(idx regclass,
	OUT quantizer text, OUT metric text, OUT dim int, OUT m int, OUT nbits int,
	OUT code_bytes int, OUT trained bool, OUT rows bigint, OUT total_bytes bigint,
	OUT bytes_per_row float8, OUT codebook_bytes bigint, OUT train_rows bigint,
	OUT train_mse float8, OUT train_seconds float8, OUT generation bigint, OUT lists int)
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- Rows and pages of each IVF list (one row, list 0, for a flat index).
CREATE FUNCTION kdindex_lists(idx regclass, OUT list int, OUT rows bigint, OUT pages int)
	RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- Check an index's pages, as amcheck's bt_index_check does a B-tree's; with
-- heapallindexed, also that every live row of the table is in it exactly
-- once.  Raises an ERROR (SQLSTATE XX002) naming the first corruption found;
-- returns nothing when the index is sound.  The table's owner may call it.
CREATE FUNCTION kdindex_verify(idx regclass, heapallindexed bool DEFAULT false) RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- The 4-bit fast scan's kernel (avx2 or scalar), and a check that it sums
-- exactly as the scalar kernel does on random tables and codes (returns the
-- number of differing sums: 0).
CREATE FUNCTION kdindex_fastscan_kernel() RETURNS text
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;
CREATE FUNCTION kdindex_fastscan_check(blocks int DEFAULT 1000, m int DEFAULT 16) RETURNS bigint
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- Distillation and measurement.  kdindex_teacher writes each query's top-k
-- neighbours by a high-precision teacher: one row per query, neighbours as
-- arrays in rank order.
CREATE FUNCTION kdindex_teacher(tbl regclass, col name, "into" text, queries regclass DEFAULT NULL,
	k int DEFAULT 100, nqueries int DEFAULT 2000, teacher text DEFAULT 'exact',
	metric text DEFAULT 'l2') RETURNS int
	AS 'MODULE_PATHNAME' LANGUAGE C;

-- Distil the index's quantizer from a teacher table and re-encode the index in
-- place; the index keeps serving reads and writes until an atomic switch.
CREATE FUNCTION kdindex_train(idx regclass, teacher regclass, epochs int DEFAULT 5,
	learning_rate float8 DEFAULT 5e-3, rec_weight float8 DEFAULT 1e-3,
	loss text DEFAULT 'listmle', holdout float8 DEFAULT 0.1,
	tau float8 DEFAULT 0, balance float8 DEFAULT 0, negatives int DEFAULT 20,
	seed bigint DEFAULT 0,
	OUT loss_before float8, OUT loss_after float8,
	OUT recall_before float8, OUT recall_after float8,
	OUT epochs int, OUT best_epoch int, OUT seconds_per_epoch float8, OUT seconds float8,
	OUT train_queries int, OUT heldout_queries int)
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- Self-test: the distillation gradients against finite differences
CREATE FUNCTION kdindex_check_gradients(OUT quantizer text, OUT path text, OUT metric text,
	OUT loss text, OUT max_rel_error float8) RETURNS SETOF record
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- recall@k of an index against a teacher table: codes only, and re-ranked at
-- the session's kdindex.rerank (k at most the teacher's list length)
CREATE FUNCTION kdindex_recall(idx regclass, teacher regclass, k int DEFAULT 10,
	OUT queries int, OUT codes_recall float8, OUT reranked_recall float8)
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- pgvector's types get their operator classes from the extension
-- kdindex_vector (CREATE EXTENSION kdindex_vector), which pg_dump creates
-- after both kdindex and pgvector.  This function, 0.1.0's way, only says so.
CREATE FUNCTION kdindex_enable_pgvector() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE EXCEPTION 'kdindex_enable_pgvector() is replaced by the extension kdindex_vector'
		USING ERRCODE = 'feature_not_supported',
		      HINT = 'CREATE EXTENSION kdindex_vector creates the operator classes for pgvector''s vector and halfvec.';
END
$$;
