#!/usr/bin/env bash
# Everything to run on a machine with an NVIDIA GPU, in one go and cheapest first:
# build, make test-gpu, training throughput at configs S and M (cuBLAS and the tiled
# kernel), then make run-gpu, timed. Logs go to $OUT (or gpu_logs/); the last lines
# of each step are printed as it ends.
set -u
out=${OUT:-gpu_logs}
mkdir -p "$out"
step() { # step NAME COMMAND...: runs it, logs it, prints its tail and time
    local name=$1; shift
    local t0=$SECONDS
    "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc, $((SECONDS - t0)) s"
    tail -n "${TAIL:-25}" "$out/$name.log"
    return $rc
}
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
step build make -j4 train world train_gpu test/test_train_gpu data || exit 1
TAIL=45 step test-gpu make test-gpu
S="-L 6 -C 384 -H 6 -V 4096 -t 256 -b 8 -n 6"
M="-L 12 -C 768 -H 12 -V 50257 -t 64 -b 4 -n 6"
TAIL=2 step bench-S ./train_gpu bench $S
TAIL=2 step bench-M ./train_gpu bench $M
TAIL=2 step bench-S-tiled env TRAIN_GEMM=tiled ./train_gpu bench $S
TAIL=30 step run-gpu make run-gpu
cp out_gpu/stages.jsonl out_gpu/summary.json out_gpu/*.jsonl "$out/" 2>/dev/null
exit 0
