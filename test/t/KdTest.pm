
# Helpers shared by kdindex's TAP tests.

package KdTest;

use strict;
use warnings;
use Test::More;

# A deterministic, well-mixed pseudo-random vector in [-1, 1)^dim for an
# integer seed expression, as SQL (hashint4 is PostgreSQL's
# platform-independent int hash).
sub vec_sql
{
	my ($seed, $dim) = @_;
	return "ARRAY(SELECT (hashint4(($seed) * $dim + j)::float8 / 2147483648)::real "
	  . "FROM generate_series(0, $dim - 1) j)";
}

# One test: kdindex_verify finds $index on $node sound, page by page and with
# heapallindexed (every live row of the table in it exactly once).  Returns
# what it printed (a NOTICE counts leaked pages).
sub verify_ok
{
	my ($node, $index, $label) = @_;
	my ($stdout, $stderr);
	my $ret = $node->psql('postgres',
		"SELECT kdindex_verify('$index'); SELECT kdindex_verify('$index', heapallindexed => true);",
		stdout => \$stdout, stderr => \$stderr, on_error_stop => 1);
	ok($ret == 0 && $stderr !~ /ERROR/, "$label: kdindex_verify finds $index sound")
	  or diag($stderr);
	note($stderr) if $stderr;
	return $stderr;
}

1;
