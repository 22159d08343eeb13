-- The per-row error term: a code's distance plus a fitted a times the row's
-- own reconstruction error (one more byte for PQ and OPQ, folded into AQ's
-- norm).  Rows: 20 clusters, each row with its own noise amplitude, so rows
-- differ in how much detail their codes lose.
CREATE TABLE rt (id int PRIMARY KEY, v real[]);
INSERT INTO rt SELECT i, noisy_vec(i) FROM generate_series(1, 4000) i;
CREATE TABLE rt_queries AS SELECT q AS id, noisy_vec(100000 + q) AS v FROM generate_series(1, 100) q;

-- codes-only recall@10 over rt_queries through the index on rt (the only one)
CREATE FUNCTION rt_recall(op text DEFAULT '<->') RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
	knn text := format('SELECT q.id AS qid, f.id FROM rt_queries q CROSS JOIN LATERAL '
					   '(SELECT id FROM rt ORDER BY rt.v %s q.v LIMIT 10) f', op);
	r numeric;
BEGIN
	PERFORM set_config('enable_indexscan', 'off', true);
	PERFORM set_config('enable_seqscan', 'on', true);
	EXECUTE 'CREATE TEMP TABLE rt_exact AS ' || knn;
	PERFORM set_config('enable_indexscan', 'on', true);
	PERFORM set_config('enable_seqscan', 'off', true);
	PERFORM set_config('kdindex.rerank', '0', true);
	PERFORM uses_index(knn);
	EXECUTE 'SELECT count(*) / 1000.0 FROM (' || knn || ') f JOIN rt_exact e USING (qid, id)' INTO r;
	DROP TABLE rt_exact;
	PERFORM set_config('enable_seqscan', 'on', true);
	RETURN r;
END
$$;

-- recall of an index built WITH (opts), with the term and without; its a
-- and code bytes; and that kdindex_verify finds both sound
CREATE TABLE rt_result (opts text, term bool, a float8, code_bytes int, recall numeric);
CREATE FUNCTION rt_measure(opts text, op text DEFAULT '<->', opclass text DEFAULT '') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 0..1 LOOP
		EXECUTE format('CREATE INDEX rt_kd ON rt USING kdindex (v %s) WITH (%s%s)',
					   opclass, opts, CASE WHEN i = 1 THEN ', rowterm = off' ELSE '' END);
		PERFORM kdindex_verify('rt_kd', true);
		INSERT INTO rt_result SELECT opts || CASE WHEN opclass <> '' THEN ', ' || opclass ELSE '' END,
			   i = 0, k.rowterm, k.code_bytes, rt_recall(op)
		  FROM kdindex_info('rt_kd') k;
		DROP INDEX rt_kd;
	END LOOP;
END
$$;

-- 1. PQ and OPQ at 8 bits: one byte more; AQ: none more (folded); 4-bit
-- blocks for the fast scan, flat and with lists; inner product
SELECT rt_measure('m = 4');
SELECT rt_measure('quantizer = ''opq'', m = 4, iterations = 2');
SELECT rt_measure('quantizer = ''aq'', m = 4');
SELECT rt_measure('m = 8, nbits = 4');
SET kdindex.probes = 4;
SELECT rt_measure('m = 8, nbits = 4, lists = 4');
RESET kdindex.probes;
SELECT rt_measure('m = 4', '<#>', 'float4_ip_ops');
-- the weight in its sane range, the bytes, and the recall gained (AQ's
-- gain depends on the data: on these rows its sampled queries gain 1.5
-- points and these queries lose 2; the ranking changing shows the fold)
SELECT opts, code_bytes,
       CASE WHEN a IS NULL THEN 'off' WHEN a BETWEEN 0.05 AND 1 THEN 'fitted' ELSE a::text END AS a,
       recall > (SELECT recall FROM rt_result o WHERE o.opts = r.opts AND NOT o.term) AS gains,
       recall <> (SELECT recall FROM rt_result o WHERE o.opts = r.opts AND NOT o.term) AS changes
  FROM rt_result r WHERE term ORDER BY opts;
SELECT opts, code_bytes, a FROM rt_result WHERE NOT term ORDER BY opts;

-- 2. (The 4-bit rows above: the fast scan's byte tables sum the term's two
-- nibbles; were they left out, the recall would be that of rowterm = off.)
CREATE INDEX rt_kd ON rt USING kdindex (v) WITH (m = 8, nbits = 4);
SELECT kdindex_teacher('rt', 'v', 'rt_teacher', queries => 'rt_queries', k => 20);

-- 3. Inserts carry the term: rows inserted with the vectors of existing
-- rows get the same codes, term included, so each sits next to its twin in
-- the codes-only order of an 8-bit index (a missing or wrong term byte would
-- move it; the 4-bit one's rounded sums tie too often to tell); VACUUM
-- moves block rows with their term nibbles
CREATE INDEX rt_kd8 ON rt USING kdindex (v) WITH (m = 4);
INSERT INTO rt SELECT 10000 + i, noisy_vec(i) FROM generate_series(1, 30) i;
DELETE FROM rt WHERE id % 7 = 0 AND id > 30 AND id < 10000;
VACUUM rt;
SELECT kdindex_verify('rt_kd', true), kdindex_verify('rt_kd8', true);
DROP INDEX rt_kd;
SET enable_seqscan = off;
SET kdindex.rerank = 0;
CREATE FUNCTION rt_position(q real[], want int) RETURNS bigint LANGUAGE sql AS $$
	SELECT n FROM (SELECT id, row_number() OVER () AS n
					 FROM (SELECT id FROM rt ORDER BY v <-> q LIMIT 5000) s) t WHERE id = want
$$;
SELECT count(*) AS pairs, count(*) FILTER (WHERE abs(a - b) = 1) >= 27 AS twins_adjacent
  FROM (SELECT rt_position(noisy_vec(50000 + i), i) AS a, rt_position(noisy_vec(50000 + i), 10000 + i) AS b
		  FROM generate_series(1, 30) i) p;
RESET kdindex.rerank;
RESET enable_seqscan;
DROP INDEX rt_kd8;

-- 4. kdindex_train refits the weight from the teacher (an epoch runs; half
-- the held-out queries refit it, half judge)
CREATE INDEX rt_kd ON rt USING kdindex (v) WITH (m = 4);
SELECT epochs FROM kdindex_train('rt_kd', 'rt_teacher', epochs => 1, holdout => 0.5);
SELECT rowterm BETWEEN 0.05 AND 1 AS refitted, code_bytes FROM kdindex_info('rt_kd');
SELECT kdindex_verify('rt_kd', true);
DROP INDEX rt_kd;

-- 5. rowterm = off writes layout 2, as older builds did: no term, no byte;
-- turning it on takes a REINDEX
CREATE INDEX rt_kd ON rt USING kdindex (v) WITH (m = 4, rowterm = off);
SELECT code_bytes, rowterm FROM kdindex_info('rt_kd');
ALTER INDEX rt_kd SET (rowterm = on);
SELECT code_bytes, rowterm FROM kdindex_info('rt_kd');
REINDEX INDEX rt_kd;
SELECT code_bytes, rowterm IS NOT NULL AS has_term FROM kdindex_info('rt_kd');
DROP TABLE rt, rt_queries, rt_result, rt_teacher;
DROP FUNCTION rt_measure(text, text, text);
DROP FUNCTION rt_recall(text);
DROP FUNCTION rt_position(real[], int);
