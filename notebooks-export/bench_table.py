"""Markdown table for BENCHMARKS.md from `unclip-bench --json` and `bench_peer.py run --json` outputs.

    python3 notebooks-export/bench_table.py --ours ours-t2.json ours-t1.json --peer peer-t2.json peer-t1.json \\
        [--out table.md]

Rows are matched on (item, threads); any number of files per side (one per thread count). Only the
standard library is needed. Columns: item, analytic GFLOP per call, threads, our fp32 seconds, diffusers
fp32 seconds, ours/diffusers, diffusers under bf16 autocast, our GFLOP/s and its share of the OpenBLAS
sgemm 2048^3 peak of the same run, diffusers' fp32 GFLOP/s, peak RSS of each side (each item measured
in its own process; diffusers' from its fp32 run).
"""

import argparse
import json
import sys

ORDER = ["sgemm", "clip-vitl", "clip-h", "prior-step", "prior-25", "unet-512", "unet-768", "vae-512", "vae-768",
         "pipeline-512", "pipeline-768"]


def load(paths, side):
    rows, meta = {}, []
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        if data.get("side") != side:
            sys.exit(f"{path}: expected side '{side}', found {data.get('side')!r}")
        meta.append(data)
        for r in data["rows"]:
            rows[(r["item"], r["threads"], r.get("precision", "fp32"))] = r
    return rows, meta


def fmt_s(r):
    if r is None:
        return "-"
    if "error" in r:
        return "failed"
    s = r["seconds"]
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def fmt_mib(r):
    return "-" if r is None or "peak_rss_bytes" not in r else f"{r['peak_rss_bytes'] / 2**20:,.0f} MiB"


def table(ours, peer):
    keys = sorted({(i, t) for (i, t, _) in list(ours) + list(peer)},
                  key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, -k[1]))
    head = ["item", "GFLOP", "threads", "ours fp32 s", "diffusers fp32 s", "ours / diffusers", "diffusers bf16 s",
            "ours GFLOP/s", "ours % of sgemm peak", "diffusers fp32 GFLOP/s", "peak RSS ours", "peak RSS diffusers"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for item, threads in keys:
        o = ours.get((item, threads, "fp32"))
        d = peer.get((item, threads, "fp32"))
        b = peer.get((item, threads, "bf16"))
        ok = lambda r: r is not None and "error" not in r  # noqa: E731
        flops = next((r["flops"] for r in (o, d, b) if ok(r)), None)
        ratio = f"{o['seconds'] / d['seconds']:.2f}" if ok(o) and ok(d) else "-"
        share = f"{100 * o['peak_share']:.0f}%" if ok(o) and "peak_share" in o else "-"
        cells = [item, "-" if flops is None else (f"{flops / 1e9:,.1f}" if flops >= 1e10 else f"{flops / 1e9:.3g}"), str(threads), fmt_s(o), fmt_s(d), ratio, fmt_s(b),
                 f"{o['gflops']:.1f}" if ok(o) else "-", share, f"{d['gflops']:.1f}" if ok(d) else "-",
                 fmt_mib(o), fmt_mib(d)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", nargs="+", required=True, help="unclip-bench --json files")
    ap.add_argument("--peer", nargs="+", required=True, help="bench_peer.py run --json files")
    ap.add_argument("--out", default=None, help="write the markdown here (default: stdout)")
    args = ap.parse_args()
    ours, ours_meta = load(args.ours, "ours")
    peer, peer_meta = load(args.peer, "diffusers")
    modes = {m["mode"] for m in ours_meta + peer_meta}
    notes = []
    if "quick" in modes:
        notes.append("**QUICK MODE (tiny architectures, smoke test): these numbers are NOT benchmarks.**\n")
    p = peer_meta[0]
    notes.append(f"Runs: ours {sorted({m['runs'] for m in ours_meta})}, diffusers {sorted({m['runs'] for m in peer_meta})} "
                 f"(median; sgemm: best of 3); warm-up {sorted({m['warmup'] for m in ours_meta + peer_meta})}. "
                 f"CPU: {p.get('cpu')}; torch {p.get('torch')}, diffusers {p.get('diffusers')}, "
                 f"transformers {p.get('transformers')}.\n")
    text = "\n".join(notes) + "\n" + table(ours, peer) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
