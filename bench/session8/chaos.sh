#!/usr/bin/env bash
# Issue 18's chaos test at full size (the CI-sized one is WorkerPoolTests): PostgreSQL, one front end (--workers 0)
# and three workers on the shipped model, each worker in its own network namespace reaching PostgreSQL over a veth
# link; 60 jobs queued; then a worker SIGKILLed while it holds a job, PostgreSQL restarted (pg_ctl restart -m fast),
# and one worker's connection terminated by the server. Checks: every job `done` exactly once, one generation per
# job, no image without a row (unclip check), and every image byte-identical to the same request made by a single
# process on a SQLite store. Needs root (ip netns), Debian's postgresql-15 and iproute2.
# Usage: bench/session8/chaos.sh [JOBS]
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${1:-60}
BIN=$PWD/.build/release/unclip
[ -x "$BIN" ] || swift build -c release --product unclip >/dev/null
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
TMP=$(mktemp -d /tmp/unclip-chaos-XXXX); chmod 755 "$TMP"; chown postgres "$TMP"
PORT=$((20000 + RANDOM % 20000)); FRONT=$((PORT + 1)); REF=$((PORT + 2))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/data" -m fast stop >/dev/null 2>&1 || true
  for i in 1 2 3; do ip link del "ucw$i-h" 2>/dev/null || true; ip netns del "unclip-w$i" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# Three namespaces, each a host on its own /24 with the database machine at .1.
for i in 1 2 3; do
  ip netns add "unclip-w$i"
  ip link add "ucw$i-h" type veth peer name "ucw$i-n"
  ip link set "ucw$i-n" netns "unclip-w$i"
  ip addr add "10.77.$i.1/24" dev "ucw$i-h"; ip link set "ucw$i-h" up
  ip netns exec "unclip-w$i" ip addr add "10.77.$i.2/24" dev "ucw$i-n"
  ip netns exec "unclip-w$i" ip link set "ucw$i-n" up; ip netns exec "unclip-w$i" ip link set lo up
done
runuser -u postgres -- "$PGBIN/initdb" -D "$TMP/data" -U unclip --auth=trust --no-sync >/dev/null
echo "host all all 10.77.0.0/16 trust" >> "$TMP/data/pg_hba.conf"
PGOPTS="-p $PORT -k $TMP -c listen_addresses=127.0.0.1,10.77.1.1,10.77.2.1,10.77.3.1"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/pg.log" -o "$PGOPTS" -w start >/dev/null
psql -h 127.0.0.1 -p "$PORT" -U unclip -X -q -d postgres -c "CREATE DATABASE chaos"
q() { psql -h 127.0.0.1 -p "$PORT" -U unclip -X -q -A -t -d chaos -c "$1"; }

submit_and_wait() {  # PORT → prints "seed sha256" lines
  python3 - "$1" "$JOBS" <<'PY'
import json, sys, time, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    for attempt in range(100):
        try:
            with urllib.request.urlopen(req, timeout=60) as r: return json.load(r)
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{method} {path} kept failing")
ids = [call("POST", "/api/jobs", {"kind": "text-to-image", "prompt": f"a {['red','green','blue'][i % 3]} circle {i}", "seed": 1000 + i, "steps": 40})["id"] for i in range(n)]
while True:
    jobs = [call("GET", f"/api/jobs/{i}") for i in ids]
    if all(j["status"] in ("done", "failed", "cancelled") for j in jobs): break
    time.sleep(0.2)
bad = [j for j in jobs if j["status"] != "done" or len(j["generations"]) != 1]
gens = call("GET", "/api/generations?limit=500")["generations"]
print(f"# jobs {len(jobs)}, not done or not one image: {len(bad)}, max attempts {max(j['attempts'] for j in jobs)}, generations {len(gens)}", file=sys.stderr)
for g in gens: print(g["seed"], g["sha256"])
PY
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
echo "reference: one process on SQLite"
"$BIN" serve --store "$TMP/ref.sqlite" --port "$REF" 2>"$TMP/ref.log" & PIDS+=($!)
submit_and_wait "$REF" | sort > "$TMP/ref.txt"
kill "${PIDS[-1]}"

echo "pool: front end on loopback, workers in namespaces over veth"
"$BIN" serve --store "postgres://unclip@127.0.0.1:$PORT/chaos" --workers 0 --port "$FRONT" 2>"$TMP/front.log" & PIDS+=($!)
WPID=()
for i in 1 2 3; do
  ip netns exec "unclip-w$i" "$BIN" worker --store "postgres://unclip@10.77.$i.1:$PORT/chaos" --threads 1 \
     --lease-seconds 4 --heartbeat-seconds 1 2>"$TMP/worker-$i.log" & WPID+=($!); PIDS+=($!)
done
sleep 3
( submit_and_wait "$FRONT" | sort > "$TMP/pool.txt" ) & SUB=$!
# Faults, once jobs run: kill the worker holding a job, restart the database, cut one worker's connection.
for _ in $(seq 1 500); do h=$(q "SELECT worker FROM jobs WHERE status = 'running' LIMIT 1" 2>/dev/null || true); [ -n "$h" ] && break; sleep 0.02; done
victim=$(echo "$h" | cut -d: -f2)
echo "fault 1: SIGKILL worker pid $victim (holding a job: $h)"; kill -9 "$victim"
sleep 1
echo "fault 2: pg_ctl restart -m fast"; runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/pg.log" -o "$PGOPTS" -m fast -w restart >/dev/null
sleep 2
echo "fault 3: terminate one worker's connection: $(q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid = (SELECT min(pid) FROM pg_stat_activity WHERE application_name LIKE 'unclip-worker%' AND application_name NOT LIKE '%listen%')")"
wait "$SUB"
echo "pool store: $(q "SELECT count(*) FROM jobs WHERE status = 'done'") jobs done, $(q "SELECT count(*) FROM generations") generations, $(q "SELECT count(DISTINCT (job_id, job_index)) FROM generations") distinct job images, $(q "SELECT count(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM generations g WHERE g.sha256 = i.sha256)") orphan images, $(q "SELECT count(*) FROM jobs WHERE attempts > 1") jobs claimed more than once"
"$BIN" check --store "postgres://unclip@127.0.0.1:$PORT/chaos" --verify | tail -1
if diff -q "$TMP/ref.txt" "$TMP/pool.txt" >/dev/null && [ "$(wc -l < "$TMP/ref.txt")" -eq "$JOBS" ]; then
  echo "PASS: $JOBS images byte-identical to the single-process SQLite run"
else
  echo "FAIL: images differ"; diff "$TMP/ref.txt" "$TMP/pool.txt" | head; exit 1
fi
