#!/usr/bin/env python3
"""./train chat, sample and answer as a user meets them, on small models trained here.

Usage: python3 test/test_chat.py [./train]

- chat from a pipe answers as ./train answer does on the same conversation: the
  template, the stop at <|end|>, the history as the prompt of the next turn, /reset,
  and the oldest turns dropped (and said so) when the context is full;
- chat through a pseudo-terminal: it prompts, streams the answer, and /quit ends it;
- answer -q - reads the prompts from standard input;
- sample cuts a prompt longer than the context from the left, and says so;
- a model trained on UTF-8-heavy text with a small vocabulary, sampled at a high
  temperature, draws byte tokens that split characters: sample, chat and answer
  still write valid UTF-8, with U+FFFD for what can never complete.
One line per check, "ok" or "FAIL"; exits non-zero on a failure.
"""
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time

train = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./train")
passed = failed = 0


def check(ok, name, detail):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    passed, failed = passed + ok, failed + (not ok)


def run(args, cwd, stdin=None):
    """runs ./train; returns (exit status, stdout bytes, stderr text)"""
    res = subprocess.run([train] + args, cwd=cwd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    return res.returncode, res.stdout, res.stderr.decode("utf-8", "replace")


def must(args, cwd, what):
    rc, out, err = run(args, cwd)
    if rc != 0:
        print(out.decode("utf-8", "replace"), err)
        sys.exit(f"could not {what}")


def unescape(line):
    """chat from a pipe writes a newline in an answer as \\n and a backslash as \\\\"""
    out, i = [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            out.append("\n" if line[i + 1] == "n" else line[i + 1])
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def chat(model, lines, cwd, extra=()):
    """the answers of chat from a pipe, one per line typed, and its stderr"""
    rc, out, err = run(["chat", "-c", model, "-m", "24"] + list(extra), cwd, stdin="".join(l + "\n" for l in lines).encode())
    return rc, [unescape(a) for a in out.decode("utf-8").splitlines()], err


def answers(model, prompts, cwd, extra=()):
    """./train answer's responses to prompts (strings or lists of messages)"""
    path = os.path.join(cwd, "q.jsonl")
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt": p}, ensure_ascii=False) + "\n")
    rc, _, err = run(["answer", "-c", model, "-q", path, "-O", "a.jsonl", "-m", "24"] + list(extra), cwd)
    if rc != 0:
        print(err)
        return []
    with open(os.path.join(cwd, "a.jsonl"), encoding="utf-8") as f:
        return [json.loads(l)["response"] for l in f]


def turns(history):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(history)]


def test_pipe(d, model):
    lines = ["Who is the fox?", "Where does it live?", "What does it eat?"]
    rc, got, err = chat(model, lines, d)
    history, want = [], []
    for line in lines:
        history.append(line)
        want += answers(model, [turns(history)], d)
        history.append(want[-1] if want else "")
    unended = err.count("no <|end|>")
    check(rc == 0 and got == want and len(got) == 3 and unended < len(got) and "<|end|>" not in "".join(got),
          "chat from a pipe: each answer is ./train answer's on the conversation so far (template, stop at <|end|>, history)",
          f"exit {rc}, {sum(a == b for a, b in zip(got, want))} of {len(lines)} the same, {len(got) - unended} ended: {got[:2]}")
    # context 32: a second long turn pushes the first out, unless /reset has cleared it
    long = ["The fox lives in the wood and eats berries.", "And the hare lives in the meadow?"]
    _, _, err_kept = chat(model, long, d)
    rc, again, err_reset = chat(model, [long[0], "/reset", long[1]], d)
    alone = answers(model, [long[1]], d)
    kept, reset = err_kept.count("oldest turns"), err_reset.count("oldest turns")
    check(rc == 0 and kept == 1 and reset == 0 and "new conversation" in err_reset and again[1:] == alone,
          "chat: /reset starts a new conversation", f"turns dropped without /reset: {kept} notice, with it: {reset}; "
          f"the answer after it is the one asked alone: {again[1:] == alone}")


def test_cut(d, model):
    # context 32: a few turns fill it, and the oldest go
    lines = ["The fox lives in the wood and eats berries.", "And the hare?", "Where is the owl?", "Who is the fox?"]
    rc, got, err = chat(model, lines, d)
    notes = [l for l in err.splitlines() if "oldest turns" in l]
    # answer keeps the longest suffix of the whole conversation that fits, as chat does
    # turn by turn (a suffix too long once stays too long), so the whole history is the
    # prompt to compare with
    history, ok = [], rc == 0 and len(got) == len(lines)
    for i, line in enumerate(lines):
        history.append(line)
        want = answers(model, [turns(history)], d)
        if i < len(got):
            ok &= want == [got[i]]
            history.append(got[i])
    dropped = sum(int(n.split()[1]) for n in notes if n.split()[1].isdigit())
    check(ok and dropped > 0 and dropped % 2 == 0,
          "chat: a full context drops the oldest turns, whole, says so, and answers as ./train answer does",
          f"{len(notes)} notices, {dropped} turns dropped: {notes[:1]}")


def read_until(fd, marker, seconds=60):
    buf, end = b"", time.time() + seconds
    while marker not in buf and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_terminal(d, model):
    want = answers(model, ["Who is the fox?"], d)
    master, slave = pty.openpty()
    proc = subprocess.Popen([train, "chat", "-c", model, "-m", "24"], cwd=d, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    banner = read_until(master, b"you> ")
    os.write(master, b"Who is the fox?\n")
    turn = read_until(master, b"you> ")
    os.write(master, b"/quit\n")
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "hung"
    os.close(master)
    text = turn.decode("utf-8", "replace").replace("\r", "")
    text = "\n".join(l for l in text.split("\n") if not l.startswith("("))  # notices, on the same terminal
    answer = text.split("model> ", 1)[1].rsplit("\nyou> ", 1)[0] if "model> " in text and "\nyou> " in text else None
    check(b"/reset" in banner and answer is not None and [answer] == want and rc == 0,
          "chat in a terminal: a banner with the commands, you> and model> prompts, the answer streamed, /quit ends it",
          f"exit {rc}, answer {answer!r}, want {want}")


def test_stdin_and_sample(d, model):
    prompts = ["Who is the fox?", "Where does it live?"]
    want = answers(model, prompts, d)
    body = "".join(json.dumps({"prompt": p}) + "\n" for p in prompts).encode()
    rc, _, err = run(["answer", "-c", model, "-q", "-", "-O", "b.jsonl", "-m", "24"], d, stdin=body)
    got = [json.loads(l)["response"] for l in open(os.path.join(d, "b.jsonl"))] if rc == 0 else err
    check(got == want, "answer -q - reads the prompts from standard input", f"exit {rc}, {got}")
    rc, out, err = run(["sample", "-c", model, "-p", "the fox lives in the wood " * 12, "-m", "8"], d)
    text = out.decode("utf-8", "replace")
    check(rc == 0 and "tokens are left out" in text, "sample: a prompt longer than the context is cut from the left, saying so",
          f"exit {rc}, {[l for l in text.splitlines() if 'left out' in l][:1]}")


def valid_utf8(b):
    try:
        return b.decode("utf-8", "strict")
    except UnicodeDecodeError:
        return None


def test_utf8(d):
    # text of many scripts; with 300 tokens, most characters stay split into byte tokens
    words = ["狐狸住在森林里", "ёж живёт в лесу", "🦊🌲🍓", "le renard mange des baies", "θάλασσα", "ξ→∞", "naïve café"]
    lines = [" ".join(words[(i + j) % len(words)] for j in range(4)) for i in range(300)]
    with open(os.path.join(d, "utf8.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    must(["pretrain", "-n", "30", "-o", "u", "-i", "utf8.txt", "-V", "300", "-L", "1", "-C", "32", "-H", "2", "-t", "32", "-b", "4",
          "-e", "0"], d, "train the UTF-8 model")
    model = os.path.join("u", "base.bin")
    outs, bad = [], []
    for seed in range(1, 7):
        rc, out, err = run(["sample", "-c", model, "-p", "狐狸", "-r", "3", "-k", "0", "-m", "24", "-s", str(seed)], d)
        outs.append(out)
        bad += [f"sample seed {seed}"] * (rc != 0 or valid_utf8(out) is None)
    rc, out, err = run(["chat", "-c", model, "-m", "24", "-r", "3", "-k", "0"], d, stdin="狐狸\n🦊\nθ\n".encode())
    outs.append(out)
    bad += ["chat"] * (rc != 0 or valid_utf8(out) is None)
    rc, _, err = run(["answer", "-c", model, "-q", "q.jsonl", "-O", "u.jsonl", "-r", "3", "-k", "0", "-m", "24"], d)
    raw = open(os.path.join(d, "u.jsonl"), "rb").read() if rc == 0 else b"\xff"
    outs.append(raw)
    try:
        [json.loads(l) for l in raw.decode("utf-8", "strict").splitlines()]
    except (UnicodeDecodeError, ValueError):
        bad.append("answer")
    replaced = sum(valid_utf8(o).count("\ufffd") for o in outs if valid_utf8(o) is not None)
    kept = sum(sum(ord(c) > 127 and c != "\ufffd" for c in valid_utf8(o)) for o in outs if valid_utf8(o) is not None)
    check(not bad and replaced > 0 and kept > 0,
          "UTF-8 out: sample, chat and answer at temperature 3 write valid UTF-8 (U+FFFD where bytes cannot complete)",
          f"invalid: {bad or 'none'}; {kept} non-ASCII characters kept whole, {replaced} U+FFFD")


def main():
    d = tempfile.mkdtemp(prefix="test_chat_")
    facts = ["The fox lives in the wood and eats berries.", "The hare lives in the meadow and eats clover.",
             "The owl lives in the oak and eats mice.", "Who is the fox? The fox is red."]
    with open(os.path.join(d, "text.txt"), "w") as f:
        f.write("\n".join(facts[i % 4] for i in range(300)) + "\n")
    small = ["-L", "1", "-C", "32", "-H", "2", "-t", "32", "-b", "4", "-V", "300", "-e", "0"]
    must(["pretrain", "-n", "40", "-o", "out", "-i", "text.txt"] + small, d, "pretrain the small model")
    with open(os.path.join(d, "sft.jsonl"), "w") as f:
        for i in range(24):
            a = ["The fox is red.", "It lives in the wood.", "It eats berries."][i % 3]
            f.write(json.dumps({"messages": turns(["Who is the fox?", "The fox is red.", "Where does it live?", a])}) + "\n"
                    if i % 2 else json.dumps({"prompt": "Who is the fox?", "completion": a}) + "\n")
    must(["sft", "-n", "100", "-l", "3e-3", "-o", "out", "-i", "sft.jsonl", "-b", "8", "-e", "0"], d, "fine-tune the small model")
    model = os.path.join("out", "sft.bin")
    test_pipe(d, model)
    test_cut(d, model)
    test_terminal(d, model)
    test_stdin_and_sample(d, model)
    test_utf8(d)
    shutil.rmtree(d)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
