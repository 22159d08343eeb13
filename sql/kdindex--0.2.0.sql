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
	OUT train_mse float8, OUT train_seconds float8, OUT generation bigint, OUT lists int,
	OUT rowterm float8, OUT refine int)
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
-- arrays in rank order.  table_queries: that many of the table's own rows
-- added after a query table's (each left out of its own list).
CREATE FUNCTION kdindex_teacher(tbl regclass, col name, "into" text, queries regclass DEFAULT NULL,
	k int DEFAULT 100, nqueries int DEFAULT 2000, teacher text DEFAULT 'exact',
	metric text DEFAULT 'l2', table_queries int DEFAULT 0) RETURNS int
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

-- Citus (src/citus.c).  On a Citus coordinator a distributed or reference
-- table is an empty shell whose rows, and kdindex indexes, live in shards.
-- kdindex_info, kdindex_teacher, kdindex_train and kdindex_recall given such a
-- table or its index check the caller's rights as always, then call the
-- kdindex_citus_* functions below, which run the work on every shard
-- placement through Citus's master_run_on_worker: as the calling role, in a
-- new session per command, so each node checks that role's rights on its
-- shards again.  Nothing here is needed, or called, without Citus.  Called
-- directly they grant nothing: they run as the caller, whose rights every
-- query, command and node checks.

-- The placements of the Citus table of rel (the table or one of its indexes),
-- with the quoted, qualified names of the table's and rel's shards there.
CREATE FUNCTION @extschema@.kdindex_citus_placements(rel regclass,
	OUT shardid bigint, OUT nodename text, OUT nodeport int, OUT shard_table text,
	OUT shard_rel text)
	RETURNS SETOF record
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	tbl regclass := COALESCE((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = rel), rel);
BEGIN
	RETURN QUERY
	SELECT s.shardid, n.nodename::text, n.nodeport::int, shard_name(tbl, s.shardid, false),
		   shard_name(rel, s.shardid, false)
	  FROM pg_dist_shard s
	  JOIN pg_dist_placement p ON p.shardid = s.shardid
	  JOIN pg_dist_node n ON n.groupid = p.groupid
	 WHERE s.logicalrelid = tbl AND n.isactive
	 ORDER BY s.shardid, n.nodename, n.nodeport;
END
$$;

-- Run commands[i] on nodenames[i]:nodeports[i] (for shard shardids[i]), at
-- most one command per node at a time (a training or a teacher uses a core
-- and maintenance_work_mem), every node at once.
CREATE FUNCTION @extschema@.kdindex_citus_exec(shardids bigint[], nodenames text[], nodeports int[],
	commands text[],
	OUT shardid bigint, OUT nodename text, OUT nodeport int, OUT success bool, OUT result text)
	RETURNS SETOF record
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cur bigint;
	s bigint[];
	n text[];
	p int[];
	c text[];
BEGIN
	FOR cur IN SELECT DISTINCT x.rnd
				 FROM (SELECT row_number() OVER (PARTITION BY u.n, u.p ORDER BY u.o) AS rnd
						 FROM unnest(nodenames, nodeports) WITH ORDINALITY u(n, p, o)) x
				ORDER BY 1
	LOOP
		SELECT array_agg(x.s ORDER BY x.o), array_agg(x.n ORDER BY x.o),
			   array_agg(x.p ORDER BY x.o), array_agg(x.c ORDER BY x.o)
		  INTO s, n, p, c
		  FROM (SELECT u.*, row_number() OVER (PARTITION BY u.n, u.p ORDER BY u.o) AS rnd
				  FROM unnest(shardids, nodenames, nodeports, commands) WITH ORDINALITY u(s, n, p, c, o)) x
		 WHERE x.rnd = cur;
		RETURN QUERY
		SELECT s[w.o::int], w.node_name, w.node_port, w.success, w.result
		  FROM master_run_on_worker(n, p, c, true) WITH ORDINALITY w(node_name, node_port, success, result, o);
	END LOOP;
END
$$;

-- kdindex_info of every placement of a Citus table's kdindex index.
CREATE FUNCTION @extschema@.kdindex_shards(idx regclass,
	OUT shardid bigint, OUT nodename text, OUT nodeport int, OUT shard_index text,
	OUT quantizer text, OUT metric text, OUT dim int, OUT m int, OUT nbits int,
	OUT code_bytes int, OUT trained bool, OUT rows bigint, OUT total_bytes bigint,
	OUT bytes_per_row float8, OUT codebook_bytes bigint, OUT train_rows bigint,
	OUT train_mse float8, OUT train_seconds float8, OUT generation bigint, OUT lists int,
	OUT rowterm float8, OUT refine int)
	RETURNS SETOF record
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pl record;
	s bigint[];
	n text[];
	p int[];
	c text[];
	names text[];
	r record;
BEGIN
	IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RAISE EXCEPTION 'kdindex_shards needs Citus' USING ERRCODE = 'feature_not_supported';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_dist_partition d ON d.logicalrelid = i.indrelid
					WHERE i.indexrelid = idx) THEN
		RAISE EXCEPTION '"%" is not an index of a Citus distributed or reference table', idx
			USING ERRCODE = 'wrong_object_type', HINT = 'kdindex_info reports on any other index.';
	END IF;
	SELECT array_agg(x.shardid), array_agg(x.nodename), array_agg(x.nodeport),
		   array_agg(format('SELECT row_to_json(i) FROM @extschema@.kdindex_info(%L) i', x.shard_rel)),
		   array_agg(x.shard_rel)
	  INTO s, n, p, c, names
	  FROM @extschema@.kdindex_citus_placements(idx) x;
	FOR r IN SELECT * FROM @extschema@.kdindex_citus_exec(s, n, p, c) LOOP
		IF NOT r.success THEN
			RAISE EXCEPTION 'kdindex_info failed on shard % at %:%: %', r.shardid, r.nodename, r.nodeport, r.result;
		END IF;
		shardid := r.shardid; nodename := r.nodename; nodeport := r.nodeport;
		shard_index := names[array_position(s, r.shardid)];
		SELECT * INTO quantizer, metric, dim, m, nbits, code_bytes, trained, rows, total_bytes,
			   bytes_per_row, codebook_bytes, train_rows, train_mse, train_seconds, generation, lists,
			   rowterm, refine
		  FROM json_to_record(r.result::json) AS j(quantizer text, metric text, dim int, m int,
			   nbits int, code_bytes int, trained bool, rows bigint, total_bytes bigint,
			   bytes_per_row float8, codebook_bytes bigint, train_rows bigint, train_mse float8,
			   train_seconds float8, generation bigint, lists int, rowterm float8, refine int);
		RETURN NEXT;
	END LOOP;
END
$$;

-- kdindex_info of a Citus table's index: its shards' (one placement each)
-- summed; trained if all are; the oldest generation; the row term's weights averaged.
CREATE FUNCTION @extschema@.kdindex_citus_info(idx regclass,
	OUT quantizer text, OUT metric text, OUT dim int, OUT m int, OUT nbits int,
	OUT code_bytes int, OUT trained bool, OUT rows bigint, OUT total_bytes bigint,
	OUT bytes_per_row float8, OUT codebook_bytes bigint, OUT train_rows bigint,
	OUT train_mse float8, OUT train_seconds float8, OUT generation bigint, OUT lists int,
	OUT rowterm float8, OUT refine int)
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT min(s.quantizer), min(s.metric), min(s.dim), min(s.m), min(s.nbits), min(s.code_bytes),
		   bool_and(s.trained), sum(s.rows)::bigint, sum(s.total_bytes)::bigint,
		   CASE WHEN sum(s.rows) > 0 THEN (sum(s.total_bytes) / sum(s.rows))::float8 END,
		   sum(s.codebook_bytes)::bigint, sum(s.train_rows)::bigint, avg(s.train_mse),
		   sum(s.train_seconds), min(s.generation), min(s.lists), avg(s.rowterm),
		   min(s.refine)
	  FROM (SELECT DISTINCT ON (x.shardid) x.*
			  FROM @extschema@.kdindex_shards(idx) x
			 ORDER BY x.shardid, x.nodename, x.nodeport) s
$$;

-- The single integer primary key of tbl, or an error saying why it is needed
CREATE FUNCTION @extschema@.kdindex_citus_pk(tbl regclass, what text) RETURNS name
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pk name;
BEGIN
	SELECT a.attname INTO pk
	  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	 WHERE i.indrelid = tbl AND i.indisprimary AND i.indnatts = 1
	   AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype);
	IF pk IS NULL THEN
		RAISE EXCEPTION '% on the Citus table "%" needs a primary key of one integer column', what,
			(SELECT relname FROM pg_class WHERE oid = tbl)
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Row TIDs are local to each shard: the lists name rows by primary key.';
	END IF;
	RETURN pk;
END
$$;

-- The distance operator of a metric on typ, schema-qualified
CREATE FUNCTION @extschema@.kdindex_citus_operator(metric text, typ regtype) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT format('OPERATOR(%I.%s)', n.nspname, o.oprname)
	  FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
	 WHERE o.oprleft = typ AND o.oprright = typ
	   AND o.oprname = CASE metric WHEN 'l2' THEN '<->' WHEN 'ip' THEN '<#>'
							   WHEN 'cosine' THEN '<=>' WHEN 'l1' THEN '<+>' END
	 ORDER BY n.nspname = '@extschema@' DESC
	 LIMIT 1
$$;

-- kdindex_teacher on a Citus table: the exact top-k of each query over all
-- shards, by primary key.  Each query is one ORDER BY (distance + 0) LIMIT k
-- through the coordinator, which no index can serve: every shard computes its
-- exact top-k with the distance operator and the coordinator merges them (with
-- teacher => 'index', ORDER BY distance: the shards' indexes answer).  The
-- result is a table on the coordinator, as kdindex_teacher's, whose tids and
-- source are NULL (TIDs are shard-local) and whose source_id is the query's
-- own row.  "into" comes quoted and schema-qualified.
CREATE FUNCTION @extschema@.kdindex_citus_teacher(tbl regclass, col name, "into" text, queries regclass,
	k int, nqueries int, teacher text, metric text, table_queries int) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	pk name := @extschema@.kdindex_citus_pk(tbl, 'kdindex_teacher');
	typ regtype := (SELECT COALESCE(NULLIF(t.typbasetype, 0), t.oid)
					  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
					 WHERE a.attrelid = tbl AND a.attname = col);
	op text := @extschema@.kdindex_citus_operator(metric, typ);
	dist text;
	q record;
	ids bigint[];
	dists float8[];
	n int := 0;
	part int;
BEGIN
	IF op IS NULL THEN
		RAISE EXCEPTION 'no operator for metric % on type %', metric, typ USING ERRCODE = 'undefined_function';
	END IF;
	dist := format('(%I %s $1)', col, op) || CASE WHEN teacher = 'exact' THEN ' + 0::float8' ELSE '' END;
	EXECUTE format('CREATE TABLE %s (query_id int PRIMARY KEY, query %s, source tid, tids tid[], '
				   'ids bigint[], distances float8[], source_id bigint)', "into", typ);
	-- part 0: the query table's rows (or, without one, nqueries sampled rows);
	-- part 1: table_queries sampled rows after a query table's
	FOR part IN 0..1 LOOP
		CONTINUE WHEN part = 1 AND (queries IS NULL OR table_queries = 0);
		FOR q IN EXECUTE
			CASE WHEN queries IS NULL OR part = 1
			THEN format('SELECT %1$I::bigint AS id, %2$I AS v FROM %3$s WHERE %2$I IS NOT NULL '
						'ORDER BY hashint8(%1$I::bigint), %1$I LIMIT %4$s', pk, col, tbl,
						CASE WHEN part = 1 THEN table_queries ELSE nqueries END)
			ELSE format('SELECT NULL::bigint AS id, s.v FROM (SELECT t.id AS qid, t.%1$I AS v FROM %2$s t '
						'WHERE t.%1$I IS NOT NULL ORDER BY t.id LIMIT %3$s) s ORDER BY s.qid',
						col, queries, nqueries) END
		LOOP
			CONTINUE WHEN metric = 'cosine' AND @extschema@.kdindex_citus_zero(q.v, op);
			EXECUTE format('SELECT array_agg(id ORDER BY d, id), array_agg(d ORDER BY d, id) FROM '
						   '(SELECT %1$I::bigint AS id, %2$s AS d FROM %3$s WHERE %4$I IS NOT NULL '
						   'AND %1$I IS DISTINCT FROM $2 AND %2$s <> ''NaN''::float8 '
						   'ORDER BY %2$s, %1$I LIMIT %5$s) s', pk, dist, tbl, col, k)
				INTO ids, dists USING q.v, q.id;
			n := n + 1;
			EXECUTE format('INSERT INTO %s VALUES ($1, $2, NULL, NULL, $3, $4, $5)', "into")
				USING n, q.v, ids, dists, q.id;
		END LOOP;
	END LOOP;
	IF n = 0 THEN
		RAISE EXCEPTION 'no queries: the query source has no non-NULL vectors' USING ERRCODE = 'no_data_found';
	END IF;
	RETURN n;
END
$$;

-- Is v a zero vector (which has no cosine distance)?  op is <=> on its type
CREATE FUNCTION @extschema@.kdindex_citus_zero(v anyelement, op text) RETURNS bool
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	d float8;
BEGIN
	EXECUTE format('SELECT $1 %s $1', op) INTO d USING v;
	RETURN d = 'NaN'::float8;
END
$$;

-- The column and metric of a Citus table's kdindex index, or an error
CREATE FUNCTION @extschema@.kdindex_citus_column(idx regclass, what text, OUT col name, OUT metric text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	SELECT a.attname, CASE WHEN c.opcname LIKE '%\_ip\_ops' THEN 'ip'
						   WHEN c.opcname LIKE '%\_cosine\_ops' THEN 'cosine'
						   WHEN c.opcname LIKE '%\_l1\_ops' THEN 'l1' ELSE 'l2' END
	  INTO col, metric
	  FROM pg_index i
	  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	  JOIN pg_opclass c ON c.oid = i.indclass[0]
	 WHERE i.indexrelid = idx;
	IF col IS NULL THEN
		RAISE EXCEPTION '% on a Citus table needs an index on a column, not on an expression', what
			USING ERRCODE = 'feature_not_supported';
	END IF;
END
$$;

-- kdindex_train on a Citus table's index: on every placement, kdindex_train
-- of the shard's index against a teacher of the shard's own rows beside it
-- ("teacher" followed by the shard id), which is made there first when
-- missing (the first training, or a shard moved since) with the coordinator
-- teacher's number of queries and list length.  Each placement commits on its
-- own: a failure is reported after the others are trained.  One NOTICE per
-- placement; the result is the mean over placements.
CREATE FUNCTION @extschema@.kdindex_citus_train(idx regclass, teacher regclass, nepochs int,
	learning_rate float8, rec_weight float8, loss text, holdout float8,
	tau float8, balance float8, negatives int, seed bigint,
	OUT loss_before float8, OUT loss_after float8,
	OUT recall_before float8, OUT recall_after float8,
	OUT epochs int, OUT best_epoch int, OUT seconds_per_epoch float8, OUT seconds float8,
	OUT train_queries int, OUT heldout_queries int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c record := @extschema@.kdindex_citus_column(idx, 'kdindex_train');
	tnsp name := (SELECT n.nspname FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
				   WHERE r.oid = teacher AND r.relpersistence <> 't');
	tname name := (SELECT r.relname FROM pg_class r WHERE r.oid = teacher);
	nq int;
	k int;
	t0 timestamptz := clock_timestamp();
	s bigint[];
	n text[];
	p int[];
	ensure text[];
	train text[];
	r record;
	res record;
	failed text[] := '{}';
	results json[] := '{}';
BEGIN
	IF tnsp IS NULL THEN
		RAISE EXCEPTION 'kdindex_train on a Citus table needs a teacher that is not a temporary table'
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'Each shard''s teacher is made beside it, in a schema of that name.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = teacher AND attname = 'ids' AND NOT attisdropped) THEN
		RAISE EXCEPTION '"%" is not a teacher table: it has no column ids', teacher
			USING ERRCODE = 'wrong_object_type';
	END IF;
	EXECUTE format('SELECT count(*), max(cardinality(ids)) FROM %s', teacher) INTO nq, k;
	IF nq = 0 OR k IS NULL THEN
		RAISE EXCEPTION 'teacher table "%" is empty', teacher USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT array_agg(x.shardid), array_agg(x.nodename), array_agg(x.nodeport),
		   array_agg(format('SELECT CASE WHEN to_regclass(%1$L) IS NULL THEN '
							'@extschema@.kdindex_teacher(%2$L, %3$L, %1$L, NULL, %4$s, %5$s, ''exact'', %6$L) '
							'ELSE 0 END', x.st, x.shard_table, c.col, k, nq, c.metric)),
		   array_agg(format('SELECT row_to_json(t) FROM @extschema@.kdindex_train(%L, %L, %s, %s, %s, %L, %s, %s, %s, %s, %s) t',
							x.shard_rel, x.st, nepochs, learning_rate, rec_weight, loss, holdout, tau,
							balance, negatives, seed))
	  INTO s, n, p, ensure, train
	  FROM (SELECT pl.*, format('%I.%I', tnsp,
								left(tname, 62 - length(pl.shardid::text)) || '_' || pl.shardid) AS st
			  FROM @extschema@.kdindex_citus_placements(idx) pl) x;
	FOR r IN SELECT * FROM @extschema@.kdindex_citus_exec(s, n, p, ensure) LOOP
		IF NOT r.success THEN
			failed := failed || format('shard %s at %s:%s (teacher): %s', r.shardid, r.nodename, r.nodeport, r.result);
		ELSIF r.result::int > 0 THEN
			RAISE NOTICE 'kdindex_train: shard % at %:%: made a teacher of % queries', r.shardid, r.nodename, r.nodeport, r.result;
		END IF;
	END LOOP;
	IF cardinality(failed) = 0 THEN
		FOR r IN SELECT * FROM @extschema@.kdindex_citus_exec(s, n, p, train) LOOP
			IF NOT r.success THEN
				failed := failed || format('shard %s at %s:%s: %s', r.shardid, r.nodename, r.nodeport, r.result);
				CONTINUE;
			END IF;
			results := results || r.result::json;
			SELECT * INTO res FROM json_to_record(r.result::json) AS j(recall_before float8, recall_after float8, seconds float8);
			RAISE NOTICE 'kdindex_train: shard % at %:%: held-out recall % -> % in % s', r.shardid, r.nodename,
				r.nodeport, round(res.recall_before::numeric, 4), round(res.recall_after::numeric, 4), round(res.seconds::numeric, 1);
		END LOOP;
	END IF;
	IF cardinality(failed) = 0 AND NOT COALESCE((SELECT 'distill=on' = ANY (reloptions) FROM pg_class WHERE oid = idx), false) THEN
		-- a shard rebuilt by a move, split or rebalance then distils again
		-- (from its own rows) instead of losing the distillation
		EXECUTE format('ALTER INDEX %s SET (distill = on)', idx);
		RAISE NOTICE 'kdindex_train: "%" now has distill = on, so that shards rebuilt by a move, split or rebalance are distilled again', idx;
	END IF;
	IF cardinality(failed) > 0 THEN
		RAISE EXCEPTION 'kdindex_train failed on % of % placements of "%"', cardinality(failed), cardinality(s), idx
			USING DETAIL = array_to_string(failed, E'\n'),
				  HINT = 'Each placement commits on its own: the others are trained.';
	END IF;
	SELECT avg(j.loss_before), avg(j.loss_after), avg(j.recall_before), avg(j.recall_after),
		   max(j.epochs), max(j.best_epoch), avg(j.seconds_per_epoch),
		   extract(epoch FROM clock_timestamp() - t0)::float8, sum(j.train_queries)::int, sum(j.heldout_queries)::int
	  INTO loss_before, loss_after, recall_before, recall_after, epochs, best_epoch, seconds_per_epoch,
		   seconds, train_queries, heldout_queries
	  FROM unnest(results) t(j),
		   json_to_record(t.j) AS j(loss_before float8, loss_after float8, recall_before float8,
			   recall_after float8, epochs int, best_epoch int, seconds_per_epoch float8, seconds float8,
			   train_queries int, heldout_queries int);
END
$$;

-- kdindex_recall on a Citus table's index: each teacher query through the
-- coordinator as an application sends it (ORDER BY distance LIMIT k + 1, its
-- own row dropped), the shards answering with their kdindex indexes, compared
-- by primary key with the teacher's lists: codes only (kdindex.rerank = 0 on
-- the shards, whose top k + 1 the coordinator merges by exact distance) and
-- at the coordinator's kdindex.rerank.  Both reach the shards as SET LOCAL
-- (citus.propagate_set_commands = 'local'): the rest of the transaction runs
-- the shards at the coordinator's kdindex.rerank.
CREATE FUNCTION @extschema@.kdindex_citus_recall(idx regclass, teacher regclass, k int,
	OUT queries int, OUT codes_recall float8, OUT reranked_recall float8)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	tbl regclass := (SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = idx);
	pk name := @extschema@.kdindex_citus_pk(tbl, 'kdindex_recall');
	c record := @extschema@.kdindex_citus_column(idx, 'kdindex_recall');
	op text := (SELECT format('OPERATOR(%I.%s)', n.nspname, o.oprname)
				  FROM pg_index i JOIN pg_opclass oc ON oc.oid = i.indclass[0]
				  JOIN pg_amop a ON a.amopfamily = oc.opcfamily AND a.amopstrategy = 1 AND a.amoppurpose = 'o'
				  JOIN pg_operator o ON o.oid = a.amopopr JOIN pg_namespace n ON n.oid = o.oprnamespace
				 WHERE i.indexrelid = idx LIMIT 1);
	depth text := current_setting('kdindex.rerank');
	sql text;
	q record;
	got bigint[];
	truth bigint := 0;
	hits_codes bigint := 0;
	hits_rerank bigint := 0;
	longest int;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = teacher AND attname = 'source_id' AND NOT attisdropped) THEN
		RAISE EXCEPTION 'teacher "%" does not name rows by primary key',
			(SELECT relname FROM pg_class WHERE oid = teacher)
			USING ERRCODE = 'wrong_object_type',
				  HINT = format('Make it with kdindex_teacher(%L, ...) on the coordinator.', tbl);
	END IF;
	EXECUTE format('SELECT max(cardinality(ids)) FROM %s', teacher) INTO longest;
	IF k > longest THEN
		RAISE EXCEPTION 'k = % exceeds the teacher''s lists, which hold at most % neighbours', k, longest
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- a MATERIALIZED CTE is a subplan to Citus, which then opens a transaction
	-- on the workers, carrying the SET LOCAL (a plain read outside a BEGIN
	-- block runs on the workers without one, and without the SET LOCAL)
	sql := format('WITH c AS MATERIALIZED (SELECT %1$I::bigint AS id, %3$I %4$s $1 AS d FROM %2$s '
				  'ORDER BY %3$I %4$s $1 LIMIT %5$s) SELECT array_agg(id ORDER BY d, id) FROM c',
				  pk, tbl, c.col, op, k + 1);
	PERFORM set_config('citus.propagate_set_commands', 'local', true);
	queries := 0;
	FOR q IN EXECUTE format('SELECT query, source_id, ids[1:%s] AS ids FROM %s ORDER BY query_id', k, teacher) LOOP
		queries := queries + 1;
		truth := truth + cardinality(array_remove(q.ids, NULL));
		EXECUTE 'SET LOCAL kdindex.rerank = 0';
		EXECUTE sql INTO got USING q.query;
		hits_codes := hits_codes + @extschema@.kdindex_citus_hits(got, q.source_id, q.ids, k);
		EXECUTE format('SET LOCAL kdindex.rerank = %s', depth);
		EXECUTE sql INTO got USING q.query;
		hits_rerank := hits_rerank + @extschema@.kdindex_citus_hits(got, q.source_id, q.ids, k);
	END LOOP;
	IF truth > 0 THEN
		codes_recall := hits_codes::float8 / truth;
		reranked_recall := hits_rerank::float8 / truth;
	END IF;
END
$$;

-- How many of the first k of got (source left out) are in truth
CREATE FUNCTION @extschema@.kdindex_citus_hits(got bigint[], source bigint, truth bigint[], k int) RETURNS int
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT count(*)::int
	  FROM unnest((CASE WHEN source IS NULL THEN got ELSE array_remove(got, source) END)[1:k]) g
	 WHERE g = ANY (truth)
$$;
