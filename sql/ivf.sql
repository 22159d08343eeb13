-- IVF lists: coarse centroids, one chain per list, residual codes, probes,
-- scans that go on to further lists under filters, inserts, vacuum, limits.
-- Uses items and queries from build.sql.
SET enable_seqscan = off;

CREATE INDEX items_ivf ON items USING kdindex (v) WITH (m = 8, lists = 16);
SELECT quantizer, m, trained, lists, rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows
  FROM kdindex_info('items_ivf');
-- the residuals from the centroids are coded better than the rows themselves
CREATE INDEX items_flat ON items USING kdindex (v) WITH (m = 8);
SELECT i.train_mse < f.train_mse AS residuals_code_better
  FROM kdindex_info('items_ivf') i, kdindex_info('items_flat') f;
DROP INDEX items_flat;

-- a parallel build (workers encode, the leader writes) gives the same codes:
-- the same codes-only answers as the serial build
SET kdindex.rerank = 0;
CREATE TEMP TABLE serial_knn AS SELECT q.qid, f.id FROM queries q CROSS JOIN LATERAL
	(SELECT id FROM items i ORDER BY i.v <-> q.v LIMIT 10) f;
SET max_parallel_maintenance_workers = 1;
SET min_parallel_table_scan_size = 0;
SET client_min_messages = debug1;
CREATE INDEX items_ivf_par ON items USING kdindex (v) WITH (m = 8, lists = 16);
RESET client_min_messages;
RESET min_parallel_table_scan_size;
RESET max_parallel_maintenance_workers;
DROP INDEX items_ivf;
SELECT count(*) AS same_answers FROM serial_knn JOIN
	(SELECT q.qid, f.id FROM queries q CROSS JOIN LATERAL
		(SELECT id FROM items i ORDER BY i.v <-> q.v LIMIT 10) f) p USING (qid, id);
SELECT rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows FROM kdindex_info('items_ivf_par');
ALTER INDEX items_ivf_par RENAME TO items_ivf;
RESET kdindex.rerank;

-- kdindex_lists: rows and pages per list, adding up to the index's rows
SELECT count(*) AS lists, sum(rows) = (SELECT rows FROM kdindex_info('items_ivf')) AS all_rows,
       bool_and(pages >= 1) AS every_list_has_pages
  FROM kdindex_lists('items_ivf');

-- balanced lists (Sinkhorn-Knopp offsets) on rows without clusters: the list
-- sizes spread less than plain k-means leaves them
CREATE TABLE cloud AS SELECT i AS id, ARRAY(SELECT ((hashint4(i * 8 + j)::float8 / 2147483648) * (1 + j))::real
  FROM generate_series(0, 7) j) AS v FROM generate_series(1, 4000) i;
CREATE INDEX cloud_plain ON cloud USING kdindex (v) WITH (m = 4, nbits = 4, lists = 20);
CREATE INDEX cloud_balanced ON cloud USING kdindex (v) WITH (m = 4, nbits = 4, lists = 20, balance = 0.1);
SELECT (SELECT stddev(rows) / avg(rows) FROM kdindex_lists('cloud_balanced')) <
       (SELECT stddev(rows) / avg(rows) FROM kdindex_lists('cloud_plain')) * 0.75 AS more_even,
       (SELECT sum(rows) FROM kdindex_lists('cloud_balanced')) AS balanced_rows;
-- a query probes the balanced lists the way rows were assigned to them
DROP INDEX cloud_plain;
SET kdindex.probes = 4;
SELECT count(*) FROM (SELECT id FROM cloud ORDER BY v <-> (SELECT v FROM cloud WHERE id = 77) LIMIT 5) s;
SELECT id FROM cloud ORDER BY v <-> (SELECT v FROM cloud WHERE id = 77) LIMIT 1;
DROP TABLE cloud;
CREATE INDEX items_bad ON items USING kdindex (v) WITH (balance = 0.1);
CREATE INDEX items_bad ON items USING kdindex (v) WITH (lists = 4, balance = 11);

-- probes: more lists, more recall; all lists is the flat index's recall
SET kdindex.probes = 1;
SELECT knn_recall('items', '<->', 0) AS codes_probes_1 \gset
SET kdindex.probes = 16;
SELECT knn_recall('items', '<->', 0) AS codes_probes_16 \gset
SELECT :codes_probes_1 <= :codes_probes_16 AS more_probes_more_recall,
       :codes_probes_16 >= 0.5 AS codes_ok;
SET kdindex.probes = 4;
SELECT knn_recall('items', '<->', 100) >= 0.95 AS rerank_ok;

-- the planner reads only probes / lists of the codes: cheaper than flat
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> make_vec(3) LIMIT 10;

-- a filter that rejects most rows: with one probe the scan moves on to
-- further lists until 10 rows pass, and finds the exact ones
SET kdindex.probes = 1;
SET kdindex.rerank = 50;
CREATE TEMP TABLE ivf_filtered AS
	SELECT id, v <-> make_vec(3) AS d FROM items WHERE id % 50 = 0 ORDER BY v <-> make_vec(3) LIMIT 10;
SELECT count(*) AS rows FROM ivf_filtered;
SET enable_indexscan = off;
SET enable_seqscan = on;
SELECT count(*) >= 9 AS filtered_recall_ok
  FROM (SELECT id FROM items WHERE id % 50 = 0 ORDER BY v <-> make_vec(3) LIMIT 10) e
  JOIN ivf_filtered USING (id);
RESET enable_indexscan;
SET enable_seqscan = off;
-- kdindex.max_scan_tuples stops it: fewer rows, never wrong ones
SET kdindex.max_scan_tuples = 60;
SELECT count(*) < 10 AS stopped_early, coalesce(bool_and(id % 50 = 0), true) AS filter_holds
  FROM (SELECT id FROM items WHERE id % 50 = 0 ORDER BY v <-> make_vec(3) LIMIT 10) s;
RESET kdindex.max_scan_tuples;
RESET kdindex.rerank;

-- codes only, all lists at once: every row exactly once, in code order (with
-- fewer probes every row too, each group of lists in code order: walk.sql)
SET kdindex.rerank = 0;
SET kdindex.probes = 16;
SELECT count(*) = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS every_row, count(*) = count(DISTINCT id) AS once
  FROM (SELECT id FROM items ORDER BY v <-> make_vec(3) LIMIT 100000) s;
RESET kdindex.rerank;

-- inserts go to their lists and are found; deleted rows are not
INSERT INTO items SELECT i, make_vec(i) FROM generate_series(200001, 200300) i;
SELECT rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows FROM kdindex_info('items_ivf');
SELECT id FROM items ORDER BY v <-> make_vec(200007) LIMIT 1;
DELETE FROM items WHERE id > 200000;
VACUUM items;
SELECT rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows FROM kdindex_info('items_ivf');
SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> make_vec(200007) LIMIT 100000) s WHERE id > 200000;
-- vacuum left room in the lists' pages: inserting the rows again does not grow the index
SELECT pg_relation_size('items_ivf') AS size_before \gset
INSERT INTO items SELECT i, make_vec(i) FROM generate_series(200001, 200300) i;
SELECT pg_relation_size('items_ivf') = :size_before AS refilled;
DELETE FROM items WHERE id > 200000;
VACUUM items;

-- inner product, cosine, other quantizers
SET kdindex.probes = 4;
CREATE INDEX items_ivf_ip ON items USING kdindex (v float4_ip_ops) WITH (m = 8, lists = 16);
SELECT knn_recall('items', '<#>', 100) >= 0.95 AS ip_rerank_ok;
DROP INDEX items_ivf_ip;
CREATE INDEX items_ivf_cos ON items USING kdindex (v float4_cosine_ops) WITH (m = 8, lists = 16, quantizer = 'aq');
SELECT knn_recall('items', '<=>', 100) >= 0.95 AS cosine_aq_rerank_ok;
DROP INDEX items_ivf_cos;
CREATE INDEX items_ivf_opq ON items USING kdindex (v) WITH (m = 8, lists = 8, quantizer = 'opq');
SELECT knn_recall('items', '<->', 100) >= 0.95 AS opq_rerank_ok;
DROP INDEX items_ivf_opq;

-- bad values (kdindex_train and distill = on with lists: train.sql)
CREATE INDEX items_bad ON items USING kdindex (v) WITH (lists = -1);
CREATE INDEX items_bad ON items USING kdindex (v) WITH (lists = 40000);
SET kdindex.probes = 0;
DROP INDEX items_ivf;

-- more lists than rows: untrained until enough rows arrive
CREATE TABLE few (id int, v real[]);
INSERT INTO few SELECT i, make_vec(i) FROM generate_series(1, 300) i;
CREATE INDEX few_ivf ON few USING kdindex (v) WITH (m = 4, nbits = 4, lists = 400);
SELECT trained, lists FROM kdindex_info('few_ivf');
SELECT id FROM few ORDER BY v <-> make_vec(7) LIMIT 1;
DROP TABLE few;

-- 4,096 dimensions: small codes, exact answers after the re-rank
CREATE TABLE wide4k (id int, v real[]);
INSERT INTO wide4k SELECT i, make_vec(i, 4096) FROM generate_series(1, 400) i;
CREATE INDEX wide4k_kd ON wide4k USING kdindex (v) WITH (m = 16, nbits = 4, lists = 4);
SELECT dim, m, code_bytes, lists, rows FROM kdindex_info('wide4k_kd');
SELECT id FROM wide4k ORDER BY v <-> make_vec(123, 4096) LIMIT 1;
DROP TABLE wide4k;
-- and the most there can be, 16,000: the codes stay 8 bytes
CREATE TABLE wide16k AS SELECT i AS id, make_vec(i, 16000) AS v FROM generate_series(1, 100) i;
CREATE INDEX wide16k_kd ON wide16k USING kdindex (v) WITH (m = 16, nbits = 4, lists = 2);
SELECT dim, code_bytes, lists, rows FROM kdindex_info('wide16k_kd');
SELECT id FROM wide16k ORDER BY v <-> make_vec(77, 16000) LIMIT 1;
INSERT INTO wide16k VALUES (9999, make_vec(9999, 16000));
SELECT id FROM wide16k ORDER BY v <-> make_vec(9999, 16000) LIMIT 1;
DROP TABLE wide16k;

-- OPQ alternates codebooks and rotation on at most 128 rows per codeword (and
-- 64 per dimension): 2,048 of the 3,000 sampled residuals at nbits = 4; the
-- final codebooks are trained on all 3,000.  The answers stay exact after the
-- re-rank.
CREATE TABLE opqs (id int, v real[]);
INSERT INTO opqs SELECT i, make_vec(i) FROM generate_series(1, 3000) i;
SET client_min_messages = debug1;
CREATE INDEX opqs_kd ON opqs USING kdindex (v) WITH (quantizer = 'opq', m = 4, nbits = 4, lists = 4, iterations = 2);
RESET client_min_messages;
SELECT trained, lists, rows FROM kdindex_info('opqs_kd');
SELECT count(*) FILTER (WHERE (SELECT o.id FROM opqs o ORDER BY o.v <-> make_vec(q) LIMIT 1) = q) AS exact
FROM generate_series(1, 3000, 150) q;
DROP TABLE opqs;

RESET kdindex.probes;
RESET enable_seqscan;
