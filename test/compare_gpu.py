#!/usr/bin/env python3
"""The GPU build against the CPU build, stage by stage.

Usage: python3 test/compare_gpu.py ./train ./train_gpu
       python3 test/compare_gpu.py ./train ./train_gpu_emu

First it checks the build's wiring: each function train.c marks REPLACED_ON_GPU must
be train.cu's in the GPU program, or the "GPU" run would be train.c's own code and
agree with it trivially. Then it runs a few steps of each stage with both programs,
with the same flags and seed, on the world data (make data), and compares their logs
and checkpoints. Then each build loads the other's checkpoints. One line per check,
"ok" or "FAIL"; exits non-zero on a failure. The GPU program is train_gpu on a GPU
(make test-gpu), or train_gpu_emu, train.cu run on the CPU by test/gpu_emu (make
test-gpu-emu); there the math functions are libm's, so the runs differ only in the
order of the matmul's sums.

Why the runs can differ at all: train.cu's matrix multiplies (cuBLAS) sum in another
order than train.c's, and CUDA's expf/logf round differently from libm's in the last
bit, so after the first step the two trajectories are two roundings of one computation.
AdamW divides each gradient by its own running scale, so where a gradient is near
zero a rounding can flip the sign of that parameter's step; everywhere else the steps
agree to rounding. The tolerances below follow from that.
"""
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

passed = failed = 0


def check(ok, name, detail):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


def run(program, args, out_dir):
    cmd = [program] + args + ["-o", out_dir]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        print(res.stdout[-3000:])
        check(False, " ".join(cmd), f"exited with status {res.returncode}")
        sys.exit(1)
    return res.stdout


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def floats_of(path):
    """The parameters of a checkpoint: 256 int32 of header, then float32 (doc/formats.md)."""
    with open(path, "rb") as f:
        data = f.read()
    return struct.unpack_from(f"<{(len(data) - 1024) // 4}f", data, 1024)


def check_wiring(gpu_prog):
    """The GPU program holds train.cu's kernels, and each REPLACED_ON_GPU function of
    train.c is a strong symbol there: train.cu's. Where train.cu lacks one (a misspelt
    launcher, a changed signature in C++), the linker keeps train.c's weak one, which
    nm lists as W."""
    with open("train.c") as f:
        replaced = re.findall(r"^REPLACED_ON_GPU [^(]*?\b(\w+)\(", f.read(), re.M)
    with open("train.cu") as f:
        kernels = re.findall(r"^__global__ void (\w+)\(", f.read(), re.M)
    res = subprocess.run(["nm", "-C", "--defined-only", gpu_prog], stdout=subprocess.PIPE, text=True)
    kinds, functions = {}, set()
    for line in res.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            kinds[parts[2]] = parts[1]
            functions.add(parts[2].split("(")[0])
    not_gpu = [name for name in replaced if kinds.get(name) != "T"]
    missing = [name for name in kernels if name not in functions]
    check(res.returncode == 0 and len(replaced) >= 20 and len(kernels) >= 20 and not not_gpu and not missing,
          f"{gpu_prog} holds train.cu's kernels and runs its version of every REPLACED_ON_GPU function",
          f"{len(kernels) - len(missing)} of {len(kernels)} kernels, {len(replaced) - len(not_gpu)} of {len(replaced)} "
          "functions" + (f"; train.c's own: {', '.join(not_gpu)}" if not_gpu else "")
          + (f"; kernels missing: {', '.join(missing)}" if missing else ""))


def worst_of(values):
    """The largest of the values, or NaN if any is NaN (Python's max skips a NaN that is
    not first)."""
    values = list(values)
    return math.nan if any(math.isnan(v) for v in values) else max(values)


def compare_losses(name, cpu, gpu, key, rtol):
    worst = worst_of(abs(a[key] - b[key]) / abs(a[key]) for a, b in zip(cpu, gpu))
    check(len(cpu) == len(gpu) and worst <= rtol, f"{name}: {key} at every step",
          f"{len(gpu)} steps, worst relative difference {worst:.2e} (tolerance {rtol:.0e})")


def compare_params(name, cpu_path, gpu_path, lr):
    a, b = floats_of(cpu_path), floats_of(gpu_path)
    diffs = [abs(x - y) for x, y in zip(a, b)]
    nans = sum(math.isnan(d) for d in diffs)
    # a wrong gradient moves most parameters by about lr per step; rounding moves almost
    # none by a hundredth of that (only parameters whose gradient is near zero can flip)
    far = sum(not d <= 0.01 * lr for d in diffs) / len(diffs)
    finite = sorted(d for d in diffs if not math.isnan(d))
    check(len(a) == len(b) and nans == 0 and far <= 0.01, f"{name}: parameters agree",
          f"{len(a)} values, {nans} NaN, median |diff| {finite[len(finite) // 2]:.1e}, "
          f"{100 * far:.3f}% differ by more than lr/100 (tolerance 1%)")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    cpu_prog, gpu_prog = sys.argv[1], sys.argv[2]
    if not os.path.exists("data/world/pretrain_train.txt"):
        sys.exit("no world data: run make data first")
    check_wiring(gpu_prog)
    root = tempfile.mkdtemp(prefix="compare_gpu_")
    try:
        compare_stages(cpu_prog, gpu_prog, root)
    finally:
        shutil.rmtree(root)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def compare_stages(cpu_prog, gpu_prog, root):
    dirs = {"cpu": os.path.join(root, "cpu"), "gpu": os.path.join(root, "gpu")}
    small = ["-L", "2", "-C", "64", "-H", "4", "-t", "128", "-V", "512"]
    # the first lines of the eval prompts and of the held-out sets: enough to compare on,
    # and a quarter of the time under the sanitizers (make test-gpu-emu SAN=1)
    def first_lines(name, n):
        path = os.path.join(root, name)
        with open(os.path.join("data/world", name)) as f, open(path, "w") as out:
            out.writelines(f.readlines()[:n])
        return path
    prompts = first_lines("eval_test.jsonl", 20)
    sft_val, pref_val = first_lines("sft_val.jsonl", 100), first_lines("pref_val.jsonl", 100)
    stages = [
        ("pretrain", small + ["-n", "8", "-b", "8", "-e", "4", "-x", "2", "-q", prompts], 3e-3),
        ("sft", ["-n", "6", "-b", "8", "-e", "6", "-q", prompts, "-j", sft_val], 1e-3),
        ("rm", ["-n", "6", "-b", "4", "-e", "6", "-j", pref_val], 1e-3),
        ("rlhf", ["-n", "2", "-b", "8", "-M", "4", "-m", "24", "-q", prompts, "-j", prompts], 1e-4),
    ]
    # one tokenizer for both (its code is train.c's in both builds)
    for name, path in dirs.items():
        os.makedirs(path)
    run(cpu_prog, ["pretrain", "-n", "0", "-V", "512", "-q", prompts], dirs["cpu"])
    shutil.copy(os.path.join(dirs["cpu"], "tokenizer.bin"), dirs["gpu"])
    for stage, args, lr in stages:
        args = args + ["-l", str(lr)]  # the learning rate that compare_params's tolerance assumes
        cpu_out = run(cpu_prog, [stage] + args, dirs["cpu"])
        run(gpu_prog, [stage] + args, dirs["gpu"])
        log = {"pretrain": "pretrain", "sft": "sft", "rm": "reward", "rlhf": "rlhf"}[stage]
        cpu, gpu = (jsonl(os.path.join(d, log + ".jsonl")) for d in (dirs["cpu"], dirs["gpu"]))
        if stage == "rlhf":
            # iteration 1: the same rollouts (sampling from logits that agree to
            # rounding picks the same tokens unless a draw lands within ~1e-6 of a
            # boundary), scored by the same models; scores sum over a whole response
            first = cpu[0], gpu[0]
            worst = worst_of(abs(first[0][k] - first[1][k]) for k in ("score", "response_len", "kl"))
            check(worst <= 1e-3, "rlhf: iteration 1 rollouts, score, KL and length",
                  f"score {first[1]['score']:.4f} vs {first[0]['score']:.4f}, KL {first[1]['kl']:.2e}, "
                  f"worst |diff| {worst:.1e} (tolerance 1e-3)")
            compare_losses("rlhf, iteration 1", cpu[:1], gpu[:1], "value_loss", 1e-3)
        else:
            # rounding differences grow over the steps but stay far below a
            # thousandth of the loss in this many steps
            compare_losses(stage, cpu, gpu, "train_loss", 1e-3)
        if stage == "rm":
            a, b = cpu[-1], gpu[-1]
            # a pair whose margin is within rounding of 0 may flip; the pairs evaluated are
            # those that fit the context, as the summary line says: "... (88 pairs)"
            n = int(re.findall(r"\((\d+) pairs\)", cpu_out)[-1])
            check(abs(a["val_accuracy"] - b["val_accuracy"]) <= 1 / n + 1e-9, "rm: held-out accuracy",
                  f"{b['val_accuracy']:.4f} vs {a['val_accuracy']:.4f} (at most one pair of {n} apart)")
        ck = {"pretrain": "base", "sft": "sft", "rm": "reward", "rlhf": "rlhf"}[stage]
        compare_params(stage, os.path.join(dirs["cpu"], ck + ".bin"), os.path.join(dirs["gpu"], ck + ".bin"), lr)

    # each build loads the other's checkpoints: greedy answers of the SFT model
    for writer, reader, prog in (("cpu", "gpu", gpu_prog), ("gpu", "cpu", cpu_prog)):
        out = os.path.join(root, f"{reader}_reads_{writer}")
        os.makedirs(out)
        shutil.copy(os.path.join(dirs["cpu"], "tokenizer.bin"), out)
        run(prog, ["answer", "-c", os.path.join(dirs[writer], "sft.bin"), "-z", os.path.join(out, "tokenizer.bin"), "-q",
                   prompts, "-O", os.path.join(out, "answers.jsonl")], out)
        theirs = jsonl(os.path.join(dirs[writer], "answers_sft.jsonl"))
        ours = jsonl(os.path.join(out, "answers.jsonl"))
        same = sum(a["response"] == b["response"] for a, b in zip(theirs, ours))
        # greedy decoding flips only where the two best logits are within rounding
        check(len(ours) == len(theirs) and same >= len(theirs) - 1,
              f"the {reader.upper()} build answers with the {writer.upper()} build's SFT checkpoint as it does",
              f"{same} of {len(theirs)} greedy answers identical (tolerance: one)")


if __name__ == "__main__":
    main()
