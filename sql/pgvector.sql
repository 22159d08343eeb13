-- pgvector's vector and halfvec: kdindex reads their datums directly; the
-- extension kdindex_vector (requiring kdindex and pgvector) holds the
-- operator classes vector_l2_ops (default) / vector_ip_ops /
-- vector_cosine_ops / vector_l1_ops and halfvec_l2_ops / halfvec_ip_ops /
-- halfvec_cosine_ops / halfvec_l1_ops.
-- Runs only where pgvector is installed; elsewhere it says so and skips.
SELECT count(*) = 1 AS has_pgvector FROM pg_available_extensions WHERE name = 'vector' \gset
-- 0.1.0's way is gone, and says where to go
SELECT kdindex_enable_pgvector();
\if :has_pgvector
-- kdindex makes no operator classes for pgvector itself
CREATE EXTENSION vector;
SELECT count(*) FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
   AND opcintype <> 'real[]'::regtype;
-- with a hostile search_path: a domain "vector" over int and an operator <->
-- on it earlier in the path, which the script must not pick up
CREATE SCHEMA mallory_pgv;
CREATE DOMAIN mallory_pgv.vector AS int;
CREATE DOMAIN mallory_pgv.halfvec AS int;
CREATE FUNCTION mallory_pgv.boom(mallory_pgv.vector, mallory_pgv.vector) RETURNS float8
	LANGUAGE sql AS 'SELECT 1::float8';
CREATE OPERATOR mallory_pgv.<-> (LEFTARG = mallory_pgv.vector, RIGHTARG = mallory_pgv.vector,
	FUNCTION = mallory_pgv.boom);
SET search_path = mallory_pgv, public;
CREATE EXTENSION kdindex_vector SCHEMA public;
RESET search_path;
SELECT count(*) AS fooled FROM pg_opclass oc JOIN pg_amop a ON a.amopfamily = oc.opcfamily
 WHERE oc.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
   AND (oc.opcintype::regtype::text LIKE 'mallory%' OR a.amopopr::regoperator::text LIKE 'mallory%');
DROP SCHEMA mallory_pgv CASCADE;
SELECT opcname, opcintype::regtype, opcdefault FROM pg_opclass
 WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex') AND opcintype <> 'real[]'::regtype
 ORDER BY opcname;
SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'kdindex_vector') AND deptype = 'e'
 ORDER BY 1;

CREATE TABLE vitems (id int PRIMARY KEY, v vector(16));
INSERT INTO vitems SELECT i, make_vec(i)::vector FROM generate_series(1, 3000) i;
CREATE INDEX vitems_kd ON vitems USING kdindex (v) WITH (m = 8);
SELECT metric, dim, m, trained, rows FROM kdindex_info('vitems_kd');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM vitems ORDER BY v <-> make_vec(7)::vector LIMIT 5;
SELECT id FROM vitems ORDER BY v <-> make_vec(7)::vector LIMIT 1;
CREATE TEMP TABLE via_index AS SELECT id FROM vitems ORDER BY v <-> make_vec(3)::vector LIMIT 10;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT count(*) >= 9 AS recall_ok
  FROM (SELECT id FROM vitems ORDER BY v <-> make_vec(3)::vector LIMIT 10) e JOIN via_index USING (id);
RESET enable_indexscan;
DROP TABLE via_index;
INSERT INTO vitems VALUES (3001, make_vec(7)::vector);
SELECT rows FROM kdindex_info('vitems_kd');
CREATE INDEX vitems_ip ON vitems USING kdindex (v vector_ip_ops) WITH (m = 8);
CREATE INDEX vitems_cos ON vitems USING kdindex (v vector_cosine_ops) WITH (m = 8);
SELECT metric FROM kdindex_info('vitems_ip') UNION ALL SELECT metric FROM kdindex_info('vitems_cos');
-- L1: pgvector's <+>, scored by PQ tables of |q_j - c_j|
CREATE INDEX vitems_l1 ON vitems USING kdindex (v vector_l1_ops) WITH (m = 8);
SELECT metric, rows FROM kdindex_info('vitems_l1');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM vitems ORDER BY v <+> make_vec(7)::vector LIMIT 5;
CREATE TEMP TABLE via_index AS SELECT id FROM vitems ORDER BY v <+> make_vec(3)::vector LIMIT 10;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT count(*) >= 9 AS l1_recall_ok
  FROM (SELECT id FROM vitems ORDER BY v <+> make_vec(3)::vector LIMIT 10) e JOIN via_index USING (id);
RESET enable_indexscan;
DROP TABLE via_index;
DROP INDEX vitems_l1;
-- distillation on a vector column (cosine)
SELECT kdindex_teacher('vitems', 'v', 'vitems_teacher', k => 20, nqueries => 100, metric => 'cosine');
SELECT epochs, train_queries, recall_after BETWEEN 0.3 AND 1 AS recall_ok
  FROM kdindex_train('vitems_cos', 'vitems_teacher', epochs => 2);
DROP TABLE vitems_teacher;
-- a zero vector under cosine: stored, not indexed
INSERT INTO vitems VALUES (3002, array_fill(0::real, ARRAY[16])::vector);
SELECT rows FROM kdindex_info('vitems_cos');
SELECT kdindex_verify('vitems_cos', heapallindexed => true);

-- halfvec: read as IEEE half floats, converted exactly to float
CREATE TABLE hitems (id int PRIMARY KEY, h halfvec(16));
INSERT INTO hitems SELECT i, make_vec(i)::halfvec FROM generate_series(1, 3000) i;
CREATE INDEX hitems_l2 ON hitems USING kdindex (h halfvec_l2_ops) WITH (m = 8);
CREATE INDEX hitems_ip ON hitems USING kdindex (h halfvec_ip_ops) WITH (m = 8);
CREATE INDEX hitems_cos ON hitems USING kdindex (h halfvec_cosine_ops) WITH (m = 8);
CREATE INDEX hitems_l1 ON hitems USING kdindex (h halfvec_l1_ops) WITH (m = 8);
SELECT metric, dim, m, trained, rows FROM kdindex_info('hitems_l2')
UNION ALL SELECT metric, dim, m, trained, rows FROM kdindex_info('hitems_ip')
UNION ALL SELECT metric, dim, m, trained, rows FROM kdindex_info('hitems_cos')
UNION ALL SELECT metric, dim, m, trained, rows FROM kdindex_info('hitems_l1');
-- each answers as an exact scan does, with pgvector's own distances
CREATE FUNCTION halfvec_recall(op text, idx text) RETURNS TABLE (uses_index bool, recall_ok bool)
LANGUAGE plpgsql AS $$
DECLARE
	knn text := format('SELECT q.qid, s.id FROM queries q CROSS JOIN LATERAL '
					   '(SELECT id FROM hitems ORDER BY h %s q.v::halfvec LIMIT 10) s', op);
	plan text := '';
	line text;
BEGIN
	PERFORM set_config('enable_indexscan', 'off', true);
	EXECUTE 'CREATE TEMP TABLE exact AS ' || knn;
	PERFORM set_config('enable_indexscan', 'on', true);
	PERFORM set_config('enable_seqscan', 'off', true);
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || knn LOOP
		plan := plan || line;
	END LOOP;
	uses_index := plan LIKE '%Index Scan using ' || idx || '%';
	EXECUTE 'SELECT count(*) >= 0.9 * (SELECT count(*) FROM exact) FROM (' || knn ||
			') k JOIN exact USING (qid, id)' INTO recall_ok;
	DROP TABLE exact;
	PERFORM set_config('enable_seqscan', 'on', true);
	RETURN NEXT;
END
$$;
BEGIN;
DROP INDEX hitems_ip, hitems_cos;
SELECT * FROM halfvec_recall('<->', 'hitems_l2');
ROLLBACK;
BEGIN;
DROP INDEX hitems_l2, hitems_cos;
SELECT * FROM halfvec_recall('<#>', 'hitems_ip');
ROLLBACK;
BEGIN;
DROP INDEX hitems_l2, hitems_ip;
SELECT * FROM halfvec_recall('<=>', 'hitems_cos');
ROLLBACK;
-- only hitems_l1 orders by <+>
SELECT * FROM halfvec_recall('<+>', 'hitems_l1');
-- half floats out of the normal range convert exactly too: an untrained
-- index orders by kdindex's own exact distances, which must rank subnormals
-- (down to 2^-24), 65504 and -0 as pgvector's operator does
CREATE TABLE hedge (id int, h halfvec(4));
INSERT INTO hedge VALUES (1, '[-0.0000305, 0, 0, 1]'), (2, '[0.0000001, 0, 0, 1]'),
	(3, '[0, 0, 0, 1]'), (4, '[65504, 0, 0, 1]'), (5, '[-2, 0, 0, 1]'), (6, '[0.5, 0, 0, 1]'),
	(7, '[0.00000006, 0, 0, 10]'), (8, '[-0, 0, 0, 0]');
CREATE INDEX hedge_l2 ON hedge USING kdindex (h halfvec_l2_ops);
CREATE INDEX hedge_cos ON hedge USING kdindex (h halfvec_cosine_ops);
SET enable_seqscan = off;
SELECT string_agg(id::text, ',') AS l2_order FROM
  (SELECT id FROM hedge ORDER BY h <-> '[0.00001, 0, 0, 1]' LIMIT 10) s;
-- under cosine only the zero row (-0) is left out
SELECT string_agg(id::text, ',' ORDER BY id) AS cosine_rows FROM
  (SELECT id FROM hedge ORDER BY h <=> '[1, 0, 0, 0]' LIMIT 10) s;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT string_agg(id::text, ',') AS l2_order_exact FROM
  (SELECT id FROM hedge ORDER BY h <-> '[0.00001, 0, 0, 1]' LIMIT 10) s;
RESET enable_indexscan;
SELECT kdindex_verify('hedge_l2', heapallindexed => true), kdindex_verify('hedge_cos', heapallindexed => true);
-- up to 16,000 dimensions (pgvector's hnsw stops at 4,000 for halfvec)
CREATE TABLE hwide (id int, h halfvec(16000));
INSERT INTO hwide SELECT i, array_fill(i::real, ARRAY[16000])::halfvec FROM generate_series(1, 3) i;
CREATE INDEX hwide_l2 ON hwide USING kdindex (h halfvec_l2_ops);
SELECT dim, rows FROM kdindex_info('hwide_l2');
SET enable_seqscan = off;
SELECT id FROM hwide ORDER BY h <-> array_fill(2.2::real, ARRAY[16000])::halfvec LIMIT 1;
RESET enable_seqscan;
DROP TABLE hitems, hedge, hwide;
DROP FUNCTION halfvec_recall;

-- DROP EXTENSION vector CASCADE takes kdindex_vector and the indexes on
-- pgvector's types along, and leaves kdindex
SET client_min_messages = warning;
DROP EXTENSION vector CASCADE;
RESET client_min_messages;
SELECT extname FROM pg_extension WHERE extname LIKE 'kdindex%' OR extname = 'vector' ORDER BY 1;
SELECT count(*) FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex');
DROP TABLE vitems;
\else
\echo 'pgvector is not installed: skipping the vector tests'
-- kdindex_vector cannot be created without pgvector
CREATE EXTENSION kdindex_vector;
\endif
