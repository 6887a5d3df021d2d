#!/usr/bin/env python3
"""The classroom exercises of doc/exercises.md.

Each exercise is one or two functions of train.c. `make exercise N` copies train.c
into exercises/N/ with those functions' bodies blanked out; the student writes them
back; `make check N` compiles the tests of test/ against the student's copy and runs
the ones that exercise the functions. The shipped train.c is never touched.

    exercise.py new N [--force]      write exercises/N/train.c (keeps a student's work unless --force)
    exercise.py check N [--dir D]    build D/train.c's tests and run exercise N's (default D = exercises/N)
    exercise.py solution N           print the reference functions from train.c
    exercise.py selftest [N ...]     for every exercise (or those given): the blank copy fails its check, and
                                     with the reference put back it passes (part of make test)

The compiler and its flags come from the environment (CC, CFLAGS), as make passes them.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # test/classroom/ -> the repository
TRAIN_C = os.path.join(ROOT, "train.c")


class Exercise:
    def __init__(self, title, functions, grad_tests=(), train_tests=()):
        self.title = title
        self.functions = functions      # whose bodies the student writes
        self.grad_tests = grad_tests    # test names in test/test_grad.c (double precision, finite differences)
        self.train_tests = train_tests  # test names in test/test_train.c (float, PyTorch fixtures, by hand)


# In the order of train.c's sections. Every list of tests includes one that compares
# values, not only gradients: a blank forward and a blank backward agree with each
# other (both zero), so finite differences alone would pass them.
EXERCISES = {
    1: Exercise("BPE encoding: apply the merges to a chunk", ["encode_chunk"], train_tests=["tokenizer"]),
    2: Exercise("layernorm backward", ["layernorm_backward"], ["layernorm"], ["against_pytorch"]),
    3: Exercise("the masked cross-entropy loss", ["crossentropy_softmax_forward", "crossentropy_softmax_backward"],
                ["crossentropy", "model"], ["against_pytorch", "sft_masking"]),
    4: Exercise("AdamW", ["adamw_tensor"], train_tests=["optimizer"]),
    5: Exercise("the SFT batch: which tokens take a loss", ["sft_batch"], train_tests=["sft_masking"]),
    6: Exercise("the pairwise reward loss", ["reward_loss_forward", "reward_loss_backward"],
                ["reward_loss", "reward_model"], ["reward_against_pytorch"]),
    7: Exercise("attention with a KV cache", ["attention_forward_cached"], train_tests=["kv_cache", "rlhf_rollouts"]),
    8: Exercise("generalized advantage estimation", ["gae"], train_tests=["gae"]),
    9: Exercise("PPO's clipped objective", ["ppo_policy_loss_forward", "ppo_policy_loss_backward"],
                ["ppo_losses", "ppo_model"], ["ppo_against_pytorch", "rlhf_rollouts"]),
    10: Exercise("the DPO loss", ["dpo_loss_forward", "dpo_loss_backward"], ["dpo_loss", "dpo_model"],
                 ["alignment_by_hand", "dpo_start", "dpo_against_pytorch"]),
    11: Exercise("GRPO: group advantages and the k3 KL", ["group_advantages", "grpo_loss_forward", "grpo_loss_backward"],
                 ["grpo_loss", "grpo_model"], ["alignment_by_hand", "grpo_against_pytorch", "lr_zero"]),
}


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def find_body(lines, name):
    """(first, last): the line indices of a function's body, between the line that
    ends its signature with '{' and its closing '}' at column 0."""
    starts = [i for i, line in enumerate(lines)
              if re.match(r"^(REPLACED_ON_GPU |static )?[A-Za-z_][\w \*]*[ \*]" + name + r"\(", line)]
    defs = []
    for i in starts:
        j = i
        while j < len(lines) and not lines[j].rstrip().endswith("{") and not lines[j].rstrip().endswith(";"):
            j += 1
        if j < len(lines) and lines[j].rstrip().endswith("{"):
            defs.append((i, j))
    if len(defs) != 1:
        fail(f"train.c should define {name} exactly once (found {len(defs)})")
    start, open_line = defs[0]
    close = open_line + 1
    while close < len(lines) and lines[close] != "}":
        close += 1
    returns = re.sub(r"\b(REPLACED_ON_GPU|static)\b", "", lines[start].split(name + "(")[0]).strip()
    return open_line + 1, close, returns


def blank(text, number):
    """train.c with the bodies of exercise `number`'s functions replaced by a stub."""
    lines = text.split("\n")
    for name in EXERCISES[number].functions:
        first, last, returns = find_body(lines, name)
        stub = [f"    // exercise {number}: write {name} here (doc/exercises.md); `make check {number}` tests it"]
        if returns != "void":
            stub.append("    return 0;")
        lines[first:last] = stub
    return "\n".join(lines)


def put_back(text, reference, number):
    """The student's text with the reference bodies of exercise `number` put back."""
    lines, ref = text.split("\n"), reference.split("\n")
    for name in EXERCISES[number].functions:
        first, last, _ = find_body(lines, name)
        rfirst, rlast, _ = find_body(ref, name)
        lines[first:last] = ref[rfirst:rlast]
    return "\n".join(lines)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def exercise_number(arg):
    if not arg or not arg.isdigit() or int(arg) not in EXERCISES:
        fail(f"give an exercise number from 1 to {len(EXERCISES)}, e.g. make exercise 2 (see doc/exercises.md)")
    return int(arg)


def compile_and_run(number, directory, quiet=False):
    """Builds the tests against directory/train.c and runs exercise `number`'s.
    Returns (passed, failed, output)."""
    ex = EXERCISES[number]
    cc = os.environ.get("CC", "cc")
    cflags = os.environ.get("CFLAGS", "-O1 -std=c11 -Wall -Wextra -fopenmp").split()
    # the stubs leave parameters unused; the student's first draft may too
    cflags += ["-Wno-unused-parameter", "-Wno-unused-variable", "-Wno-unused-but-set-variable", "-Wno-unused-function"]
    source = os.path.relpath(os.path.join(directory, "train.c"), os.path.join(ROOT, "test"))
    output, passed, failed = [], 0, 0
    builds = {}  # the two test programs compile at once
    for program, names in (("test_grad", ex.grad_tests), ("test_train", ex.train_tests)):
        if names:
            binary = os.path.join(directory, program)
            command = [cc] + cflags + [f'-DTRAIN_C="{source}"', "-o", binary, os.path.join(ROOT, "test", program + ".c"), "-lm"]
            builds[program] = (binary, names, subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True))
    for program, (binary, names, build) in builds.items():
        errors = build.communicate()[1]
        if build.returncode != 0:
            output.append(errors)
            output.append(f"FAIL {program}: {os.path.join(directory, 'train.c')} does not compile (the errors are above)")
            failed += 1
            continue
        try:
            run = subprocess.run([binary] + list(names), cwd=ROOT, capture_output=True, text=True, timeout=300)
            lines = run.stdout.splitlines()
            if run.returncode != 0 and not any(line.startswith("FAIL ") for line in lines):
                lines.append(f"FAIL {program} stopped with status {run.returncode} (a crash?) {run.stderr.strip()[-300:]}")
        except subprocess.TimeoutExpired:
            lines = [f"FAIL {program} ran for more than 300 s (an endless loop?)"]
        for line in lines:
            passed += line.startswith("ok ")
            failed += line.startswith("FAIL ")
        output.extend(lines)
    return passed, failed, "\n".join(output)


def cmd_new(args):
    number = exercise_number(args[0] if args else "")
    path = os.path.join(ROOT, "exercises", str(number), "train.c")
    blanked = blank(read(TRAIN_C), number)
    if os.path.exists(path) and read(path) != blanked and "--force" not in args:
        fail(f"{path} exists and holds changes (your work?): make exercise {number} FORCE=1 starts it over")
    write(path, blanked)
    ex = EXERCISES[number]
    print(f"exercise {number}: {ex.title}")
    print(f"  write {', '.join(ex.functions)} in exercises/{number}/train.c (the stub says where),")
    print(f"  then run make check {number}. Hints: doc/exercises.md")


def cmd_check(args):
    number = exercise_number(args[0] if args else "")
    directory = os.path.join(ROOT, "exercises", str(number))
    if "--dir" in args:
        directory = os.path.abspath(args[args.index("--dir") + 1])
    if not os.path.exists(os.path.join(directory, "train.c")):
        fail(f"no {directory}/train.c: make exercise {number} writes it")
    passed, failed, output = compile_and_run(number, directory)
    print(output)
    print(f"{passed} passed, {failed} failed")
    if failed == 0 and passed > 0:
        print(f"exercise {number} ({EXERCISES[number].title}): done")
    sys.exit(0 if failed == 0 and passed > 0 else 1)


def cmd_solution(args):
    number = exercise_number(args[0] if args else "")
    lines = read(TRAIN_C).split("\n")
    for name in EXERCISES[number].functions:
        first, last, _ = find_body(lines, name)
        start = first - 1
        while start > 0 and lines[start - 1].strip() and not lines[start - 1].startswith("}"):
            start -= 1 # the comment above the function and its signature
        print(f"// train.c, lines {start + 1}-{last + 1}")
        print("\n".join(lines[start:last + 1]))
        print()


def cmd_selftest(args):
    reference = read(TRAIN_C)
    failures = 0
    numbers = [int(a) for a in args] or list(EXERCISES)  # selftest N...: only those
    for number, ex in EXERCISES.items():
        if number not in numbers:
            continue
        with tempfile.TemporaryDirectory(prefix=f"exercise{number}-") as directory:
            path = os.path.join(directory, "train.c")
            write(path, blank(reference, number))
            passed, failed, output = compile_and_run(number, directory)
            ok = failed > 0
            print(f"{'ok  ' if ok else 'FAIL'} exercise {number} ({ex.title}): the blanked copy fails its check: "
                  f"{failed} of {passed + failed} checks fail")
            failures += not ok
            restored = put_back(read(path), reference, number)
            write(path, restored)
            passed, failed, output = compile_and_run(number, directory)
            ok = restored == reference and failed == 0 and passed > 0
            if not ok:
                print(output)
            print(f"{'ok  ' if ok else 'FAIL'} exercise {number} ({ex.title}): with the reference put back "
                  f"(identical to train.c: {'yes' if restored == reference else 'no'}) it passes: {passed} checks, {failed} fail")
            failures += not ok
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    commands = {"new": cmd_new, "check": cmd_check, "solution": cmd_solution, "selftest": cmd_selftest}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        fail("usage: exercise.py new|check|solution N, or exercise.py selftest")
    commands[sys.argv[1]](sys.argv[2:])
