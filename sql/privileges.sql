-- Privileges and SQL safety: every kdindex function is callable by any role
-- that can connect, so each checks the caller's rights on what it reads or
-- changes (as REINDEX, amcheck and pgstattuple do), runs table code as the
-- table's owner, and trusts no type, table, column or operator by its name.
SET client_min_messages = warning;
CREATE ROLE regress_kd_alice;
CREATE ROLE regress_kd_mallory;
RESET client_min_messages;
CREATE SCHEMA alice AUTHORIZATION regress_kd_alice;
CREATE SCHEMA mallory AUTHORIZATION regress_kd_mallory;

-- the superuser's table, index and teacher; mallory may read the teacher only
CREATE TABLE secret (id int PRIMARY KEY, v real[]);
INSERT INTO secret SELECT i, make_vec(i, 8) FROM generate_series(1, 400) i;
CREATE INDEX secret_kd ON secret USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT kdindex_teacher('secret', 'v', 'secret_t', k => 10, nqueries => 40);
GRANT SELECT ON secret_t TO regress_kd_mallory;
CREATE VIEW secret_view AS SELECT * FROM secret;
GRANT SELECT ON secret_view TO regress_kd_mallory;
-- and one in a schema mallory may not even look into
CREATE SCHEMA hidden;
CREATE TABLE hidden.h (id int, v real[]);
INSERT INTO hidden.h SELECT i, make_vec(i, 8) FROM generate_series(1, 100) i;
CREATE INDEX h_kd ON hidden.h USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT 'hidden.h_kd'::regclass::oid AS h_kd_oid, 'secret_kd'::regclass::oid AS secret_kd_oid \gset

-- 1. Without rights on the table, nothing: not by name, not by OID through a
-- schema without USAGE, not as an oracle through recall_before
SET ROLE regress_kd_mallory;
SELECT * FROM kdindex_train('public.secret_kd', 'secret_t', epochs => 1);
SELECT * FROM kdindex_train(:secret_kd_oid, 'secret_t', epochs => 1);
SELECT * FROM kdindex_train(:h_kd_oid, 'secret_t', epochs => 1);
SELECT * FROM kdindex_recall('secret_kd', 'secret_t');
SELECT * FROM kdindex_recall(:h_kd_oid, 'secret_t');
SELECT rows FROM kdindex_info('secret_kd');
SELECT rows FROM kdindex_info(:h_kd_oid);
SELECT * FROM kdindex_lists('secret_kd');
SELECT kdindex_teacher('secret', 'v', 'mallory.t1');
SELECT kdindex_teacher('secret_view', 'v', 'mallory.t1');
CREATE TABLE mallory.mine (id int, v real[]);
INSERT INTO mallory.mine SELECT i, make_vec(i, 8) FROM generate_series(1, 100) i;
CREATE INDEX mine_kd ON mallory.mine USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT kdindex_teacher('mallory.mine', 'v', 'mallory.t1', queries => 'secret');
-- her own queries do not open the table's rows to her
SELECT kdindex_teacher('secret', 'v', 'mallory.t1', queries => 'mallory.mine', table_queries => 5);
RESET ROLE;
-- a teacher table mallory cannot read is refused for her own index
REVOKE SELECT ON secret_t FROM regress_kd_mallory;
SET ROLE regress_kd_mallory;
SET search_path = mallory, public;
SELECT kdindex_teacher('mallory.mine', 'v', 'mine_t', k => 5, nqueries => 20);
RESET search_path;
SELECT epochs FROM kdindex_train('mallory.mine_kd', 'public.secret_t', epochs => 1);
SELECT * FROM kdindex_recall('mallory.mine_kd', 'public.secret_t', k => 5);
-- her own index, her own teacher: all fine
SELECT epochs FROM kdindex_train('mallory.mine_kd', 'mallory.mine_t', epochs => 1);
SELECT queries FROM kdindex_recall('mallory.mine_kd', 'mallory.mine_t', k => 5);
SELECT rows, generation FROM kdindex_info('mallory.mine_kd');
RESET ROLE;

-- SELECT on the table lets a role measure an index and look at it, not
-- retrain it (that takes ownership, as REINDEX)
GRANT SELECT ON secret, secret_t TO regress_kd_mallory;
SET ROLE regress_kd_mallory;
SELECT queries, codes_recall > 0 AS measured FROM kdindex_recall('secret_kd', 'secret_t');
SELECT rows FROM kdindex_info('secret_kd');
SELECT * FROM kdindex_train('secret_kd', 'secret_t', epochs => 1);
RESET ROLE;
REVOKE SELECT ON secret FROM regress_kd_mallory;
-- pg_stat_scan_tables may look at any index, as with pgstatindex
GRANT pg_stat_scan_tables TO regress_kd_mallory;
SET ROLE regress_kd_mallory;
SELECT rows FROM kdindex_info('secret_kd');
SELECT count(*) FROM kdindex_lists('secret_kd');
SELECT * FROM kdindex_recall('secret_kd', 'secret_t');
RESET ROLE;
REVOKE pg_stat_scan_tables FROM regress_kd_mallory;

-- non-kdindex relations are refused by name, before any lock
CREATE INDEX secret_btree ON secret (id);
SELECT * FROM kdindex_info('secret');
SELECT * FROM kdindex_lists('secret_btree');
SELECT * FROM kdindex_train('secret_btree', 'secret_t');
SELECT * FROM kdindex_recall('secret_view', 'secret_t');
CREATE TABLE parted (id int, v real[]) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000);
SET client_min_messages = warning;
CREATE INDEX parted_kd ON parted USING kdindex (v);
RESET client_min_messages;
SELECT * FROM kdindex_info('parted_kd');
DROP TABLE parted;
SELECT * FROM kdindex_recall('secret_kd', 'secret_btree');
SELECT kdindex_teacher('secret', 'v', 'x', queries => 'secret_kd');
DROP INDEX secret_btree;

-- 2. Index expressions run as the table's owner, in a security-restricted
-- operation, with a safe search_path, whoever calls (CVE-2022-1552's
-- pattern): alice's function records who ran it and tries to make alice a
-- superuser when it runs as one
SET ROLE regress_kd_alice;
CREATE TABLE alice.log (who name, search_path text, restricted bool);
CREATE FUNCTION alice.logit() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	restricted bool := false;
BEGIN
	BEGIN
		CREATE TEMP TABLE IF NOT EXISTS probe (x int);
	EXCEPTION WHEN insufficient_privilege THEN
		restricted := true;
	END;
	INSERT INTO alice.log VALUES (current_user, current_setting('search_path'), restricted);
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		ALTER ROLE regress_kd_alice SUPERUSER;
	END IF;
END
$$;
CREATE FUNCTION alice.f(v real[]) RETURNS real[] IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
	PERFORM alice.logit();
	RETURN v;
END
$$;
CREATE TABLE alice.items (id int, v real[]);
INSERT INTO alice.items SELECT i, make_vec(i, 8) FROM generate_series(1, 300) i;
CREATE INDEX items_kd ON alice.items USING kdindex ((alice.f(v))) WITH (m = 4, nbits = 4);
SET search_path = alice, public;
SELECT kdindex_teacher('alice.items', 'v', 'items_t', k => 5, nqueries => 20);
RESET search_path;
TRUNCATE alice.log;
RESET ROLE;
SELECT epochs FROM kdindex_train('alice.items_kd', 'alice.items_t', epochs => 1);
SELECT count(*) > 0 AS ran, who, search_path, restricted FROM alice.log GROUP BY 2, 3, 4;
TRUNCATE alice.log;
SELECT queries FROM kdindex_recall('alice.items_kd', 'alice.items_t', k => 5);
SELECT count(*) > 0 AS ran, who, search_path, restricted FROM alice.log GROUP BY 2, 3, 4;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_kd_alice';

-- 3. The caller's search_path changes nothing: mallory's operators and
-- functions ahead of pg_catalog are never called
SET ROLE regress_kd_mallory;
CREATE FUNCTION mallory.boom(real[], real[]) RETURNS float8 LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'mallory''s operator ran'; END$$;
CREATE OPERATOR mallory.<-> (LEFTARG = real[], RIGHTARG = real[], FUNCTION = mallory.boom);
CREATE FUNCTION mallory.tid_boom(tid, tid) RETURNS bool LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'mallory''s = ran'; END$$;
CREATE OPERATOR mallory.= (LEFTARG = tid, RIGHTARG = tid, FUNCTION = mallory.tid_boom);
CREATE FUNCTION mallory.hashtext(text) RETURNS int LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'mallory''s hashtext ran'; END$$;
CREATE FUNCTION mallory.unnest(tid[]) RETURNS SETOF tid LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'mallory''s unnest ran'; END$$;
CREATE DOMAIN mallory.vector AS int;
RESET ROLE;
SET search_path = mallory, pg_catalog, public;
SELECT public.kdindex_teacher('public.secret', 'v', 'public.sp_exact', k => 5, nqueries => 20);
SET kdindex.rerank = 100000;
SELECT public.kdindex_teacher('public.secret', 'v', 'public.sp_index', k => 5, nqueries => 20,
							  teacher => 'index');
RESET kdindex.rerank;
SELECT count(*) FILTER (WHERE e.ids = i.ids) AS teachers_agree
  FROM public.sp_exact e JOIN public.sp_index i USING (query_id);
SELECT queries, codes_recall > 0 AS measured FROM public.kdindex_recall('public.secret_kd', 'public.sp_exact', k => 5);
SELECT public.kdindex_enable_pgvector();
RESET search_path;
DROP TABLE sp_exact, sp_index;

-- 4. The result table's name may be schema-qualified, and quoted
CREATE SCHEMA "Odd Schema";
SELECT kdindex_teacher('secret', 'v', 'public.evil', k => 3, nqueries => 5);
SELECT kdindex_teacher('secret', 'v', '"Odd Schema"."Odd Teacher"', k => 3, nqueries => 5);
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname IN ('evil', 'public.evil', 'Odd Teacher') ORDER BY 1;
SELECT kdindex_teacher('secret', 'v', 'nosuchschema.x');
SET ROLE regress_kd_mallory;
SELECT kdindex_teacher('mallory.mine', 'v', 'public.not_mine', k => 3, nqueries => 5);
RESET ROLE;
DROP TABLE evil;

-- 5. Diagnostics are bounded and cancellable
SELECT kdindex_fastscan_check(1500000, 16);
SET statement_timeout = '200ms';
SELECT kdindex_fastscan_check(100000, 256);
RESET statement_timeout;
-- kdindex_teacher holds its lists in maintenance_work_mem
SET maintenance_work_mem = '1MB';
SELECT kdindex_teacher('secret', 'v', 'x', k => 10000, nqueries => 400);
RESET maintenance_work_mem;

-- 6. recall: k beyond the teacher's lists is refused; the plan check does not
-- depend on names (quoted, qualified); the first statement of a session works
SELECT * FROM kdindex_recall('secret_kd', 'secret_t', k => 11);
CREATE TABLE "Odd Schema"."Odd Table" (id int, v real[]);
INSERT INTO "Odd Schema"."Odd Table" SELECT * FROM secret;
CREATE INDEX "Odd KD" ON "Odd Schema"."Odd Table" USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT kdindex_teacher('"Odd Schema"."Odd Table"', 'v', 'odd_t', k => 5, nqueries => 20);
SELECT queries, codes_recall > 0 AS measured FROM kdindex_recall('"Odd Schema"."Odd KD"', 'odd_t', k => 5);
\c -
SELECT queries, reranked_recall > 0 AS measured FROM kdindex_recall('"Odd Schema"."Odd KD"', 'odd_t', k => 5);
DROP TABLE odd_t;

-- 7. A type named vector is not pgvector's (a domain over int: at the end,
-- as it crashed the server); a domain over real[] is real[]
CREATE DOMAIN real_vec AS real[] CHECK (cardinality(VALUE) = 8);
CREATE TABLE dom (id int, v real_vec);
INSERT INTO dom SELECT i, make_vec(i, 8) FROM generate_series(1, 300) i;
CREATE INDEX dom_kd ON dom USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT dim, trained, rows FROM kdindex_info('dom_kd');
SET enable_seqscan = off;
SELECT id FROM dom ORDER BY v <-> make_vec(7, 8) LIMIT 1;
RESET enable_seqscan;
SELECT kdindex_teacher('dom', 'v', 'dom_t', k => 5, nqueries => 20);
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'dom_t'::regclass AND attname = 'query';
SELECT epochs FROM kdindex_train('dom_kd', 'dom_t', epochs => 1);
SELECT queries FROM kdindex_recall('dom_kd', 'dom_t', k => 5);
DROP TABLE dom, dom_t;
DROP DOMAIN real_vec;

-- 8. Teacher tables of the wrong shape: the column and the type it should be
CREATE TABLE bad_t AS SELECT * FROM secret_t;
ALTER TABLE bad_t ALTER COLUMN query_id TYPE text;
SELECT * FROM kdindex_train('secret_kd', 'bad_t');
DROP TABLE bad_t;
CREATE TABLE bad_t AS SELECT query_id, 1 AS query, source, tids FROM secret_t;
SELECT * FROM kdindex_train('secret_kd', 'bad_t');
SELECT * FROM kdindex_recall('secret_kd', 'bad_t');
DROP TABLE bad_t;
CREATE TABLE bad_t AS SELECT query_id, query, 1 AS source, tids FROM secret_t;
SELECT * FROM kdindex_train('secret_kd', 'bad_t');
DROP TABLE bad_t;
CREATE TABLE bad_t AS SELECT query_id, query, source, ids AS tids FROM secret_t;
SELECT * FROM kdindex_train('secret_kd', 'bad_t');
DROP TABLE bad_t;
CREATE TABLE bad_t AS SELECT query_id, query, source, tids FROM secret_t;
ALTER TABLE bad_t DROP COLUMN source;
SELECT * FROM kdindex_train('secret_kd', 'bad_t');
DROP TABLE bad_t;
-- NULLs, empty lists, TIDs past the table's end or (n,0): skipped
CREATE TABLE odd_t AS SELECT * FROM secret_t;
UPDATE odd_t SET tids[2] = NULL WHERE query_id % 4 = 0;
UPDATE odd_t SET tids = '{}' WHERE query_id % 4 = 1;
UPDATE odd_t SET tids = tids || '{"(65536,1)","(4294967295,65535)","(0,0)"}'::tid[] WHERE query_id % 4 = 2;
UPDATE odd_t SET tids = NULL WHERE query_id = 3;
SELECT epochs, train_queries + heldout_queries AS queries FROM kdindex_train('secret_kd', 'odd_t', epochs => 1);
SELECT queries, codes_recall > 0 AS measured FROM kdindex_recall('secret_kd', 'odd_t');
-- multi-dimensional lists are refused
UPDATE odd_t SET tids = ARRAY[tids[1:2], tids[3:4]] WHERE query_id = 4;
SELECT epochs FROM kdindex_train('secret_kd', 'odd_t', epochs => 1);
SELECT * FROM kdindex_recall('secret_kd', 'odd_t');
DROP TABLE odd_t;

-- 9. Views have no TIDs: refused as teacher sources, fine as query sources
SELECT kdindex_teacher('secret_view', 'v', 'x');
SELECT kdindex_teacher('secret', 'v', 'via_view', queries => 'secret_view', k => 3, nqueries => 5);
DROP TABLE via_view;

-- 7. mallory's vector, a domain over int, is not pgvector's
CREATE TABLE mallory.fake (id int, v mallory.vector);
INSERT INTO mallory.fake VALUES (1, 1), (2, 2);
SELECT kdindex_teacher('mallory.fake', 'v', 'out1');

DROP VIEW secret_view;
DROP TABLE secret, secret_t;
SET client_min_messages = warning;
DROP SCHEMA hidden, mallory, alice, "Odd Schema" CASCADE;
RESET client_min_messages;
DROP ROLE regress_kd_alice;
DROP ROLE regress_kd_mallory;
