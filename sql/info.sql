-- kdindex_info: what the index holds and what it costs.  784 dimensions, as
-- Fashion-MNIST: 16 one-byte codes and a 6-byte TID per row.
CREATE TABLE wide (id int, v real[]);
INSERT INTO wide SELECT i, make_vec(i, 784) FROM generate_series(1, 2000) i;
CREATE INDEX wide_kd ON wide USING kdindex (v) WITH (sample = 1000);
SELECT quantizer, metric, dim, m, nbits, code_bytes, trained, rows, train_rows
  FROM kdindex_info('wide_kd');
-- sizes: the meta page, the codebooks (half floats: 16 x 256 x 49 x 2 bytes,
-- plus a header) and data pages of 22-byte tuples
SELECT codebook_bytes, total_bytes = pg_relation_size('wide_kd') AS total_is_relation_size,
	   total_bytes / 8192 AS pages, round(bytes_per_row) AS bytes_per_row
  FROM kdindex_info('wide_kd');
SELECT train_mse > 0 AS has_mse, train_seconds >= 0 AS has_seconds FROM kdindex_info('wide_kd');
DROP TABLE wide;
