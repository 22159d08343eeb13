
# VACUUM racing self-training never loses a row.
#
# An untrained index whose insert counter is past the threshold trains itself
# in the next insert.  Here that insert runs while a slow VACUUM is in its
# "vacuuming indexes" phase.  Before the fix the training switched the index
# to a new chain under the VACUUM, which then published pages of the retired
# chain as free room; the rows inserted afterwards went there, out of reach of
# every scan.  Now the training waits for a later insert (it needs the
# table's ShareUpdateExclusiveLock, which VACUUM holds), and VACUUM publishes
# nothing once the generation it walked has changed.  Every row must be
# reachable through the index, before and after the training.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;

my $DIM = 4;
my $ROWS = 30000;

sub vec_sql { return KdTest::vec_sql($_[0], $DIM) }

my $node = PostgreSQL::Test::Cluster->new('vacuum_train');
$node->init;
$node->append_conf('postgresql.conf', qq{
autovacuum = off
log_statement = none
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kdindex');

# an index on an empty table: lists = 800 needs 31,200 rows to train, so
# 30,000 rows leave it untrained; then lists = 0 brings the threshold down to
# 624 and the next insert trains it
$node->safe_psql('postgres', qq{
CREATE TABLE t (id int, v real[]);
CREATE INDEX t_kd ON t USING kdindex (v) WITH (nbits = 4, m = 2, lists = 800);
INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(1, $ROWS) i;
VACUUM t;
DELETE FROM t WHERE id <= 1000;
ALTER INDEX t_kd SET (lists = 0);
});
is($node->safe_psql('postgres', "SELECT trained FROM kdindex_info('t_kd')"), 'f',
	'the index is untrained before the VACUUM');

# every row reachable through the index: an ordered walk of all of it
sub reachable
{
	return $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SET kdindex.rerank = 0; SET kdindex.max_scan_tuples = 0;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '{0,0,0,0}') s;
});
}

# a slow VACUUM in the background; the heap pages are all-visible but the
# few with the deleted rows, so it soon reaches the index phase and crawls
# through the index's pages (100 ms each)
my $vacuum = $node->background_psql('postgres', on_error_stop => 0);
$vacuum->query_until(qr/started/, qq{
SET vacuum_cost_delay = 100;
SET vacuum_cost_limit = 1;
\\echo started
VACUUM t;
\\echo vacuumed
});
$node->poll_query_until('postgres',
	"SELECT phase = 'vacuuming indexes' FROM pg_stat_progress_vacuum WHERE relid = 't'::regclass")
  or die 'the VACUUM did not reach its index phase';

# the insert that would train the index, during the index phase
my ($stdout, $stderr);
$node->psql('postgres', "INSERT INTO t VALUES (100001, @{[ vec_sql(100001) ]})",
	stdout => \$stdout, stderr => \$stderr);
is($node->safe_psql('postgres',
	"SELECT phase FROM pg_stat_progress_vacuum WHERE relid = 't'::regclass"),
	'vacuuming indexes', 'the insert ran while the VACUUM was in its index phase');
$vacuum->query_until(qr/vacuumed/, "");
$vacuum->quit;

# 49 more rows, then every row must be found
$node->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(100002, 100050) i");
my $count = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
is($count, $ROWS - 1000 + 50, 'the table holds every row');
is(reachable(), $count, 'every row is reachable through the index');
is($node->safe_psql('postgres', "SELECT rows FROM kdindex_info('t_kd')"), $count,
	'the index holds one entry per row');
is($node->safe_psql('postgres', "SELECT trained FROM kdindex_info('t_kd')"), 't',
	'the index trained itself once the VACUUM was over');

# a VACUUM after the training: it cleans the new chain, recycles the old one
$node->safe_psql('postgres', 'DELETE FROM t WHERE id % 10 = 0; VACUUM t');
$count = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
is(reachable(), $count, 'after another delete and VACUUM, every row is reachable');
$node->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(200001, 203000) i");
$count = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
is(reachable(), $count, 'and after inserts into the recycled room');
KdTest::verify_ok($node, 't_kd', 'after the race and the recycling');

$node->stop;
done_testing();
