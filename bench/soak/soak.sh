#!/usr/bin/env bash
# Server soak: `unclip serve` on the shipped model (weights/shapes) for N minutes under mixed load, sampling its
# resident memory and open file descriptors every minute, then checking that it did not leak or fail.
#
#   bench/soak/soak.sh [MINUTES]          default 30; needs `swift build -c release --product unclip`
#
# Load (bench/soak/load.py, Python standard library only, one client thread per kind):
#   generation jobs (native, A1111 txt2img, OpenAI), gallery reads (listings, details, thumbnails, images, queue),
#   searches (text and like), cancellations of queued and running jobs, and malformed requests from a small
#   generator (bad JSON, wrong types, unknown fields, oversized and overflowing numbers, broken multipart, bad base64).
# Checks at the end: every accepted job ended (done or cancelled), no 5xx except provoked ones (none are provoked:
# a malformed request must get 4xx), resident memory after the run within ±10% of the level after warm-up
# (minute 2), no growth in open file descriptors (idle after the run, 5 s after the last request, and every sample of
# the second half, no more than the most seen in the first half, when pools and lazily opened files fill up),
# the server still up. The server runs niced on THREADS cores (default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${1:-30}
BIN=${BIN:-.build/release/unclip}
PORT=${PORT:-7890}
THREADS=${THREADS:-1}
WORK=${WORK:-$(mktemp -d /tmp/unclip-soak.XXXX)}
OUT=${OUT:-$WORK}
[ -x "$BIN" ] || { echo "soak: $BIN not built (swift build -c release --product unclip)" >&2; exit 2; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(grep -o 'avx512[a-z_0-9]*\|avx2\|fma\|f16c' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "soak: $MINUTES min, server on $THREADS thread(s), work folder $WORK"
# A copy of the binary: a rebuild during the run must not replace the code under the running server.
cp "$BIN" "$WORK/unclip"
nice -n 10 "$WORK/unclip" serve --port "$PORT" --threads "$THREADS" --store "$WORK/store.sqlite" 2> "$WORK/serve.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "localhost:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "localhost:$PORT/healthz" >/dev/null || { echo "soak: the server did not start (see $WORK/serve.log)" >&2; exit 1; }
status=0
python3 bench/soak/load.py --port "$PORT" --pid "$pid" --minutes "$MINUTES" --out "$OUT/soak.json" || status=$?
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
trap - EXIT
exit $status
