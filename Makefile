# kdindex — PGXS build.  `make demo` and `make test` do all set-up (see README.md).
# kdindex_vector holds the operator classes for pgvector's types: an extension
# of its own that requires both, so that pg_dump creates it after them.
EXTENSION = kdindex kdindex_vector
EXTVERSION = 0.2.0
MODULE_big = kdindex
DATA = sql/kdindex--0.1.0.sql sql/kdindex--0.1.0--0.2.0.sql sql/kdindex--$(EXTVERSION).sql \
       sql/kdindex_vector--$(EXTVERSION).sql

OBJS = src/kdindex.o src/build.o src/insert.o src/scan.o src/vacuum.o \
       src/pages.o src/generation.o src/switch.o src/heap.o src/vector.o src/distance.o src/info.o \
       src/fastscan.o src/security.o src/citus.o src/verify.o src/verifyblob.o src/verifyheap.o src/scanlists.o src/ivftables.o src/refine.o \
       src/quant/quantizer.o src/quant/kmeans.o src/quant/pq.o src/quant/opq.o src/quant/aq.o src/quant/aqstart.o src/quant/ivf.o \
       src/quant/rowterm.o src/quant/rowtermfit.o \
       src/distill/teacher.o src/distill/train.o src/distill/retrain.o src/distill/chains.o src/distill/recall.o src/distill/codewords.o src/distill/ranking.o src/distill/student.o

REGRESS = setup operators l1 bad_input build quantizers aq_ip scan ivf ivftables fastscan walk vacuum churn \
          selftrain distill train info verify fuzz overflow cosine_zero pgvector privileges hot limits \
          iterative rerank costs citus rowterm refine
REGRESS_OPTS = --inputdir=. --load-extension=kdindex
ISOLATION = insert_scan train_insert privileges_lock
ISOLATION_OPTS = --inputdir=test --load-extension=kdindex
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

OPENBLAS_INC := $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/aarch64-linux-gnu/openblas-pthread /usr/include/openblas))
PG_CPPFLAGS = -I$(srcdir)/src $(if $(OPENBLAS_INC),-I$(OPENBLAS_INC))
SHLIB_LINK = -lopenblas -lm
PG_CFLAGS = -std=gnu99 -Werror=implicit-function-declaration

EXTRA_CLEAN = results regression.diffs regression.out output_iso tmp_check log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS knows nothing of our headers: every object depends on all of them
$(OBJS): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/quant/*.h $(srcdir)/src/distill/*.h)

# The distance kernels are compiled for a baseline x86-64 and for AVX2+FMA;
# the best clone is picked at load time (ifunc), never with -march=native.
# Reassociation lets the compiler vectorise the float reductions.
src/distance.o: CFLAGS += -O3 -fno-math-errno -fno-trapping-math -fassociative-math -fno-signed-zeros

.PHONY: deps test demo bench fuzz
deps:
	test/scripts/deps.sh

test: deps
	test/scripts/test.sh

demo: deps
	test/scripts/demo.sh

# SUITE=fmnist (default) | scale | scale-960 | ip | fmnist1m | distill | distill-ip |
# fastscan; SUITE=fmnist1m times every index in paired rounds (test/bench/rounds.py)
bench: deps
	test/scripts/bench.sh $(SUITE)

# SQLsmith for FUZZ_MINUTES (default 10) against kdindex indexes; not part of `make test`
fuzz: deps
	test/scripts/fuzz.sh
