-- Building kdindex: empty and tiny tables, training, options, opclasses,
-- expression, unlogged and concurrent builds.
CREATE TABLE items (id int PRIMARY KEY, v real[]);

-- 1. An index on an empty table builds, untrained, and answers exactly
CREATE INDEX items_kd ON items USING kdindex (v);
SELECT dim, m, trained, rows FROM kdindex_info('items_kd');
INSERT INTO items SELECT i, make_vec(i) FROM generate_series(1, 50) i;
SELECT dim, trained, rows FROM kdindex_info('items_kd');
SELECT round(knn_recall('items', '<->', 0), 2) AS untrained_recall, round(knn_recall('items', '<->', 100), 2) AS untrained_rerank_recall;

-- 2. Still too few rows at REINDEX: untrained again, and says so
REINDEX INDEX items_kd;
SELECT trained, rows FROM kdindex_info('items_kd');

-- 3. An untrained index trains itself, in the insert that brings it to
-- 39 rows per codeword (9,984 at nbits = 8); rows inserted later use the codes
CREATE TABLE grow (id int PRIMARY KEY, v real[]);
CREATE INDEX grow_kd ON grow USING kdindex (v) WITH (m = 8);
INSERT INTO grow SELECT i, make_vec(i) FROM generate_series(1, 9983) i;
SELECT trained, rows FROM kdindex_info('grow_kd');
INSERT INTO grow VALUES (9984, make_vec(9984));
SELECT trained, rows, train_rows, m, code_bytes FROM kdindex_info('grow_kd');
INSERT INTO grow SELECT i, make_vec(i) FROM generate_series(9985, 10500) i;
SELECT rows FROM kdindex_info('grow_kd');
SELECT knn_recall('grow', '<->', 0) >= 0.2 AS codes_recall_ok, knn_recall('grow', '<->', 100) >= 0.95 AS rerank_recall_ok;
DROP TABLE grow;

-- a cancelled training (here: timed out) leaves the untrained index intact,
-- and the next insert trains it
CREATE TABLE slow (id int, v real[]);
CREATE INDEX slow_kd ON slow USING kdindex (v) WITH (m = 16);
SELECT setseed(0.25);
INSERT INTO slow SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 256 + i * 0))
  FROM generate_series(1, 9983) i;
SET statement_timeout = '100ms';
INSERT INTO slow VALUES (9984, array_fill(0.5::real, ARRAY[256]));
RESET statement_timeout;
SELECT trained, rows FROM kdindex_info('slow_kd');
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM slow ORDER BY v <-> array_fill(0.5::real, ARRAY[256]) LIMIT 5) s;
RESET enable_seqscan;
INSERT INTO slow VALUES (9984, array_fill(0.5::real, ARRAY[256]));
SELECT trained, rows FROM kdindex_info('slow_kd');
DROP TABLE slow;

-- 4. Enough rows: REINDEX trains it.  NULL vectors are not indexed.
INSERT INTO items SELECT i, make_vec(i) FROM generate_series(51, 3000) i;
INSERT INTO items VALUES (3001, NULL), (3002, NULL);
REINDEX INDEX items_kd;
SELECT quantizer, metric, dim, m, nbits, code_bytes, trained, rows, train_rows
  FROM kdindex_info('items_kd');
SELECT knn_recall('items', '<->', 0) >= 0.5 AS codes_recall_ok, knn_recall('items', '<->', 100) >= 0.98 AS rerank_recall_ok;

-- rows inserted after the build are encoded with the trained codebooks
INSERT INTO items SELECT i, make_vec(i) FROM generate_series(3003, 3500) i;
SELECT rows FROM kdindex_info('items_kd');
SELECT knn_recall('items', '<->', 100) >= 0.98 AS rerank_recall_after_inserts;
DROP INDEX items_kd;

-- 5. Options: m, nbits = 4, sample
CREATE INDEX items_kd ON items USING kdindex (v) WITH (m = 8, nbits = 4, sample = 1000);
SELECT m, nbits, code_bytes, trained, train_rows FROM kdindex_info('items_kd');
SELECT knn_recall('items', '<->', 0) >= 0.1 AS codes_recall_ok, knn_recall('items', '<->', 1000) >= 0.95 AS rerank_recall_ok;
DROP INDEX items_kd;
CREATE INDEX items_kd ON items USING kdindex (v) WITH (quantizer = 'pq', m = 8, nbits = 8);
SELECT m, nbits, code_bytes FROM kdindex_info('items_kd');
DROP INDEX items_kd;

-- m = 0 (the default) takes the largest divisor of the dimension up to 16
CREATE TABLE dims (d int, v real[]);
INSERT INTO dims SELECT d, make_vec(i, d) FROM generate_series(1, 300) i, unnest(ARRAY[6, 7, 24, 784]) d;
CREATE INDEX dims6 ON dims USING kdindex (v) WHERE d = 6;
CREATE INDEX dims7 ON dims USING kdindex (v) WHERE d = 7;
CREATE INDEX dims24 ON dims USING kdindex (v) WHERE d = 24;
CREATE INDEX dims784 ON dims USING kdindex (v) WHERE d = 784;
SELECT i.relname, k.dim, k.m, k.code_bytes
  FROM pg_class i, kdindex_info(i.oid) k WHERE i.relname LIKE 'dims%' AND i.relkind = 'i' ORDER BY k.dim;
DROP TABLE dims;

-- 6. The other opclasses
CREATE INDEX items_ip ON items USING kdindex (v float4_ip_ops) WITH (m = 8);
SELECT metric FROM kdindex_info('items_ip');
-- (inner products of clustered rows are near ties: re-rank deeper)
SELECT knn_recall('items', '<#>', 0) >= 0.05 AS ip_codes_ok, knn_recall('items', '<#>', 500) >= 0.95 AS ip_recall_ok;
DROP INDEX items_ip;
CREATE INDEX items_cos ON items USING kdindex (v float4_cosine_ops) WITH (m = 8);
SELECT metric FROM kdindex_info('items_cos');
SELECT knn_recall('items', '<=>', 0) >= 0.2 AS cosine_codes_ok, knn_recall('items', '<=>', 100) >= 0.95 AS cosine_recall_ok;
DROP INDEX items_cos;

-- 7. An expression index
CREATE INDEX items_head ON items USING kdindex ((v[1:8])) WITH (m = 4);
SELECT dim, m FROM kdindex_info('items_head');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v[1:8] <-> '{1,2,3,4,5,6,7,8}' LIMIT 5;
RESET enable_seqscan;
SET enable_seqscan = off;
CREATE TEMP TABLE via_index AS SELECT id FROM items ORDER BY v[1:8] <-> '{1,2,3,4,5,6,7,8}' LIMIT 10;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT count(*) >= 9 AS expr_recall_ok
  FROM (SELECT id FROM items ORDER BY v[1:8] <-> '{1,2,3,4,5,6,7,8}' LIMIT 10) e JOIN via_index USING (id);
RESET enable_indexscan;
DROP INDEX items_head;

-- A build can be cancelled: it holds no buffer lock (which would hold off
-- interrupts) while it samples, trains and encodes
SET statement_timeout = '50ms';
CREATE INDEX items_slow ON items USING kdindex (v) WITH (quantizer = 'aq', m = 8);
RESET statement_timeout;

-- 8. Unlogged tables (the index gets an init fork) and CREATE INDEX CONCURRENTLY
CREATE UNLOGGED TABLE scratch AS SELECT * FROM items WHERE id <= 1000;
CREATE INDEX scratch_kd ON scratch USING kdindex (v) WITH (m = 4);
SET enable_seqscan = off;
-- (a full walk may skip the odd row that re-ranks out of order)
SELECT count(*) >= 990 AS walked FROM (SELECT id FROM scratch ORDER BY v <-> '{1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1}' LIMIT 2000) s;
RESET enable_seqscan;
DROP TABLE scratch;
CREATE INDEX CONCURRENTLY items_cc ON items USING kdindex (v) WITH (m = 4);
SELECT trained, rows FROM kdindex_info('items_cc');
SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_cc'::regclass;
DROP INDEX items_cc;

-- 9. A rebuild of the same table gives the same index (seeded sampling and k-means)
CREATE INDEX a_kd ON items USING kdindex (v) WITH (m = 4, sample = 500);
CREATE INDEX b_kd ON items USING kdindex (v) WITH (m = 4, sample = 500);
SELECT (SELECT train_mse FROM kdindex_info('a_kd')) = (SELECT train_mse FROM kdindex_info('b_kd')) AS same_training;
DROP INDEX a_kd, b_kd;
