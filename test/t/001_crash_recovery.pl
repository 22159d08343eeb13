
# Crash recovery of kdindex: every change goes through WAL, so after an
# immediate shutdown (the kill -9 equivalent) the index must answer exactly as
# before, contain every committed row and nothing else, and keep working.
# Unlogged tables: after a crash the table is empty and its index (reset from
# the init fork) works.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;

my $DIM = 8;

# a deterministic pseudo-random vector in [-1, 1)^DIM for an integer seed
sub vec_sql { return KdTest::vec_sql($_[0], $DIM) }

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
# WAL-log everything (init's default wal_level=minimal may skip WAL for
# relations created in the same transaction and fsync them instead).
$node->append_conf('postgresql.conf', qq{
wal_level = replica
max_wal_senders = 2
shared_buffers = 16MB
log_statement = none
});
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION kdindex');

# Query vectors, as literals (float4 output round-trips exactly).
my @queries = split /\n/, $node->safe_psql('postgres',
	"SELECT " . vec_sql('-1000 - k') . "::text FROM generate_series(1, 5) k");
is(scalar(@queries), 5, 'query vectors generated');

# ids returned through the index (seq scans off) or exactly (index scans off)
sub knn
{
	my ($tbl, $q, $k, %opt) = @_;
	my $set =
	  $opt{exact}
	  ? 'SET enable_indexscan = off; SET enable_bitmapscan = off;'
	  : 'SET enable_seqscan = off; SET enable_bitmapscan = off; SET kdindex.rerank = '
	  . ($opt{rerank} // 100000) . ';';
	my $out = $node->safe_psql('postgres',
		"$set SELECT id FROM $tbl ORDER BY v <-> '$q' LIMIT $k");
	return join(',', split(/\n/, $out));
}

sub count_via_index
{
	my ($tbl, $q, $rerank) = @_;
	return $node->safe_psql('postgres',
		    "SET enable_seqscan = off; SET enable_bitmapscan = off; "
		  . "SET kdindex.rerank = $rerank; "
		  . "SELECT count(*), count(DISTINCT id) FROM "
		  . "(SELECT id FROM $tbl ORDER BY v <-> '$q' LIMIT 100000) s");
}

# All the checks on table t; $n = number of committed live rows.
sub check_table
{
	my ($label, $n, $probe_id) = @_;

	is($node->safe_psql('postgres', 'SELECT count(*) FROM t'),
		$n, "$label: heap has $n rows");

	my $plan = $node->safe_psql('postgres',
		"SET enable_seqscan = off; EXPLAIN (COSTS OFF) "
		  . "SELECT id FROM t ORDER BY v <-> '$queries[0]' LIMIT 10");
	like($plan, qr/Index Scan using t_v_idx/, "$label: plan uses the index");

	foreach my $i (0 .. $#queries)
	{
		my $q = $queries[$i];
		my $exact = knn('t', $q, 10, exact => 1);
		is(knn('t', $q, 10), $exact,
			"$label: query $i top-10 through the index (full re-rank) is exact");
	}

	# codes are meaningful: a shallow re-rank still finds (almost) all of the
	# true top-10 (2-d sub-quantizers with 256 centroids are very fine)
	my ($hits, $total) = (0, 0);
	foreach my $q (@queries)
	{
		my %exact = map { $_ => 1 } split /,/, knn('t', $q, 10, exact => 1);
		foreach my $id (split /,/, knn('t', $q, 10, rerank => 50))
		{
			$hits++ if $exact{$id};
		}
		$total += 10;
	}
	cmp_ok($hits / $total, '>=', 0.8,
		"$label: recall\@10 with kdindex.rerank = 50 is at least 0.8 ($hits/$total)");

	# a stored vector is its own nearest neighbour
	my $self_q = $node->safe_psql('postgres',
		"SELECT v::text FROM t WHERE id = $probe_id");
	my @ids = split /,/, knn('t', $self_q, 1);
	is($ids[0], $probe_id, "$label: row $probe_id is its own nearest neighbour");

	# every committed row is reachable through the index, exactly once, and
	# nothing else (no aborted / in-progress / deleted rows)
	is(count_via_index('t', $queries[1], 100000),
		"$n|$n", "$label: all $n rows found through the index (re-rank all)");
	is(count_via_index('t', $queries[2], 0),
		"$n|$n", "$label: all $n rows found through the index (codes only)");
}

# ---------------------------------------------------------------- build + crash
$node->safe_psql('postgres', qq{
CREATE TABLE t (id int PRIMARY KEY, v real[]);
INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(1, 2000) i;
});
$node->safe_psql('postgres',
	'CREATE INDEX t_v_idx ON t USING kdindex (v) WITH (m = 4)');
ok(1, 'index built');

# committed inserts after the build, in their own transactions
$node->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(2001, 2200) i");
$node->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(2201, 2300) i");
# an aborted insert: index entries pointing at dead tuples
$node->safe_psql('postgres', qq{
BEGIN;
INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(3001, 3100) i;
ROLLBACK;
});

# an insert still in progress when the server dies
my $bg = $node->background_psql('postgres');
$bg->query_safe("BEGIN; INSERT INTO t SELECT i, "
	  . vec_sql('i')
	  . " FROM generate_series(4001, 4100) i;");

check_table('before crash', 2300, 2222);

# what the meta page says about the trained index must survive the crash
sub info
{
	my ($idx) = @_;
	return $node->safe_psql('postgres',
		    "SELECT quantizer, metric, dim, m, nbits, code_bytes, trained, "
		  . "codebook_bytes, train_rows, train_mse FROM kdindex_info('$idx')");
}
my $info_before = info('t_v_idx');
like($info_before, qr/^pq\|l2\|8\|4\|8\|\d+\|t\|/,
	'kdindex_info: trained 8-d PQ index with m = 4, nbits = 8');

$node->stop('immediate');
eval { $bg->quit; };
$node->start;

check_table('after crash 1', 2300, 2222);
is($node->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id > 2300'),
	'0', 'after crash 1: no aborted or in-progress rows in the heap');
is(info('t_v_idx'), $info_before,
	'after crash 1: kdindex_info (trained codebooks, layout) unchanged');
KdTest::verify_ok($node, 't_v_idx', 'after crash 1');

# ---------------------------------------------------------------- writes after recovery
# inserts, a checkpoint, more inserts, deletes + VACUUM, inserts into freed space
$node->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(2301, 2500) i");
$node->safe_psql('postgres', 'CHECKPOINT');
$node->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(2501, 2600) i");
$node->safe_psql('postgres', 'DELETE FROM t WHERE id % 10 = 0');
$node->safe_psql('postgres', 'VACUUM t');
$node->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(2601, 2700) i");
my $n2 = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
is($n2, 2700 - 260, 'rows after deletes and inserts');

check_table('before crash 2', $n2, 2651);
$node->stop('immediate');
$node->start;
check_table('after crash 2', $n2, 2651);
is(info('t_v_idx'), $info_before, 'after crash 2: kdindex_info unchanged');
KdTest::verify_ok($node, 't_v_idx', 'after crash 2');
is($node->safe_psql('postgres',
	"SET enable_seqscan = off; SET enable_bitmapscan = off; SET kdindex.rerank = 100000; "
	  . "SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '$queries[3]' LIMIT 100000) s "
	  . "WHERE id % 10 = 0 AND id <= 2600"),
	'0', 'after crash 2: deleted rows are not returned');

# ---------------------------------------------------------------- unlogged table
$node->safe_psql('postgres', qq{
CREATE UNLOGGED TABLE u (id int PRIMARY KEY, v real[]);
INSERT INTO u SELECT i, @{[vec_sql('i')]} FROM generate_series(1, 500) i;
CREATE INDEX u_v_idx ON u USING kdindex (v) WITH (m = 4);
});
is(count_via_index('u', $queries[0], 100000), '500|500',
	'unlogged: all rows through the index');

# a clean restart keeps unlogged data
$node->restart;
is(count_via_index('u', $queries[0], 100000), '500|500',
	'unlogged: all rows through the index after a clean restart');

# a crash empties the table and resets the index to its init fork
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', 'SELECT count(*) FROM u'), '0',
	'unlogged: table empty after crash');
is(count_via_index('u', $queries[0], 100000), '0|0',
	'unlogged: index empty after crash');
KdTest::verify_ok($node, 'u_v_idx', 'unlogged, after crash');

my $one = $node->safe_psql('postgres', "SELECT " . vec_sql('7') . "::text");
$node->safe_psql('postgres', "INSERT INTO u VALUES (7, '$one')");
like($node->safe_psql('postgres',
		"SET enable_seqscan = off; EXPLAIN (COSTS OFF) "
		  . "SELECT id FROM u ORDER BY v <-> '$one' LIMIT 1"),
	qr/Index Scan using u_v_idx/, 'unlogged: plan uses the index');
is(knn('u', $one, 3), '7', 'unlogged: inserted row found through the index');

$node->safe_psql('postgres',
	"INSERT INTO u SELECT i, @{[vec_sql('i')]} FROM generate_series(1000, 1399) i");
is(count_via_index('u', $queries[0], 100000), '401|401',
	'unlogged: all rows through the index after refilling');
foreach my $i (0 .. 2)
{
	is(knn('u', $queries[$i], 10), knn('u', $queries[$i], 10, exact => 1),
		"unlogged: query $i top-10 through the index is exact");
}

# the logged table was not affected by any of this
check_table('end', $n2, 2651);
KdTest::verify_ok($node, 't_v_idx', 'end');
KdTest::verify_ok($node, 'u_v_idx', 'end');

$node->stop;
done_testing();
