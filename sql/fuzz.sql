-- A seeded fuzzer: malformed and extreme vectors (random lengths, NaN,
-- +-Infinity, denormals, 3e38, empty, two-dimensional, NULL elements, lower
-- bounds other than 1, NULL arrays) as rows, as queries and into the distance
-- operators, random index options on small tables, and odd arguments to the
-- SQL functions.  Every statement either succeeds or fails with an ERROR; none
-- may crash the server, and none may fail with an internal error (SQLSTATE
-- class XX).  Counts of outcomes by SQLSTATE are deterministic: setseed, and
-- PostgreSQL 15's random() is the same on every platform.
SET client_min_messages = warning;		-- untrained builds say so in a NOTICE
SELECT setseed(0.42);

CREATE TABLE fz_log (n serial, section text, sqlstate text, cmd text, msg text);

-- run one statement and log how it ended
CREATE FUNCTION fz_try(section text, cmd text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	INSERT INTO fz_log (section, sqlstate, cmd) VALUES (section, 'ok', cmd);
	RETURN true;
EXCEPTION WHEN OTHERS THEN
	INSERT INTO fz_log (section, sqlstate, cmd, msg) VALUES (section, SQLSTATE, cmd, SQLERRM);
	RETURN false;
END
$$;

CREATE FUNCTION fz_pick(a text[]) RETURNS text LANGUAGE sql AS
	$$SELECT a[1 + floor(random() * array_length(a, 1))::int]$$;

-- an element: usually an ordinary number, sometimes an extreme one
CREATE FUNCTION fz_elem(odd float8) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN random() < odd
		THEN fz_pick('{NaN,Infinity,-Infinity,1e-42,-1e-42,3e38,-3e38,"NULL",0,1e-38}')
		ELSE round((random() * 4 - 2)::numeric, 2)::text END
$$;

CREATE FUNCTION fz_elems(n int, odd float8) RETURNS text LANGUAGE sql AS
	$$SELECT coalesce(string_agg(fz_elem(odd), ',' ORDER BY i), '') FROM generate_series(1, n) i$$;

-- a real[] literal meant for dim dimensions: half of them well-formed
CREATE FUNCTION fz_vec(dim int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	kind int := floor(random() * 20);
	n int := dim;
BEGIN
	IF kind = 0 THEN RETURN '''{}''::real[]'; END IF;
	IF kind = 1 THEN RETURN 'NULL::real[]'; END IF;
	IF kind = 2 THEN
		RETURN format('''{{%s},{%s}}''::real[]', fz_elems(dim, 0), fz_elems(dim, 0));
	END IF;
	IF kind = 3 THEN
		RETURN format('''[0:%s]={%s}''::real[]', dim - 1, fz_elems(dim, 0));
	END IF;
	IF kind = 4 THEN
		RETURN format('''[-3:%s]={%s}''::real[]', dim - 4, fz_elems(dim, 0.1));
	END IF;
	IF kind IN (5, 6) THEN
		n := 1 + floor(random() * 10);			-- a random length
	END IF;
	RETURN format('''{%s}''::real[]', fz_elems(n, CASE WHEN kind BETWEEN 7 AND 9 THEN 0.3 ELSE 0 END));
END
$$;

-- 1. The operators on their own
DO $$
BEGIN
	FOR i IN 1 .. 400 LOOP
		PERFORM fz_try('operators', format('SELECT %s %s %s', fz_vec(i % 5 + 1),
			fz_pick('{<->,<#>,<=>}'), fz_vec(i % 5 + 1)));
	END LOOP;
END
$$;

-- 2. Tables with indexes of every kind take odd rows and odd queries
CREATE TABLE fz_base (id int, v real[]);
INSERT INTO fz_base SELECT i, ARRAY[random(), random(), random(), random()]::real[]
  FROM generate_series(1, 300) i;
CREATE TABLE fz_pq (id serial, cat int, v real[]);
CREATE TABLE fz_ivf (LIKE fz_pq INCLUDING ALL);
CREATE TABLE fz_fs (LIKE fz_pq INCLUDING ALL);
CREATE TABLE fz_aq (LIKE fz_pq INCLUDING ALL);
CREATE TABLE fz_cos (LIKE fz_pq INCLUDING ALL);
CREATE TABLE fz_ip (LIKE fz_pq INCLUDING ALL);
CREATE TABLE fz_new (LIKE fz_pq INCLUDING ALL);	-- trains itself at 624 rows, during the loop
CREATE TABLE fz_raw (LIKE fz_pq INCLUDING ALL);	-- untrained all along: 100 rows < 256
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY '{fz_pq,fz_ivf,fz_fs,fz_aq,fz_cos,fz_ip}'::text[] LOOP
		EXECUTE format('INSERT INTO %I (cat, v) SELECT id %% 5, v FROM fz_base', t);
	END LOOP;
END
$$;
INSERT INTO fz_raw (cat, v) SELECT id % 5, v FROM fz_base WHERE id <= 100;
CREATE INDEX ON fz_pq USING kdindex (v) WITH (m = 2);
CREATE INDEX ON fz_ivf USING kdindex (v) WITH (m = 2, lists = 4);
CREATE INDEX ON fz_fs USING kdindex (v) WITH (quantizer = 'opq', m = 4, nbits = 4);
CREATE INDEX ON fz_aq USING kdindex (v) WITH (quantizer = 'aq', m = 2, lists = 2);
CREATE INDEX ON fz_cos USING kdindex (v float4_cosine_ops) WITH (m = 2);
CREATE INDEX ON fz_ip USING kdindex (v float4_ip_ops) WITH (m = 4, nbits = 4, lists = 3);
CREATE INDEX ON fz_new USING kdindex (v) WITH (m = 2, nbits = 4);
INSERT INTO fz_new (cat, v) SELECT i % 5, ARRAY[random(), random(), random(), random()]::real[]
  FROM generate_series(1, 600) i;
CREATE INDEX ON fz_raw USING kdindex (v);
SELECT relname, trained FROM pg_class, kdindex_info(oid) WHERE relname IN ('fz_new_v_idx', 'fz_raw_v_idx') ORDER BY 1;

SET enable_seqscan = off;
SET enable_bitmapscan = off;
DO $$
DECLARE
	tables text[] := '{fz_pq,fz_ivf,fz_fs,fz_aq,fz_cos,fz_ip,fz_new,fz_raw}';
	ops text[] := '{<->,<->,<->,<->,<=>,<#>,<->,<->}';
	k int;
	t text;
	op text;
BEGIN
	FOR i IN 1 .. 1200 LOOP
		k := 1 + floor(random() * 8);
		t := tables[k];
		-- mostly the index's own operator, sometimes another one
		op := CASE WHEN random() < 0.9 THEN ops[k] ELSE fz_pick('{<->,<#>,<=>}') END;
		PERFORM set_config('kdindex.rerank', fz_pick('{0,1,10,200}'), true);
		PERFORM set_config('kdindex.probes', fz_pick('{1,2,8}'), true);
		PERFORM set_config('kdindex.max_scan_tuples', fz_pick('{0,5,20000}'), true);
		CASE floor(random() * 6)
			WHEN 0, 1 THEN
				PERFORM fz_try('rows', format('INSERT INTO %I (cat, v) VALUES (%s, %s)',
					t, i % 5, fz_vec(4)));
			WHEN 2 THEN
				PERFORM fz_try('rows', format('UPDATE %I SET v = %s WHERE id = %s',
					t, fz_vec(4), 1 + floor(random() * 300)));
			WHEN 3 THEN
				PERFORM fz_try('queries', format('SELECT id FROM %I ORDER BY v %s %s LIMIT %s',
					t, op, fz_vec(4), fz_pick('{1,5,10,100,1000}')));
			WHEN 4 THEN
				PERFORM fz_try('queries', format('SELECT id FROM %I WHERE cat = %s ORDER BY v %s %s LIMIT 10',
					t, i % 5, op, fz_vec(4)));
			ELSE
				PERFORM fz_try('queries', format('SELECT count(*) FROM (SELECT id FROM %I ORDER BY v %s %s LIMIT 50) s',
					t, op, fz_vec(fz_pick('{1,3,4,5,8}')::int)));
		END CASE;
		IF i % 100 = 0 THEN
			PERFORM fz_try('rows', format('DELETE FROM %I WHERE id %% 17 = %s', t, i % 17));
		END IF;
	END LOOP;
END
$$;
RESET enable_seqscan;
RESET enable_bitmapscan;

-- every index is still sound and holds exactly its table's rows (no vector
-- that was refused left an entry behind)
VACUUM (INDEX_CLEANUP ON) fz_pq, fz_ivf, fz_fs, fz_aq, fz_cos, fz_ip, fz_new, fz_raw;
SELECT c.relname AS tbl, k.trained,
	   (SELECT sum(rows) FROM kdindex_lists(i.indexrelid)) = k.rows AS lists_agree
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid, kdindex_info(i.indexrelid) k
 WHERE c.relname LIKE 'fz\_%' ORDER BY 1;
DO $$
DECLARE
	r record;
	n bigint;
BEGIN
	FOR r IN SELECT i.indexrelid::regclass AS idx, i.indrelid::regclass AS tbl
			   FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname LIKE 'fz\_%' LOOP
		EXECUTE format('SELECT count(*) FROM %s WHERE v IS NOT NULL', r.tbl) INTO n;
		IF n <> (SELECT rows FROM kdindex_info(r.idx)) THEN
			RAISE WARNING '% holds % rows, its table % non-NULL ones', r.idx,
				(SELECT rows FROM kdindex_info(r.idx)), n;
		END IF;
		PERFORM kdindex_verify(r.idx, true);
	END LOOP;
END
$$;

-- 3. Random options on small tables: each build either succeeds or is
-- refused; a built index answers a query and takes a row
CREATE TABLE fz_d1 (id int, v real[]);
CREATE TABLE fz_d3 (id int, v real[]);
CREATE TABLE fz_d8 (id int, v real[]);
CREATE TABLE fz_d8_5 (id int, v real[]);
CREATE TABLE fz_d8_0 (id int, v real[]);
INSERT INTO fz_d1 SELECT i, ARRAY[random()]::real[] FROM generate_series(1, 300) i;
INSERT INTO fz_d3 SELECT i, ARRAY[random(), random(), random()]::real[] FROM generate_series(1, 300) i;
INSERT INTO fz_d8 SELECT i, (SELECT array_agg(random()::real) FROM generate_series(1, 8) WHERE i > 0)
  FROM generate_series(1, 300) i;
INSERT INTO fz_d8_5 SELECT * FROM fz_d8 ORDER BY id LIMIT 5;
DO $$
DECLARE
	t text;
	dim int;
	opts text[];
	stmt text;
BEGIN
	FOR i IN 1 .. 120 LOOP
		t := fz_pick('{fz_d1,fz_d3,fz_d8,fz_d8,fz_d8_5,fz_d8_0}');
		dim := CASE t WHEN 'fz_d1' THEN 1 WHEN 'fz_d3' THEN 3 ELSE 8 END;
		opts := '{}';
		IF random() < 0.7 THEN opts := opts || ('quantizer = ' || fz_pick('{pq,opq,aq,pq,xq,''''}')); END IF;
		IF random() < 0.7 THEN opts := opts || ('m = ' || fz_pick('{0,1,2,3,4,8,9,-1,16001}')); END IF;
		IF random() < 0.5 THEN opts := opts || ('nbits = ' || fz_pick('{4,8,8,1,2,16,17}')); END IF;
		IF random() < 0.3 THEN opts := opts || ('lists = ' || fz_pick('{0,1,2,3,50,500,32769}')); END IF;
		IF random() < 0.3 THEN opts := opts || ('sample = ' || fz_pick('{0,1,2,10,1000,2147483647,-1}')); END IF;
		IF random() < 0.2 THEN opts := opts || ('iterations = ' || fz_pick('{0,1,2,5,1001}')); END IF;
		IF random() < 0.2 THEN opts := opts || ('beam = ' || fz_pick('{0,1,2,16,257}')); END IF;
		IF random() < 0.2 THEN opts := opts || ('balance = ' || fz_pick('{0,0.001,0.1,1,10,11,NaN}')); END IF;
		IF random() < 0.1 THEN opts := opts || ('distill = ' || fz_pick('{on,off}')); END IF;
		stmt := format('CREATE INDEX fz_idx ON %I USING kdindex (v %s)', t,
					   fz_pick('{"","","",float4_ip_ops,float4_cosine_ops}'));
		IF array_length(opts, 1) > 0 THEN
			stmt := stmt || ' WITH (' || array_to_string(opts, ', ') || ')';
		END IF;
		IF fz_try('options', stmt) THEN
			PERFORM set_config('enable_seqscan', 'off', true);
			PERFORM fz_try('options: use', format('SELECT id FROM %I ORDER BY v <-> %s LIMIT 5',
				t, fz_vec(dim)));
			PERFORM fz_try('options: use', format('INSERT INTO %I VALUES (0, %s)', t, fz_vec(dim)));
			PERFORM fz_try('options: use', 'SELECT kdindex_verify(''fz_idx'', true)');
			PERFORM set_config('enable_seqscan', 'on', true);
			EXECUTE 'DROP INDEX fz_idx';
		END IF;
	END LOOP;
END
$$;

-- 4. The SQL functions with odd arguments (each kdindex table has its own
-- teacher)
CREATE INDEX fz_btree ON fz_base (id);
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY '{fz_pq,fz_ivf,fz_fs,fz_aq,fz_cos,fz_ip,fz_new,fz_raw}'::text[] LOOP
		PERFORM kdindex_teacher(t::regclass, 'v', t || '_teacher', k => 10, nqueries => 30);
	END LOOP;
END
$$;
DO $$
DECLARE
	tables text[] := '{fz_pq,fz_ivf,fz_fs,fz_aq,fz_cos,fz_ip,fz_new,fz_raw,fz_btree,fz_base,pg_class,0,NULL}';
	stmts text[] := ARRAY[
		'SELECT * FROM kdindex_info(%1$s::regclass)',
		'SELECT * FROM kdindex_lists(%1$s::regclass)',
		'SELECT kdindex_verify(%1$s::regclass, true)',
		'SELECT * FROM kdindex_recall(%1$s::regclass, %2$L, k => %3$s)',
		'SELECT * FROM kdindex_train(%1$s::regclass, %2$L, epochs => %3$s)',
		'SELECT * FROM kdindex_train(%1$s::regclass, %1$s::regclass, epochs => 1, learning_rate => %3$s)',
		'SELECT * FROM kdindex_train(%1$s::regclass, %2$L, epochs => 1, loss => %5$L, holdout => %3$s)',
		'SELECT * FROM kdindex_train(%1$s::regclass, %2$L, epochs => 1, tau => %3$s, balance => %4$s)',
		'SELECT * FROM kdindex_train(%1$s::regclass, %2$L, epochs => 1, rec_weight => %3$s, negatives => %4$s)',
		'SELECT kdindex_teacher(%1$s::regclass, ''v'', ''fz_t2'', k => %3$s, nqueries => %4$s)',
		'SELECT kdindex_teacher(''fz_pq'', %5$L, ''fz_t3'', metric => %5$L)',
		'SELECT kdindex_teacher(''fz_pq'', ''v'', ''fz_t3'', queries => %1$s::regclass, teacher => %5$L)',
		'SELECT * FROM kdindex_fastscan_check(%3$s, %4$s)'];
	nums text[] := '{0,1,-1,10,''NaN'',''Infinity'',1e308,2147483647,"NULL",3::float8,2.5::float8}';
	t text;
	idx text;
BEGIN
	FOR i IN 1 .. 150 LOOP
		t := fz_pick(tables);
		-- the table's index, or the relation itself when it is not a kdindex table
		idx := CASE WHEN t IS NULL THEN 'NULL' WHEN t = '0' THEN '0'
					WHEN t LIKE 'fz\_%' AND t NOT IN ('fz_btree', 'fz_base') THEN quote_literal(t || '_v_idx')
					ELSE quote_literal(t) END;
		PERFORM fz_try('functions', format(fz_pick(stmts), idx,
			CASE WHEN t LIKE 'fz\_%' AND t NOT IN ('fz_btree', 'fz_base') THEN t ELSE 'fz_pq' END || '_teacher',
			fz_pick(nums), fz_pick(nums), fz_pick('{listmle,listnet,x,"",v,l2,ip,cosine,exact,index}')));
		EXECUTE 'DROP TABLE IF EXISTS fz_t2, fz_t3';
	END LOOP;
END
$$;

-- 5. A teacher whose rows the table lost (VACUUM truncated the heap's tail
-- under its TIDs): kdindex_train and kdindex_recall pass over them
CREATE TABLE fz_gone (id int, v real[]);
INSERT INTO fz_gone SELECT i, make_vec(i, 4) FROM generate_series(1, 3000) i;
CREATE INDEX fz_gone_kd ON fz_gone USING kdindex (v) WITH (m = 2);
SELECT kdindex_teacher('fz_gone', 'v', 'fz_gone_teacher', k => 10, nqueries => 50);
DELETE FROM fz_gone WHERE id > 1000;
VACUUM fz_gone;
SELECT fz_try('gone', $$SELECT epochs FROM kdindex_train('fz_gone_kd', 'fz_gone_teacher', epochs => 1)$$),
	   fz_try('gone', $$SELECT queries FROM kdindex_recall('fz_gone_kd', 'fz_gone_teacher')$$);

-- outcomes by SQLSTATE
SELECT section, sqlstate, count(*) FROM fz_log GROUP BY 1, 2 ORDER BY 1, 2;
-- internal errors and resource errors, with the statement that raised them:
-- there should be none
SELECT section, sqlstate, msg, cmd FROM fz_log
 WHERE sqlstate ~ '^(XX|58|53)' ORDER BY n;

-- clean up (later tests drop and re-create the extension)
DO $$
DECLARE
	t text;
BEGIN
	FOR t IN SELECT c.oid::regclass::text FROM pg_class c
			  WHERE c.relname LIKE 'fz\_%' AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace LOOP
		EXECUTE 'DROP TABLE IF EXISTS ' || t || ' CASCADE';
	END LOOP;
END
$$;
DROP FUNCTION fz_try(text, text), fz_pick(text[]), fz_elem(float8), fz_elems(int, float8), fz_vec(int);
