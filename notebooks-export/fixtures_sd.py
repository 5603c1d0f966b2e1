"""Two tiny plain Stable Diffusion folders and reference runs of diffusers' SD pipelines on them.

Run from the repository root (scipy is needed by LMSDiscreteScheduler):
    PYTHONPATH=/tmp/sched-pydeps venv/bin/python notebooks-export/fixtures_sd.py
(diffusers 0.42.1, transformers 5.23.0, torch CPU, float32, one thread.)

Writes Tests/Fixtures/sd/:
  tiny-sd-eps/            StableDiffusionPipeline.save_pretrained, SD 1.x style: CLIPTextModel quick_gelu,
                          tokenizer padding with <|endoftext|>, UNet with conv-projection transformers
                          (attention_head_dim=2 -> 2 heads, the SD1 naming quirk), no class embedding,
                          PNDMScheduler(skip_prk_steps=True) = runwayml/stable-diffusion-v1-5's config, epsilon.
  tiny-sd-v/              SD 2.x style: gelu text encoder, "!" padding, use_linear_projection, upcast_attention,
                          attention_head_dim=(2, 4), DDIMScheduler v_prediction, steps_offset 1
                          (= stabilityai/stable-diffusion-2-1's scheduler config).
  sd-init.png             32x32 RGB init picture for the img2img cases
  sd.expected.safetensors captured tensors, names '<case>.<what>' (and 'init_image.pixel_values')
  sd.expected.json        per case: settings, scheduler class/config, timesteps, the random draws in order
                          (module, shape, tensor name), tensor names/shapes; see "about".

No safety_checker / feature_extractor / image_encoder (saved with safety_checker=None,
requires_safety_checker=False). Every parameter is randomised (fixture_common.randomize_); token-embedding
rows that no fixture prompt uses are then zeroed (never read, so outputs do not depend on them; the
files compress well in git). The used ids are listed in sd.expected.json.

Size: the text encoder hidden size is 4 (2 heads of 2) because the real 49408-row embedding dominates:
49408 x 4 x 4 bytes = 0.8 MB per folder (hidden 16: 3.2 MB), plus 1.4 MB of vocab.json/merges.txt per
folder. With hidden 8 the whole directory was 9.0 MB on disk, over the 8 MB budget.
"""

import functools
import json
import os
import shutil
import sys

import numpy as np
import PIL.Image
import torch

import diffusers
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import RandnLog, assert_all_random, randomize_, save_clip_tokenizer, tensor_info  # noqa: E402

from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.models.autoencoders import vae as vae_module  # noqa: E402
from diffusers.pipelines.stable_diffusion import (  # noqa: E402
    pipeline_stable_diffusion,
    pipeline_stable_diffusion_img2img,
)
from diffusers.schedulers import (  # noqa: E402
    scheduling_ddim,
    scheduling_euler_discrete,
    scheduling_lms_discrete,
    scheduling_pndm,
)
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

torch.set_grad_enabled(False)
diffusers.utils.logging.disable_progress_bar()
diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
torch.set_num_threads(1)
OUT = os.path.join("Tests", "Fixtures", "sd")
INIT_PNG = os.path.join(OUT, "sd-init.png")
TEXT_DIM = 4  # text encoder hidden = unet cross_attention_dim (2 heads of 2; see the size note above)
RNG_MODULES = [pipeline_stable_diffusion, pipeline_stable_diffusion_img2img, vae_module, scheduling_ddim,
               scheduling_pndm, scheduling_euler_discrete, scheduling_lms_discrete]

T2I_PROMPT = "a red square on a blue background"
I2I_PROMPT = "a watercolor painting of a house"
NEGATIVE = "blurry, low quality"


# ----------------------------------------------------------------------------------------------------
# Folders


def text_encoder(act, seed):
    # Legacy eos_token_id 2 as in the published SD configs (pooling is unused by the SD pipelines:
    # they take last_hidden_state only).
    model = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=TEXT_DIM, intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act=act, projection_dim=TEXT_DIM,
        layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )).eval()
    randomize_(model, seed=seed)
    return model


def vae(seed):
    model = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=0.18215,
    ).eval()
    # A smaller gain on the last conv keeps most pixels inside (x / 2 + 0.5).clamp(0, 1).
    randomize_(model, seed=seed, overrides={"decoder.conv_out.weight": 0.4})
    return model


def build_eps():
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM, attention_head_dim=2, norm_num_groups=4,
        use_linear_projection=False, upcast_attention=False,
    ).eval()
    randomize_(unet, seed=401)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
    )
    return dict(text_encoder=text_encoder("quick_gelu", 400), unet=unet, vae=vae(402), scheduler=scheduler,
                pad="<|endoftext|>")


def build_v():
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        # SD2 naming quirk: without num_attention_heads, attention_head_dim is the NUMBER of heads.
        cross_attention_dim=TEXT_DIM, attention_head_dim=(2, 4), norm_num_groups=4,
        use_linear_projection=True, upcast_attention=True,
    ).eval()
    randomize_(unet, seed=411)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction",
    )
    return dict(text_encoder=text_encoder("gelu", 410), unet=unet, vae=vae(412), scheduler=scheduler, pad="!")


FOLDERS = {"tiny-sd-eps": build_eps, "tiny-sd-v": build_v}


def all_prompts():
    ps = {"", T2I_PROMPT, I2I_PROMPT, NEGATIVE}
    for c in T2I_CASES + I2I_CASES:
        for k in ("prompt", "negative_prompt"):
            if c.get(k):
                ps.add(c[k])
    return sorted(ps)


def build_folder(name):
    parts = FOLDERS[name]()
    folder = os.path.join(OUT, name)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    tok = save_clip_tokenizer(os.path.join(folder, "tokenizer"), pad_token=parts["pad"])
    used = torch.unique(torch.tensor(tok(all_prompts(), padding="max_length", max_length=77,
                                         truncation=True).input_ids))
    weight = parts["text_encoder"].get_input_embeddings().weight
    keep = torch.zeros(weight.shape[0], dtype=torch.bool)
    keep[used] = True
    weight[~keep] = 0  # rows never read by any fixture prompt
    pipe = StableDiffusionPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=tok, unet=parts["unet"],
        scheduler=parts["scheduler"], safety_checker=None, feature_extractor=None, image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    # save_pretrained rewrote the tokenizer as tokenizer.json; restore the vocab/merges layout.
    save_clip_tokenizer(os.path.join(folder, "tokenizer"), pad_token=parts["pad"])
    for root, _, files in os.walk(folder):
        for f in files:
            if f.endswith(".safetensors"):
                assert_all_random(load_file(os.path.join(root, f)), os.path.join(root, f))
    return used.tolist()


def make_init_png():
    """32x32: a vertical sky gradient, a red square and a yellow disc (edges for img2img to keep)."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    img = np.stack([60 + 3 * yy, 110 + 2 * yy, 230 - 2 * yy + 0 * xx], axis=-1)
    square = (xx >= 5) & (xx < 17) & (yy >= 8) & (yy < 20)
    img[square] = (220, 30, 40)
    disc = (xx - 23) ** 2 + (yy - 21) ** 2 < 30
    img[disc] = (250, 215, 40)
    PIL.Image.fromarray(np.clip(img.round(), 0, 255).astype(np.uint8)).save(INIT_PNG)


# ----------------------------------------------------------------------------------------------------
# Cases

SCHEDULERS = {  # name -> (class, from_config overrides); None = the folder's own scheduler
    "pndm": None, "ddim": (DDIMScheduler, {}), "euler": (EulerDiscreteScheduler, {}),
    "euler_karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "lms": (LMSDiscreteScheduler, {}), "lms_karras": (LMSDiscreteScheduler, {"use_karras_sigmas": True}),
}
T2I_DEFAULTS = dict(prompt=T2I_PROMPT, height=32, width=32, num_inference_steps=5, guidance_scale=7.5,
                    negative_prompt=None)
T2I_CASES = [
    dict(name="eps_pndm_s0_g75", folder="tiny-sd-eps", scheduler="pndm", seed=0),
    dict(name="eps_pndm_s1_g75", folder="tiny-sd-eps", scheduler="pndm", seed=1),
    dict(name="eps_pndm_s0_g1", folder="tiny-sd-eps", scheduler="pndm", seed=0, guidance_scale=1.0),
    dict(name="eps_pndm_s0_g75_neg", folder="tiny-sd-eps", scheduler="pndm", seed=0, negative_prompt=NEGATIVE),
    dict(name="eps_ddim_s0_g75", folder="tiny-sd-eps", scheduler="ddim", seed=0, preview=True),
    dict(name="eps_lms_s0_g75", folder="tiny-sd-eps", scheduler="lms", seed=0),
    dict(name="eps_euler_karras_s1_g75", folder="tiny-sd-eps", scheduler="euler_karras", seed=1, preview=True),
    dict(name="eps_lms_karras_s1_g75", folder="tiny-sd-eps", scheduler="lms_karras", seed=1),
    dict(name="v_ddim_s0_g75", folder="tiny-sd-v", scheduler="ddim", seed=0, preview=True),
    dict(name="v_ddim_s1_g75", folder="tiny-sd-v", scheduler="ddim", seed=1),
    dict(name="v_ddim_s0_g1", folder="tiny-sd-v", scheduler="ddim", seed=0, guidance_scale=1.0),
    dict(name="v_ddim_s0_g75_neg", folder="tiny-sd-v", scheduler="ddim", seed=0, negative_prompt=NEGATIVE),
    dict(name="v_euler_s0_g75", folder="tiny-sd-v", scheduler="euler", seed=0, preview=True),
    dict(name="v_lms_karras_s1_g75", folder="tiny-sd-v", scheduler="lms_karras", seed=1),
]
I2I_DEFAULTS = dict(prompt=I2I_PROMPT, num_inference_steps=5, guidance_scale=7.5, negative_prompt=None)
I2I_CASES = [
    dict(name="eps_i2i_pndm_s0_st03", folder="tiny-sd-eps", scheduler="pndm", seed=0, strength=0.3),
    dict(name="eps_i2i_pndm_s1_st03", folder="tiny-sd-eps", scheduler="pndm", seed=1, strength=0.3),
    dict(name="eps_i2i_pndm_s0_st08", folder="tiny-sd-eps", scheduler="pndm", seed=0, strength=0.8),
    dict(name="eps_i2i_pndm_s1_st08", folder="tiny-sd-eps", scheduler="pndm", seed=1, strength=0.8),
    dict(name="eps_i2i_pndm_s0_st10", folder="tiny-sd-eps", scheduler="pndm", seed=0, strength=1.0),
    dict(name="eps_i2i_euler_s0_st06_neg", folder="tiny-sd-eps", scheduler="euler", seed=0, strength=0.6,
         negative_prompt=NEGATIVE),
    dict(name="v_i2i_ddim_s0_st03", folder="tiny-sd-v", scheduler="ddim", seed=0, strength=0.3),
    dict(name="v_i2i_ddim_s1_st03", folder="tiny-sd-v", scheduler="ddim", seed=1, strength=0.3),
    dict(name="v_i2i_ddim_s0_st08", folder="tiny-sd-v", scheduler="ddim", seed=0, strength=0.8),
    dict(name="v_i2i_ddim_s1_st08", folder="tiny-sd-v", scheduler="ddim", seed=1, strength=0.8),
    dict(name="v_i2i_lms_karras_s1_st06", folder="tiny-sd-v", scheduler="lms_karras", seed=1, strength=0.6),
]
CASE_KEYS = ("name", "folder", "scheduler", "seed", "preview")


def settings_of(c, defaults):
    return {**defaults, **{k: v for k, v in c.items() if k not in CASE_KEYS}}


def load_pipe(cls, c):
    pipe = cls.from_pretrained(os.path.join(OUT, c["folder"]))
    spec = SCHEDULERS[c["scheduler"]]
    if spec is None:
        assert type(pipe.scheduler).__name__.lower().startswith(c["scheduler"]), c
    else:
        pipe.scheduler = spec[0].from_config(pipe.scheduler.config, **spec[1])
    pipe.set_progress_bar_config(disable=True)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    return pipe


class Capture:
    """Wraps instance methods to record their inputs/outputs in call order."""

    def __init__(self):
        self.log = {}

    def wrap(self, obj, name, key, record):
        orig = getattr(obj, name)

        # functools.wraps matters: the pipeline inspects scheduler.step's signature to decide whether
        # to pass `generator` / `eta` (inspect.signature follows __wrapped__).
        @functools.wraps(orig)
        def wrapped(*a, **kw):
            out = orig(*a, **kw)
            self.log.setdefault(key, []).append(record(a, kw, out))
            return out

        setattr(obj, name, wrapped)


def install_hooks(pipe, cap):
    cap.wrap(pipe.text_encoder, "forward", "te",
             lambda a, kw, o: ((a[0] if a else kw["input_ids"]).clone(), o[0].clone()))
    cap.wrap(pipe.unet, "forward", "unet",
             lambda a, kw, o: dict(sample=a[0].clone(), timestep=a[1].clone(), out=o[0].clone(),
                                   encoder_hidden_states=kw["encoder_hidden_states"].clone()))
    # pipelines call step(noise_pred, t, latents, **extra, return_dict=False) -> (prev[, pred_original])
    cap.wrap(pipe.scheduler, "step", "step",
             lambda a, kw, o: (a[1].clone(), a[0].clone(), a[2].clone(), o[0].clone(),
                               o[1].clone() if len(o) > 1 else None))
    cap.wrap(pipe.scheduler, "add_noise", "add_noise",
             lambda a, kw, o: (a[0].clone(), a[1].clone(), a[2].clone(), o.clone()))
    cap.wrap(pipe.vae, "encode", "vae_encode", lambda a, kw, o: (a[0].clone(), o.latent_dist.parameters.clone()))
    cap.wrap(pipe.vae, "decode", "vae_decode", lambda a, kw, o: (a[0].clone(), o[0].clone()))


def to_uint8(pipe, images_np):
    pils = pipe.numpy_to_pil(images_np)  # the pipelines' own float -> uint8 conversion
    u8 = np.stack([np.asarray(p) for p in pils])
    assert np.array_equal(u8, (images_np * 255).round().astype(np.uint8))
    return torch.from_numpy(u8.copy())


def decode_preview(pipe, x0):
    """Decode a pred_original_sample exactly as the pipeline decodes its final latents."""
    img = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor, return_dict=False)[0]
    img = pipe.image_processor.postprocess(img, output_type="np", do_denormalize=[True] * img.shape[0])
    return to_uint8(pipe, img)


def collect(pipe, cap, draws, cfg, img2img):
    """Turn one run's capture log into named tensors and the list of random draws (see 'about')."""
    t, L = {}, cap.log
    te = L["te"]
    t["text.input_ids"], t["text.prompt_embeds"] = te[0]
    if cfg:
        t["text.uncond_input_ids"], t["text.uncond_prompt_embeds"] = te[1]
    assert len(te) == (2 if cfg else 1)
    tags = [m for m, _ in draws]
    if img2img:
        # draw 1: DiagonalGaussianDistribution.sample (retrieve_latents, sample_mode="sample");
        # draw 2: the noise given to scheduler.add_noise.
        assert tags == ["vae", "pipeline_stable_diffusion_img2img"], tags
        names = ["vae_sample_noise", "add_noise.noise"]
        (enc_in, moments), = L["vae_encode"]
        t["vae_encode.moments"] = moments
        (orig, noise, lt, noisy), = L["add_noise"]
        assert torch.equal(noise, draws[1][1])
        t["init_latents"] = orig
        t["add_noise.noise"] = noise
        t["add_noise.timestep"] = lt.to(torch.float32)
        t["latents_start"] = noisy
        t["vae_sample_noise"] = draws[0][1]
    else:
        assert tags == ["pipeline_stable_diffusion"], tags
        names = ["latents_init"]
        t["latents_init"] = draws[0][1]
        assert "add_noise" not in L and "vae_encode" not in L
    u = L["unet"]
    # The UNet's conditioning is cat([uncond, cond]) under CFG, else cond (not stored: duplicates text.*).
    ehs = torch.cat([t["text.uncond_prompt_embeds"], t["text.prompt_embeds"]]) if cfg else t["text.prompt_embeds"]
    assert all(torch.equal(x["encoder_hidden_states"], ehs) for x in u)
    t["unet.first_raw_output"] = u[0]["out"]
    st = L["step"]
    assert len(u) == len(st)
    t["timesteps"] = torch.stack([s[0].to(torch.float32).reshape(()) for s in st])
    assert torch.equal(t["timesteps"], torch.stack([x["timestep"].to(torch.float32).reshape(()) for x in u]))
    t["step.model_output"] = torch.stack([s[1] for s in st])
    t["step.sample"] = torch.stack([s[2] for s in st])
    # The UNet's sample is scale_model_input(cat([latents] * 2)): latents / sqrt(sigma^2 + 1) for Euler/LMS,
    # unchanged for DDIM/PNDM. Not stored (size); checked here against that formula.
    model_input = torch.stack([x["sample"][:1] for x in u])
    if hasattr(pipe.scheduler, "sigmas"):
        i0 = pipe.scheduler.begin_index or 0
        sig = pipe.scheduler.sigmas[i0:i0 + len(st)].reshape(-1, 1, 1, 1, 1)
        torch.testing.assert_close(model_input, t["step.sample"] / (sig**2 + 1) ** 0.5, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(model_input, t["step.sample"])
    if st[0][4] is not None:
        t["step.pred_original_sample"] = torch.stack([s[4] for s in st])
    t["latents_final"] = st[-1][3]
    for i in range(len(st) - 1):
        assert torch.equal(st[i][3], st[i + 1][2])  # step i's prev_sample is step i+1's sample
    if hasattr(pipe.scheduler, "sigmas"):
        t["scheduler.sigmas"] = pipe.scheduler.sigmas.to(torch.float32).clone()
    (dec_in, dec_out), = L["vae_decode"]
    assert torch.equal(dec_in, t["latents_final"] / pipe.vae.config.scaling_factor)
    return t, [{"module": m, "shape": list(d.shape), "what": n} for (m, d), n in zip(draws, names)]


def run_case(c, img2img, init_picture):
    cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
    s = settings_of(c, I2I_DEFAULTS if img2img else T2I_DEFAULTS)
    pipe = load_pipe(cls, c)
    cap = Capture()
    install_hooks(pipe, cap)
    kw = dict(s, image=init_picture) if img2img else dict(s)
    with RandnLog(RNG_MODULES) as log:
        images = pipe(**kw, generator=torch.Generator().manual_seed(c["seed"]), output_type="np").images
    cfg = s["guidance_scale"] > 1
    t, draws = collect(pipe, cap, log.draws, cfg, img2img)
    t["image_uint8"] = to_uint8(pipe, images)
    if c.get("preview"):
        t["preview_uint8"] = torch.cat([decode_preview(pipe, x0) for x0 in t["step.pred_original_sample"]])
        # the same route on the final latents reproduces the pipeline's image
        assert torch.equal(decode_preview(pipe, t["latents_final"]), t["image_uint8"])
    sched = pipe.scheduler
    info = dict(
        name=c["name"], pipeline=cls.__name__, folder=c["folder"], seed=c["seed"], settings=s,
        scheduler=dict(cls=type(sched).__name__, swapped_in=SCHEDULERS[c["scheduler"]] is not None,
                       from_config_overrides=(SCHEDULERS[c["scheduler"]] or (None, {}))[1],
                       config={k: v for k, v in dict(sched.config).items() if not k.startswith("_")},
                       order=sched.order, init_noise_sigma=float(sched.init_noise_sigma),
                       full_timesteps=[float(x) for x in sched.timesteps]),
        timesteps_run=[float(x) for x in t["timesteps"]],
        random_draws=draws,
        has_pred_original_sample="step.pred_original_sample" in t,
    )
    if img2img:
        steps = s["num_inference_steps"]
        init_timestep = min(int(steps * s["strength"]), steps)
        t_start = max(steps - init_timestep, 0)
        info["img2img"] = dict(init_timestep=init_timestep, t_start=t_start,
                               timesteps_slice_start=t_start * sched.order,
                               begin_index=getattr(sched, "begin_index", None),
                               latent_timestep=float(t["add_noise.timestep"][0]),
                               unet_calls=len(t["timesteps"]))
        assert torch.equal(sched.timesteps[t_start * sched.order:].to(torch.float32), t["timesteps"])
    n = c["name"]
    for d in draws:
        d["tensor"] = f"{n}.{d.pop('what')}"
    out = {f"{n}.{k}": v.contiguous() for k, v in t.items()}
    info["tensors"] = {k: tensor_info(v) for k, v in out.items()}
    print(n, "timesteps", info["timesteps_run"], "image mean %.3f clamped %.3f"
          % (images.mean(), ((images == 0) | (images == 1)).mean()))
    return out, info, pipe


def run_all(used_ids):
    tensors, meta = {}, []
    picture = PIL.Image.open(INIT_PNG).convert("RGB")
    for c in T2I_CASES:
        out, info, _ = run_case(c, False, None)
        tensors.update(out)
        meta.append(info)
    for c in I2I_CASES:
        out, info, pipe = run_case(c, True, picture)
        tensors.update(out)
        meta.append(info)
    pixel_values = pipe.image_processor.preprocess(picture)
    tensors["init_image.pixel_values"] = pixel_values.contiguous()
    save_file(tensors, os.path.join(OUT, "sd.expected.safetensors"))
    os.chmod(os.path.join(OUT, "sd.expected.safetensors"), 0o644)
    doc = dict(about=ABOUT, diffusers="0.42.1", transformers="5.23.0", init_png="sd-init.png",
               prompts=all_prompts(), used_token_ids_per_folder=used_ids, notes=NOTES, cases=meta)
    with open(os.path.join(OUT, "sd.expected.json"), "w") as f:
        json.dump(doc, f, indent=1)


ABOUT = (
    "diffusers 0.42.1 StableDiffusionPipeline / StableDiffusionImg2ImgPipeline on Tests/Fixtures/sd/<folder>, "
    "float32 CPU, one thread, generator = torch.Generator().manual_seed(seed) (one generator per call, shared by "
    "all draws), output_type='np', 32x32 images, 16x16 latents. Cases with a swapped scheduler ran "
    "<cls>.from_config(folder scheduler config, **from_config_overrides) (scheduler.config lists the result). "
    "Tensor names '<case>.<what>': text.input_ids / text.prompt_embeds (CLIPTextModel last_hidden_state), "
    "text.uncond_* for the negative prompt ('' when none; CFG only, i.e. guidance_scale > 1). "
    "The UNet's encoder_hidden_states are cat([text.uncond_prompt_embeds, text.prompt_embeds]) under CFG (else "
    "text.prompt_embeds). unet.first_raw_output: the first UNet call's output (whole CFG batch [uncond, cond]). timesteps [N]: the timesteps of the N scheduler.step calls "
    "actually run, as float32 (also the UNet's timestep; Euler/LMS ones are fractional). step.sample [N,1,4,16,16]: "
    "the latents given to step i (step.sample[i+1] = step i's prev_sample); the UNet's sample is "
    "scale_model_input(latents) = step.sample / sqrt(sigma_i^2 + 1) for Euler/LMS (sigma_i = scheduler.sigmas["
    "begin_index + i]), = step.sample for DDIM/PNDM (not stored); "
    "step.model_output: guided prediction given to step (uncond + g * (cond - uncond)); "
    "step.pred_original_sample: the scheduler's x0 (second element of step's return tuple; PNDM has none); "
    "latents_final: last prev_sample; scheduler.sigmas: after set_timesteps (Euler/LMS; trailing 0 included). "
    "image_uint8 [1,32,32,3]: the pipeline's image, vae.decode(latents_final / 0.18215) -> (x / 2 + 0.5)"
    ".clamp(0, 1) NHWC -> round(x * 255) (numpy_to_pil). preview_uint8 [N,32,32,3]: preview_uint8[i] = "
    "step.pred_original_sample[i] decoded the same way (vae.decode(x0 / 0.18215) -> postprocess -> uint8), i.e. "
    "the x0 predicted by the i-th (0-based) scheduler.step call, at timesteps[i]; diffusers' "
    "callback_on_step_end receives the same i. "
    "Text-to-image draws: one randn (latents_init, [1,4,16,16]) from prepare_latents; the first latents are "
    "latents_init * init_noise_sigma (1 for DDIM/PNDM, sqrt(sigma_max^2 + 1) for Euler/LMS with leading/linspace). "
    "Img2img: init_image.pixel_values = image_processor.preprocess(sd-init.png) in [-1, 1]; "
    "vae_encode.moments = latent_dist.parameters (mean ++ logvar, before the [-30, 20] clamp); draw 1 "
    "vae_sample_noise (latent_dist.sample(generator): retrieve_latents uses sample_mode='sample'); init_latents = "
    "0.18215 * (mean + exp(0.5 * clamp(logvar)) * vae_sample_noise); draw 2 add_noise.noise; "
    "latents_start = scheduler.add_noise(init_latents, add_noise.noise, add_noise.timestep) where "
    "add_noise.timestep = timesteps[0] (the first timestep run). Denoising runs timesteps = "
    "scheduler.timesteps[t_start * order:], init_timestep = min(int(steps * strength), steps), "
    "t_start = max(steps - init_timestep, 0) (see each case's img2img block). No other draws happen "
    "(DDIM eta 0, Euler s_churn 0)."
)

NOTES = [
    "model_index.json lists safety_checker, feature_extractor and image_encoder as [null, null].",
    "Swapped schedulers inherit every key of the folder's saved config, including timestep_spacing 'leading' "
    "and steps_offset 1 (Euler's own default is 'linspace'), plus foreign keys (skip_prk_steps, clip_sample ...) "
    "that the new class ignores.",
    "PNDM (skip_prk_steps) has N + 1 timesteps for N steps (the second is repeated: 801, 601, 601, 401, 201, 1) "
    "and order 1, so img2img slices timesteps[t_start:] of that longer list: strength 0.3 with 5 steps runs "
    "[201, 1] (2 UNet calls), 0.8 runs [601, 601, 401, 201, 1]; PNDM restarts its multistep history (counter 0) "
    "at the first sliced timestep.",
    "diffusers 0.42.1 edge cases not stored as fixtures: strength < 1 / num_inference_steps gives init_timestep 0, "
    "so DDIM/Euler/LMS img2img get an empty timestep list and return ZERO images without an error (PNDM runs its "
    "last timestep once). An init image whose sides are not multiples of vae_scale_factor (8 for real SD, 2 here) "
    "is resized (PIL lanczos) down to the nearest multiples by VaeImageProcessor.preprocess, not cropped.",
    "StableUnCLIPImg2ImgPipeline has no strength: the image only goes through feature_extractor + image_encoder "
    "into image_embeds (then noise_image_embeddings and the UNet's class_labels); its latents start from pure "
    "noise as in text-to-image.",
]


# ----------------------------------------------------------------------------------------------------
# Self-checks


def verify():
    """(1) Every case re-run WITHOUT hooks gives bit-identical images; (2) the captures chain as documented."""
    t = load_file(os.path.join(OUT, "sd.expected.safetensors"))
    doc = json.load(open(os.path.join(OUT, "sd.expected.json")))
    picture = PIL.Image.open(INIT_PNG).convert("RGB")
    for c in doc["cases"]:
        n, img2img = c["name"], c["pipeline"] == "StableDiffusionImg2ImgPipeline"
        spec = dict(folder=c["folder"], scheduler=next(k for k, v in SCHEDULERS.items()
                                                       if (v is None and not c["scheduler"]["swapped_in"])
                                                       or (v is not None and v[0].__name__ == c["scheduler"]["cls"]
                                                           and v[1] == c["scheduler"]["from_config_overrides"])))
        pipe = load_pipe(StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline, spec)
        kw = dict(c["settings"], image=picture) if img2img else dict(c["settings"])
        latents = pipe(**kw, generator=torch.Generator().manual_seed(c["seed"]), output_type="latent").images
        assert torch.equal(latents, t[f"{n}.latents_final"]), n
        images = pipe(**kw, generator=torch.Generator().manual_seed(c["seed"]), output_type="np").images
        sigma0 = c["scheduler"]["init_noise_sigma"]
        if img2img:
            moments = t[f"{n}.vae_encode.moments"]
            mean, logvar = moments.chunk(2, dim=1)
            z = 0.18215 * (mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * t[f"{n}.vae_sample_noise"])
            torch.testing.assert_close(z, t[f"{n}.init_latents"], rtol=1e-6, atol=1e-7)
            assert torch.equal(t[f"{n}.latents_start"], t[f"{n}.step.sample"][0])
            assert t[f"{n}.add_noise.timestep"][0] == t[f"{n}.timesteps"][0]
        else:
            torch.testing.assert_close(t[f"{n}.latents_init"] * sigma0, t[f"{n}.step.sample"][0], rtol=0, atol=0)
        assert torch.equal(torch.from_numpy((images * 255).round().astype(np.uint8)), t[f"{n}.image_uint8"]), n
    print("sd captures verified:", len(doc["cases"]), "cases")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    used = {name: build_folder(name) for name in FOLDERS}
    make_init_png()
    run_all(used)
    verify()
