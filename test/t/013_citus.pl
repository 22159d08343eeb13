
# kdindex on Citus: a coordinator and two workers (three clusters on loopback
# ports of this machine), a distributed and a reference table:
#  - CREATE EXTENSION and CREATE INDEX reach every shard; ORDER BY v <-> q
#    LIMIT 10 is pushed down to each shard's kdindex index (EXPLAIN);
#  - recall@10 through the coordinator against exact answers computed with
#    the distance function (no index can serve it), plain and filtered, for
#    real[] and (when pgvector is installed) vector;
#  - kdindex_info, kdindex_teacher, kdindex_train and kdindex_recall given the
#    distributed table or its index work on every shard placement (teacher
#    lists by primary key, per-shard training through the coordinator, the
#    per-placement report kdindex_shards), and refuse what cannot work;
#    their privilege checks hold on the coordinator;
#  - kdindex_recall as a fresh session's first statement on a worker;
#  - SET LOCAL with citus.propagate_set_commands = 'local' reaches the shards,
#    plain SET does not;
#  - citus_move_shard_placement: the moved shard's index is rebuilt with
#    distill = on (set by kdindex_train) and recall through the coordinator is
#    kept;
#  - kill -9 of a worker's postmaster in the middle of single-row inserts
#    through the coordinator: after crash recovery every acknowledged row is
#    there, every shard's index is sound and finds it, inserts go on.
# Skipped, with a notice, when Citus is not installed (test/scripts/test.sh
# builds it from ../shared/citus when that directory is there).

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
plan skip_all => "Citus is not installed in $pkglibdir (test/scripts/test.sh builds it "
  . "from ../shared/citus when that directory is beside the repository)"
  unless -f "$pkglibdir/citus.so";

my $DIM = 16;
my $N = 6000;
my $t_start = time;

# 40 clusters in [-1, 1)^DIM, noise 0.3: row i is in cluster i % 40
sub row_sql
{
	my ($i) = @_;
	return "ARRAY(SELECT ((hashint4((($i) % 40) * $DIM + j)::float8 "
	  . "+ 0.3 * hashint4(($i) * $DIM + j + 7777777)::float8) / 2147483648)::real "
	  . "FROM generate_series(0, $DIM - 1) j)";
}

my @nodes;
for my $name (qw(coordinator worker1 worker2))
{
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	$n->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'citus'
listen_addresses = '127.0.0.1'
max_connections = 80
max_worker_processes = 20
max_prepared_transactions = 20
shared_buffers = 32MB
maintenance_work_mem = 64MB
restart_after_crash = on
citus.node_conninfo = 'sslmode=disable'
log_min_messages = warning
});
	$n->start;
	$n->safe_psql('postgres', 'CREATE EXTENSION citus');
	push @nodes, $n;
}
my ($coord, $w1, $w2) = @nodes;
$coord->safe_psql('postgres', qq{
SELECT citus_set_coordinator_host('127.0.0.1', @{[ $coord->port ]});
SELECT citus_add_node('127.0.0.1', @{[ $w1->port ]});
SELECT citus_add_node('127.0.0.1', @{[ $w2->port ]});
});
my %node_by_port = map { $_->port => $_ } @nodes;

my $has_pgvector = $coord->safe_psql('postgres',
	"SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") eq '1';
note($has_pgvector ? 'pgvector is installed' : 'pgvector is not installed: real[] only');

# CREATE EXTENSION on the coordinator reaches the workers
$coord->safe_psql('postgres', 'CREATE EXTENSION kdindex');
$coord->safe_psql('postgres', 'CREATE EXTENSION kdindex_vector CASCADE') if $has_pgvector;
for my $w ($w1, $w2)
{
	is($w->safe_psql('postgres', "SELECT count(*) FROM pg_extension WHERE extname LIKE 'kdindex%'"),
		$has_pgvector ? '2' : '1', $w->name . ': CREATE EXTENSION reached it');
}

# items: distributed by id over 4 shards (2 a worker); ref: a reference table;
# qs: 40 queries near the clusters (not rows), on the coordinator only
my $t0 = time;
$coord->safe_psql('postgres', qq{
SET citus.shard_count = 4;
CREATE TABLE items (id bigint PRIMARY KEY, cat int, v real[]);
SELECT create_distributed_table('items', 'id');
INSERT INTO items SELECT i, i % 10, @{[ row_sql('i') ]} FROM generate_series(1, $N) i;
CREATE TABLE ref (id int PRIMARY KEY, v real[]);
SELECT create_reference_table('ref');
INSERT INTO ref SELECT i, @{[ row_sql('i') ]} FROM generate_series(1, 1500) i;
CREATE TABLE qs (id int PRIMARY KEY, v real[]);
INSERT INTO qs SELECT i, @{[ row_sql('i + 1000003') ]} FROM generate_series(1, 40) i;
});
$coord->safe_psql('postgres', qq{
CREATE INDEX items_kd ON items USING kdindex (v) WITH (m = 8);
CREATE INDEX ref_kd ON ref USING kdindex (v) WITH (m = 8);
});
note(sprintf('load and CREATE INDEX on 4 shards + reference: %.1f s', time - $t0));

# recall@10 of ORDER BY v <op> q LIMIT 10 through the coordinator, against
# the exact top-10 by the distance function (which no index can serve), over
# the queries in qs; filter is a WHERE clause
$coord->safe_psql('postgres', q{
CREATE FUNCTION recall10(tbl regclass, op text, fn text, filter text DEFAULT 'true',
						 conv text DEFAULT '') RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
	q record;
	got bigint[];
	truth bigint[];
	hits int := 0;
	total int := 0;
BEGIN
	FOR q IN SELECT id, v FROM qs ORDER BY id LOOP
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM %s WHERE %s ORDER BY v %s $1%s LIMIT 10) s',
					   tbl, filter, op, conv) INTO got USING q.v;
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM %s WHERE %s ORDER BY %s(v, $1%s), id LIMIT 10) s',
					   tbl, filter, fn, conv) INTO truth USING q.v;
		IF cardinality(got) <> cardinality(truth) THEN
			RAISE EXCEPTION 'query %: % rows, not %', q.id, cardinality(got), cardinality(truth);
		END IF;
		hits := hits + (SELECT count(*) FROM unnest(got) g WHERE g = ANY (truth));
		total := total + cardinality(truth);
	END LOOP;
	RETURN round((hits::numeric / total), 3);
END $$;
});
sub recall
{
	my ($tbl, %o) = @_;
	my $filter = $o{filter} // 'true';
	my $conv = $o{conv} // '';
	my $fn = $o{fn} // 'kdindex_l2_distance';
	return $coord->safe_psql('postgres',
		($o{set} // '') . "SELECT recall10('$tbl', '<->', '$fn', '$filter', '$conv')");
}

# ---- pushdown
my $q1 = $coord->safe_psql('postgres', 'SELECT v FROM qs WHERE id = 1');
my $plan = $coord->safe_psql('postgres',
	"EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> '$q1' LIMIT 10");
like($plan, qr/Custom Scan \(Citus Adaptive\)/, 'distributed plan');
like($plan, qr/Task Count: 4/, 'one task per shard');
like($plan, qr/Limit\s.*\n.*Index Scan using items_kd_\d+/s, 'each shard: Limit over its kdindex index');
$plan = $coord->safe_psql('postgres',
	"EXPLAIN (COSTS OFF) SELECT id FROM items WHERE cat = 3 ORDER BY v <-> '$q1' LIMIT 10");
like($plan, qr/Task Count: 4.*Limit\s/s, 'filtered: pushed down, a Limit on each shard');
# each shard's planner chooses as a single node does for a table of the
# shard's size (1,500 rows: a sort of the 150 matching rows costs less)
$coord->safe_psql('postgres', q{
CREATE TABLE shard_sized AS SELECT * FROM items WHERE id <= 1500;
CREATE INDEX ON shard_sized USING kdindex (v) WITH (m = 8);
ANALYZE shard_sized;});
my $local_plan = $coord->safe_psql('postgres',
	"EXPLAIN (COSTS OFF) SELECT id FROM shard_sized WHERE cat = 3 ORDER BY v <-> '$q1' LIMIT 10");
my ($shard_scan) = $plan =~ /(Index Scan|Seq Scan)/;
my ($local_scan) = $local_plan =~ /(Index Scan|Seq Scan)/;
is($shard_scan, $local_scan, "filtered: a shard plans as one node with as many rows ($local_scan)");

# ---- kdindex_info and kdindex_shards: the shards, not the empty coordinator index
is($coord->safe_psql('postgres', 'SELECT rows, trained, quantizer, m FROM kdindex_info(\'items_kd\')'),
	"$N|t|pq|8", 'kdindex_info of the distributed index: its shards\' rows, trained');
is($coord->safe_psql('postgres',
		'SELECT count(*), count(DISTINCT nodeport), sum(rows), bool_and(trained) FROM kdindex_shards(\'items_kd\')'),
	"4|2|$N|t", 'kdindex_shards: 4 placements on 2 workers');
my $ref_placements = $coord->safe_psql('postgres',
	'SELECT count(*) || \'|\' || min(rows) || \'|\' || max(rows) FROM kdindex_shards(\'ref_kd\')');
is($ref_placements, '3|1500|1500', 'reference table: a placement on every node, each with every row');
is($coord->safe_psql('postgres', 'SELECT rows FROM kdindex_info(\'ref_kd\')'), '1500',
	'kdindex_info of the reference index: one placement\'s rows');

# ---- recall through the coordinator
my %r;
$r{plain} = recall('items');
$r{filtered} = recall('items', filter => 'cat = 3');
$r{ref} = recall('ref');
note("recall\@10 through the coordinator: items $r{plain}, items WHERE cat = 3 $r{filtered}, ref $r{ref}");
cmp_ok($r{plain}, '>=', 0.95, 'recall@10 through the coordinator');
cmp_ok($r{filtered}, '>=', 0.95, 'filtered recall@10 through the coordinator (10 rows each)');
cmp_ok($r{ref}, '>=', 0.95, 'reference table recall@10');

# the same rows on one node (the coordinator, a local table): the baseline
$coord->safe_psql('postgres', qq{
CREATE TABLE local_items AS SELECT * FROM items;
ALTER TABLE local_items ADD PRIMARY KEY (id);
CREATE INDEX local_kd ON local_items USING kdindex (v) WITH (m = 8);
});
$r{local} = recall('local_items');
$r{local_codes} = recall('local_items', set => 'SET kdindex.rerank = 0;');
note("one node: recall\@10 $r{local}, codes only $r{local_codes}");

# ---- SET propagation: what a shard's query sees of kdindex.rerank
my $on_shard = "SELECT current_setting('kdindex.rerank') FROM items WHERE id = 1";
is($coord->safe_psql('postgres', "SET kdindex.rerank = 0; $on_shard"), '200',
	'plain SET does not reach the shards');
is($coord->safe_psql('postgres', qq{
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL kdindex.rerank = 0;
$on_shard;
COMMIT;}), '0', 'SET LOCAL with citus.propagate_set_commands = local reaches them in a BEGIN block');
is($coord->safe_psql('postgres', qq{
SET citus.propagate_set_commands = 'local';
CREATE FUNCTION on_shard() RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN SET LOCAL kdindex.rerank = 0; RETURN ($on_shard); END \$\$;
SELECT on_shard();}), '200', '... but not from a function outside one (no transaction is opened on the workers for a read)');
$coord->safe_psql('postgres', 'ALTER ROLE postgres SET kdindex.rerank = 50');
is($coord->safe_psql('postgres', $on_shard), '50', 'ALTER ROLE ... SET reaches them (new connections)');
$coord->safe_psql('postgres', 'ALTER ROLE postgres RESET kdindex.rerank');
# codes only on every shard: each returns its 10 nearest by code distance, the
# coordinator merges the 40 by exact distance
$r{coord_codes} = recall('items', set => "SET citus.propagate_set_commands = 'local'; BEGIN; SET LOCAL kdindex.rerank = 0;");
note("codes only (kdindex.rerank = 0): one node $r{local_codes}, 4 shards through the coordinator $r{coord_codes}");

# ---- kdindex_teacher on the distributed table: lists by primary key
$t0 = time;
is($coord->safe_psql('postgres',
		"SELECT kdindex_teacher('items', 'v', 'items_teacher', k => 20, nqueries => 200)"),
	'200', 'kdindex_teacher on the distributed table');
note(sprintf('kdindex_teacher (200 queries, k = 20, through the coordinator): %.1f s', time - $t0));
is($coord->safe_psql('postgres', q{
SELECT count(DISTINCT source_id), count(*) FILTER (WHERE cardinality(ids) = 20),
	   count(*) FILTER (WHERE source_id = ANY (ids)), count(*) FILTER (WHERE tids IS NULL AND source IS NULL)
  FROM items_teacher}),
	'200|200|0|200', 'teacher: 200 distinct query rows, 20 neighbours each by primary key, own row left out');
# its lists are the exact ones (checked on 20 queries with the distance function)
is($coord->safe_psql('postgres', q{
CREATE FUNCTION teacher_ok() RETURNS int LANGUAGE plpgsql AS $$
DECLARE t record; exact bigint[]; bad int := 0;
BEGIN
	FOR t IN SELECT * FROM items_teacher ORDER BY query_id LIMIT 20 LOOP
		SELECT array_agg(id ORDER BY d, id) INTO exact FROM
		  (SELECT id, kdindex_l2_distance(v, t.query) d FROM items WHERE id <> t.source_id
			ORDER BY 2, 1 LIMIT 20) s;
		IF exact IS DISTINCT FROM t.ids THEN bad := bad + 1; END IF;
	END LOOP;
	RETURN bad;
END $$;
SELECT teacher_ok();}), '0', 'teacher lists are the exact top-20 over all shards');
# queries from a table: not rows, so nothing is left out
is($coord->safe_psql('postgres', q{
SELECT kdindex_teacher('items', 'v', 'qs_teacher', queries => 'qs', k => 10);
SELECT count(*), count(source_id), min(cardinality(ids)) FROM qs_teacher;
SELECT round(reranked_recall::numeric, 2) FROM kdindex_recall('items_kd', 'qs_teacher', 10)}),
	"40\n40|0|10\n1.00", 'kdindex_teacher with a query table on the distributed table');
# table_queries: rows of the table after the query table's, each leaving itself out
is($coord->safe_psql('postgres', q{
SELECT kdindex_teacher('items', 'v', 'mix_teacher', queries => 'qs', k => 10, table_queries => 5);
SELECT count(*), count(source_id), bool_and(source_id IS NULL OR source_id <> ALL (ids)),
	   min(cardinality(ids)) FROM mix_teacher}),
	"45\n45|5|t|10", 'kdindex_teacher with a query table and table_queries on the distributed table');
my ($err) = ($coord->psql('postgres', q{
CREATE TABLE nopk (a int, v real[]);
SELECT create_distributed_table('nopk', 'a');
SELECT kdindex_teacher('nopk', 'v', 'nopk_teacher')}))[2];
like($err, qr/kdindex_teacher on the Citus table "nopk" needs a primary key of one integer column/,
	'kdindex_teacher refuses a distributed table without an integer primary key');

# ---- kdindex_recall through the coordinator (its codes-only pass is the
# SET LOCAL one above, on the teacher's queries)
my $rec_before = $coord->safe_psql('postgres',
	"SELECT queries || '|' || round(codes_recall::numeric, 3) || '|' || round(reranked_recall::numeric, 3) FROM kdindex_recall('items_kd', 'items_teacher', 10)");
note("kdindex_recall('items_kd') before training: $rec_before");
my (undef, $codes_before, $rr_before) = split /\|/, $rec_before;
cmp_ok($rr_before, '>=', 0.95, 'kdindex_recall through the coordinator, re-ranked');
cmp_ok($codes_before, '<=', $rr_before, 'kdindex_recall: codes only at most re-ranked');
# one shard (a reference table): the coordinator merges nothing, so codes-only
# recall is that index's, well below re-ranked: kdindex.rerank = 0 reached it
$coord->safe_psql('postgres', "SELECT kdindex_teacher('ref', 'v', 'ref_teacher', k => 10, nqueries => 100)");
my ($ref_codes, $ref_rr) = split /\|/, $coord->safe_psql('postgres',
	"SELECT round(codes_recall::numeric, 3) || '|' || round(reranked_recall::numeric, 3) FROM kdindex_recall('ref_kd', 'ref_teacher', 10)");
note("kdindex_recall('ref_kd'): codes $ref_codes, re-ranked $ref_rr");
cmp_ok($ref_codes, '<', $ref_rr - 0.05, 'kdindex_recall on a reference table: the codes-only pass ran codes only');
# a reference table's index is trained on each of its placements
(undef, undef, my $ref_notices) = $coord->psql('postgres', "SELECT 1 FROM kdindex_train('ref_kd', 'ref_teacher', epochs => 1)");
is(scalar(() = $ref_notices =~ /held-out recall/g), 3, 'kdindex_train on a reference table: each of its 3 placements')
  or diag($ref_notices);
is($coord->safe_psql('postgres', "SET kdindex.rerank = 150; SELECT 1 FROM kdindex_recall('items_kd', 'items_teacher', 10); SHOW kdindex.rerank"),
	"1\n150", 'kdindex_recall leaves kdindex.rerank as it was');

# ---- per-shard training through the coordinator
my $gen_before = $coord->safe_psql('postgres', 'SELECT string_agg(generation::text, \',\' ORDER BY shardid) FROM kdindex_shards(\'items_kd\')');
$t0 = time;
my ($ret, $out, $notices) = $coord->psql('postgres',
	"SELECT train_queries, round(recall_before::numeric, 3), round(recall_after::numeric, 3) FROM kdindex_train('items_kd', 'items_teacher', epochs => 3)");
my $train_s = time - $t0;
is($ret, 0, 'kdindex_train on the distributed index') or diag($notices);
note("kdindex_train: $out in " . sprintf('%.1f s', $train_s) . "\n$notices");
is(scalar(() = $notices =~ /NOTICE:  kdindex_train: shard \d+ at 127.0.0.1:\d+: held-out recall/g), 4,
	'one report per shard placement');
is(scalar(() = $notices =~ /made a teacher of 200 queries/g), 4, 'each shard got its own teacher');
is($coord->safe_psql('postgres', 'SELECT bool_and(generation > 0), bool_and(trained) FROM kdindex_shards(\'items_kd\')'),
	't|t', "every shard's index switched to a new generation (before: $gen_before)");
is($coord->safe_psql('postgres', q{SELECT reloptions FROM pg_class WHERE relname = 'items_kd'}),
	'{m=8,distill=on}', 'kdindex_train set distill = on on the distributed index');
# (Citus hides shards from pg_class on a worker unless told not to)
is($w1->safe_psql('postgres', q{SET citus.override_table_visibility = off; SELECT count(*) FROM pg_class WHERE relname LIKE 'items\_kd\_%' AND 'distill=on' = ANY (reloptions)}),
	'2', '... and on its shards');
my $rec_after = $coord->safe_psql('postgres',
	"SELECT round(codes_recall::numeric, 3) || '|' || round(reranked_recall::numeric, 3) FROM kdindex_recall('items_kd', 'items_teacher', 10)");
note("kdindex_recall('items_kd') after training: $rec_after (before: $codes_before|$rr_before)");
my ($codes_after, $rr_after) = split /\|/, $rec_after;
cmp_ok($rr_after, '>=', 0.95, 'recall through the coordinator after training');

# a non-owner may not train, nor a role without SELECT read
$coord->safe_psql('postgres', 'CREATE ROLE kd_reader LOGIN; GRANT SELECT ON items, items_teacher TO kd_reader; CREATE ROLE kd_nobody LOGIN');
($ret, $out, $err) = $coord->psql('postgres', "SET ROLE kd_reader; SELECT kdindex_train('items_kd', 'items_teacher')");
like($err, qr/must be owner of table items/, 'kdindex_train on the distributed index: owner only');
($ret, $out, $err) = $coord->psql('postgres', "SET ROLE kd_nobody; SELECT rows FROM kdindex_info('items_kd')");
like($err, qr/permission denied for table items/, 'kdindex_info: SELECT needed');
($ret, $out, $err) = $coord->psql('postgres', "SET ROLE kd_nobody; SELECT * FROM kdindex_shards('items_kd')");
like($err, qr/permission denied/, 'kdindex_shards: each worker checks the role too');
is($coord->safe_psql('postgres', "SET ROLE kd_reader; SELECT rows FROM kdindex_info('items_kd')"), $N,
	'kdindex_info with SELECT');

# the other functions, and the kdindex_citus_* helpers called directly, as a
# role with no privileges: each query, command and node checks the caller
for my $case (
	[ "SELECT kdindex_teacher('items', 'v', 'nobody_teacher', nqueries => 10)",
	  qr/permission denied for table items/, 'kdindex_teacher' ],
	[ "SELECT * FROM kdindex_recall('items_kd', 'items_teacher', 10)",
	  qr/permission denied for table items/, 'kdindex_recall' ],
	[ "SELECT kdindex_citus_teacher('items', 'v', 'nobody_teacher', NULL, 10, 10, 'exact', 'l2', 0)",
	  qr/permission denied/, 'kdindex_citus_teacher called directly' ],
	[ "SELECT * FROM kdindex_citus_train('items_kd', 'items_teacher', 1, 5e-3, 1e-3, 'listmle', 0.1, 0, 0, 20, 0)",
	  qr/must be owner|permission denied/, 'kdindex_citus_train called directly' ],
	[ "SET kdindex.rerank = 50; SELECT * FROM kdindex_citus_recall('items_kd', 'items_teacher', 10)",
	  qr/permission denied/, 'kdindex_citus_recall called directly' ])
{
	my ($sql, $want, $what) = @$case;
	($ret, $out, $err) = $coord->psql('postgres', "SET ROLE kd_nobody; $sql");
	isnt($ret, 0, "$what as a role with no privileges fails");
	like($err, $want, "$what as a role with no privileges: refused");
}
# kdindex_citus_exec runs a command as the caller on each node: it grants nothing
is($coord->safe_psql('postgres', qq{SET ROLE kd_nobody;
	SELECT bool_or(success) FROM kdindex_citus_exec(
		ARRAY(SELECT shardid FROM kdindex_citus_placements('items')),
		ARRAY(SELECT nodename FROM kdindex_citus_placements('items')),
		ARRAY(SELECT nodeport FROM kdindex_citus_placements('items')),
		ARRAY(SELECT format('SELECT count(*) FROM %s', shard_table) FROM kdindex_citus_placements('items')))}),
	'f', 'kdindex_citus_exec as a role with no privileges: every shard refuses it');

# ---- kdindex_recall as a fresh session's first statement, on a worker's shard
my ($shard, $port) = split /\|/, $coord->safe_psql('postgres',
	"SELECT shardid, nodeport FROM kdindex_shards('items_kd') ORDER BY shardid LIMIT 1");
($ret, $out, $err) = $node_by_port{$port}->psql('postgres',
	"SELECT queries FROM kdindex_recall('items_kd_$shard', 'items_teacher_$shard', 10)");
is("$ret|$out", '0|200', 'kdindex_recall is a fresh session\'s first statement on a worker') or diag($err);

# ---- shard move: the moved shard's index is rebuilt distilled (distill = on)
my ($to) = grep { $_->port != $port } ($w1, $w2);
my $moved = $node_by_port{$port};
# codes-only recall of that shard's index on its own rows: before the move
sub shard_codes_recall
{
	my ($node, $tag) = @_;
	$node->safe_psql('postgres',
		"SELECT kdindex_teacher('items_$shard', 'v', 'probe_$tag', k => 10, nqueries => 300)");
	return $node->safe_psql('postgres',
		"SELECT round(codes_recall::numeric, 3) FROM kdindex_recall('items_kd_$shard', 'probe_$tag', 10)");
}
my $shard_before = shard_codes_recall($moved, 'before');
$t0 = time;
$coord->safe_psql('postgres', qq{
SELECT citus_move_shard_placement($shard, '127.0.0.1', $port, '127.0.0.1', @{[ $to->port ]},
								  shard_transfer_mode => 'block_writes')});
note(sprintf('citus_move_shard_placement of shard %d: %.1f s', $shard, time - $t0));
is($to->safe_psql('postgres', "SET citus.override_table_visibility = off; SELECT reloptions FROM pg_class WHERE relname = 'items_kd_$shard'"),
	'{m=8,distill=on}', 'the moved shard\'s index is defined with distill = on');
my $shard_after = shard_codes_recall($to, 'after');
$to->safe_psql('postgres', "ALTER INDEX items_kd_$shard RESET (distill); REINDEX INDEX items_kd_$shard");
my $shard_plain = shard_codes_recall($to, 'plain');
$to->safe_psql('postgres', "ALTER INDEX items_kd_$shard SET (distill = on); REINDEX INDEX items_kd_$shard");
cmp_ok($shard_after, '>=', $shard_plain - 0.01, 'the moved shard is no worse than a plain rebuild');
my $rec_moved = $coord->safe_psql('postgres',
	"SELECT round(reranked_recall::numeric, 3) FROM kdindex_recall('items_kd', 'items_teacher', 10)");
cmp_ok($rec_moved, '>=', $rr_after - 0.01, "recall through the coordinator kept after the move ($rec_moved)");
is($coord->safe_psql('postgres', 'SELECT count(DISTINCT nodeport) || \'|\' || sum(rows) FROM kdindex_shards(\'items_kd\')'),
	"2|$N", 'the shards after the move: on 2 workers, every row');
# a second training finds the moved shard's teacher missing, makes it anew
# where the shard now is, and distils the shard again
($ret, $out, $notices) = $coord->psql('postgres', "SELECT 1 FROM kdindex_train('items_kd', 'items_teacher', epochs => 3)");
is($ret, 0, 'kdindex_train after the move') or diag($notices);
like($notices, qr/shard $shard at 127.0.0.1:@{[ $to->port ]}: made a teacher/, 'the moved shard\'s teacher is made where it now is');
my $shard_retrained = shard_codes_recall($to, 'retrained');
note("shard $shard codes-only recall\@10 on its rows: trained before the move $shard_before, "
	  . "rebuilt by the move (distill = on) $shard_after, rebuilt without distillation $shard_plain, "
	  . "trained again after the move $shard_retrained");
cmp_ok($shard_retrained, '>=', $shard_before - 0.02, 'kdindex_train after the move restores the shard\'s distilled recall');

# ---- refusals
($ret, $out, $err) = $coord->psql('postgres', q{
CREATE INDEX items_expr ON items USING kdindex ((v[1:8])) WITH (m = 4);
SELECT kdindex_train('items_expr', 'items_teacher')});
like($err, qr/kdindex_train on a Citus table needs an index on a column, not on an expression/,
	'kdindex_train refuses an expression index on a Citus table');
$coord->safe_psql('postgres', 'DROP INDEX items_expr');
($ret, $out, $err) = $coord->psql('postgres', q{
SELECT kdindex_teacher('local_items', 'v', 'local_teacher', k => 10, nqueries => 20);
SELECT kdindex_recall('items_kd', 'local_teacher')});
like($err, qr/teacher "local_teacher" does not name rows by primary key/, 'kdindex_recall refuses a TID teacher on a Citus table');

# ---- pgvector's vector
SKIP:
{
	skip 'pgvector is not installed', 3 unless $has_pgvector;
	$coord->safe_psql('postgres', q{
CREATE TABLE vitems (id bigint PRIMARY KEY, cat int, v vector(16));
SELECT create_distributed_table('vitems', 'id', colocate_with => 'items');
INSERT INTO vitems SELECT id, cat, v::vector FROM items;
CREATE INDEX vitems_kd ON vitems USING kdindex (v vector_l2_ops) WITH (m = 8);
});
	like($coord->safe_psql('postgres', "EXPLAIN (COSTS OFF) SELECT id FROM vitems ORDER BY v <-> '$q1'::real[]::vector LIMIT 10"),
		qr/Index Scan using vitems_kd_\d+/, 'vector: pushed down to the shards\' kdindex indexes');
	$r{vector} = recall('vitems', fn => 'l2_distance', conv => '::vector');
	cmp_ok($r{vector}, '>=', 0.95, "vector: recall\@10 through the coordinator ($r{vector})");
	is($coord->safe_psql('postgres',
		"SELECT kdindex_teacher('vitems', 'v', 'vitems_teacher', k => 10, nqueries => 50); "
		  . "SELECT reranked_recall >= 0.95 FROM kdindex_recall('vitems_kd', 'vitems_teacher', 10)"),
		"50\nt", 'vector: kdindex_teacher and kdindex_recall on the distributed table');
}

# ---- kill -9 of a worker in the middle of single-row inserts
my $sqlfile = "${PostgreSQL::Test::Utils::tmp_check}/inserts.sql";
# single-row INSERT ... VALUES with literal vectors (Citus takes no subquery there)
PostgreSQL::Test::Utils::append_to_file($sqlfile, $coord->safe_psql('postgres', qq{
SELECT string_agg(format('INSERT INTO items VALUES (%s, %s, %L) RETURNING id;', i, i % 10, @{[ row_sql('i') ]}), E'\n')
  FROM generate_series(100001, 103000) i}));
my ($ins_out, $ins_err) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $coord->connstr('postgres'), '-v', 'ON_ERROR_STOP=0', '-f', $sqlfile ],
	'>', \$ins_out, '2>', \$ins_err);
# wait for some inserts, then kill the worker holding the moved shard's old
# neighbours mid-stream and bring it back
my $victim = $w2;
for (1 .. 200)
{
	last if $coord->safe_psql('postgres', 'SELECT count(*) FROM items WHERE id > 100000') >= 300;
	usleep(50_000);
}
$victim->kill9;
usleep(1_500_000);
# the killed postmaster's children go when they notice it is gone
# and the dead postmaster is reaped (until then a new one finds the lock
# file's PID alive, or their shared memory in use, and exits); a failed start
# leaves that stale PID in the node object, so forget it and try again
my $started = 0;
for (1 .. 60)
{
	last if ($started = $victim->start(fail_ok => 1));
	$victim->{_pid} = undef;
	sleep 1;
}
ok($started && $victim->poll_query_until('postgres', 'SELECT true'),
	'the killed worker restarts (crash recovery)');
$h->finish;
my @acked = grep { /^\d+$/ } split /\n/, $ins_out;
my $failed = () = $ins_err =~ /ERROR/g;
note(scalar(@acked) . " inserts acknowledged, $failed failed while the worker was down");
cmp_ok(scalar(@acked), '>', 300, 'inserts went on around the crash');
my $acked_list = join(',', @acked, 0);
is($coord->safe_psql('postgres', "SELECT count(*) FROM items WHERE id IN ($acked_list)"),
	scalar(@acked), 'every acknowledged row is there after recovery');
# every shard's index is sound and holds every row of its shard
for my $row (split /\n/, $coord->safe_psql('postgres',
		"SELECT shard_index || '|' || nodeport FROM kdindex_shards('items_kd')"))
{
	my ($idx, $p) = split /\|/, $row;
	my $res = KdTest::verify_if_present($node_by_port{$p}, 'postgres', $idx);
	is($res, 'sound', "after the crash: kdindex_verify($idx, heapallindexed) on port $p");
}
# the acknowledged rows are found through the index by their own vectors
is($coord->safe_psql('postgres', qq{
CREATE FUNCTION found_all(ids bigint[]) RETURNS int LANGUAGE plpgsql AS \$\$
DECLARE i bigint; q real[]; miss int := 0;
BEGIN
	FOREACH i IN ARRAY ids[1:60] LOOP
		SELECT v INTO q FROM items WHERE id = i;
		IF NOT i IN (SELECT id FROM items ORDER BY v <-> q LIMIT 3) THEN miss := miss + 1; END IF;
	END LOOP;
	RETURN miss;
END \$\$;
SELECT found_all('{$acked_list}');}), '0', 'rows inserted around the crash are found through the index');
$coord->safe_psql('postgres', "INSERT INTO items SELECT 200001, 1, @{[ row_sql(200001) ]}");
cmp_ok(recall('items'), '>=', 0.95, 'inserts and recall@10 after recovery');

note(sprintf('013_citus total: %.1f s', time - $t_start));
done_testing();
