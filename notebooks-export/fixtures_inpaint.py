"""Reference runs of diffusers' StableDiffusionInpaintPipeline on tiny models, for the inpainting tests.

Run from the repository root, after fixtures_sd.py has made Tests/Fixtures/sd/ (its tiny-sd-eps folder is reused):
    /tmp/fullsize/venv/bin/python notebooks-export/fixtures_inpaint.py
(diffusers 0.42.1, transformers 5.23.0, torch CPU, float32, one thread.)

Writes Tests/Fixtures/inpaint/:
  unet9/                  a 9-input-channel UNet (latents ++ mask ++ masked-image latents, as
                          stable-diffusion-inpainting's), otherwise tiny-sd-eps's UNet config, random weights.
                          The inpainting model of the 9-channel cases is tiny-sd-eps with this UNet in place of
                          its own (tests assemble that folder with links; committing a second copy of the text
                          encoder and tokenizer would cost 2 MB).
  mask-rect.png           32x32 greyscale (PNG mode L) mask: a white rectangle (repaint) with a soft left edge of
                          greys on both sides of 127.5, so binarisation at 0.5 is exercised.
  openai-mask-32.png      32x32 RGBA mask in OpenAI's convention (transparent = edit) for the server's tests.
  mask-24.png             24x24 RGB mask (a disc and a band): resized by diffusers to the picture's 32x32 (Lanczos).
  mask-colour.png         32x32 RGB mask of colours whose PIL luma (L = (19595 R + 38470 G + 7471 B + 2^15) >> 16)
                          lies just above or below 128: checks the grey conversion diffusers' mask processor does.
  inpaint.expected.safetensors  per case '<case>.image_uint8' [1,32,32,3] and '<case>.latents_final' [1,4,16,16],
                          plus '<mask>.mask_pixels' [1,1,32,32] (the mask processor's binarised mask) and
                          '<mask>.mask_latent' [1,1,16,16] (that mask at latent size).
  inpaint.expected.json   per case: folder, unet, mask, settings, scheduler, seed; and the notes below.

The init picture is Tests/Fixtures/sd/sd-init.png (32x32 RGB).
"""

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
from fixture_common import RandnLog, assert_all_random, randomize_, tensor_info  # noqa: E402

from diffusers import (  # noqa: E402
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
)
from diffusers.models.autoencoders import vae as vae_module  # noqa: E402
from diffusers.pipelines.stable_diffusion import pipeline_stable_diffusion_inpaint  # noqa: E402
from diffusers.schedulers import scheduling_ddim, scheduling_euler_discrete, scheduling_pndm  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_grad_enabled(False)
diffusers.utils.logging.disable_progress_bar()
diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
torch.set_num_threads(1)

SD = os.path.join("Tests", "Fixtures", "sd")
OUT = os.path.join("Tests", "Fixtures", "inpaint")
BASE = os.path.join(SD, "tiny-sd-eps")
INIT_PNG = os.path.join(SD, "sd-init.png")
RNG_MODULES = [pipeline_stable_diffusion_inpaint, vae_module, scheduling_ddim, scheduling_pndm,
               scheduling_euler_discrete]
PROMPT = "a watercolor painting of a house"  # a prompt whose tokens tiny-sd-eps keeps (fixtures_sd.py)


def build_unet9():
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=9, out_channels=4, layers_per_block=2, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=4, attention_head_dim=2, norm_num_groups=4,
        use_linear_projection=False, upcast_attention=False,
    ).eval()
    randomize_(unet, seed=501)
    folder = os.path.join(OUT, "unet9")
    if os.path.exists(folder):
        shutil.rmtree(folder)
    unet.save_pretrained(folder, safe_serialization=True)
    weights = os.path.join(folder, "diffusion_pytorch_model.safetensors")
    assert_all_random(load_file(weights), folder)
    os.chmod(weights, 0o644)


def make_masks():
    yy, xx = np.mgrid[0:32, 0:32]
    m = np.zeros((32, 32), np.uint8)
    m[6:26, 10:28] = 255
    # A soft left edge: columns 6..9 ramp through 100, 127, 128, 200 (127/255 < 0.5 <= 128/255).
    for x, v in zip(range(6, 10), (100, 127, 128, 200)):
        m[6:26, x] = v
    PIL.Image.fromarray(m, mode="L").save(os.path.join(OUT, "mask-rect.png"))
    # Colours with luma 127 or 128 (checked below) on a diagonal split, and pure white/black elsewhere.
    near_low, near_high = (200, 106, 40), (60, 160, 140)
    c = np.zeros((32, 32, 3), np.uint8)
    c[xx + yy > 34] = (255, 255, 255)
    c[(xx + yy > 20) & (xx + yy <= 34) & (xx % 2 == 0)] = near_high
    c[(xx + yy > 20) & (xx + yy <= 34) & (xx % 2 == 1)] = near_low
    PIL.Image.fromarray(c, mode="RGB").save(os.path.join(OUT, "mask-colour.png"))
    luma = np.asarray(PIL.Image.fromarray(np.array([[near_low, near_high]], np.uint8)).convert("L"))[0]
    assert list(luma) == [127, 128], luma
    # 24x24: not the picture's size, so diffusers' mask processor resizes it (PIL Lanczos, on RGB, before the
    # grey conversion) to 32x32; a disc and a diagonal band give edges where the resampling decides.
    s = np.zeros((24, 24, 3), np.uint8)
    y24, x24 = np.mgrid[0:24, 0:24]
    s[(x24 - 15) ** 2 + (y24 - 9) ** 2 < 30] = (255, 255, 255)
    s[(np.abs(x24 - y24 - 2) < 2)] = (180, 180, 60)
    PIL.Image.fromarray(s, mode="RGB").save(os.path.join(OUT, "mask-24.png"))
    make_openai_mask()


def make_openai_mask():
    """32x32 RGBA in OpenAI's convention (the server tests' input; no diffusers run uses it): fully transparent
    (alpha 0, edited) in the left half, opaque elsewhere, with alpha 1 on column 16 (not fully transparent:
    kept). Its colours are white where transparent so that dropping alpha would give the opposite mask."""
    a = np.full((32, 32), 255, np.uint8)
    a[:, :16] = 0
    a[:, 16] = 1
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = 255
    PIL.Image.fromarray(np.dstack([rgb, a]), mode="RGBA").save(os.path.join(OUT, "openai-mask-32.png"))


def load_pipe(c):
    pipe = StableDiffusionInpaintPipeline.from_pretrained(BASE, safety_checker=None, requires_safety_checker=False)
    if c["unet"] == "unet9":
        pipe.unet = UNet2DConditionModel.from_pretrained(os.path.join(OUT, "unet9")).eval()
    if c["scheduler"] == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    elif c["scheduler"] == "euler":
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    else:
        assert c["scheduler"] == "pndm"
    pipe.set_progress_bar_config(disable=True)
    return pipe


DEFAULTS = dict(prompt=PROMPT, num_inference_steps=5, guidance_scale=7.5, strength=1.0, negative_prompt=None)
CASES = [
    # 9-channel UNet: latents ++ mask ++ masked-image latents; strength 1 starts from noise.
    dict(name="u9_pndm_s0", unet="unet9", mask="mask-rect.png", scheduler="pndm", seed=0),
    dict(name="u9_ddim_s1_st06", unet="unet9", mask="mask-colour.png", scheduler="ddim", seed=1, strength=0.6),
    dict(name="u9_euler_s0_g1", unet="unet9", mask="mask-rect.png", scheduler="euler", seed=0, guidance_scale=1.0),
    dict(name="u9_pndm_s3_mask24", unet="unet9", mask="mask-24.png", scheduler="pndm", seed=3),
    # 4-channel UNet: latent blending with the noised image latents after every step.
    dict(name="u4_pndm_s0", unet="own", mask="mask-rect.png", scheduler="pndm", seed=0),
    dict(name="u4_ddim_s1_st06", unet="own", mask="mask-colour.png", scheduler="ddim", seed=1, strength=0.6),
    dict(name="u4_euler_s2", unet="own", mask="mask-rect.png", scheduler="euler", seed=2,
         negative_prompt="blurry, low quality"),
    dict(name="u4_ddim_s3_mask24", unet="own", mask="mask-24.png", scheduler="ddim", seed=3, strength=0.8),
]
CASE_KEYS = ("name", "unet", "mask", "scheduler", "seed")


def run_all():
    tensors, meta = {}, []
    image = PIL.Image.open(INIT_PNG).convert("RGB")
    for c in CASES:
        s = {**DEFAULTS, **{k: v for k, v in c.items() if k not in CASE_KEYS}}
        pipe = load_pipe(c)
        # As a user's script does: diffusers' load_image gives RGB; the mask processor then converts to L.
        mask = PIL.Image.open(os.path.join(OUT, c["mask"])).convert("RGB")
        with RandnLog(RNG_MODULES) as log:
            latents = pipe(**s, image=image, mask_image=mask, generator=torch.Generator().manual_seed(c["seed"]),
                           output_type="latent").images
        draws = [(m, list(d.shape)) for m, d in log.draws]
        out = pipe(**s, image=image, mask_image=mask, generator=torch.Generator().manual_seed(c["seed"]),
                   output_type="np").images
        u8 = torch.from_numpy((out * 255).round().astype(np.uint8))
        n = c["name"]
        tensors[f"{n}.image_uint8"] = u8.contiguous()
        tensors[f"{n}.latents_final"] = latents.contiguous()
        mkey = c["mask"].removesuffix(".png") + ".mask_latent"
        if mkey not in tensors:
            m = pipe.mask_processor.preprocess(mask, height=32, width=32)
            tensors[mkey] = torch.nn.functional.interpolate(m, size=(16, 16)).contiguous()
            tensors[mkey.replace("mask_latent", "mask_pixels")] = m.contiguous()
        sched = pipe.scheduler
        meta.append(dict(name=n, folder="sd/tiny-sd-eps", unet=c["unet"], mask=c["mask"], seed=c["seed"], settings=s,
                         scheduler=dict(cls=type(sched).__name__, init_noise_sigma=float(sched.init_noise_sigma),
                                        timesteps=[float(x) for x in sched.timesteps]),
                         unet_in_channels=pipe.unet.config.in_channels, random_draws=draws))
        print(n, "draws", draws, "image mean %.3f" % out.mean())
    for k, v in tensors.items():
        print(k, tensor_info(v))
    save_file(tensors, os.path.join(OUT, "inpaint.expected.safetensors"))
    os.chmod(os.path.join(OUT, "inpaint.expected.safetensors"), 0o644)
    doc = dict(about=ABOUT, diffusers=diffusers.__version__, transformers=transformers.__version__,
               torch=torch.__version__, init_png="sd/sd-init.png", cases=meta)
    with open(os.path.join(OUT, "inpaint.expected.json"), "w") as f:
        json.dump(doc, f, indent=1)


ABOUT = (
    "diffusers StableDiffusionInpaintPipeline(image=sd-init.png as RGB, mask_image=<mask> converted to RGB as "
    "load_image does; mask-24.png is resized to 32x32 by the mask processor: PIL Lanczos on RGB, then grey), float32 CPU, one thread, generator = torch.Generator().manual_seed(seed), 32x32, 5 steps, "
    "no padding_mask_crop. The model is Tests/Fixtures/sd/tiny-sd-eps, with unet9/ as its UNet when unet = "
    "'unet9'; scheduler 'ddim'/'euler' = <cls>.from_config(the folder's PNDM config). Mask processing: convert('L') "
    "(PIL luma), /255, binarise (< 0.5 -> 0, else 1; white = repaint); masked image = image * (mask < 0.5); the "
    "mask at latent size is interpolate(mask, size=(16, 16)) (nearest). Random draws in order (random_draws): "
    "9-channel with strength 1: the starting noise, then the VAE sample of the masked image; strength < 1 or "
    "4-channel: the VAE sample of the image, the noise, then the VAE sample of the masked image. Starting latents: "
    "noise * init_noise_sigma at strength 1, else scheduler.add_noise(image_latents, noise, timesteps[0]). "
    "4-channel: after each step i, latents = (1 - mask) * add_noise(image_latents, noise, timesteps[i + 1]) + mask "
    "* latents (the image latents un-noised after the last step). latents_final: output_type='latent'; "
    "image_uint8: output_type='np' rounded ×255."
)


if __name__ == "__main__" and sys.argv[1:] == ["--openai-mask-only"]:
    make_openai_mask()
elif __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    build_unet9()
    make_masks()
    run_all()
