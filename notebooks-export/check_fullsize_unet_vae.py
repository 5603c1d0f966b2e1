"""Full-size Stable unCLIP UNet and SD2 VAE decoder: our `run-model` vs diffusers, accuracy, speed, memory.

Run by hand (not in CI), from the repository root, after `swift build -c release`. It is slow at
full size (diffusers: roughly half a minute per 768x768 UNet step on 2 threads):

    venv/bin/python notebooks-export/check_fullsize_unet_vae.py                    # 512 and 768
    venv/bin/python notebooks-export/check_fullsize_unet_vae.py --sizes 512 --components unet
    venv/bin/python notebooks-export/check_fullsize_unet_vae.py --skip-diffusers     # ours only
    venv/bin/python notebooks-export/check_fullsize_unet_vae.py --tiny               # seconds: smoke test

Architectures (random weights, no download):
  unet  stabilityai/stable-diffusion-2-1-unclip-small's UNet2DConditionModel (SD 2.1-v shape):
        block_out_channels (320, 640, 1280, 1280), 3 x CrossAttnDownBlock2D + DownBlock2D /
        UpBlock2D + 3 x CrossAttnUpBlock2D, layers_per_block 2, attention_head_dim (5, 10, 20, 20)
        (= head COUNTS, 64 wide), cross_attention_dim 1024, use_linear_projection, upcast_attention,
        class_embed_type "projection" with projection_class_embeddings_input_dim 1536 (the "small"
        variant: CLIP ViT-L image embedding 768 + noise-level embedding 768), sample_size 96,
        norm_num_groups 32. About 870M parameters (3.5 GB fp32).
  vae   SD2's AutoencoderKL: block_out_channels (128, 256, 512, 512), layers_per_block 2, 4 latent
        channels, norm_num_groups 32, scaling_factor 0.18215 (8x down/up-sampling). ~84M parameters.
Weights: --init redraw (default) re-draws every parameter with fixture_common.randomize_ (norms
1 + N(0, 0.25^2), non-zero biases, no zero-initialised layers; a few seconds); --init default keeps
diffusers' own seeded init (zero biases, unit norms: a weaker parity check, same timing). Saved with
save_pretrained as fp32 plus an fp16 variant (diffusion_pytorch_model.fp16.safetensors).

Per size S (pixels; latents S/8):
  unet        one guided step: sample [2,4,S/8,S/8] (uncond + cond), timestep int64 [1] = 999,
              encoder_hidden_states [2,77,1024], class_labels [2,1536], all N(0,1).
  vae-decode  latents [1,4,S/8,S/8] = N(0,1) / 0.18215 (already divided by scaling_factor, as the
              pipelines call vae.decode) -> image [1,3,S,S].
Each measurement is a separate subprocess that only loads and runs (fullsize_common.py): diffusers
fp32 under torch.set_num_threads(T), ours fp32 and ours --variant fp16 with OPENBLAS_NUM_THREADS=T
(taskset when T < CPU count); "median" of --repeat runs as run-model computes it (sorted[R // 2]);
peak RSS = each process's VmHWM. Our fp16 runs are compared with diffusers fp32 and, unless
--no-fp16-reference, with diffusers on the same fp16-rounded weights computed in fp32 (one run).
Results: a table on stdout and JSON in --json.
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

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

UNET = dict(
    sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
    upcast_attention=True, class_embed_type="projection", projection_class_embeddings_input_dim=1536,
    norm_num_groups=32, act_fn="silu", center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
)
VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    latent_channels=4, norm_num_groups=32, sample_size=768, scaling_factor=0.18215, act_fn="silu",
)
# --tiny: same block layout and options, narrow widths, so the whole script runs in seconds.
TINY_UNET = dict(UNET, block_out_channels=(16, 32, 32, 32), attention_head_dim=(1, 2, 2, 2), cross_attention_dim=32,
                 projection_class_embeddings_input_dim=48, norm_num_groups=8, layers_per_block=1)
TINY_VAE = dict(VAE, block_out_channels=(8, 16, 16, 16), norm_num_groups=4, layers_per_block=1)
SEQ = 77


def build(cls, cfg, folder, seed, init, overrides=None):
    torch.manual_seed(seed)
    model = cls(**cfg).eval()
    if init == "redraw":
        randomize_(model, seed=seed, overrides=overrides)
    model.save_pretrained(folder, safe_serialization=True)
    model.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")
    n = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None, help="comma list of image sizes in pixels (default 512,768; --tiny: 64,96)")
    ap.add_argument("--components", default="unet,vae", help="comma list from: unet, vae")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement")
    ap.add_argument("--tiny", action="store_true", help="narrow architectures, to exercise the script in seconds")
    ap.add_argument("--init", choices=("redraw", "default"), default="redraw")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--skip-diffusers", action="store_true")
    ap.add_argument("--no-fp16", action="store_true", help="skip our --variant fp16 runs")
    ap.add_argument("--no-fp16-reference", action="store_true",
                    help="skip the extra diffusers run on fp16-rounded weights")
    ap.add_argument("--cli", default=DEFAULT_CLI)
    ap.add_argument("--workdir", default=None, help="where to write the models (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--json", default=os.path.join(ROOT, ".build", "fullsize_unet_vae.json"), help="results file")
    args = ap.parse_args()

    if not args.skip_ours and not os.access(args.cli, os.X_OK):
        sys.exit(f"{args.cli} not found: run `swift build -c release` first, or pass --skip-ours")
    sizes = [int(s) for s in (args.sizes or ("64,96" if args.tiny else "512,768")).split(",")]
    if any(s % 8 for s in sizes):
        sys.exit("--sizes must be multiples of 8")
    components = args.components.split(",")
    unet_cfg, vae_cfg = (TINY_UNET, TINY_VAE) if args.tiny else (UNET, VAE)
    workdir = args.workdir or tempfile.mkdtemp(prefix="unclip-fullsize-unet-vae-")
    os.makedirs(workdir, exist_ok=True)
    results = {"tiny": args.tiny, "init": args.init, "threads": args.threads, "repeat": args.repeat,
               "sizes": sizes, "configs": {}, "parameters": {}, "rows": []}
    rows = results["rows"]
    g = torch.Generator().manual_seed(9100)
    try:
        folders, jobs = {}, []
        for comp in components:
            t0 = time.perf_counter()
            folder = os.path.join(workdir, comp)
            if comp == "unet":
                n = build(UNet2DConditionModel, unet_cfg, folder, 9101, args.init)
                ctx = unet_cfg["cross_attention_dim"]
                for s in sizes:
                    x = {"sample": torch.randn(2, 4, s // 8, s // 8, generator=g),
                         "timestep": torch.tensor([999], dtype=torch.int64),
                         "encoder_hidden_states": torch.randn(2, SEQ, ctx, generator=g),
                         "class_labels": torch.randn(2, unet_cfg["projection_class_embeddings_input_dim"], generator=g)}
                    jobs.append(("unet", s, x))
            elif comp == "vae":
                # A smaller gain on the last conv keeps the redrawn decoder's pixels near [-1, 1].
                n = build(AutoencoderKL, vae_cfg, folder, 9102, args.init, overrides={"decoder.conv_out.weight": 0.4})
                for s in sizes:
                    z = torch.randn(1, 4, s // 8, s // 8, generator=g) / vae_cfg["scaling_factor"]
                    jobs.append(("vae-decode", s, {"latents": z}))
            else:
                sys.exit(f"unknown component {comp!r}")
            folders[comp] = folder
            results["configs"][comp] = json.load(open(os.path.join(folder, "config.json")))
            results["parameters"][comp] = n
            print(f"built {comp}: {n / 1e6:.1f}M parameters in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

        for kind, size, x in jobs:
            folder = folders["unet" if kind == "unet" else "vae"]
            tag = f"{kind}-{size}"
            inputs = os.path.join(workdir, f"in-{tag}.safetensors")
            save_file(x, inputs)

            def out(who):
                return os.path.join(workdir, f"out-{tag}-{who}.safetensors")

            ref = ref16 = base = None
            if not args.skip_diffusers:
                info = diffusers_run(kind, folder, inputs, out("diffusers"), args.threads, args.repeat)
                ref = load_file(out("diffusers"))["sample"]
                base = info["seconds_per_run"]
                rows.append(dict(info, kind=kind, size=size, side="diffusers", weights="fp32",
                                 out_abs_max=ref.abs().max().item(), out_std=ref.std().item()))
                print(json.dumps(rows[-1]), file=sys.stderr)
            if args.skip_ours:
                continue
            for variant in (None, "fp16")[: 1 if args.no_fp16 else 2]:
                who = f"ours-{variant or 'fp32'}"
                info = ours_run(args.cli, kind, folder, inputs, out(who), args.threads, args.repeat, variant)
                y = load_file(out(who))["sample"]
                row = dict(info, kind=kind, size=size, side="ours", weights=variant or "fp32",
                           out_abs_max=y.abs().max().item())
                if base:
                    row["ratio"] = info["seconds_per_run"] / base
                if ref is not None:
                    row["max_abs_diff"], row["rel_diff"] = compare(y, ref)
                if variant and not args.skip_diffusers and not args.no_fp16_reference:
                    if ref16 is None:
                        diffusers_run(kind, folder, inputs, out("diffusers-fp16w"), args.threads, 1, "fp16")
                        ref16 = load_file(out("diffusers-fp16w"))["sample"]
                    row["max_abs_diff_same_weights"], row["rel_diff_same_weights"] = compare(y, ref16)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
            del x
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(("TINY architectures (smoke test), " if args.tiny else "")
          + f"threads {args.threads}, repeat {args.repeat}, init {args.init}; "
          + ", ".join(f"{k} {v / 1e6:.0f}M params" for k, v in results["parameters"].items()))
    sec = lambda v: f"{v:.2f}"  # noqa: E731
    e = lambda v: f"{v:.2e}"  # noqa: E731
    print_table(rows, [
        ("kind", "kind", None), ("size", "size", None), ("side", "side", None), ("weights", "weights", None),
        ("seconds_per_run", "s/run", sec), ("ratio", "ours/diffusers", sec), ("load_seconds", "load s", sec),
        ("peak_rss_bytes", "peak RSS", fmt_bytes), ("out_abs_max", "|out| max", lambda v: f"{v:.3g}"),
        ("max_abs_diff", "max|d| vs diffusers fp32", e), ("rel_diff", "rel", lambda v: f"{v:.1e}"),
        ("max_abs_diff_same_weights", "max|d| vs same fp16 weights", e),
        ("rel_diff_same_weights", "rel", lambda v: f"{v:.1e}"),
    ])
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
