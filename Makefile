# Folio build. Plain make; `make help` lists the targets.
#   make            build folio-engine (CPU; CUDA kernels compile-checked when nvcc exists)
#   make run        install deps if missing, build, start foliod serving stories260K on :8000
#   make check      the everyday loop: release build, then unit, API, daemon, generate and the engine's
#                   layer checks side by side, no fuzzing (about 1 min on 2 cores)
#   make test       what CI runs: release, ASan/UBSan and TSan builds, every release suite (the admin
#                   console in Chromium too), the ASan/UBSan runs that find memory bugs, the TSan runs,
#                   a 3 s a target fuzz smoke (about 4 min on 2 cores)
#   make test-full  everything: make test, the ASan/UBSan re-runs it leaves out, long fuzzing (300 s a
#                   target, as make fuzz), then make test-packaging (as root)
#                   (tests/run_all.sh lists each tier's suites; TEST_JOBS=N processes at once, 6)
#   make layer-check  the engine's layers: each archive links with only the layers it may use, no
#                   upward include, every global symbol prefixed and declared once (tests/layers/check.sh)
#   make bench      CPU decode/prefill benchmark against the measured memory roofline
#   make bench-compare BASE=REV  make bench for REV and this tree, alternating, in one run
#   make soak       foliod under 64 misbehaving clients and injected faults for SOAK_SECONDS (600), then the checks
#   make test-gpu   each CUDA kernel against its CPU reference (needs nvcc and a CUDA device)
#   make bench-gpu  decode paged_attention bandwidth against a device memcpy (CUDA device)
#   make test-gpu-engine  folio-engine built with CUDA=1, end to end on the GPU
#   make install    foliod, folio-engine, the console and the schema under DESTDIR/PREFIX (/usr/local)
#   make deb        build/deb/folio_<version>_amd64.deb (debhelper; CUDA backend when nvcc exists)
#   make test-packaging  the .deb through lintian, dpkg -i, upgrade and purge; docker/install.sh in a debootstrap chroot
#   make docker     the CUDA and CPU images (where a Docker engine runs)
#   CUDA=1          build folio-engine with the CUDA backend (build/release-cuda)
#   ASAN=1 / TSAN=1 / DEBUG=1  sanitizer / debug variants (separate build dirs)

CC      ?= gcc
PKGS    := libcjson libpcre2-8 libutf8proc
DPKGS   := sqlite3 libcrypto libxcrypt libcurl
MODELS  ?= $(or $(FOLIO_TEST_MODELS),$(abspath ../shared/models))

# WERROR= for package builds: a newer compiler's new warning must not break an install.
WERROR  ?= -Werror
CFLAGS_BASE := -std=c11 -Wall -Wextra $(WERROR) -Wshadow -Wno-unused-parameter -Wmissing-prototypes -Wstrict-prototypes \
               -D_GNU_SOURCE -MMD -MP -g -pthread
ifeq ($(ASAN),1)
  BUILD  := build/asan
  OPT    := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDOPT  := -fsanitize=address,undefined
else ifeq ($(TSAN),1)
  BUILD  := build/tsan
  OPT    := -O1 -fno-omit-frame-pointer -fsanitize=thread
  LDOPT  := -fsanitize=thread
else ifeq ($(DEBUG),1)
  BUILD  := build/debug
  OPT    := -O0
else
  BUILD  := build/release
  OPT    := -O2
endif
# CUDA=1 links the CUDA backend (engine/backend/cuda/backend_cuda.c, kernels/, cuBLAS) into folio-engine.
ifeq ($(CUDA),1)
  BUILD  := $(BUILD)-cuda
endif
# O=DIR puts the objects elsewhere, so that parallel work in one tree does not collide.
ifneq ($(O),)
  BUILD  := $(O)
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  := $(CFLAGS_BASE) $(OPT) $(PKG_CFLAGS) -Iengine $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lcivetweb -lm -pthread $(LDOPT) $(EXTRA_LDFLAGS)

# engine/ is built as one archive per layer (engine/README.md), linked top-down, so that a
# reference from a lower layer up to a higher one fails to link. Bottom to top:
LAYERS := base backend model text chat_template grammar core server
# What each layer may use (tests/layers/check.sh links every layer against exactly these).
LAYER_DEPS_base          :=
LAYER_DEPS_backend       := base
LAYER_DEPS_model         := backend base
LAYER_DEPS_text          := base
LAYER_DEPS_chat_template := base
LAYER_DEPS_grammar       := base
LAYER_DEPS_core          := grammar model text backend base
LAYER_DEPS_server        := core grammar chat_template text model backend base
layer_src = $(wildcard engine/$(1)/*.c) $(if $(filter backend,$(1)),$(wildcard engine/backend/cpu/*.c))
layer_lib = $(BUILD)/engine/libfolio_$(1).a
ENGINE_SRC := $(foreach l,$(LAYERS),$(call layer_src,$(l)))

NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CU_SRC := $(wildcard kernels/*.cu)
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.o)
ifeq ($(CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 needs nvcc (on PATH or /usr/local/cuda/bin))
  endif
  CUDA_HOME ?= $(abspath $(dir $(realpath $(NVCC)))..)
  CUDA_BACKEND_OBJ := $(BUILD)/engine/backend/cuda/backend_cuda.o $(CU_OBJ)
  CFLAGS     += -DFOLIO_CUDA -DFOLIO_CUDA_LIB_DIR='"$(CUDA_HOME)/lib64"' -isystem $(CUDA_HOME)/include -Ikernels
  # The runtime statically, cuBLAS by dlopen (see backend_cuda.c): the binary starts without
  # CUDA libraries, and HTTP threads carry no cuBLAS TLS.
  CUDA_LIBS  := -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt
endif
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
layer_obj = $(patsubst %.c,$(BUILD)/%.o,$(call layer_src,$(1))) $(if $(filter backend,$(1)),$(CUDA_BACKEND_OBJ))
define layer_rule
$(call layer_lib,$(1)): $(call layer_obj,$(1))
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rule,$(l))))
# Top-down: a layer's archive comes before those it uses.
ENGINE_LIBS := $(foreach l,server core grammar chat_template text model backend base,$(call layer_lib,$(l)))
# foliod: daemon/*.c plus base/ and model/config.o from the engine (it includes only base/*.h
# and model/config.h: tests/layers/daemon_includes.sh); never a backend, never CUDA.
DAEMON_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
DAEMON_OBJ := $(DAEMON_SRC:%.c=$(BUILD)/%.o)
DAEMON_LIB := $(BUILD)/libfoliod.a
DAEMON_LIBS := $(shell pkg-config --libs $(DPKGS) 2>/dev/null) -ldl
FOLIOD_BIN := $(BUILD)/foliod
$(DAEMON_OBJ) $(BUILD)/daemon/main.o: CFLAGS += -Idaemon
UNIT_SRC   := $(wildcard tests/unit/*.c)
UNIT_OBJ   := $(UNIT_SRC:%.c=$(BUILD)/%.o)
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/%)

ENGINE_BIN := $(BUILD)/folio-engine
UNIT_BIN   := $(BUILD)/unit-tests

.PHONY: all deps run test bench fuzz kernels-check clean help install deb docker test-packaging bins
all: $(ENGINE_BIN) $(FOLIOD_BIN) $(UNIT_BIN) $(TOOL_BIN) kernels-check
# What the package ships (make deb): the two programs only.
bins: $(ENGINE_BIN) $(FOLIOD_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(ENGINE_BIN): $(BUILD)/engine/main.o $(ENGINE_LIBS)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS) $(CUDA_LIBS)

$(DAEMON_LIB): $(DAEMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FOLIOD_BIN): $(BUILD)/daemon/main.o $(DAEMON_LIB) $(call layer_lib,model) $(call layer_lib,base)
	$(CC) $(OPT) -o $@ $^ $(DAEMON_LIBS) $(LDLIBS)

$(UNIT_OBJ): CFLAGS += -Idaemon
$(UNIT_BIN): $(UNIT_OBJ) $(DAEMON_LIB) $(ENGINE_LIBS)
	$(CC) $(OPT) -o $@ $^ $(DAEMON_LIBS) $(LDLIBS) $(CUDA_LIBS)

$(BUILD)/%: $(BUILD)/tests/tools/%.o $(ENGINE_LIBS)
	$(CC) $(OPT) -o $@ $^ $(LDLIBS) $(CUDA_LIBS)

# CUDA kernels: compile-checked by every build where nvcc exists; linked into folio-engine with CUDA=1.
# CUDA_GENCODE: sm_80 and sm_90 code plus PTX for later GPUs; a GPU check may narrow it to its own.
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
                -gencode arch=compute_90,code=compute_90
# The kernels' host code is C-like: no exceptions and no guarded statics (nvcc's registration
# runs at load time), so nothing links the C++ runtime and the .deb needs no libstdc++.
NVCC_FLAGS := -std=c++17 -Werror all-warnings -Ikernels $(CUDA_GENCODE) -Xcompiler -fno-exceptions,-fno-threadsafe-statics
$(BUILD)/kernels/%.o: kernels/%.cu kernels/kernels.h $(wildcard kernels/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@
ifneq ($(NVCC),)
kernels-check: $(CU_OBJ)
else
kernels-check:
	@echo "nvcc not found: skipping the CUDA compile check"
endif

# test-gpu: tests/gpu/*.c (host C) + the kernels' nvcc objects + the CPU backend + libcudart,
# run on the first CUDA device. No device is a failure unless FOLIO_GPU_OPTIONAL=1.
GPU_SRC := $(wildcard tests/gpu/*.c)
GPU_OBJ := $(GPU_SRC:%.c=$(BUILD)/%.o)
GPU_BIN := $(BUILD)/gpu-tests
# Only the CPU backend and the modules it uses, not all of libfolio.a, so that a GPU machine
# without the cJSON/PCRE2/utf8proc dev packages still builds the test.
GPU_ENGINE_OBJ := $(addprefix $(BUILD)/engine/,backend/backend.o backend/cpu/backend_cpu.o backend/cpu/cpu_kernels.o \
                  backend/cpu/cpu_qkernels.o backend/cpu/cpu_moe.o base/quant.o base/threadpool.o base/util.o)
# The CUDA backend itself (its cuBLAS products, argmax, reserve), compiled for the test binary.
GPU_BACKEND_OBJ := $(BUILD)/tests/gpu/backend_cuda.o
.PHONY: test-gpu bench-gpu test-gpu-engine test-gpu-models bench-gpu-e2e cuda-check
ifneq ($(NVCC),)
CUDA_HOME ?= $(abspath $(dir $(realpath $(NVCC)))..)
$(GPU_OBJ): CFLAGS += -isystem $(CUDA_HOME)/include -Ikernels
$(GPU_BACKEND_OBJ): engine/backend/cuda/backend_cuda.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFOLIO_CUDA -DFOLIO_CUDA_LIB_DIR='"$(CUDA_HOME)/lib64"' -isystem $(CUDA_HOME)/include -Ikernels \
	  -c $< -o $@
$(GPU_BIN): $(GPU_OBJ) $(CU_OBJ) $(GPU_ENGINE_OBJ) $(GPU_BACKEND_OBJ)
	$(CC) $(OPT) -o $@ $^ -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -ldl -lm -pthread $(LDOPT)
test-gpu: $(GPU_BIN)
	$(GPU_BIN)
bench-gpu: $(GPU_BIN)
	$(GPU_BIN) --bench
# The engine end to end on the GPU: folio-engine built with CUDA=1 (build/*-cuda).
test-gpu-engine:
	@$(MAKE) --no-print-directory CUDA=1 O=$(BUILD)-cuda $(BUILD)-cuda/folio-engine
	FOLIO_ENGINE=$(BUILD)-cuda/folio-engine FOLIO_TEST_MODELS=$(MODELS) tests/gpu/engine_gpu.sh
# Generated checkpoints' logits and greedy tokens on the GPU vs the PyTorch reference and vs
# --device cpu (bf16 3e-2, f16 5e-3, fp32 1e-4 of the logits' scale).
test-gpu-models:
	@$(MAKE) --no-print-directory CUDA=1 O=$(BUILD)-cuda $(BUILD)-cuda/folio-engine
	FOLIO_ENGINE=$(BUILD)-cuda/folio-engine FOLIO_TEST_MODELS=$(MODELS) tests/gpu/check_models_gpu.sh
# Offline throughput on the GPU, folio vs a transformers-style PyTorch loop (Llama-3.2-1B shape, bf16).
bench-gpu-e2e:
	@$(MAKE) --no-print-directory CUDA=1 O=$(BUILD)-cuda $(BUILD)-cuda/folio-engine $(BUILD)-cuda/bench_serve
	FOLIO_ENGINE=$(BUILD)-cuda/folio-engine FOLIO_BENCH_SERVE=$(BUILD)-cuda/bench_serve tests/gpu/bench_e2e.sh
# CI has nvcc but no GPU: compile the GPU test binary and the CUDA=1 engine, and check that
# the CUDA build falls back to the CPU (the CPU suite itself never depends on CUDA).
cuda-check: $(GPU_BIN)
	@$(MAKE) --no-print-directory CUDA=1 O=$(BUILD)-cuda $(BUILD)-cuda/folio-engine
	FOLIO_ENGINE=$(BUILD)-cuda/folio-engine FOLIO_TEST_MODELS=$(MODELS) tests/gpu/cpu_fallback.sh
else
cuda-check:
	@echo "nvcc not found: skipping the CUDA build check"
test-gpu bench-gpu test-gpu-engine test-gpu-models bench-gpu-e2e:
	@echo "make $@: nvcc not found (not on PATH, not /usr/local/cuda/bin/nvcc);" \
	  "install the CUDA Toolkit or pass NVCC=/path/to/nvcc" >&2
	@exit 1
endif

deps:
	@tests/install_deps.sh

# make run: foliod on HOST:PORT (loopback:8000) serving MODEL (the shared stories260K) as
# `default`, with its registry in build/run-data (the top level stays the source tree). The
# admin password is printed on the first start (or set FOLIO_ADMIN_PASSWORD).
HOST  ?= 127.0.0.1
PORT  ?= 8000
MODEL ?= $(MODELS)/stories260K
RUN_DATA ?= build/run-data
run: deps
	@$(MAKE) --no-print-directory $(ENGINE_BIN) $(FOLIOD_BIN)
	$(FOLIOD_BIN) --host $(HOST) --port $(PORT) --data-dir $(RUN_DATA) --model $(MODEL)

# The test tiers (tests/run_all.sh runs a tier's suites side by side; the header lists them).
# The builds run under one -j (nproc, unless make was given -j): release, then for test and
# test-full the ASan/UBSan and TSan builds beside it. With O=DIR they go to DIR, DIR-asan, DIR-tsan
# (and the fuzz targets to DIR-fuzz).
TEST_ASAN := $(if $(O),$(O)-asan,build/asan)
TEST_TSAN := $(if $(O),$(O)-tsan,build/tsan)
TEST_J     = $(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(shell nproc))
RUN_TIER   = FOLIO_TEST_MODELS=$(MODELS) FOLIO_REL=$(BUILD) FOLIO_ASAN=$(TEST_ASAN) FOLIO_TSAN=$(TEST_TSAN) \
             FUZZ_OUT=$(if $(O),$(O)-fuzz,build/fuzz) tests/run_all.sh
.PHONY: check test-full layer-check test-build-rel test-build-asan test-build-tsan
check: deps
	@$(MAKE) --no-print-directory $(TEST_J) test-build-rel
	@$(RUN_TIER) check
test: deps
	@$(MAKE) --no-print-directory $(TEST_J) test-build-rel test-build-asan test-build-tsan
	@$(RUN_TIER) test
test-full: deps
	@$(MAKE) --no-print-directory $(TEST_J) test-build-rel test-build-asan test-build-tsan
	@$(RUN_TIER) full; rc=$$?; $(MAKE) --no-print-directory test-packaging && exit $$rc
test-build-rel:
	@$(MAKE) --no-print-directory all
test-build-asan:
	@$(MAKE) --no-print-directory ASAN=1 O=$(TEST_ASAN) \
	  $(patsubst $(BUILD)/%,$(TEST_ASAN)/%,$(ENGINE_BIN) $(FOLIOD_BIN) $(UNIT_BIN) $(TOOL_BIN))
test-build-tsan:
	@$(MAKE) --no-print-directory TSAN=1 O=$(TEST_TSAN) $(TEST_TSAN)/unit-tests
# make layer-check: tests/layers/check.sh on this build's archives (make check runs it too).
layer-check: $(foreach l,$(LAYERS),$(call layer_lib,$(l))) $(BUILD)/engine/main.o
	@tests/layers/check.sh
layer-check check test test-full: export LAYERS := $(LAYERS)
layer-check check test test-full: export LAYER_BUILD := $(BUILD)
layer-check check test test-full: export LAYER_CFLAGS := $(filter-out -MMD -MP,$(CFLAGS))
layer-check check test test-full: export LAYER_LDLIBS := $(LDLIBS) $(CUDA_LIBS)
$(foreach l,$(LAYERS),$(eval layer-check check test test-full: export LAYER_DEPS_$(l) := $(LAYER_DEPS_$(l))))
$(foreach l,$(LAYERS),$(eval layer-check check test test-full: export LAYER_SRC_$(l) := $(call layer_src,$(l))))

bench: deps
	@$(MAKE) --no-print-directory $(ENGINE_BIN) $(FOLIOD_BIN) $(TOOL_BIN)
	@FOLIO_TEST_MODELS=$(MODELS) tests/bench/run_bench.sh

# make bench-compare BASE=REV: the same benchmark for REV (built in build/bench-base/) and for this
# tree, alternating in one run (tests/bench/compare.sh).
bench-compare: deps
	@$(MAKE) --no-print-directory $(ENGINE_BIN) $(FOLIOD_BIN) $(TOOL_BIN)
	@FOLIO_TEST_MODELS=$(MODELS) tests/bench/compare.sh

soak: deps
	@$(MAKE) --no-print-directory $(ENGINE_BIN) $(FOLIOD_BIN)
	@SOAK_SECONDS=$${SOAK_SECONDS:-600} FOLIO_ENGINE=$(ENGINE_BIN) FOLIO_TEST_MODELS=$(MODELS) tests/abuse/soak.sh

fuzz: deps
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-300} FOLIO_TEST_MODELS=$(MODELS) tests/fuzz/run.sh

# make install: the layout foliod looks for when it is not run from a checkout (main.c).
PREFIX  ?= /usr/local
DESTDIR ?=
install: $(ENGINE_BIN) $(FOLIOD_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/folio/db/migrations
	install -m 0755 $(FOLIOD_BIN) $(ENGINE_BIN) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 db/schema.sql $(DESTDIR)$(PREFIX)/share/folio/db/
	install -m 0644 db/migrations/*.sql $(DESTDIR)$(PREFIX)/share/folio/db/migrations/
	cd admin-ui && find . -type d -exec install -d $(DESTDIR)$(PREFIX)/share/folio/admin-ui/{} \; && \
	  find . -type f ! -name '*.md' -exec install -m 0644 {} $(DESTDIR)$(PREFIX)/share/folio/admin-ui/{} \;

# make deb: packaging/debian/ built by dpkg-buildpackage in a staged copy of the tree (debian/
# cannot live at the top level). DEB_CUDA=auto|1|0: the CUDA backend when nvcc exists.
DEB_CUDA ?= auto
DEB_OUT  ?= build/deb
deb:
	@DEB_CUDA=$(DEB_CUDA) NVCC=$(NVCC) packaging/build-deb.sh --out $(DEB_OUT)

test-packaging: deps
	@DEB_CUDA=$(DEB_CUDA) NVCC=$(NVCC) FOLIO_TEST_MODELS=$(MODELS) tests/packaging/run.sh

docker:
	@if docker info >/dev/null 2>&1; then \
	  docker build -f docker/Dockerfile -t folio . && docker build -f docker/Dockerfile.cpu -t folio:cpu . ; \
	else echo "make docker: no Docker engine answers here (docker info failed); nothing built" >&2; exit 1; fi

clean:
	rm -rf build

help:
	@sed -n '2,/^$$/p' Makefile

# Keep tool objects: they are intermediates of a chained rule.
.SECONDARY:

-include $(ENGINE_OBJ:.o=.d) $(DAEMON_OBJ:.o=.d) $(BUILD)/daemon/main.d $(UNIT_OBJ:.o=.d) $(BUILD)/engine/main.d $(TOOL_SRC:%.c=$(BUILD)/%.d)
-include $(GPU_OBJ:.o=.d) $(GPU_BACKEND_OBJ:.o=.d)
