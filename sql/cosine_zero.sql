-- Zero vectors have no cosine distance (the operator gives NaN, as
-- pgvector's).  Under a cosine operator class kdindex treats them as it does
-- NULLs, as pgvector's indexes do: the row is stored, the INSERT or CREATE
-- INDEX succeeds, the index leaves it out, so an index scan never returns it
-- and kdindex_verify's heapallindexed does not expect it.
CREATE TABLE zc (id int PRIMARY KEY, v real[]);
INSERT INTO zc SELECT i, CASE WHEN i % 100 = 0 THEN array_fill(0::real, ARRAY[16]) ELSE make_vec(i) END
  FROM generate_series(1, 1000) i;
-- CREATE INDEX succeeds, leaving the 10 zero rows out (4-bit and 8-bit codes)
CREATE INDEX zc_fast ON zc USING kdindex (v float4_cosine_ops) WITH (m = 4, nbits = 4);
SELECT trained, rows FROM kdindex_info('zc_fast');
SELECT kdindex_verify('zc_fast', heapallindexed => true);
DROP INDEX zc_fast;
CREATE INDEX zc_cos ON zc USING kdindex (v float4_cosine_ops) WITH (m = 4);
SELECT trained, rows FROM kdindex_info('zc_cos');
-- INSERT of a zero vector succeeds; the index does not grow
INSERT INTO zc VALUES (1001, array_fill(0::real, ARRAY[16]));
INSERT INTO zc VALUES (1002, make_vec(5));
SELECT rows FROM kdindex_info('zc_cos');
-- a walk of the whole index returns every other row once, no zero row
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM zc ORDER BY v <=> make_vec(3) LIMIT 2000;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows,
	   count(*) FILTER (WHERE id % 100 = 0 OR id = 1001) AS zero_rows
  FROM (SELECT id FROM zc ORDER BY v <=> make_vec(3) LIMIT 2000) s;
-- the nearest rows are those an exact scan finds (the zero rows, NaN, sort last there)
CREATE TEMP TABLE via_index AS SELECT id FROM zc ORDER BY v <=> make_vec(3) LIMIT 10;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT count(*) >= 9 AS recall_ok
  FROM (SELECT id FROM zc ORDER BY v <=> make_vec(3) LIMIT 10) e JOIN via_index USING (id);
SELECT count(*) AS nan_rows FROM zc WHERE (v <=> make_vec(3)) = 'NaN';
RESET enable_indexscan;
SELECT kdindex_verify('zc_cos', heapallindexed => true);
-- under L2 and inner product a zero vector is a row like any other
CREATE INDEX zc_l2 ON zc USING kdindex (v) WITH (m = 4);
CREATE INDEX zc_ip ON zc USING kdindex (v float4_ip_ops) WITH (m = 4);
SELECT rows FROM kdindex_info('zc_l2') UNION ALL SELECT rows FROM kdindex_info('zc_ip');
SELECT kdindex_verify('zc_l2', heapallindexed => true);
-- a table of zero vectors only: an empty (untrained) cosine index, then
-- inserts into it, a zero one (-0 is zero too) left out
CREATE TABLE zc_only (v real[]);
INSERT INTO zc_only VALUES (array_fill(0::real, ARRAY[4])), (array_fill(0::real, ARRAY[4]));
CREATE INDEX zc_only_cos ON zc_only USING kdindex (v float4_cosine_ops);
SELECT trained, rows FROM kdindex_info('zc_only_cos');
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT v FROM zc_only ORDER BY v <=> '{1,0,0,0}' LIMIT 5) s;
INSERT INTO zc_only VALUES ('{0,-0,0,0}'), ('{1,2,0,0}');
SELECT trained, rows FROM kdindex_info('zc_only_cos');
SELECT v FROM zc_only ORDER BY v <=> '{1,0,0,0}' LIMIT 5;
RESET enable_seqscan;
SELECT kdindex_verify('zc_only_cos', heapallindexed => true);
-- a teacher sampled from the table leaves the zero rows out of its queries
-- (they have no cosine distance) and out of every neighbour list
SELECT kdindex_teacher('zc', 'v', 'zc_teacher', k => 5, nqueries => 5000, metric => 'cosine') AS queries;
SELECT count(*) AS zero_rows FROM zc WHERE (v <=> v) = 'NaN'::float8;
SELECT count(*) AS zero_rows_listed
  FROM zc_teacher t, unnest(t.tids) n(tid) JOIN zc ON zc.ctid = n.tid
 WHERE (zc.v <=> zc.v) = 'NaN'::float8;
SELECT kdindex_teacher('zc_only', 'v', 'zc_only_teacher', metric => 'cosine');
DROP TABLE zc, zc_only, zc_teacher, zc_only_teacher;
