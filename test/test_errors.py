#!/usr/bin/env python3
"""Bad input gets one clear message and a non-zero exit, never a crash.

Usage: python3 test/test_errors.py [./train]

Each case runs the trainer on a broken input and checks three things: the exit status
is 1 (a crash would be a signal, 128 + n, or a sanitizer's report), stderr names
the problem (the key words listed with the case), and nothing is left half-written.
One line per case, "ok" or "FAIL"; exits non-zero on a failure.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

train = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./train")
passed = failed = 0


def check(ok, name, detail):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    passed, failed = passed + ok, failed + (not ok)


# Under AddressSanitizer (make test SAN=1), a run that ends on an error exits without
# freeing, as a program may: leak checking is for the runs that succeed.
QUIET_LEAKS = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")


def run(args, cwd):
    res = subprocess.run([train] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         errors="replace", timeout=300, env=QUIET_LEAKS)
    return res.returncode, res.stderr


def expect_error(name, args, cwd, *words):
    rc, err = run(args, cwd)
    last = err.strip().splitlines()[-1] if err.strip() else "(nothing on stderr)"
    missing = [w for w in words if w.lower() not in err.lower()]
    ok = rc == 1 and not missing and "ERROR: AddressSanitizer" not in err and "runtime error" not in err
    check(ok, f"error: {name}", f"exit {rc}, \"{last[:150]}\"" + (f"; missing {missing}" if missing else ""))


def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def main():
    d = tempfile.mkdtemp(prefix="test_errors_")
    text = "".join(f"The fox number {i} eats berries and lives in the wood.\n" for i in range(400))
    write(os.path.join(d, "text.txt"), text)
    small = ["-L", "1", "-C", "16", "-H", "2", "-t", "16", "-b", "2", "-V", "300", "-e", "0", "-x", "1", "-m", "4"]
    base = small + ["-i", "text.txt", "-j", "text.txt", "-o", "out"]
    rc, err = run(["pretrain", "-n", "2"] + base, d)
    if rc != 0:
        print(err)
        sys.exit("could not train the small model the cases start from")
    sft = write(os.path.join(d, "sft.jsonl"), '{"prompt": "Who?", "completion": "A fox."}\n' * 8)
    pref = write(os.path.join(d, "pref.jsonl"), '{"prompt": "Who?", "chosen": "A fox.", "rejected": "Ugh."}\n' * 8)
    rc, err = run(["sft", "-n", "2", "-o", "out", "-i", sft, "-j", sft, "-q", sft, "-b", "2", "-e", "0", "-m", "4"], d)
    rc2, err2 = run(["rm", "-n", "1", "-o", "out", "-i", pref, "-j", pref, "-b", "2", "-e", "0"], d)
    if rc != 0 or rc2 != 0:
        print(err, err2)
        sys.exit("could not train the small SFT and reward models the cases start from")
    ck = os.path.join(d, "out", "base.bin")
    with open(ck, "rb") as f:
        good = f.read()

    # files
    expect_error("missing training file", ["pretrain", "-n", "1", "-o", "o2", "-i", "nope.txt"] + small, d,
                 "nope.txt", "cannot open")
    os.mkdir(os.path.join(d, "adir"))
    expect_error("a directory given as the training file", ["pretrain", "-n", "1", "-o", "o2", "-i", "adir"] + small, d,
                 "adir", "cannot read")
    write(os.path.join(d, "empty.txt"), "")
    expect_error("empty corpus", ["pretrain", "-n", "1", "-o", "out", "-i", "empty.txt", "-j", "text.txt"] + small, d,
                 "empty.txt", "empty")
    write(os.path.join(d, "short.txt"), "The fox.")
    expect_error("corpus shorter than one sequence", ["pretrain", "-n", "1", "-o", "out", "-i", "short.txt", "-j",
                 "text.txt"] + small, d, "short", "fewer than one sequence")
    expect_error("output directory is a file", ["pretrain", "-n", "1", "-o", "text.txt"] + base[:-2], d, "text.txt")

    # JSONL
    cases = [
        ("bad escape", '{"prompt": "a\\qb", "completion": "x"}', ["bad.jsonl:2", "escape"]),
        ("bad \\u escape", '{"prompt": "a\\u12G4", "completion": "x"}', ["bad.jsonl:2", "\\u"]),
        ("lone surrogate", '{"prompt": "a\\ud800", "completion": "x"}', ["bad.jsonl:2", "surrogate"]),
        ("invalid UTF-8", b'{"prompt": "a\xff\xfeb", "completion": "x"}', ["bad.jsonl:2", "UTF-8"]),
        ("missing key", '{"prompt": "a"}', ["bad.jsonl:2", "completion"]),
        ("number instead of string", '{"prompt": 42, "completion": "x"}', ["bad.jsonl:2", "prompt", "string"]),
        ("unterminated string", '{"prompt": "abc', ["bad.jsonl:2"]),
        ("not an object", '["prompt", "completion"]', ["bad.jsonl:2"]),
        ("a NUL byte", b'{"prompt": "a\x00b", "completion": "x"}', ["bad.jsonl:2", "NUL"]),
    ]
    for name, line, words in cases:
        first = b'{"prompt": "Who?", "completion": "A fox."}\n'
        body = line if isinstance(line, bytes) else line.encode()
        path = write(os.path.join(d, "bad.jsonl"), first + body + b"\n")
        expect_error(f"SFT data: {name}", ["sft", "-n", "1", "-o", "out", "-i", path, "-j", sft, "-q", sft, "-b", "2"], d,
                     *words)
    path = write(os.path.join(d, "badpref.jsonl"), '{"prompt": "Who?", "chosen": "A fox."}\n')
    expect_error("preference data: missing key", ["rm", "-n", "1", "-o", "out", "-i", path, "-j", pref, "-b", "2"], d,
                 "badpref.jsonl:1", "rejected")
    write(os.path.join(d, "empty.jsonl"), "")
    expect_error("empty JSONL", ["sft", "-n", "1", "-o", "out", "-i", "empty.jsonl", "-j", sft, "-b", "2"], d,
                 "empty.jsonl", "no")
    # a prompt longer than the context is cut from the left (doc/chat.md), and counted
    long_prompt = write(os.path.join(d, "long.jsonl"), '{"prompt": "%s"}\n' % ("word " * 200))
    res = subprocess.run([train, "answer", "-c", "out/sft.bin", "-O", "ans.jsonl", "-q", long_prompt, "-m", "2"], cwd=d, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(res.returncode == 0 and "1 prompts (1 cut, 0 dropped" in res.stdout, "a prompt longer than the context is cut and counted",
          f"exit {res.returncode}, " + ([l for l in res.stdout.splitlines() if l.startswith("data:")] or ["no data line"])[0])
    expect_error("RLHF with no room for a prompt", ["rlhf", "-n", "1", "-o", "out", "-i", long_prompt, "-b", "2",
                 "-M", "2", "-q", sft, "-m", "16"], d, "-m 16", "context")

    # the stages always train; answering and scoring are commands of their own, which
    # write only the file -O names
    expect_error("sft -n 0 trains nothing", ["sft", "-n", "0", "-o", "out", "-i", sft, "-j", sft, "-q", sft], d,
                 "nothing to train", "./train answer")
    expect_error("rm -n 0 trains nothing", ["rm", "-n", "0", "-o", "out", "-i", pref, "-j", pref], d,
                 "nothing to train", "./train score")
    expect_error("answer without -O", ["answer", "-c", "out/sft.bin", "-q", sft], d, "-O")
    expect_error("answer without -c", ["answer", "-O", "ans.jsonl", "-q", sft], d, "-c")
    expect_error("score given a language model", ["score", "-c", "out/sft.bin", "-j", pref, "-O", "s.jsonl"], d,
                 "sft.bin", "reward")
    before = {f: open(os.path.join(d, "out", f), "rb").read() for f in sorted(os.listdir(os.path.join(d, "out")))}
    rc_a, err_a = run(["answer", "-c", "out/sft.bin", "-q", sft, "-O", "mine.jsonl", "-m", "4"], d)
    rc_s, err_s = run(["score", "-c", "out/reward.bin", "-j", pref, "-O", "scores.jsonl", "-b", "3"], d)
    after = {f: open(os.path.join(d, "out", f), "rb").read() for f in sorted(os.listdir(os.path.join(d, "out")))}
    answers = open(os.path.join(d, "mine.jsonl"), "rb").read().splitlines() if rc_a == 0 else []
    scores = open(os.path.join(d, "scores.jsonl")).read().splitlines() if rc_s == 0 else []
    check(rc_a == 0 and rc_s == 0 and len(answers) == 8 and len(scores) == 8 and '"record": 8,' in scores[-1]
          and before == after, "answer and score write the file -O names and leave the output directory as it was",
          f"exits {rc_a} {rc_s}, {len(answers)} answers, {len(scores)} scores, "
          f"{sum(before.get(f) != after.get(f) for f in set(before) | set(after))} files of out/ changed")

    # checkpoints
    def broken(name, data):
        return write(os.path.join(d, name), data)
    bad_magic = broken("magic.bin", b"XXXX" + good[4:])
    expect_error("checkpoint: wrong magic", ["answer", "-O", "ans.jsonl", "-c", bad_magic, "-q", sft], d,
                 "magic.bin", "magic")
    bad_version = broken("version.bin", good[:4] + struct.pack("<i", 99) + good[8:])
    expect_error("checkpoint: wrong version", ["answer", "-O", "ans.jsonl", "-c", bad_version, "-q", sft], d,
                 "version.bin", "version 99")
    expect_error("checkpoint: truncated", ["answer", "-O", "ans.jsonl", "-c", broken("trunc.bin", good[:len(good) // 2]),
                 "-q", sft], d, "trunc.bin", "truncated")
    expect_error("checkpoint: header only", ["answer", "-O", "ans.jsonl", "-c", broken("head.bin", good[:1024]), "-q",
                 sft], d, "head.bin", "truncated")
    expect_error("checkpoint: empty file", ["answer", "-O", "ans.jsonl", "-c", broken("zero.bin", b""), "-q", sft], d,
                 "zero.bin", "truncated")
    expect_error("checkpoint: longer than its header says", ["answer", "-O", "ans.jsonl", "-c",
                 broken("long.bin", good + b"\0" * 8), "-q", sft], d, "long.bin", "longer")
    huge = bytearray(good)
    struct.pack_into("<i", huge, 4 * 7, 1 << 30)  # channels
    expect_error("checkpoint: absurd sizes in the header", ["answer", "-O", "ans.jsonl", "-c", broken("huge.bin", bytes(huge)),
                 "-q", sft], d, "huge.bin")
    neg = bytearray(good)
    struct.pack_into("<i", neg, 4 * 5, -5)  # layers
    expect_error("checkpoint: negative size in the header", ["answer", "-O", "ans.jsonl", "-c", broken("neg.bin", bytes(neg)),
                 "-q", sft], d, "neg.bin", "bad model config")
    expect_error("checkpoint: a reward model where a policy is expected", ["answer", "-O", "ans.jsonl", "-c",
                 "out/reward.bin", "-q", sft], d, "reward.bin", "reward", "needed")
    expect_error("checkpoint: a policy where a reward model is expected", ["rlhf", "-n", "1", "-o", "out", "-R",
                 "out/sft.bin", "-i", sft], d, "sft.bin", "reward")
    expect_error("checkpoint: a text file", ["answer", "-O", "ans.jsonl", "-c", "text.txt", "-q", sft], d,
                 "text.txt", "magic")
    # DPO and GRPO: settings that would train nothing, and missing or wrong models
    expect_error("dpo -B 0 trains nothing", ["dpo", "-n", "1", "-o", "out", "-i", pref, "-j", pref, "-B", "0"], d,
                 "-B 0", "beta")
    expect_error("dpo -D 0.5: a label that says nothing", ["dpo", "-n", "1", "-o", "out", "-i", pref, "-j", pref, "-D", "0.5"], d,
                 "-D 0.5", "below 0.5")
    expect_error("dpo from a reward model", ["dpo", "-n", "1", "-o", "out", "-i", pref, "-j", pref, "-c", "out/reward.bin"], d,
                 "reward.bin", "reward")
    expect_error("dpo -R names a missing reward model", ["dpo", "-n", "1", "-o", "out", "-i", pref, "-j", pref, "-R", "nope.bin"],
                 d, "nope.bin", "./train rm")
    expect_error("grpo -G 1: no group to compare with", ["grpo", "-n", "1", "-o", "out", "-i", sft, "-G", "1"], d,
                 "-G 1", "at least 2")
    expect_error("grpo without a reward model", ["grpo", "-n", "1", "-o", "out", "-i", sft, "-R", "missing.bin"], d,
                 "missing.bin", "./train rm")
    expect_error("grpo -n 0", ["grpo", "-n", "0", "-o", "out", "-i", sft], d, "-n 0", "at least one")

    # tokenizers
    tok = open(os.path.join(d, "out", "tokenizer.bin"), "rb").read()
    write(os.path.join(d, "tok_small.bin"), tok)
    other = tempfile.mkdtemp(dir=d)
    run(["pretrain", "-n", "0", "-o", other, "-V", "280", "-L", "1", "-C", "16", "-H", "2", "-t", "16", "-i", "text.txt",
         "-j", "text.txt"], d)
    expect_error("tokenizer whose vocabulary does not match the model", ["answer", "-O", "ans.jsonl", "-c", "out/sft.bin", "-z",
                 os.path.join(other, "tokenizer.bin"), "-q", sft], d, "tokenizer.bin", "280", "300")
    expect_error("tokenizer: wrong magic", ["answer", "-O", "ans.jsonl", "-c", "out/sft.bin", "-z", broken("tm.bin", b"\0" * len(tok)),
                 "-q", sft], d, "tm.bin", "magic")
    expect_error("tokenizer: truncated", ["answer", "-O", "ans.jsonl", "-c", "out/sft.bin", "-z", broken("tt.bin", tok[:len(tok) - 6]),
                 "-q", sft], d, "tt.bin", "truncated")
    bad_merge = bytearray(tok)
    struct.pack_into("<i", bad_merge, 20, 100000)  # the first merge names a token that does not exist
    expect_error("tokenizer: a merge of tokens that do not exist yet", ["answer", "-O", "ans.jsonl", "-c", "out/sft.bin", "-z",
                 broken("tmerge.bin", bytes(bad_merge)), "-q", sft], d, "tmerge.bin", "merge")

    # flags and configs
    expect_error("C not divisible by NH", ["pretrain", "-n", "1", "-o", "o3", "-C", "30", "-H", "4"], d, "-C 30", "-H 4")
    expect_error("zero layers", ["pretrain", "-n", "1", "-o", "o3", "-L", "0"], d, "-L", "out of range")
    expect_error("negative batch", ["pretrain", "-n", "1", "-o", "o3", "-b", "-4"], d, "-b", "out of range")
    expect_error("not a number", ["pretrain", "-n", "ten"], d, "-n", "not an integer")
    expect_error("learning rate not a number", ["pretrain", "-l", "fast"], d, "-l", "not a number")
    expect_error("unknown flag", ["pretrain", "-Q", "1"], d, "unknown flag -Q")
    expect_error("flag without a value", ["pretrain", "-n"], d, "-n", "needs a value")
    expect_error("unknown command", ["pretrian"], d, "unknown command", "pretrian")
    expect_error("context longer than the checkpoint's", ["pretrain", "-n", "3", "-o", "out", "-c", "out/base.bin",
                 "-t", "64", "-i", "text.txt", "-j", "text.txt"], d, "-t 64", "context")

    # memory
    expect_error("a model too big for memory", ["pretrain", "-n", "1", "-o", "o4", "-L", "1024", "-C", "65536", "-H", "1",
                 "-t", "16", "-V", "300", "-i", "text.txt", "-j", "text.txt", "-z", "tok_small.bin"], d,
                 "out of memory", "smaller")

    # flags that a checkpoint or a tokenizer overrides are errors that name both values
    expect_error("-t against a checkpoint's context", ["sft", "-n", "1", "-o", "out", "-i", sft, "-j", sft, "-t", "64"], d,
                 "-t 64", "context of 16", "drop -t")
    expect_error("-L against a checkpoint's layers", ["answer", "-c", "out/sft.bin", "-O", "a.jsonl", "-q", sft, "-L", "3"], d,
                 "-L 3", "1 layers")
    no_v = [x for i, x in enumerate(small) if x != "-V" and (i == 0 or small[i - 1] != "-V")]
    expect_error("chat without -c, when its default out/rlhf.bin does not exist", ["chat", "-o", "out"], d,
                 "rlhf.bin", "default model", "-c")
    expect_error("-V against an existing tokenizer", ["pretrain", "-n", "1", "-o", "out", "-V", "400", "-i", "text.txt"] + no_v,
                 d, "-V 400", "300 tokens", "remove it")
    # the settings table shows the values in force: the checkpoint's shape, not the defaults
    res = subprocess.run([train, "sft", "-n", "1", "-o", "o5", "-c", "out/base.bin", "-z", "out/tokenizer.bin", "-i", sft, "-j",
                          sft, "-b", "2", "-e", "0"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    row = ([l for l in res.stdout.splitlines() if l.startswith("| model")] or ["no model row"])[0]
    check(res.returncode == 0 and "L=1 C=16 NH=2 T=16 V=300" in row, "flags: the settings table shows the checkpoint's shape",
          row.strip("| "))
    # fine-tuning a checkpoint on new data is a new schedule of -n steps; only --resume continues one
    sft2 = write(os.path.join(d, "sft2.jsonl"), '{"prompt": "Where?", "completion": "In the wood."}\n' * 8)
    res = subprocess.run([train, "sft", "-c", "out/sft.bin", "-z", "out/tokenizer.bin", "-n", "2", "-o", "o5", "-i", sft2, "-j", sft2,
                          "-b", "2", "-e", "0"],
                         cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(d, "o5", "sft.jsonl")) as f:
        steps = [l for l in f if '"step"' in l and '"train_loss"' in l]
    check(res.returncode == 0 and "2 new steps" in res.stdout and len(steps) == 2,
          "flags: sft -c sft.bin -n 2 on new data trains 2 new steps", f"exit {res.returncode}, {len(steps)} steps logged")
    # with no -j, the last tenth of -i is held out: validation is never the training data
    res = subprocess.run([train, "pretrain", "-n", "1", "-o", "o6", "-z", "out/tokenizer.bin", "-i", "text.txt"] + no_v, cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = ([l for l in res.stdout.splitlines() if "held out" in l] or ["no held-out line"])[0]
    sizes = [int(w) for w in line.replace(",", " ").split() if w.isdigit()]
    total = sum(len(t) for t in [open(os.path.join(d, "text.txt")).read()])  # bytes; a token is at least one byte
    check(res.returncode == 0 and len(sizes) == 2 and sizes[1] == (sizes[0] + sizes[1]) // 10 and sum(sizes) <= total,
          "flags: pretrain without -j validates on the held-out last tenth of -i", line)
    res = subprocess.run([train, "sft", "-n", "1", "-o", "o6", "-c", "out/base.bin", "-z", "out/tokenizer.bin", "-i", sft, "-b",
                          "2", "-e", "0"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = ([l for l in res.stdout.splitlines() if "held out" in l] or ["no held-out line"])[0]
    check(res.returncode == 0 and "the last 1 of" in line and "records 8 to 8" in line and "(7 cut" not in res.stdout,
          "flags: sft without -j holds out the last tenth of the records (at least one)", line)

    # no half-written files were left behind, and the good checkpoint is untouched
    with open(ck, "rb") as f:
        check(f.read() == good, "errors: out/base.bin is untouched by all of the above", f"{len(good)} bytes")
    shutil.rmtree(d)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
