-- In-index refinement (refine = N): N bytes per row of an 8-bit PQ of the
-- rows' residuals re-score the candidates before the heap; only the best
-- kdindex.refine_rerank of them are re-ranked on the heap before the first
-- rows.  Rows: setup.sql's noisy_vec (20 clusters with per-row noise).
CREATE TABLE rf (id int PRIMARY KEY, v real[]);
INSERT INTO rf SELECT i, noisy_vec(i) FROM generate_series(1, 4000) i;
CREATE TABLE rf_queries AS SELECT q AS id, noisy_vec(100000 + q) AS v FROM generate_series(1, 100) q;

-- recall@k over rf_queries through the index on rf (the only one) at
-- kdindex.rerank = rerank and kdindex.refine_rerank = depth (setup.sql's knn_recall)
CREATE VIEW rf_q AS SELECT id AS qid, v FROM rf_queries;
CREATE FUNCTION rf_recall(rerank int, depth int, op text DEFAULT '<->', k int DEFAULT 10)
RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('kdindex.refine_rerank', depth::text, true);
	RETURN knn_recall('rf', op, rerank, 'rf_q', k);
END
$$;

-- 1. Bad input: 4-bit codes, OPQ with lists, more bytes than dimensions or
-- than the option allows, bytes not dividing the dimension
CREATE INDEX rf_bad ON rf USING kdindex (v) WITH (m = 8, nbits = 4, refine = 8);
CREATE INDEX rf_bad ON rf USING kdindex (v) WITH (quantizer = 'opq', m = 4, lists = 4, refine = 8);
CREATE INDEX rf_bad ON rf USING kdindex (v) WITH (m = 4, refine = 64);
CREATE INDEX rf_bad ON rf USING kdindex (v) WITH (m = 4, refine = 5);
CREATE INDEX rf_bad ON rf USING kdindex (v) WITH (m = 4, refine = 5000);

-- 2. At the same heap depth (10 rows re-ranked for LIMIT 10) the refined
-- candidates hold more of the true top 10; with every row re-ranked both
-- are exact
CREATE INDEX rf_kd ON rf USING kdindex (v) WITH (m = 4);
CREATE TABLE rf_plain AS SELECT rf_recall(10, 10) AS at10, rf_recall(4000, 4000) AS exact;
DROP INDEX rf_kd;
CREATE INDEX rf_kd ON rf USING kdindex (v) WITH (m = 4, refine = 8);
SELECT code_bytes, refine, rowterm IS NOT NULL AS rowterm FROM kdindex_info('rf_kd');
SELECT kdindex_verify('rf_kd', true);
SELECT r.at10 > p.at10 + 0.2 AS refine_gains_20_points, r.exact = 1 AND p.exact = 1 AS both_exact
  FROM (SELECT rf_recall(100, 10) AS at10, rf_recall(4000, 4000) AS exact) r, rf_plain p;

-- a parallel build (workers encode rows, refinement codes included) gives
-- the same answers
CREATE TEMP TABLE rf_serial AS SELECT q.id AS qid, f.id FROM rf_queries q CROSS JOIN LATERAL
	(SELECT id FROM rf ORDER BY rf.v <-> q.v LIMIT 10) f;
DROP INDEX rf_kd;
SET max_parallel_maintenance_workers = 1;
SET min_parallel_table_scan_size = 0;
CREATE INDEX rf_kd ON rf USING kdindex (v) WITH (m = 4, refine = 8);
RESET min_parallel_table_scan_size;
RESET max_parallel_maintenance_workers;
SELECT kdindex_verify('rf_kd', true);
SELECT count(*) AS same_answers FROM rf_serial JOIN
	(SELECT q.id AS qid, f.id FROM rf_queries q CROSS JOIN LATERAL
		(SELECT id FROM rf ORDER BY rf.v <-> q.v LIMIT 10) f) p USING (qid, id);

-- 3. Fewer heap fetches: kdindex.rerank candidates are refined, only
-- kdindex.refine_rerank of them re-ranked before the first rows
SET client_min_messages = debug1;
SET kdindex.rerank = 100;
SET kdindex.refine_rerank = 10;
SELECT count(*) FROM (SELECT id FROM rf ORDER BY v <-> noisy_vec(100001) LIMIT 10) s;
SET kdindex.refine_rerank = 30;
SELECT count(*) FROM (SELECT id FROM rf ORDER BY v <-> noisy_vec(100001) LIMIT 10) s;
RESET client_min_messages;

-- 4. Nothing is lost: LIMIT past kdindex.refine_rerank returns the rows a
-- plain index would.  With iterative_scan = off both return exactly the
-- first kdindex.rerank candidates by code distance (the codes are the same
-- with and without refinement); relaxed, every row once.
SET kdindex.refine_rerank = 10;
SET kdindex.iterative_scan = off;
CREATE TEMP TABLE rf_off AS SELECT id FROM rf ORDER BY v <-> noisy_vec(100002) LIMIT 200;
SELECT count(*) AS off_rows FROM rf_off;
RESET kdindex.iterative_scan;
SELECT count(*) AS relaxed_rows, count(DISTINCT id) AS distinct_rows
  FROM (SELECT id FROM rf ORDER BY v <-> noisy_vec(100002) LIMIT 300) s;
-- rows come out in exact order among those re-ranked: the first 10
SELECT bool_and(d >= prev) AS ordered FROM
	(SELECT d, lag(d, 1, 0) OVER (ORDER BY n) AS prev FROM
		(SELECT row_number() OVER () AS n, v <-> noisy_vec(100002) AS d
		   FROM (SELECT v FROM rf ORDER BY v <-> noisy_vec(100002) LIMIT 10) s) t) u;
DROP INDEX rf_kd;
CREATE INDEX rf_kd ON rf USING kdindex (v) WITH (m = 4);
SET kdindex.iterative_scan = off;
SELECT count(*) AS same_rows_as_plain FROM rf_off
  JOIN (SELECT id FROM rf ORDER BY v <-> noisy_vec(100002) LIMIT 200) p USING (id);
RESET kdindex.iterative_scan;
DROP INDEX rf_kd;

-- 5. Inserts, VACUUM, kdindex_train and REINDEX keep refinement codes: rows
-- inserted as copies of existing ones are found at distance 0
CREATE INDEX rf_kd ON rf USING kdindex (v) WITH (m = 4, refine = 8);
INSERT INTO rf SELECT 10000 + i, noisy_vec(i) FROM generate_series(1, 300) i;
SELECT kdindex_verify('rf_kd', true);
SET kdindex.rerank = 400;
SET kdindex.refine_rerank = 20;
SELECT count(*) AS twins_found FROM generate_series(1, 300) i
 WHERE (SELECT count(*) FROM (SELECT v <-> noisy_vec(i) AS d FROM rf ORDER BY v <-> noisy_vec(i) LIMIT 2) s
		 WHERE d = 0) = 2;
DELETE FROM rf WHERE id % 3 = 0;
VACUUM rf;
SELECT kdindex_verify('rf_kd', true);
SELECT rows FROM kdindex_info('rf_kd');
SELECT kdindex_teacher('rf', 'v', 'rf_teacher', queries => 'rf_queries', k => 20);
SELECT epochs FROM kdindex_train('rf_kd', 'rf_teacher', epochs => 1);
SELECT generation, refine, code_bytes FROM kdindex_info('rf_kd');
SELECT kdindex_verify('rf_kd', true);
SELECT rf_recall(100, 10) > rf_recall(10, 10) + 0.2 AS refine_gains_after_train;
-- a retrain follows the option: refine = 0 drops the refinement
ALTER INDEX rf_kd SET (refine = 0);
SELECT epochs FROM kdindex_train('rf_kd', 'rf_teacher', epochs => 1);
SELECT refine, code_bytes FROM kdindex_info('rf_kd');
ALTER INDEX rf_kd SET (refine = 16);
REINDEX INDEX rf_kd;
SELECT refine, code_bytes FROM kdindex_info('rf_kd');
SELECT kdindex_verify('rf_kd', true);
DROP INDEX rf_kd;
DROP TABLE rf_teacher;

-- 6. Inner product, cosine and L1; AQ, OPQ and PQ with lists: at a heap
-- depth of 10 the refined candidates hold more of the true top 10
CREATE TABLE rf_cmp (opts text, refine int, at10 numeric);
CREATE FUNCTION rf_compare(opts text, op text, opclass text DEFAULT '') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	FOR r IN 0..1 LOOP
		EXECUTE format('CREATE INDEX rf_kd ON rf USING kdindex (v %s) WITH (%s%s)',
					   opclass, opts, CASE WHEN r = 1 THEN ', refine = 8' ELSE '' END);
		PERFORM kdindex_verify('rf_kd', true);
		INSERT INTO rf_cmp SELECT opts || ' ' || op, k.refine,
			   rf_recall(CASE WHEN r = 1 THEN 100 ELSE 10 END, 10, op)
		  FROM kdindex_info('rf_kd') k;
		DROP INDEX rf_kd;
	END LOOP;
END
$$;
SET kdindex.probes = 4;
SELECT rf_compare('m = 4', '<#>', 'float4_ip_ops');
SELECT rf_compare('m = 4', '<=>', 'float4_cosine_ops');
SELECT rf_compare('m = 4', '<+>', 'float4_l1_ops');
SELECT rf_compare('quantizer = ''aq'', m = 4', '<->');
SELECT rf_compare('quantizer = ''opq'', m = 4, iterations = 2', '<->');
SELECT rf_compare('m = 4, lists = 4', '<->');
RESET kdindex.probes;
SELECT r.opts, r.at10 > p.at10 AS refine_gains
  FROM rf_cmp r JOIN rf_cmp p ON p.opts = r.opts AND p.refine = 0
 WHERE r.refine = 8 ORDER BY r.opts;

-- 7. An index on an empty table trains itself, refinement included, once
-- enough rows arrive (39 per codeword)
CREATE TABLE rf_small (id int, v real[]);
CREATE INDEX rf_small_kd ON rf_small USING kdindex (v) WITH (m = 2, refine = 4);
INSERT INTO rf_small SELECT i, noisy_vec(i, 8) FROM generate_series(1, 10000) i;
SELECT trained, refine, code_bytes FROM kdindex_info('rf_small_kd');
SELECT kdindex_verify('rf_small_kd', true);
SET enable_seqscan = off;
SELECT id FROM rf_small ORDER BY v <-> noisy_vec(77, 8) LIMIT 1;
RESET enable_seqscan;
RESET kdindex.rerank;
RESET kdindex.refine_rerank;
DROP TABLE rf_small;
DROP TABLE rf_cmp;
DROP TABLE rf;
DROP VIEW rf_q;
DROP TABLE rf_queries;
DROP TABLE rf_plain;
DROP FUNCTION rf_compare(text, text, text);
DROP FUNCTION rf_recall(int, int, text, int);
