-- VACUUM: dead tuples leave the index, freed room is reused, nothing live is lost.
CREATE TABLE vac (id int PRIMARY KEY, v real[]);
ALTER TABLE vac SET (autovacuum_enabled = off);
INSERT INTO vac SELECT i, make_vec(i) FROM generate_series(1, 3000) i;
CREATE INDEX vac_kd ON vac USING kdindex (v) WITH (m = 4);
SELECT rows FROM kdindex_info('vac_kd');
SELECT pg_relation_size('vac_kd') / 8192 AS pages_before \gset

-- delete two thirds, vacuum: the index holds the rest, in as many pages as before
DELETE FROM vac WHERE id % 3 <> 0;
VACUUM vac;
SELECT rows FROM kdindex_info('vac_kd');
SELECT pg_relation_size('vac_kd') / 8192 = :pages_before AS same_pages;
SET enable_seqscan = off;
SET kdindex.rerank = 0;
SELECT count(*), count(*) FILTER (WHERE id % 3 <> 0) AS dead_returned
  FROM (SELECT id FROM vac ORDER BY v <-> make_vec(1) LIMIT 100000) s;

-- new rows fill the freed room before the index grows
INSERT INTO vac SELECT i, make_vec(i) FROM generate_series(3001, 4500) i;
SELECT rows FROM kdindex_info('vac_kd');
SELECT pg_relation_size('vac_kd') / 8192 = :pages_before AS still_same_pages;
SELECT count(*), count(DISTINCT id) FROM (SELECT id FROM vac ORDER BY v <-> make_vec(1) LIMIT 100000) s;
SET kdindex.rerank = 100;
SELECT id FROM vac ORDER BY v <-> make_vec(4000) LIMIT 1;

-- updates: the new version is found, the old one is not
UPDATE vac SET v = make_vec(1, 16) WHERE id = 3003;
SELECT id FROM vac ORDER BY v <-> make_vec(1) LIMIT 1;
VACUUM vac;
SELECT rows FROM kdindex_info('vac_kd');

-- a VACUUM with nothing to delete only counts
VACUUM vac;
SELECT rows FROM kdindex_info('vac_kd');

-- everything deleted: the index answers with nothing, then takes rows again
DELETE FROM vac;
VACUUM vac;
SELECT rows FROM kdindex_info('vac_kd');
SELECT count(*) FROM (SELECT id FROM vac ORDER BY v <-> make_vec(1) LIMIT 10) s;
INSERT INTO vac VALUES (1, make_vec(1)), (2, make_vec(2));
SELECT id FROM vac ORDER BY v <-> make_vec(2) LIMIT 2;
RESET enable_seqscan;
RESET kdindex.rerank;

-- VACUUM FULL and TRUNCATE rebuild it
VACUUM FULL vac;
SELECT rows FROM kdindex_info('vac_kd');
TRUNCATE vac;
SELECT rows FROM kdindex_info('vac_kd');
DROP TABLE vac;
