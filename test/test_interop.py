#!/usr/bin/env python3
"""./train export and import: Hugging Face folders and llm.c files (doc/interop.md).

Usage: python3 test/test_interop.py ./train ./test/tokenize [HF_PYTHON]

1. Round trips, with the standard library only: a tiny pipeline trains every kind of
   checkpoint; each is exported and imported back, and the weights and shape must be
   the same bit for bit. The llm.c file is read back by a reader written here from
   llm.c's layout. Broken folders (missing files, shapes that are not GPT-2, F16
   tensors, truncated files) must end with one clear error and leave nothing behind.
2. With transformers (HF_PYTHON, or this python, if it has transformers, tokenizers,
   safetensors and torch; skipped with a message otherwise): the exported language
   model in transformers gives the same greedy answers as ./train answer, the exported
   reward model the same scores as ./train score, and tokenizer.json the same ids as
   train.c's tokenizer on about 100 KB of mixed text.
One line per check; exits non-zero on a failure.
"""
import array
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

train = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./train")
tokenize = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "./test/tokenize")
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "interop"))
import gpt2_files  # noqa: E402 (test/interop/gpt2_files.py)
hf_python = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("HF_PYTHON", sys.executable)
passed = failed = 0
KINDS = ["base", "sft", "reward", "rlhf", "value", "dpo", "grpo"]


def check(ok, name, detail):
    global passed, failed
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    passed, failed = passed + ok, failed + (not ok)


def run(args, cwd, ok=True):
    res = subprocess.run([train] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    if ok and res.returncode != 0:
        print(res.stdout[-1500:], res.stderr[-1500:])
        check(False, " ".join(args), f"exited with status {res.returncode}")
        sys.exit(1)
    return res


def weights(path):
    """A checkpoint's header fields that describe the model, and its parameters' bytes."""
    data = open(path, "rb").read()
    h = struct.unpack("<256i", data[:1024])
    maxT, V, L, NH, C, scalar = h[3], h[4], h[5], h[6], h[7], h[12]
    n = V * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C + (C + 1 if scalar else 0)
    return (h[2], maxT, V, L, NH, C, scalar), data[1024:1024 + 4 * n]


def pipeline(d):
    """Every kind of checkpoint, from a few steps of each stage on a tiny model."""
    text = "".join(f"The fox number {i} eats berries and lives in the wood {i % 7}.\n" for i in range(2000))
    open(os.path.join(d, "text.txt"), "w").write(text)
    lines = [{"prompt": f"Who is fox {i}?", "completion": f"Fox {i} eats berries.", "chosen": f"Fox {i} eats berries.",
              "rejected": "Ugh."} for i in range(40)]
    with open(os.path.join(d, "chat.jsonl"), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    small = ["-L", "2", "-C", "32", "-H", "2", "-t", "32", "-V", "300"]
    chat = ["-i", "chat.jsonl", "-j", "chat.jsonl", "-b", "4", "-e", "0", "-o", "out"]
    run(["pretrain", "-n", "3", "-b", "4", "-e", "0", "-x", "1", "-i", "text.txt", "-j", "text.txt", "-o", "out"] + small, d)
    run(["sft", "-n", "3", "-q", "chat.jsonl", "-m", "8"] + chat, d)
    run(["rm", "-n", "3"] + chat, d)
    run(["rlhf", "-n", "2", "-M", "2", "-m", "8", "-q", "chat.jsonl"] + chat, d)
    run(["dpo", "-n", "3", "-q", "chat.jsonl", "-m", "8"] + chat, d)
    run(["grpo", "-n", "2", "-b", "2", "-G", "2", "-M", "2", "-m", "8", "-q", "chat.jsonl"] + chat, d)


def test_round_trips(d):
    for sub in ("hf", "back", "broken", "hfw"):
        os.makedirs(os.path.join(d, sub))
    for kind in KINDS:
        ck = os.path.join(d, "out", f"{kind}.bin")
        exp, imp = os.path.join(d, "hf", kind), os.path.join(d, "back", kind)
        run(["export", "-c", ck, "-o", exp], d)
        run(["import", "-i", exp, "-o", imp], d)
        a, b = weights(ck), weights(os.path.join(imp, f"{kind}.bin"))
        leftovers = [f for f in os.listdir(exp) + os.listdir(imp) if f.endswith(".tmp")]
        same_tok = open(os.path.join(d, "out", "tokenizer.bin"), "rb").read() == open(os.path.join(imp, "tokenizer.bin"), "rb").read()
        check(a == b and same_tok and not leftovers, f"export then import: {kind}.bin bit for bit",
              f"kind and shape {a[0]} -> {b[0]}; {len(a[1])} bytes of weights identical: {a[1] == b[1]}; "
              f"tokenizer identical: {same_tok}; .tmp files left: {leftovers}")
    # the safetensors file as the format defines it: header length, JSON, tensors back to back
    blob = open(os.path.join(d, "hf", "sft", "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    contiguous = spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] == len(blob) - 8 - n
    qkv = header["transformer.h.0.attn.c_attn.weight"]
    check(contiguous and n % 8 == 0 and qkv["shape"] == [32, 96] and header["__metadata__"]["train_c_kind"] == "sft",
          "safetensors layout: an 8-byte-aligned JSON header, tensors back to back, Conv1D weights (in, out)",
          f"{len(spans)} tensors, header {n} bytes, c_attn {qkv['shape']}, kind {header['__metadata__']['train_c_kind']}")
    # llm.c's fp32 file, read back by its layout
    run(["export", "--llmc", "-c", os.path.join(d, "out", "sft.bin"), "-o", os.path.join(d, "llmc")], d)
    data = open(os.path.join(d, "llmc", "model_llmc.bin"), "rb").read()
    h = struct.unpack("<256i", data[:1024])
    maxT, V, L, NH, C, Vp = h[2], h[3], h[4], h[5], h[6], h[7]
    (kind, *shape), ours = weights(os.path.join(d, "out", "sft.bin"))
    wte = data[1024:1024 + 4 * V * C]
    pad = data[1024 + 4 * V * C:1024 + 4 * Vp * C]
    rest = data[1024 + 4 * Vp * C:]
    ok = h[0] == 20240326 and h[1] == 3 and Vp % 128 == 0 and Vp >= V and wte + rest == ours and pad == bytes(len(pad))
    check(ok, "export --llmc: llm.c's header, wte padded with zero rows to a multiple of 128, the rest in our order",
          f"magic {h[0]}, version {h[1]}, maxT {maxT} V {V} (padded {Vp}) L {L} NH {NH} C {C}; weights match: {wte + rest == ours}")
    res = run(["export", "--llmc", "-c", os.path.join(d, "out", "reward.bin"), "-o", os.path.join(d, "llmc2")], d, ok=False)
    check(res.returncode == 1 and "language models only" in res.stderr, "export --llmc refuses a reward model",
          res.stderr.strip().splitlines()[-1][:120] if res.stderr.strip() else "no message")


def expect_error(name, args, d, *words):
    res = run(args, d, ok=False)
    err = res.stderr.strip()
    last = err.splitlines()[-1] if err else "(nothing on stderr)"
    missing = [w for w in words if w.lower() not in err.lower()]
    check(res.returncode == 1 and not missing, f"error: {name}", f"exit {res.returncode}, \"{last[:150]}\"" +
          (f"; missing {missing}" if missing else ""))


def test_errors(d):
    good = os.path.join(d, "hf", "sft")

    def broken(name, change):
        path = os.path.join(d, "broken", name)
        shutil.copytree(good, path)
        change(path)
        return path

    def drop(f):
        return lambda p: os.remove(os.path.join(p, f))

    def edit_config(key, value):
        def change(p):
            c = json.load(open(os.path.join(p, "config.json")))
            c[key] = value
            json.dump(c, open(os.path.join(p, "config.json"), "w"))
        return change

    def truncate(p):
        f = os.path.join(p, "model.safetensors")
        data = open(f, "rb").read()
        open(f, "wb").write(data[:len(data) - 100])

    def f16(p):
        f = os.path.join(p, "model.safetensors")
        data = open(f, "rb").read()
        n = struct.unpack("<Q", data[:8])[0]
        header = data[8:8 + n].replace(b'"F32"', b'"F16"', 1)
        open(f, "wb").write(data[:8] + header + data[8 + n:])

    expect_error("import: no config.json", ["import", "-i", broken("noconfig", drop("config.json")), "-o", "x"], d, "config.json")
    expect_error("import: no model.safetensors", ["import", "-i", broken("noweights", drop("model.safetensors")), "-o", "x"], d,
                 "model.safetensors")
    expect_error("import: no tokenizer (neither tokenizer.bin nor GPT-2's vocab.json and merges.txt)",
                 ["import", "-i", broken("notok", drop("tokenizer.bin")), "-o", "x"], d, "tokenizer.bin", "vocab.json", "merges.txt")
    expect_error("import: a shape that is not the file's", ["import", "-i", broken("shape", edit_config("n_embd", 48)), "-o", "x"],
                 d, "shape", "GPT-2")
    expect_error("import: not GPT-2", ["import", "-i", broken("llama", edit_config("architectures", ["LlamaForCausalLM"])), "-o", "x"],
                 d, "LlamaForCausalLM", "GPT-2")
    expect_error("import: an F16 tensor", ["import", "-i", broken("f16", f16), "-o", "x"], d, "F16", "float32")
    expect_error("import: a truncated file", ["import", "-i", broken("short", truncate), "-o", "x"], d, "truncated")
    expect_error("import: no -o (it would replace out/tokenizer.bin)", ["import", "-i", good], d, "-o DIR")
    expect_error("import: -i names a file, not the folder", ["import", "-i", os.path.join(good, "model.safetensors"), "-o", "x"], d,
                 "not a folder", "config.json")
    # a folder saved again by transformers keeps only tokenizer.json: -z brings the tokenizer back
    resaved = broken("resaved", drop("tokenizer.bin"))
    run(["import", "-i", resaved, "-z", os.path.join(good, "tokenizer.bin"), "-o", os.path.join(d, "resaved_in")], d)
    same = weights(os.path.join(d, "resaved_in", "sft.bin"))[1] == weights(os.path.join(d, "out", "sft.bin"))[1]
    check(same, "import -z: a folder without tokenizer.bin (transformers' save_pretrained) with the export's tokenizer",
          f"weights identical: {same}")
    expect_error("export: no -o", ["export", "-c", os.path.join(d, "out", "sft.bin")], d, "-o")
    left = os.path.exists(os.path.join(d, "x")) and any(f.endswith(".bin") for f in os.listdir(os.path.join(d, "x")))
    check(not left, "a failed import writes no checkpoint", f"files in x/: {os.listdir(os.path.join(d, 'x')) if os.path.exists(os.path.join(d, 'x')) else 'none'}")


# A GPT-2 as the Hub lays it out, made here with the standard library: vocab.json and
# merges.txt with GPT-2's numbering (the 256 bytes in the order of GPT-2's byte-to-unicode
# map, the merges, <|endoftext|> last), and a random model.safetensors whose tensor names
# lack the "transformer." prefix, as GPT-2's own file does.
GPT2_PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")  # ASCII text only


def gpt2_byte_order():
    """GPT-2's byte-to-character map (gpt2_files.byte_chars), and the bytes in the order
    of their characters, which is GPT-2's order of ids 0..255."""
    chars = gpt2_files.byte_chars()
    return sorted(range(256), key=lambda b: ord(chars[b])), chars


def merge_pair(parts, a, b):
    """Every (a, b) in parts, left to right, made one."""
    out, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out


def bpe(chunk, rank):
    parts = [bytes([b]) for b in chunk]
    while True:
        pairs = [(rank.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        best = min(pairs, default=(1 << 30, 0))[0]
        if best == 1 << 30:
            return parts
        parts = merge_pair(parts, *[k for k, v in rank.items() if v == best][0])


def make_gpt2(path, text, num_merges, C=32, L=2, NH=2, T=32, seed=3):
    order, chars = gpt2_byte_order()
    words = {}
    for chunk in GPT2_PAT.findall(text):
        key = tuple(bytes([b]) for b in chunk.encode())
        words[key] = words.get(key, 0) + 1
    merges = []
    for _ in range(num_merges):  # a tiny BPE: the most frequent pair, ties to the smallest
        counts = {}
        for w, n in words.items():
            for pair in zip(w, w[1:]):
                counts[pair] = counts.get(pair, 0) + n
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], [-x for x in kv[0][0] + kv[0][1]]))
        merges.append((a, b))
        new = {}
        for w, n in words.items():
            w = tuple(merge_pair(list(w), a, b))
            new[w] = new.get(w, 0) + n
        words = new
    txt = lambda bs: "".join(chars[x] for x in bs)
    vocab = {txt(bytes([b])): i for i, b in enumerate(order)}
    for r, (a, b) in enumerate(merges):
        vocab[txt(a + b)] = 256 + r
    V = 256 + len(merges) + 1
    vocab["<|endoftext|>"] = V - 1
    os.makedirs(path, exist_ok=True)
    json.dump(vocab, open(os.path.join(path, "vocab.json"), "w"))
    open(os.path.join(path, "merges.txt"), "w", encoding="utf-8").write("#version: 0.2\n" +
                                                                       "".join(f"{txt(a)} {txt(b)}\n" for a, b in merges))
    json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": T, "n_embd": C,
               "n_layer": L, "n_head": NH, "n_inner": None}, open(os.path.join(path, "config.json"), "w"))
    rng = random.Random(seed)
    shapes = [("wte.weight", [V, C]), ("wpe.weight", [T, C])]
    for l in range(L):
        shapes += [(f"h.{l}.{n}", s) for n, s in [("ln_1.weight", [C]), ("ln_1.bias", [C]), ("attn.c_attn.weight", [C, 3 * C]),
                   ("attn.c_attn.bias", [3 * C]), ("attn.c_proj.weight", [C, C]), ("attn.c_proj.bias", [C]), ("ln_2.weight", [C]),
                   ("ln_2.bias", [C]), ("mlp.c_fc.weight", [C, 4 * C]), ("mlp.c_fc.bias", [4 * C]),
                   ("mlp.c_proj.weight", [4 * C, C]), ("mlp.c_proj.bias", [C])]]
    shapes += [("ln_f.weight", [C]), ("ln_f.bias", [C])]
    header, blobs, offset, tensors = {}, [], 0, {}
    for name, shape in shapes:
        n = shape[0] * (shape[1] if len(shape) > 1 else 1)
        values = array.array("f", [rng.gauss(1.0 if "ln_" in name and "weight" in name else 0.0, 0.1) for _ in range(n)])
        tensors[name] = values
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}
        blobs.append(values.tobytes())
        offset += 4 * n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(os.path.join(path, "model.safetensors"), "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return merges, vocab, tensors


def test_gpt2_import(d):
    """./train import of a GPT-2 with its own tokenizer; export back; fine-tuning it."""
    text = "".join(f"The cat and the hat {i}: it's in the hall, they've said. Don't {i * 7}!\n" for i in range(60))
    g = os.path.join(d, "gpt2")
    merges, vocab, tensors = make_gpt2(g, text, 40)
    V, C = len(vocab), 32
    res = run(["import", "-i", g, "-o", os.path.join(d, "g_in")], d)
    tok = open(os.path.join(d, "g_in", "tokenizer.bin"), "rb").read()
    th = struct.unpack("<6i", tok[:24])
    (kind, maxT, Vours, *_), w = weights(os.path.join(d, "g_in", "base.bin"))
    rows = [w[4 * C * i:4 * C * (i + 1)] for i in range(Vours)]
    order, _ = gpt2_byte_order()
    wte = tensors["wte.weight"]
    file_row = lambda h: wte[C * h:C * (h + 1)].tobytes()
    mean = array.array("f", [sum(wte[C * r + i] for r in range(V)) / V for i in range(C)]).tobytes()
    want = [file_row(order.index(b)) for b in range(256)] + [file_row(V - 1)] + [mean] * 3 + [file_row(256 + r) for r in range(len(merges))]
    at = Vours * C + maxT * C + 2 * 2 * C  # past wte, wpe, ln1w and ln1b (2 layers)
    qkv = array.array("f", w[4 * at:4 * (at + 3 * C * C)])
    cattn = tensors["h.0.attn.c_attn.weight"]
    transposed = all(qkv[o * C + i] == cattn[i * 3 * C + o] for o in range(3 * C) for i in range(C))
    check(th[1] == 2 and th[5] == 1 and Vours == V + 3 and rows == want and transposed and "new rows" in res.stdout,
          "import of a GPT-2 with its own vocab.json and merges.txt: GPT-2's chunks, its rows in our order, chat tokens as mean rows",
          f"tokenizer version {th[1]} rule {th[5]}; V {V} -> {Vours}; rows as expected: {rows == want}; c_attn transposed: {transposed}")
    # its tokenizer: ids as a BPE written here gives them (ASCII text, where `re` can say \p{L})
    rank = {m: r for r, m in enumerate(merges)}
    sample = text[:3000] + "  odd   spacing\t\there\n\n\nx 12345 it's I'M __x__ #! ~ "
    ids_want = [vocab["".join(gpt2_byte_order()[1][b] for b in piece)] for chunk in GPT2_PAT.findall(sample)
                for piece in bpe(chunk.encode(), rank)]
    ids = subprocess.run([tokenize, "--hf", g], input=sample.encode(), capture_output=True).stdout.split()
    ours = subprocess.run([tokenize, os.path.join(d, "g_in", "tokenizer.bin")], input=sample.encode(), capture_output=True).stdout
    back = subprocess.run([tokenize, "--decode", os.path.join(d, "g_in", "tokenizer.bin")], input=ours, capture_output=True).stdout
    check([int(x) for x in ids] == ids_want and back == sample.encode(),
          "GPT-2's tokenizer read from vocab.json and merges.txt: GPT-2's ids as a BPE written in Python gives them, decodes back",
          f"{len(ids_want)} tokens of {len(sample)} bytes; same: {[int(x) for x in ids] == ids_want}; decodes back: {back == sample.encode()}")
    # export: GPT-2's numbering again, the chat tokens after <|endoftext|>; and back bit for bit
    e = os.path.join(d, "g_out")
    run(["export", "-c", os.path.join(d, "g_in", "base.bin"), "-o", e], d)
    blob = open(os.path.join(e, "model.safetensors"), "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    hdr = json.loads(blob[8:8 + n])
    a, b = hdr["transformer.wte.weight"]["data_offsets"]
    ewte = blob[8 + n + a:8 + n + b]
    cfg = json.load(open(os.path.join(e, "config.json")))
    tj = json.load(open(os.path.join(e, "tokenizer.json")))
    added = {t["content"]: t["id"] for t in tj["added_tokens"]}
    same_rows = ewte[:4 * V * C] == wte.tobytes() and ewte[4 * V * C:] == mean * 3
    check(same_rows and cfg["vocab_size"] == V + 3 and cfg["eos_token_id"] == V + 2 and added["<|endoftext|>"] == V - 1 and
          added["<|user|>"] == V and tj["pre_tokenizer"]["type"] == "ByteLevel" and tj["pre_tokenizer"]["use_regex"] and
          tj["model"]["vocab"]["Ġthe"] == vocab["Ġthe"],
          "export of an imported GPT-2: GPT-2's row order and ids, then <|user|> <|assistant|> <|end|>; ByteLevel's own chunks",
          f"GPT-2's rows bit for bit: {ewte[:4 * V * C] == wte.tobytes()}; vocab_size {cfg['vocab_size']}, eos {cfg['eos_token_id']}, "
          f"added {added}, pre-tokenizer {tj['pre_tokenizer']['type']}")
    run(["import", "-i", e, "-o", os.path.join(d, "g_back")], d)
    same = weights(os.path.join(d, "g_back", "base.bin")) == weights(os.path.join(d, "g_in", "base.bin"))
    same_tok = open(os.path.join(d, "g_back", "tokenizer.bin"), "rb").read() == tok
    check(same and same_tok, "export then import of a GPT-2: bit for bit", f"weights {same}, tokenizer {same_tok}")
    # the stages take the imported model and its tokenizer as they are; the checkpoint records the tokenizer
    lines = [{"prompt": f"Who is cat {i}?", "completion": f"Cat {i} is in the hall."} for i in range(20)]
    open(os.path.join(d, "g_sft.jsonl"), "w").writelines(json.dumps(x) + "\n" for x in lines)
    run(["sft", "-c", os.path.join(d, "g_in", "base.bin"), "-n", "2", "-b", "2", "-e", "0", "-i", "g_sft.jsonl", "-j", "g_sft.jsonl",
         "-o", os.path.join(d, "g_in")], d)
    res = run(["answer", "-c", os.path.join(d, "g_in", "sft.bin"), "-q", "g_sft.jsonl", "-O", os.path.join(d, "g_ans.jsonl"),
               "-m", "4"], d)
    fp = lambda f: struct.unpack("<256i", open(os.path.join(d, "g_in", f), "rb").read()[:1024])[16]
    check(fp("base.bin") != 0 and fp("sft.bin") == fp("base.bin") and len(open(os.path.join(d, "g_ans.jsonl")).readlines()) == 20,
          "sft and answer on the imported GPT-2 pick up its tokenizer; the checkpoints record it",
          f"fingerprint base {fp('base.bin') & 0xffffffff:08x}, sft {fp('sft.bin') & 0xffffffff:08x}; 20 answers")
    # the same merges under our chunk rule are another tokenizer: refused, by the fingerprint
    other = os.path.join(d, "g_other.bin")
    open(other, "wb").write(tok[:20] + struct.pack("<i", 0) + tok[24:])
    expect_error("a checkpoint with another tokenizer of the same size (-z)", ["answer", "-c", os.path.join(d, "g_in", "sft.bin"),
                 "-z", other, "-q", "g_sft.jsonl", "-O", os.path.join(d, "g_x.jsonl")], d, "not the tokenizer", "fingerprint")
    # GPT-2 folders that are not GPT-2's layout
    def variant(name, edit):
        path = os.path.join(d, "gpt2_" + name)
        shutil.copytree(g, path)
        edit(path)
        return ["import", "-i", path, "-o", os.path.join(d, "g_x")]
    def swap_bytes(p):
        v = json.load(open(os.path.join(p, "vocab.json")))
        v["a"], v["b"] = v["b"], v["a"]
        json.dump(v, open(os.path.join(p, "vocab.json"), "w"))
    def bad_merge(p):
        lines = open(os.path.join(p, "merges.txt"), encoding="utf-8").readlines()
        lines[5] = "zz qq\n"
        open(os.path.join(p, "merges.txt"), "w", encoding="utf-8").writelines(lines)
    def vocab_text(edit):
        def change(p):
            text = open(os.path.join(p, "vocab.json"), encoding="utf-8").read()
            open(os.path.join(p, "vocab.json"), "w", encoding="utf-8").write(edit(text))
        return change
    def fewer_rows(p):
        c = json.load(open(os.path.join(p, "config.json")))
        c["vocab_size"] -= 1
        json.dump(c, open(os.path.join(p, "config.json"), "w"))
    expect_error("import: vocab.json not in GPT-2's byte order", variant("order", swap_bytes), d, "vocab.json", "byte order")
    expect_error("import: a merge that makes no token", variant("merge", bad_merge), d, "merges.txt:6", "merge 4")
    expect_error("import: vocab_size that fits no tokenizer", variant("rows", fewer_rows), d, "vocab_size", "tokenizer has")
    expect_error("import: no merges.txt", variant("nomerges", lambda p: os.remove(os.path.join(p, "merges.txt"))), d, "merges.txt")
    expect_error("import: text after vocab.json's object", variant("after", vocab_text(lambda t: t + "garbage")), d,
                 "vocab.json", "text after the object")
    expect_error("import: a trailing comma in vocab.json", variant("comma", vocab_text(lambda t: t.rstrip()[:-1] + ", }")), d,
                 "vocab.json", "expected ','")
    expect_error("import: a vocab.json of ten tokens", variant("few", vocab_text(lambda t: json.dumps(dict(list(json.loads(t).items())[:10])))),
                 d, "vocab.json has 10 ids")
    expect_error("import: an empty vocab.json", variant("empty", vocab_text(lambda t: "  ")), d, "vocab.json", "expected an object")
    # Windows line ends and a byte-order mark are GPT-2's files all the same
    def windows(p):
        text = open(os.path.join(p, "merges.txt"), encoding="utf-8").read()
        open(os.path.join(p, "merges.txt"), "w", encoding="utf-8", newline="").write("\ufeff" + text.replace("\n", "\r\n"))
    run(variant("crlf", windows)[:-1] + [os.path.join(d, "g_crlf")], d)
    same = open(os.path.join(d, "g_crlf", "tokenizer.bin"), "rb").read() == tok
    check(same, "import: merges.txt with Windows line ends and a byte-order mark reads as the same tokenizer", f"identical: {same}")
    # a reward model that reads another tokenizer than the policy, though of the same size
    reward = bytearray(open(os.path.join(d, "out", "reward.bin"), "rb").read())
    reward[64:68] = struct.pack("<i", 12345)  # header int 16: the tokenizer's fingerprint
    open(os.path.join(d, "reward_other.bin"), "wb").write(reward)
    expect_error("rlhf with a reward model of another tokenizer", ["rlhf", "-n", "1", "-b", "2", "-M", "2", "-m", "4", "-R",
                 "reward_other.bin", "-i", "chat.jsonl", "-j", "chat.jsonl", "-q", "chat.jsonl", "-e", "0", "-o", "out_other",
                 "-c", os.path.join("out", "sft.bin"), "-z", os.path.join("out", "tokenizer.bin")], d, "another tokenizer", "fingerprint")
    check(not os.path.exists(os.path.join(d, "g_x")) or not os.listdir(os.path.join(d, "g_x")),
          "a failed GPT-2 import writes nothing", f"files: {os.listdir(os.path.join(d, 'g_x')) if os.path.exists(os.path.join(d, 'g_x')) else 'none'}")


HF_CHECKS = r'''
import json, random, subprocess, sys, torch
from transformers import GPT2LMHeadModel, GPT2ForSequenceClassification, PreTrainedTokenizerFast
from tokenizers import Tokenizer
d, tokenize, mode = sys.argv[1], sys.argv[2], sys.argv[3]
U, A, E = 257, 258, 259
if mode == "tokenizer":
    t = Tokenizer.from_file(d + "/tokenizer.json")
    t.encode_special_tokens = True  # text is text: "<|user|>" typed by a user is not the special token
    rng = random.Random(1)
    parts = ["The fox number 12 eats berries and lives in the wood.\n", "def f(x):\n    return x ** 2  # square\n\n\n",
             "   leading spaces", "tabs\t\there\r\n", "\u6570\u5b57 123 \u548c\u4e2d\u6587\u3002", "emoji \U0001F600\U0001F389 mixed",
             "caf\u00e9 na\u00efve", "a  b   c    d", "!!! ??? ... ---", "x\n\ny", " \n a", "\n  b", "1,000,000.50", "It's",
             "\u000b\u000cform feed", "<|user|> not a special token"]
    text = "".join(rng.choice(parts) for _ in range(6000))
    ours = [int(x) for x in subprocess.run([tokenize, d + "/tokenizer.bin"], input=text.encode(), capture_output=True,
                                           check=True).stdout.split()]
    enc = t.encode(text, add_special_tokens=False)
    print(json.dumps({"bytes": len(text.encode()), "ours": len(ours), "same": ours == enc.ids, "decodes": t.decode(enc.ids) == text,
                      "split_special": all(i < 256 or i >= 260 for i in enc.ids)}))
    sys.exit(0)
tok = PreTrainedTokenizerFast.from_pretrained(d)
tok.backend_tokenizer.encode_special_tokens = True
U, A, E = tok.convert_tokens_to_ids(["<|user|>", "<|assistant|>", "<|end|>"])  # 257-259 with ours; after GPT-2's 50257
def template(p):
    turns = [{"role": "user", "content": p}] if isinstance(p, str) else p
    ids = []
    for m in turns:
        body = tok.encode(m["content"], add_special_tokens=False)
        ids += [U] + body if m["role"] == "user" else [A] + body + [E]
    return ids + [A]
if mode == "answers":
    m = GPT2LMHeadModel.from_pretrained(d).eval()
    out = []
    for line in open(sys.argv[4]):
        ids = template(json.loads(line)["prompt"])
        with torch.no_grad():
            g = m.generate(torch.tensor([ids]), max_new_tokens=int(sys.argv[5]), do_sample=False, eos_token_id=[E],
                           pad_token_id=tok.convert_tokens_to_ids("<|endoftext|>"))
        new = g[0, len(ids):].tolist()
        out.append(tok.decode(new[:-1] if new and new[-1] == E else new))
    print(json.dumps(out))
else:
    m = GPT2ForSequenceClassification.from_pretrained(d).eval()
    out = []
    for line in open(sys.argv[4]):
        r = json.loads(line)
        rows = [template(r["prompt"]) + tok.encode(r[k], add_special_tokens=False) + [E] for k in ("chosen", "rejected")]
        if max(len(ids) for ids in rows) > m.config.n_positions:  # ./train cut this pair's prompt to fit: not comparable
            out += [None, None]
            continue
        for ids in rows:
            with torch.no_grad():
                out.append(m(torch.tensor([ids])).logits[0, 0].item())
    print(json.dumps(out))
'''


GPT2_CHECKS = r"""
import json, random, subprocess, sys
mode = sys.argv[1]
if mode == "make":  # a GPT-2 with random weights, GPT-2's vocabulary, as transformers saves it
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(int(sys.argv[3]))
    L, C, NH, T = (int(x) for x in sys.argv[4:8])
    m = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=T, n_embd=C, n_layer=L, n_head=NH)).eval()
    m.save_pretrained(sys.argv[2], safe_serialization=True)
    sys.exit(0)
import tiktoken, tiktoken.load
ranks = tiktoken.load.load_tiktoken_bpe(sys.argv[2])
PAT = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
enc = tiktoken.Encoding("gpt2", pat_str=PAT, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
def run(args, data):
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout
if mode == "tiktoken":  # GPT-2's ids, tiktoken's and train.c's, on about 100 KB of mixed text and on invalid bytes
    import regex
    gpt2_dir, tokenize, tokenizer_bin = sys.argv[3:6]
    rng = random.Random(7)
    parts = ["The quick brown fox jumps over the lazy dog. ", "It's we'll they've I'd you're I'M DON'T rock 'n' roll ",
             "def f(x):\n    return x ** 2  # square\n\n\n", "int main(void) {\n\tprintf(\"%d\\n\", 42);\n}\n",
             "3.14159 1,000,000 2024-12-04 0x7FFF 1e-10 ", "\u00bd \u00be \u216b \u0663\u0664 x\u00b2 ", "   ", "\t\t", "\n\n\n", "\r\n",
             " \n ", "trailing   \n", "\u6570\u5b57\u548c\u4e2d\u6587\u3002", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca\u3002",
             "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 ", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 ",
             "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e ", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! ",
             "\U0001F600\U0001F389 ", "\U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1EB\U0001F1F7 \U0001F44D\U0001F3FD ",
             "cafe\u0301 na\u00efve ", "a\u00a0b\u2003c\u3000d\u2028e\u200bf ", "<|endoftext|> <|user|> ", "\u2211\u222b\u221a\u221e\u2260 \u20ac\u00a3\u00a5 ",
             "{\"key\": [1, 2.5, null], \"url\": \"https://example.com/a?b=c&d=e\"} ", "\u000b\u000c\u001c\u001d", "  leading", "x" * 40, "0" * 25]
    text = ""
    while len(text.encode()) < 110000:
        text += rng.choice(parts)
    data = text.encode()
    theirs = enc.encode_ordinary(text)
    ours = [int(x) for x in run([tokenize, "--hf", gpt2_dir], data).split()]
    our_ids = run([tokenize, tokenizer_bin], data)
    back = run([tokenize, "--decode", tokenizer_bin], our_ids)
    # invalid bytes: tiktoken reads str, so its BPE of each piece of GPT-2's pattern, the
    # text decoded with surrogateescape (an invalid byte: one character of no class), cut
    # by the `regex` module with the classes as tiktoken reads them (regex's own Unicode
    # version differs on recently assigned characters)
    sys.path.insert(0, INTEROP_DIR)
    from unicode_classes import members, ranges  # the tables' generator: tiktoken's reading of each class
    def span_class(points):
        return "".join(f"\\U{a:08X}-\\U{b:08X}" for a, b in ranges(points))
    Lc, Nc, Sc = (span_class(members(p)) for p in (r"\p{L}", r"\p{N}", r"\s"))
    pattern = f"'(?:[sdmt]|ll|ve|re)| ?[{Lc}]+| ?[{Nc}]+| ?[^{Sc}{Lc}{Nc}]+|[{Sc}]+(?![^{Sc}])|[{Sc}]+"
    raw = bytearray()
    while len(raw) < 20000:
        raw += rng.choice(parts).encode()[: rng.randrange(1, 40)]  # cut anywhere: broken characters
        if rng.random() < 0.3:
            raw += bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(1, 4)))
    raw = bytes(raw)
    pieces = [p.encode("utf-8", "surrogateescape") for p in regex.findall(pattern, raw.decode("utf-8", "surrogateescape"))]
    theirs_raw = [t for p in pieces for t in enc._encode_single_piece(p)]
    ours_raw = [int(x) for x in run([tokenize, "--hf", gpt2_dir], raw).split()]
    back_raw = run([tokenize, "--decode", tokenizer_bin], run([tokenize, tokenizer_bin], raw))
    print(json.dumps({"bytes": len(data), "tokens": len(theirs), "same": ours == theirs, "decodes": back == data,
                      "first_diff": next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None),
                      "raw_bytes": len(raw), "raw_same": ours_raw == theirs_raw, "raw_decodes": back_raw == raw, "the": enc.encode(" the")}))
elif mode == "compare":  # the imported model's logits and greedy continuations against transformers'
    import torch
    from transformers import GPT2LMHeadModel
    hf_dir, logits_bin, ckpt, tokenizer_bin = sys.argv[3:7]
    m = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    texts = ["The quick brown fox", "It's 2024, and the answer is", "def f(x):\n    return", "\u6570\u5b57\u548c\u4e2d\u6587",
             "Hello\n\nWorld  ", "1,000,000 \U0001F600", "Once upon a time there was", "import numpy as np"]
    worst, same, steps = 0.0, 0, 16
    for t in texts:
        ids = enc.encode_ordinary(t)
        ours = run([logits_bin, ckpt, tokenizer_bin], " ".join(map(str, ids)).encode())
        ours = torch.frombuffer(bytearray(ours), dtype=torch.float32).view(len(ids), -1)[:, :50257]
        with torch.no_grad():
            theirs = m(torch.tensor([ids])).logits[0]
            g = m.generate(torch.tensor([ids]), max_new_tokens=steps, do_sample=False, pad_token_id=50256)[0, len(ids):].tolist()
        worst = max(worst, (ours - theirs).abs().max().item())
        mine = [int(x) for x in run([logits_bin, "--greedy", str(steps), ckpt, tokenizer_bin], " ".join(map(str, ids)).encode()).split()]
        same += mine == g
    print(json.dumps({"texts": len(texts), "worst": worst, "same_greedy": same, "steps": steps}))
"""


def gpt2_tiktoken(d):
    """gpt2.tiktoken: $GPT2_TIKTOKEN, else fetched from PyPI (openai-whisper's sdist); None if neither works."""
    path = os.environ.get("GPT2_TIKTOKEN")
    if path and os.path.exists(path):
        return path
    res = subprocess.run([hf_python, os.path.join(here, "interop", "gpt2_files.py"), "--fetch", os.path.join(d, "gpt2_fetch")],
                         capture_output=True, text=True)
    path = os.path.join(d, "gpt2_fetch", "gpt2.tiktoken")
    return path if res.returncode == 0 and os.path.exists(path) else None


def test_gpt2_transformers(d, world):
    probe = subprocess.run([hf_python, "-c", "import transformers, safetensors, torch, tiktoken, regex"], capture_output=True)
    if probe.returncode != 0:
        print(f"skip GPT-2 checks: {hf_python} lacks transformers, safetensors, torch, tiktoken or regex")
        return
    ranks = gpt2_tiktoken(d)
    if ranks is None:
        print("skip GPT-2 checks: no gpt2.tiktoken (set GPT2_TIKTOKEN, or give pip access to PyPI to fetch openai-whisper's sdist)")
        return
    script = os.path.join(d, "gpt2_checks.py")
    open(script, "w").write(GPT2_CHECKS.replace("INTEROP_DIR", repr(os.path.join(here, "interop"))))
    g = os.path.join(d, "gpt2real")
    subprocess.run([sys.executable, os.path.join(here, "interop", "gpt2_files.py"), ranks, g], check=True, capture_output=True)
    subprocess.run([hf_python, script, "make", g, "5", "2", "64", "4", "64"], check=True, capture_output=True)
    run(["import", "-i", g, "-o", os.path.join(d, "g2")], d)
    tok_bin, ckpt = os.path.join(d, "g2", "tokenizer.bin"), os.path.join(d, "g2", "base.bin")
    res = subprocess.run([hf_python, script, "tiktoken", ranks, g, tokenize, tok_bin], capture_output=True, text=True)
    t = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {}
    check(t.get("same") and t.get("decodes") and t.get("bytes", 0) >= 100000 and t.get("the") == [262],
          "GPT-2's tokenizer in C: tiktoken's GPT-2 ids on mixed text (English, code, numbers, whitespace runs, CJK, emoji, ...)",
          f"{t.get('bytes')} bytes, {t.get('tokens')} tokens, same ids {t.get('same')} (first difference at {t.get('first_diff')}), "
          f"decodes back {t.get('decodes')}; ' the' is {t.get('the')}" if t else res.stderr[-400:])
    check(t.get("raw_same") and t.get("raw_decodes"),
          "GPT-2's tokenizer in C on invalid UTF-8: tiktoken's BPE of each piece of GPT-2's pattern, and decodes back",
          f"{t.get('raw_bytes')} bytes with broken characters and stray bytes: same ids {t.get('raw_same')}, "
          f"decodes back {t.get('raw_decodes')}" if t else res.stderr[-400:])
    res = subprocess.run([hf_python, script, "compare", ranks, g, os.path.join(os.path.dirname(tokenize), "logits"), ckpt, tok_bin],
                         capture_output=True, text=True)
    t = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {}
    check(t and t["worst"] < 1e-5 and t["same_greedy"] == t["texts"],
          "a transformers-made GPT-2 (V 50257, random weights) imported: the logits and greedy continuations of transformers",
          f"{t['texts']} texts: max |logit difference| {t['worst']:.2e} (tolerance 1e-5); {t['same_greedy']} of {t['texts']} "
          f"greedy continuations of {t['steps']} tokens identical" if t else res.stderr[-400:])
    # and back: exported with the chat tokens, run in transformers with the chat template
    run(["export", "-c", ckpt, "-o", os.path.join(d, "g2x")], d)
    script = os.path.join(d, "hf_checks.py")
    open(script, "w").write(HF_CHECKS)
    prompts = os.path.join(d, "g2_prompts.jsonl")
    with open(prompts, "w") as f:
        f.writelines(open(os.path.join(world, "eval_test.jsonl")).readlines()[:10])
    run(["answer", "-c", ckpt, "-q", prompts, "-O", os.path.join(d, "g2_ours.jsonl"), "-m", "12"], d)
    ours = [json.loads(line)["response"] for line in open(os.path.join(d, "g2_ours.jsonl"))]
    res = subprocess.run([hf_python, script, os.path.join(d, "g2x"), tokenize, "answers", prompts, "12"], capture_output=True, text=True)
    theirs = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else []
    same = sum(a == b for a, b in zip(ours, theirs))
    check(same == len(ours) == 10, "the imported GPT-2 exported again (V 50260, GPT-2's tokenizer.json): transformers' answers "
          "with the chat template are ./train answer's", f"{same} of {len(ours)} greedy answers identical" +
          ("" if res.returncode == 0 else "; " + res.stderr[-300:]))


def test_transformers(d, world):
    probe = subprocess.run([hf_python, "-c", "import transformers, tokenizers, safetensors, torch"], capture_output=True)
    if probe.returncode != 0:
        print(f"skip transformers checks: {hf_python} lacks transformers, tokenizers, safetensors or torch "
              "(make test-interop HF_PYTHON=... runs them; doc/interop.md)")
        return
    script = os.path.join(d, "hf_checks.py")
    open(script, "w").write(HF_CHECKS)
    prompts = os.path.join(d, "prompts.jsonl")
    with open(prompts, "w") as f:
        f.writelines(open(os.path.join(world, "eval_test.jsonl")).readlines()[:60])
    pairs = os.path.join(d, "pairs.jsonl")
    with open(pairs, "w") as f:
        f.writelines(open(os.path.join(world, "pref_test.jsonl")).readlines()[:30])
    # a model trained on the world's text, so that its answers are not noise
    wd = os.path.join(d, "world")
    small = ["-L", "2", "-C", "64", "-H", "4", "-t", "128", "-V", "512", "-o", wd]
    run(["pretrain", "-n", "60", "-b", "8", "-e", "0", "-x", "1", "-i", os.path.join(world, "pretrain_train.txt"), "-j",
         os.path.join(world, "pretrain_val.txt")] + small, d)
    run(["sft", "-n", "40", "-b", "8", "-e", "0", "-i", os.path.join(world, "sft_train.jsonl"), "-j", os.path.join(world, "sft_val.jsonl"),
         "-o", wd], d)
    run(["rm", "-n", "150", "-b", "8", "-e", "0", "-i", os.path.join(world, "pref_train.jsonl"), "-j", pairs, "-o", wd], d)
    for kind in ("sft", "reward"):
        run(["export", "-c", os.path.join(wd, f"{kind}.bin"), "-o", os.path.join(d, "hfw", kind)], d)
    res = subprocess.run([hf_python, script, os.path.join(d, "hfw", "sft"), tokenize, "tokenizer"], capture_output=True, text=True)
    t = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {}
    check(t.get("same") and t.get("decodes") and t.get("split_special") and t.get("bytes", 0) >= 100000,
          "tokenizer.json in tokenizers: the same ids as train.c's tokenizer, and decodes back",
          f"{t.get('bytes')} bytes of mixed text (code, whitespace runs, Chinese, emoji, specials' text): {t.get('ours')} tokens, "
          f"same ids {t.get('same')}, decodes {t.get('decodes')}" if t else res.stderr[-300:])
    run(["answer", "-c", os.path.join(wd, "sft.bin"), "-q", prompts, "-O", os.path.join(d, "ours.jsonl"), "-m", "24"], d)
    ours = [json.loads(line)["response"] for line in open(os.path.join(d, "ours.jsonl"))]
    res = subprocess.run([hf_python, script, os.path.join(d, "hfw", "sft"), tokenize, "answers", prompts, "24"], capture_output=True,
                         text=True)
    theirs = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else []
    same = sum(a == b for a, b in zip(ours, theirs))
    check(same == len(ours) and len(ours) == 60, "the exported SFT model in transformers (GPT2LMHeadModel): the same greedy answers",
          f"{same} of {len(ours)} answers identical" + ("" if res.returncode == 0 else "; " + res.stderr[-300:]))
    run(["score", "-c", os.path.join(wd, "reward.bin"), "-j", pairs, "-O", os.path.join(d, "scores.jsonl")], d)
    ours, kept = [], []  # ./train score leaves out pairs longer than the context, and names the records it kept
    lines = open(pairs).readlines()
    for line in open(os.path.join(d, "scores.jsonl")):
        r = json.loads(line)
        ours += [r["chosen"], r["rejected"]]
        kept.append(lines[r["record"] - 1])
    open(os.path.join(d, "kept.jsonl"), "w").writelines(kept)
    res = subprocess.run([hf_python, script, os.path.join(d, "hfw", "reward"), tokenize, "scores", os.path.join(d, "kept.jsonl")],
                         capture_output=True, text=True)
    theirs = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else []
    compared = [(a, b) for a, b in zip(ours, theirs) if b is not None]
    worst = max((abs(a - b) for a, b in compared), default=float("inf"))
    check(len(theirs) == len(ours) and len(compared) >= 40 and worst < 1e-5,
          "the exported reward model in transformers (GPT2ForSequenceClassification, bias folded into ln_f): the same scores",
          f"{len(compared)} scores of {len(ours)} (the rest cut to fit the context), max |difference| {worst:.2e} (tolerance 1e-5)" + ("" if res.returncode == 0 else "; " + res.stderr[-300:]))


def main():
    d = tempfile.mkdtemp(prefix="test_interop_")
    world = os.path.abspath(os.environ.get("WORLD", "data/world"))
    pipeline(d)
    test_round_trips(d)
    test_errors(d)
    test_gpt2_import(d)
    test_transformers(d, world)
    test_gpt2_transformers(d, world)
    shutil.rmtree(d)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
