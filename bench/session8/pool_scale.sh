#!/usr/bin/env bash
# Worker-pool scaling on a PostgreSQL store (issue 18's "Scale" figures): 100 shipped-model jobs run by one worker
# pinned to core 0, then by two workers pinned to cores 0 and 1; throughput ratio, and the queue's overhead per job
# (claim → done, minus the image's own compute time as the service measured it), median and p95, from the jobs table.
# The machine's speed drifts (a shared host), so the phases alternate for ROUNDS rounds and the ratio is of the
# median rates.
# Usage: bench/session8/pool_scale.sh [JOBS] [STEPS] [ROUNDS]     (needs Debian's postgresql-15; root or a normal user)
set -uo pipefail  # no -e: a failed poll must not end a phase silently
cd "$(dirname "$0")/../.."
JOBS=${1:-100}
STEPS=${2:-40}
ROUNDS=${3:-3}
BIN=.build/release/unclip
[ -x "$BIN" ] || swift build -c release --product unclip >/dev/null
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
TMP=$(mktemp -d /tmp/unclip-scale-XXXX)
chmod 755 "$TMP"
AS=""
if [ "$(id -u)" -eq 0 ]; then chown postgres "$TMP"; AS="runuser -u postgres --"; fi
PORT=$((20000 + RANDOM % 20000))
$AS "$PGBIN/initdb" -D "$TMP/data" -U unclip --auth=trust --no-sync >/dev/null
$AS "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/pg.log" -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1" -w start >/dev/null
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; $AS "$PGBIN/pg_ctl" -D "$TMP/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT
psql_() { psql -h 127.0.0.1 -p "$PORT" -U unclip -X -q -A -t "$@"; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores; flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512f|avx512_bf16)$' | tr '\n' ' ')"
echo "jobs: $JOBS text-to-image on weights/shapes, $STEPS decoder steps each"

run_phase() {  # NAME CORES...
  local name=$1; shift
  local db="scale_${name//-/_}"
  psql_ -d postgres -c "CREATE DATABASE $db" >/dev/null
  local url="postgres://unclip@127.0.0.1:$PORT/$db"
  PHASE=$((${PHASE:-0} + 1))
  local port=$((PORT + PHASE))
  "$BIN" serve --store "$url" --workers 0 --port "$port" 2>"$TMP/front-$name.log" & local front=$!; PIDS+=($front)
  local wpids=()
  for core in "$@"; do
    taskset -c "$core" "$BIN" worker --store "$url" --threads 1 2>"$TMP/worker-$name-$core.log" & wpids+=($!); PIDS+=($!)
  done
  for i in $(seq 1 100); do curl -sf "localhost:$port/healthz" >/dev/null && break; sleep 0.2; done
  for core in "$@"; do for i in $(seq 1 100); do grep -q "running jobs" "$TMP/worker-$name-$core.log" && break; sleep 0.2; done; done
  local busy0=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  # One curl for all the jobs (one process, one kept-alive connection): a process per job would spend the CPU the
  # two workers are measured on.
  for i in $(seq 1 "$JOBS"); do
    printf 'url = "http://localhost:%s/api/jobs"\ndata = "{\\"kind\\":\\"text-to-image\\",\\"prompt\\":\\"a red circle %s\\",\\"seed\\":%s,\\"steps\\":%s}"\noutput = "/dev/null"\nfail\n' "$port" "$i" "$i" "$STEPS"
    [ "$i" -lt "$JOBS" ] && echo next
  done > "$TMP/submit-$name.curl"
  curl -sf -K "$TMP/submit-$name.curl" \
    || { echo "phase $name: submitting jobs to port $port failed; front end log:"; tail -5 "$TMP/front-$name.log"; exit 1; }
  # Poll once a second: each poll forks a psql and a PostgreSQL backend, and at 10/s that stole about a tenth of a
  # core from the workers (both cores are theirs in the two-worker phase). The wall time is not the poll's: it runs
  # from the first job's submission to the last job's end, as the jobs table recorded them.
  while true; do
    n=$(psql_ -d "$db" -c "SELECT count(*) FROM jobs WHERE status IN ('done','failed','cancelled')" 2>/dev/null)
    [ "${n:-0}" -ge "$JOBS" ] && break
    sleep 1
  done
  local wall=$(psql_ -d "$db" -c "SELECT extract(epoch FROM (max(finished_at::timestamptz) - min(created_at::timestamptz))) FROM jobs")
  local stats=$(psql_ -d "$db" -F ' ' -c "
    WITH per AS (
      SELECT j.id, extract(epoch FROM (j.finished_at::timestamptz - j.started_at::timestamptz)) AS claim_to_done,
             coalesce((SELECT sum(g.seconds) FROM generations g WHERE g.job_id = j.id), 0) AS compute
      FROM jobs j WHERE j.status = 'done')
    SELECT count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY (claim_to_done - compute) * 1000)::numeric, 1),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY (claim_to_done - compute) * 1000)::numeric, 1),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY compute * 1000)::numeric, 1) FROM per")
  read -r done med p95 compute <<<"$stats"
  printf "%-8s workers on cores %-5s  %3d jobs done in %6.2f s  = %5.2f jobs/s | queue overhead per job: median %s ms, p95 %s ms (compute median %s ms)\n" \
    "$name" "$*" "$done" "$wall" "$(echo "$done / $wall" | bc -l)" "$med" "$p95" "$compute"
  echo "$(echo "$done / $wall" | bc -l)" >> "$TMP/rate-${name%%-*}"
  # Where the CPU went during the phase: the workers' own time against everything the machine did (PostgreSQL, the
  # front end, this script), in core-seconds.
  local busy1=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  local wcpu=0; for p in "${wpids[@]}"; do wcpu=$((wcpu + $(awk '{print $14+$15}' /proc/$p/stat))); done
  local fcpu=$(awk '{print $14+$15}' /proc/$front/stat)
  local tck=$(getconf CLK_TCK)
  echo "  CPU during the phase: all $(echo "($busy1 - $busy0) / $tck" | bc -l | cut -c1-6) core-s; workers $(echo "$wcpu / $tck" | bc -l | cut -c1-6); front end $(echo "$fcpu / $tck" | bc -l | cut -c1-5)"
  for p in "${wpids[@]}" "$front"; do kill "$p"; wait "$p" 2>/dev/null || true; done
}

for r in $(seq 1 "$ROUNDS"); do
  run_phase "one-$r" 0
  run_phase "two-$r" 0 1
done
median() { sort -g "$1" | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
echo "throughput two / one, each round: $(paste "$TMP/rate-two" "$TMP/rate-one" | awk '{printf "%.3f× ", $1/$2}')"
echo "throughput two / one, median rates: $(echo "$(median "$TMP/rate-two") / $(median "$TMP/rate-one")" | bc -l | cut -c1-5)×"
