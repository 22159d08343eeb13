
# kdindex_verify against indexes corrupted on disk: with the server stopped,
# bytes of the meta page, of a data page's opaque area, of a tuple's heap TID,
# of the codebook or of the list directory are overwritten (or a chain link
# cut); kdindex_verify must then raise an ERROR with SQLSTATE XX002 naming the
# problem.  A tuple removed by hand (its page's count lowered) or a TID
# written twice passes the page checks and is caught by heapallindexed.  After
# each case the file is put back and the index is sound again.

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use KdTest;

my $DIM = 8;
my $BLCKSZ = 8192;
my $CONTENTS = 24;                  # MAXALIGN(SizeOfPageHeaderData)
my $OPAQUE = $BLCKSZ - 16;          # KdPageOpaqueData: next, ntuples, flags, unused, page_id
my $TUPSIZE = 6 + 4 + 1;            # heap TID + PQ code of m = 4 bytes + the row term

my $node = PostgreSQL::Test::Cluster->new('verify');
$node->init;
$node->append_conf('postgresql.conf', "autovacuum = off\nlog_statement = none\n");
$node->start;
$node->safe_psql('postgres', qq{
CREATE EXTENSION kdindex;
CREATE TABLE t (id int PRIMARY KEY, v real[]);
INSERT INTO t SELECT i, @{[ KdTest::vec_sql('i', $DIM) ]} FROM generate_series(1, 3000) i;
CREATE INDEX t_pq ON t USING kdindex (v) WITH (m = 4);
CREATE INDEX t_ivf ON t USING kdindex (v) WITH (m = 4, lists = 2);
});
KdTest::verify_ok($node, 't_pq', 'as built');
KdTest::verify_ok($node, 't_ivf', 'as built');

my %file = map {
	$_ => $node->data_dir . '/' . $node->safe_psql('postgres', "SELECT pg_relation_filepath('$_')")
} ('t_pq', 't_ivf');

sub slurp
{
	my ($path) = @_;
	open my $fh, '<:raw', $path or die "open $path: $!";
	local $/;
	my $data = <$fh>;
	close $fh;
	return $data;
}

sub put_bytes
{
	my ($path, $offset, $bytes) = @_;
	open my $fh, '+<:raw', $path or die "open $path: $!";
	sysseek($fh, $offset, 0) or die "seek: $!";
	syswrite($fh, $bytes) == length($bytes) or die "write: $!";
	close $fh;
}

# the server is stopped while the files are read and written
$node->stop;
my %original = map { $_ => slurp($file{$_}) } keys %file;

sub u32 { my ($idx, $off) = @_; return unpack('L', substr($original{$idx}, $off, 4)) }
sub u16 { my ($idx, $off) = @_; return unpack('S', substr($original{$idx}, $off, 2)) }
sub next_of { my ($idx, $blk) = @_; return u32($idx, $blk * $BLCKSZ + $OPAQUE) }

# the meta page (block 0; KdMetaPageData after the page header)
my $META = $CONTENTS;
is(u32('t_pq', $META), 0x4B44494E, 'the meta page begins with kdindex\'s magic number');
my $blob_head = u32('t_pq', $META + 28);
my $data_head = u32('t_pq', $META + 36);
my $data_tail = u32('t_pq', $META + 40);
my @chain = ($data_head);
push @chain, next_of('t_pq', $chain[-1]) while next_of('t_pq', $chain[-1]) != 0xFFFFFFFF;
cmp_ok(scalar(@chain), '>=', 3, 'the data chain has at least three pages (' . scalar(@chain) . ')');
is($chain[-1], $data_tail, 'the chain ends at the meta page\'s tail');

# the heap TID of tuple i on block blk, as "(block,offset)"
sub tid_at
{
	my ($blk, $i) = @_;
	my ($hi, $lo, $off) = unpack('SSS', substr($original{t_pq}, $blk * $BLCKSZ + $CONTENTS + $i * $TUPSIZE, 6));
	return '(' . ($hi * 65536 + $lo) . ",$off)";
}

# Apply the patches (offset => bytes) to a copy of the original index file,
# start the server and run kdindex_verify; the original is put back after.
sub with_corruption
{
	my ($idx, $patches, $heapallindexed) = @_;
	open my $fh, '>:raw', $file{$idx} or die;
	print $fh $original{$idx};
	close $fh;
	put_bytes($file{$idx}, $_->[0], $_->[1]) foreach @$patches;
	$node->start;
	my ($stdout, $stderr);
	$node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT kdindex_verify('$idx', heapallindexed => $heapallindexed);",
		stdout => \$stdout, stderr => \$stderr);
	$node->stop;
	open $fh, '>:raw', $file{$idx} or die;
	print $fh $original{$idx};
	close $fh;
	return $stderr;
}

# kdindex_verify(idx) fails with XX002 and a message matching $re
sub corrupt_ok
{
	my ($label, $idx, $patches, $re, $heapallindexed) = @_;
	my $err = with_corruption($idx, $patches, $heapallindexed // 'false');
	like($err, qr/ERROR:  XX002: index "$idx" is corrupt: $re/, $label);
}

my $second = $chain[1];
my $pack32 = sub { pack('L', $_[0]) };

corrupt_ok('meta page: magic number', 't_pq', [ [ $META, $pack32->(0x12345678) ] ],
	qr/the meta page has magic number 0x12345678, not 0x4B44494E/);
corrupt_ok('meta page: nbits', 't_pq', [ [ $META + 22, pack('s', 5) ] ],
	qr/the meta page has nbits = 5/);
corrupt_ok('meta page: code size', 't_pq', [ [ $META + 24, pack('s', 7) ] ],
	qr/the meta page has codes of 7 bytes, not 4/);
corrupt_ok('meta page: tail before the end of the chain', 't_pq', [ [ $META + 40, $pack32->($second) ] ],
	qr/the data chain goes on past its tail, block $second, to block $data_tail/);
corrupt_ok('meta page: a free page not on the chain', 't_pq',
	[ [ $META + 44, pack('S', 1) ], [ $META + 48, $pack32->($blob_head) ] ],
	qr/the meta page names block $blob_head as a page with room, but it is not on the data chain/);
corrupt_ok('meta page: a retired chain that is a live one', 't_pq',
	[ [ $META + 336, pack('S', 1) ], [ $META + 344, $pack32->($second) . $pack32->(0xFFFFFFFF) ] ],
	qr/block $second is on the data chain and on retired data chain 0/);

corrupt_ok('data page: flagged free', 't_pq', [ [ $second * $BLCKSZ + $OPAQUE + 6, pack('S', 8) ] ],
	qr/block $second of the data chain is marked free/);
corrupt_ok('data page: page id', 't_pq', [ [ $second * $BLCKSZ + $OPAQUE + 10, pack('S', 0x1234) ] ],
	qr/block $second of the data chain has page id 0x1234, not 0xFF8A/);
corrupt_ok('data page: tuple count', 't_pq', [ [ $second * $BLCKSZ + $OPAQUE + 4, pack('S', 9999) ] ],
	qr/block $second of the data chain holds 9999 tuples, more than the \d+ a page has room for/);
corrupt_ok('data page: chain cut', 't_pq', [ [ $second * $BLCKSZ + $OPAQUE, $pack32->(0xFFFFFFFF) ] ],
	qr/the data chain ends at block $second, but its tail is block $data_tail/);
corrupt_ok('data page: link to the meta page', 't_pq', [ [ $second * $BLCKSZ + $OPAQUE, $pack32->(0) ] ],
	qr/block 0 is on the meta page and on the data chain/);
corrupt_ok('data page: link past the end', 't_pq', [ [ $second * $BLCKSZ + $OPAQUE, $pack32->(100000) ] ],
	qr/block $second of the data chain links to block 100000, past the end of the index/);
corrupt_ok('data page: a cycle', 't_pq', [ [ $data_tail * $BLCKSZ + $OPAQUE, $pack32->($data_head) ] ],
	qr/the data chain loops back to block $data_head/);
corrupt_ok('data page: codebook page linked in', 't_pq', [ [ $second * $BLCKSZ + $OPAQUE, $pack32->($blob_head) ] ],
	qr/block $blob_head is on the codebook chain and on the data chain/);

corrupt_ok('tuple: heap TID offset 0', 't_pq', [ [ $second * $BLCKSZ + $CONTENTS + 4, pack('S', 0) ] ],
	qr/tuple 0 on block $second of the data chain has heap TID \(\d+,0\), an invalid offset/);
corrupt_ok('tuple: heap TID past the table', 't_pq', [ [ $second * $BLCKSZ + $CONTENTS, pack('SS', 100, 0) ] ],
	qr/tuple 0 on block $second of the data chain points to block 6553600 of table "t"/);

my $blob_size = u32('t_pq', $META + 32);
corrupt_ok('codebook: magic number', 't_pq', [ [ $blob_head * $BLCKSZ + $CONTENTS, $pack32->(0) ] ],
	qr/the codebook blob has magic number 0x00000000/);
corrupt_ok('codebook: m = 0 in its header', 't_pq', [ [ $blob_head * $BLCKSZ + $CONTENTS + 12, $pack32->(0) ] ],
	qr/the codebook blob describes quantizer 1, dim = 8, m = 0/);
corrupt_ok('codebook: size beyond the index', 't_pq', [ [ $META + 32, $pack32->(0x7FFFFFFF) ] ],
	qr/the meta page of a trained index has a codebook of 2147483647 bytes at block $blob_head/);
corrupt_ok('codebook: size', 't_pq', [ [ $META + 32, $pack32->($blob_size - 100) ] ],
	qr/block $blob_head of the codebook chain holds $blob_size bytes, not ${\($blob_size - 100)}/);
corrupt_ok('codebook: linked to a data page', 't_pq', [ [ $blob_head * $BLCKSZ + $OPAQUE, $pack32->($data_head) ] ],
	qr/block $data_head of the codebook chain has flags 0x0004, not 0x0002/);
corrupt_ok('codebook: bytes on a page', 't_pq', [ [ $blob_head * $BLCKSZ + 12, pack('S', $CONTENTS + 10) ] ],
	qr/block $blob_head of the codebook chain holds 10 bytes/);

# heapallindexed: a tuple dropped from a page, a TID written twice
my $ntup = u16('t_pq', $second * $BLCKSZ + $OPAQUE + 4);
my $pd_lower = u16('t_pq', $second * $BLCKSZ + 12);
my $dropped = [ [ $second * $BLCKSZ + $OPAQUE + 4, pack('S', $ntup - 1) ],
	[ $second * $BLCKSZ + 12, pack('S', $pd_lower - $TUPSIZE) ] ];
unlike(with_corruption('t_pq', $dropped, 'false'), qr/ERROR/, 'a dropped tuple: the pages are sound');
my $lost = tid_at($second, $ntup - 1);
corrupt_ok('heapallindexed: a dropped tuple', 't_pq', $dropped,
	qr/row \Q$lost\E of table "t" is not in the index/, 'true');
my $twice = tid_at($second, 0);
corrupt_ok('heapallindexed: a TID twice', 't_pq',
	[ [ $second * $BLCKSZ + $CONTENTS + $TUPSIZE, substr($original{t_pq}, $second * $BLCKSZ + $CONTENTS, 6) ] ],
	qr/row \Q$twice\E of table "t" is indexed twice/, 'true');

# a chain cut short with its tail moved along: sound pages, leaked pages, lost rows
my $cut = [ [ $data_head * $BLCKSZ + $OPAQUE, $pack32->(0xFFFFFFFF) ], [ $META + 40, $pack32->($data_head) ] ];
unlike(with_corruption('t_pq', $cut, 'false'), qr/ERROR/, 'a chain cut short: the pages are sound');
my $err = with_corruption('t_pq', $cut, 'true');
like($err, qr/NOTICE:  00000: index "t_pq" has ${\(scalar(@chain) - 1)} pages that no chain reaches/,
	'a chain cut short: the pages after the cut are leaked');
like($err, qr/ERROR:  XX002: index "t_pq" is corrupt: row \(\d+,\d+\) of table "t" is not in the index/,
	'a chain cut short: the rows on them are missing');

# IVF: the list directory
my $dir = u32('t_ivf', $META + 476);
my $list0 = u32('t_ivf', $dir * $BLCKSZ + $CONTENTS);
my $list1 = u32('t_ivf', $dir * $BLCKSZ + $CONTENTS + 12);
corrupt_ok('list directory: page id', 't_ivf', [ [ $dir * $BLCKSZ + $OPAQUE + 10, pack('S', 0) ] ],
	qr/block $dir of the list directory has page id 0x0000/);
corrupt_ok('list directory: entry count', 't_ivf', [ [ $dir * $BLCKSZ + $OPAQUE + 4, pack('S', 3) ] ],
	qr/block $dir of the list directory holds 3 entries/);
corrupt_ok('list directory: two lists share a chain', 't_ivf', [ [ $dir * $BLCKSZ + $CONTENTS + 12, $pack32->($list0) ] ],
	qr/block $list0 is on the data chain of list 0 and on the data chain of list 1/);
corrupt_ok('list directory: a tail not on the list', 't_ivf', [ [ $dir * $BLCKSZ + $CONTENTS + 4, $pack32->($list1) ] ],
	qr/the data chain of list 0 ends at block \d+, but its tail is block $list1/);
corrupt_ok('meta page: lists', 't_ivf', [ [ $META + 472, $pack32->(3) ] ],
	qr/the codebook blob describes .* 2 lists .* the meta page .* 3 lists/);

# every file is back as it was
$node->start;
KdTest::verify_ok($node, 't_pq', 'restored');
KdTest::verify_ok($node, 't_ivf', 'restored');
$node->stop;
done_testing();
