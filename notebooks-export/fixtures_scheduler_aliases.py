"""Reference values of diffusers 0.42.1 for every scheduler alias of SchedulerRegistry (Sources/UnCLIPSchedulers/
SchedulerRegistry.swift), for Tests/UnCLIPSchedulersTests/SchedulerAliasTests.swift.

Run from the repository root with the reference environment (torch 2.13 CPU, diffusers 0.42.1, plus scipy,
which diffusers' LMSDiscreteScheduler needs):
    venv/bin/python notebooks-export/fixtures_scheduler_aliases.py

Each alias is `Class.from_config(config, **overrides)` (the table ALIASES below, which must match
SchedulerRegistry.presets; the Swift test checks that it does) applied to two decoder configs:
- shapes: weights/shapes/scheduler/scheduler_config.json, the shipped model's decoder scheduler (DDIM,
  squaredcos_cap_v2, v-prediction, trailing spacing);
- sd21:   Stable Diffusion 2.1's (and Stable unCLIP 2.1's) DDIM config (scaled_linear, v-prediction, leading
  spacing, steps_offset 1).
For every alias and step count in STEP_COUNTS it runs the loop LatentDenoiser.denoise runs: set_timesteps(n),
set_begin_index(0) where the class has it, noise * init_noise_sigma, then scale_model_input / model / step
with a seeded torch.Generator. The model is the fake one of fixtures_schedulers.py,
    model(x, t) = x * 0.1 + float32(0.05 * cos(float(t) / 100)),
on a [1, 1, 2, 2] sample (the schedulers are element-wise; four values keep the files small).

Writes Tests/Fixtures/schedulers/aliases/:
- <config>/scheduler_config.json   the config the aliases were applied to
- <config>/data.safetensors        per alias a and step count n:
    a.n.timesteps [n']  a.n.sigmas [n'+1] (sigma schedulers)  a.n.init [1,1,2,2] (noise before init_noise_sigma)
    a.n.input / a.n.prev / a.n.pred [n', 1, 1, 2, 2]  scale_model_input, prev_sample, x0 prediction per step
- manifest.json: the aliases (class, overrides), and per config/alias/step count: the step count diffusers
  ran (n' differs from n for PNDM), the seed, the number of noise draws, init_noise_sigma, whether there is
  an x0 prediction, and `bare_error_step`: the step at which the same loop WITHOUT set_begin_index(0) fails
  in diffusers (null if it does not). That is the dpm++2m-karras bug on the cosine schedule: Karras sigmas
  near sigma_max all map to timestep 998 after the int64 cast, index_for_timestep takes the second 998 for
  the first step, and the last step then runs past the end of the sigmas.
"""

import inspect
import json
import math
import os
import shutil

import numpy as np
import torch
from safetensors.numpy import save_file

import diffusers
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)

from fixtures_schedulers import DrawCounter, f32  # this folder: randn_tensor call counting, float32 arrays

assert diffusers.__version__ == "0.42.1", diffusers.__version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "schedulers", "aliases")
SHAPE = (1, 1, 2, 2)
STEP_COUNTS = [4, 10, 20, 25, 50]

DPMPP_2M = {"algorithm_type": "dpmsolver++", "solver_order": 2}
# alias -> (class, overrides): SchedulerRegistry.presets.
ALIASES = [
    ("ddim", DDIMScheduler, {}),
    ("pndm", PNDMScheduler, {"skip_prk_steps": True}),
    ("ddpm", DDPMScheduler, {}),
    ("euler", EulerDiscreteScheduler, {"use_karras_sigmas": False}),
    ("euler-karras", EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    ("euler-a", EulerAncestralDiscreteScheduler, {}),
    ("dpm++2m", DPMSolverMultistepScheduler, {**DPMPP_2M, "use_karras_sigmas": False}),
    ("dpm++2m-karras", DPMSolverMultistepScheduler, {**DPMPP_2M, "use_karras_sigmas": True}),
    ("lms", LMSDiscreteScheduler, {"use_karras_sigmas": False}),
    ("lms-karras", LMSDiscreteScheduler, {"use_karras_sigmas": True}),
]

SD21 = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def fake_model(x, t):
    return x * 0.1 + float(np.float32(0.05 * math.cos(float(t) / 100.0)))


def run(make, n, seed, begin):
    """The denoising loop; returns (per-step records, draws, error step or None)."""
    s = make()
    s.set_timesteps(n)
    if begin and hasattr(s, "set_begin_index"):
        s.set_begin_index(0)
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed + 1000))
    g = torch.Generator().manual_seed(seed)
    x = init * s.init_noise_sigma
    module = __import__(type(s).__module__, fromlist=["randn_tensor"])
    # PNDM and LMS draw no noise and take no generator.
    kwargs = {"generator": g} if "generator" in inspect.signature(s.step).parameters else {}
    steps = []
    with DrawCounter(module) as counter:
        for i, t in enumerate(s.timesteps):
            xin = s.scale_model_input(x, t)
            try:
                out = s.step(fake_model(xin, t), t, x, **kwargs)
            except IndexError:
                return s, init, steps, counter.count, i
            pred = getattr(out, "pred_original_sample", None)
            if isinstance(s, DPMSolverMultistepScheduler):
                pred = s.model_outputs[-1]  # dpmsolver++ converts the model output to x0
            steps.append((xin, out.prev_sample, pred))
            x = out.prev_sample
    return s, init, steps, counter.count, None


def main():
    shapes_path = os.path.join(ROOT, "weights", "shapes", "scheduler", "scheduler_config.json")
    assert os.path.isfile(shapes_path), f"{shapes_path} is missing"
    with open(shapes_path) as f:
        shapes = json.load(f)
    assert shapes["_class_name"] == "DDIMScheduler", shapes["_class_name"]
    configs = [("shapes", shapes), ("sd21", SD21)]

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    manifest = {
        "shape": list(SHAPE),
        "step_counts": STEP_COUNTS,
        "aliases": [{"alias": a, "class": cls.__name__, "overrides": o} for a, cls, o in ALIASES],
        "configs": [],
    }
    seed = 0
    for config_name, config in configs:
        folder = os.path.join(OUT, config_name)
        os.makedirs(folder)
        with open(os.path.join(folder, "scheduler_config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        tensors, runs = {}, []
        for alias, cls, overrides in ALIASES:
            for n in STEP_COUNTS:
                seed += 1
                make = lambda: cls.from_config(config, **overrides)  # noqa: E731
                s, init, steps, draws, error = run(make, n, seed, begin=True)
                assert error is None, f"{config_name} {alias} {n}: fails at step {error} even from index 0"
                *_, bare_error = run(make, n, seed, begin=False)
                key = f"{alias}.{n}"
                tensors[f"{key}.timesteps"] = f32(s.timesteps.numpy())
                if isinstance(s, (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, LMSDiscreteScheduler,
                                  DPMSolverMultistepScheduler)):
                    tensors[f"{key}.sigmas"] = f32(s.sigmas.numpy())
                tensors[f"{key}.init"] = f32(init.numpy())
                tensors[f"{key}.input"] = f32(torch.stack([st[0] for st in steps]).numpy())
                tensors[f"{key}.prev"] = f32(torch.stack([st[1] for st in steps]).numpy())
                has_pred = steps[0][2] is not None
                if has_pred:
                    tensors[f"{key}.pred"] = f32(torch.stack([st[2] for st in steps]).numpy())
                runs.append({"alias": alias, "steps": n, "step_count": len(s.timesteps), "seed": seed,
                             "draws": draws, "init_noise_sigma": float(s.init_noise_sigma), "has_pred": has_pred,
                             "bare_error_step": bare_error})
                if bare_error is not None:
                    print(f"{config_name} {alias} {n} steps: diffusers without set_begin_index fails at step {bare_error}")
        save_file(tensors, os.path.join(folder, "data.safetensors"))
        manifest["configs"].append({"name": config_name, "runs": runs})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"{sum(len(c['runs']) for c in manifest['configs'])} runs, {total / 1e3:.0f} kB in {OUT}")


if __name__ == "__main__":
    main()
