
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

# kdindex_verify(idx, heapallindexed => true) when the installed extension has
# it: 'sound' when it raised no error (its NOTICEs, such as leaked pages after
# a crash, go to the test's log), 'absent' when there is no such function,
# else its error message.
sub verify_if_present
{
	my ($node, $db, $idx) = @_;
	return 'absent'
	  if $node->safe_psql($db,
		"SELECT to_regprocedure('kdindex_verify(regclass,boolean)') IS NOT NULL")
	  ne 't';
	my ($ret, $out, $err) = $node->psql($db, "SELECT kdindex_verify('$idx', true)");
	return $err if $ret != 0;
	note("kdindex_verify('$idx'): $err") if $err;
	return 'sound';
}

# An ordered walk of the whole of $tbl through its kdindex index $idx towards
# the query literal $q: sequential and bitmap scans off, kdindex.max_scan_tuples
# = 0 (no bound), every list probed at once, re-rank depth $opt{rerank}
# (default 0: codes only, which returns rows in code order and so skips none;
# a re-ranked walk is in exact order and may skip a row that re-ranks nearer
# than one already returned).  Returns a hash: plan (does the walk use $idx),
# walked, distinct, missing (live ids the walk did not return) and extra (ids
# returned that are not live), compared with EXCEPT both ways.
sub walk_index
{
	my ($node, $db, $tbl, $idx, $q, %opt) = @_;
	my $col = $opt{column} // 'v';
	my $op = $opt{op} // '<->';
	my $set = 'SET enable_seqscan = off; SET enable_bitmapscan = off; '
	  . 'SET kdindex.max_scan_tuples = 0; SET kdindex.probes = 32768; '
	  . 'SET kdindex.rerank = ' . ($opt{rerank} // 0) . '; ';
	my $walk = "SELECT id FROM $tbl ORDER BY $col $op '$q' LIMIT 1000000000";
	my $plan = $node->safe_psql($db, "$set EXPLAIN (COSTS OFF) $walk");
	my $out = $node->safe_psql($db, qq{$set
WITH w AS MATERIALIZED ($walk)
SELECT (SELECT count(*) FROM w), (SELECT count(DISTINCT id) FROM w),
       (SELECT count(*) FROM (SELECT id FROM $tbl EXCEPT SELECT id FROM w) m),
       (SELECT count(*) FROM (SELECT id FROM w EXCEPT SELECT id FROM $tbl) x)});
	my %r;
	@r{qw(walked distinct missing extra)} = split /\|/, $out;
	$r{plan} = $plan =~ /Index Scan using $idx\b/ ? 1 : 0;
	return \%r;
}

# The rows $idx's lists hold (kdindex_lists, whatever a scan's order) and the
# live rows of its table: equal after a VACUUM with nothing running.
sub list_rows
{
	my ($node, $db, $tbl, $idx) = @_;
	return $node->safe_psql($db,
		"SELECT (SELECT sum(rows) FROM kdindex_lists('$idx')) || '|' || (SELECT count(*) FROM $tbl)");
}

1;
