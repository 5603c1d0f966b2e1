"""A complete tiny Stable unCLIP bundle and end-to-end reference runs of diffusers' pipelines on it.

Run from the repository root:  venv/bin/python notebooks-export/fixtures_unclip_bundle.py
(diffusers 0.42.1, transformers 5.23.0, torch CPU, float32 everywhere).

Writes Tests/Fixtures/bundles/:
  tiny-unclip/                       StableUnCLIPPipeline.save_pretrained (all parameters random) plus
                                     feature_extractor/ and image_encoder/ for StableUnCLIPImg2ImgPipeline
  tiny-unclip-input.png              40x48 RGB input image for the image-variation cases
  tiny-unclip.expected.safetensors   captured intermediates, names '<case>.<what>'
  tiny-unclip.expected.json          each case's settings, random draws in order, tensor names/shapes
  tiny-unclip-images/<case>_<i>.png  the pipelines' images as PNG (numpy_to_pil: round(x * 255) as uint8)

Component configs mirror the published ones (shrunk):
  - prior_*: kakaobrain/karlo-v1-alpha's prior + openai/clip-vit-large-patch14's text tower; the prior
    scheduler is DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample",
    num_train_timesteps=1000, clip_sample=True, clip_sample_range=5.0) as diffusers' own
    StableUnCLIPPipeline tests build it (variance_type stays DDPM's default "fixed_small").
    NOTE: the docs / convert_from_ckpt.py recipe DDPMScheduler.from_config(<Karlo's UnCLIPScheduler
    config>) does NOT give this: Karlo's scheduler_config.json has no beta_schedule key, so diffusers
    lists beta_schedule in `_use_default_values` and from_config drops it -> DDPM's default "linear"
    (0.0001..0.02), with variance_type "fixed_small_log" carried over.
  - image_normalizer / image_noising_scheduler: as convert_from_ckpt.stable_unclip_image_noising_components
    (DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")).
  - tokenizer / text_encoder / unet / scheduler / vae: stabilityai/stable-diffusion-2-1-unclip (SD 2.1-v
    based: pad token "!", gelu text encoder, linear-projection attention, class_embed_type "projection",
    DDIMScheduler with v_prediction, steps_offset 1, scaled_linear 0.00085..0.012).
"""

import functools
import json
import os
import shutil
import sys

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import RandnLog, assert_all_random, randomize_, save_clip_tokenizer, tensor_info  # noqa: E402

from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    PriorTransformer,
    StableUnCLIPImg2ImgPipeline,
    StableUnCLIPPipeline,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion import (  # noqa: E402
    pipeline_stable_unclip,
    pipeline_stable_unclip_img2img,
)
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer  # noqa: E402
from diffusers.schedulers import scheduling_ddim, scheduling_ddpm  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

torch.set_grad_enabled(False)
OUT = os.path.join("Tests", "Fixtures", "bundles")
BUNDLE = os.path.join(OUT, "tiny-unclip")
INPUT_PNG = os.path.join(OUT, "tiny-unclip-input.png")
IMAGES = os.path.join(OUT, "tiny-unclip-images")

PRIOR_DIM = 16  # prior text hidden = projection = prior embedding_dim = image embedding width
TEXT_DIM = 20  # decoder text encoder hidden = unet cross_attention_dim


def build_bundle():
    prior_text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=PRIOR_DIM, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
        projection_dim=PRIOR_DIM, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )).eval()
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=PRIOR_DIM,
        num_embeddings=77, additional_embeddings=4, dropout=0.0,
    ).eval()
    prior_scheduler = DDPMScheduler(
        beta_schedule="squaredcos_cap_v2", prediction_type="sample", num_train_timesteps=1000,
        clip_sample=True, clip_sample_range=5.0,
    )

    image_normalizer = StableUnCLIPImageNormalizer(embedding_dim=PRIOR_DIM)
    image_noising_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")

    # SD2's text encoder (OpenCLIP ViT-H converted): gelu, legacy eos_token_id 2; the pipeline only
    # uses last_hidden_state.
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=TEXT_DIM, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
        projection_dim=TEXT_DIM, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )).eval()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        # SD2 naming quirk: with num_attention_heads unset, diffusers uses attention_head_dim as the
        # NUMBER of heads (SD 2.1 ships [5, 10, 20, 20] = 64-wide heads). Here: 2 and 4 heads of 16.
        attention_head_dim=(2, 4),
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * PRIOR_DIM,
        norm_num_groups=8, use_linear_projection=True, upcast_attention=True,
    ).eval()
    # stable-diffusion-2-1-unclip/scheduler: DDIM, v-prediction (the checkpoint is SD 2.1-v based).
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction",
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4, norm_num_groups=8, sample_size=16, scaling_factor=0.18215,
    ).eval()
    feature_extractor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True,
        do_resize=True, resample=3, do_rescale=True, do_normalize=True, do_convert_rgb=True,
    )
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, num_channels=3, projection_dim=PRIOR_DIM, hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )).eval()

    randomize_(prior_text_encoder, seed=300)
    randomize_(prior, seed=301)
    randomize_(image_normalizer, seed=302)
    randomize_(text_encoder, seed=303)
    randomize_(unet, seed=304)
    # A smaller gain on the VAE's last conv keeps most pixels inside (x / 2 + 0.5).clamp(0, 1).
    randomize_(vae, seed=305, overrides={"decoder.conv_out.weight": 0.4})
    randomize_(image_encoder, seed=306)

    if os.path.exists(BUNDLE):
        shutil.rmtree(BUNDLE)
    os.makedirs(BUNDLE)
    prior_tokenizer = save_clip_tokenizer(os.path.join(BUNDLE, "prior_tokenizer"), pad_token="<|endoftext|>")
    tokenizer = save_clip_tokenizer(os.path.join(BUNDLE, "tokenizer"), pad_token="!")
    pipe = StableUnCLIPPipeline(
        prior_tokenizer=prior_tokenizer, prior_text_encoder=prior_text_encoder, prior=prior,
        prior_scheduler=prior_scheduler, image_normalizer=image_normalizer,
        image_noising_scheduler=image_noising_scheduler, tokenizer=tokenizer, text_encoder=text_encoder,
        unet=unet, scheduler=scheduler, vae=vae,
    )
    pipe.save_pretrained(BUNDLE, safe_serialization=True)
    # save_pretrained rewrote the tokenizers as tokenizer.json; restore the vocab/merges layout.
    save_clip_tokenizer(os.path.join(BUNDLE, "prior_tokenizer"), pad_token="<|endoftext|>")
    save_clip_tokenizer(os.path.join(BUNDLE, "tokenizer"), pad_token="!")
    feature_extractor.save_pretrained(os.path.join(BUNDLE, "feature_extractor"))
    image_encoder.save_pretrained(os.path.join(BUNDLE, "image_encoder"), safe_serialization=True)

    for root, _, files in os.walk(BUNDLE):
        for f in files:
            if f.endswith(".safetensors"):
                assert_all_random(load_file(os.path.join(root, f)), os.path.join(root, f))

    # A small deterministic RGB test picture (not square, so resize + center crop both act).
    yy, xx = np.mgrid[0:40, 0:48].astype(np.float32)
    img = np.stack([
        255 * xx / 47,
        255 * (0.5 + 0.5 * np.sin(yy / 4.0 + xx / 9.0)),
        np.where((xx - 30) ** 2 + (yy - 18) ** 2 < 100, 230.0, 40.0 + 3 * yy),
    ], axis=-1)
    PIL.Image.fromarray(np.clip(img.round(), 0, 255).astype(np.uint8)).save(INPUT_PNG)


class Capture:
    """Wraps instance methods to record their inputs/outputs in call order."""

    def __init__(self):
        self.log = {}
        self._undo = []

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
        self._undo.append((obj, name))

    def clear(self):
        self.log = {}

    def remove(self):
        for obj, name in self._undo:
            delattr(obj, name)  # drop the instance attribute: the class method shows through again
        self._undo = []


def _ids(a, kw):
    return (a[0] if a else kw["input_ids"]).clone()


def install_hooks(pipe, cap: Capture, prior_stage: bool):
    if prior_stage:
        cap.wrap(pipe.prior_text_encoder, "forward", "prior_te",
                 lambda a, kw, o: (_ids(a, kw), o.text_embeds.clone(), o.last_hidden_state.clone()))
        cap.wrap(pipe.prior, "forward", "prior",
                 lambda a, kw, o: dict(hidden_states=a[0].clone(), timestep=kw["timestep"],
                                       proj_embedding=kw["proj_embedding"].clone(),
                                       encoder_hidden_states=kw["encoder_hidden_states"].clone(),
                                       attention_mask=kw["attention_mask"].clone(),
                                       out=o.predicted_image_embedding.clone()))
        cap.wrap(pipe.prior_scheduler, "step", "prior_step",
                 lambda a, kw, o: (int(kw["timestep"]), a[0].clone(), kw["sample"].clone(), o[0].clone()))
        cap.wrap(pipe.prior, "post_process_latents", "post",
                 lambda a, kw, o: (a[0].clone(), o.clone()))
    else:
        cap.wrap(pipe.image_encoder, "forward", "image_encoder",
                 lambda a, kw, o: (a[0].clone(), o.image_embeds.clone()))
    cap.wrap(pipe, "noise_image_embeddings", "noise_image_embeddings",
             lambda a, kw, o: (kw["image_embeds"].clone(), kw["noise_level"], o.clone()))
    cap.wrap(pipe.text_encoder, "forward", "te", lambda a, kw, o: (_ids(a, kw), o[0].clone()))
    cap.wrap(pipe.unet, "forward", "unet",
             lambda a, kw, o: dict(sample=a[0].clone(), timestep=a[1], encoder_hidden_states=kw["encoder_hidden_states"].clone(),
                                   class_labels=kw["class_labels"].clone(), out=o[0].clone()))
    cap.wrap(pipe.scheduler, "step", "step", lambda a, kw, o: (int(a[1]), a[0].clone(), a[2].clone(), o[0].clone()))
    cap.wrap(pipe.vae, "decode", "vae", lambda a, kw, o: (a[0].clone(), o[0].clone()))


def collect(cap: Capture, draws, prior_stage: bool, cfg: bool, prior_cfg: bool):
    """Turn one run's capture log into named tensors (see the JSON 'about' text)."""
    t = {}
    L = cap.log
    if prior_stage:
        te = L["prior_te"]
        t["prior.input_ids"], t["prior.text_embeds"], t["prior.last_hidden_state"] = te[0]
        if prior_cfg:
            t["prior.uncond_input_ids"], t["prior.uncond_text_embeds"], t["prior.uncond_last_hidden_state"] = te[1]
        p0 = L["prior"][0]
        for k in ("proj_embedding", "encoder_hidden_states", "hidden_states"):
            t[f"prior_in.{k}"] = p0[k]
        t["prior_in.attention_mask"] = p0["attention_mask"].to(torch.int64)
        t["prior_in.first_raw_output"] = p0["out"]
        st = L["prior_step"]
        t["prior.timesteps"] = torch.tensor([s[0] for s in st], dtype=torch.int64)
        t["prior.step.model_output"] = torch.stack([s[1] for s in st])
        t["prior.step.sample"] = torch.stack([s[2] for s in st])
        t["prior.step.prev_sample"] = torch.stack([s[3] for s in st])
        t["prior.latents_final"], t["prior.image_embeds"] = L["post"][0]
    elif "image_encoder" in L:  # img2img with image= (not with image_embeds=)
        t["image_encoder.pixel_values"], t["image_encoder.image_embeds"] = L["image_encoder"][0]
    # The random draws, in order, tagged by the module that drew them.
    tags = [m for m, _ in draws]
    k = 0
    if prior_stage:
        assert tags[0] == "pipeline_stable_unclip"
        t["prior.latents_init"] = draws[0][1]
        k = 1
        noise = []
        while k < len(tags) and tags[k] == "scheduling_ddpm":
            noise.append(draws[k][1])
            k += 1
        t["prior.step.noise"] = torch.stack(noise)
    t["noise_image_embeddings.noise"] = draws[k][1]
    t["latents_init"] = draws[k + 1][1]
    assert k + 2 == len(draws), tags
    nie = L["noise_image_embeddings"]
    assert len(nie) == 1
    t["noise_image_embeddings.image_embeds"] = nie[0][0]
    t["noise_image_embeddings.noise_level"] = torch.as_tensor(nie[0][1]).to(torch.int64).reshape(-1)
    t["noise_image_embeddings.out"] = nie[0][2]
    te = L["te"]
    t["text.input_ids"], t["text.prompt_embeds"] = te[0]
    if cfg:
        t["text.uncond_input_ids"], t["text.uncond_prompt_embeds"] = te[1]
    u0 = L["unet"][0]
    t["unet_in.encoder_hidden_states"] = u0["encoder_hidden_states"]
    t["unet_in.class_labels"] = u0["class_labels"]
    t["unet_in.first_sample"] = u0["sample"]
    t["unet_in.first_raw_output"] = u0["out"]
    st = L["step"]
    t["timesteps"] = torch.tensor([s[0] for s in st], dtype=torch.int64)
    t["step.model_output"] = torch.stack([s[1] for s in st])
    t["step.sample"] = torch.stack([s[2] for s in st])
    t["step.prev_sample"] = torch.stack([s[3] for s in st])
    t["latents_final"] = st[-1][3]
    t["vae.input"], t["vae.output"] = L["vae"][0]
    return t


T2I_PROMPT = "a tiny robot watering a plant"
T2I_CASES = [
    dict(name="t2i_s0_g10", seed=0),
    dict(name="t2i_s1_g10", seed=1),
    dict(name="t2i_s42_g10", seed=42),
    dict(name="t2i_s0_g1", seed=0, guidance_scale=1.0),  # no decoder CFG (prior CFG still 4.0)
    dict(name="t2i_s0_g1_pg1", seed=0, guidance_scale=1.0, prior_guidance_scale=1.0),  # no CFG anywhere
    dict(name="t2i_s0_g10_neg", seed=0, negative_prompt="blurry, low quality"),
    dict(name="t2i_s0_g10_nl100", seed=0, noise_level=100),
    dict(name="t2i_s42_g10_nl100", seed=42, noise_level=100),
    dict(name="t2i_s1_g10_x2", seed=1, num_images_per_prompt=2),
    dict(name="t2i_s42_g10_h32w48", seed=42, height=32, width=48),
]
T2I_DEFAULTS = dict(prompt=T2I_PROMPT, height=32, width=32, num_inference_steps=4, guidance_scale=10.0,
                    negative_prompt=None, num_images_per_prompt=1, noise_level=0,
                    prior_num_inference_steps=5, prior_guidance_scale=4.0)
I2I_PROMPT = "an oil painting"
I2I_CASES = [
    # image_embeds = the t2i_s0_g10 prior output (stored as t2i_s0_g10.prior.image_embeds)
    dict(name="i2i_embeds_s0", seed=0, source="t2i_s0_g10.prior.image_embeds"),
    dict(name="i2i_embeds_s1_nl100", seed=1, source="t2i_s0_g10.prior.image_embeds", noise_level=100),
    dict(name="i2i_image_s0", seed=0, source="png"),
    dict(name="i2i_image_s1_nl100", seed=1, source="png", noise_level=100),
    dict(name="i2i_image_s0_noprompt_x2", seed=0, source="png", prompt=None, num_images_per_prompt=2),
]
I2I_DEFAULTS = dict(prompt=I2I_PROMPT, height=32, width=32, num_inference_steps=4, guidance_scale=10.0,
                    num_images_per_prompt=1, noise_level=0)


def save_images(name, images_np, tensors, pipe):
    pils = pipe.numpy_to_pil(images_np)  # the pipelines' own float -> uint8 conversion
    u8 = np.stack([np.asarray(p) for p in pils])
    assert np.array_equal(u8, (images_np * 255).round().astype(np.uint8))
    tensors[f"{name}.image"] = torch.from_numpy(images_np.copy())
    tensors[f"{name}.image_uint8"] = torch.from_numpy(u8.copy())
    files = []
    for i, p in enumerate(pils):
        f = f"{name}_{i}.png"
        p.save(os.path.join(IMAGES, f))
        files.append(os.path.join("tiny-unclip-images", f))
    return files


def run_cases():
    pipe = StableUnCLIPPipeline.from_pretrained(BUNDLE)
    pipe.set_progress_bar_config(disable=True)
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    if os.path.exists(IMAGES):
        shutil.rmtree(IMAGES)
    os.makedirs(IMAGES)
    tensors, meta = {}, []
    cap = Capture()
    install_hooks(pipe, cap, prior_stage=True)
    rng_modules = [pipeline_stable_unclip, pipeline_stable_unclip_img2img, scheduling_ddpm, scheduling_ddim]
    for c in T2I_CASES:
        s = {**T2I_DEFAULTS, **{k: v for k, v in c.items() if k not in ("name", "seed")}}
        cap.clear()
        with RandnLog(rng_modules) as log:
            images = pipe(**s, generator=torch.Generator().manual_seed(c["seed"]), output_type="np").images
        t = collect(cap, log.draws, True, s["guidance_scale"] > 1, s["prior_guidance_scale"] > 1)
        n = c["name"]
        for k, v in t.items():
            tensors[f"{n}.{k}"] = v.contiguous()
        files = save_images(n, images, tensors, pipe)
        meta.append(dict(name=n, pipeline="StableUnCLIPPipeline", seed=c["seed"], settings=s, png=files,
                         random_draws=[{"module": m, "shape": list(d.shape)} for m, d in log.draws],
                         tensors={k: tensor_info(v) for k, v in tensors.items() if k.startswith(n + ".")}))
        print(n, "image mean %.3f clamped %.3f" % (images.mean(), ((images == 0) | (images == 1)).mean()))
    cap.remove()

    # Image variations: the same folder's components plus feature_extractor / image_encoder.
    # model_index.json (written by StableUnCLIPPipeline.save_pretrained) does not list these two.
    i2i = StableUnCLIPImg2ImgPipeline.from_pretrained(
        BUNDLE,
        feature_extractor=CLIPImageProcessor.from_pretrained(os.path.join(BUNDLE, "feature_extractor")),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(os.path.join(BUNDLE, "image_encoder")),
    )
    i2i.set_progress_bar_config(disable=True)
    for m in i2i.components.values():
        if isinstance(m, torch.nn.Module):
            m.eval()
    install_hooks(i2i, cap, prior_stage=False)
    picture = PIL.Image.open(INPUT_PNG).convert("RGB")
    for c in I2I_CASES:
        s = {**I2I_DEFAULTS, **{k: v for k, v in c.items() if k not in ("name", "seed", "source")}}
        cap.clear()
        kw = dict(s)
        if c["source"] == "png":
            kw["image"] = picture
        else:
            kw["image_embeds"] = tensors[c["source"]].clone()
        with RandnLog(rng_modules) as log:
            images = i2i(**kw, generator=torch.Generator().manual_seed(c["seed"]), output_type="np").images
        n = c["name"]
        t = collect(cap, log.draws, False, s["guidance_scale"] > 1, False)
        assert ("image_encoder.image_embeds" in t) == (c["source"] == "png")
        for k, v in t.items():
            tensors[f"{n}.{k}"] = v.contiguous()
        files = save_images(n, images, tensors, i2i)
        meta.append(dict(name=n, pipeline="StableUnCLIPImg2ImgPipeline", seed=c["seed"],
                         settings={**s, "image": "tiny-unclip-input.png" if c["source"] == "png" else None,
                                   "image_embeds": None if c["source"] == "png" else c["source"]},
                         png=files,
                         random_draws=[{"module": m, "shape": list(d.shape)} for m, d in log.draws],
                         tensors={k: tensor_info(v) for k, v in tensors.items() if k.startswith(n + ".")}))
        print(n, "image mean %.3f clamped %.3f" % (images.mean(), ((images == 0) | (images == 1)).mean()))
    cap.remove()

    save_file(tensors, os.path.join(OUT, "tiny-unclip.expected.safetensors"))
    doc = {
        "about": ABOUT,
        "bundle": "tiny-unclip",
        "cases": meta,
    }
    with open(os.path.join(OUT, "tiny-unclip.expected.json"), "w") as f:
        json.dump(doc, f, indent=1)


ABOUT = (
    "diffusers 0.42.1 StableUnCLIPPipeline / StableUnCLIPImg2ImgPipeline on Tests/Fixtures/bundles/tiny-unclip, "
    "float32 CPU, generator = torch.Generator().manual_seed(seed), output_type='np'. Tensor names are "
    "'<case>.<what>'. prior.*: prior text encoder outputs for the prompt (uncond_* for the '' prompt, prior CFG "
    "only), prior_in.* the first prior call's inputs (batch [uncond..., cond...] under prior CFG; attention_mask "
    "as int64, the pipeline passes bool), prior.latents_init the first random draw, prior.step.* stacked per "
    "prior step (model_output = guided prediction given to DDPMScheduler.step, sample its input, prev_sample its "
    "output, noise its variance noise for t > 0), prior.image_embeds = prior.post_process_latents("
    "prior.latents_final) = the image_embeds argument of noise_image_embeddings. image_encoder.*: "
    "feature_extractor pixel values and CLIPVisionModelWithProjection image_embeds (img2img with image=). "
    "noise_image_embeddings.{image_embeds,noise,noise_level,out}: its input, the noise it drew, the noise level "
    "and its output [B, 2*D] (noised embeds ++ sinusoidal noise-level embedding). text.*: the decoder "
    "tokenizer ids and CLIPTextModel last_hidden_state for the prompt (uncond_* = negative prompt or '', CFG "
    "only). unet_in.*: the UNet's encoder_hidden_states / class_labels as passed (CFG batch [uncond, cond], the "
    "uncond class_labels are all zeros), its first-step sample and raw output. latents_init: the decoder's "
    "initial noise (DDIM init_noise_sigma is 1). step.*: per DDIM step model_output (guided v prediction), "
    "sample, prev_sample; latents_final the last prev_sample. vae.input = latents_final / 0.18215, vae.output "
    "the decoder output in [-1, 1]-ish; image = (vae.output / 2 + 0.5).clamp(0, 1) as NHWC float32; "
    "image_uint8 = round(image * 255)."
)


def verify():
    """Self-checks: (1) every case re-run WITHOUT hooks gives bit-identical images (the captures did
    not change what diffusers computes); (2) the captured pieces chain together as documented."""
    from diffusers.models.embeddings import get_timestep_embedding

    t = load_file(os.path.join(OUT, "tiny-unclip.expected.safetensors"))
    doc = json.load(open(os.path.join(OUT, "tiny-unclip.expected.json")))
    t2i = StableUnCLIPPipeline.from_pretrained(BUNDLE)
    i2i = StableUnCLIPImg2ImgPipeline.from_pretrained(
        BUNDLE,
        feature_extractor=CLIPImageProcessor.from_pretrained(os.path.join(BUNDLE, "feature_extractor")),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(os.path.join(BUNDLE, "image_encoder")),
    )
    t2i.set_progress_bar_config(disable=True)
    i2i.set_progress_bar_config(disable=True)
    picture = PIL.Image.open(INPUT_PNG).convert("RGB")
    norm = t2i.image_normalizer
    ac = t2i.image_noising_scheduler.alphas_cumprod
    for c in doc["cases"]:
        n, s = c["name"], dict(c["settings"])
        g = torch.Generator().manual_seed(c["seed"])
        if c["pipeline"] == "StableUnCLIPPipeline":
            images = t2i(**s, generator=g, output_type="np").images
            torch.testing.assert_close(t2i.prior.post_process_latents(t[f"{n}.prior.latents_final"]),
                                       t[f"{n}.prior.image_embeds"], rtol=0, atol=0)
            assert torch.equal(t[f"{n}.prior.image_embeds"], t[f"{n}.noise_image_embeddings.image_embeds"])
            ps = t[f"{n}.prior.step.sample"]
            assert torch.equal(ps[0], t[f"{n}.prior.latents_init"])
            assert torch.equal(ps[1:], t[f"{n}.prior.step.prev_sample"][:-1])
        else:
            src_png, src_emb = s.pop("image"), s.pop("image_embeds")
            kw = dict(image=picture) if src_png else dict(image_embeds=t[src_emb].clone())
            images = i2i(**s, **kw, generator=g, output_type="np").images
            if src_png:
                assert torch.equal(t[f"{n}.image_encoder.image_embeds"], t[f"{n}.noise_image_embeddings.image_embeds"])
        assert np.array_equal(images, t[f"{n}.image"].numpy()), n
        # noise_image_embeddings: unscale(sqrt(ac) * scale(x) + sqrt(1 - ac) * noise) ++ sin/cos(level)
        x, z = t[f"{n}.noise_image_embeddings.image_embeds"], t[f"{n}.noise_image_embeddings.noise"]
        lvl = int(t[f"{n}.noise_image_embeddings.noise_level"][0])
        y = ((x - norm.mean) / norm.std * ac[lvl].sqrt() + (1 - ac[lvl]).sqrt() * z) * norm.std + norm.mean
        emb = get_timestep_embedding(torch.tensor([lvl] * x.shape[0]), x.shape[1], flip_sin_to_cos=True,
                                     downscale_freq_shift=0)
        torch.testing.assert_close(torch.cat([y, emb], 1), t[f"{n}.noise_image_embeddings.out"], rtol=1e-5, atol=1e-5)
        st = t[f"{n}.step.sample"]
        assert torch.equal(st[0], t[f"{n}.latents_init"])
        assert torch.equal(st[1:], t[f"{n}.step.prev_sample"][:-1])
        torch.testing.assert_close(t[f"{n}.vae.input"], t[f"{n}.latents_final"] / 0.18215, rtol=1e-6, atol=0)
        img = (t[f"{n}.vae.output"] / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
        assert torch.equal(img, t[f"{n}.image"])
    print("tiny-unclip captures verified")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    build_bundle()
    run_cases()
    verify()
