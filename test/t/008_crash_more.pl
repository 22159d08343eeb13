
# kill -9 of a backend (the postmaster then ends every session and runs crash
# recovery) in the middle of kdindex's longer operations:
#  - a parallel CREATE INDEX (max_parallel_maintenance_workers = 2), once
#    killing a parallel worker and once the leader: no index is left behind,
#    and the build then succeeds;
#  - a VACUUM while it walks the index's pages (cost-based delay slows it);
#  - the INSERT that crosses an untrained index's threshold and trains it
#    (OPQ at 512 dimensions with 40 alternations: a few seconds);
# after each recovery kdindex_verify(heapallindexed) passes (when the
# extension has it), every live row is reached through the index, and a
# streaming standby answers the same top 10 as the primary.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::RealBin;
use KdTest;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_buffers = 64MB
maintenance_work_mem = 128MB
max_parallel_maintenance_workers = 2
max_worker_processes = 8
restart_after_crash = on
autovacuum = off
log_statement = none
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION kdindex');

# a standby from the start: everything below reaches it through WAL
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

sub vec_sql { return KdTest::vec_sql($_[0], $_[1]) }

# kill -9 the backend with this pid; wait until the server is back
my $crashes = 0;
sub crash
{
	my ($pid, $what) = @_;
	ok($pid =~ /^\d+$/, "$what: found the process to kill ($pid)");
	kill 'KILL', $pid;
	$crashes++;
	# wait for the postmaster to notice (until then the old sessions may
	# still answer), then for the reset and crash recovery to finish
	my $n = 0;
	foreach (1 .. 300)
	{
		$n = () = slurp_file($primary->logfile) =~ /terminated by signal 9/g;
		last if $n >= $crashes;
		usleep(100_000);
	}
	is($n, $crashes, "$what: the server noticed the kill and reset");
	$primary->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()')
	  or die "$what: the server did not come back";
}

# the pid of the first backend whose activity matches $where, once there is one
sub wait_for_pid
{
	my ($where) = @_;
	my $pid = '';
	foreach (1 .. 600)
	{
		$pid = $primary->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE $where ORDER BY pid LIMIT 1");
		last if $pid ne '';
		usleep(50_000);
	}
	return $pid;
}

# sound, every live row reached, the standby answers as the primary
sub check_index
{
	my ($what, $tbl, $idx, $dim) = @_;
	my $v = KdTest::verify_if_present($primary, 'postgres', $idx);
	like($v, qr/^(sound|absent)$/, "$what: kdindex_verify(heapallindexed): $v");
	my $q = $primary->safe_psql('postgres', 'SELECT ' . vec_sql(-99, $dim) . '::text');
	my $live = $primary->safe_psql('postgres', "SELECT count(*) FROM $tbl");
	my $w = KdTest::walk_index($primary, 'postgres', $tbl, $idx, $q);
	ok($w->{plan}, "$what: the walk uses $idx");
	is("$w->{walked}|$w->{distinct}|$w->{missing}|$w->{extra}", "$live|$live|0|0",
		"$what: the walk reaches all $live live rows, once, and nothing else");

	$primary->wait_for_catchup($standby);
	foreach my $s (1 .. 3)
	{
		my $sql = "SET enable_seqscan = off; SET enable_bitmapscan = off; "
		  . "SELECT string_agg(id::text, ',') FROM (SELECT id FROM $tbl ORDER BY v <-> "
		  . vec_sql(-$s, $dim) . " LIMIT 10) s";
		my $p = $primary->safe_psql('postgres', $sql);
		is($standby->safe_psql('postgres', $sql), $p, "$what: standby top 10 = primary's (query $s)");
	}
	my $ws = KdTest::walk_index($standby, 'postgres', $tbl, $idx, $q);
	is("$ws->{walked}|$ws->{missing}|$ws->{extra}", "$live|0|0",
		"$what: the standby's walk reaches all $live rows");
}

# ---------------------------------------------------------------- parallel CREATE INDEX
my $DIM = 32;
$primary->safe_psql('postgres', qq{
CREATE TABLE big (id int, v real[]);
INSERT INTO big SELECT i, @{[ vec_sql('i', $DIM) ]} FROM generate_series(1, 60000) i;
ALTER TABLE big SET (parallel_workers = 2);
VACUUM big;
});

# AQ encodes slowly: workers run long enough to be caught
my $build = "CREATE INDEX big_aq ON big USING kdindex (v) WITH (quantizer = 'aq', m = 8, sample = 3000)";
foreach my $victim ('parallel worker', 'client backend')
{
	my $bg = $primary->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/started/, "\\echo started\n$build;\n");
	# the workers exist only while the rows are encoded
	my $worker = wait_for_pid("backend_type = 'parallel worker'");
	my $pid = $victim eq 'parallel worker' ? $worker
	  : wait_for_pid("backend_type = 'client backend' AND query LIKE 'CREATE INDEX big_aq%'");
	crash($pid, "parallel build, killing the $victim");
	eval { $bg->quit; };
	is($primary->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'big_aq'"),
		'0', "parallel build, killing the $victim: no index left behind");
}

# now a parallel build that completes
my ($ret, $out, $err) = $primary->psql('postgres',
	"SET client_min_messages = debug1; CREATE INDEX big_pq ON big USING kdindex (v) WITH (m = 16, sample = 5000)");
is($ret, 0, 'a parallel build after the crashes');
like($err, qr/encoding with 2 parallel workers/, 'the build encoded with 2 parallel workers');
check_index('parallel build after the crashes', 'big', 'big_pq', $DIM);

# ---------------------------------------------------------------- VACUUM
# Rows deleted from the first pages only: VACUUM skips the rest of the heap
# (all-visible) and spends its time in the index, where the cost delay holds
# every page for at least 10 ms.
$primary->safe_psql('postgres', 'DELETE FROM big WHERE id <= 4000');
my $bg = $primary->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, qq{
\\echo started
SET vacuum_cost_delay = '10ms';
SET vacuum_cost_limit = 1;
VACUUM (INDEX_CLEANUP ON) big;
});
my $vpid = wait_for_pid(
	"pid IN (SELECT pid FROM pg_stat_progress_vacuum WHERE phase = 'vacuuming indexes')");
usleep(300_000);    # some of the index's pages are compacted by now
is($primary->safe_psql('postgres',
	"SELECT phase FROM pg_stat_progress_vacuum WHERE pid = '$vpid'"), 'vacuuming indexes',
	'VACUUM is still walking the index');
crash($vpid, 'VACUUM');
eval { $bg->quit; };
check_index('after a crash in VACUUM', 'big', 'big_pq', $DIM);
$primary->safe_psql('postgres', 'VACUUM (INDEX_CLEANUP ON) big');
my ($held, $live) = split /\|/, KdTest::list_rows($primary, 'postgres', 'big', 'big_pq');
is($held, $live, 'a VACUUM after the crash leaves the index holding the live rows only');
check_index('VACUUM after the crash', 'big', 'big_pq', $DIM);

# ---------------------------------------------------------------- self-training
my $SDIM = 512;
$primary->safe_psql('postgres', qq{
CREATE TABLE st (id int, v real[]);
CREATE INDEX st_kd ON st USING kdindex (v) WITH (quantizer = 'opq', m = 16, nbits = 4, iterations = 40);
INSERT INTO st SELECT i, @{[ vec_sql('i', $SDIM) ]} FROM generate_series(1, 623) i;
});
is($primary->safe_psql('postgres', "SELECT trained FROM kdindex_info('st_kd')"), 'f',
	'st: untrained with 623 rows');
$bg = $primary->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/started/, qq{
\\echo started
INSERT INTO st SELECT 624, @{[ vec_sql(624, $SDIM) ]};
});
# one row takes milliseconds; after a second the insert is training
my $ipid = wait_for_pid("query LIKE 'INSERT INTO st SELECT 624%' AND state = 'active' "
	  . "AND now() - query_start > interval '1 s'");
crash($ipid, 'self-training');
eval { $bg->quit; };
is($primary->safe_psql('postgres', "SELECT trained, generation FROM kdindex_info('st_kd')"),
	'f|0', 'killed while training itself: the index is the untrained one');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM st'), '623', 'the killed insert is gone');
check_index('after a crash in self-training', 'st', 'st_kd', $SDIM);

# the next insert trains it
$primary->safe_psql('postgres', "INSERT INTO st SELECT 625, @{[ vec_sql(625, $SDIM) ]}");
is($primary->safe_psql('postgres', "SELECT trained, generation FROM kdindex_info('st_kd')"),
	't|1', 'the next insert trains it');
check_index('trained after the crash', 'st', 'st_kd', $SDIM);

$standby->stop;
$primary->stop;
done_testing();
