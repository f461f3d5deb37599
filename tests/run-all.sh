#!/usr/bin/env bash
# Runs each test step given as a make target, fastest first, and ends with the minutes of each step and of each
# molecule scenario, then one summary line.
# A step that fails does not stop the fast ones; the slow molecule step only runs when all before it passed.
# When molecule is a step, the lab boots (make lab-up) in the background from the start, and molecule waits for it;
# molecule's own create then finds the lab running. After a run without molecule the lab is stopped again, as
# molecule's destroy does.
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

lab_pid=
lab_left_up=false
if [[ " $* " == *" molecule "* ]]; then
  echo "=== ferry.runc test step: lab-up, in the background (output in $log_dir/lab-up.log)"
  rm -f "$log_dir/lab-up.status"
  (
    make --no-print-directory lab-up >"$log_dir/lab-up.log" 2>&1
    echo "$? $SECONDS" >"$log_dir/lab-up.status"
  ) &
  lab_pid=$!
  lab_left_up=true
fi

results=()
times=()
failed=0
failed_logs=()
for step in "$@"; do
  if [ "$step" = molecule ] && [ -n "$lab_pid" ]; then
    wait_start=$SECONDS
    wait "$lab_pid"
    lab_pid=
    read -r lab_status lab_end <"$log_dir/lab-up.status"
    lab_result=passed
    if [ "$lab_status" -ne 0 ]; then
      lab_result=FAILED
      failed=$((failed + 1))
      failed_logs+=("$log_dir/lab-up.log")
      echo "=== the lab did not come up; the end of $log_dir/lab-up.log:"
      tail -n 60 "$log_dir/lab-up.log"
    fi
    results+=("lab-up=$lab_result($(minutes "$lab_end") min)")
    times+=("$(time_line "lab-up (background)" "$lab_end" "$lab_result, molecule waited $(minutes $((SECONDS - wait_start))) min")")
  fi
  if [ "$step" = molecule ] && [ "$failed" -ne 0 ]; then
    results+=("molecule=not-run")
    continue
  fi
  echo "=== ferry.runc test step: $step"
  [ "$step" != molecule ] || lab_left_up=false
  start=$SECONDS
  if make --no-print-directory "$step" 2>&1 | python3 tests/step_tee.py "$log_dir/$step.log" "$log_dir/$step.times"; then
    status=passed
  else
    status=FAILED
    failed=$((failed + 1))
    failed_logs+=("$log_dir/$step.log")
  fi
  times+=("$(time_line "$step" $((SECONDS - start)) "$status")")
  scenarios=()
  while read -r scenario seconds scenario_status; do
    scenarios+=("$scenario=$(minutes "$seconds")")
    times+=("$(time_line "  $scenario" "$seconds" "$scenario_status")")
  done <"$log_dir/$step.times"
  results+=("$step=$status($(minutes $((SECONDS - start))) min${scenarios:+: ${scenarios[*]}})")
done

if [ "$lab_left_up" = true ]; then
  [ -z "$lab_pid" ] || wait "$lab_pid"
  make --no-print-directory lab-down >"$log_dir/lab-down.log" 2>&1 || echo "=== make lab-down failed: $log_dir/lab-down.log"
fi

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
