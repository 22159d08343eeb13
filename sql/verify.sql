-- kdindex_verify: sound indexes of every kind pass, with and without
-- heapallindexed; what it refuses.  (test/t/006_verify.pl corrupts indexes
-- on disk and checks what it reports.)

-- both checks on an index; 'sound' when neither raised an error
CREATE FUNCTION verified(idx regclass) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM kdindex_verify(idx);
	PERFORM kdindex_verify(idx, heapallindexed => true);
	RETURN 'sound';
END
$$;

CREATE TABLE vf (id int PRIMARY KEY, v real[]);
ALTER TABLE vf SET (autovacuum_enabled = off);
INSERT INTO vf SELECT i, make_vec(i) FROM generate_series(1, 1200) i;
INSERT INTO vf VALUES (0, NULL);		-- NULLs are not indexed, and not missed

-- 1. Every kind of index, freshly built
CREATE INDEX vf_pq ON vf USING kdindex (v) WITH (m = 4);
CREATE INDEX vf_opq ON vf USING kdindex (v float4_ip_ops) WITH (quantizer = 'opq', m = 4, iterations = 2);
CREATE INDEX vf_aq ON vf USING kdindex (v) WITH (quantizer = 'aq', m = 4);
CREATE INDEX vf_fs ON vf USING kdindex (v) WITH (m = 8, nbits = 4);
CREATE INDEX vf_ivf ON vf USING kdindex (v) WITH (m = 4, lists = 6);
CREATE INDEX vf_ivf_fs ON vf USING kdindex (v float4_cosine_ops) WITH (m = 4, nbits = 4, lists = 3);
CREATE INDEX vf_part ON vf USING kdindex (v) WITH (m = 4) WHERE id % 2 = 0;
CREATE INDEX vf_expr ON vf USING kdindex ((v[1:8])) WITH (m = 4);
SELECT c.relname, k.quantizer, k.nbits, k.lists, k.trained, verified(c.oid)
  FROM pg_class c, kdindex_info(c.oid) k
 WHERE c.relname LIKE 'vf\_%' AND c.relkind = 'i' AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
 ORDER BY 1;

-- 2. After deletes, VACUUM (pages with room listed for inserts), inserts
-- into the freed room, and an update
DELETE FROM vf WHERE id % 3 = 0;
VACUUM vf;
INSERT INTO vf SELECT i, make_vec(i) FROM generate_series(1201, 1500) i;
UPDATE vf SET v = make_vec(7) WHERE id = 1201;
SELECT c.relname, verified(c.oid)
  FROM pg_class c
 WHERE c.relname LIKE 'vf\_%' AND c.relkind = 'i' AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
 ORDER BY 1;
DROP INDEX vf_opq, vf_aq, vf_ivf, vf_ivf_fs, vf_part, vf_expr;

-- 3. A retrain: the old chains are retired (and checked as such), then
-- recycled by VACUUM (free pages that no chain reaches are fine)
SELECT kdindex_teacher('vf', 'v', 'vf_teacher', k => 10, nqueries => 50);
SELECT epochs FROM kdindex_train('vf_pq', 'vf_teacher', epochs => 1);
SELECT verified('vf_pq');
SELECT txid_current() > 0 AS newer_xid;
VACUUM vf;
SELECT verified('vf_pq');
-- HOT updates, pruned to redirects by VACUUM: the index holds each chain's
-- root, which is what the table's rows are checked against
ALTER TABLE vf ADD COLUMN note text;
UPDATE vf SET note = 'hot' WHERE id BETWEEN 1 AND 50;
UPDATE vf SET note = 'hotter' WHERE id BETWEEN 1 AND 50;
VACUUM vf;
SELECT verified('vf_pq');

-- 4. Untrained indexes: on an empty table, and one that trains itself from
-- inserts (its untrained chain is retired)
CREATE TABLE vf_empty (v real[]);
CREATE INDEX vf_empty_kd ON vf_empty USING kdindex (v) WITH (m = 4, nbits = 4);
SELECT trained, verified('vf_empty_kd') FROM kdindex_info('vf_empty_kd');
INSERT INTO vf_empty SELECT make_vec(i) FROM generate_series(1, 100) i;
SELECT trained, verified('vf_empty_kd') FROM kdindex_info('vf_empty_kd');
INSERT INTO vf_empty SELECT make_vec(i) FROM generate_series(101, 700) i;
SELECT trained, verified('vf_empty_kd') FROM kdindex_info('vf_empty_kd');
DROP TABLE vf_empty;

-- 5. What it refuses
SELECT kdindex_verify('vf');
SELECT kdindex_verify('vf_pkey');
-- a role that does not own the table
CREATE ROLE regress_verify_other;
SET ROLE regress_verify_other;
SELECT kdindex_verify('vf_pq');
SELECT kdindex_verify('vf_pq', true);
RESET ROLE;
-- the table's owner may
ALTER TABLE vf OWNER TO regress_verify_other;
SET ROLE regress_verify_other;
SELECT verified('vf_pq');
RESET ROLE;
DROP TABLE vf, vf_teacher;
DROP ROLE regress_verify_other;
DROP FUNCTION verified(regclass);
