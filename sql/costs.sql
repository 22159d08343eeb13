-- Planner costs: an ordering scan is costed by the codes it reads, the
-- lists it probes and the rows it re-ranks (heap fetches in the sequential
-- scan's units), so the planner takes kdindex where it is the faster plan:
-- pgvector's cost tests (2,000 rows of 1,536 dimensions; a distance filter),
-- a small partial index beside a btree on the filter column; and a
-- sequential scan where that is faster (no LIMIT).

-- The plan, with the query vector's literal shortened to q
CREATE FUNCTION plan(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		RETURN NEXT regexp_replace(line, '''\{[^}]*\}''::real\[\]', 'q', 'g');
	END LOOP;
END
$$;

SELECT setseed(0.1);
CREATE TABLE cost_t (i int, v real[]);
INSERT INTO cost_t SELECT i, ARRAY(SELECT random()::real FROM generate_series(1, 1536) WHERE i > 0)
  FROM generate_series(1, 2000) i;
CREATE INDEX cost_kd ON cost_t USING kdindex (v);
ANALYZE cost_t;
SELECT v AS q FROM cost_t WHERE i = 17 \gset

-- 1. ORDER BY ... LIMIT on 2,000 rows of 1,536 dimensions (TOASTed)
SELECT plan(format('SELECT i FROM cost_t ORDER BY v <-> %L LIMIT 10', :'q'));

-- 2. A distance filter, on 6,000 rows
DROP INDEX cost_kd;
INSERT INTO cost_t SELECT i, ARRAY(SELECT random()::real FROM generate_series(1, 1536) WHERE i > 0)
  FROM generate_series(2001, 6000) i;
CREATE INDEX cost_kd ON cost_t USING kdindex (v);
ANALYZE cost_t;
SELECT plan(format('SELECT i FROM cost_t WHERE v <-> %L < 1 ORDER BY v <-> %L LIMIT 10', :'q', :'q'));

-- 4a. Without LIMIT a sequential scan and a sort are faster
SELECT plan(format('SELECT i FROM cost_t ORDER BY v <-> %L', :'q'));
DROP TABLE cost_t;

-- 3. Partial indexes beside a btree on the filter column: 1,000 rows of
-- 20,000 (trained), 100 and 10 (untrained: every row re-ranked).  The index
-- returns its own rows, not the table's: with LIMIT 10 the planner weighs
-- the whole scan of the 10-row one.
CREATE TABLE cost_p (i int, cat int, v real[]);
INSERT INTO cost_p SELECT i, i % 20, ARRAY(SELECT random()::real FROM generate_series(1, 64) WHERE i > 0)
  FROM generate_series(1, 20000) i;
CREATE INDEX cost_p_cat ON cost_p (cat);
CREATE INDEX cost_p_kd ON cost_p USING kdindex (v) WHERE cat = 7;
CREATE INDEX cost_p_small ON cost_p USING kdindex (v) WHERE cat = 8 AND i < 2000;
CREATE INDEX cost_p_tiny ON cost_p USING kdindex (v) WHERE cat = 10 AND i < 200;
ANALYZE cost_p;
SELECT v AS q FROM cost_p WHERE i = 17 \gset
SELECT plan(format('SELECT i FROM cost_p WHERE cat = 7 ORDER BY v <-> %L LIMIT 10', :'q'));
SELECT plan(format('SELECT i FROM cost_p WHERE cat = 8 AND i < 2000 ORDER BY v <-> %L LIMIT 10', :'q'));
SELECT plan(format('SELECT i FROM cost_p WHERE cat = 10 AND i < 200 ORDER BY v <-> %L LIMIT 10', :'q'));
-- (a category without a kdindex: the btree)
SELECT plan(format('SELECT i FROM cost_p WHERE cat = 9 ORDER BY v <-> %L LIMIT 10', :'q'));
DROP TABLE cost_p;

-- 4b. A tiny table, no LIMIT: a sequential scan
CREATE TABLE cost_tiny (i int, v real[]);
INSERT INTO cost_tiny SELECT i, ARRAY[i, i % 7, i % 3] FROM generate_series(1, 50) i;
CREATE INDEX cost_tiny_kd ON cost_tiny USING kdindex (v);
ANALYZE cost_tiny;
SELECT plan('SELECT i FROM cost_tiny ORDER BY v <-> ''{1,2,3}''');
SELECT plan('SELECT i FROM cost_tiny ORDER BY v <-> ''{1,2,3}'' LIMIT 3');
DROP TABLE cost_tiny;
DROP FUNCTION plan(text);
