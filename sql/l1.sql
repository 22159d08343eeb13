-- L1 (taxicab) distance: the <+> operator on real[] with pgvector's
-- semantics, and float4_l1_ops indexes.  PQ's lookup tables sum |q_j - c_j|
-- per subspace, exactly the L1 distance of the code; OPQ and AQ refuse L1.

-- the operator against hand-computed values
SELECT '{1,2,3}'::real[] <+> '{4,0,3.5}' AS l1_5_5,
       '{-1.5}'::real[] <+> '{2}' AS l1_3_5,
       '{0,0}'::real[] <+> '{0,0}' AS zero,
       '{1,-1}'::real[] <+> '{-1,1}' = '{-1,1}'::real[] <+> '{1,-1}' AS symmetric;
-- components near FLT_MAX: the float sum overflows, the distance does not
SELECT '{3e38,-3e38}'::real[] <+> '{-3e38,3e38}' AS huge;
-- pgvector's errors
SELECT '{1,2}'::real[] <+> '{1,2,3}';
SELECT '{1,NaN}'::real[] <+> '{1,2}';
SELECT '{1,Infinity}'::real[] <+> '{1,2}';
SELECT '{}'::real[] <+> '{}';
SELECT '{{1,2},{3,4}}'::real[] <+> '{{1,2},{3,4}}';
SELECT '{1,NULL}'::real[] <+> '{1,2}';
-- the operator's catalog entry: its own commutator
SELECT oprcom::regoperator AS commutator FROM pg_operator
 WHERE oprname = '<+>' AND oprleft = 'real[]'::regtype;

-- Rows: cluster centres (make_vec) plus uniform noise from hashint4, values
-- rounded so every machine computes the same ones
CREATE TABLE l1_items (id int PRIMARY KEY, v real[]);
INSERT INTO l1_items
	SELECT i, array_agg(round((v + (hashint4((i * 16 + j)::int) % 1000) / 1000.0)::numeric, 3)::real ORDER BY j)
	  FROM generate_series(1, 4000) i, unnest(make_vec(i)) WITH ORDINALITY AS u(v, j)
	 GROUP BY i;
INSERT INTO l1_items VALUES (4001, NULL);

SET enable_seqscan = off;
-- PQ, flat: the code distance is the L1 distance of the decoded row
CREATE INDEX l1_pq ON l1_items USING kdindex (v float4_l1_ops) WITH (m = 8);
SELECT metric, quantizer, rows FROM kdindex_info('l1_pq');
-- (codebooks trained by k-means under L2: codes-only recall 0.82 here, as an
-- L2 index's on the same rows under <-> gives 0.81)
SELECT knn_recall('l1_items', '<+>', 0) >= 0.7 AS pq_codes_ok,
       knn_recall('l1_items', '<+>', 100) >= 0.97 AS pq_rerank_ok;
-- with kdindex.rerank the returned distances are exact
SELECT bool_and(d = (SELECT v <+> make_vec(7) FROM l1_items WHERE id = s.id)) AS exact_distances
  FROM (SELECT id, v <+> make_vec(7) AS d FROM l1_items ORDER BY v <+> make_vec(7) LIMIT 20) s;
-- a codes-only walk returns every row once, in code-distance order
SET kdindex.rerank = 0;
SELECT count(*) = 4000 AS every_row, count(*) = count(DISTINCT id) AS once
  FROM (SELECT id FROM l1_items ORDER BY v <+> make_vec(3) LIMIT 100000) s;
RESET kdindex.rerank;
DROP INDEX l1_pq;

-- IVF lists: rows coded as residuals from their list's centroid, tables
-- built from q - centroid; lists probed by L1 distance to their centroid
CREATE INDEX l1_ivf ON l1_items USING kdindex (v float4_l1_ops) WITH (m = 8, lists = 8);
SET kdindex.probes = 2;
SELECT knn_recall('l1_items', '<+>', 0) >= 0.8 AS ivf_codes_ok,
       knn_recall('l1_items', '<+>', 100) >= 0.95 AS ivf_rerank_ok;
SET kdindex.rerank = 0;
SELECT count(*) = 4000 AS every_row, count(*) = count(DISTINCT id) AS once
  FROM (SELECT id FROM l1_items ORDER BY v <+> make_vec(3) LIMIT 100000) s;
RESET kdindex.rerank;
SELECT count(*) = 4000 AS every_row_reranked, count(*) = count(DISTINCT id) AS once
  FROM (SELECT id FROM l1_items ORDER BY v <+> make_vec(3) LIMIT 100000) s;
RESET kdindex.probes;
DROP INDEX l1_ivf;

-- 4-bit fast scan: any lookup table rounds to 8 bits
CREATE INDEX l1_fs ON l1_items USING kdindex (v float4_l1_ops) WITH (m = 16, nbits = 4);
SELECT knn_recall('l1_items', '<+>', 0) >= 0.6 AS fs_codes_ok,
       knn_recall('l1_items', '<+>', 100) >= 0.95 AS fs_rerank_ok;
SET kdindex.rerank = 0;
SELECT count(*) = 4000 AS every_row, count(*) = count(DISTINCT id) AS once
  FROM (SELECT id FROM l1_items ORDER BY v <+> make_vec(3) LIMIT 100000) s;
RESET kdindex.rerank;
-- inserts after the build are scored under L1 too
INSERT INTO l1_items VALUES (5000, make_vec(12345));
SELECT id FROM l1_items ORDER BY v <+> make_vec(12345) LIMIT 1;
DROP INDEX l1_fs;
RESET enable_seqscan;

-- refused: OPQ's rotation does not keep L1 distances, AQ's codewords overlap
-- in every coordinate, distillation is written for the other metrics
CREATE INDEX ON l1_items USING kdindex (v float4_l1_ops) WITH (quantizer = 'opq', m = 8);
CREATE INDEX ON l1_items USING kdindex (v float4_l1_ops) WITH (quantizer = 'aq', m = 4);
CREATE INDEX ON l1_items USING kdindex (v float4_l1_ops) WITH (m = 8, distill = on);
-- an L1 teacher (exact: every row scored by its L1 distance; index: one
-- ORDER BY <+> per query, here a sort) measures the index; training from it
-- is refused
SELECT kdindex_teacher('l1_items', 'v', 'l1_teacher', nqueries => 50, k => 10, metric => 'l1') AS teacher_queries;
SELECT kdindex_teacher('l1_items', 'v', 'l1_teacher_seq', nqueries => 50, k => 10, metric => 'l1',
					   teacher => 'index') AS teacher_queries;
CREATE INDEX l1_small ON l1_items USING kdindex (v float4_l1_ops) WITH (m = 8);
SELECT count(*) AS same_lists FROM l1_teacher t JOIN l1_teacher_seq s USING (query_id)
 WHERE t.ids = s.ids AND t.source = s.source;
-- the teacher's distances are the operator's
SELECT bool_and(t.distances[1] = (SELECT t.query <+> v FROM l1_items WHERE id = t.ids[1])) AS operator_distances
  FROM l1_teacher t;
SELECT queries, codes_recall >= 0.5 AS codes_ok, reranked_recall >= 0.95 AS reranked_ok
  FROM kdindex_recall('l1_small', 'l1_teacher', k => 10);
SELECT * FROM kdindex_train('l1_small', 'l1_teacher', epochs => 1);
SELECT kdindex_verify('l1_small', heapallindexed => true);
-- options changed later are refused when the index is rebuilt
ALTER INDEX l1_small SET (quantizer = 'aq');
REINDEX INDEX l1_small;
ALTER INDEX l1_small SET (quantizer = 'pq', distill = on);
REINDEX INDEX l1_small;
ALTER INDEX l1_small RESET (quantizer, distill);
REINDEX INDEX l1_small;
SELECT metric, quantizer, rows FROM kdindex_info('l1_small');
DROP TABLE l1_teacher, l1_teacher_seq;
DROP TABLE l1_items;
