
# Physical streaming replication of kdindex: the index is built and modified on
# the primary only; a hot standby replaying the WAL must answer the same queries
# with the same ids in the same order, including after deletes + VACUUM.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;

my $DIM = 8;

sub vec_sql { return KdTest::vec_sql($_[0], $DIM) }

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "shared_buffers = 16MB\nlog_statement = none\n");
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION kdindex');
$primary->safe_psql('postgres', qq{
CREATE TABLE t (id int PRIMARY KEY, v real[]);
INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(1, 500) i;
});

my $backup = 'base';
$primary->backup($backup);
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, $backup, has_streaming => 1);
$standby->append_conf('postgresql.conf', "shared_buffers = 16MB\nlog_statement = none\n");
$standby->start;

# build the index (and grow the table) after the base backup: all of it
# reaches the standby through WAL
$primary->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(501, 2000) i");
$primary->safe_psql('postgres',
	'CREATE INDEX t_v_idx ON t USING kdindex (v) WITH (m = 4)');
$primary->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(2001, 2300) i");
$primary->safe_psql('postgres', qq{
BEGIN;
INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(2301, 2400) i;
ROLLBACK;
});
$primary->wait_for_catchup($standby);

my @queries = split /\n/, $primary->safe_psql('postgres',
	"SELECT " . vec_sql('-1000 - k') . "::text FROM generate_series(1, 6) k");
is(scalar(@queries), 6, 'query vectors generated');

sub knn
{
	my ($node, $q, $k, $rerank) = @_;
	my $out = $node->safe_psql('postgres',
		    "SET enable_seqscan = off; SET enable_bitmapscan = off; "
		  . "SET kdindex.rerank = $rerank; "
		  . "SELECT id FROM t ORDER BY v <-> '$q' LIMIT $k");
	return join(',', split(/\n/, $out));
}

sub exact
{
	my ($node, $q, $k) = @_;
	my $out = $node->safe_psql('postgres',
		    "SET enable_indexscan = off; SET enable_bitmapscan = off; "
		  . "SELECT id FROM t ORDER BY v <-> '$q' LIMIT $k");
	return join(',', split(/\n/, $out));
}

sub count_via_index
{
	my ($node, $q) = @_;
	return $node->safe_psql('postgres',
		    "SET enable_seqscan = off; SET enable_bitmapscan = off; "
		  . "SET kdindex.rerank = 0; "
		  . "SELECT count(*), count(DISTINCT id) FROM "
		  . "(SELECT id FROM t ORDER BY v <-> '$q' LIMIT 100000) s");
}

sub compare
{
	my ($label, $n) = @_;

	like($standby->safe_psql('postgres',
			"SET enable_seqscan = off; EXPLAIN (COSTS OFF) "
			  . "SELECT id FROM t ORDER BY v <-> '$queries[0]' LIMIT 10"),
		qr/Index Scan using t_v_idx/, "$label: standby plan uses the index");

	foreach my $i (0 .. $#queries)
	{
		my $q = $queries[$i];
		# codes-only order, a shallow re-rank and a full re-rank must all be
		# identical on both nodes: same pages, same codes, same answers
		foreach my $rerank (0, 20, 100000)
		{
			my $p = knn($primary, $q, 10, $rerank);
			my $s = knn($standby, $q, 10, $rerank);
			is($s, $p, "$label: query $i, rerank $rerank: standby = primary");
		}
		is(knn($standby, $q, 10, 100000), exact($primary, $q, 10),
			"$label: query $i: standby index answer is exact");
	}
	my $info_sql = 'SELECT * FROM kdindex_info(\'t_v_idx\')';
	is($standby->safe_psql('postgres', $info_sql),
		$primary->safe_psql('postgres', $info_sql),
		"$label: kdindex_info on standby = primary");
	is(count_via_index($standby, $queries[1]), "$n|$n",
		"$label: standby finds all $n rows through the index");
	is(count_via_index($primary, $queries[1]), "$n|$n",
		"$label: primary finds all $n rows through the index");
}

compare('after build', 2300);

# ---------------------------------------------------------------- deletes + VACUUM
$primary->safe_psql('postgres', 'DELETE FROM t WHERE id % 3 = 0 OR id BETWEEN 100 AND 400');
$primary->safe_psql('postgres', 'VACUUM t');
my $n = $primary->safe_psql('postgres', 'SELECT count(*) FROM t');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT count(*) FROM t'), $n,
	'standby row count after VACUUM');
compare('after delete + vacuum', $n);
is($standby->safe_psql('postgres',
		"SET enable_seqscan = off; SET enable_bitmapscan = off; SET kdindex.rerank = 0; "
		  . "SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '$queries[2]' LIMIT 100000) s "
		  . "WHERE id % 3 = 0 OR id BETWEEN 100 AND 400"),
	'0', 'standby: deleted rows are not returned');

# inserts after VACUUM (may reuse freed index space) replicate too
$primary->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(5001, 5400) i");
$n = $primary->safe_psql('postgres', 'SELECT count(*) FROM t');
$primary->wait_for_catchup($standby);
compare('after re-insert', $n);

# REINDEX on the primary (a new relfilenode) replicates too
$primary->safe_psql('postgres', 'REINDEX INDEX t_v_idx');
$primary->wait_for_catchup($standby);
compare('after REINDEX', $n);
KdTest::verify_ok($primary, 't_v_idx', 'primary');
KdTest::verify_ok($standby, 't_v_idx', 'standby');

# a stored vector is its own nearest neighbour on the standby
my $q5123 = $primary->safe_psql('postgres', 'SELECT v::text FROM t WHERE id = 5123');
is(knn($standby, $q5123, 1, 100000), '5123',
	'standby: new row is its own nearest neighbour');

# the standby can be promoted and then write to the index
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
  or die 'standby was not promoted';
$standby->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[vec_sql('i')]} FROM generate_series(6001, 6100) i");
is(count_via_index($standby, $queries[3]), ($n + 100) . '|' . ($n + 100),
	'promoted standby: inserts are indexed');
is(knn($standby, $queries[4], 10, 100000), exact($standby, $queries[4], 10),
	'promoted standby: index answer is exact');
KdTest::verify_ok($standby, 't_v_idx', 'promoted standby');

$standby->stop;
$primary->stop;
done_testing();
