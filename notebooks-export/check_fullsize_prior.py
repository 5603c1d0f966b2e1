"""Full-size Karlo PriorTransformer: our `run-model --kind prior` vs diffusers, accuracy, speed, memory.

Run by hand (not in CI), from the repository root, after `swift build -c release`:

    venv/bin/python notebooks-export/check_fullsize_prior.py                 # threads 2 and 1
    venv/bin/python notebooks-export/check_fullsize_prior.py --threads 2 --repeat 3
    venv/bin/python notebooks-export/check_fullsize_prior.py --tiny           # seconds: smoke test

Architecture: kakaobrain/karlo-v1-alpha's prior. diffusers' converter for it
(scripts/convert_kakao_brain_unclip_to_diffusers.py: `PRIOR_CONFIG = {}  # Uses default arguments`)
builds PriorTransformer() with the defaults, which are the values below: 32 heads x 64 (inner width
2048), 20 layers, embedding_dim 768, num_embeddings 77, additional_embeddings 4, time_embed_act_fn
"silu", encoder_hid_proj_type "linear", added_emb_type "prd", no norm_in / embedding_proj_norm.
(The hub config.json itself could not be read from this machine; its published keys are a subset
of these defaults.) About 1.0e9 parameters: the fp32 folder is ~4 GB, the fp16 variant ~2 GB.

Weights: seeded random (fixture_common.randomize_: every parameter re-drawn, activations O(1)),
saved with save_pretrained into <workdir>/prior/ as diffusion_pytorch_model.safetensors (fp32)
and diffusion_pytorch_model.fp16.safetensors (the hub's variant layout).

One guided step's inputs (batch 2 = [uncond, cond], as the pipelines call the prior):
hidden_states [2,768], timestep int64 [2] (999, Karlo's first), proj_embedding [2,768],
encoder_hidden_states [2,77,768], attention_mask int64 [2,77] (uncond: 2 tokens, cond: 14 tokens,
rest padding). The mask is passed to diffusers as bool, as the pipelines do.

Runs, for each thread count: diffusers fp32 (median of --repeat), ours fp32 and ours --variant fp16,
each in a separate subprocess that only loads and runs (peak RSS = that process's own VmHWM; see
fullsize_common.py for why not ru_maxrss). Our fp16 run is compared both with diffusers fp32 and
with diffusers on the same fp16-rounded weights computed in fp32 (one extra run), which is what an
fp32-compute loader of the fp16 file should reproduce.
The 25-step figure is 25 x the per-step median (the prior is the whole cost of a step).
"""

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import randomize_  # noqa: E402
from fullsize_common import DEFAULT_CLI, ROOT, compare, diffusers_run, fmt_bytes, ours_run, print_table  # noqa: E402

from diffusers import PriorTransformer  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

KARLO = dict(num_attention_heads=32, attention_head_dim=64, num_layers=20, embedding_dim=768, num_embeddings=77,
             additional_embeddings=4, dropout=0.0, time_embed_act_fn="silu", norm_in_type=None,
             embedding_proj_norm_type=None, encoder_hid_proj_type="linear", added_emb_type="prd")
TINY = dict(KARLO, num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=32)


def build(cfg, workdir, seed):
    """Random model saved as fp32 + fp16 variant in <workdir>/prior; returns the folder."""
    torch.manual_seed(seed)
    model = PriorTransformer(**cfg).eval()
    randomize_(model, seed=seed)
    folder = os.path.join(workdir, "prior")
    model.save_pretrained(folder, safe_serialization=True)
    model.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")
    n = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    return folder, n


def make_inputs(cfg, path, seed):
    g = torch.Generator().manual_seed(seed)
    d, n = cfg["embedding_dim"], cfg["num_embeddings"]
    mask = torch.zeros(2, n, dtype=torch.int64)
    mask[0, :2] = 1  # "" -> <start> <end>
    mask[1, :14] = 1
    x = {
        "hidden_states": torch.randn(2, d, generator=g),
        "timestep": torch.tensor([999, 999], dtype=torch.int64),
        "proj_embedding": torch.randn(2, d, generator=g),
        "encoder_hidden_states": torch.randn(2, n, d, generator=g),
        "attention_mask": mask,
    }
    save_file(x, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="2,1", help="comma list of thread counts (default 2,1)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (median reported)")
    ap.add_argument("--steps", type=int, default=25, help="steps for the N-step estimate")
    ap.add_argument("--tiny", action="store_true", help="a tiny prior (2 layers, width 32) to exercise the script")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--skip-diffusers", action="store_true")
    ap.add_argument("--no-fp16", action="store_true", help="skip the --variant fp16 runs")
    ap.add_argument("--cli", default=DEFAULT_CLI)
    ap.add_argument("--workdir", default=None, help="where to write the model (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--json", default=os.path.join(ROOT, ".build", "fullsize_prior.json"), help="results file")
    args = ap.parse_args()

    if not args.skip_ours and not os.access(args.cli, os.X_OK):
        sys.exit(f"{args.cli} not found: run `swift build -c release` first, or pass --skip-ours")
    cfg = TINY if args.tiny else KARLO
    threads_list = [int(t) for t in args.threads.split(",")]
    workdir = args.workdir or tempfile.mkdtemp(prefix="unclip-fullsize-prior-")
    os.makedirs(workdir, exist_ok=True)
    results = {"config": cfg, "tiny": args.tiny, "repeat": args.repeat, "steps": args.steps, "rows": []}
    rows = results["rows"]
    try:
        t0 = time.perf_counter()
        folder, n_params = build(cfg, workdir, seed=9001)
        results["parameters"] = n_params
        inputs = os.path.join(workdir, "inputs.safetensors")
        make_inputs(cfg, inputs, seed=9002)
        print(f"built {n_params / 1e6:.1f}M-parameter prior in {time.perf_counter() - t0:.1f}s: {folder}", file=sys.stderr)

        def out_path(tag):
            return os.path.join(workdir, f"out-{tag}.safetensors")

        refs = {}  # "fp32" / "fp16w": diffusers outputs
        for threads in threads_list:
            base = None
            if not args.skip_diffusers:
                info = diffusers_run("prior", folder, inputs, out_path(f"diffusers-t{threads}"), threads, args.repeat)
                refs.setdefault("fp32", load_file(out_path(f"diffusers-t{threads}"))["predicted_image_embedding"])
                base = info["seconds_per_run"]
                rows.append(dict(side="diffusers", weights="fp32", threads=threads, **info))
                print(json.dumps(rows[-1]), file=sys.stderr)
            if args.skip_ours:
                continue
            for variant in (None, "fp16")[: 1 if args.no_fp16 else 2]:
                tag = f"ours-{variant or 'fp32'}-t{threads}"
                info = ours_run(args.cli, "prior", folder, inputs, out_path(tag), threads, args.repeat, variant)
                row = dict(side="ours", weights=variant or "fp32", threads=threads, **info)
                if base:
                    row["ratio"] = info["seconds_per_run"] / base
                y = load_file(out_path(tag))["predicted_image_embedding"]
                if "fp32" in refs:
                    row["max_abs_diff"], row["rel_diff"] = compare(y, refs["fp32"])
                if variant and not args.skip_diffusers:
                    if "fp16w" not in refs:
                        diffusers_run("prior", folder, inputs, out_path("diffusers-fp16w"), max(threads_list), 1, "fp16")
                        refs["fp16w"] = load_file(out_path("diffusers-fp16w"))["predicted_image_embedding"]
                    row["max_abs_diff_same_weights"], _ = compare(y, refs["fp16w"])
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        if "fp32" in refs and "fp16w" in refs:
            results["fp16_weights_effect_in_diffusers"] = compare(refs["fp16w"], refs["fp32"])[0]
        if "fp32" in refs:
            results["output_abs_max"] = refs["fp32"].abs().max().item()
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    for r in rows:
        r["steps_seconds"] = r["seconds_per_run"] * args.steps
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    title = "tiny prior (smoke test)" if args.tiny else "Karlo prior (PriorTransformer defaults)"
    print(f"{title}, {n_params / 1e6:.0f}M parameters, one guided step (batch 2); output |max| "
          f"{results.get('output_abs_max', float('nan')):.3g}")
    sec = lambda v: f"{v:.3f}"  # noqa: E731
    print_table(rows, [
        ("side", "side", None), ("weights", "weights", None), ("threads", "thr", None),
        ("seconds_per_run", "s/step", sec), ("ratio", "ours/diffusers", lambda v: f"{v:.2f}"),
        ("steps_seconds", f"{args.steps} steps s", lambda v: f"{v:.1f}"), ("load_seconds", "load s", sec),
        ("peak_rss_bytes", "peak RSS", fmt_bytes),
        ("max_abs_diff", "max|d| vs diffusers fp32", lambda v: f"{v:.2e}"),
        ("rel_diff", "rel", lambda v: f"{v:.1e}"),
        ("max_abs_diff_same_weights", "max|d| vs diffusers same fp16 weights", lambda v: f"{v:.2e}"),
    ])
    if "fp16_weights_effect_in_diffusers" in results:
        print(f"(diffusers itself, fp16-rounded vs fp32 weights: max|d| {results['fp16_weights_effect_in_diffusers']:.2e})")
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
