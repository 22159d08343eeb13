-- Every bad input ends in an ERROR with its SQLSTATE, never a crash or a
-- half-built index.  try() shows the SQLSTATE next to the message.
CREATE FUNCTION try(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- operators
SELECT try($$SELECT '{1,2}'::real[] <-> '{1,2,3}'$$);
SELECT try($$SELECT '{}'::real[] <-> '{}'$$);
SELECT try($$SELECT '{{1,2},{3,4}}'::real[] <-> '{1,2}'$$);
SELECT try($$SELECT '{1,NULL}'::real[] <-> '{1,2}'$$);
SELECT try($$SELECT '{NaN,1}'::real[] <#> '{1,2}'$$);
SELECT try($$SELECT '{Infinity,1}'::real[] <=> '{1,2}'$$);
SELECT try($$SELECT '{1,-Infinity}'::real[] <-> '{1,2}'$$);
-- the plain error, as a user sees it
SELECT '{1,2}'::real[] <-> '{1,2,3}';

CREATE TABLE bad (id int, v real[]);
CREATE FUNCTION index_count() RETURNS bigint LANGUAGE sql AS
	$$SELECT count(*) FROM pg_indexes WHERE tablename = 'bad'$$;

-- rows that cannot be indexed: CREATE INDEX fails, no index is left
INSERT INTO bad VALUES (1, '{1,2,3}'), (2, '{1,2}');
SELECT try($$CREATE INDEX ON bad USING kdindex (v)$$);
TRUNCATE bad;
INSERT INTO bad VALUES (1, '{1,2,3}'), (2, '{1,NULL,3}');
SELECT try($$CREATE INDEX ON bad USING kdindex (v)$$);
TRUNCATE bad;
INSERT INTO bad VALUES (1, '{1,2,3}'), (2, '{1,NaN,3}');
SELECT try($$CREATE INDEX ON bad USING kdindex (v)$$);
TRUNCATE bad;
INSERT INTO bad VALUES (1, '{1,2,3}'), (2, '{1,Infinity,3}');
SELECT try($$CREATE INDEX ON bad USING kdindex (v)$$);
TRUNCATE bad;
INSERT INTO bad VALUES (1, '{}');
SELECT try($$CREATE INDEX ON bad USING kdindex (v)$$);
TRUNCATE bad;
INSERT INTO bad VALUES (1, '{{1,2},{3,4}}');
SELECT try($$CREATE INDEX ON bad USING kdindex (v)$$);
TRUNCATE bad;
INSERT INTO bad SELECT 1, array_fill(1::real, ARRAY[16001]);
SELECT try($$CREATE INDEX ON bad USING kdindex (v)$$);
TRUNCATE bad;
SELECT index_count();

-- options
INSERT INTO bad SELECT i, ARRAY[i, i + 1, i + 2, i + 3, i + 4, i + 5]::real[] FROM generate_series(1, 10) i;
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (m = 4)$$);   -- 6 % 4 != 0
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (m = 7)$$);   -- m > dim
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (nbits = 5)$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (nbits = 0)$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (quantizer = 'opq', m = 4)$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (iterations = -1)$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (beam = 1000)$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (quantizer = 'xyz')$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (colour = 'red')$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v) WITH (sample = -1)$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (v, id)$$);
SELECT try($$CREATE INDEX ON bad USING kdindex (id)$$);
SELECT index_count();

-- an index that exists refuses bad rows and bad queries, and stays intact
CREATE INDEX bad_kd ON bad USING kdindex (v) WITH (m = 3);
SELECT try($$INSERT INTO bad VALUES (11, '{1,2,3}')$$);
SELECT try($$INSERT INTO bad VALUES (11, '{1,2,3,4,5,NaN}')$$);
SELECT try($$INSERT INTO bad VALUES (11, '{1,2,3,4,5,NULL}')$$);
SELECT try($$ALTER INDEX bad_kd SET (nbits = 3)$$);
SET enable_seqscan = off;
SELECT try($$SELECT id FROM bad ORDER BY v <-> '{1,2,3}' LIMIT 1$$);
SELECT try($$SELECT id FROM bad ORDER BY v <-> '{1,2,3,4,5,NaN}' LIMIT 1$$);
SELECT id FROM bad ORDER BY v <-> '{1,2,3,4,5,6}' LIMIT 3;
SELECT rows, trained FROM kdindex_info('bad_kd');
RESET enable_seqscan;

-- kdindex_info on something else
SELECT try($$SELECT * FROM kdindex_info('bad')$$);
CREATE INDEX bad_btree ON bad (id);
SELECT try($$SELECT * FROM kdindex_info('bad_btree')$$);

DROP TABLE bad;
DROP FUNCTION index_count();
