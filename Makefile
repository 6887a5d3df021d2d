# Makefile for train.c and the world data. `make run-cpu` and `make test` are the
# two commands the README gives; both do all their own set-up.

CC ?= cc
CFLAGS ?= -O2
CFLAGS += -std=c11 -Wall -Wextra
LDLIBS = -lm

.PHONY: all data test clean

# all: everything this machine can build
all: world

# world: the generator and referee of the tiny world (data/world.c)
world: data/world.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# data: the default dataset for all four stages, in data/world/ (seed 1337)
data: data/world/.done
data/world/.done: world
	./world gen -o data/world
	@touch $@

# test: every CPU test; the last line reads "N passed, M failed"
test: test/test_world data
	@./test/run.sh ./test/test_world "python3 test/check_jsonl.py data/world"

test/test_world: test/test_world.c data/world.c
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# clean: remove what the Makefile built or generated
clean:
	rm -rf world test/test_world data/world
