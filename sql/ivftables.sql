-- Precomputed IVF lookup tables (ivftables.c): a probed list's table is the
-- query's shared table plus the list's precomputed term.  Codes-only scans
-- (rerank 0, every list probed) give the same order as the tables built per
-- list from q - c (kdindex.ivf_table_mem = 0), for every quantizer and
-- metric; the terms follow a new generation; past the memory limit the scan
-- falls back to per-list tables.
SET enable_seqscan = off;
CREATE TABLE ivt (id int PRIMARY KEY, v real[]);
INSERT INTO ivt SELECT i, make_vec(i) FROM generate_series(1, 3000) i;

-- per query the 10 nearest ids by code distance, with the precomputed tables
-- (first: so cached ones are used) and with per-list tables; returns the
-- queries whose ids differ by more than near-ties (the two sum the same terms
-- in another order, so rows a float's rounding apart may swap: each list's
-- first 9 must be in the other's 10)
CREATE FUNCTION ivt_differ(idx regclass, op text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	knn text := format('SELECT q.qid, ARRAY(SELECT id FROM %s t ORDER BY t.v %s q.v LIMIT 10) AS ids '
					   'FROM queries q', (SELECT indrelid::regclass FROM pg_index WHERE indexrelid = idx), op);
	mem text := current_setting('kdindex.ivf_table_mem');
	n bigint;
BEGIN
	PERFORM set_config('kdindex.rerank', '0', true);
	PERFORM set_config('kdindex.probes', (SELECT lists FROM kdindex_info(idx))::text, true);
	PERFORM uses_index(knn);
	EXECUTE 'CREATE TEMP TABLE precomputed AS ' || knn;
	PERFORM set_config('kdindex.ivf_table_mem', '0', true);
	EXECUTE 'SELECT count(*) FROM (' || knn || ') l JOIN precomputed p USING (qid) WHERE NOT (p.ids[1:9] <@ l.ids AND l.ids[1:9] <@ p.ids)' INTO n;
	PERFORM set_config('kdindex.ivf_table_mem', mem, true);
	DROP TABLE precomputed;
	RETURN n;
END
$$;

-- one index at a time, so the planner has no other to pick
CREATE INDEX ivt_pq ON ivt USING kdindex (v) WITH (quantizer = 'pq', m = 4, lists = 12);
SELECT ivt_differ('ivt_pq', '<->') AS pq_l2;
DROP INDEX ivt_pq;
CREATE INDEX ivt_opq ON ivt USING kdindex (v) WITH (quantizer = 'opq', m = 4, lists = 12, iterations = 3);
SELECT ivt_differ('ivt_opq', '<->') AS opq_l2;
DROP INDEX ivt_opq;
CREATE INDEX ivt_aq ON ivt USING kdindex (v) WITH (quantizer = 'aq', m = 3, lists = 12);
SELECT ivt_differ('ivt_aq', '<->') AS aq_l2;
DROP INDEX ivt_aq;
-- the 4-bit fast scan rounds the summed tables to bytes
CREATE INDEX ivt_pq4 ON ivt USING kdindex (v) WITH (quantizer = 'pq', m = 8, nbits = 4, lists = 12);
SELECT ivt_differ('ivt_pq4', '<->') AS pq4_l2;
DROP INDEX ivt_pq4;
CREATE INDEX ivt_opq_cos ON ivt USING kdindex (v float4_cosine_ops) WITH (quantizer = 'opq', m = 4, lists = 12, iterations = 3);
SELECT ivt_differ('ivt_opq_cos', '<=>') AS opq_cosine;
DROP INDEX ivt_opq_cos;
CREATE INDEX ivt_aq_cos ON ivt USING kdindex (v float4_cosine_ops) WITH (quantizer = 'aq', m = 4, nbits = 4, lists = 12);
SELECT ivt_differ('ivt_aq_cos', '<=>') AS aq_cosine;
DROP INDEX ivt_aq_cos;
-- inner product shares one table among the lists
CREATE INDEX ivt_pq_ip ON ivt USING kdindex (v float4_ip_ops) WITH (quantizer = 'pq', m = 4, lists = 12);
SELECT ivt_differ('ivt_pq_ip', '<#>') AS pq_ip;
DROP INDEX ivt_pq_ip;

-- past kdindex.ivf_table_mem: per-list tables (12 lists x 4 x 256 floats
-- need 53 kB), the same answers; within it, precomputed tables
CREATE INDEX ivt_pq ON ivt USING kdindex (v) WITH (quantizer = 'pq', m = 4, lists = 12);
SET kdindex.rerank = 0;
SET kdindex.probes = 3;
SET client_min_messages = debug1;
SET kdindex.ivf_table_mem = '32kB';
SELECT count(*) FROM (SELECT id FROM ivt ORDER BY v <-> make_vec(7) LIMIT 5) s;
SET kdindex.ivf_table_mem = '1MB';
SELECT count(*) FROM (SELECT id FROM ivt ORDER BY v <-> make_vec(7) LIMIT 5) s;
RESET client_min_messages;
SELECT ivt_differ('ivt_pq', '<->') AS pq_within_1mb;
SET kdindex.ivf_table_mem = '32kB';
SELECT ivt_differ('ivt_pq', '<->') AS pq_over_limit;
RESET kdindex.ivf_table_mem;
RESET kdindex.probes;
RESET kdindex.rerank;
DROP INDEX ivt_pq;

-- a new generation gets new terms.  TRUNCATE in the transaction that created
-- the table keeps the index's relfilenode: the tables of its first training
-- (generation 0, at CREATE INDEX) must not score the codes of the second
-- (generation 1, self-trained on other rows).  Keyed by relfilenode alone,
-- the cached terms would be stale and the orders differ.
BEGIN;
CREATE TABLE ivg (id int PRIMARY KEY, v real[]);
INSERT INTO ivg SELECT i, make_vec(i) FROM generate_series(1, 700) i;
CREATE INDEX ivg_pq ON ivg USING kdindex (v) WITH (quantizer = 'pq', m = 8, nbits = 4, lists = 4);
SELECT trained, generation FROM kdindex_info('ivg_pq');
SELECT ivt_differ('ivg_pq', '<->') AS first_generation;
-- (which leaves no tables cached: kdindex.ivf_table_mem = 0 dropped them) cache them
SET LOCAL kdindex.probes = 4;
SELECT count(*) FROM (SELECT id FROM ivg ORDER BY v <-> make_vec(7) LIMIT 5) s;
SELECT relfilenode AS node_before FROM pg_class WHERE relname = 'ivg_pq' \gset
TRUNCATE ivg;
SELECT relfilenode = :node_before AS same_relfilenode FROM pg_class WHERE relname = 'ivg_pq';
INSERT INTO ivg SELECT i, ARRAY(SELECT (x * 3 - 5)::real FROM unnest(make_vec(i + 5000)) x)
  FROM generate_series(1, 700) i;
SELECT trained, generation FROM kdindex_info('ivg_pq');
SELECT ivt_differ('ivg_pq', '<->') AS second_generation;
ROLLBACK;

-- the same, both trainings self-trainings: generation 1 twice under one
-- relfilenode.  The build that TRUNCATE runs drops what the backend cached
-- (codebooks and terms), so this session scores the new codes as a fresh one.
SET kdindex.rerank = 0;
SET kdindex.probes = 4;
BEGIN;
CREATE TABLE ivs (id int PRIMARY KEY, v real[]);
CREATE INDEX ivs_pq ON ivs USING kdindex (v) WITH (quantizer = 'pq', m = 8, nbits = 4, lists = 4);
INSERT INTO ivs SELECT i, make_vec(i) FROM generate_series(1, 700) i;
SELECT trained, generation FROM kdindex_info('ivs_pq');
SELECT count(*) FROM (SELECT id FROM ivs ORDER BY v <-> make_vec(7) LIMIT 5) s;
TRUNCATE ivs;
INSERT INTO ivs SELECT i, ARRAY(SELECT (x * 3 - 5)::real FROM unnest(make_vec(i + 5000)) x)
  FROM generate_series(1, 700) i;
SELECT trained, generation FROM kdindex_info('ivs_pq');
CREATE TABLE ivs_same_session AS SELECT q.qid, ARRAY(SELECT id FROM ivs t ORDER BY t.v <-> q.v LIMIT 10) AS ids
  FROM queries q;
COMMIT;
\c
SET enable_seqscan = off;
SET kdindex.rerank = 0;
SET kdindex.probes = 4;
SELECT count(*) AS differ_from_fresh_session FROM ivs_same_session s JOIN
  (SELECT q.qid, ARRAY(SELECT id FROM ivs t ORDER BY t.v <-> q.v LIMIT 10) AS ids FROM queries q) f USING (qid)
 WHERE s.ids <> f.ids;
DROP TABLE ivs, ivs_same_session;
RESET kdindex.probes;
RESET kdindex.rerank;

DROP FUNCTION ivt_differ(regclass, text);
DROP TABLE ivt;
RESET enable_seqscan;
