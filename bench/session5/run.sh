#!/bin/bash
# Session 5 suite: one benchmark session, every figure of issue 7. Per item, back to back: ours fp32, diffusers
# fp32 + bf16 autocast, ours bf16 (warm-up 1, median of 3). Each `unclip-bench` call also times the sgemm peak
# right before its item. 2 threads for every item, 1 thread for the shorter ones, then peak RSS of the whole
# pipeline at 768².
set -u
cd "$(dirname "$0")/../.."
out=bench/session5
peer="/work/venv/bin/python notebooks-export/bench_peer.py run"
pair() {  # threads item...
  local t=$1; shift
  for item in "$@"; do
    .build/release/unclip-bench --threads $t --items $item --runs 3 --warmup 1 --json $out/ours-fp32-t$t-$item.json 2>&1 | tee -a $out/ours.log
    $peer --threads $t --items $item --runs 3 --warmup 1 --precisions fp32,bf16 --json $out/peer-t$t-$item.json 2>&1 | tee -a $out/peer.log
    .build/release/unclip-bench --threads $t --precision bf16 --items $item --runs 3 --warmup 1 --json $out/ours-bf16-t$t-$item.json 2>&1 | tee -a $out/ours.log
  done
}
pair 2 ${ITEMS2:-clip-vitl clip-h prior-step prior-25 unet-512 unet-768 vae-512 vae-768 pipeline-512}
pair 1 ${ITEMS1:-clip-vitl clip-h prior-step unet-512 vae-512}
if [ -z "${SKIP768:-}" ]; then
  .build/release/unclip-bench --threads 2 --items pipeline-768 --runs 1 --warmup 0 --low-memory --json $out/p768-ours-fp32-lowmem.json 2>&1 | tee -a $out/ours.log
  .build/release/unclip-bench --threads 2 --items pipeline-768 --runs 1 --warmup 0 --low-memory --precision bf16 --variant fp16 --json $out/p768-ours-bf16-fp16-lowmem.json 2>&1 | tee -a $out/ours.log
  $peer --threads 2 --items pipeline-768 --runs 1 --warmup 0 --precisions fp32 --json $out/p768-peer-fp32.json 2>&1 | tee -a $out/peer.log
fi
