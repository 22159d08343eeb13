-- Vectors with components near FLT_MAX (found by sql/fuzz.sql): their
-- distances overflow a float sum but fit in float8, so kdindex computes
-- them in double when the float sum is not finite, and a NaN code distance
-- (an overflowed lookup table) sorts after every number.  Without that, an
-- inner-product walk returned 360 of 1,000 rows.
-- every row comes back, whatever the query's components
CREATE TABLE fb_ip (id int, v real[]);
INSERT INTO fb_ip SELECT i, make_vec(i, 4) FROM generate_series(1, 1000) i;
CREATE INDEX fb_ip_kd ON fb_ip USING kdindex (v float4_ip_ops) WITH (m = 2);
SET enable_seqscan = off;
SET kdindex.max_scan_tuples = 0;
SELECT q, (SELECT count(*) FROM (SELECT id FROM fb_ip ORDER BY v <#> q::real[] LIMIT 100000) s) AS walked
  FROM unnest('{"{3e38,3e38,-3e38,-3e38}","{3e38,3e38,3e38,3e38}","{1e38,1e38,1e38,1e38}"}'::text[]) q;
RESET enable_seqscan;
RESET kdindex.max_scan_tuples;

-- The operators themselves give the float8 values (-1.2e39, 0, 6e38, 0), not
-- the -Infinity, -Infinity, Infinity and NaN of a float sum.
SELECT abs(('{1,1,1,1}'::real[] <#> '{3e38,3e38,3e38,3e38}') / (-4 * 3e38::real::float8) - 1) < 1e-6 AS ip,
       ('{1,1,-1,-1}'::real[] <#> '{3e38,3e38,3e38,3e38}') = 0 AS ip_mixed,
       abs(('{1,1,1,1}'::real[] <-> '{-3e38,-3e38,-3e38,-3e38}') / (2 * 3e38::real::float8) - 1) < 1e-6 AS l2,
       abs('{1,1,1,1}'::real[] <=> '{3e38,3e38,3e38,3e38}') < 1e-6 AS cosine;
DROP TABLE fb_ip;
