#!/usr/bin/env bash
# Runs each test command given, shows its lines, and ends with the total:
# "N passed, M failed". A command that exits non-zero without printing a FAIL
# line (a crash) counts as one failure. Exits non-zero on any failure.
passed=0
failed=0
log=$(mktemp)
for cmd in "$@"; do
    bash -c "$cmd" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $cmd exited with status $rc"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done
rm -f "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
