-- Self-training of an index built on an empty table: options are checked as
-- soon as they can be, a failed training never fails the insert that started
-- it, it runs as the table's owner, and aborted inserts do not count.

-- 1. Combinations that can never train are refused up front
CREATE TABLE st (id int, v real[]);
CREATE INDEX st_bad ON st USING kdindex (v) WITH (sample = 100);
CREATE INDEX st_bad ON st USING kdindex (v) WITH (nbits = 4, sample = 15);
CREATE INDEX st_bad ON st USING kdindex (v) WITH (nbits = 4, lists = 100, sample = 50);
CREATE INDEX st_bad ON st USING kdindex (v) WITH (nbits = 4, m = 600);
CREATE INDEX st_bad ON st USING kdindex (v) WITH (quantizer = 'aq', m = 9000);
CREATE INDEX st_kd ON st USING kdindex (v) WITH (nbits = 4, sample = 16);
ALTER INDEX st_kd SET (sample = 10);
ALTER INDEX st_kd SET (lists = 20);
ALTER INDEX st_kd RESET (lists, sample);
DROP INDEX st_kd;

-- 2. m that cannot divide the dimension: the first row fixes the dimension
-- and is refused, instead of every insert failing once the index trains
CREATE INDEX st_kd ON st USING kdindex (v) WITH (m = 7);
INSERT INTO st VALUES (1, '{1,2,3,4}');
SELECT count(*) FROM st;
ALTER INDEX st_kd SET (m = 2);
REINDEX INDEX st_kd;
INSERT INTO st VALUES (1, '{1,2,3,4}');
SELECT dim, m FROM kdindex_info('st_kd');
DROP INDEX st_kd;
TRUNCATE st;

-- 3. A self-training that fails is a WARNING: the insert goes in, the index
-- stays untrained (and exact) and does not try again before it has twice
-- the rows.  Here the index expression fails on one row, but only once the
-- rows are read back for training.
CREATE TABLE st_ctl (fail bool);
INSERT INTO st_ctl VALUES (false);
CREATE FUNCTION st_vec(v real[]) RETURNS real[] LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF v[1] = 999 AND (SELECT fail FROM public.st_ctl) THEN
		RAISE EXCEPTION 'st_vec refuses row 999';
	END IF;
	RETURN v;
END $$;
CREATE INDEX st_kd ON st USING kdindex (st_vec(v)) WITH (nbits = 4, m = 2);
INSERT INTO st VALUES (0, '{999,0,0,0}');
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(1, 622) i;
UPDATE st_ctl SET fail = true;
INSERT INTO st VALUES (623, '{1,2,3,4}');
SELECT count(*) AS table_rows, (SELECT trained FROM kdindex_info('st_kd')),
	   (SELECT rows FROM kdindex_info('st_kd')) AS index_rows FROM st;
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(624, 700) i;
UPDATE st_ctl SET fail = false;
SET enable_seqscan = off;
SELECT id FROM st ORDER BY st_vec(v) <-> '{1,2,3,4}' LIMIT 1;
RESET enable_seqscan;
REINDEX INDEX st_kd;
SELECT trained, rows FROM kdindex_info('st_kd');
DROP TABLE st;

-- 4. Self-training runs as the table's owner, as REINDEX does: the index
-- expression sees the owner, not the role whose insert started it
CREATE ROLE regress_kd_owner;
CREATE ROLE regress_kd_writer;
CREATE FUNCTION st_who(v real[]) RETURNS real[] LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	IF v[1] = 777 THEN
		RAISE NOTICE 'st_who evaluated as %', current_user;
	END IF;
	RETURN v;
END $$;
CREATE TABLE st (id int, v real[]);
CREATE INDEX st_kd ON st USING kdindex (st_who(v)) WITH (nbits = 4, m = 2);
ALTER TABLE st OWNER TO regress_kd_owner;
GRANT SELECT, INSERT ON st TO regress_kd_writer;
SET ROLE regress_kd_writer;
INSERT INTO st VALUES (0, '{777,0,0,0}');
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(1, 623) i;
RESET ROLE;
SELECT trained FROM kdindex_info('st_kd');
DROP TABLE st;
DROP ROLE regress_kd_owner, regress_kd_writer;

-- 5. Rolled-back rows do not count: the untrained-row counter is a hint, and
-- the index recounts its live rows before it trains
CREATE TABLE st (id int, v real[]);
CREATE INDEX st_kd ON st USING kdindex (v) WITH (nbits = 4, m = 2);
BEGIN;
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(1, 600) i;
ROLLBACK;
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(1, 100) i;
SELECT trained FROM kdindex_info('st_kd');
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(101, 624) i;
SELECT trained, train_rows FROM kdindex_info('st_kd');
DROP TABLE st;

-- 6. Too small a maintenance_work_mem to sample a row per codeword says so
CREATE TABLE st (id int, v real[]);
INSERT INTO st SELECT i, array_fill((i % 10)::real, ARRAY[2048]) FROM generate_series(1, 300) i;
SET maintenance_work_mem = '1MB';
CREATE INDEX st_kd ON st USING kdindex (v);
RESET maintenance_work_mem;
DROP TABLE st, st_ctl;
DROP FUNCTION st_vec(real[]), st_who(real[]);

-- 7. Nothing for the client where it has nothing to do (pgbench's tests
-- want an empty stderr): a build on too few rows, a TRUNCATE, a new
-- partition, and the INSERT that trains the index print nothing at the
-- default client_min_messages.  (6 is the one NOTICE: the user must act.)
SHOW client_min_messages;
CREATE TABLE st (id int, v real[]) PARTITION BY RANGE (id);
CREATE TABLE st_a PARTITION OF st FOR VALUES FROM (0) TO (1000);
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(1, 10) i;
CREATE INDEX st_kd ON st USING kdindex (v) WITH (nbits = 4, m = 2);
CREATE TABLE st_b PARTITION OF st FOR VALUES FROM (1000) TO (2000);
TRUNCATE st;
INSERT INTO st SELECT i, ARRAY[i % 7, i % 11, i % 13, i % 17] FROM generate_series(1, 623) i;
INSERT INTO st VALUES (623, '{1,2,3,4}');
SELECT c.relname, i.trained FROM pg_class c, kdindex_info(c.oid::regclass) i
 WHERE c.relname LIKE 'st\_a\_%' ORDER BY 1;
DROP TABLE st;
