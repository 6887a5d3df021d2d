#!/usr/bin/env bash
# A/B: the training-step time of two versions of train.c, measured in one process
# (test/bench/ab_step.c), alternating steps, so that both see the same moments of a
# noisy machine. Each version is a git revision or a file.
# Usage: test/bench/ab.sh <A> <B> [S|M|run|gen|mm-S|mm-M] [rounds]
#   e.g. test/bench/ab.sh HEAD~1 train.c S 11
#   S: L=6 C=384 NH=6 V=4096 T=256 B=8   M: L=12 C=768 NH=12 V=50257 T=64 B=4
#   run: the size of make run-cpu's pretraining, L=4 C=128 NH=4 V=1024 T=128 B=16
#   gen: at S, 128 tokens generated with the KV cache instead of a training step
#   mm-S, mm-M: only the products of a step's linear layers (the matmul engine)
set -eu
[ $# -ge 2 ] || { sed -n '2,9p' "$0"; exit 2; }
config=${3:-S}
rounds=${4:-9}
what=step
case $config in
    S) dims="6 384 6 4096 256 8" ;;
    M) dims="12 768 12 50257 64 4" ;;
    run) dims="4 128 4 1024 128 16" ;;
    gen) dims="6 384 6 4096 256 8"; what=generate ;;
    mm-S) dims="6 384 6 4096 256 8"; what=products ;;
    mm-M) dims="12 768 12 50257 64 4"; what=products ;;
    *) echo "config: S, M, run, gen, mm-S or mm-M" >&2; exit 2 ;;
esac
cc=${CC:-cc}
cflags=$(make -s print-cflags | sed -n "s/^CFLAGS: //p")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for side in A B; do
    version=$([ $side = A ] && echo "$1" || echo "$2")
    if [ -f "$version" ]; then cp "$version" "$dir/$side.c"; else git show "$version:train.c" > "$dir/$side.c"; fi
    $cc $cflags -shared -fPIC -DAB_MODEL -DTRAIN_C="\"$dir/$side.c\"" -o "$dir/$side.so" test/bench/ab_step.c -lm
done
$cc -O2 -o "$dir/ab_step" test/bench/ab_step.c -ldl
echo "A = $1, B = $2, config $config ($dims), $rounds rounds, ${OMP_NUM_THREADS:-all} threads"
"$dir/ab_step" "$rounds" $what $dims "$dir/A.so" "$dir/B.so"
