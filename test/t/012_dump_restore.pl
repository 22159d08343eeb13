
# pg_dump -Fc / pg_restore of kdindex indexes:
#  - real[] under each operator class (everywhere), and with pgvector vector
#    and halfvec under each of kdindex_vector's: pg_restore exits 0 with
#    nothing on stderr, every index is restored with the same definition,
#    answers the same top-10 and is sound (kdindex_verify, heapallindexed);
#  - zero vectors under cosine do not stop the restore (they are left out);
#  - with pgvector, DROP EXTENSION vector CASCADE takes kdindex_vector and
#    the indexes on pgvector's types, and leaves kdindex and its real[]
#    indexes.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;

my $DIM = 16;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', "autovacuum = off\nlog_statement = none\n");
$node->start;

my $has_pgvector = $node->safe_psql('postgres',
	"SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") eq '1';
note($has_pgvector ? 'pgvector is installed' : 'pgvector is not installed: real[] only');

# index => [column, operator, the query's cast]
my %indexes = (
	t_l2 => [ 'v', '<->', '' ],
	t_ip => [ 'v', '<#>', '' ],
	t_cos => [ 'v', '<=>', '' ]);
if ($has_pgvector)
{
	%indexes = (%indexes,
		t_vl2 => [ 'pv', '<->', '::vector' ],
		t_vip => [ 'pv', '<#>', '::vector' ],
		t_vcos => [ 'pv', '<=>', '::vector' ],
		t_hl2 => [ 'h', '<->', '::halfvec' ],
		t_hip => [ 'h', '<#>', '::halfvec' ],
		t_hcos => [ 'h', '<=>', '::halfvec' ]);
}

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION kdindex');
$node->safe_psql('src', q{
CREATE EXTENSION vector;
CREATE EXTENSION kdindex_vector;
CREATE TABLE t (id int PRIMARY KEY, v real[], pv vector(16), h halfvec(16));
}) if $has_pgvector;
$node->safe_psql('src', 'CREATE TABLE t (id int PRIMARY KEY, v real[])') unless $has_pgvector;

# 2,000 rows, every 250th a zero vector
my $row = KdTest::vec_sql('i', $DIM);
$row = "CASE WHEN i % 250 = 0 THEN array_fill(0::real, ARRAY[$DIM]) ELSE $row END";
$node->safe_psql('src', qq{
INSERT INTO t (id, v) SELECT i, $row FROM generate_series(1, 2000) i;
});
$node->safe_psql('src', 'UPDATE t SET pv = v::vector, h = v::halfvec') if $has_pgvector;
$node->safe_psql('src', q{
CREATE INDEX t_l2 ON t USING kdindex (v) WITH (m = 4);
CREATE INDEX t_ip ON t USING kdindex (v float4_ip_ops) WITH (m = 4, lists = 4);
CREATE INDEX t_cos ON t USING kdindex (v float4_cosine_ops) WITH (quantizer = 'opq', m = 4);
VACUUM ANALYZE t;
});
$node->safe_psql('src', q{
CREATE INDEX t_vl2 ON t USING kdindex (pv) WITH (m = 4);
CREATE INDEX t_vip ON t USING kdindex (pv vector_ip_ops) WITH (m = 4);
CREATE INDEX t_vcos ON t USING kdindex (pv vector_cosine_ops) WITH (m = 4, nbits = 4);
CREATE INDEX t_hl2 ON t USING kdindex (h halfvec_l2_ops) WITH (m = 4, lists = 4);
CREATE INDEX t_hip ON t USING kdindex (h halfvec_ip_ops) WITH (m = 4);
CREATE INDEX t_hcos ON t USING kdindex (h halfvec_cosine_ops) WITH (m = 4);
}) if $has_pgvector;

# The top-10 of 5 queries through $index (the plan must use it), and its
# definition
sub answers
{
	my ($db, $index) = @_;
	my ($col, $op, $cast) = @{ $indexes{$index} };
	my $q = KdTest::vec_sql('q + 100000', $DIM) . $cast;
	my $q1 = KdTest::vec_sql('100001', $DIM) . $cast;
	my $plan = $node->safe_psql($db, qq{
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY $col $op $q1 LIMIT 10;
});
	like($plan, qr/Index Scan using $index on t/, "$db: the query on $col $op uses $index");
	return $node->safe_psql($db, qq{
SET enable_seqscan = off;
SELECT pg_get_indexdef('$index'::regclass);
SELECT string_agg(ids, ' | ' ORDER BY q) FROM (
  SELECT q, (SELECT string_agg(id::text, ',') FROM
     (SELECT id FROM t ORDER BY $col $op $q LIMIT 10) s) AS ids
  FROM generate_series(1, 5) q) x;
});
}

my %before = map { $_ => answers('src', $_) } sort keys %indexes;

my $dump = $PostgreSQL::Test::Utils::tmp_check . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, 'src' ], 'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_checks_all([ 'pg_restore', '-d', 'dst', $dump ],
	0, [qr/\A\z/], [qr/\A\z/], 'pg_restore exits 0 with nothing on stderr');

is($node->safe_psql('dst', q{
SELECT string_agg(i.indexrelid::regclass::text, ',' ORDER BY 1)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
 WHERE am.amname = 'kdindex'}), join(',', sort keys %indexes), 'every kdindex index is restored');
for my $index (sort keys %indexes)
{
	is(answers('dst', $index), $before{$index},
		"$index: same definition and top-10 after pg_restore");
	$node->safe_psql('dst', "SELECT kdindex_verify('$index', heapallindexed => true)");
	pass("restored $index is sound");
}
is($node->safe_psql('dst', "SELECT rows FROM kdindex_info('t_cos')"), '1992',
	'the zero vectors are left out of the restored cosine index');

if ($has_pgvector)
{
	is($node->safe_psql('dst', "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'"),
		'kdindex,kdindex_vector,vector', 'the restored database has kdindex, kdindex_vector and vector');
	$node->safe_psql('dst', 'DROP EXTENSION vector CASCADE');
	is($node->safe_psql('dst', "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'"),
		'kdindex', 'DROP EXTENSION vector CASCADE leaves kdindex');
	is($node->safe_psql('dst', q{
SELECT string_agg(i.indexrelid::regclass::text, ',' ORDER BY 1)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
 WHERE am.amname = 'kdindex'}), 't_cos,t_ip,t_l2', 'and its real[] indexes');
	for my $index ('t_cos', 't_ip', 't_l2')
	{
		is(answers('dst', $index), $before{$index}, "$index answers as before without pgvector");
	}
}

done_testing();
