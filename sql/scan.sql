-- Ordered scans: plans, re-rank, continuation past the re-rank depth,
-- filters, visibility, NULL and zero queries.  Uses items from build.sql.
CREATE INDEX items_kd ON items USING kdindex (v) WITH (m = 8);
ANALYZE items;

-- The planner uses the index for ORDER BY ... LIMIT, and only then
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> '{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}' LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> '{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}';
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE id = 5;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE v <-> '{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}' < 1;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <#> '{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16}' LIMIT 10;

SET enable_seqscan = off;

-- re-rank: the first rows come back in exact distance order (the first 16
-- from the first kdindex.rerank candidates)
SET kdindex.rerank = 50;
SELECT bool_and(d >= prev) AS ordered, count(*)
  FROM (SELECT v <-> '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}' AS d,
			   lag(v <-> '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}', 1, 0::float8) OVER () AS prev
		  FROM (SELECT v FROM items ORDER BY v <-> '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}' LIMIT 16) s) t;

-- a LIMIT past the re-rank depth, and a full walk: every row exactly once,
-- in exact order but for rare late rows (nearer than a row returned before
-- them: the first candidates missed them, the pool's hold-back found them
-- late; they are returned, not dropped).  walk.sql covers every quantizer.
SET kdindex.rerank = 10;
CREATE FUNCTION walk(n int, q real[] DEFAULT '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}')
RETURNS TABLE (rows bigint, distinct_rows bigint, late bigint)
LANGUAGE sql AS $$
  SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE d < before)
    FROM (SELECT id, d, max(d) OVER (ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
            FROM (SELECT row_number() OVER () AS pos, id, d
                    FROM (SELECT id, v <-> q AS d FROM items ORDER BY v <-> q LIMIT n) s) s2) t
$$;
SELECT rows = 500 AS all_500, rows = distinct_rows AS once, late < 0.05 * rows AS few_late FROM walk(500);
SELECT rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows,
       rows = distinct_rows AS once, late < 0.01 * rows AS few_late FROM walk(100000);
-- from the 20 queries, 50 rows each at re-rank depth 50
SET kdindex.rerank = 50;
SELECT sum(w.rows) AS rows, sum(w.late) < 0.01 * sum(w.rows) AS few_late
  FROM queries q CROSS JOIN LATERAL walk(50, q.v) w;
SET kdindex.rerank = 10;
-- codes only: code order, every row once
SET kdindex.rerank = 0;
SELECT count(*), count(DISTINCT id)
  FROM (SELECT id FROM items ORDER BY v <-> '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}' LIMIT 100000) s;
SELECT count(*) FROM items WHERE v IS NOT NULL;
-- kdindex.max_scan_tuples bounds the candidates a scan consumes; the rows
-- re-ranked by then are returned
SET kdindex.rerank = 10;
SET kdindex.max_scan_tuples = 100;
SELECT rows, rows = distinct_rows AS once FROM walk(100000);
RESET kdindex.max_scan_tuples;

-- codes only vs re-ranked recall
SELECT knn_recall('items', '<->', 0) >= 0.4 AS codes_ok, knn_recall('items', '<->', 100) >= 0.98 AS rerank_ok;

-- filters that reject most candidates: the scan keeps going until 10 rows pass
SET kdindex.rerank = 100;
SELECT count(*) FROM
	(SELECT id FROM items WHERE id % 50 = 0 ORDER BY v <-> '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}' LIMIT 10) s;
CREATE TEMP TABLE filtered AS
	SELECT id FROM items WHERE id % 10 = 0 ORDER BY v <-> '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}' LIMIT 10;
SELECT count(*) FROM filtered;
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT count(*) >= 9 AS filtered_recall_ok
  FROM (SELECT id FROM items WHERE id % 10 = 0 ORDER BY v <-> '{3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3}' LIMIT 10) e
  JOIN filtered USING (id);
RESET enable_indexscan;
SET enable_seqscan = off;

-- deleted and uncommitted rows are not returned; own inserts are
BEGIN;
DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY v <-> make_vec(7) LIMIT 3);
SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> make_vec(7) LIMIT 3) s WHERE id IN (7, 17, 27);
INSERT INTO items VALUES (100001, make_vec(7));
SELECT id FROM items ORDER BY v <-> make_vec(7) LIMIT 1;
ROLLBACK;
SELECT id FROM items ORDER BY v <-> make_vec(7) LIMIT 1;

-- a NULL query returns rows in no particular order, as a sequential scan would
SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> NULL LIMIT 5) s;
-- a query of the wrong dimension is an error, as with a sequential scan
SELECT id FROM items ORDER BY v <-> '{1,2,3}' LIMIT 1;

-- rescans: one index scan per outer row
SET kdindex.rerank = 100;
EXPLAIN (COSTS OFF) SELECT q.qid, f.id FROM queries q CROSS JOIN LATERAL
	(SELECT id FROM items i ORDER BY i.v <-> q.v LIMIT 1) f;
SELECT count(*), count(DISTINCT qid) FROM queries q CROSS JOIN LATERAL
	(SELECT id FROM items i ORDER BY i.v <-> q.v LIMIT 3) f;

-- cosine: a zero query has NaN distance to every row, so any order is
-- exact and every row comes back (as with a sequential scan)
CREATE INDEX items_cos ON items USING kdindex (v float4_cosine_ops) WITH (m = 8);
SELECT count(*) FROM (SELECT id FROM items ORDER BY v <=> array_fill(0::real, ARRAY[16]) LIMIT 5) s;
SELECT count(*) FROM (SELECT id FROM items ORDER BY v <=> make_vec(3) LIMIT 5) s;
DROP INDEX items_cos;

-- prepared statements (generic plans) use the index too
SET plan_cache_mode = force_generic_plan;
PREPARE knn(real[]) AS SELECT id FROM items ORDER BY v <-> $1 LIMIT 3;
EXPLAIN (COSTS OFF) EXECUTE knn(make_vec(7));
SELECT count(*) FROM (SELECT 1 FROM items WHERE id IN (SELECT id FROM items ORDER BY v <-> make_vec(7) LIMIT 3)) s;
DEALLOCATE knn;
RESET plan_cache_mode;
RESET kdindex.rerank;
RESET enable_seqscan;
DROP INDEX items_kd;
DROP FUNCTION walk(int, real[]);
