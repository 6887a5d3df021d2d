#!/usr/bin/env bash
# The table at the end of `make run-cpu`: each model's answers to the held-out
# evaluation prompts, graded by the world's referee, and the reward model's held-out
# accuracy beside the ceiling that the flipped labels allow. Usage: data/summary.sh out
set -eu
out=${1:-out}
echo
echo "== answers to data/world/eval_prompts.jsonl (animals no stage trained on), graded by ./world score"
printf "%-10s %7s %7s %7s %7s %16s\n" model correct polite concise score "fully preferred"
for model in base sft; do
    [ -f "$out/answers_$model.jsonl" ] && ./world score -t "$model" "$out/answers_$model.jsonl"
done
if [ -f "$out/reward.jsonl" ]; then
    accuracy=$(grep val_accuracy "$out/reward.jsonl" | tail -1 | sed 's/.*"val_accuracy": \([0-9.]*\).*/\1/')
    echo
    echo "== reward model on data/world/pref_val.jsonl (held-out pairs)"
    echo "accuracy $accuracy"
    ./world agree data/world/pref_val.jsonl
fi
