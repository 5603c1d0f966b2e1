"""Reference values of diffusers 0.42.1 noise schedulers for Tests/UnCLIPSchedulersTests.

Run with the reference environment (torch 2.13 CPU, diffusers 0.42.1) plus scipy, which diffusers'
LMSDiscreteScheduler needs (e.g. `pip install --target /tmp/sched-pydeps --no-deps scipy`):
    PYTHONPATH=/tmp/sched-pydeps venv/bin/python notebooks-export/fixtures_schedulers.py

For every case in CASES it writes Tests/Fixtures/schedulers/<case>/:
- scheduler_config.json: the scheduler's own `save_config` output (what a model folder holds),
- data.safetensors:
    alphas_cumprod                       the training schedule (float32), where the scheduler has one
    timesteps.<n>, sigmas.<n>            after set_timesteps(n), for every n in STEP_COUNTS diffusers accepts
    init_noise_sigma.<n>                 scheduler.init_noise_sigma after set_timesteps(n) (shape [1])
    traj.init                            the starting noise of the trajectory (before init_noise_sigma)
    traj.input.<i>, traj.prev.<i>,       per step i: scale_model_input output, prev_sample and, where
    traj.pred.<i>                          the scheduler gives one, pred_original_sample
    addnoise.<k>.original/noise/out      add_noise(original, noise, timesteps) for a few timestep lists
and Tests/Fixtures/schedulers/manifest.json, which lists the cases with what the Swift test needs.

The trajectory runs diffusers' pipeline loop with a fake model that Swift computes identically:
    model(x, t) = x * 0.1 + float32(0.05 * cos(float(t) / 100))     (float64 cos, then float32)
and, for learned variance configs, cat([model(x, t), v], dim=1) with v = x * 0.3 for "learned_range"
(a log-variance interpolation weight) and v = x * x * 0.3 for "learned" (a variance, so positive).
The step noise comes from torch.Generator().manual_seed(case seed); the number of randn_tensor calls
the scheduler made is recorded so the Swift side can check it draws exactly as often.
"""

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
    UnCLIPScheduler,
)

assert diffusers.__version__ == "0.42.1", diffusers.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "schedulers")
SHAPE = (2, 4, 3, 3)
STEP_COUNTS = list(range(1, 31)) + [50, 100, 1000, 1001]

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

# (name, class, config kwargs, trajectory steps, extras)
CASES = [
    # DDPM: the two configs StableUnCLIPPipeline builds, plus the variance/prediction/spacing variants.
    ("ddpm_stable_unclip_prior", DDPMScheduler,
     dict(beta_schedule="squaredcos_cap_v2", prediction_type="sample", num_train_timesteps=1000,
          clip_sample=True, clip_sample_range=5.0), 25, {}),
    ("ddpm_stable_unclip_noising", DDPMScheduler, dict(beta_schedule="squaredcos_cap_v2"), 7, {}),
    ("ddpm_linear_eps", DDPMScheduler, dict(), 7, {}),
    ("ddpm_scaled_vpred_trailing_smalllog", DDPMScheduler,
     dict(**SD, prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=False,
          variance_type="fixed_small_log"), 7, {}),
    ("ddpm_fixed_large_linspace_sample", DDPMScheduler,
     dict(variance_type="fixed_large", timestep_spacing="linspace", prediction_type="sample"), 7, {}),
    ("ddpm_learned_range_offset", DDPMScheduler,
     dict(variance_type="learned_range", steps_offset=1, clip_sample_range=2.0), 7, {"learned": True}),
    ("ddpm_learned_laplace", DDPMScheduler,
     dict(variance_type="learned", beta_schedule="laplace", clip_sample=False), 7, {"learned": "variance"}),
    ("ddpm_zero_snr_trailing_vpred", DDPMScheduler,
     dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction",
          clip_sample=False), 7, {}),
    ("ddpm_sigmoid", DDPMScheduler, dict(beta_schedule="sigmoid", clip_sample=False), 7, {}),
    ("ddpm_thresholding", DDPMScheduler,
     dict(thresholding=True, sample_max_value=1.5, dynamic_thresholding_ratio=0.9), 7, {}),
    ("ddpm_trained_betas", DDPMScheduler,
     dict(num_train_timesteps=50, trained_betas=np.linspace(1e-3, 0.05, 50).tolist(),
          clip_sample=False, timestep_spacing="linspace"), 7, {}),
    # UnCLIP (Karlo): prior and decoder configs, plus epsilon without clipping.
    ("unclip_karlo_prior", UnCLIPScheduler,
     dict(variance_type="fixed_small_log", prediction_type="sample", clip_sample=True,
          clip_sample_range=5.0, num_train_timesteps=1000), 25, {}),
    ("unclip_learned_range", UnCLIPScheduler,
     dict(variance_type="learned_range", prediction_type="epsilon", clip_sample=True,
          clip_sample_range=1.0), 7, {"learned": True}),
    ("unclip_eps_noclip", UnCLIPScheduler, dict(clip_sample=False), 7, {}),
    # DDIM: Stable unCLIP 2.1's config, eta > 0, other spacings.
    ("ddim_sd21_unclip", DDIMScheduler,
     dict(**SD, clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction"),
     25, {}),
    ("ddim_eta_trailing", DDIMScheduler,
     dict(timestep_spacing="trailing", clip_sample=True), 7, {"eta": 0.7}),
    ("ddim_linspace_sample_cos", DDIMScheduler,
     dict(timestep_spacing="linspace", prediction_type="sample", beta_schedule="squaredcos_cap_v2"),
     7, {"eta": 1.0}),
    ("ddim_zero_snr_vpred", DDIMScheduler,
     dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction",
          clip_sample=False), 7, {}),
    ("ddim_thresholding", DDIMScheduler, dict(thresholding=True, sample_max_value=2.0), 7, {}),
    # PNDM: Stable Diffusion's PLMS-only config, the PRK warm-up path, v-prediction.
    ("pndm_sd", PNDMScheduler,
     dict(**SD, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1), 25, {}),
    ("pndm_prk", PNDMScheduler, dict(), 7, {}),
    ("pndm_prk_25", PNDMScheduler, dict(**SD, steps_offset=1), 25, {}),
    ("pndm_vpred_trailing", PNDMScheduler,
     dict(skip_prk_steps=True, prediction_type="v_prediction", timestep_spacing="trailing"), 7, {}),
    ("pndm_linspace", PNDMScheduler, dict(skip_prk_steps=True, timestep_spacing="linspace"), 7, {}),
    # Euler.
    ("euler_sd", EulerDiscreteScheduler, dict(**SD), 25, {}),
    ("euler_karras_leading", EulerDiscreteScheduler,
     dict(**SD, use_karras_sigmas=True, timestep_spacing="leading", steps_offset=1), 7, {}),
    ("euler_vpred_trailing", EulerDiscreteScheduler,
     dict(**SD, prediction_type="v_prediction", timestep_spacing="trailing"), 7, {}),
    ("euler_sample_sigma_min", EulerDiscreteScheduler,
     dict(prediction_type="sample", final_sigmas_type="sigma_min"), 7, {}),
    ("euler_karras_sigma_range", EulerDiscreteScheduler,
     dict(**SD, use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0), 7, {}),
    ("euler_exponential", EulerDiscreteScheduler, dict(**SD, use_exponential_sigmas=True), 7, {}),
    ("euler_log_linear", EulerDiscreteScheduler, dict(**SD, interpolation_type="log_linear"), 7, {}),
    ("euler_continuous_vpred", EulerDiscreteScheduler,
     dict(**SD, prediction_type="v_prediction", timestep_type="continuous"), 7, {}),
    ("euler_zero_snr", EulerDiscreteScheduler,
     dict(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction"), 7, {}),
    # Euler ancestral (draws noise every step).
    ("euler_a_sd", EulerAncestralDiscreteScheduler, dict(**SD), 25, {}),
    ("euler_a_vpred_leading", EulerAncestralDiscreteScheduler,
     dict(**SD, prediction_type="v_prediction", timestep_spacing="leading", steps_offset=1), 7, {}),
    ("euler_a_trailing_cos", EulerAncestralDiscreteScheduler,
     dict(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing"), 7, {}),
    # DPM-Solver multistep.
    ("dpm_sd", DPMSolverMultistepScheduler, dict(**SD), 25, {}),
    ("dpm_karras", DPMSolverMultistepScheduler, dict(**SD, use_karras_sigmas=True), 7, {}),
    ("dpm_karras_25", DPMSolverMultistepScheduler, dict(**SD, use_karras_sigmas=True), 25, {}),
    ("dpm_karras_cos_vpred", DPMSolverMultistepScheduler,
     dict(beta_schedule="squaredcos_cap_v2", use_karras_sigmas=True, prediction_type="v_prediction"), 7, {}),
    ("dpm_order3_heun_leading", DPMSolverMultistepScheduler,
     dict(**SD, solver_order=3, solver_type="heun", timestep_spacing="leading", steps_offset=1), 25, {}),
    ("dpm_order3_short", DPMSolverMultistepScheduler, dict(solver_order=3, lower_order_final=False), 7, {}),
    ("dpm_sde", DPMSolverMultistepScheduler, dict(**SD, algorithm_type="sde-dpmsolver++"), 7, {}),
    ("dpm_sde_heun_karras", DPMSolverMultistepScheduler,
     dict(**SD, algorithm_type="sde-dpmsolver++", solver_type="heun", use_karras_sigmas=True), 7, {}),
    ("dpm_dpmsolver_sigma_min", DPMSolverMultistepScheduler,
     dict(**SD, algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=3), 7, {}),
    ("dpm_sde_dpmsolver", DPMSolverMultistepScheduler,
     dict(**SD, algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"), 7, {}),
    ("dpm_sde_dpmsolver_heun", DPMSolverMultistepScheduler,
     dict(**SD, algorithm_type="sde-dpmsolver", solver_type="heun", final_sigmas_type="sigma_min"), 7, {}),
    ("dpm_dpmsolver_heun", DPMSolverMultistepScheduler,
     dict(**SD, algorithm_type="dpmsolver", solver_type="heun", final_sigmas_type="sigma_min"), 7, {}),
    ("dpm_order1", DPMSolverMultistepScheduler, dict(**SD, solver_order=1), 7, {}),
    ("dpm_cos_clipped_trailing", DPMSolverMultistepScheduler,
     dict(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1, timestep_spacing="trailing",
          prediction_type="sample", thresholding=True, sample_max_value=1.2), 7, {}),
    ("dpm_lu_lambdas", DPMSolverMultistepScheduler, dict(**SD, use_lu_lambdas=True), 7, {}),
    ("dpm_exponential_euler_final", DPMSolverMultistepScheduler,
     dict(**SD, use_exponential_sigmas=True, euler_at_final=True, final_sigmas_type="sigma_min"), 7, {}),
    # LMS.
    ("lms_sd", LMSDiscreteScheduler, dict(**SD), 25, {}),
    ("lms_karras_vpred", LMSDiscreteScheduler,
     dict(**SD, use_karras_sigmas=True, prediction_type="v_prediction"), 7, {}),
    ("lms_exponential_trailing", LMSDiscreteScheduler,
     dict(**SD, use_exponential_sigmas=True, timestep_spacing="trailing"), 7, {}),
    ("lms_leading_sample", LMSDiscreteScheduler,
     dict(timestep_spacing="leading", steps_offset=1, prediction_type="sample"), 7, {}),
]

# Config of one case loaded as another scheduler class (`OtherScheduler.from_config(config)`).
OVERRIDES = [
    ("override_ddim_as_euler_a", "ddim_sd21_unclip", EulerAncestralDiscreteScheduler, 7, {}),
    ("override_ddim_as_dpm", "ddim_sd21_unclip", DPMSolverMultistepScheduler, 7, {}),
    ("override_pndm_as_ddim", "pndm_sd", DDIMScheduler, 7, {}),
    ("override_unclip_as_ddpm", "unclip_karlo_prior", DDPMScheduler, 25, {}),
    ("override_ddpm_as_euler", "ddpm_stable_unclip_noising", EulerDiscreteScheduler, 7, {}),
]


def fake_model(x, t, learned):
    c = float(np.float32(0.05 * math.cos(float(t) / 100.0)))
    out = x * 0.1 + c
    if learned:
        out = torch.cat([out, x * x * 0.3 if learned == "variance" else x * 0.3], dim=1)
    return out


class DrawCounter:
    """Wraps randn_tensor in a scheduler module to count the noise draws."""

    def __init__(self, module):
        self.module = module
        self.original = getattr(module, "randn_tensor", None)  # PNDM and LMS never draw noise
        self.count = 0

    def __enter__(self):
        def counting(*args, **kwargs):
            self.count += 1
            return self.original(*args, **kwargs)

        if self.original is not None:
            self.module.randn_tensor = counting
        return self

    def __exit__(self, *exc):
        if self.original is not None:
            self.module.randn_tensor = self.original


def f32(t):
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


def schedule_data(make, tensors):
    """Timesteps, sigmas and init_noise_sigma for every step count; returns the counts that failed."""
    errors = {}
    for n in STEP_COUNTS:
        s = make()
        try:
            s.set_timesteps(n)
        except Exception as e:  # noqa: BLE001 - diffusers raises several types; record the kind
            errors[str(n)] = type(e).__name__
            continue
        ts = s.timesteps.numpy()
        assert np.array_equal(ts.astype(np.float32).astype(ts.dtype), ts)  # float32 holds them exactly
        tensors[f"timesteps.{n}"] = f32(ts)
        if hasattr(s, "sigmas") and not isinstance(s, (DDPMScheduler, DDIMScheduler)):
            tensors[f"sigmas.{n}"] = f32(s.sigmas.numpy())
        tensors[f"init_noise_sigma.{n}"] = f32([float(s.init_noise_sigma)])
    return errors


def trajectory(make, steps, seed, extras, tensors):
    s = make()
    s.set_timesteps(steps)
    learned = extras.get("learned", False)  # False, True (learned_range) or "variance" (learned)
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed + 1000))
    tensors["traj.init"] = f32(init.numpy())
    g = torch.Generator().manual_seed(seed)
    x = init * s.init_noise_sigma
    module = __import__(type(s).__module__, fromlist=["randn_tensor"])
    timesteps = s.timesteps
    has_pred = False
    error_step = None
    with DrawCounter(module) as counter:
        for i, t in enumerate(timesteps):
            xin = s.scale_model_input(x, t)
            mo = fake_model(xin, t, learned)
            try:
                out = step(s, mo, t, x, i, timesteps, g, extras)
            except IndexError:
                # e.g. cosine + Karras sigmas repeat timestep 998, so diffusers starts at index 1
                # and runs past the last sigma: the Swift scheduler must throw at the same step.
                error_step = i
                break
            pred = getattr(out, "pred_original_sample", None)
            if isinstance(s, DPMSolverMultistepScheduler) and s.config.algorithm_type.endswith("dpmsolver++"):
                pred = s.model_outputs[-1]  # the converted model output is the x0 prediction
            tensors[f"traj.input.{i}"] = f32(xin.numpy())
            tensors[f"traj.prev.{i}"] = f32(out.prev_sample.numpy())
            if pred is not None:
                has_pred = True
                tensors[f"traj.pred.{i}"] = f32(pred.numpy())
            x = out.prev_sample
    return {"steps": steps, "seed": seed, "draws": counter.count, "step_count": len(timesteps),
            "has_pred": has_pred, "learned": bool(learned), "learned_variance": learned == "variance", "eta": extras.get("eta", 0.0), "error_step": error_step}


def step(s, mo, t, x, i, timesteps, g, extras):
    """One scheduler step the way diffusers' pipelines call it."""
    if isinstance(s, DDIMScheduler):
        return s.step(mo, t, x, eta=extras.get("eta", 0.0), generator=g)
    if isinstance(s, UnCLIPScheduler):
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
        return s.step(mo, t, x, prev_timestep=prev, generator=g)
    if isinstance(s, (PNDMScheduler, LMSDiscreteScheduler)):
        return s.step(mo, t, x)
    return s.step(mo, t, x, generator=g)


def add_noise_data(make, steps, seed, tensors):
    s = make()
    s.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed + 2000)
    if isinstance(s, (DDPMScheduler, DDIMScheduler, PNDMScheduler, UnCLIPScheduler)):
        n = s.config.num_train_timesteps
        lists = [[0, n // 2], [n - 1, 1], [n // 4]]
    else:
        ts = s.timesteps.tolist()
        lists = [[ts[0], ts[3]], [ts[-1], ts[1]], [ts[2]]]
    out = []
    for k, lst in enumerate(lists):
        original = torch.randn(SHAPE, generator=g)
        noise = torch.randn(SHAPE, generator=g)
        dtype = s.timesteps.dtype
        noisy = s.add_noise(original, noise, torch.tensor(lst, dtype=dtype))
        tensors[f"addnoise.{k}.original"] = f32(original.numpy())
        tensors[f"addnoise.{k}.noise"] = f32(noise.numpy())
        tensors[f"addnoise.{k}.out"] = f32(noisy.numpy())
        out.append([float(v) for v in lst])
    return out


def write_case(name, cls, config_dir, make, steps, seed, extras, manifest):
    case_dir = os.path.join(OUT, name)
    os.makedirs(case_dir, exist_ok=True)
    tensors = {}
    s = make()
    if hasattr(s, "alphas_cumprod"):
        tensors["alphas_cumprod"] = f32(s.alphas_cumprod.numpy())
    errors = schedule_data(make, tensors)
    traj = trajectory(make, steps, seed, extras, tensors)
    add_noise = add_noise_data(make, steps, seed, tensors)
    save_file(tensors, os.path.join(case_dir, "data.safetensors"))
    manifest.append({
        "name": name,
        "class": cls.__name__,
        "config_dir": config_dir,
        "override": cls.__name__ if config_dir != name else None,
        "step_counts": [n for n in STEP_COUNTS if str(n) not in errors],
        "step_count_errors": errors,
        "trajectory": traj,
        "add_noise_timesteps": add_noise,
    })


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    manifest = []
    configs = {}
    for seed, (name, cls, kwargs, steps, extras) in enumerate(CASES):
        s = cls(**kwargs)
        case_dir = os.path.join(OUT, name)
        os.makedirs(case_dir, exist_ok=True)
        s.save_config(case_dir)
        config = cls.load_config(case_dir)
        configs[name] = config
        write_case(name, cls, name, lambda c=cls, cfg=config: c.from_config(cfg), steps, seed, extras, manifest)
    for seed, (name, source, cls, steps, extras) in enumerate(OVERRIDES, start=100):
        config = configs[source]
        write_case(name, cls, source, lambda c=cls, cfg=config: c.from_config(cfg), steps, seed, extras, manifest)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"shape": list(SHAPE), "cases": manifest}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"{len(manifest)} cases, {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
