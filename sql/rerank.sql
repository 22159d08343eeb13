-- The re-rank.  An index on a plain column reads the value straight from the
-- heap tuple, an expression index through FormIndexDatum: both give the exact
-- order.  With kdindex.rerank_margin set, a scan re-ranks only as deep as the
-- rows asked for need: a row is returned once no candidate left could be
-- nearer (by the code distance errors of the rows re-ranked so far, that many
-- standard deviations wide), and the first rows at the latest after
-- kdindex.rerank candidates.  DEBUG1 reports the depth.  Uses make_vec and
-- queries from setup.sql.
SET enable_seqscan = off;
SET enable_bitmapscan = off;
CREATE TABLE rr (id int, v real[], note text) WITH (fillfactor = 50);
INSERT INTO rr SELECT i, make_vec(i), NULL FROM generate_series(1, 2000) i;
CREATE INDEX rr_kd ON rr USING kdindex (v) WITH (m = 4);
ANALYZE rr;

-- ids and ORDER BY values of the 10 nearest rows of every query: by the
-- index, or exactly (a sequential scan)
CREATE FUNCTION knn(expr text, exact bool) RETURNS TABLE (qid int, ids int[], dists float8[])
LANGUAGE plpgsql AS $$
DECLARE
	sql text := format('SELECT q.qid, array_agg(f.id ORDER BY f.d, f.id), array_agg(round(f.d::numeric, 4)::float8 ORDER BY f.d, f.id) '
					   'FROM queries q CROSS JOIN LATERAL (SELECT id, %1$s <-> q.v AS d FROM rr '
					   'ORDER BY %1$s <-> q.v LIMIT 10) f GROUP BY q.qid', expr);
BEGIN
	IF exact THEN
		PERFORM set_config('enable_indexscan', 'off', true);
		PERFORM set_config('enable_seqscan', 'on', true);
	ELSE
		PERFORM uses_index(sql);
	END IF;
	RETURN QUERY EXECUTE sql;
	PERFORM set_config('enable_indexscan', 'on', true);
	PERFORM set_config('enable_seqscan', 'off', true);
END
$$;
-- queries whose 10 rows differ from the exact ones
CREATE FUNCTION knn_diff(expr text DEFAULT 'v') RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM knn($1, false) i FULL JOIN knn($1, true) e USING (qid)
	 WHERE i.ids IS DISTINCT FROM e.ids OR i.dists IS DISTINCT FROM e.dists
$$;

-- 1. An exhaustive re-rank (every row, no early stop: the default) is the
-- exact answer: the same rows, the same order, the same distances
SET kdindex.rerank = 2000;
SELECT knn_diff();
-- and so is the early stop here, which re-ranks far fewer
SET kdindex.rerank_margin = 3;
SELECT knn_diff();
SELECT v AS q FROM queries WHERE qid = 3 \gset
SET client_min_messages = debug1;
SELECT count(*) FROM (SELECT id FROM rr ORDER BY v <-> :'q' LIMIT 10) s;
SELECT count(*) FROM (SELECT id FROM rr ORDER BY v <-> :'q' LIMIT 1) s;
-- the first rows never wait for more than kdindex.rerank candidates
SET kdindex.rerank = 40;
SET kdindex.rerank_margin = 100;
SELECT count(*) FROM (SELECT id FROM rr ORDER BY v <-> :'q' LIMIT 10) s;
-- without the early stop, every query re-ranks that many
RESET kdindex.rerank_margin;
SELECT count(*) FROM (SELECT id FROM rr ORDER BY v <-> :'q' LIMIT 1) s;
RESET client_min_messages;

-- 2. A walk past the first rows returns every row once
SET kdindex.rerank = 50;
SELECT count(*), count(DISTINCT id)
  FROM (SELECT id FROM rr ORDER BY v <-> :'q' LIMIT 100000) s;
SET kdindex.rerank_margin = 3;
SELECT count(*), count(DISTINCT id)
  FROM (SELECT id FROM rr ORDER BY v <-> :'q' LIMIT 100000) s;
RESET kdindex.rerank_margin;
RESET kdindex.rerank;

-- 3. Updated rows: HOT ones (the index holds the chain's root) and moved
-- ones (the old version's entry is dead to the snapshot)
UPDATE rr SET note = 'hot' WHERE id % 10 = 0;
UPDATE rr SET note = 'hot again' WHERE id % 10 = 0;
UPDATE rr SET v = make_vec(id + 5000) WHERE id % 7 = 0;
VACUUM rr;
SELECT count(*) FILTER (WHERE NOT EXISTS
		(SELECT 1 FROM (SELECT id FROM rr ORDER BY v <-> r.v LIMIT 3) s WHERE s.id = r.id)) AS lost
  FROM rr r WHERE id % 10 = 0 OR id % 7 = 0;
SET kdindex.rerank = 2000;
SET kdindex.rerank_margin = 3;
SELECT knn_diff();
RESET kdindex.rerank_margin;
RESET kdindex.rerank;

-- 4. An expression index takes the FormIndexDatum path, to the same answer
-- (exhaustive: the early stop is a statistical bound, and these rows crowd
-- within a thousandth of each other's distance)
DROP INDEX rr_kd;
CREATE INDEX rr_expr ON rr USING kdindex ((v || '{}'::real[])) WITH (m = 4);
SET kdindex.rerank = 2000;
SELECT knn_diff('(v || ''{}''::real[])');
RESET ALL;
DROP TABLE rr;
DROP FUNCTION knn_diff(text), knn(text, bool);
