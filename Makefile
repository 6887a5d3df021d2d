# Makefile for train.c and the world data. `make run-cpu` and `make test` are the
# two commands the README gives; each does all its own set-up.

CC ?= cc
# default: optimized for this machine; FAST=1 adds fast-math (opt-in: -Ofast broke
# llm.c's GELU backward on gcc); -ffp-contract=fast lets the compiler fuse a*b+c into
# FMA instructions even in strict ISO C mode
CFLAGS ?= -O3
CFLAGS += -std=c11 -Wall -Wextra -ffp-contract=fast
LDLIBS = -lm
ifeq ($(FAST),1)
  CFLAGS += -ffast-math
endif

# -march=native when the compiler takes it
ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null && echo yes),yes)
  CFLAGS += -march=native
  $(info native: compiling for this CPU (-march=native))
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

.PHONY: all data run-cpu run-gpu test bench fixtures debug clean

# all: everything this machine can build
all: train world

# train: the trainer (train.c)
train: train.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# world: the generator and referee of the tiny world (data/world.c)
world: data/world.c train.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# data: the default dataset for all four stages, in data/world/ (seed 1337)
data: data/world/.done
data/world/.done: world
	./world gen -o data/world
	@touch $@

# run-cpu: the CPU demo: data, tokenizer, the four stages, and a table of results
# (each stage appends to out/stages.jsonl; ./world summary grades the answers and
# writes the table and out/summary.json)
run-cpu: train world data
	rm -f out/tokenizer.bin out/stages.jsonl
	./train pretrain -o out
	./train sft -o out -n 0
	./train sft -o out
	./train rm -o out
	./train rlhf -o out
	@./world summary out

# run-gpu: the GPU demo (train.cu arrives with the CUDA issue)
run-gpu:
	@echo "train.cu is not written yet: run-gpu comes with it. Use make run-cpu." && exit 1

# test: every CPU test; the last line reads "N passed, M failed"
test: test/test_world test/test_grad test/test_train data
	@./test/run.sh ./test/test_world ./test/test_grad ./test/test_train "python3 test/check_jsonl.py data/world"

test/test_world: test/test_world.c test/check.h data/world.c train.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test/test_grad: test/test_grad.c test/check.h train.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

test/test_train: test/test_train.c test/check.h train.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# fixtures: regenerate test/fixtures/*.bin with PyTorch (deliberate: the files are committed)
fixtures:
	@test -n "$(TORCH_PYTHON)" || { echo "fixtures need PyTorch: apt-get install python3-torch"; exit 1; }
	$(TORCH_PYTHON) test/reference.py fixtures test/fixtures/gpt_tiny.bin
	$(TORCH_PYTHON) test/reference.py reward-fixtures test/fixtures/reward_tiny.bin
	$(TORCH_PYTHON) test/reference.py ppo-fixtures test/fixtures/ppo_tiny.bin

# bench: training speed of train.c and PyTorch at configs S and M (2 threads each)
bench: train
	./test/bench.sh "$(TORCH_PYTHON)"

# debug: the tests at -O0 with AddressSanitizer and UndefinedBehaviorSanitizer
debug:
	$(MAKE) -B test CFLAGS="-O0 -g -fsanitize=address,undefined -fno-omit-frame-pointer"

# clean: remove what the Makefile built or generated
clean:
	rm -rf train world test/test_world test/test_grad test/test_train data/world out
