"""Session-4 table from bench/session4/*.json (ours-fp32-ITEM, ours-bf16-ITEM, peer-ITEM). Standard library only.

    python3 bench/session4/table.py > bench/session4/table.md
"""
import glob
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
items = ["clip-vitl", "clip-h", "prior-step", "prior-25", "unet-512", "unet-768", "vae-512", "vae-768"]


def rows(path):
    with open(path) as f:
        return {(r["item"], r.get("precision", "fp32")): r for r in json.load(f)["rows"]}


peaks = []
out = ["| item | ours fp32 s | diffusers fp32 s | ratio | ours GFLOP/s | % of same-run sgemm | % of session's best sgemm "
       "| ours bf16 s | diffusers autocast s | bf16 / diffusers fp32 | bf16 / autocast | RSS ours fp32 / diffusers fp32 MiB |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|"]
data = {}
for item in items:
    try:
        o32, o16, p = (rows(os.path.join(here, f"{k}-{item}.json")) for k in ("ours-fp32", "ours-bf16", "peer"))
    except FileNotFoundError:
        continue
    data[item] = (o32, o16, p)
    for src in (o32, o16):
        if ("sgemm", "fp32") in src:
            peaks.append(src[("sgemm", "fp32")]["gflops"])
best = max(peaks) if peaks else float("nan")
for item, (o32, o16, p) in data.items():
    a, b16 = o32[(item, "fp32")], o16[(item, "bf16")]
    pf, pb = p[(item, "fp32")], p[(item, "bf16")]
    same = o32[("sgemm", "fp32")]["gflops"]
    g = a["gflops"]
    out.append(f"| {item} | {a['seconds']:.3f} | {pf['seconds']:.3f} | {a['seconds'] / pf['seconds']:.2f} | {g:.1f} "
               f"| {100 * g / same:.1f}% (peak {same:.0f}) | {100 * g / best:.1f}% | {b16['seconds']:.3f} | {pb['seconds']:.3f} "
               f"| {b16['seconds'] / pf['seconds']:.2f} | {b16['seconds'] / pb['seconds']:.2f} "
               f"| {a['peak_rss_bytes'] / 2**20:,.0f} / {pf['peak_rss_bytes'] / 2**20:,.0f} |")
print("\n".join(out))
print(f"\nsgemm 2048³ peaks measured by our runs this session (GFLOP/s): {', '.join(f'{x:.0f}' for x in peaks)}; best {best:.0f}.")
