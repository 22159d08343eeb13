-- Limits of the quantizers: wide OPQ, memory refused up front with the
-- setting to raise, cancellation, and degenerate data.

-- Memory figures may differ between LAPACK versions (workspace queries):
-- show the message with the number blanked
CREATE FUNCTION build_refused(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'built';
EXCEPTION WHEN program_limit_exceeded THEN
	RETURN regexp_replace(SQLERRM, '\d+ MB', 'N MB', 'g');
END
$$;

-- 1. OPQ at 3,000 dimensions: LAPACK's workspace sizes, returned as floats,
-- are rounded up (ssyevd failed with info -8 from 2,896 dimensions on).  A
-- few rows, nbits = 4 (16 codewords) and one alternation keep it quick; the
-- default maintenance_work_mem is too small for the dim x dim matrices
CREATE TABLE wide3k (id int, v real[]);
SELECT setseed(0.3);
INSERT INTO wide3k SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 3000 + i * 0))
  FROM generate_series(1, 16) i;
SELECT build_refused($$CREATE INDEX wide3k_kd ON wide3k USING kdindex (v)
  WITH (quantizer = 'opq', m = 2, nbits = 4, iterations = 1)$$);
SET maintenance_work_mem = '512MB';
CREATE INDEX wide3k_kd ON wide3k USING kdindex (v) WITH (quantizer = 'opq', m = 2, nbits = 4, iterations = 1);
SELECT dim, m, trained, rows FROM kdindex_info('wide3k_kd');
SET enable_seqscan = off;
SELECT id FROM wide3k ORDER BY v <-> (SELECT v FROM wide3k WHERE id = 7) LIMIT 1;
RESET enable_seqscan;
DROP INDEX wide3k_kd;

-- A build stuck in OPQ's linear algebra is cancelled: products run in blocks
-- with interrupt checks between them (a single eigendecomposition or SVD is
-- the longest stretch that cannot be interrupted)
SET statement_timeout = '300ms';
CREATE INDEX wide3k_kd ON wide3k USING kdindex (v) WITH (quantizer = 'opq', m = 2, nbits = 4, iterations = 1);
RESET statement_timeout;
RESET maintenance_work_mem;
DROP TABLE wide3k;

-- 2. AQ's encoder builds a table of codeword cross products, m (m - 1) / 2
-- x 256^2 floats: refused before it is allocated (m = 2000 once asked for
-- 1 TB), with what to raise
CREATE TABLE narrow (id int, v real[]);
INSERT INTO narrow SELECT i, make_vec(i, 8) FROM generate_series(1, 300) i;
CREATE INDEX narrow_kd ON narrow USING kdindex (v) WITH (quantizer = 'aq', m = 2000);
-- m = 32: 124 MB of cross products
CREATE INDEX narrow_kd ON narrow USING kdindex (v) WITH (quantizer = 'aq', m = 32);
DROP TABLE narrow;

-- Parameters an index cannot hold (the blob is one allocation of at most
-- 1 GB): AQ's codebooks at m = 2000 and 784 dimensions take 1,534 MB, refused
-- before they are allocated
CREATE TABLE wide784 (id int, v real[]);
INSERT INTO wide784 SELECT i, make_vec(i, 784) FROM generate_series(1, 256) i;
CREATE INDEX wide784_kd ON wide784 USING kdindex (v) WITH (quantizer = 'aq', m = 2000);
DROP TABLE wide784;

-- IVF: the coarse k-means's sums (lists x dim doubles) count too
CREATE TABLE lists1k (id int, v real[]);
INSERT INTO lists1k SELECT i, make_vec(i, 1000) FROM generate_series(1, 300) i;
SET maintenance_work_mem = '3MB';
CREATE INDEX lists1k_kd ON lists1k USING kdindex (v) WITH (nbits = 4, m = 8, lists = 300);
RESET maintenance_work_mem;
DROP TABLE lists1k;

-- 3. Degenerate data builds, and scans find rows: all rows equal, all zero,
-- one dimension, a single distinct row among copies; every quantizer, flat
-- and with (balanced) lists
CREATE TABLE degen (name text, id int, v real[]);
INSERT INTO degen SELECT 'equal', i, array_fill(0.25::real, ARRAY[8]) FROM generate_series(1, 300) i;
INSERT INTO degen SELECT 'zero', i, array_fill(0::real, ARRAY[8]) FROM generate_series(1, 300) i;
INSERT INTO degen SELECT 'onedim', i, ARRAY[(i % 7)::real] FROM generate_series(1, 300) i;
INSERT INTO degen SELECT 'onedim_equal', i, ARRAY[3::real] FROM generate_series(1, 300) i;
INSERT INTO degen SELECT 'one_distinct', i, CASE WHEN i = 150 THEN array_fill(1::real, ARRAY[8])
  ELSE array_fill(0::real, ARRAY[8]) END FROM generate_series(1, 300) i;

CREATE FUNCTION degen_builds(rows text, opts text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	dim int;
	found int;
	mse float8;
BEGIN
	EXECUTE format('CREATE TABLE degen_t AS SELECT id, v FROM degen WHERE name = %L', rows);
	EXECUTE format('CREATE INDEX degen_kd ON degen_t USING kdindex (v) WITH (%s)', opts);
	SELECT array_length(v, 1) INTO dim FROM degen_t LIMIT 1;
	PERFORM set_config('enable_seqscan', 'off', true);
	EXECUTE format('SELECT count(*) FROM (SELECT id FROM degen_t ORDER BY v <-> array_fill(0.5::real, ARRAY[%s]) LIMIT 5) s',
				   dim) INTO found;
	PERFORM set_config('enable_seqscan', 'on', true);
	SELECT train_mse INTO mse FROM kdindex_info('degen_kd');
	DROP TABLE degen_t;
	RETURN format('%s rows found, mse %s', found,
				  CASE WHEN mse = 'NaN' OR mse = 'Infinity' THEN 'not finite' ELSE 'finite' END);
END
$$;

SET client_min_messages = warning;
SELECT data, opts, degen_builds(data, opts)
  FROM unnest(ARRAY['equal', 'zero', 'onedim', 'onedim_equal', 'one_distinct']) data,
       unnest(ARRAY['quantizer = pq', 'quantizer = opq', 'quantizer = aq, m = 3',
                    'quantizer = pq, lists = 20, balance = 1', 'quantizer = opq, nbits = 4, lists = 4',
                    'quantizer = aq, m = 2, nbits = 4, lists = 4, balance = 0.5']) opts
 ORDER BY 1, 2;
RESET client_min_messages;

-- Values whose squares overflow real would fill the parameters with
-- infinities and NaN: such rows are left out of training (still indexed,
-- and found: the exact re-rank orders them); only a sample of nothing else
-- is refused
CREATE TABLE huge (id int, v real[]);
INSERT INTO huge SELECT i, ARRAY[1e20 * (i % 3), -3e38, 1e19, 0]::real[] FROM generate_series(1, 300) i;
CREATE INDEX huge_kd ON huge USING kdindex (v) WITH (quantizer = 'opq');
CREATE INDEX huge_kd ON huge USING kdindex (v) WITH (quantizer = 'pq', lists = 4);
TRUNCATE huge;
INSERT INTO huge SELECT i, CASE WHEN i % 100 = 0 THEN ARRAY[3e38, -3e38, 1e19, 0]::real[]
                                ELSE ARRAY[i % 7, i % 11, i % 13, i % 17]::real[] END
  FROM generate_series(1, 1000) i;
CREATE INDEX huge_opq ON huge USING kdindex (v) WITH (quantizer = 'opq', m = 2);
CREATE INDEX huge_ivf ON huge USING kdindex (v) WITH (quantizer = 'pq', m = 2, lists = 4);
SET enable_seqscan = off;
SELECT trained FROM kdindex_info('huge_ivf');
SELECT count(*) AS walked, count(*) FILTER (WHERE id % 100 = 0) AS huge_rows_walked
  FROM (SELECT id FROM huge ORDER BY v <-> '{3e38,-3e38,1e19,0}' LIMIT 2000) s;
SELECT id FROM huge ORDER BY v <-> '{3e38,-3e38,1e19,0}' LIMIT 1;
DROP INDEX huge_ivf;
SELECT trained FROM kdindex_info('huge_opq');
SELECT count(*) AS walked FROM (SELECT id FROM huge ORDER BY v <-> '{1,2,3,4}' LIMIT 2000) s;
SELECT kdindex_verify('huge_opq', true);
RESET enable_seqscan;
DROP TABLE huge;
DROP TABLE degen;
DROP FUNCTION degen_builds(text, text);
DROP FUNCTION build_refused(text);
