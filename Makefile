# Makefile for train.c and the world data. `make run-cpu` and `make test` are the
# two commands the README gives; each does all its own set-up.

CC ?= cc
# default: optimized for this machine; FAST=1 adds fast-math (opt-in: -Ofast broke
# llm.c's GELU backward on gcc); -ffp-contract=fast lets the compiler fuse a*b+c into
# FMA instructions even in strict ISO C mode
CFLAGS ?= -O3
CFLAGS += -std=c11 -Wall -Wextra -ffp-contract=fast
# nothing reads errno after a math function, and without it set the compiler may call
# vector versions of exp (train.c, at its includes)
CFLAGS += -fno-math-errno
LDLIBS = -lm
ifeq ($(FAST),1)
  CFLAGS += -ffast-math
endif
# SAN=1: AddressSanitizer and UndefinedBehaviorSanitizer (make test SAN=1)
ifeq ($(SAN),1)
  CFLAGS := $(filter-out -O%,$(CFLAGS)) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  export ASAN_OPTIONS = allocator_may_return_null=1
endif

# -march=native when the compiler takes it
ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null && echo yes),yes)
  CFLAGS += -march=native
  $(info native: compiling for this CPU (-march=native))
  # where the CPU has AVX-512, let the compiler use all 512 bits (gcc's default for
  # these cores is 256): the matmul micro-kernel does twice the work per instruction.
  # Only the width changes, not the order of any sum, so results are bit-identical.
  ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -march=native -mprefer-vector-width=512 -x c - -o /dev/null 2>/dev/null && echo yes),yes)
    CFLAGS += -mprefer-vector-width=512
  endif
else
  $(info native: not supported by $(CC), compiling generic code)
endif

# OpenMP when the compiler can build and link a trivial program with it, unless NO_OMP=1
ifeq ($(NO_OMP),1)
  $(info OpenMP: off (NO_OMP=1))
else ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo yes),yes)
  CFLAGS += -fopenmp
  $(info OpenMP: on)
else
  $(info OpenMP: not found, building single-threaded (Debian: apt-get install libgomp1))
endif

# PyTorch lives in Debian's python3 (python3-torch); it is needed only for `make
# fixtures` and the PyTorch half of `make bench`
TORCH_PYTHON ?= $(shell for p in /usr/bin/python3 python3; do $$p -c 'import torch' 2>/dev/null && echo $$p && break; done)

# The GPU build: train.cu (the kernels, compiled by nvcc) linked with train.c compiled
# with TRAIN_GPU, whose REPLACED_ON_GPU functions then give way to train.cu's.
# GPU_ARCH: compute capabilities to build for, from nvidia-smi when a GPU is there
# (9.0 -> 90), else given: make run-gpu GPU_ARCH=90, or a list, GPU_ARCH="80 90".
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
GPU_ARCH ?= $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '.')
ifeq ($(NVCC),)
  $(info nvcc: not found, GPU targets off (install the CUDA toolkit, or give NVCC=))
else
  $(info nvcc: $(NVCC), GPU architecture: $(or $(GPU_ARCH),none found (give GPU_ARCH=)))
endif
NVCCFLAGS = -O3 -std=c++17 $(foreach a,$(GPU_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
	-Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror
GPU_LDLIBS = -lcublas $(if $(findstring -fopenmp,$(CFLAGS)),-lgomp) -lm

# a recipe that fails leaves no half-written target behind
.DELETE_ON_ERROR:

.PHONY: all data run-cpu run-gpu chat test test-interop test-gpu test-gpu-emu build-gpu gpu-ready emu-ready fuzz bench bench-ab print-cflags fixtures debug clean FORCE exercise check solution

# all: everything this machine can build (train_gpu too, with nvcc and a GPU_ARCH)
all: train world $(if $(and $(NVCC),$(GPU_ARCH)),train_gpu)

# .flags holds the compile command of the last build: a change (SAN=1, FAST=1, CC=...)
# rebuilds every program
.flags: FORCE
	@echo '$(CC) $(EMU_CXX) $(CFLAGS)' | cmp -s - $@ || echo '$(CC) $(EMU_CXX) $(CFLAGS)' > $@

# train: the trainer (train.c)
train: train.c .flags
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# world: the generator and referee of the tiny world (data/world.c)
world: data/world.c train.c .flags
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# data: the default dataset for all four stages, in data/world/ (seed 1337)
data: data/world/.done
data/world/.done: world
	./world gen -o data/world
	@touch $@

# The pipeline both demos run: tokenizer, the four stages (with the base model's answers),
# then DPO and GRPO, stage 4's two other methods, from the same SFT model, then the
# table; $(1) is the program, $(2) the output directory. Each stage appends to
# $(2)/stages.jsonl; ./world summary grades the answers and writes the table and
# $(2)/summary.json.
define pipeline
	rm -f $(2)/tokenizer.bin $(2)/stages.jsonl
	./$(1) pretrain -o $(2)
	./$(1) sft -o $(2)
	./$(1) rm -o $(2)
	./$(1) rlhf -o $(2)
	./$(1) dpo -o $(2)
	./$(1) grpo -o $(2)
	@./world summary $(2)
endef

# run-cpu: the CPU demo: data, tokenizer, the four stages, and a table of results
run-cpu: train world data
	$(call pipeline,train,out)

# chat: talk with the PPO policy that make run-cpu trained (out/rlhf.bin; ./train chat -c out/dpo.bin for DPO's); /help inside
chat: train
	./train chat -c out/rlhf.bin

# run-gpu: the GPU demo: the same stages and table with train_gpu, in out_gpu/
run-gpu: train_gpu world data
	$(call pipeline,train_gpu,out_gpu)

# test: every test this machine can run, train.cu's on the CPU too (test-gpu-emu, below);
# the last line reads "N passed, M failed"
test: test/test_world test/test_grad test/test_train test/tokenize train data test/test_cuda_emu test/test_train_gpu_emu train_gpu_emu
	@./test/run.sh ./test/test_world ./test/test_grad ./test/test_train "python3 test/check_jsonl.py data/world" \
		"python3 test/test_errors.py ./train" "python3 test/test_chat.py ./train" "python3 test/test_recovery.py ./train" \
		"python3 test/test_interop.py ./train ./test/tokenize" \
		"CC='$(CC)' CFLAGS='$(EXERCISE_CFLAGS)' python3 test/classroom/exercise.py selftest" $(EMU_TESTS)

test/test_world: test/test_world.c test/check.h data/world.c train.c .flags
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test/test_grad: test/test_grad.c test/check.h train.c .flags
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test/test_train: test/test_train.c test/check.h train.c .flags
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test/tokenize: test/tokenize.c train.c .flags
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test/logits: test/logits.c train.c .flags
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# test-interop: export and import checked against Hugging Face transformers and tokenizers
# (test/test_interop.py; make test runs its other half). HF_PYTHON: a python with
# transformers, tokenizers, safetensors and torch (doc/interop.md says how to get one).
HF_PYTHON ?= python3
test-interop: train test/tokenize test/logits data
	python3 test/test_interop.py ./train ./test/tokenize $(HF_PYTHON)

# The classroom (doc/exercises.md): make exercise N copies train.c into exercises/N/
# with exercise N's functions blanked out; make check N compiles the tests against that
# copy (at -O1, to build in seconds) and runs the ones for exercise N; make solution N
# prints the reference. The number may also be given as N=3.
ifneq ($(filter exercise check solution,$(firstword $(MAKECMDGOALS))),)
  N ?= $(word 2,$(MAKECMDGOALS))
  ifneq ($(N),)
    $(eval $(N):;@:)
  endif
endif
EXERCISE_CFLAGS = $(filter-out -O%,$(CFLAGS)) -O1
exercise:
	@python3 test/classroom/exercise.py new $(N) $(if $(FORCE),--force)
check:
	@CC='$(CC)' CFLAGS='$(EXERCISE_CFLAGS)' python3 test/classroom/exercise.py check $(N)
solution:
	@python3 test/classroom/exercise.py solution $(N)

# fuzz: libFuzzer on the JSONL reader, the tokenizer and the checkpoint loader, with
# ASan and UBSan, FUZZ_SECONDS each (needs clang); seeds in test/fuzz/corpus/
FUZZ_SECONDS ?= 20
fuzz:
	@./test/run.sh "./test/fuzz/run.sh $(FUZZ_SECONDS)"

# fixtures: regenerate test/fixtures/*.bin with PyTorch (deliberate: the files are committed)
fixtures:
	@test -n "$(TORCH_PYTHON)" || { echo "fixtures need PyTorch: apt-get install python3-torch"; exit 1; }
	$(TORCH_PYTHON) test/reference.py fixtures test/fixtures/gpt_tiny.bin
	$(TORCH_PYTHON) test/reference.py reward-fixtures test/fixtures/reward_tiny.bin
	$(TORCH_PYTHON) test/reference.py ppo-fixtures test/fixtures/ppo_tiny.bin
	$(TORCH_PYTHON) test/reference.py dpo-fixtures test/fixtures/dpo_tiny.bin
	$(TORCH_PYTHON) test/reference.py grpo-fixtures test/fixtures/grpo_tiny.bin

# bench: training speed of train.c and PyTorch at configs S and M (2 threads each)
# ROUNDS: rounds of alternating runs (more rounds, steadier medians on a noisy machine)
# BENCH_TORCH: every Python whose PyTorch is timed: TORCH_PYTHON, and PyTorch from PyPI
# when it is installed in .venv-torch (python3 -m venv .venv-torch && .venv-torch/bin/pip
# install torch numpy); the ratio is taken against the fastest
ROUNDS ?= 3
BENCH_TORCH ?= $(strip $(TORCH_PYTHON) $(shell .venv-torch/bin/python -c 'import torch' 2>/dev/null && echo .venv-torch/bin/python))
bench: train
	./test/bench/bench.sh "$(BENCH_TORCH)" $(ROUNDS)

# bench-ab: two versions of train.c (git revisions or files) timed step by step in one
# process, e.g. make bench-ab A=HEAD~1 B=train.c CONFIG=M AB_ROUNDS=11 (test/bench/ab.sh)
A ?= HEAD
B ?= train.c
CONFIG ?= S
AB_ROUNDS ?= 9
bench-ab:
	./test/bench/ab.sh "$(A)" "$(B)" $(CONFIG) $(AB_ROUNDS)

# the compile flags this machine gets (test/bench/ab.sh builds with them)
print-cflags:
	@echo 'CFLAGS: $(CFLAGS)'

# test-gpu: CUDA's rules that train.cu relies on, every kernel against its C function,
# then each stage of train_gpu against train
test-gpu: test/test_cuda_gpu test/test_train_gpu train train_gpu data
	@./test/run.sh ./test/test_cuda_gpu ./test/test_train_gpu "python3 test/compare_gpu.py ./train ./train_gpu"

# build-gpu: compile train_gpu and the GPU tests without running them (CI, which has nvcc
# and no GPU, runs this with GPU_ARCH="80 90"); any warning is an error
build-gpu: train_gpu test/test_train_gpu test/test_cuda_gpu

gpu-ready:
	@test -n "$(NVCC)" || { echo "nvcc not found: install the CUDA toolkit (or NVCC=/path/to/nvcc)"; exit 1; }
	@test -n "$(GPU_ARCH)" || { echo "no GPU found by nvidia-smi: give the architecture, e.g. GPU_ARCH=90 (H100/H200) or GPU_ARCH=80 (A100)"; exit 1; }

# train.c's half of every GPU program, real or emulated: with TRAIN_GPU (the functions
# marked REPLACED_ON_GPU made weak), and with TESTING for the tests (train.c without its
# main leaves the flag tables unused, hence the two -Wno)
train_host.o: train.c .flags
	$(CC) $(CFLAGS) -DTRAIN_GPU -c -o $@ train.c
test/train_testing.o: train.c .flags
	$(CC) $(CFLAGS) -DTESTING -Wno-unused-const-variable -Wno-unused-function -c -o $@ train.c

train_gpu: train.cu train_host.o | gpu-ready
	$(NVCC) $(NVCCFLAGS) -o $@ train.cu train_host.o $(GPU_LDLIBS)

test/test_train_gpu: test/test_train.cu train.cu test/train_testing.o test/check.h | gpu-ready
	$(NVCC) $(NVCCFLAGS) -o $@ test/test_train.cu test/train_testing.o $(GPU_LDLIBS)

# The GPU build without a GPU (doc/gpu.md): train.cu and its tests compiled as C++
# against test/gpu_emu/, a small CUDA runtime and cuBLAS of our own that run kernels on
# the CPU. Needs a C++ compiler, not nvcc. The sed below is the one change to the .cu
# files: on a line with a launch, kernel<<<grid, block>>>(args) becomes
# emu_launch(kernel, grid, block)(args) (kernel may be ns::k or k<T>); an #include of
# x.cu includes the rewritten x.cu.cpp; and #line keeps their own names and line
# numbers in every message. Any warning is an error, as in the nvcc build.
EMU = test/gpu_emu
EMU_CXX ?= $(if $(findstring clang,$(CC)),clang++,g++)
EMU_CXXFLAGS = $(filter-out -std=%,$(CFLAGS)) -std=c++17 -Werror -I$(EMU) -DGPU_EMU
EMU_HEADERS = $(EMU)/cuda_runtime.h $(EMU)/cublas_v2.h
# the emulated checks: CUDA's rules, then every kernel against its C function, each
# again with blocks and threads in reverse order; then each stage against train.c
EMU_TESTS = ./test/test_cuda_emu "GPU_EMU_REVERSE=1 ./test/test_cuda_emu" \
	./test/test_train_gpu_emu "GPU_EMU_REVERSE=1 ./test/test_train_gpu_emu" \
	"python3 test/compare_gpu.py ./train ./train_gpu_emu"

# test-gpu-emu: make test-gpu's checks on the CPU, without a GPU (make test runs them too)
test-gpu-emu: test/test_cuda_emu test/test_train_gpu_emu train train_gpu_emu data
	@./test/run.sh $(EMU_TESTS)

$(EMU)/gen/%.cu.cpp: %.cu
	@mkdir -p $(dir $@)
	{ echo '#line 1 "$<"'; sed -e '/<<</{s/\([A-Za-z_][A-Za-z_0-9:]*\(<[^<>]*>\)\{0,1\}\) *<<</emu_launch(\1, /g;s/>>>/)/g;}' \
		-e 's/^#include "\(.*\)\.cu"/#include "\1.cu.cpp"/' $<; } > $@

emu-ready:
	@command -v $(EMU_CXX) >/dev/null || { echo "the GPU code's tests build it as C++: install a C++ compiler (Debian: apt-get install g++), or give EMU_CXX="; exit 1; }

train_gpu_emu: $(EMU)/gen/train.cu.cpp train_host.o $(EMU_HEADERS) .flags | emu-ready
	$(EMU_CXX) $(EMU_CXXFLAGS) -o $@ $< train_host.o $(LDLIBS)

test/test_train_gpu_emu: $(EMU)/gen/test/test_train.cu.cpp $(EMU)/gen/train.cu.cpp test/train_testing.o test/check.h $(EMU_HEADERS) .flags | emu-ready
	$(EMU_CXX) $(EMU_CXXFLAGS) -iquote test -o $@ $< test/train_testing.o $(LDLIBS)

test/test_cuda_emu: $(EMU)/gen/test/test_cuda.cu.cpp test/check.h $(EMU_HEADERS) .flags | emu-ready
	$(EMU_CXX) $(EMU_CXXFLAGS) -iquote test -o $@ $< $(LDLIBS)

test/test_cuda_gpu: test/test_cuda.cu test/check.h | gpu-ready
	$(NVCC) $(NVCCFLAGS) -Itest -o $@ $< -lcublas

# debug: the tests at -O0 with AddressSanitizer and UndefinedBehaviorSanitizer (slow:
# make test SAN=1 is the same checks at -O1)
debug:
	$(MAKE) test CFLAGS="-O0 -g -fsanitize=address,undefined -fno-omit-frame-pointer" ASAN_OPTIONS=allocator_may_return_null=1

# clean: remove what the Makefile built or generated
clean:
	rm -rf train world test/test_world test/test_grad test/test_train test/tokenize test/logits data/world out .flags
	rm -rf test/fuzz/found test/fuzz/fuzz_jsonl test/fuzz/fuzz_tokenizer test/fuzz/fuzz_checkpoint
	rm -rf train_gpu train_host.o test/test_train_gpu test/train_testing.o test/test_cuda_gpu out_gpu
	rm -rf train_gpu_emu test/test_train_gpu_emu test/test_cuda_emu $(EMU)/gen
