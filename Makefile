# molt — plain Makefile. Targets:
#   make            libmolt.a + the molt CLI (./molt)
#   make test       unit, parity, CLI and short fuzz tests (prints "N passed, M failed")
#   make asan       the whole test suite under ASan + UBSan (separate build dir)
#   make tsan       thread-heavy paths (pool, slots, generate, train, distill) under
#                   ThreadSanitizer (build-tsan; scripts/run_tsan.sh); not part of `make test`
#   make bench      benchmarks (results go in docs/BENCHMARKS.md by hand)
#   make fuzz       longer libFuzzer runs of every parser (clang)
#   make format     clang-format the tree
#   make cuda       the CUDA backend (src/kernels/cuda, nvcc, sm_90) into build-cuda/: libmolt.a
#                   built with -DMOLT_CUDA and build-cuda/tests/test_backend_cuda. `make test`
#                   builds it too when nvcc is found (CI compiles the CUDA code; the test skips
#                   without a GPU); plain `make` never needs CUDA.
# -fno-trapping-math: molt never enables FP traps; it lets float selects (clamps) vectorize.
# -fno-math-errno: molt never reads errno after a math call; it lets sqrtf vectorize.
# Variables: BUILD (build dir), SAN=1 (ASan+UBSan), TSAN=1 (ThreadSanitizer), NATIVE=1 (-march=native), CI=true (-Werror)

BUILD  ?= build
CC     ?= cc
PKGS    = libcjson libpcre2-8 openblas
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(PKG_LIBS),)
$(error missing libraries: run scripts/install-deps.sh (needs libcjson-dev libpcre2-dev libopenblas-dev pkg-config))
endif

WARN = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Wpointer-arith -Wcast-qual -Wundef -Wwrite-strings -Wdouble-promotion \
       -Werror=implicit-function-declaration -Wno-unused-parameter
OPT   ?= -O3
CFLAGS_BASE = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g $(OPT) -fopenmp -fno-trapping-math -fno-math-errno \
              -fvisibility=hidden -Iinclude -Isrc $(PKG_CFLAGS) $(WARN)
CFLAGS_BASE += $(EXTRA_CFLAGS)
ifeq ($(NATIVE),1)
CFLAGS_BASE += -march=native
endif
ifeq ($(SAN),1)
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDSAN = -fsanitize=address,undefined
endif
# TSAN=1: MOLT_NO_CLONES because the ifunc resolvers of K_SIMD's target_clones
# run during relocation, before the TSan runtime is initialized, and crash there.
ifeq ($(TSAN),1)
CFLAGS_BASE += -fsanitize=thread -fno-omit-frame-pointer -DMOLT_NO_CLONES
LDSAN = -fsanitize=thread
endif
ifeq ($(CI),true)
CFLAGS_BASE += -Werror
endif
CFLAGS  = $(CFLAGS_BASE) -MMD -MP
LDLIBS  = $(PKG_LIBS) -fopenmp -lm $(LDSAN)

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/kernels/cuda/*' \
              -not -name 'comm_*.c' | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC  := $(wildcard tools/molt/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(filter-out tests/test_backend_cuda.c tests/test_device.c,$(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TESTLIB_SRC := tests/testutil.c tests/testmodel.c
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_DRV := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
BENCH_SRC := $(filter-out bench/bench_gpu.c bench/bench_dist.c,$(wildcard bench/bench_*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB := $(BUILD)/libmolt.a

# molt serve (tools/molt/serve_*.c): GNU libmicrohttpd, compiled into and linked with the molt
# binary only (never libmolt)
SERVE_CFLAGS := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
SERVE_LIBS   := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
ifeq ($(SERVE_LIBS),)
$(error missing libmicrohttpd: run scripts/install-deps.sh (needs libmicrohttpd-dev))
endif
$(BUILD)/tools/molt/serve_http.o: CFLAGS += $(SERVE_CFLAGS)
$(BUILD)/molt: LDLIBS += $(SERVE_LIBS)

# data parallelism (issue 18): the communicators (src/dist/comm_*.c) go into libmolt_dist.a,
# linked into the molt binary only, never libmolt. Open MPI through pkg-config ompi-c (Debian's
# libopenmpi-dev); without it molt builds and `--dist` / mpirun runs say so.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
ifneq ($(MPI_LIBS),)
MPI_CFLAGS += -DMOLT_MPI
endif
DIST_SRC := src/dist/comm_mpi.c
DIST_LIB := $(BUILD)/libmolt_dist.a
$(BUILD)/src/dist/comm_%.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/molt $(BUILD)/bench/bench_dist: LDLIBS += $(MPI_LIBS)

# CUDA backend (CUDA=1, set by `make cuda`): nvcc from $(CUDA_HOME), sm_90 code plus
# compute_90 PTX; the .cu objects and src/kernels/cuda/*.c join the library, every C file is
# compiled with -DMOLT_CUDA.
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
CUDA_BUILD ?= build-cuda
NVCCFLAGS  = -std=c++17 -O3 -g -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90 -Xcompiler -fvisibility=hidden,-Wall \
             -Iinclude -Isrc -DMOLT_CUDA -MMD -MP
CUDA_CU_SRC := $(sort $(wildcard src/kernels/cuda/*.cu))
ifeq ($(CUDA),1)
CFLAGS_BASE += -DMOLT_CUDA
LIB_SRC  += $(sort $(wildcard src/kernels/cuda/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_CU_SRC:%.cu=$(BUILD)/%.o)
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
DIST_SRC += src/dist/comm_nccl.c
$(BUILD)/src/dist/comm_nccl.o: CFLAGS += -isystem $(CUDA_HOME)/include
# NCCL is bootstrapped over MPI: without MPI, comm_nccl.c names no NCCL and needs no -lnccl
ifneq ($(MPI_LIBS),)
$(BUILD)/molt $(BUILD)/bench/bench_dist: LDLIBS += -lnccl
endif
endif
DIST_OBJ := $(DIST_SRC:%.c=$(BUILD)/%.o)

.PHONY: all test asan tsan bench fuzz format clean tests fuzz-drivers cuda
all: molt

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MF $(@:.o=.d) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(DIST_LIB): $(DIST_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/molt: $(CLI_OBJ) $(DIST_LIB) $(LIB)
	$(CC) $(CFLAGS) $(CLI_OBJ) $(DIST_LIB) $(LIB) $(LDLIBS) -o $@

molt: $(BUILD)/molt
	@ln -sf $(BUILD)/molt molt

$(BUILD)/tests/%: tests/%.c $(TESTLIB_SRC) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(TESTLIB_SRC) $(LIB) $(LDLIBS) -o $@

# Fuzz targets built two ways: with a plain replay/mutation driver (any
# compiler; used by `make test`), and with libFuzzer (clang) by `make fuzz`.
$(BUILD)/fuzz/%: fuzz/%.c fuzz/driver.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< fuzz/driver.c $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(LIB) $(LDLIBS) -o $@

# the cuBLAS call probe (make cuda; issue 12): a standalone CUDA program, no molt library
$(BUILD)/bench/gemm_probe: bench/gemm_probe.cu
	@mkdir -p $(dir $@)
	$(NVCC) -std=c++17 -O2 -gencode arch=compute_90,code=sm_90 $< -o $@ \
		-L$(CUDA_HOME)/lib64 -Xlinker -rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas

# the data-parallel benchmark (make cuda): a rank per GPU, NCCL, launched by mpirun
$(BUILD)/bench/bench_dist: bench/bench_dist.c $(DIST_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(DIST_LIB) $(LIB) $(LDLIBS) -o $@

tests: molt $(TEST_BIN) $(FUZZ_DRV)
fuzz-drivers: $(FUZZ_DRV)

# the CUDA library (static and shared: the Python package loads build-cuda/libmolt.so with
# MOLT_LIB), a molt binary with --device cuda, and the two GPU tests (the rest of the suite
# is the CPU build's)
cuda:
	@test -n "$(NVCC)" || { echo "make cuda: nvcc not found (CUDA_HOME=$(CUDA_HOME))"; exit 1; }
	$(MAKE) BUILD=$(CUDA_BUILD) CUDA=1 $(CUDA_BUILD)/libmolt.a $(CUDA_BUILD)/libmolt.so $(CUDA_BUILD)/molt \
		$(CUDA_BUILD)/tests/test_backend_cuda $(CUDA_BUILD)/tests/test_device \
		$(CUDA_BUILD)/bench/bench_gpu $(CUDA_BUILD)/bench/bench_dist $(CUDA_BUILD)/bench/gemm_probe

# with nvcc present, `make test` also builds the CUDA test (so the CUDA code is compiled) and
# runs it: it skips (exit 77, one-line reason) where no GPU is found
ifneq ($(NVCC),)
TEST_CUDA_DEP = cuda
TEST_CUDA_BIN = $(CUDA_BUILD)/tests
endif
test: tests $(TEST_CUDA_DEP)
	@BUILD=$(BUILD) CUDA_TEST=$(TEST_CUDA_BIN) bash scripts/run_tests.sh

asan:
	$(MAKE) BUILD=build-asan SAN=1 OPT=-O1 NVCC= test

tsan:
	$(MAKE) BUILD=build-tsan TSAN=1 OPT=-O1 build-tsan/molt build-tsan/tests/test_pool build-tsan/tests/test_slots
	@BUILD=build-tsan bash scripts/run_tsan.sh

bench: molt $(BENCH_BIN)
	@BUILD=$(BUILD) bash scripts/run_bench.sh

fuzz:
	@bash scripts/fuzz.sh

# ----------------------------------------------------------------------------
# shared library, install (issue 16)
# libmolt.so is linked from the same objects as libmolt.a: every object is -fPIC. With
# -fvisibility=hidden nothing internal goes through the GOT/PLT, and -fno-semantic-interposition
# lets calls to the MOLT_API functions inside the library inline as under the compiler's default
# -fPIE, so the static library and the molt binary run as fast (docs/ARCHITECTURE.md).
# Versioned soname from molt.h's MOLT_VERSION_*: libmolt.so -> libmolt.so.0 -> libmolt.so.0.1.0;
# only the MOLT_API symbols are exported (tests/test_shlib.sh checks against include/molt.h).
#   make install [PREFIX=/usr/local] [DESTDIR=]   header, libmolt.a, libmolt.so*, molt,
#                                                 molt.pc, share/molt/kv_task.json
#   make uninstall [PREFIX=...] [DESTDIR=]        removes exactly those
CFLAGS_BASE += -fPIC -fno-semantic-interposition
NVCCFLAGS   += -Xcompiler -fPIC
MOLT_VER = $(shell sed -n 's/^\#define MOLT_VERSION_$(1) *\([0-9][0-9]*\).*/\1/p' include/molt.h)
SO_MAJOR  := $(call MOLT_VER,MAJOR)
SO_VER    := $(SO_MAJOR).$(call MOLT_VER,MINOR).$(call MOLT_VER,PATCH)
SONAME    := libmolt.so.$(SO_MAJOR)
SHLIB     := $(BUILD)/libmolt.so.$(SO_VER)
SHLIB_LNK := $(BUILD)/$(SONAME) $(BUILD)/libmolt.so
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share/molt
PCDIR   ?= $(LIBDIR)/pkgconfig
.PHONY: shlib install uninstall
all tests: $(SHLIB_LNK)
shlib: $(SHLIB_LNK)

$(SHLIB): $(LIB_OBJ) scripts/libmolt.map
	$(CC) $(CFLAGS_BASE) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined \
		-Wl,--version-script=scripts/libmolt.map $(LIB_OBJ) $(LDLIBS) -o $@

$(BUILD)/$(SONAME): $(SHLIB)
	@ln -sf $(notdir $(SHLIB)) $@

$(BUILD)/libmolt.so: $(BUILD)/$(SONAME)
	@ln -sf $(SONAME) $@

$(BUILD)/molt.pc: scripts/molt.pc.in include/molt.h Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
		-e 's|@VERSION@|$(SO_VER)|' $< > $@

install: all $(BUILD)/molt.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) \
		$(DESTDIR)$(DATADIR) $(DESTDIR)$(PCDIR)
	install -m 644 include/molt.h $(DESTDIR)$(INCDIR)/molt.h
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libmolt.a
	install -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/libmolt.so.$(SO_VER)
	ln -sf libmolt.so.$(SO_VER) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libmolt.so
	install -m 755 $(BUILD)/molt $(DESTDIR)$(BINDIR)/molt
	install -m 644 data/kv_task.json $(DESTDIR)$(DATADIR)/kv_task.json
	install -m 644 $(BUILD)/molt.pc $(DESTDIR)$(PCDIR)/molt.pc

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/molt.h $(DESTDIR)$(LIBDIR)/libmolt.a \
		$(DESTDIR)$(LIBDIR)/libmolt.so.$(SO_VER) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libmolt.so $(DESTDIR)$(BINDIR)/molt \
		$(DESTDIR)$(DATADIR)/kv_task.json $(DESTDIR)$(PCDIR)/molt.pc
	-rmdir $(DESTDIR)$(DATADIR) 2>/dev/null
# ----------------------------------------------------------------------------

format:
	clang-format -i $$(find include src tools tests fuzz bench -name '*.[ch]')

clean:
	rm -rf build build-asan build-tsan build-fuzz $(CUDA_BUILD) molt

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(DIST_OBJ:.o=.d)
