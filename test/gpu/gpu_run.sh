#!/usr/bin/env bash
# Everything to run on a machine with an NVIDIA GPU, in one go and cheapest first:
# build, make test-gpu, training throughput at configs S and M (cuBLAS and the tiled
# kernel), then make run-gpu, timed. Logs go to gpu_logs/; the last lines of each step
# are printed as it ends. With $OUT set (a leased machine that returns few files), the
# logs and the run's records are also packed into $OUT/gpu_logs.tgz on the way out.
# Each step stops after LIMIT seconds (default 600), so a slow one cannot eat the rest.
set -u
out=gpu_logs
mkdir -p "$out"
if [ -n "${OUT:-}" ]; then
    trap 'cp out_gpu/stages.jsonl out_gpu/summary.json out_gpu/*.jsonl "$out/" 2>/dev/null;
          tar czf "$OUT/gpu_logs.tgz" "$out"' EXIT
fi
step() { # step NAME COMMAND...: runs it, logs it, prints its tail and time
    local name=$1; shift
    local t0=$SECONDS
    timeout "${LIMIT:-600}" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc, $((SECONDS - t0)) s"
    tail -n "${TAIL:-25}" "$out/$name.log"
    return $rc
}
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
step build make -j4 train world train_gpu test/test_train_gpu data || exit 1
LIMIT=200 TAIL=45 step test-gpu make test-gpu
S="-L 6 -C 384 -H 6 -V 4096 -t 256 -b 8 -n 6"
M="-L 12 -C 768 -H 12 -V 50257 -t 64 -b 4 -n 6"
TAIL=2 step bench-S ./train_gpu bench $S
TAIL=2 step bench-M ./train_gpu bench $M
TAIL=2 step bench-S-tiled env TRAIN_GEMM=tiled ./train_gpu bench $S
LIMIT=250 TAIL=30 step run-gpu make run-gpu
exit 0
