"""Independent check of the generated JSONL files with Python's own json module.

Every line must load as an object with exactly the expected keys, in order, and
re-encoding it with json.dumps(ensure_ascii=False) must give back the very same
bytes: the C writer and Python's writer agree on every escape. A prompt is a string
or, in a conversation, a list of {"role", "content"} messages (Hugging Face TRL's
conversational format): the user first, then alternating, ending with the user's
follow-up; an SFT line may instead be {"messages"}, ending with the assistant's answer.
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


def conversation(messages, last_role):
    """A list of messages, each exactly {"role", "content"} of strings, user first, then
    alternating, ending with last_role, two questions in all."""
    roles = ["user", "assistant"] * 2
    return (isinstance(messages, list) and all(isinstance(m, dict) and list(m) == ["role", "content"]
                                               and all(isinstance(m[k], str) for k in m) for m in messages)
            and [m["role"] for m in messages] == roles[:len(messages)] and messages[-1]["role"] == last_role
            and sum(m["role"] == "user" for m in messages) == 2)


def well_formed(name, obj):
    if "messages" in obj and name.startswith("sft"):
        return list(obj) == ["messages"] and conversation(obj["messages"], "assistant")
    keys = KEYS[name]
    prompt = obj.get("prompt")
    return (list(obj) == keys and all(isinstance(obj[k], str) for k in keys[1:])
            and (isinstance(prompt, str) or conversation(prompt, "user")))


failed = 0
for name in KEYS:
    path = os.path.join(sys.argv[1], name)
    bad, lines, conversations = [], 0, 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            lines += 1
            text = raw.decode("utf-8")
            obj = json.loads(text)
            conversations += isinstance(obj.get("prompt"), list) or "messages" in obj
            if not (text.endswith("\n") and well_formed(name, obj) and json.dumps(obj, ensure_ascii=False) + "\n" == text):
                bad.append(lineno)
    print(f"{'ok  ' if not bad and lines and conversations else 'FAIL'} python json reads {name}: {lines} lines "
          f"({conversations} conversations), {len(bad)} differ{' (first: line %d)' % bad[0] if bad else ''}")
    failed += bool(bad) or not lines or not conversations
sys.exit(1 if failed else 0)
