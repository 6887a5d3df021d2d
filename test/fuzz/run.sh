#!/usr/bin/env bash
# Builds the libFuzzer targets with AddressSanitizer and UndefinedBehaviorSanitizer and
# runs each for the given seconds, starting from the seeds in test/fuzz/corpus/<target>/.
# New inputs it finds go to test/fuzz/found/<target>/ (not committed). One line per
# target, "ok" or "FAIL" (with the input that crashed). Usage: test/fuzz/run.sh [seconds]
seconds=${1:-20}
cd "$(dirname "$0")"
status=0
for t in jsonl tokenizer checkpoint; do
    if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o "fuzz_$t" "fuzz_$t.c" -lm; then
        echo "FAIL fuzz $t: does not build (libFuzzer comes with clang: apt-get install clang)"
        status=1
        continue
    fi
    mkdir -p "found/$t"
    log=$(mktemp)
    ./"fuzz_$t" -max_total_time="$seconds" -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="found/$t-" \
        "found/$t" "corpus/$t" > "$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    if [ $rc -eq 0 ]; then
        echo "ok   fuzz $t: ${runs:-?} inputs in $seconds s, nothing found ($(ls "found/$t" | wc -l) new inputs kept)"
    else
        echo "FAIL fuzz $t: exit $rc, $(grep -m1 -E 'ERROR|SUMMARY|runtime error' "$log") (input: $(ls found/$t-* 2>/dev/null | head -1))"
        status=1
    fi
    rm -f "$log"
done
exit $status
