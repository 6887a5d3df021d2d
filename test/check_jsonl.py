"""Independent check of the generated JSONL files with Python's own json module.

Every line must load as an object with exactly the expected string keys, in
order, and re-encoding it with json.dumps(ensure_ascii=False) must give back the
very same bytes: the C writer and Python's writer agree on every escape.
Usage: python3 test/check_jsonl.py data/world
"""
import json
import os
import sys

KEYS = {
    "sft_train.jsonl": ["prompt", "completion"],
    "sft_val.jsonl": ["prompt", "completion"],
    "pref_train.jsonl": ["prompt", "chosen", "rejected"],
    "pref_val.jsonl": ["prompt", "chosen", "rejected"],
    "pref_test.jsonl": ["prompt", "chosen", "rejected"],
    "rl_prompts.jsonl": ["prompt"],
    "eval_dev.jsonl": ["prompt"],
    "eval_test.jsonl": ["prompt"],
}

failed = 0
for name, keys in KEYS.items():
    path = os.path.join(sys.argv[1], name)
    bad, lines = [], 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            lines += 1
            text = raw.decode("utf-8")
            obj = json.loads(text)
            ok = (text.endswith("\n") and list(obj) == keys and all(isinstance(obj[k], str) for k in keys)
                  and json.dumps(obj, ensure_ascii=False) + "\n" == text)
            if not ok:
                bad.append(lineno)
    print(f"{'ok  ' if not bad and lines else 'FAIL'} python json reads {name}: {lines} lines, "
          f"{len(bad)} differ{' (first: line %d)' % bad[0] if bad else ''}")
    failed += bool(bad) or not lines
sys.exit(1 if failed else 0)
