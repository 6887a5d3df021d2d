#!/usr/bin/env bash
# Training speed of train.c and the PyTorch reference at configs S and M, in the
# same run, alternating, 2 threads each. Usage: test/bench.sh [python-with-torch]
# S: L=6 C=384 NH=6 V=4096 T=256 B=8    M: L=12 C=768 NH=12 V=50257 T=64 B=4
set -eu
torch_python=${1:-}
export OMP_NUM_THREADS=2
# OpenBLAS 0.3.21 (Debian's, under python3-torch) does not recognize recent Intel
# cores and falls back to its generic SSE3 kernels (about 30 GFLOP/s here instead of
# 160+). Give PyTorch the fastest kernel this CPU runs, so the comparison is fair.
coretype=""
grep -qw avx2 /proc/cpuinfo 2>/dev/null && coretype=Haswell
grep -qw avx512f /proc/cpuinfo 2>/dev/null && coretype=SkylakeX
[ -n "$torch_python" ] && echo "PyTorch's OpenBLAS kernels: ${coretype:-auto}"
configs=("-L 6 -C 384 -H 6 -V 4096 -t 256 -b 8 -n 6" "-L 12 -C 768 -H 12 -V 50257 -t 64 -b 4 -n 6")
names=(S M)
for i in 0 1; do
    echo "== config ${names[$i]}: ${configs[$i]}"
    ours=$(./train bench ${configs[$i]} | grep '^bench ')
    echo "$ours"
    if [ -n "$torch_python" ]; then
        theirs=$(OPENBLAS_CORETYPE=$coretype $torch_python test/reference.py bench ${configs[$i]} --threads 2 | grep '^torch ')
        echo "$theirs"
        a=$(echo "$ours" | sed -n 's/^bench train.*median \([0-9]*\) ms.*/\1/p')
        b=$(echo "$theirs" | sed -n 's/^torch train.*median \([0-9]*\) ms.*/\1/p')
        echo "ratio ours/pytorch (time per step): $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
    else
        echo "(PyTorch not found: apt-get install python3-torch for the comparison)"
    fi
done
