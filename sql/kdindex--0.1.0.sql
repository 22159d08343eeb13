-- kdindex: compressed vector index trained by knowledge distillation
\echo Use "CREATE EXTENSION kdindex" to load this file. \quit

-- Distances on real[], with pgvector's semantics and operators
CREATE FUNCTION kdindex_l2_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_negative_inner_product(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION kdindex_cosine_distance(real[], real[]) RETURNS float8
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
-- the session's kdindex.rerank
CREATE FUNCTION kdindex_recall(idx regclass, teacher regclass, k int DEFAULT 10,
	OUT queries int, OUT codes_recall float8, OUT reranked_recall float8)
LANGUAGE plpgsql AS $$
DECLARE
	tbl regclass;
	expr text;
	op text;
	knn text;
	plan text := '';
	line text;
	q record;
	depth text := current_setting('kdindex.rerank');
	found tid[];
	codes_hits bigint := 0;
	rerank_hits bigint := 0;
BEGIN
	SELECT i.indrelid::regclass, pg_get_indexdef(i.indexrelid, 1, true), o.oprname
	  INTO tbl, expr, op
	  FROM pg_index i
	  JOIN pg_class c ON c.oid = i.indexrelid
	  JOIN pg_am am ON am.oid = c.relam AND am.amname = 'kdindex'
	  JOIN pg_opclass oc ON oc.oid = i.indclass[0]
	  JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 1
	  JOIN pg_operator o ON o.oid = ao.amopopr
	 WHERE i.indexrelid = idx;
	IF tbl IS NULL THEN
		RAISE EXCEPTION '"%" is not a kdindex index', idx USING ERRCODE = 'wrong_object_type';
	END IF;
	IF k < 1 THEN
		RAISE EXCEPTION 'k must be positive, not %', k USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- a query sampled from the table does not count its own row
	knn := format('SELECT array_agg(ctid) FROM (SELECT ctid FROM %s WHERE ctid IS DISTINCT FROM $2 '
				  'ORDER BY %s %s $1 LIMIT %s) s', tbl, expr, op, k);
	PERFORM set_config('enable_seqscan', 'off', true);
	FOR q IN EXECUTE format('SELECT query, source, tids[1:%s] AS tids FROM %s ORDER BY query_id', k, teacher) LOOP
		IF plan = '' THEN
			FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || knn USING q.query, q.source LOOP
				plan := plan || line;
			END LOOP;
			IF plan NOT LIKE format('%%Index Scan using %s %%', (SELECT relname FROM pg_class WHERE oid = idx)) THEN
				RAISE EXCEPTION 'the planner does not use "%" for its nearest-neighbour queries', idx
					USING DETAIL = plan;
			END IF;
		END IF;
		PERFORM set_config('kdindex.rerank', '0', true);
		EXECUTE knn INTO found USING q.query, q.source;
		codes_hits := codes_hits + (SELECT count(*) FROM unnest(found) f WHERE f = ANY (q.tids));
		PERFORM set_config('kdindex.rerank', depth, true);
		EXECUTE knn INTO found USING q.query, q.source;
		rerank_hits := rerank_hits + (SELECT count(*) FROM unnest(found) f WHERE f = ANY (q.tids));
		queries := coalesce(queries, 0) + 1;
	END LOOP;
	codes_recall := codes_hits::float8 / (queries * k);
	reranked_recall := rerank_hits::float8 / (queries * k);
END
$$;

-- pgvector's vector: opclasses for kdindex on its operators.  Run at CREATE
-- EXTENSION when pgvector is already there, and by hand after installing it.
CREATE FUNCTION kdindex_enable_pgvector() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	vtype regtype := to_regtype('vector');
	nsp text;
	c record;
BEGIN
	IF vtype IS NULL THEN
		RAISE EXCEPTION 'type "vector" does not exist'
			USING ERRCODE = 'undefined_object',
			      HINT = 'Install pgvector first: CREATE EXTENSION vector.';
	END IF;
	SELECT quote_ident(n.nspname) INTO nsp
	  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
	 WHERE t.oid = vtype;
	FOR c IN SELECT * FROM (VALUES
		('vector_l2_ops', '<->', 'kdindex_l2_metric', ' DEFAULT'),
		('vector_ip_ops', '<#>', 'kdindex_ip_metric', ''),
		('vector_cosine_ops', '<=>', 'kdindex_cosine_metric', '')) AS v(opclass, op, metric, dflt)
	LOOP
		CONTINUE WHEN EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
							   WHERE am.amname = 'kdindex' AND oc.opcname = c.opclass);
		EXECUTE format('CREATE OPERATOR CLASS %I%s FOR TYPE %s.vector USING kdindex AS '
					   'OPERATOR 1 %s.%s (%s.vector, %s.vector) FOR ORDER BY float_ops, '
					   'FUNCTION 1 %s(internal)',
					   c.opclass, c.dflt, nsp, nsp, c.op, nsp, nsp, c.metric);
		-- created after CREATE EXTENSION: make it part of the extension
		IF NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_opclass oc ON d.objid = oc.oid
						JOIN pg_am am ON am.oid = oc.opcmethod
					   WHERE d.classid = 'pg_opclass'::regclass AND d.deptype = 'e'
						 AND am.amname = 'kdindex' AND oc.opcname = c.opclass) THEN
			EXECUTE format('ALTER EXTENSION kdindex ADD OPERATOR CLASS %I USING kdindex', c.opclass);
			EXECUTE format('ALTER EXTENSION kdindex ADD OPERATOR FAMILY %I USING kdindex', c.opclass);
		END IF;
	END LOOP;
END
$$;

DO $$
BEGIN
	IF to_regtype('vector') IS NOT NULL THEN
		PERFORM kdindex_enable_pgvector();
	END IF;
END
$$;
