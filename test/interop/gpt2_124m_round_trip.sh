#!/usr/bin/env bash
# A transformers-made GPT-2 of 124M's shape (12 layers, 768 channels, 12 heads) with
# random weights goes through ./train import, a few SFT steps on the world's data,
# ./train export, and greedy generation in transformers, which must give the answers
# ./train answer gives. Times each step. The vocabulary is the project's tokenizer's
# (GPT-2's own BPE is not in train.c yet: doc/interop.md).
#     HF_PYTHON=/path/to/python test/interop/gpt2_124m_round_trip.sh [out_dir]
# HF_PYTHON needs transformers, safetensors and torch; run `make run-cpu` (or at least
# `./train pretrain`) first, for out/tokenizer.bin.
set -euo pipefail
PY=${HF_PYTHON:-python3}
D=${1:-out_124m}
TOK=${TOK:-out/tokenizer.bin}
STEPS=${STEPS:-4}
[ -f "$TOK" ] || { echo "no $TOK: run make run-cpu (or ./train pretrain) first"; exit 1; }
rm -rf "$D" && mkdir -p "$D/hf_random"
t() { local s=$(date +%s.%N); "$@"; echo "  ($(echo "$(date +%s.%N) - $s" | bc) s)"; }
echo "== 1. transformers makes a random GPT-2 of 124M's shape and saves it (safetensors)"
t "$PY" - "$D/hf_random" "$TOK" <<'PYEOF'
import struct, sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
d, tok = sys.argv[1], sys.argv[2]
with open(tok, "rb") as f:  # the tokenizer's vocabulary size, from its file (doc/formats.md)
    magic, version, V = struct.unpack("<3i", f.read(12))
torch.manual_seed(0)
m = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=128, n_embd=768, n_layer=12, n_head=12, bos_token_id=256,
                               eos_token_id=259, pad_token_id=256))
m.save_pretrained(d, safe_serialization=True)
print(f"  GPT2LMHeadModel: {sum(p.numel() for p in m.parameters()) / 1e6:.1f}M parameters, V={V}")
PYEOF
cp "$TOK" "$D/hf_random/tokenizer.bin"
echo "== 2. ./train import"
t ./train import -i "$D/hf_random" -o "$D"
head -5 data/world/eval_test.jsonl | grep -v messages > "$D/prompts.jsonl"
echo "== 3. ./train sft: $STEPS steps on the world's data"
t ./train sft -c "$D/base.bin" -o "$D" -n "$STEPS" -b 4 -e 0 -w 0 -q "$D/prompts.jsonl" -m 8 2>&1 | grep -E 'sft step|sft:'
echo "== 4. ./train export"
t ./train export -c "$D/sft.bin" -o "$D/hf_sft"
echo "== 5. greedy answers of the random model and of the fine-tuned one: ./train answer, and transformers"
t ./train answer -c "$D/base.bin" -q "$D/prompts.jsonl" -O "$D/answers_base.jsonl" -m 16 | grep answers:
t ./train answer -c "$D/sft.bin" -q "$D/prompts.jsonl" -O "$D/answers_sft.jsonl" -m 16 | grep answers:
t "$PY" - "$D" <<'PYEOF'
import json, sys, torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
d = sys.argv[1]
tok = PreTrainedTokenizerFast.from_pretrained(d + "/hf_sft")
tok.backend_tokenizer.encode_special_tokens = True
same = total = 0
for folder, ours in (("hf_random", "answers_base.jsonl"), ("hf_sft", "answers_sft.jsonl")):
    m = GPT2LMHeadModel.from_pretrained(f"{d}/{folder}").eval()
    for line in open(f"{d}/{ours}"):
        rec = json.loads(line)
        ids = [257] + tok.encode(rec["prompt"], add_special_tokens=False) + [258]
        with torch.no_grad():
            g = m.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=[259], pad_token_id=256)
        new = g[0, len(ids):].tolist()
        text = tok.decode(new[:-1] if new and new[-1] == 259 else new)
        same += text == rec["response"]
        total += 1
        print(f"  {folder}: {text!r}" + ("" if text == rec["response"] else f" (train.c: {rec['response']!r})"))
print(f"  transformers and train.c agree on {same} of {total} greedy answers")
sys.exit(0 if same == total else 1)
PYEOF
