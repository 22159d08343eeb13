-- OPQ and AQ beside PQ: the same build, insert and scan paths, their own
-- options.  Uses items from build.sql.
CREATE INDEX items_opq ON items USING kdindex (v) WITH (quantizer = 'opq', m = 4, iterations = 3);
SELECT quantizer, m, nbits, code_bytes, trained FROM kdindex_info('items_opq');
SELECT knn_recall('items', '<->', 0) >= 0.4 AS codes_ok, knn_recall('items', '<->', 100) >= 0.98 AS rerank_ok;
-- the rotation is learned: OPQ reconstructs the sample better than PQ at the same size
CREATE INDEX items_pq ON items USING kdindex (v) WITH (quantizer = 'pq', m = 4);
SELECT (SELECT train_mse FROM kdindex_info('items_opq')) < (SELECT train_mse FROM kdindex_info('items_pq'))
	AS opq_beats_pq;
DROP INDEX items_pq;
-- rows inserted after the build are rotated and encoded the same way
INSERT INTO items SELECT i, make_vec(i) FROM generate_series(5001, 5100) i;
SET enable_seqscan = off;
SELECT id FROM items ORDER BY v <-> make_vec(5050) LIMIT 1;
RESET enable_seqscan;
DROP INDEX items_opq;

-- AQ: m full-dimensional codebooks, so m need not divide the dimension;
-- each code carries its reconstruction's squared norm (4 bytes)
CREATE INDEX items_aq ON items USING kdindex (v) WITH (quantizer = 'aq', m = 3);
SELECT quantizer, m, nbits, code_bytes, trained FROM kdindex_info('items_aq');
SELECT knn_recall('items', '<->', 0) >= 0.4 AS codes_ok, knn_recall('items', '<->', 100) >= 0.98 AS rerank_ok;
CREATE INDEX items_pq ON items USING kdindex (v) WITH (quantizer = 'pq', m = 4);
SELECT (SELECT train_mse FROM kdindex_info('items_aq')) < (SELECT train_mse FROM kdindex_info('items_pq'))
	AS aq3_beats_pq4;
DROP INDEX items_pq;
SET enable_seqscan = off;
INSERT INTO items VALUES (5101, make_vec(77));
SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> make_vec(77) LIMIT 2) s WHERE id IN (77, 5101);
RESET enable_seqscan;
DROP INDEX items_aq;

-- AQ with other metrics and 4-bit codes, and its beam option
CREATE INDEX items_aq_ip ON items USING kdindex (v float4_ip_ops) WITH (quantizer = 'aq', m = 4, beam = 4);
SELECT knn_recall('items', '<#>', 500) >= 0.95 AS ip_rerank_ok;
DROP INDEX items_aq_ip;
CREATE INDEX items_aq_cos ON items USING kdindex (v float4_cosine_ops) WITH (quantizer = 'aq', m = 4, nbits = 4);
SELECT code_bytes FROM kdindex_info('items_aq_cos');
SELECT knn_recall('items', '<=>', 100) >= 0.95 AS cosine_rerank_ok;
DROP INDEX items_aq_cos;
DELETE FROM items WHERE id > 5000;
