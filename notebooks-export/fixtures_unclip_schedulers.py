"""End-to-end StableUnCLIPPipeline images on the tiny bundle with every decoder scheduler, and noise
augmentation at levels 0, 100 and 999.

Run from the repository root (after fixtures_unclip_bundle.py):
    venv/bin/python notebooks-export/fixtures_unclip_schedulers.py
LMSDiscreteScheduler needs scipy (pip install --target /tmp/sched-pydeps scipy; PYTHONPATH=/tmp/sched-pydeps).

Writes Tests/Fixtures/bundles/tiny-unclip-schedulers.safetensors:
  <case>.image_uint8 [1, H, W, 3]   the pipeline's image (numpy_to_pil rounding)
  <case>.latents     [1, 4, h, w]   the final latents (output_type="latent" run with the same seed)
  noise.<level>.image_embeds / .noise / .out   StableUnCLIPPipeline.noise_image_embeddings
and tiny-unclip-schedulers.json with each case's scheduler class, config overrides, seed and settings.
"""

import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableUnCLIPPipeline,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(ROOT, "Tests/Fixtures/bundles/tiny-unclip")
OUT = os.path.join(ROOT, "Tests/Fixtures/bundles/tiny-unclip-schedulers")

# (case name, scheduler class, config overrides, seed, decoder guidance, steps)
CASES = [
    ("ddim_eta0", DDIMScheduler, {}, 3, 10.0, 4),
    ("pndm", PNDMScheduler, {"skip_prk_steps": True}, 4, 10.0, 5),
    ("ddpm", DDPMScheduler, {}, 5, 10.0, 4),
    ("euler", EulerDiscreteScheduler, {}, 6, 10.0, 4),
    ("euler_karras", EulerDiscreteScheduler, {"use_karras_sigmas": True}, 7, 10.0, 4),
    ("euler_ancestral", EulerAncestralDiscreteScheduler, {}, 8, 10.0, 4),
    ("dpmpp_2m", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, 9, 10.0, 5),
    ("dpmpp_2m_karras", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}, 10, 10.0, 5),
    ("lms", LMSDiscreteScheduler, {}, 11, 10.0, 4),
    ("euler_noguidance", EulerDiscreteScheduler, {}, 12, 1.0, 4),
]
PROMPT = "a tiny robot watering a plant"


def main():
    torch.set_num_threads(1)
    pipe = StableUnCLIPPipeline.from_pretrained(BUNDLE)
    pipe.set_progress_bar_config(disable=True)
    base_config = dict(pipe.scheduler.config)
    tensors, meta = {}, {"cases": []}
    for name, cls, overrides, seed, guidance, steps in CASES:
        try:
            pipe.scheduler = cls.from_config(base_config, **overrides)
        except ImportError as e:  # LMS needs scipy
            print(f"skipping {name}: {e}")
            continue
        kw = dict(prompt=PROMPT, height=32, width=32, num_inference_steps=steps, guidance_scale=guidance,
                  prior_num_inference_steps=5, prior_guidance_scale=4.0, noise_level=0)
        image = pipe(**kw, generator=torch.Generator().manual_seed(seed), output_type="np").images
        u8 = np.array(pipe.numpy_to_pil(image)[0])
        latents = pipe(**kw, generator=torch.Generator().manual_seed(seed), output_type="latent").images
        tensors[f"{name}.image_uint8"] = torch.from_numpy(u8[None].copy())
        tensors[f"{name}.latents"] = latents.float().contiguous()
        meta["cases"].append({"name": name, "scheduler": cls.__name__, "overrides": overrides, "seed": seed,
                              "guidance_scale": guidance, "num_inference_steps": steps, "prompt": PROMPT,
                              "height": 32, "width": 32, "prior_num_inference_steps": 5, "prior_guidance_scale": 4.0,
                              "noise_level": 0})
        print(name, "ok")

    g = torch.Generator().manual_seed(99)
    embeds = torch.randn(2, 16, generator=g) * 2
    noise = torch.randn(2, 16, generator=g)
    for level in (0, 100, 999):
        out = pipe.noise_image_embeddings(image_embeds=embeds.clone(), noise_level=level, noise=noise.clone())
        tensors[f"noise.{level}.image_embeds"] = embeds.clone()
        tensors[f"noise.{level}.noise"] = noise.clone()
        tensors[f"noise.{level}.out"] = out.float().contiguous()
    save_file(tensors, OUT + ".safetensors")
    with open(OUT + ".json", "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
