"""Session-5 tables from bench/session5/*.json. Standard library only.

    python3 bench/session5/table.py > bench/session5/table.md

Files: ours-fp32-tT-ITEM.json, ours-bf16-tT-ITEM.json, peer-tT-ITEM.json (T = threads), p768-*.json.
"""
import json
import os

here = os.path.dirname(os.path.abspath(__file__))
items = ["clip-vitl", "clip-h", "prior-step", "prior-25", "unet-512", "unet-768", "vae-512", "vae-768", "pipeline-512"]


def rows(path):
    with open(path) as f:
        return {(r["item"], r.get("precision", "fp32")): r for r in json.load(f)["rows"]}


def table(threads):
    data, peaks = {}, []
    for item in items:
        try:
            o32, o16, p = (rows(os.path.join(here, f"{k}-t{threads}-{item}.json")) for k in ("ours-fp32", "ours-bf16", "peer"))
        except FileNotFoundError:
            continue
        data[item] = (o32, o16, p)
        for src in (o32, o16):
            if ("sgemm", "fp32") in src:
                peaks.append(src[("sgemm", "fp32")]["gflops"])
    if not data:
        return []
    best = max(peaks)
    out = [f"### {threads} thread{'s' if threads > 1 else ''}", "",
           "| item | ours fp32 s | diffusers fp32 s | ratio | ours GFLOP/s | % of same-run sgemm | % of session's best sgemm "
           "| ours bf16 s | diffusers autocast s | bf16 / diffusers fp32 | bf16 / autocast | peak RSS ours fp32 / diffusers fp32 / ours bf16 MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for item, (o32, o16, p) in data.items():
        a, b16 = o32[(item, "fp32")], o16[(item, "bf16")]
        pf, pb = p[(item, "fp32")], p[(item, "bf16")]
        same = o32[("sgemm", "fp32")]["gflops"]
        g = a["gflops"]
        out.append(f"| {item} | {a['seconds']:.3f} | {pf['seconds']:.3f} | {a['seconds'] / pf['seconds']:.2f} | {g:.1f} "
                   f"| {100 * g / same:.1f}% (peak {same:.0f}) | {100 * g / best:.1f}% | {b16['seconds']:.3f} | {pb['seconds']:.3f} "
                   f"| {b16['seconds'] / pf['seconds']:.2f} | {b16['seconds'] / pb['seconds']:.2f} "
                   f"| {a['peak_rss_bytes'] / 2**20:,.0f} / {pf['peak_rss_bytes'] / 2**20:,.0f} / {b16['peak_rss_bytes'] / 2**20:,.0f} |")
    out.append("")
    out.append(f"sgemm 2048³ peaks measured by our runs at {threads} thread{'s' if threads > 1 else ''} (GFLOP/s): "
               f"{', '.join(f'{x:.0f}' for x in peaks)}; best {best:.0f}.")
    return out


out = []
for t in (2, 1):
    out += table(t) + [""]
rss = []
for name, label in [("p768-peer-fp32", "diffusers fp32"), ("p768-ours-fp32-lowmem", "ours fp32, `--low-memory`"),
                    ("p768-ours-bf16-fp16-lowmem", "ours, fp16 weights, `--precision bf16 --low-memory`")]:
    try:
        r = rows(os.path.join(here, name + ".json"))
    except FileNotFoundError:
        continue
    row = next(v for (item, _), v in r.items() if item == "pipeline-768")
    rss.append((label, row["peak_rss_bytes"], row["seconds"]))
if rss:
    base = rss[0][1] if rss[0][0].startswith("diffusers") else None
    out += ["### Whole pipeline at 768² (prior 2 steps, decoder 2 steps), peak RSS", "",
            "| run | peak RSS | vs diffusers fp32 | time |", "|---|---|---|---|"]
    for label, b, s in rss:
        ratio = f"{b / base:.2f}×" if base else "—"
        out.append(f"| {label} | {b / 2**20:,.0f} MiB ({b / 2**30:.2f} GiB) | {ratio} | {s:.1f} s |")
print("\n".join(out))
