#!/usr/bin/env bash
# Runs each test step given as a make target, fastest first, and ends with one summary line.
# A step that fails does not stop the fast ones; the slow molecule step only runs when all before it passed.
# Each step's output also goes to .build/test-logs/STEP.log; for a failed step, the Ansible failures that ended its
# plays are printed again just above the summary, where CI's short view of the output still shows them.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
log_dir=.build/test-logs
mkdir -p "$log_dir"

results=()
failed=0
failed_logs=()
for step in "$@"; do
  if [ "$step" = molecule ] && [ "$failed" -ne 0 ]; then
    results+=("molecule=not-run")
    continue
  fi
  echo "=== ferry.runc test step: $step"
  start=$SECONDS
  if make --no-print-directory "$step" 2>&1 | tee "$log_dir/$step.log"; then
    results+=("$step=passed($((SECONDS - start))s)")
  else
    results+=("$step=FAILED($((SECONDS - start))s)")
    failed=$((failed + 1))
    failed_logs+=("$log_dir/$step.log")
  fi
done

for log in "${failed_logs[@]}"; do
  python3 tests/failure_excerpt.py "$log"
done

verdict=PASSED
[ "$failed" -eq 0 ] || verdict=FAILED
echo "ferry.runc test summary: $verdict: ${results[*]}"
[ "$failed" -eq 0 ]
