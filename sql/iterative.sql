-- kdindex.iterative_scan, max_scan_tuples, max_probes: pgvector 0.8's
-- iterative-scan settings under kdindex's names.  relaxed_order (the
-- default) returns every row the scan reaches, a late one too; strict_order
-- drops late rows; off stops after the first kdindex.rerank candidates of the
-- first kdindex.probes lists.  With the defaults nothing but the end of the
-- lists stops a scan, so a rare filter gets its LIMIT.
SET enable_seqscan = off;
SET enable_bitmapscan = off;

-- 25,000 rows of 8 dimensions (setseed: the same rows on every machine)
SELECT setseed(0.5);
CREATE TABLE it (id int, v real[]);
INSERT INTO it SELECT i, ARRAY(SELECT round((random() * 10)::numeric, 2)::real
							  FROM generate_series(1, 8) WHERE i > 0)
  FROM generate_series(1, 25000) i;
ANALYZE it;
CREATE INDEX it_flat ON it USING kdindex (v) WITH (nbits = 4, m = 4);
SELECT v AS q FROM it WHERE id = 4242 \gset
-- (the index loaded the library: its settings are defined)
SHOW kdindex.iterative_scan;
SHOW kdindex.max_scan_tuples;
SHOW kdindex.max_probes;
SHOW kdindex.scan_mem_multiplier;
SET kdindex.iterative_scan = 'unordered';

-- A walk by the index: rows, whether each came once, late rows (nearer than
-- a row returned before)
CREATE FUNCTION walk(filter text DEFAULT 'true', lim int DEFAULT NULL)
RETURNS TABLE (rows bigint, once bool, late bigint) LANGUAGE plpgsql AS $$
DECLARE
	q real[] := (SELECT v FROM it WHERE id = 4242);
	ordered text := format('SELECT row_number() OVER () AS pos, id, d '
						   'FROM (SELECT id, v <-> %L::real[] AS d FROM it WHERE %s '
						   'ORDER BY v <-> %L::real[] LIMIT %s) s',
						   q, filter, q, coalesce(lim::text, 'ALL'));
BEGIN
	PERFORM uses_index(ordered);
	RETURN QUERY EXECUTE
		'SELECT count(*), count(DISTINCT id) = count(*), count(*) FILTER (WHERE d < before) '
		'FROM (SELECT id, d, max(d) OVER (ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before '
		'FROM (' || ordered || ') w) t';
END
$$;

-- 1. A filter keeping 0.02% of the rows gets all 5 of them before its LIMIT
-- with the defaults, the exact answer; 20,000 candidates (pgvector's
-- hnsw.max_scan_tuples) see only some of them
SELECT * FROM walk('id % 5000 = 0', 11);
SELECT array_agg(id) FROM (SELECT id FROM it WHERE id % 5000 = 0 ORDER BY v <-> :'q' LIMIT 11) s;
SELECT array_agg(id ORDER BY v <-> :'q') FROM it WHERE id % 5000 = 0;
SET kdindex.max_scan_tuples = 20000;
SELECT rows < 5 AS cut_short FROM walk('id % 5000 = 0', 11);
RESET kdindex.max_scan_tuples;

-- 2. off: the first kdindex.rerank candidates only (the first pass of 64
-- when codes only), as pgvector's off gives ef_search rows
SET kdindex.iterative_scan = off;
SELECT * FROM walk();
SET kdindex.rerank = 50;
SELECT * FROM walk();
SELECT * FROM walk(lim => 10);
SET kdindex.rerank = 0;
SELECT rows FROM walk();
RESET kdindex.rerank;
SELECT rows FROM walk('id % 5000 = 0', 11);

-- 3. strict_order: a full walk in exact order, late rows dropped (so some
-- rows are skipped), against relaxed_order's walk of every row
SET kdindex.rerank = 20;
SET kdindex.iterative_scan = relaxed_order;
SELECT rows, once, late > 0 AS some_late FROM walk();
SET kdindex.iterative_scan = strict_order;
SELECT rows < 25000 AS skipped, once, late FROM walk();
RESET kdindex.rerank;
SELECT * FROM walk('id % 5000 = 0', 11);
RESET kdindex.iterative_scan;
DROP INDEX it_flat;

-- 4. Lists: off reads the first kdindex.probes lists only; an iterative scan
-- reads at most kdindex.max_probes lists (never fewer than probes), all of
-- them by default
CREATE INDEX it_ivf ON it USING kdindex (v) WITH (nbits = 4, m = 4, lists = 20);
SET kdindex.probes = 2;
SET kdindex.rerank = 25000;
SET kdindex.iterative_scan = off;
CREATE TEMP TABLE two_lists AS SELECT rows FROM walk();
SELECT rows < 25000 AS fewer FROM two_lists;
RESET kdindex.rerank;
RESET kdindex.iterative_scan;
SET kdindex.max_probes = 1;
SELECT w.rows = t.rows AS probes_lists FROM walk() w, two_lists t;
SET kdindex.max_probes = 2;
SELECT w.rows = t.rows AS max_probes_lists FROM walk() w, two_lists t;
SET kdindex.max_probes = 3;
SELECT w.rows > t.rows AND w.rows < 25000 AS three_lists FROM walk() w, two_lists t;
RESET kdindex.max_probes;
SELECT rows, once FROM walk();
SELECT * FROM walk('id % 5000 = 0', 11);

-- 5. strict_order over lists: opening lists early leaves late rows to drop
SET kdindex.rerank = 20;
SET kdindex.probes = 1;
SELECT rows, once, late > 0 AS some_late FROM walk();
SET kdindex.iterative_scan = strict_order;
SELECT rows < 25000 AS skipped, once, late FROM walk();
RESET ALL;
DROP TABLE it;
DROP FUNCTION walk(text, int);
