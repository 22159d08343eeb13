-- kdindex 0.1.0 -> 0.2.0: kdindex_verify; L1 distance (<+>, float4_l1_ops);
-- kdindex_recall in C (privilege checks, a pinned search_path, usable as a
-- session's first statement); pgvector's operator classes move to the
-- extension kdindex_vector (see below).  Indexes built by 0.1.0 are read as
-- they are.
\echo Use "ALTER EXTENSION kdindex UPDATE TO '0.2.0'" to load this file. \quit

-- Check an index's pages, as amcheck's bt_index_check does a B-tree's; with
-- heapallindexed, also that every live row of the table is in it exactly
-- once.  Raises an ERROR (SQLSTATE XX002) naming the first corruption found;
-- returns nothing when the index is sound.  The table's owner may call it.
CREATE FUNCTION kdindex_verify(idx regclass, heapallindexed bool DEFAULT false) RETURNS void
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- recall@k of an index against a teacher table: codes only, and re-ranked at
-- the session's kdindex.rerank (k at most the teacher's list length)
CREATE OR REPLACE FUNCTION kdindex_recall(idx regclass, teacher regclass, k int DEFAULT 10,
	OUT queries int, OUT codes_recall float8, OUT reranked_recall float8)
	AS 'MODULE_PATHNAME' LANGUAGE C STRICT;

-- kdindex_train takes a seed (the held-out pick and the batch order); before the
-- block below, which pins search_path for the rest of the script
DROP FUNCTION kdindex_train(regclass, regclass, int, float8, float8, text, float8, float8, float8, int);
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

-- L1 (taxicab) distance on real[], pgvector's <+>, and its operator class
CREATE FUNCTION kdindex_l1_distance(real[], real[]) RETURNS float8
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR <+> (
	LEFTARG = real[], RIGHTARG = real[], FUNCTION = kdindex_l1_distance,
	COMMUTATOR = '<+>'
);
CREATE FUNCTION kdindex_l1_metric(internal) RETURNS int4
	AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR CLASS float4_l1_ops
	FOR TYPE real[] USING kdindex AS
	OPERATOR 1 <+> (real[], real[]) FOR ORDER BY float_ops,
	FUNCTION 1 kdindex_l1_metric(internal);

-- pgvector's types get their operator classes from the extension
-- kdindex_vector (CREATE EXTENSION kdindex_vector), which pg_dump creates
-- after both kdindex and pgvector.  This function, 0.1.0's way, only says so.
CREATE OR REPLACE FUNCTION kdindex_enable_pgvector() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	RAISE EXCEPTION 'kdindex_enable_pgvector() is replaced by the extension kdindex_vector'
		USING ERRCODE = 'feature_not_supported',
		      HINT = 'CREATE EXTENSION kdindex_vector creates the operator classes for pgvector''s vector and halfvec.';
END
$$;

-- 0.1.0 made pgvector's operator classes members of kdindex, so pg_dump
-- created them before pgvector's type existed, and DROP EXTENSION vector
-- CASCADE dropped kdindex.  Detach them (and their families), leaving them
-- and the indexes using them in place: CREATE EXTENSION kdindex_vector in
-- their schema adopts them.
DO $$
DECLARE
	c record;
	detached text[] := '{}';
	schemas text[] := '{}';
BEGIN
	PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
	FOR c IN
		SELECT oc.oid, n.nspname, oc.opcname, f.opfname, fn.nspname AS fnsp,
			   EXISTS (SELECT 1 FROM pg_depend fd
						WHERE fd.classid = 'pg_opfamily'::regclass AND fd.objid = f.oid
						  AND fd.deptype = 'e' AND fd.refobjid = d.refobjid) AS family_member
		  FROM pg_opclass oc
		  JOIN pg_namespace n ON n.oid = oc.opcnamespace
		  JOIN pg_opfamily f ON f.oid = oc.opcfamily
		  JOIN pg_namespace fn ON fn.oid = f.opfnamespace
		  JOIN pg_depend d ON d.classid = 'pg_opclass'::regclass AND d.objid = oc.oid AND d.deptype = 'e'
		  JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
		 WHERE e.extname = 'kdindex' AND oc.opcintype <> 'pg_catalog._float4'::regtype
		 ORDER BY oc.opcname
	LOOP
		EXECUTE format('ALTER EXTENSION kdindex DROP OPERATOR CLASS %I.%I USING kdindex',
					   c.nspname, c.opcname);
		IF c.family_member THEN
			EXECUTE format('ALTER EXTENSION kdindex DROP OPERATOR FAMILY %I.%I USING kdindex',
						   c.fnsp, c.opfname);
		END IF;
		detached := detached || format('%I.%I', c.nspname, c.opcname);
		IF NOT c.nspname = ANY (schemas) THEN
			schemas := schemas || c.nspname::text;
		END IF;
	END LOOP;
	IF cardinality(detached) > 0 THEN
		-- a WARNING: CREATE and ALTER EXTENSION hold back a script's NOTICEs
		RAISE WARNING 'operator classes % for pgvector are no longer part of kdindex; indexes using them are kept',
			array_to_string(detached, ', ')
			USING HINT = format('CREATE EXTENSION kdindex_vector SCHEMA %s adopts them (and adds the halfvec ones).',
								array_to_string(schemas, ', '));
	END IF;
END
$$;

