#!/usr/bin/env bash
# Training speed of train.c against the PyTorch reference (test/reference.py), at
# configs S and M, in the same run and alternating, so that both see the same machine.
# Usage: test/bench/bench.sh ["python-with-torch ..."] [rounds]
#   The first argument lists every Python whose PyTorch to time (Debian's python3-torch,
#   and PyTorch from PyPI in a virtual environment, say), separated by spaces; the
#   ratio is taken against the fastest of them.
#   S: L=6 C=384 NH=6 V=4096 T=256 B=8    M: L=12 C=768 NH=12 V=50257 T=64 B=4
# Prints, per config: each program's median ms/step over all rounds (the first step
# of each round, which allocates, is left out), tokens/s, GFLOP/s, the fraction of the
# machine's matmul ceiling (a 2048^3 product, measured by each in the same run), and
# the ratio of tokens/s ours/PyTorch; each program's step split into its linear
# layers' products (timed alone) and the rest; train.c on 1 thread and on 2; the KV cache's
# generation speed; and the stage times of the last make run-cpu (out/stages.jsonl).
set -eu
read -r -a torches <<< "${1:-}"
rounds=${2:-3}
# OpenBLAS 0.3.21 (Debian's, under python3-torch) does not recognize recent Intel
# cores and falls back to its generic SSE3 kernels (about 30 GFLOP/s here instead of
# 160+). Give PyTorch the fastest kernel this CPU runs, so the comparison is fair
# (PyPI's PyTorch uses MKL and ignores this).
coretype=""
grep -qw avx2 /proc/cpuinfo 2>/dev/null && coretype=Haswell
grep -qw avx512f /proc/cpuinfo 2>/dev/null && coretype=SkylakeX
[ ${#torches[@]} -gt 0 ] && echo "PyTorch: ${torches[*]} (OpenBLAS kernels: ${coretype:-auto})"
[ ${#torches[@]} -eq 0 ] && echo "(PyTorch not found: apt-get install python3-torch libopenblas0-openmp for the comparison)"
configs=("-L 6 -C 384 -H 6 -V 4096 -t 256 -b 8 -n 5" "-L 12 -C 768 -H 12 -V 50257 -t 64 -b 4 -n 4")
names=(S M)
log=$(mktemp)
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
for i in 0 1; do
    cfg=${configs[$i]}
    : > "$log"
    for r in $(seq "$rounds"); do
        for threads in 2 1; do
            OMP_NUM_THREADS=$threads ./train bench $cfg | sed "s/^bench/ours$threads/" >> "$log"
        done
        for p in "${!torches[@]}"; do
            OMP_NUM_THREADS=2 OPENBLAS_CORETYPE=$coretype ${torches[$p]} test/reference.py bench $cfg --threads 2 \
                | sed "s/^torch/torch$p/" >> "$log"
        done
    done
    # per-step times (all but each round's first step), and the matmul ceilings
    steps() { grep "^$1 step" "$log" | grep -v "step 1:" | sed 's/.*: \([0-9]*\) ms.*/\1/' | median; }
    flops=$(grep -m1 "^ours2 train" "$log" | sed 's/.*| \([0-9.]*\) GFLOP\/s.*/\1/')
    ms=$(grep -m1 "^ours2 train" "$log" | sed 's/.* \([0-9]*\) ms\/step.*/\1/')
    gflop=$(awk -v f="$flops" -v m="$ms" 'BEGIN { print f * m / 1e3 }') # GFLOP per step
    tokens=$(echo "$cfg" | awk '{ for (i = 1; i < NF; i++) { if ($i == "-t") t = $(i + 1); if ($i == "-b") b = $(i + 1) } print t * b }')
    ceiling=$(grep "^ours2 matmul" "$log" | sed 's/.*| \([0-9.]*\) GFLOP.*/\1/' | median)
    echo "== config ${names[$i]}: $cfg, $rounds rounds, $gflop GFLOP per step"
    ours=$(steps ours2)
    for who in ours2 ours1; do
        m=$(steps "$who")
        awk -v w="$who" -v m="$m" -v g="$gflop" -v n="$tokens" -v c="$ceiling" 'BEGIN {
            label = (w == "ours2") ? "train.c, 2 threads" : "train.c, 1 thread ";
            printf "%s: median %6.0f ms/step | %6.0f tok/s | %6.1f GFLOP/s | %.2f of the matmul ceiling (%.0f GFLOP/s)\n",
                   label, m, n / (m / 1e3), g / (m / 1e3), g / (m / 1e3) / c, c }'
    done
    best=""
    for p in "${!torches[@]}"; do
        m=$(steps "torch$p")
        version=$(grep -m1 "^torch$p version" "$log" | sed 's/.*version: //')
        tceil=$(grep "^torch$p matmul" "$log" | sed 's/.*| *\([0-9.]*\) GFLOP.*/\1/' | median)
        awk -v v="$version" -v m="$m" -v g="$gflop" -v n="$tokens" -v c="$tceil" -v a="$ours" 'BEGIN {
            printf "PyTorch %s, 2 threads: median %6.0f ms/step | %6.0f tok/s | %6.1f GFLOP/s | its own 2048^3 matmul %.0f GFLOP/s | tok/s of train.c / this: %.2f\n",
                   v, m, n / (m / 1e3), g / (m / 1e3), c, m / a }'
        if [ -z "$best" ] || awk -v m="$m" -v b="$best" 'BEGIN { exit !(m < b) }'; then best=$m; fi
    done
    if [ -n "$best" ]; then
        echo "ratio of tokens/s, train.c / the fastest PyTorch: $(awk -v a="$ours" -v b="$best" 'BEGIN { printf "%.2f", b / a }')"
    fi
    # each step split in two: the linear layers' products timed alone (warm operands, see
    # bench_linear_layers in train.c), and the rest of the step (step minus products)
    products() { grep "^$1 linear layers" "$log" | sed 's/.*median \([0-9]*\) ms.*/\1/' | median; }
    split() { awk -v l="$1" -v m="$2" -v p="$3" 'BEGIN { printf "%s: the linear layers'"'"' products alone %6.0f ms, the rest of the step %6.0f ms\n", l, p, m - p }'; }
    split "train.c, 2 threads" "$ours" "$(products ours2)"
    for p in "${!torches[@]}"; do
        split "PyTorch $(grep -m1 "^torch$p version" "$log" | sed 's/.*version: //')" "$(steps "torch$p")" "$(products "torch$p")"
    done
    # generation: medians over the rounds of the cached and uncached speeds, and of each
    # round's ratio of the two (measured back to back)
    gen() { grep "^ours2 generate" "$log" | sed "s/.*KV cache \([0-9]*\) tok\/s | without the cache \([0-9]*\) tok\/s (\([0-9.]*\)x).*/\\$1/" | median; }
    echo "generation at this size (train.c, 2 threads), medians of $rounds rounds: KV cache $(gen 1) tok/s | without the cache $(gen 2) tok/s | ratio $(gen 3)x"
    echo "1 -> 2 threads: $(awk -v a="$(steps ours1)" -v b="$ours" 'BEGIN { printf "%.2fx", a / b }') faster"
done
rm -f "$log"
if [ -f out/stages.jsonl ]; then
    echo "== stage times of the last make run-cpu (out/stages.jsonl)"
    python3 - <<'PY'
import json
rows = [json.loads(line) for line in open("out/stages.jsonl")]
for r in rows:
    print("%-9s %7.1f s  %s" % (r["stage"], float(r["seconds"]), r["trained"] or r["answers"]))
print("%-9s %7.1f s" % ("total", sum(float(r["seconds"]) for r in rows)))
PY
fi
