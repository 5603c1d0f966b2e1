"""diffusers vs unclip on the shipped model: same seed, --prior-candidates 1 → same PNG.

Run from the repository root after `swift build -c release`:
    venv/bin/python notebooks-export/check_shapes_parity.py [--model weights/shapes] [--seeds 5 6 7]
Prints the mean and max absolute pixel difference per prompt (diffusers' StableUnCLIPPipeline with 20 decoder
steps, prior 25 steps, prior guidance 4 — `unclip generate`'s defaults — and the decoder guidance the folder's
unclip.json recommends, else diffusers' 10; passed to both sides explicitly).
"""

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
from PIL import Image

from diffusers import StableUnCLIPPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["a small red circle on the left", "a large blue triangle at the top on a white background",
           "a green square in the center on a navy background"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "weights", "shapes"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7])
    ap.add_argument("--cli", default=os.path.join(ROOT, ".build", "release", "unclip"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    pipe = StableUnCLIPPipeline.from_pretrained(a.model, torch_dtype=torch.float32)
    settings = os.path.join(a.model, "unclip.json")
    guidance = float(json.load(open(settings)).get("guidance_scale", 10.0)) if os.path.exists(settings) else 10.0
    print(f"decoder guidance {guidance}")
    pipe.set_progress_bar_config(disable=True)
    work = tempfile.mkdtemp()
    for seed, prompt in zip(a.seeds, PROMPTS):
        img = pipe(prompt, generator=torch.Generator().manual_seed(seed), num_inference_steps=20, guidance_scale=guidance,
                   prior_num_inference_steps=25, prior_guidance_scale=4.0, output_type="np").images
        ref = np.array(pipe.numpy_to_pil(img)[0]).astype(int)
        out = os.path.join(work, f"{seed}.png")
        subprocess.run([a.cli, "generate", prompt, "--model", a.model, "--seed", str(seed), "--prior-candidates", "1",
                        "--guidance", str(guidance), "--output", out, "--store", os.path.join(work, "store.sqlite")], check=True, capture_output=True)
        ours = np.array(Image.open(out).convert("RGB")).astype(int)
        d = np.abs(ref - ours)
        print(f"seed {seed} {prompt!r}: mean |d| {d.mean():.4f}, max |d| {d.max()} (pixel levels)")


if __name__ == "__main__":
    main()
