
# IVF lists and the 4-bit block layout through a crash and on a replica: the
# list directory, the per-list chains and the block pages are WAL-logged like
# everything else, so after an immediate shutdown (kill -9 equivalent) and on a
# streaming standby every committed row is found through its list, once, and
# the answers are the primary's.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;

my $DIM = 16;

sub vec_sql { return KdTest::vec_sql($_[0], $DIM) }

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_buffers = 16MB
log_statement = none
});
$primary->start;
$primary->safe_psql('postgres', qq{
CREATE EXTENSION kdindex;
CREATE TABLE t (id int PRIMARY KEY, v real[]);
INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(1, 3000) i;
CREATE INDEX t_ivf ON t USING kdindex (v) WITH (m = 8, lists = 12);
CREATE INDEX t_fs ON t USING kdindex (v) WITH (m = 8, nbits = 4, lists = 6);
});

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

my $q = $primary->safe_psql('postgres', 'SELECT ' . vec_sql('-77') . '::text');

# the re-ranked top 10 through the lists
sub top10
{
	my ($node) = @_;
	return $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SET enable_bitmapscan = off; SET kdindex.rerank = 100; SET kdindex.probes = 4;
SELECT string_agg(id::text, ',') FROM (SELECT id FROM t ORDER BY v <-> '$q' LIMIT 10) s;
});
}

# more rows through inserts (into their lists), some deleted and vacuumed
$primary->safe_psql('postgres', qq{
INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(3001, 3500) i;
DELETE FROM t WHERE id % 7 = 0;
VACUUM t;
INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(3501, 3700) i;
});
my $live = $primary->safe_psql('postgres', 'SELECT count(*) FROM t');
my $before = top10($primary);

# Each index alone (the other dropped in a transaction rolled back), codes
# only, every list at once: every live row exactly once.
sub check_every_row
{
	my ($when) = @_;
	foreach my $index ('t_ivf', 't_fs')
	{
		my $other = $index eq 't_ivf' ? 't_fs' : 't_ivf';
		my $out = $primary->safe_psql('postgres', qq{
BEGIN;
DROP INDEX $other;
SET LOCAL enable_seqscan = off; SET LOCAL kdindex.probes = 100; SET LOCAL kdindex.rerank = 0;
SELECT count(*) || '|' || count(DISTINCT id) FROM (SELECT id FROM t ORDER BY v <-> '$q' LIMIT 100000) s;
ROLLBACK;
});
		is($out, "$live|$live", "$when: $index holds every live row once");
	}
}

check_every_row('primary before crash');
$primary->stop('immediate');
$primary->start;
check_every_row('after crash');
is(top10($primary), $before, 'after crash: same top 10');
KdTest::verify_ok($primary, $_, 'after crash') foreach ('t_ivf', 't_fs');

# inserts after recovery go to their lists and are found
$primary->safe_psql('postgres',
	"INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(3701, 3720) i");
is($primary->safe_psql('postgres', qq{
SET enable_seqscan = off; SET kdindex.rerank = 100;
SELECT id FROM t ORDER BY v <-> @{[ vec_sql('3710') ]} LIMIT 1}), '3710',
	'after crash: a new row is found');

# the standby replays it all and answers as the primary
$primary->wait_for_catchup($standby);
is(top10($standby), top10($primary), 'standby: same top 10 as the primary');
is($standby->safe_psql('postgres', qq{
SET enable_seqscan = off; SET kdindex.probes = 100; SET kdindex.rerank = 0;
SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '$q' LIMIT 100000) s}),
	$primary->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'standby: every row through the index');
KdTest::verify_ok($_, 't_ivf', $_->name) foreach ($primary, $standby);
KdTest::verify_ok($_, 't_fs', $_->name) foreach ($primary, $standby);

done_testing();
