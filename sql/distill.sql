-- kdindex_teacher and kdindex_recall: a high-precision teacher's top-k per
-- query, and an index measured against it.
CREATE TABLE pts (id int PRIMARY KEY, v real[]);
INSERT INTO pts VALUES (1, '{0,0}'), (2, '{1,0}'), (3, '{0,2}'), (4, '{3,0}'), (5, '{0,4}');
CREATE TABLE pts_q (id int, v real[]);
INSERT INTO pts_q VALUES (10, '{0.9,0}'), (20, '{0,3.1}');

-- exact teacher, external queries: neighbours in order, with TIDs, keys, distances
SELECT kdindex_teacher('pts', 'v', 'pts_t', queries => 'pts_q', k => 3);
SELECT query_id, query, source, ids, tids = (SELECT array_agg(ctid ORDER BY array_position(t.ids, id::bigint))
											   FROM pts WHERE id = ANY (t.ids)) AS tids_match,
	   (SELECT array_agg(round(d::numeric, 4)) FROM unnest(distances) d) AS distances
  FROM pts_t t ORDER BY query_id;
-- inner product and cosine
SELECT kdindex_teacher('pts', 'v', 'pts_ip', queries => 'pts_q', k => 2, metric => 'ip');
SELECT query_id, ids, distances FROM pts_ip ORDER BY query_id;
SELECT kdindex_teacher('pts', 'v', 'pts_cos', queries => 'pts_q', k => 5, metric => 'cosine');
SELECT query_id, ids[1:2] FROM pts_cos ORDER BY query_id;
-- sampled queries leave their own row out of their list
SELECT kdindex_teacher('pts', 'v', 'pts_self', k => 4, nqueries => 3);
SELECT count(*), bool_and(NOT (source = ANY (tids))) AS own_row_left_out,
	   bool_and(array_length(tids, 1) = 4) AS full_lists FROM pts_self;
-- a query table and table_queries of the table's rows after it: the query
-- table's lists as without them, then the same rows a sample of as many takes,
-- each leaving its own row out
SELECT kdindex_teacher('pts', 'v', 'pts_mixed', queries => 'pts_q', k => 3, table_queries => 3);
SELECT query_id, source IS NULL AS from_query_table, array_length(tids, 1) AS k,
	   source IS NULL OR NOT (source = ANY (tids)) AS own_row_left_out
  FROM pts_mixed ORDER BY query_id;
SELECT (SELECT array_agg(ids ORDER BY query_id) FROM pts_mixed WHERE query_id <= 2) =
	   (SELECT array_agg(ids ORDER BY query_id) FROM pts_t) AS query_table_lists_unchanged,
	   (SELECT array_agg(source ORDER BY query_id) FROM pts_mixed WHERE query_id > 2) =
	   (SELECT array_agg(source ORDER BY query_id) FROM pts_self) AS same_rows_as_the_sample;

-- on items: the exact teacher and the index teacher agree, and an index is
-- measured against it
CREATE INDEX items_kd ON items USING kdindex (v) WITH (m = 8);
SELECT kdindex_teacher('items', 'v', 'items_exact', k => 10, nqueries => 40);
SET kdindex.rerank = 100000;
SELECT kdindex_teacher('items', 'v', 'items_by_index', k => 10, nqueries => 40, teacher => 'index');
RESET kdindex.rerank;
SELECT count(*) FILTER (WHERE e.ids = i.ids) >= 38 AS teachers_agree
  FROM items_exact e JOIN items_by_index i USING (query_id);
SELECT queries, codes_recall >= 0.5 AS codes_ok, reranked_recall >= 0.95 AS rerank_ok
  FROM kdindex_recall('items_kd', 'items_exact');
SET kdindex.rerank = 0;
SELECT codes_recall = reranked_recall AS rerank_zero_is_codes FROM kdindex_recall('items_kd', 'items_exact', k => 5);
RESET kdindex.rerank;

-- bad input
SELECT kdindex_teacher('pts', 'w', 'x');
SELECT kdindex_teacher('pts', 'id', 'x');
SELECT kdindex_teacher('pts', 'v', 'x', k => 0);
SELECT kdindex_teacher('pts', 'v', 'x', nqueries => 0);
SELECT kdindex_teacher('pts', 'v', 'x', queries => 'pts_q', table_queries => -1);
SELECT kdindex_teacher('pts', 'v', 'x', table_queries => 2);
SELECT kdindex_teacher('pts', 'v', 'x', queries => 'pts_q', table_queries => NULL);
SELECT kdindex_teacher('pts', 'v', 'x', teacher => 'oracle');
SELECT kdindex_teacher('pts', 'v', 'x', metric => 'manhattan');
SELECT kdindex_teacher('pts', 'v', 'pts_t');
SELECT kdindex_teacher('pts', 'v', 'x', queries => 'items');
CREATE TABLE bad_q (id int, v real[]);
INSERT INTO bad_q VALUES (1, '{1,2,3}');
SELECT kdindex_teacher('pts', 'v', 'x', queries => 'bad_q');
SELECT kdindex_teacher('pts', 'v', 'x', queries => 'bad_q', metric => 'cosine');
TRUNCATE bad_q;
INSERT INTO bad_q VALUES (1, '{0,0}');
SELECT kdindex_teacher('pts', 'v', 'x', queries => 'bad_q', metric => 'cosine');
TRUNCATE bad_q;
SELECT kdindex_teacher('pts', 'v', 'x', queries => 'bad_q');
SELECT * FROM kdindex_recall('pts', 'pts_t');
SELECT * FROM kdindex_recall('items_kd', 'items_exact', k => 0);
DROP INDEX items_kd;
DROP TABLE pts, pts_q, pts_t, pts_ip, pts_cos, pts_self, pts_mixed, items_exact, items_by_index, bad_q;
