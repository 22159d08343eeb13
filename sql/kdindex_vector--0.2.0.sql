-- kdindex_vector: kdindex's operator classes for pgvector's vector and halfvec
\echo Use "CREATE EXTENSION kdindex_vector" to load this file. \quit

-- An extension of its own, requiring both kdindex and pgvector, so that
-- pg_dump creates these after both and DROP EXTENSION vector CASCADE takes
-- only them (and the indexes using them) along.
--
-- Nothing is found by a name through search_path, which is pinned: kdindex's
-- and pgvector's schemas come from pg_extension (PG15 has no
-- @extschema:name@); pgvector's types are recognised by what they are (base
-- varlena types, members of the extension vector, with a C input function),
-- as kdindex's C code recognises them, and their operators as members of that
-- extension.
--
-- An operator class of that name already in this schema for kdindex (made by
-- kdindex 0.1.0, detached from it by its update to 0.2.0) is adopted, as
-- 'from unpackaged' scripts did: the indexes using it stay.
DO $$
DECLARE
	kd text;			-- kdindex's schema
	vext oid;			-- pgvector's extension
	kdam oid;			-- kdindex's access method
	c record;
	typ record;
	opr record;
	oc record;
BEGIN
	PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
	SELECT n.nspname INTO STRICT kd
	  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
	 WHERE e.extname = 'kdindex';
	SELECT e.oid INTO STRICT vext FROM pg_extension e WHERE e.extname = 'vector';
	SELECT am.oid INTO STRICT kdam
	  FROM pg_am am
	  JOIN pg_depend d ON d.classid = 'pg_am'::regclass AND d.objid = am.oid AND d.deptype = 'e'
	  JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
	 WHERE am.amname = 'kdindex' AND e.extname = 'kdindex';

	FOR c IN SELECT * FROM (VALUES
		('vector', 'vector_l2_ops', '<->', 'kdindex_l2_metric', true),
		('vector', 'vector_ip_ops', '<#>', 'kdindex_ip_metric', false),
		('vector', 'vector_cosine_ops', '<=>', 'kdindex_cosine_metric', false),
		('halfvec', 'halfvec_l2_ops', '<->', 'kdindex_l2_metric', false),
		('halfvec', 'halfvec_ip_ops', '<#>', 'kdindex_ip_metric', false),
		('halfvec', 'halfvec_cosine_ops', '<=>', 'kdindex_cosine_metric', false),
		('vector', 'vector_l1_ops', '<+>', 'kdindex_l1_metric', false),
		('halfvec', 'halfvec_l1_ops', '<+>', 'kdindex_l1_metric', false))
		AS v(typname, opclass, op, metric, dflt)
	LOOP
		SELECT t.oid, n.nspname INTO typ
		  FROM pg_type t
		  JOIN pg_namespace n ON n.oid = t.typnamespace
		  JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
							  AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = vext
		  JOIN pg_proc p ON p.oid = t.typinput
		  JOIN pg_language l ON l.oid = p.prolang
		 WHERE t.typname = c.typname AND t.typtype = 'b' AND t.typlen = -1 AND l.lanname = 'c';
		IF typ.oid IS NULL THEN
			RAISE EXCEPTION 'pgvector has no type "%"', c.typname
				USING ERRCODE = 'undefined_object',
					  HINT = 'kdindex_vector needs pgvector 0.7.0 or later: ALTER EXTENSION vector UPDATE.';
		END IF;
		SELECT o.oid, n.nspname INTO opr
		  FROM pg_operator o
		  JOIN pg_namespace n ON n.oid = o.oprnamespace
		  JOIN pg_depend d ON d.classid = 'pg_operator'::regclass AND d.objid = o.oid AND d.deptype = 'e'
							  AND d.refclassid = 'pg_extension'::regclass AND d.refobjid = vext
		 WHERE o.oprname = c.op AND o.oprleft = typ.oid AND o.oprright = typ.oid;
		IF opr.oid IS NULL THEN
			RAISE EXCEPTION 'pgvector has no operator % (%, %)', c.op, c.typname, c.typname
				USING ERRCODE = 'undefined_function';
		END IF;

		SELECT o.oid, o.opcintype, o.opcfamily,
			   EXISTS (SELECT 1 FROM pg_depend d
						WHERE d.classid = 'pg_opclass'::regclass AND d.objid = o.oid
						  AND d.deptype = 'e') AS member
		  INTO oc
		  FROM pg_opclass o
		 WHERE o.opcmethod = kdam AND o.opcname = c.opclass
		   AND o.opcnamespace = '@extschema@'::regnamespace;
		IF oc.oid IS NULL THEN
			EXECUTE format('CREATE OPERATOR CLASS @extschema@.%I%s FOR TYPE %I.%I USING kdindex AS '
						   'OPERATOR 1 %I.%s (%I.%I, %I.%I) FOR ORDER BY pg_catalog.float_ops, '
						   'FUNCTION 1 %I.%I(internal)',
						   c.opclass, CASE WHEN c.dflt THEN ' DEFAULT' ELSE '' END,
						   typ.nspname, c.typname, opr.nspname, c.op,
						   typ.nspname, c.typname, typ.nspname, c.typname, kd, c.metric);
		ELSIF oc.member THEN
			RAISE EXCEPTION 'operator class %.% for kdindex belongs to another extension', '@extschema@', c.opclass
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'kdindex 0.1.0 made it part of kdindex: ALTER EXTENSION kdindex UPDATE first.';
		ELSIF oc.opcintype <> typ.oid THEN
			RAISE EXCEPTION 'operator class %.% for kdindex exists for type %', '@extschema@', c.opclass,
				oc.opcintype::regtype
				USING ERRCODE = 'duplicate_object';
		ELSE
			EXECUTE format('ALTER EXTENSION kdindex_vector ADD OPERATOR CLASS @extschema@.%I USING kdindex',
						   c.opclass);
			IF NOT EXISTS (SELECT 1 FROM pg_depend d
							WHERE d.classid = 'pg_opfamily'::regclass AND d.objid = oc.opcfamily
							  AND d.deptype = 'e') THEN
				EXECUTE format('ALTER EXTENSION kdindex_vector ADD OPERATOR FAMILY %s USING kdindex',
							   (SELECT format('%I.%I', n.nspname, f.opfname) FROM pg_opfamily f
								  JOIN pg_namespace n ON n.oid = f.opfnamespace WHERE f.oid = oc.opcfamily));
			END IF;
		END IF;
	END LOOP;
END
$$;
