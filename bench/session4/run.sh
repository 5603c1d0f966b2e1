#!/bin/bash
# Session 4 suite: per item, back to back: ours fp32, diffusers fp32 + bf16 autocast, ours bf16 (2 threads,
# warm-up 1, median of 3). Each `unclip-bench` call also times the sgemm peak right before its item.
set -u
cd "$(dirname "$0")/../.."
out=bench/session4
items=${ITEMS:-clip-vitl clip-h prior-step prior-25 unet-512 unet-768 vae-512 vae-768}
for item in $items; do
  .build/release/unclip-bench --threads 2 --items $item --runs 3 --warmup 1 --json $out/ours-fp32-$item.json 2>&1 | tee -a $out/ours.log
  /work/venv/bin/python notebooks-export/bench_peer.py run --threads 2 --items $item --runs 3 --warmup 1 --precisions fp32,bf16 --json $out/peer-$item.json 2>&1 | tee -a $out/peer.log
  .build/release/unclip-bench --threads 2 --precision bf16 --items $item --runs 3 --warmup 1 --json $out/ours-bf16-$item.json 2>&1 | tee -a $out/ours.log
done
# The whole pipeline at 768² for peak RSS: diffusers fp32 (ours were run with --low-memory, see BENCHMARKS.md).
if [ -z "${ITEMS:-}" ]; then
  /work/venv/bin/python notebooks-export/bench_peer.py run --threads 2 --items pipeline-768 --runs 1 --warmup 0 --precisions fp32 --json $out/p768-peer-fp32.json 2>&1 | tee -a $out/peer.log
fi
