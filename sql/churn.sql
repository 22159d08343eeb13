-- Churn: the pages VACUUM frees are reused.  Empty pages leave their chain
-- for the free space map, pages with room are refilled by inserts, so the
-- index does not grow cycle after cycle.
CREATE TABLE churn_src AS SELECT i AS id, make_vec(i, 64) AS v FROM generate_series(1, 10000) i;
CREATE TABLE churn (id int, v real[]) WITH (autovacuum_enabled = off);
INSERT INTO churn SELECT * FROM churn_src;
CREATE INDEX churn_kd ON churn USING kdindex (v) WITH (m = 64);
SELECT pg_relation_size('churn_kd') AS fresh \gset

-- every row reachable through the index
CREATE FUNCTION churn_reachable() RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM set_config('enable_seqscan', 'off', true);
	PERFORM set_config('kdindex.rerank', '0', true);
	PERFORM set_config('kdindex.max_scan_tuples', '0', true);
	SELECT count(*) INTO n FROM (SELECT id FROM churn ORDER BY v <-> make_vec(1, 64)) s;
	RETURN n = (SELECT count(*) FROM churn);
END $$;

-- five times: delete every row, VACUUM, insert them again
DELETE FROM churn;
VACUUM churn;
SELECT rows FROM kdindex_info('churn_kd');
INSERT INTO churn SELECT * FROM churn_src;
DELETE FROM churn;
VACUUM churn;
INSERT INTO churn SELECT * FROM churn_src;
DELETE FROM churn;
VACUUM churn;
INSERT INTO churn SELECT * FROM churn_src;
DELETE FROM churn;
VACUUM churn;
INSERT INTO churn SELECT * FROM churn_src;
DELETE FROM churn;
VACUUM churn;
INSERT INTO churn SELECT * FROM churn_src;
SELECT pg_relation_size('churn_kd') <= :fresh * 1.05 AS within_5pct_of_fresh,
	   churn_reachable() AS all_reachable;

-- five times: update a tenth of the rows (new index entries), VACUUM.  The
-- first cycle needs room for both versions of the rows until its VACUUM (a
-- fresh build packs its pages full); later ones reuse the room it leaves.
UPDATE churn SET v = make_vec(id + 1, 64) WHERE id % 10 = 0;
VACUUM churn;
SELECT pg_relation_size('churn_kd') AS first_update \gset
UPDATE churn SET v = make_vec(id + 2, 64) WHERE id % 10 = 1;
VACUUM churn;
UPDATE churn SET v = make_vec(id + 3, 64) WHERE id % 10 = 2;
VACUUM churn;
UPDATE churn SET v = make_vec(id + 4, 64) WHERE id % 10 = 3;
VACUUM churn;
UPDATE churn SET v = make_vec(id + 5, 64) WHERE id % 10 = 4;
VACUUM churn;
SELECT pg_relation_size('churn_kd') <= :first_update * 1.05 AS no_growth_after_first,
	   pg_relation_size('churn_kd') <= :fresh * 1.15 AS within_15pct_of_fresh,
	   churn_reachable() AS all_reachable;

-- with fillfactor = 90 the build leaves the room the first cycle needs: five
-- update cycles end within 5% of a fresh build with the same fillfactor
CREATE TABLE churn_ff (id int, v real[]) WITH (autovacuum_enabled = off);
INSERT INTO churn_ff SELECT * FROM churn_src;
CREATE INDEX churn_ff_kd ON churn_ff USING kdindex (v) WITH (m = 64, fillfactor = 90);
SELECT pg_relation_size('churn_ff_kd') AS fresh_ff \gset
SELECT :fresh_ff > :fresh AS fillfactor_leaves_room;
UPDATE churn_ff SET v = make_vec(id + 1, 64) WHERE id % 10 = 0;
VACUUM churn_ff;
UPDATE churn_ff SET v = make_vec(id + 2, 64) WHERE id % 10 = 1;
VACUUM churn_ff;
UPDATE churn_ff SET v = make_vec(id + 3, 64) WHERE id % 10 = 2;
VACUUM churn_ff;
UPDATE churn_ff SET v = make_vec(id + 4, 64) WHERE id % 10 = 3;
VACUUM churn_ff;
UPDATE churn_ff SET v = make_vec(id + 5, 64) WHERE id % 10 = 4;
VACUUM churn_ff;
SELECT pg_relation_size('churn_ff_kd') <= :fresh_ff * 1.05 AS within_5pct_of_fresh;
SELECT kdindex_verify('churn_ff_kd', true);
DROP TABLE churn_ff;

-- a shrunken table: empty pages leave the chain, and the room goes to the
-- next chain a retrain or a list needs
DELETE FROM churn WHERE id > 1000;
VACUUM churn;
SELECT rows, churn_reachable() AS all_reachable FROM kdindex_info('churn_kd');
SELECT pages < 20 AS chain_shrank FROM kdindex_lists('churn_kd');
INSERT INTO churn SELECT * FROM churn_src WHERE id > 1000;
SELECT pg_relation_size('churn_kd') <= :first_update * 1.05 AS room_reused,
	   churn_reachable() AS all_reachable;
DROP TABLE churn, churn_src;
DROP FUNCTION churn_reachable();
