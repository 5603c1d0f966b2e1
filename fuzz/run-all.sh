#!/usr/bin/env bash
# Runs fuzz targets one after another (one core), SECONDS each, and prints one summary line per target from
# libFuzzer's own figures: executions, exec/s, edge coverage (cov), features (ft), corpus size, and how it ended.
#
#   fuzz/run-all.sh SECONDS [TARGET ...]      default: every target (fuzz/run.sh --list)
#   RUNS=10000000 fuzz/run-all.sh 1800 …      each stops at 30 minutes or 10 million executions, whichever is first
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${1:?usage: fuzz/run-all.sh SECONDS [TARGET ...]}"; shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("$root/fuzz/run.sh" --list)
summary="$root/.build-fuzz/logs/summary.txt"
mkdir -p "$root/.build-fuzz/logs"
for t in "${targets[@]}"; do
  start=$(date -u +%H:%M:%S)
  "$root/fuzz/run.sh" "$t" "$seconds" ${RUNS:+-runs="$RUNS"} > /dev/null 2>&1
  status=$?
  log="$root/.build-fuzz/logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last"); ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<< "$last")
  if [ "$status" -eq 0 ]; then result="clean"; else
    result="STOPPED ($(grep -m1 -oE 'ERROR: [A-Za-z]+: [a-z -]+|deadly signal|out-of-memory|timeout|Fatal error: [^ ]+' "$log" || echo "exit $status"))"
  fi
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  line="$(date -u +%F) $start $t ${took:-?}s of ${seconds}s execs=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} $result"
  echo "$line" | tee -a "$summary"
done
