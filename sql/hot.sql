-- HOT chains: the index holds each chain's root TID.  Once VACUUM prunes a
-- root to a redirect, fetching the row for its exact distance finds a later
-- member of the chain; the scan must still hand the executor the root, and a
-- retrain must still store it, or the row is lost.
CREATE TABLE hot (id int, v real[], note text) WITH (fillfactor = 50);
INSERT INTO hot SELECT i, ARRAY(SELECT (hashint4(i * 8 + j)::float8 / 2147483648)::real
                                 FROM generate_series(0, 7) j)
  FROM generate_series(1, 1000) i;
CREATE INDEX hot_kd ON hot USING kdindex (v) WITH (m = 4);
UPDATE hot SET note = 'a' WHERE id <= 20;
UPDATE hot SET note = 'b' WHERE id <= 20;
VACUUM hot;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET kdindex.rerank = 1000;
-- every row, re-ranked
SELECT count(*), count(DISTINCT id)
  FROM (SELECT id FROM hot ORDER BY v <-> '{0,0,0,0,0,0,0,0}' LIMIT 100000) s;
-- the updated rows by their own vectors
SELECT count(*) AS found_updated
  FROM hot h WHERE id <= 20
   AND id IN (SELECT id FROM hot ORDER BY v <-> h.v LIMIT 1);
-- a retrain re-encodes every row through the same fetch
SELECT kdindex_teacher('hot', 'v', 'hot_teacher', k => 10, nqueries => 50) AS queries;
SELECT train_queries > 0 AS trained FROM kdindex_train('hot_kd', 'hot_teacher', epochs => 1);
SELECT kdindex_verify('hot_kd', true);
SELECT count(*), count(DISTINCT id)
  FROM (SELECT id FROM hot ORDER BY v <-> '{0,0,0,0,0,0,0,0}' LIMIT 100000) s;
RESET ALL;
DROP TABLE hot, hot_teacher;
