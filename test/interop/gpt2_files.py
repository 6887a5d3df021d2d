#!/usr/bin/env python3
"""GPT-2's tokenizer files (vocab.json, merges.txt) from the ranks in gpt2.tiktoken.

GPT-2's 50,256 ranks ship inside a registry package: the openai-whisper source
distribution holds whisper/assets/gpt2.tiktoken, one "base64(token bytes) rank" per line.
Hugging Face's GPT-2 folders carry the same tokenizer as vocab.json (token text -> id,
the bytes written as the characters of GPT-2's byte-to-unicode map) and merges.txt (the
merges in rank order). This writes those two from the ranks, with the standard library
only, so that ./train import can read GPT-2's tokenizer where the Hub cannot be reached.

A token of rank r >= 256 is the merge of the two parts that byte-pair encoding of its
bytes, with the ranks below r only, leaves.
Usage: python3 test/interop/gpt2_files.py gpt2.tiktoken OUT_DIR
       python3 test/interop/gpt2_files.py --fetch OUT_DIR   (pip download of openai-whisper's sdist)"""
import base64
import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile


def byte_chars():
    """GPT-2's map from bytes to printable characters: printable bytes stand for
    themselves, the others for U+0100 on, in order."""
    printable = [b for b in range(256) if ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def fetch(dest):
    """gpt2.tiktoken from PyPI's openai-whisper source distribution (pip download)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--timeout", "15", "--retries", "1", "openai-whisper",
                        "--no-deps", "--no-binary", ":all:", "-d", tmp], check=True)  # offline: fails within a minute
        sdist = glob.glob(os.path.join(tmp, "openai*whisper-*.tar.gz"))[0]
        with tarfile.open(sdist) as t:
            member = next(m for m in t.getmembers() if m.name.endswith("whisper/assets/gpt2.tiktoken"))
            open(dest, "wb").write(t.extractfile(member).read())
    return dest


def parts_at(token, ranks, below):
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], 1 << 30))
        if ranks.get(parts[best] + parts[best + 1], 1 << 30) >= below:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


def write(tiktoken_path, out):
    ranks = {}
    for line in open(tiktoken_path, "rb"):
        if line.strip():
            b64, rank = line.split()
            ranks[base64.b64decode(b64)] = int(rank)
    chars = byte_chars()
    text = lambda b: "".join(chars[x] for x in b)
    by_rank = sorted(ranks, key=ranks.get)
    assert [ranks[t] for t in by_rank] == list(range(len(by_rank))), "ranks must be 0..n-1"
    vocab = {text(t): r for t, r in ranks.items()}
    vocab["<|endoftext|>"] = len(by_rank)
    merges = []
    for token in by_rank[256:]:
        parts = parts_at(token, ranks, ranks[token])
        assert len(parts) == 2, (token, parts)
        merges.append(text(parts[0]) + " " + text(parts[1]))
    os.makedirs(out, exist_ok=True)
    json.dump(vocab, open(os.path.join(out, "vocab.json"), "w", encoding="utf-8"), ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    print(f"{out}: vocab.json ({len(vocab)} tokens), merges.txt ({len(merges)} merges)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src = sys.argv[1]
    if src == "--fetch":
        os.makedirs(sys.argv[2], exist_ok=True)
        src = fetch(os.path.join(sys.argv[2], "gpt2.tiktoken"))
    write(src, sys.argv[2])
