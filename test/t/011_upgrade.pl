
# ALTER EXTENSION kdindex UPDATE from 0.1.0, the first release:
#  - indexes built under 0.1.0 answer the same top-10 afterwards, and
#    kdindex_verify finds them sound;
#  - the upgraded extension has exactly the objects, with the same
#    definitions, as a fresh CREATE EXTENSION of the new version.

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

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "log_statement = none\n");
$node->start;

$node->safe_psql('postgres', qq{
CREATE EXTENSION kdindex VERSION '0.1.0';
CREATE TABLE t (id int PRIMARY KEY, v real[]);
INSERT INTO t SELECT i, @{[ vec_sql('i') ]} FROM generate_series(1, 3000) i;
CREATE INDEX t_pq ON t USING kdindex (v) WITH (m = 4);
CREATE INDEX t_ivf ON t USING kdindex (v) WITH (m = 4, lists = 8);
CREATE INDEX t_fast ON t USING kdindex (v) WITH (m = 8, nbits = 4);
CREATE INDEX t_aq ON t USING kdindex (v float4_ip_ops) WITH (quantizer = 'aq', m = 4);
DELETE FROM t WHERE id % 7 = 0;
VACUUM t;
});
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'kdindex'"),
	'0.1.0', 'installed 0.1.0');

my @indexes = ('t_pq', 't_ivf', 't_fast', 't_aq');

# the top-10 of a few queries through one index (the others disabled)
sub top10
{
	my ($index) = @_;
	my $op = $index eq 't_aq' ? '<#>' : '<->';
	my $others = join(', ', map { "$_" } grep { $_ ne $index } @indexes);
	return $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SET enable_bitmapscan = off;
BEGIN;
UPDATE pg_index SET indisvalid = false WHERE indexrelid::regclass::text IN
  (@{[ join(', ', map { "'$_'" } grep { $_ ne $index } @indexes) ]});
SELECT string_agg(ids, ' | ' ORDER BY q) FROM (
  SELECT q, (SELECT string_agg(id::text, ',') FROM
     (SELECT id FROM t ORDER BY v $op @{[ vec_sql('q + 100000') ]} LIMIT 10) s) AS ids
  FROM generate_series(1, 5) q) x;
ROLLBACK;
});
}

my %before = map { $_ => top10($_) } @indexes;

$node->safe_psql('postgres', 'ALTER EXTENSION kdindex UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'kdindex'"),
	'0.2.0', 'updated to 0.2.0');

for my $index (@indexes)
{
	is(top10($index), $before{$index}, "$index answers the same top-10 after the update");
	$node->safe_psql('postgres', "SELECT kdindex_verify('$index', true)");
	pass("$index is sound after the update");
}

# what the upgraded extension holds, against a fresh install
my $catalog = q{
SELECT pg_describe_object(classid, objid, objsubid) AS obj
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'kdindex')
 ORDER BY 1;
SELECT p.oid::regprocedure, md5(pg_get_functiondef(p.oid)), p.proacl
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'kdindex') AND d.deptype = 'e'
 ORDER BY p.oid::regprocedure::text;
};
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION kdindex');
is($node->safe_psql('postgres', $catalog), $node->safe_psql('fresh', $catalog),
	'the upgraded extension has the objects and definitions of a fresh install');

# what changed in 0.2.0 works on the upgraded database
# (kdindex_recall scans the index it is given, whichever the planner prefers)
is($node->safe_psql('postgres', q{
SELECT kdindex_teacher('t', 'v', 't_teacher', k => 10, nqueries => 20);
SELECT queries FROM kdindex_recall('t_pq', 't_teacher');
SELECT queries FROM kdindex_recall('t_ivf', 't_teacher');
}), "20\n20\n20", 'kdindex_recall (now in C) runs on the upgraded database');

done_testing();
