-- Full walks of ordered scans: every row the scan reaches is returned exactly
-- once, a late one (nearer than rows returned before it) too, on every
-- quantizer, with and without lists, in the 4-bit fast-scan layout; filtered
-- queries get every matching row up to their LIMIT; only
-- kdindex.max_scan_tuples truncates a walk.
SET enable_seqscan = off;
SET enable_bitmapscan = off;

-- 3,000 rows of 8 dimensions (setseed: the same rows on every machine)
SELECT setseed(0.25);
-- (room on the pages for HOT updates)
CREATE TABLE walk_t (id int PRIMARY KEY, note int DEFAULT 0, v real[]) WITH (fillfactor = 50);
INSERT INTO walk_t (id, v)
	SELECT i, ARRAY(SELECT round((random() * 10)::numeric, 2)::real
					  FROM generate_series(1, 8) WHERE i > 0)
	  FROM generate_series(1, 3000) i;
ANALYZE walk_t;

-- One full walk by the index (it checks the plan), kept in walked: rows,
-- whether each came once, and the late rows, whose exact distance is below
-- that of a row returned before
CREATE TEMP TABLE walked (pos bigint, id int, d float8);
CREATE FUNCTION walk(q real[], op text DEFAULT '<->', tbl regclass DEFAULT 'walk_t')
RETURNS TABLE (rows bigint, once bool, late bigint) LANGUAGE plpgsql AS $$
DECLARE
	-- a NULL query as a subquery, or the planner folds the ORDER BY away
	qx text := coalesce(quote_literal(q) || '::real[]', '(SELECT NULL::real[])');
	ordered text := format('SELECT row_number() OVER () AS pos, id, d '
						   'FROM (SELECT id, v %s %s AS d FROM %s ORDER BY v %s %s) s',
						   op, qx, tbl, op, qx);
BEGIN
	PERFORM uses_index(ordered);
	TRUNCATE walked;
	EXECUTE 'INSERT INTO walked ' || ordered;
	RETURN QUERY
		SELECT count(*), count(DISTINCT t.id) = count(*), count(*) FILTER (WHERE t.d < t.before)
		  FROM (SELECT w.id, w.d, max(w.d) OVER (ORDER BY w.pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
				  FROM walked w) t;
END
$$;

-- The rows of walk_t a strict order would drop in the last walk: late in it,
-- or missing from it
CREATE FUNCTION at_risk() RETURNS SETOF int LANGUAGE sql AS $$
	SELECT id FROM (SELECT id, d, max(d) OVER (ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
					  FROM walked) t
	 WHERE d < before
	UNION
	SELECT id FROM walk_t WHERE id NOT IN (SELECT id FROM walked)
$$;

-- Per index: (a) full walks from three queries return every row once;
-- (b) WHERE id + 0 = N ... LIMIT 1 finds row N, for rows at risk (25 at
-- most) and a few others; (c) a filter keeping 1% of the rows gets its 10
-- rows; (d) late rows are under late_bound of a walk
CREATE FUNCTION check_walks(late_bound float8 DEFAULT 0.01) RETURNS TABLE (all_rows bool, once bool,
	filtered_found bool, one_percent bool, few_late bool) LANGUAGE plpgsql AS $$
DECLARE
	q1 real[] := '{5,5,5,5,5,5,5,5}';
	q2 real[] := '{0,10,0,10,0,10,0,10}';
	q3 real[] := '{1.5,7.25,3,9,0.5,2,8.75,4}';
	n bigint := (SELECT count(*) FROM walk_t);
	w record;
	missed int;
BEGIN
	all_rows := true;
	once := true;
	few_late := true;
	-- q1 last: at_risk() reads its walk
	FOR w IN SELECT * FROM walk(q2) UNION ALL SELECT * FROM walk(q3) UNION ALL SELECT * FROM walk(q1) LOOP
		all_rows := all_rows AND w.rows = n;
		once := once AND w.once;
		few_late := few_late AND w.late < late_bound * n;
		RAISE DEBUG 'late rows: %', w.late;
	END LOOP;
	SELECT count(*) INTO missed
	  FROM (SELECT * FROM (SELECT * FROM at_risk() ORDER BY 1 LIMIT 25) r
			UNION SELECT unnest('{1,600,1500,2999,3000}'::int[])) r(target)
	 WHERE NOT EXISTS (SELECT FROM (SELECT id FROM walk_t WHERE id + 0 = target ORDER BY v <-> q1 LIMIT 1) s
					   WHERE id = target);
	filtered_found := missed = 0;
	one_percent := (SELECT count(*) FROM (SELECT id FROM walk_t WHERE id % 100 = 42 ORDER BY v <-> q2 LIMIT 10) s) = 10;
	RETURN NEXT;
END
$$;

-- Flat indexes: late rows are under 1%
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4);
SELECT * FROM check_walks();
DROP INDEX walk_kd;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, quantizer = opq);
SELECT * FROM check_walks();
DROP INDEX walk_kd;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, quantizer = aq);
SELECT * FROM check_walks();
DROP INDEX walk_kd;
-- the 4-bit fast-scan layout
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT * FROM check_walks();
DROP INDEX walk_kd;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, nbits = 4, quantizer = opq);
SELECT * FROM check_walks();
DROP INDEX walk_kd;

-- Lists, 2 probes of 20: past the first rows the walk opens further lists as
-- soon as they could hold nearer rows.  The first 16 rows come from the
-- probed lists only, so rows of other lists nearer than those come late:
-- under 5% (under 1% with every list probed)
SET kdindex.probes = 2;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, lists = 20);
SELECT * FROM check_walks(0.05);
SET kdindex.probes = 20;
SELECT few_late FROM check_walks();
SET kdindex.probes = 2;
DROP INDEX walk_kd;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, lists = 20, quantizer = opq);
SELECT * FROM check_walks(0.05);
DROP INDEX walk_kd;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, lists = 20, quantizer = aq);
SELECT * FROM check_walks(0.05);
DROP INDEX walk_kd;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, nbits = 4, lists = 20);
SELECT * FROM check_walks(0.05);
DROP INDEX walk_kd;
-- the lookup tables of the lists read at once fit in work_mem (4 kB a list
-- here): past that lists open only when those read run out, every row still
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, lists = 20);
SET work_mem = '64kB';
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}');
RESET work_mem;
DROP INDEX walk_kd;
RESET kdindex.probes;

-- Ties: 2,000 rows of 7 distinct vectors tie on code and exact distance, so
-- passes resume after ties broken by TID (small passes at kdindex.rerank = 10;
-- the fast scan's limit must let ties through)
CREATE TABLE walk_dup AS
	SELECT g AS id, w.v FROM generate_series(1, 2000) g JOIN walk_t w ON w.id = g % 7 + 1;
SET kdindex.rerank = 10;
CREATE INDEX walk_dup_kd ON walk_dup USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}', '<->', 'walk_dup');
DROP INDEX walk_dup_kd;
CREATE INDEX walk_dup_kd ON walk_dup USING kdindex (v) WITH (m = 4, quantizer = aq);
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}', '<->', 'walk_dup');
SET kdindex.rerank = 0;
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}', '<->', 'walk_dup');
RESET kdindex.rerank;
DROP TABLE walk_dup;

-- Codes only (kdindex.rerank = 0): code order, every row once, across lists too
SET kdindex.rerank = 0;
SET kdindex.probes = 2;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4, nbits = 4, lists = 20);
SELECT rows = 3000 AS all_rows, once FROM walk('{5,5,5,5,5,5,5,5}');
DROP INDEX walk_kd;
CREATE INDEX walk_kd ON walk_t USING kdindex (v) WITH (m = 4);
SELECT rows = 3000 AS all_rows, once FROM walk('{5,5,5,5,5,5,5,5}');
RESET kdindex.probes;
RESET kdindex.rerank;

-- (e) kdindex.max_scan_tuples: a walk stops after that many candidates
-- (index entries); the rows re-ranked by then are all returned, so with no
-- dead entries exactly that many rows
SET kdindex.max_scan_tuples = 500;
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}');
SET kdindex.rerank = 0;
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}');
RESET kdindex.rerank;
-- dead entries count too: rows deleted (not vacuumed) are consumed, not returned
BEGIN;
DELETE FROM walk_t WHERE id % 10 = 0;
SELECT rows < 500 AS fewer, rows > 400 AS most, once FROM walk('{5,5,5,5,5,5,5,5}');
ROLLBACK;
-- a filter keeping 1% of the rows gets fewer rows than its LIMIT past the
-- bound, all of them without one (0)
SET kdindex.max_scan_tuples = 100;
SELECT count(*) < 10 AS short
  FROM (SELECT id FROM walk_t WHERE id % 100 = 42 ORDER BY v <-> '{5,5,5,5,5,5,5,5}' LIMIT 10) s;
SET kdindex.max_scan_tuples = 0;
SELECT count(*) FROM (SELECT id FROM walk_t WHERE id % 100 = 42 ORDER BY v <-> '{5,5,5,5,5,5,5,5}') s;
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}');
RESET kdindex.max_scan_tuples;
SHOW kdindex.max_scan_tuples;

-- Rows invisible to the snapshot are skipped; a HOT update (the index holds
-- the chain's root) keeps every row, before and after pruning
BEGIN;
DELETE FROM walk_t WHERE id % 3 = 0;
INSERT INTO walk_t (id, v) SELECT id + 3000, v FROM walk_t WHERE id <= 100;
SELECT rows = (SELECT count(*) FROM walk_t) AS visible_rows, once FROM walk('{5,5,5,5,5,5,5,5}');
ROLLBACK;
UPDATE walk_t SET note = 1 WHERE id % 2 = 0;
SELECT pg_stat_force_next_flush();
SELECT n_tup_hot_upd > 1000 AS hot FROM pg_stat_user_tables WHERE relname = 'walk_t';
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}');
SELECT id FROM walk_t WHERE id + 0 = 600 ORDER BY v <-> '{5,5,5,5,5,5,5,5}' LIMIT 1;
VACUUM walk_t;
SELECT rows, once FROM walk('{5,5,5,5,5,5,5,5}');
SELECT rows, once FROM walk(NULL);

-- pg_stat_user_indexes.idx_scan counts the index's scans
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS scans_before FROM pg_stat_user_indexes WHERE indexrelname = 'walk_kd' \gset
SELECT count(*) FROM (SELECT id FROM walk_t ORDER BY v <-> '{5,5,5,5,5,5,5,5}' LIMIT 3) s;
SELECT count(*) FROM (SELECT id FROM walk_t ORDER BY v <-> '{1,2,3,4,5,6,7,8}' LIMIT 3) s;
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :scans_before AS new_scans FROM pg_stat_user_indexes WHERE indexrelname = 'walk_kd';
DROP INDEX walk_kd;

-- Cosine: every row; a zero query has NaN distance to every row, so every
-- row comes back (as a sequential scan and pgvector return them), unbounded
-- like a NULL query; so does an untrained index
CREATE INDEX walk_kd ON walk_t USING kdindex (v float4_cosine_ops) WITH (m = 4);
SELECT rows, once, late < 30 AS few_late FROM walk('{5,5,5,5,5,5,5,5}', '<=>');
SET kdindex.max_scan_tuples = 100;
SELECT rows, once FROM walk('{0,0,0,0,0,0,0,0}', '<=>');
SELECT rows, once FROM walk(NULL, '<=>');
SELECT d, count(*) FROM (SELECT v <=> '{0,0,0,0,0,0,0,0}' AS d FROM walk_t
						  ORDER BY v <=> '{0,0,0,0,0,0,0,0}' LIMIT 5) s GROUP BY d;
RESET kdindex.max_scan_tuples;
DROP INDEX walk_kd;
-- inner product
CREATE INDEX walk_kd ON walk_t USING kdindex (v float4_ip_ops) WITH (m = 4, quantizer = aq);
SELECT rows, once, late < 30 AS few_late FROM walk('{5,5,5,5,5,5,5,5}', '<#>');
DROP INDEX walk_kd;
-- untrained: exact, every row, not bounded
CREATE TABLE walk_small (id int, v real[]);
CREATE INDEX walk_small_kd ON walk_small USING kdindex (v) WITH (m = 4);
INSERT INTO walk_small SELECT id, v FROM walk_t WHERE id <= 200;
SELECT trained FROM kdindex_info('walk_small_kd');
SET kdindex.max_scan_tuples = 10;
SELECT * FROM walk('{5,5,5,5,5,5,5,5}', '<->', 'walk_small');
RESET kdindex.max_scan_tuples;

DROP TABLE walk_small;
DROP FUNCTION check_walks(float8);
DROP FUNCTION at_risk();
DROP FUNCTION walk(real[], text, regclass);
DROP TABLE walk_t, walked;
RESET enable_seqscan;
RESET enable_bitmapscan;
