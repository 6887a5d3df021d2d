#!/usr/bin/env bash
# GPT-2 124M's shape (12 layers, 768 channels, 12 heads, context 1024, GPT-2's own
# tokenizer, V = 50257), made by transformers with random weights, goes through
# ./train import, a few SFT steps on the world's data, ./train export, and greedy
# generation in transformers, which must give the answers ./train answer gives. Times
# each step. (The real weights are one download away: doc/interop.md.)
#     HF_PYTHON=/path/to/python test/interop/gpt2_124m_round_trip.sh [out_dir]
# HF_PYTHON needs transformers, safetensors and torch. GPT-2's tokenizer comes from
# gpt2.tiktoken: $GPT2_TIKTOKEN, else fetched from PyPI (openai-whisper's sdist).
set -euo pipefail
PY=${HF_PYTHON:-python3}
D=${1:-out_124m}
STEPS=${STEPS:-4}
rm -rf "$D" && mkdir -p "$D/hf_random"
t() { local s=$(date +%s.%N); "$@"; echo "  ($(echo "$(date +%s.%N) - $s" | bc) s)"; }
echo "== 0. GPT-2's tokenizer files (vocab.json, merges.txt) from gpt2.tiktoken"
if [ -n "${GPT2_TIKTOKEN:-}" ]; then python3 test/interop/gpt2_files.py "$GPT2_TIKTOKEN" "$D/hf_random"
else "$PY" test/interop/gpt2_files.py --fetch "$D/hf_random"; fi
echo "== 1. transformers makes a random GPT-2 of 124M's shape and saves it (safetensors)"
t "$PY" - "$D/hf_random" <<'PYEOF'
import sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
torch.manual_seed(0)
m = GPT2LMHeadModel(GPT2Config())  # GPT-2 124M's configuration: V 50257, context 1024, 12 x 768
m.save_pretrained(sys.argv[1], safe_serialization=True)
print(f"  GPT2LMHeadModel: {sum(p.numel() for p in m.parameters()) / 1e6:.1f}M parameters, V={m.config.vocab_size}")
PYEOF
echo "== 2. ./train import (GPT-2's tokenizer from vocab.json and merges.txt; the chat tokens as new rows)"
t ./train import -i "$D/hf_random" -o "$D"
head -5 data/world/eval_test.jsonl | grep -v messages > "$D/prompts.jsonl"
echo "== 3. ./train sft: $STEPS steps on the world's data"
t ./train sft -c "$D/base.bin" -o "$D" -n "$STEPS" -b 4 -e 0 -w 0 -q "$D/prompts.jsonl" -m 8 2>&1 | grep -E 'sft step|sft:'
echo "== 4. ./train export, of the imported model and of the fine-tuned one"
t ./train export -c "$D/base.bin" -o "$D/hf_base"
t ./train export -c "$D/sft.bin" -o "$D/hf_sft"
echo "== 5. greedy answers with the chat template: ./train answer, and transformers"
t ./train answer -c "$D/base.bin" -q "$D/prompts.jsonl" -O "$D/answers_base.jsonl" -m 16 | grep answers:
t ./train answer -c "$D/sft.bin" -q "$D/prompts.jsonl" -O "$D/answers_sft.jsonl" -m 16 | grep answers:
t "$PY" - "$D" <<'PYEOF'
import json, sys, torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
d = sys.argv[1]
same = total = 0
for folder, ours in (("hf_base", "answers_base.jsonl"), ("hf_sft", "answers_sft.jsonl")):
    tok = PreTrainedTokenizerFast.from_pretrained(f"{d}/{folder}")
    tok.backend_tokenizer.encode_special_tokens = True
    U, A, E = tok.convert_tokens_to_ids(["<|user|>", "<|assistant|>", "<|end|>"])
    m = GPT2LMHeadModel.from_pretrained(f"{d}/{folder}").eval()
    for line in open(f"{d}/{ours}"):
        rec = json.loads(line)
        ids = [U] + tok.encode(rec["prompt"], add_special_tokens=False) + [A]
        with torch.no_grad():
            g = m.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=[E], pad_token_id=50256)
        new = g[0, len(ids):].tolist()
        text = tok.decode(new[:-1] if new and new[-1] == E else new)
        same += text == rec["response"]
        total += 1
        print(f"  {folder}: {text!r}" + ("" if text == rec["response"] else f" (train.c: {rec['response']!r})"))
print(f"  transformers and train.c agree on {same} of {total} greedy answers")
sys.exit(0 if same == total else 1)
PYEOF
