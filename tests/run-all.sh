#!/usr/bin/env bash
# Runs each test step given as a make target, fastest first, and ends with the minutes of each step and of each
# molecule scenario, then one summary line.
# A step that fails does not stop the fast ones; the slow molecule step only runs when all before it passed.
# Each step's output also goes to .build/test-logs/STEP.log; for a failed step, the Ansible failures that ended its
# plays are printed again just above the summary, where CI's short view of the output still shows them.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
log_dir=.build/test-logs
mkdir -p "$log_dir"

minutes() {
  awk -v seconds="$1" 'BEGIN { printf "%.1f", seconds / 60 }'
}

# One line of the times table: what, seconds, how it ended.
time_line() {
  printf '%-26s %5s min  %s\n' "$1" "$(minutes "$2")" "$3"
}

# What each step ran under: the core-* steps print their ansible-core and Python; every other step runs in the venv.
main_core=$(python3 -c 'import platform; from ansible.release import __version__
print(f"ansible-core {__version__}, Python {platform.python_version()}")' 2>/dev/null) || main_core="ansible-core not found"

results=()
times=()
failed=0
failed_logs=()
for step in "$@"; do
  if [ "$step" = molecule ] && [ "$failed" -ne 0 ]; then
    results+=("molecule=not-run")
    continue
  fi
  echo "=== ferry.runc test step: $step"
  start=$SECONDS
  log=$log_dir/$step.log
  if make --no-print-directory "$step" 2>&1 | python3 tests/step_tee.py "$log" "$log_dir/$step.times"; then
    status=passed
  elif grep -q "^ferry.runc test step not-run: $step:" "$log"; then
    status=NOT-RUN
    failed=$((failed + 1))
  else
    status=FAILED
    failed=$((failed + 1))
    failed_logs+=("$log")
  fi
  ran_under=$(sed -n "s/^ferry.runc test step passed: $step (\(.*\))\$/\1/p" "$log")
  times+=("$(time_line "$step" $((SECONDS - start)) "$status")")
  scenarios=()
  while read -r scenario seconds scenario_status; do
    scenarios+=("$scenario=$(minutes "$seconds")")
    times+=("$(time_line "  $scenario" "$seconds" "$scenario_status")")
  done <"$log_dir/$step.times"
  results+=("$step=$status(${ran_under:-$main_core}, $(minutes $((SECONDS - start))) min${scenarios:+: ${scenarios[*]}})")
done

for log in "${failed_logs[@]}"; do
  python3 tests/failure_excerpt.py "$log"
done

echo "=== ferry.runc test times:"
printf '%s\n' "${times[@]}"
time_line total "$SECONDS" ""
verdict=PASSED
[ "$failed" -eq 0 ] || verdict=FAILED
echo "ferry.runc test summary: $verdict: ${results[*]} total=$(minutes "$SECONDS") min"
[ "$failed" -eq 0 ]
