#!/usr/bin/env bash
# Server load and durability on the shipped model (run from the repository root after
# `swift build -c release --product unclip`):
#   1. 200 jobs of 5 images queued at once → all complete (a 1,000-generation store);
#   2. wrk: GET listings and thumbnails over that store while a long job runs (10,000+ requests);
#   3. 50 jobs queued, the server SIGKILLed mid-run and restarted → every job done exactly once.
set -euo pipefail
BIN=${BIN:-.build/release/unclip}
# WORK=DIR reuses a folder whose big/ store phase 1 already filled (PHASES=23 then skips phase 1).
WORK=${WORK:-$(mktemp -d /tmp/unclip-load.XXXX)}
PHASES=${PHASES:-123}
mkdir -p "$WORK"
PORT=${PORT:-7880}
OUT=${OUT:-bench/session7}
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
serve() { "$BIN" serve --port "$PORT" --store "$WORK/$1/store.sqlite" 2>> "$WORK/serve.log" & echo $! > "$WORK/pid"
          for _ in $(seq 200); do curl -sf "localhost:$PORT/healthz" >/dev/null && return; sleep 0.1; done; echo "no server"; exit 1; }
jobs_done() { curl -s "localhost:$PORT/api/queue" | python3 -c 'import json,sys; q=json.load(sys.stdin); print(len(q["running"])+len(q["queued"]))'; }
submit() { curl -s -X POST "localhost:$PORT/api/jobs" -d "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }

grep -m1 'model name' /proc/cpuinfo; grep -o 'avx512[a-z_0-9]*\|avx2\|fma\|f16c' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
serve big
if [[ $PHASES == *1* ]]; then
log "1. queueing 200 jobs × 5 images"
t0=$(date +%s.%N)
for i in $(seq 200); do submit "{\"kind\":\"text-to-image\",\"prompt\":\"shape $i\",\"count\":5,\"steps\":10,\"prior_steps\":10}" >/dev/null; done
t1=$(date +%s.%N)
while [ "$(jobs_done)" != "0" ]; do sleep 1; done
t2=$(date +%s.%N)
python3 - "$PORT" "$t0" "$t1" "$t2" <<'PY'
import json, sys, urllib.request
port, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
def get(p): return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}{p}"))
done = sum(1 for i in range(1, 201) if get(f"/api/jobs/{i}")["status"] == "done")
gens = [g["id"] for page in [get("/api/generations?limit=500"), get("/api/generations?limit=500&cursor=501")] for g in page["generations"]]
print(f"200 jobs: accepted in {t1-t0:.1f} s, all ended {t2-t0:.1f} s after the first; done {done}/200; generations {len(gens)} (distinct {len(set(gens))})")
PY
fi

if [[ $PHASES == *2* ]]; then
log "2. wrk while jobs run (4 and 16 connections, 30 s each)"
for i in 1 2 3 4 5 6; do submit '{"kind":"text-to-image","prompt":"busy","count":10,"steps":150}' >> "$WORK/busy"; done
sleep 1
for c in 4 16; do
  echo "--- wrk -t 2 -c $c -d 30s"
  GENERATIONS=1000 wrk -t 2 -c "$c" -d 30s -s bench/session7/paths.lua "http://127.0.0.1:$PORT" | tee "$WORK/wrk-$c.txt"
  curl -s "localhost:$PORT/api/queue" | python3 -c 'import json,sys; q=json.load(sys.stdin); print("jobs running after this pass:", len(q["running"]), "queued:", len(q["queued"]))'
done
for id in $(cat "$WORK/busy"); do curl -s -X DELETE "localhost:$PORT/api/jobs/$id" >/dev/null; done
rm -f "$WORK/busy"
fi
kill -TERM "$(cat "$WORK/pid")"; wait "$(cat "$WORK/pid")" 2>/dev/null || true

if [[ $PHASES == *3* ]]; then
log "3. 50 jobs queued, SIGKILL mid-run, restart"
rm -rf "$WORK/kill"
serve kill
first=""
for i in $(seq 50); do id=$(submit "{\"kind\":\"text-to-image\",\"prompt\":\"k $i\",\"count\":2,\"steps\":40}"); first=${first:-$id}; done
for _ in $(seq 400); do n=$(curl -s "localhost:$PORT/api/generations?limit=500" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["generations"]))'); [ "$n" -ge 5 ] && break; sleep 0.05; done
kill -KILL "$(cat "$WORK/pid")"; wait "$(cat "$WORK/pid")" 2>/dev/null || true
log "killed with $n generations stored"
serve kill
while [ "$(jobs_done)" != "0" ]; do sleep 1; done
python3 - "$PORT" "$first" <<'PY'
import json, sys, urllib.request
port, first = sys.argv[1], int(sys.argv[2])
def get(p): return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}{p}"))
jobs = [get(f"/api/jobs/{i}") for i in range(first, first + 50)]
gens = get("/api/generations?limit=500")["generations"]
links = {(g["job"], g["seed"]) for g in gens}
print(f"after restart: {sum(j['status'] == 'done' for j in jobs)}/50 done; images per job {sorted({len(j['generations']) for j in jobs})}; "
      f"generations {len(gens)} (expected 100), distinct job images {len(links)}; re-run jobs {sum(j['attempts'] > 1 for j in jobs)}")
PY
kill -TERM "$(cat "$WORK/pid")"; wait "$(cat "$WORK/pid")" 2>/dev/null || true
fi
log "logs in $WORK"
