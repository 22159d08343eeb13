
# ALTER EXTENSION kdindex UPDATE from 0.1.0, the first release:
#  - indexes built under 0.1.0 answer the same top-10 afterwards, and
#    kdindex_verify finds them sound;
#  - the upgraded extension has exactly the objects, with the same
#    definitions, as a fresh CREATE EXTENSION of the new version;
#  - with pgvector: 0.1.0's vector operator classes leave kdindex (a WARNING
#    says so), an index on a vector column keeps working through the update,
#    and CREATE EXTENSION kdindex_vector adopts them, giving the catalog of a
#    fresh kdindex_vector.

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

my $has_pgvector = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") eq '1';

# with pgvector, 0.1.0 made the vector operator classes members of kdindex
$node->safe_psql('postgres', 'CREATE EXTENSION vector') if $has_pgvector;
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
if ($has_pgvector)
{
	$node->safe_psql('postgres', q{
ALTER TABLE t ADD COLUMN pv vector(16);
UPDATE t SET pv = v::vector;
CREATE INDEX t_vec ON t USING kdindex (pv vector_cosine_ops) WITH (m = 4);
});
	push @indexes, 't_vec';
}

# the top-10 of a few queries through one index (the others disabled)
sub top10
{
	my ($index) = @_;
	my $op = $index eq 't_aq' ? '<#>' : '<->';
	my $col = 'v';
	($op, $col) = ('<=>', 'pv') if $index eq 't_vec';
	my $query = vec_sql('q + 100000');
	$query .= '::vector' if $index eq 't_vec';
	my $others = join(', ', map { "$_" } grep { $_ ne $index } @indexes);
	return $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SET enable_bitmapscan = off;
BEGIN;
UPDATE pg_index SET indisvalid = false WHERE indexrelid::regclass::text IN
  (@{[ join(', ', map { "'$_'" } grep { $_ ne $index } @indexes) ]});
SELECT string_agg(ids, ' | ' ORDER BY q) FROM (
  SELECT q, (SELECT string_agg(id::text, ',') FROM
     (SELECT id FROM t ORDER BY $col $op $query LIMIT 10) s) AS ids
  FROM generate_series(1, 5) q) x;
ROLLBACK;
});
}

my %before = map { $_ => top10($_) } @indexes;

my ($stdout, $stderr);
$node->psql('postgres', 'ALTER EXTENSION kdindex UPDATE',
	stdout => \$stdout, stderr => \$stderr, on_error_stop => 1);
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'kdindex'"),
	'0.2.0', 'updated to 0.2.0');
if ($has_pgvector)
{
	like($stderr,
		qr/WARNING:  operator classes public.vector_cosine_ops, public.vector_ip_ops, public.vector_l2_ops for pgvector are no longer part of kdindex.*\n.*CREATE EXTENSION kdindex_vector SCHEMA public adopts them/,
		'the update says it detached the vector operator classes, and what adopts them');
	is(top10('t_vec'), $before{t_vec}, 't_vec answers the same top-10 between the update and kdindex_vector');
	$node->safe_psql('postgres', 'CREATE EXTENSION kdindex_vector');
}
else
{
	is($stderr, '', 'the update says nothing without pgvector');
}

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

if ($has_pgvector)
{
	# kdindex_vector holds the adopted operator classes as a fresh one holds its own
	my $vcatalog = q{
SELECT pg_describe_object(d.classid, d.objid, d.objsubid),
	   oc.opcintype::regtype, oc.opcdefault,
	   (SELECT string_agg(format('%s %s %s', a.amopstrategy, a.amopopr::regoperator,
		  (SELECT opfname FROM pg_opfamily WHERE oid = a.amopsortfamily)), ',')
		  FROM pg_amop a WHERE a.amopfamily = oc.opcfamily),
	   (SELECT string_agg(format('%s %s', p.amprocnum, p.amproc::regprocedure), ',')
		  FROM pg_amproc p WHERE p.amprocfamily = oc.opcfamily)
  FROM pg_depend d LEFT JOIN pg_opclass oc ON d.classid = 'pg_opclass'::regclass AND oc.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'kdindex_vector')
 ORDER BY 1;
};
	$node->safe_psql('fresh', 'CREATE EXTENSION vector; CREATE EXTENSION kdindex_vector');
	is($node->safe_psql('postgres', $vcatalog), $node->safe_psql('fresh', $vcatalog),
		'kdindex_vector adopted 0.1.0\'s operator classes: the catalog of a fresh kdindex_vector');
	is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
 WHERE am.amname = 'kdindex' AND NOT EXISTS
   (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_opclass'::regclass AND d.objid = oc.oid AND d.deptype = 'e')}),
		'0', 'no operator class of kdindex is left outside an extension');
	is(top10('t_vec'), $before{t_vec}, 't_vec answers the same top-10 under kdindex_vector');
	$node->safe_psql('postgres', "SELECT kdindex_verify('t_vec', true)");
	pass('t_vec is sound under kdindex_vector');
	# now pgvector can go without taking kdindex along
	$node->safe_psql('postgres', 'DROP EXTENSION vector CASCADE');
	is($node->safe_psql('postgres', "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname LIKE 'kd%'"),
		'kdindex', 'DROP EXTENSION vector CASCADE leaves kdindex');
	@indexes = grep { $_ ne 't_vec' } @indexes;
	is(top10('t_pq'), $before{t_pq}, 't_pq still answers after pgvector is gone');
}

# what changed in 0.2.0 works on the upgraded database
# (kdindex_recall scans the index it is given, whichever the planner prefers)
is($node->safe_psql('postgres', q{
SELECT kdindex_teacher('t', 'v', 't_teacher', k => 10, nqueries => 20);
SELECT queries FROM kdindex_recall('t_pq', 't_teacher');
SELECT queries FROM kdindex_recall('t_ivf', 't_teacher');
}), "20\n20\n20", 'kdindex_recall (now in C) runs on the upgraded database');

done_testing();
