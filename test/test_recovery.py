#!/usr/bin/env python3
"""Interrupted training: kills at random moments, --resume, and a NaN.

Usage: python3 test/test_recovery.py [./train]

1. Kills: pretraining saves a checkpoint every step (-S 1) and is killed with SIGKILL
   at random moments, many of them while a checkpoint is being written. After every
   kill, the checkpoint on disk must load whole.
2. Resume: each stage (pretraining, SFT, reward model, RLHF, DPO, GRPO) runs once without a
   stop, and once killed after its first save and continued with --resume. The
   losses (every logged number but the timings) and the final checkpoints must be
   the same, bit for bit.
3. NaN: a checkpoint with a NaN in its weights makes the next step stop with a
   message naming that step, and the last good checkpoint stays as it was.
One line per check, "ok" or "FAIL"; exits non-zero on a failure.
"""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

train = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./train")
passed = failed = 0
SMALL = ["-L", "2", "-C", "32", "-H", "2", "-t", "32", "-b", "4", "-e", "0", "-x", "1", "-m", "8"]


def check(ok, name, detail):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    passed, failed = passed + ok, failed + (not ok)


def run(args, cwd, ok_codes=(0,)):
    env = os.environ
    if 0 not in ok_codes:  # under AddressSanitizer, a run that ends on an error exits without freeing
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    res = subprocess.run([train] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                         env=env)
    if res.returncode not in ok_codes:
        print(res.stdout[-2000:], res.stderr[-2000:])
        check(False, " ".join(args), f"exited with status {res.returncode}")
        sys.exit(1)
    return res


def loads(path, cwd):
    """Whether a checkpoint loads whole: sample reads all of it and checks its size."""
    res = subprocess.run([train, "sample", "-c", path, "-z", "tok.bin", "-m", "1"], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, errors="replace")
    return res.returncode == 0, res.stderr.strip()


def kill_after_save(args, cwd, checkpoint, after_saves=1):
    """Starts a run and kills it (SIGKILL) once `checkpoint` has been saved after_saves times."""
    path = os.path.join(cwd, checkpoint)
    proc = subprocess.Popen([train] + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saves, last = 0, None
    while proc.poll() is None:
        try:
            stamp = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != last:
            saves, last = saves + 1, stamp
            if saves >= after_saves:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.001)
    return proc.wait() == -signal.SIGKILL


def numbers(log_path):
    """Every logged value of a JSONL metrics log except timings."""
    with open(log_path) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if "per_s" not in k} for r in rows]


def same_file(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def test_kills(d):
    # a model big enough that writing its checkpoint (with fsync) takes a good part of each step
    args = ["pretrain", "-n", "100000", "-S", "1", "-o", "kill", "-z", "tok.bin", "-i", "text.txt", "-j", "text.txt",
            "-L", "2", "-C", "128", "-H", "4", "-t", "32", "-b", "2", "-e", "0", "-x", "1"]
    rng = random.Random(7)
    kills = during_write = bad = 0
    messages = []
    while kills < 26:
        proc = subprocess.Popen([train] + args, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ck = os.path.join(d, "kill", "base.bin")
        while not os.path.exists(ck) and proc.poll() is None:  # the first save
            time.sleep(0.002)
        if kills % 2 == 0:  # then a random moment
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # or the moment the next save opens its temporary file, a few hundred microseconds late
            while not os.path.exists(ck + ".tmp") and proc.poll() is None:
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        during_write += os.path.exists(ck + ".tmp")  # killed between opening the temporary file and the rename
        ok, err = loads(os.path.join("kill", "base.bin"), d)
        if not ok:
            bad += 1
            messages.append(err)
    check(bad == 0 and during_write > 0, "kills: every checkpoint left on disk loads whole",
          f"{kills} kills with SIGKILL, {during_write} of them during a checkpoint write, {bad} bad checkpoints "
          + (messages[0] if messages else ""))


def test_resume(d, stage, args, checkpoints, logs):
    whole, parts = os.path.join(d, f"{stage}_whole"), os.path.join(d, f"{stage}_parts")
    for out in (whole, parts):
        os.makedirs(out)
    run([stage] + args + ["-o", whole], d)
    interrupted = kill_after_save([stage] + args + ["-o", parts], d, os.path.join(parts, checkpoints[0]))
    with open(os.path.join(parts, logs[0])) as f:
        done_before = len(f.readlines())
    run([stage] + args + ["-o", parts, "--resume"], d)
    same_log = all(numbers(os.path.join(whole, log)) == numbers(os.path.join(parts, log)) for log in logs)
    same_ck = all(same_file(os.path.join(whole, c), os.path.join(parts, c)) for c in checkpoints)
    check(interrupted and same_log and same_ck, f"resume: {stage}, killed and continued, matches one whole run bit for bit",
          f"killed after {done_before} logged steps (interrupted: {interrupted}); {' and '.join(logs)} identical: {same_log}; "
          f"{' and '.join(checkpoints)} identical: {same_ck}")


def test_nan(d):
    out = os.path.join(d, "nan")
    os.makedirs(out)
    run(["pretrain", "-n", "3", "-o", out, "-z", "tok.bin", "-i", "text.txt", "-j", "text.txt"] + SMALL, d)
    good = os.path.join(out, "base.bin")
    with open(good, "rb") as f:
        data = bytearray(f.read())
    header = struct.unpack_from("<256i", data)
    V, C = header[4], header[7]
    struct.pack_into("<f", data, 1024 + 4 * V * C, float("nan"))  # the first position's embedding, wpe[0][0]
    with open(os.path.join(d, "poisoned.bin"), "wb") as f:
        f.write(data)
    before = open(good, "rb").read()
    res = run(["pretrain", "-n", "6", "-S", "1", "-o", out, "-c", "poisoned.bin", "-z", "tok.bin", "-i", "text.txt", "-j",
               "text.txt"] + SMALL, d, ok_codes=(1,))
    msg = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
    # -c starts a new run of -n steps from the checkpoint (only --resume continues one): its first step
    check("step 1:" in msg and "nan" in msg and "diverged" in msg, "NaN: training stops at the step that produced it",
          f"\"{msg[:160]}\"")
    check(open(good, "rb").read() == before and loads(good, d)[0], "NaN: the last good checkpoint is left as it was",
          f"{len(before)} bytes, unchanged, loads")


def main():
    d = tempfile.mkdtemp(prefix="test_recovery_")
    text = "".join(f"The fox number {i} eats berries and lives in the wood {i % 7}.\n" for i in range(3000))
    with open(os.path.join(d, "text.txt"), "w") as f:
        f.write(text)
    lines = [{"prompt": f"Who is fox {i}?", "completion": f"Fox {i} eats berries.", "chosen": f"Fox {i} eats berries.",
              "rejected": "Ugh."} for i in range(40)]
    with open(os.path.join(d, "chat.jsonl"), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    start = os.path.join(d, "start")
    os.makedirs(start)
    run(["pretrain", "-n", "4", "-o", start, "-V", "300", "-i", "text.txt", "-j", "text.txt"] + SMALL, d)
    shutil.copy(os.path.join(start, "tokenizer.bin"), os.path.join(d, "tok.bin"))
    shutil.copy(os.path.join(start, "tokenizer.bin"), os.path.join(start, "tok.bin"))
    run(["sft", "-n", "4", "-o", start, "-i", "chat.jsonl", "-j", "chat.jsonl", "-q", "chat.jsonl", "-b", "4", "-e", "0"], d)
    run(["rm", "-n", "4", "-o", start, "-i", "chat.jsonl", "-j", "chat.jsonl", "-b", "4", "-e", "0"], d)

    test_kills(d)
    data = ["-i", "text.txt", "-j", "text.txt", "-z", "tok.bin"]
    chat = ["-i", "chat.jsonl", "-j", "chat.jsonl", "-z", "tok.bin", "-b", "4", "-e", "5"]
    test_resume(d, "pretrain", ["-n", "300", "-S", "5", "-e", "10"] + data + SMALL[:-4], ["base.bin"], ["pretrain.jsonl"])
    test_resume(d, "sft", ["-n", "300", "-S", "5", "-c", os.path.join(d, "start", "base.bin"), "-q", "chat.jsonl"] + chat,
                ["sft.bin"], ["sft.jsonl"])
    test_resume(d, "rm", ["-n", "300", "-S", "5", "-c", os.path.join(d, "start", "sft.bin")] + chat, ["reward.bin"],
                ["reward.jsonl"])
    test_resume(d, "rlhf", ["-n", "60", "-S", "2", "-c", os.path.join(d, "start", "sft.bin"), "-R",
                            os.path.join(d, "start", "reward.bin"), "-i", "chat.jsonl", "-q", "chat.jsonl", "-j", "chat.jsonl", "-z", "tok.bin",
                            "-b", "4", "-M", "2", "-m", "8", "-K", "1", "-Z", "20", "-e", "20"], ["rlhf.bin", "value.bin"],
                ["rlhf.jsonl", "rlhf_eval.jsonl"])  # evaluations at 0, 20, 40 and 60: the first before the kill
    test_resume(d, "dpo", ["-n", "300", "-S", "5", "-c", os.path.join(d, "start", "sft.bin"), "-q", "chat.jsonl"] + chat,
                ["dpo.bin"], ["dpo.jsonl"])
    test_resume(d, "grpo", ["-n", "60", "-S", "2", "-c", os.path.join(d, "start", "sft.bin"), "-R",
                            os.path.join(d, "start", "reward.bin"), "-i", "chat.jsonl", "-q", "chat.jsonl", "-j", "chat.jsonl", "-z", "tok.bin",
                            "-b", "2", "-G", "3", "-M", "4", "-m", "8", "-e", "20"], ["grpo.bin"], ["grpo.jsonl", "grpo_eval.jsonl"])
    test_nan(d)
    shutil.rmtree(d)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
