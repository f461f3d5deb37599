#!/usr/bin/env bash
# Runs each test step given as a make target, fastest first, and ends with one summary line.
# A step that fails does not stop the fast ones; the slow molecule step only runs when all before it passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

results=()
failed=0
for step in "$@"; do
  if [ "$step" = molecule ] && [ "$failed" -ne 0 ]; then
    results+=("molecule=not-run")
    continue
  fi
  echo "=== ferry.runc test step: $step"
  start=$SECONDS
  if make --no-print-directory "$step"; then
    results+=("$step=passed($((SECONDS - start))s)")
  else
    results+=("$step=FAILED($((SECONDS - start))s)")
    failed=$((failed + 1))
  fi
done

verdict=PASSED
[ "$failed" -eq 0 ] || verdict=FAILED
echo "ferry.runc test summary: $verdict: ${results[*]}"
[ "$failed" -eq 0 ]
