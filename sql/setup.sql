-- Shared by the suites that follow: deterministic data and a recall probe.

-- Clustered rows: 10 clusters, values rounded so every machine computes the
-- same ones.
CREATE FUNCTION make_vec(seed int, dim int DEFAULT 16) RETURNS real[] LANGUAGE sql IMMUTABLE AS $$
	SELECT array_agg(round((((seed % 10) * 3 + j) % 7 + sin(seed * 7.31 + j * 3.17))::numeric, 3)::real ORDER BY j)
	  FROM generate_series(1, dim) j
$$;

-- 20 queries from a different formula than the rows
CREATE TABLE queries AS
	SELECT q AS qid, array_agg(round((((q % 10) * 3 + j) % 7 + cos(q * 5.1 + j))::numeric, 3)::real ORDER BY j) AS v
	  FROM generate_series(1, 20) q, generate_series(1, 16) j GROUP BY q;

-- fails unless the plan of query scans an index
CREATE FUNCTION uses_index(query text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	plan text := '';
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		plan := plan || line;
	END LOOP;
	IF plan NOT LIKE '%Index Scan using%' THEN
		RAISE EXCEPTION 'the query does not use an index: %', plan;
	END IF;
END
$$;

-- recall@k of tbl's kdindex against an exact scan over the queries (qid, v) of
-- qtbl (the 20 queries); fails unless the plan really uses the index (and the
-- exact one does not)
CREATE FUNCTION knn_recall(tbl regclass, op text, rerank int, qtbl regclass DEFAULT 'queries',
						   k int DEFAULT 10) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
	knn text := format('SELECT q.qid, f.id FROM %s q CROSS JOIN LATERAL '
					   '(SELECT id FROM %s i ORDER BY i.v %s q.v LIMIT %s) f', qtbl, tbl, op, k);
	r numeric;
BEGIN
	-- the exact answer by a sequential scan (with both off, the planner would
	-- still pick the index)
	PERFORM set_config('enable_indexscan', 'off', true);
	PERFORM set_config('enable_seqscan', 'on', true);
	EXECUTE 'CREATE TEMP TABLE exact_knn AS ' || knn;
	PERFORM set_config('enable_indexscan', 'on', true);
	PERFORM set_config('enable_seqscan', 'off', true);
	PERFORM set_config('kdindex.rerank', rerank::text, true);
	PERFORM uses_index(knn);
	EXECUTE format('SELECT count(*) / (SELECT %s.0 * count(*) FROM %s) FROM (', k, qtbl) || knn ||
			') f JOIN exact_knn e USING (qid, id)' INTO r;
	DROP TABLE exact_knn;
	PERFORM set_config('enable_seqscan', 'on', true);
	RETURN r;
END
$$;

-- 20 clusters, each row with its own noise amplitude (1 to 4 by seed % 4), so
-- rows differ in how much detail their codes lose (rowterm, refine)
CREATE FUNCTION noisy_vec(seed int, dim int DEFAULT 32) RETURNS real[] LANGUAGE sql IMMUTABLE AS $$
	SELECT array_agg(round(((((seed % 20) * 7 + j * 3) % 11) / 2.0 +
		(1 + seed % 4) * (sin(seed * 12.9898 + j * 78.233) * 43758.5453 -
		 floor(sin(seed * 12.9898 + j * 78.233) * 43758.5453) - 0.5))::numeric, 3)::real ORDER BY j)
	  FROM generate_series(1, dim) j
$$;
