
# Helpers shared by kdindex's TAP tests.

package KdTest;

use strict;
use warnings;

# A deterministic, well-mixed pseudo-random vector in [-1, 1)^dim for an
# integer seed expression, as SQL (hashint4 is PostgreSQL's
# platform-independent int hash).
sub vec_sql
{
	my ($seed, $dim) = @_;
	return "ARRAY(SELECT (hashint4(($seed) * $dim + j)::float8 / 2147483648)::real "
	  . "FROM generate_series(0, $dim - 1) j)";
}

1;
