-- kdindex 0.1.0 -> 0.2.0: kdindex_verify; kdindex_recall in C (privilege
-- checks, a pinned search_path, usable as a session's first statement);
-- kdindex_enable_pgvector recognises pgvector's type by its extension, not
-- its name.  Indexes built by 0.1.0 are read as they are.
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

-- pgvector's vector: opclasses for kdindex on its operators.  Run at CREATE
-- EXTENSION when pgvector is already there, and by hand after installing it.
-- pgvector's type is recognised by what it is, not by its name (any role may
-- create a type "vector"): a base varlena type of the extension named vector
-- whose input function is C.  Everything is schema-qualified and the
-- search_path pinned, so no one's objects can stand in for these.
CREATE OR REPLACE FUNCTION kdindex_enable_pgvector() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	vtype oid;
	nsp text;
	c record;
BEGIN
	SELECT t.oid, quote_ident(n.nspname) INTO vtype, nsp
	  FROM pg_type t
	  JOIN pg_namespace n ON n.oid = t.typnamespace
	  JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
	  JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
	  JOIN pg_proc p ON p.oid = t.typinput
	  JOIN pg_language l ON l.oid = p.prolang
	 WHERE e.extname = 'vector' AND t.typname = 'vector' AND t.typtype = 'b' AND t.typlen = -1
	   AND l.lanname = 'c';
	IF vtype IS NULL THEN
		RAISE EXCEPTION 'type "vector" of pgvector does not exist'
			USING ERRCODE = 'undefined_object',
			      HINT = 'Install pgvector first: CREATE EXTENSION vector.';
	END IF;
	FOR c IN SELECT * FROM (VALUES
		('vector_l2_ops', '<->', 'kdindex_l2_metric', ' DEFAULT'),
		('vector_ip_ops', '<#>', 'kdindex_ip_metric', ''),
		('vector_cosine_ops', '<=>', 'kdindex_cosine_metric', '')) AS v(opclass, op, metric, dflt)
	LOOP
		CONTINUE WHEN EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
							   WHERE am.amname = 'kdindex' AND oc.opcname = c.opclass
								 AND oc.opcnamespace = '@extschema@'::regnamespace);
		EXECUTE format('CREATE OPERATOR CLASS @extschema@.%I%s FOR TYPE %s.vector USING kdindex AS '
					   'OPERATOR 1 %s.%s (%s.vector, %s.vector) FOR ORDER BY pg_catalog.float_ops, '
					   'FUNCTION 1 @extschema@.%I(internal)',
					   c.opclass, c.dflt, nsp, nsp, c.op, nsp, nsp, c.metric);
		-- created after CREATE EXTENSION: make it part of the extension
		IF NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_opclass oc ON d.objid = oc.oid
						JOIN pg_am am ON am.oid = oc.opcmethod
					   WHERE d.classid = 'pg_opclass'::regclass AND d.deptype = 'e'
						 AND am.amname = 'kdindex' AND oc.opcname = c.opclass
						 AND oc.opcnamespace = '@extschema@'::regnamespace) THEN
			EXECUTE format('ALTER EXTENSION kdindex ADD OPERATOR CLASS @extschema@.%I USING kdindex', c.opclass);
			EXECUTE format('ALTER EXTENSION kdindex ADD OPERATOR FAMILY @extschema@.%I USING kdindex', c.opclass);
		END IF;
	END LOOP;
END
$$;
