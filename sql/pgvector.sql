-- pgvector's vector type: kdindex reads its datum directly and provides
-- vector_l2_ops / vector_ip_ops / vector_cosine_ops.  Runs only where pgvector
-- is installed; elsewhere it says so and skips.
SELECT count(*) = 1 AS has_pgvector FROM pg_available_extensions WHERE name = 'vector' \gset
\if :has_pgvector
-- pgvector installed after kdindex: the function adds the opclasses
CREATE EXTENSION vector;
SELECT opcname FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
   AND opcintype = 'vector'::regtype ORDER BY opcname;
SELECT kdindex_enable_pgvector();
SELECT opcname, opcdefault FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
   AND opcintype = 'vector'::regtype ORDER BY opcname;
SELECT kdindex_enable_pgvector();   -- twice is harmless

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
INSERT INTO vitems VALUES (3001, make_vec(7)::vector);
SELECT rows FROM kdindex_info('vitems_kd');
CREATE INDEX vitems_ip ON vitems USING kdindex (v vector_ip_ops) WITH (m = 8);
CREATE INDEX vitems_cos ON vitems USING kdindex (v vector_cosine_ops) WITH (m = 8);
SELECT metric FROM kdindex_info('vitems_ip') UNION ALL SELECT metric FROM kdindex_info('vitems_cos');
-- distillation on a vector column (cosine)
SELECT kdindex_teacher('vitems', 'v', 'vitems_teacher', k => 20, nqueries => 100, metric => 'cosine');
SELECT epochs, train_queries, recall_after BETWEEN 0.3 AND 1 AS recall_ok
  FROM kdindex_train('vitems_cos', 'vitems_teacher', epochs => 2);
DROP TABLE vitems_teacher;

-- pgvector installed before kdindex: CREATE EXTENSION creates them itself
DROP TABLE vitems;
DROP EXTENSION kdindex;
CREATE EXTENSION kdindex;
SELECT count(*) FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
   AND opcintype = 'vector'::regtype;
-- and DROP EXTENSION takes them along
DROP EXTENSION kdindex;
SELECT count(*) FROM pg_opclass WHERE opcintype = 'vector'::regtype
   AND opcname IN ('vector_l2_ops', 'vector_ip_ops', 'vector_cosine_ops')
   AND opcmethod NOT IN (SELECT oid FROM pg_am WHERE amname IN ('hnsw', 'ivfflat'));
DROP EXTENSION vector;
CREATE EXTENSION kdindex;
\else
\echo 'pgvector is not installed: skipping the vector tests'
SELECT kdindex_enable_pgvector();
\endif
