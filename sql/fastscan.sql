-- The 4-bit fast scan: PQ and OPQ codes at nbits = 4 in blocks of 32 rows,
-- scored with 8-bit tables by the AVX2 kernel or the scalar one, which must
-- agree exactly.  Uses items and queries from build.sql.
SELECT kdindex_fastscan_kernel() IN ('avx2', 'scalar') AS kernel_known;
SELECT kdindex_fastscan_check() AS differing_sums,
       kdindex_fastscan_check(200, 1) AS differing_m1,
       kdindex_fastscan_check(200, 7) AS differing_m7,
       kdindex_fastscan_check(50, 96) AS differing_m96;
SELECT kdindex_fastscan_check(0, 16);

SET enable_seqscan = off;
CREATE INDEX items_fs ON items USING kdindex (v) WITH (m = 16, nbits = 4);
SELECT m, nbits, code_bytes, rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows
  FROM kdindex_info('items_fs');
-- 16 codewords per dimension are coarse for these rows (the float tables of
-- the row layout give 0.22 codes-only recall, the rounded ones 0.215); the
-- re-rank recovers the neighbours
SELECT knn_recall('items', '<->', 0) >= 0.15 AS codes_ok, knn_recall('items', '<->', 100) >= 0.95 AS rerank_ok;
-- a codes-only walk returns every row once
SET kdindex.rerank = 0;
SELECT count(*) = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS every_row,
       count(*) = count(DISTINCT id) AS once
  FROM (SELECT id FROM items ORDER BY v <-> make_vec(3) LIMIT 100000) s;
RESET kdindex.rerank;

-- inserts fill the last block; vacuum compacts blocks; nothing is lost
INSERT INTO items SELECT i, make_vec(i) FROM generate_series(300001, 300077) i;
SELECT id FROM items ORDER BY v <-> make_vec(300033) LIMIT 1;
DELETE FROM items WHERE id > 300000 AND id % 2 = 0;
DELETE FROM items WHERE id % 97 = 0 AND id < 300000;
VACUUM items;
SELECT rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows FROM kdindex_info('items_fs');
SET kdindex.rerank = 0;
SELECT count(*) = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS every_row, count(*) = count(DISTINCT id) AS once,
       bool_and(id <= 300000 OR id % 2 = 1) AS no_deleted
  FROM (SELECT id FROM items ORDER BY v <-> make_vec(5) LIMIT 100000) s;
RESET kdindex.rerank;
SELECT id FROM items ORDER BY v <-> make_vec(300033) LIMIT 1;
DELETE FROM items WHERE id > 300000;
VACUUM items;
DROP INDEX items_fs;

-- OPQ, IVF lists, an odd m (one padding row of codes per block)
CREATE INDEX items_fs_opq ON items USING kdindex (v) WITH (quantizer = 'opq', m = 8, nbits = 4, lists = 4);
SET kdindex.probes = 4;
SELECT knn_recall('items', '<->', 100) >= 0.95 AS opq_ivf_rerank_ok;
RESET kdindex.probes;
DROP INDEX items_fs_opq;
CREATE INDEX items_fs_m1 ON items USING kdindex (v) WITH (m = 1, nbits = 4);
SELECT code_bytes FROM kdindex_info('items_fs_m1');
-- one 4-bit code per row: 16 distinct codes, so most rows tie; re-ranking
-- them all must find the exact answers (ties must not drop rows)
SELECT knn_recall('items', '<->', 4000) AS m1_rerank_all;
DROP INDEX items_fs_m1;

-- distillation reads and rewrites block pages too
CREATE INDEX items_fs ON items USING kdindex (v) WITH (m = 8, nbits = 4);
SELECT kdindex_teacher('items', 'v', 'fs_teacher', nqueries => 200, k => 20) AS teacher_queries;
SELECT epochs, recall_after >= 0 AS measured FROM kdindex_train('items_fs', 'fs_teacher', epochs => 1);
SELECT rows = (SELECT count(*) FROM items WHERE v IS NOT NULL) AS all_rows, generation FROM kdindex_info('items_fs');
SELECT knn_recall('items', '<->', 400) >= 0.95 AS rerank_ok;
DROP TABLE fs_teacher;
DROP INDEX items_fs;
RESET enable_seqscan;
