
# kdindex_train switches codebooks and codes atomically while the index stays
# in use:
#  - rows inserted (one transaction each) while a training runs are all found
#    afterwards, with the new codebooks;
#  - a cancelled training leaves the old index: same generation, same
#    codes-only answers;
#  - after kill -9 of the backend running a training (the server then resets
#    and runs crash recovery), the index is the old one (or, had the switch
#    happened, the new one), never a mix, and it finds every committed row.
# All three for a flat index, then for one with IVF lists (whose retrain
# writes a new list directory and re-reads every list's rows).

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;
use Time::HiRes qw(usleep);

my $DIM = 32;

# a deterministic pseudo-random vector in [-1, 1)^DIM for an integer seed
sub vec_sql { return KdTest::vec_sql($_[0], $DIM) }

my $node = PostgreSQL::Test::Cluster->new('train');
$node->init;
$node->append_conf('postgresql.conf', qq{
wal_level = replica
shared_buffers = 64MB
maintenance_work_mem = 256MB
restart_after_crash = on
log_statement = none
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION kdindex');
$node->safe_psql('postgres', qq{
CREATE TABLE t (id int PRIMARY KEY, v real[]);
INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(1, 6000) i;
SELECT kdindex_teacher('t', 'v', 't_teacher', k => 50, nqueries => 2000);
});

# every row of t found by its own vector, through the index
sub all_found
{
	my ($what) = @_;
	my $missing = $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT count(*) FROM t WHERE id <> ALL (SELECT id FROM t t2 ORDER BY t2.v <-> t.v LIMIT 3);
});
	is($missing, '0', "$what: every row is found through the index");
	my $plan = $node->safe_psql('postgres', qq{
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY v <-> '{1}' LIMIT 3;
});
	like($plan, qr/Index Scan using t_kd/, "$what: the index is used");
}

# codes-only answers to a few queries: they change with the codebooks
sub codes_answers
{
	return $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SET kdindex.rerank = 0;
SELECT string_agg(ids, ';' ORDER BY q) FROM (
  SELECT q, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM t ORDER BY v <-> @{[ vec_sql('q + 100000') ]} LIMIT 5) s) AS ids
  FROM generate_series(1, 5) q) a;
});
}

sub generation
{
	return $node->safe_psql('postgres', "SELECT generation FROM kdindex_info('t_kd')");
}

sub scenarios
{
	my ($with, $base) = @_;
	$node->safe_psql('postgres', "DROP INDEX IF EXISTS t_kd; CREATE INDEX t_kd ON t USING kdindex (v) WITH ($with)");
	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
	# 1. inserts while a training runs
	my $gen0 = generation();
	my $train = $node->background_psql('postgres', on_error_stop => 0);
	$train->query_until(qr/started/, qq{
	\\echo started
	SELECT epochs FROM kdindex_train('t_kd', 't_teacher', epochs => 8);
	\\echo done
	});
	# wait until the training shows in the progress view, then insert
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_progress_create_index WHERE index_relid = 't_kd'::regclass")
	  or die 'the training did not start';
	my $inserted = 0;
	my $during = 0;
	for my $i (1 .. 150)
	{
		$node->safe_psql('postgres', "INSERT INTO t VALUES ($base + $i, @{[ vec_sql($base + $i) ]})");
		$inserted++;
		$during++ if $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_progress_create_index WHERE index_relid = 't_kd'::regclass") eq '1';
	}
	$train->query_until(qr/done/, "");
	$train->quit;
	ok($during > 0, "rows were inserted while the training ran ($during of $inserted)");
	# one switch, or two when the held-out guard wrote the starting quantizer back
	# (with lists the guard compares recall after a re-rank, which training on
	# these rows need not raise)
	my $gen = generation();
	ok($gen == $gen0 + 1 || $gen == $gen0 + 2, "the training switched to a new generation ($gen after $gen0)");
	is($node->safe_psql('postgres', "SELECT rows FROM kdindex_info('t_kd')"),
		$rows + $inserted, 'the index holds every row, those inserted during training included');
	all_found('after training with concurrent inserts');
	KdTest::verify_ok($node, 't_kd', 'after training with concurrent inserts');

	# 2. a cancelled training leaves the old index
	my $gen1 = generation();
	my $before = codes_answers();
	my ($stdout, $stderr);
	$node->psql('postgres', "SET statement_timeout = '1500ms'; SELECT * FROM kdindex_train('t_kd', 't_teacher', epochs => 50)",
		stdout => \$stdout, stderr => \$stderr);
	like($stderr, qr/canceling statement due to statement timeout/, 'the training was cancelled');
	is(generation(), $gen1, 'a cancelled training keeps the generation');
	is(codes_answers(), $before, 'a cancelled training keeps the codes');
	all_found('after a cancelled training');
	KdTest::verify_ok($node, 't_kd', 'after a cancelled training');

	# 3. kill -9 of the backend running a training: the server restarts all
	# sessions and runs crash recovery
	$train = $node->background_psql('postgres', on_error_stop => 0);
	$train->query_until(qr/started/, qq{
	\\echo started
	SELECT * FROM kdindex_train('t_kd', 't_teacher', epochs => 50);
	});
	$node->safe_psql('postgres', "INSERT INTO t VALUES ($base + 1000, @{[ vec_sql($base + 1000) ]})");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_progress_create_index WHERE index_relid = 't_kd'::regclass")
	  or die 'the training did not start';
	usleep(500_000);
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_progress_create_index WHERE index_relid = 't_kd'::regclass");
	kill 'KILL', $pid;
	eval { $train->quit; };
	$node->poll_query_until('postgres', 'SELECT true') or die 'the server did not come back';
	my $gen2 = generation();
	ok($gen2 == $gen1 || $gen2 == $gen1 + 1, 'after the crash: the old or the new generation');
	is(codes_answers(), $before, 'killed mid-training: the old codes, unchanged')
	  if $gen2 == $gen1;
	is($node->safe_psql('postgres', "SELECT rows FROM kdindex_info('t_kd')"),
		$node->safe_psql('postgres', 'SELECT count(*) FROM t'), 'after the crash: one index entry per row');
	all_found('after the crash');
	KdTest::verify_ok($node, 't_kd', 'after the crash');

	# and the index can be trained again
	# (2 epochs when the first run gains nothing and the step backs off)
	is($node->safe_psql('postgres', "SELECT epochs IN (1, 2) FROM kdindex_train('t_kd', 't_teacher', epochs => 1)"),
		't', 'training after recovery works');
	all_found('after retraining');
	KdTest::verify_ok($node, 't_kd', 'after retraining');
}

scenarios('m = 8', 6000);
scenarios('m = 8, lists = 16', 40000);

$node->stop;
done_testing();
