-- Without Citus (its catalog absent), kdindex's functions work on plain
-- tables as ever, and kdindex_shards, the per-placement report, says it
-- needs Citus.  On Citus: test/t/013_citus.pl.
CREATE TABLE citus_t (id int PRIMARY KEY, v real[]);
INSERT INTO citus_t SELECT i, ARRAY[i % 7, i % 5, i % 3, i % 2]::real[] FROM generate_series(1, 600) i;
CREATE INDEX citus_kd ON citus_t USING kdindex (v) WITH (m = 2, nbits = 4);
SELECT to_regclass('pg_catalog.pg_dist_partition') IS NULL AS no_citus;
SELECT rows, trained FROM kdindex_info('citus_kd');
SELECT kdindex_teacher('citus_t', 'v', 'citus_teacher', k => 10, nqueries => 20);
SELECT queries, reranked_recall >= 0.9 AS high FROM kdindex_recall('citus_kd', 'citus_teacher', 10);
SELECT * FROM kdindex_shards('citus_kd');
DROP TABLE citus_t, citus_teacher;
