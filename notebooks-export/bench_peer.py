"""Benchmark peer of `unclip-bench` (issue 7): the same items timed with diffusers / transformers.

Run with venv/bin/python from the repository root. Three subcommands:

    bench_peer.py prepare [--work DIR] [--quick] [--items LIST]
        Writes seeded random weight folders, the inputs of every item and DIR/<mode>/manifest.json
        (mode = full or quick). `unclip-bench` loads exactly these folders and inputs. Folders that
        already exist are kept (delete DIR/<mode> to rebuild). Full size needs about 10 GB of disk.
    bench_peer.py run [--work DIR] [--quick] [--items LIST] [--threads N] [--runs R] [--warmup W]
                      [--precisions fp32,bf16] [--json OUT]
        Times each item in its own child process (peak RSS per item), fp32 and under
        torch.autocast("cpu", dtype=torch.bfloat16), all under torch.inference_mode().
    bench_peer.py check-flops [--work DIR] [--quick]
        Compares the analytic FLOP counts of the manifest with torch.utils.flop_counter on the
        meta device (no compute, so it is cheap even at full size).

Items (batch 2 = [uncond, cond], one classifier-free-guided step, as the pipelines call the models):
    sgemm          2048^3 matrix product, best of 3: the machine's reference peak (torch.mm here,
                   OpenBLAS sgemm on the Swift side)
    clip-vitl      CLIP ViT-L/14 text tower (12 layers, 768, quick_gelu, projection 768), batch 2 x 77
    clip-h         OpenCLIP ViT-H/14 text tower as SD 2 uses it (23 layers, 1024, 16 heads, gelu), batch 2 x 77
    prior-step     Karlo PriorTransformer (diffusers defaults: 20 layers, 32 heads x 64, embedding 768,
                   77 + 4 tokens), one call, batch 2
    prior-25       25 guided prior steps: prior call (batch 2) + guidance + DDPMScheduler.step, as
                   StableUnCLIPPipeline's prior loop (text encodings given)
    unet-512/-768  stable-diffusion-2-1-unclip-small's UNet, one call, batch 2, latents 64^2 / 96^2
    vae-512/-768   SD 2 AutoencoderKL decode, batch 1, latents 64^2 / 96^2
    pipeline-512   StableUnCLIPPipeline text-to-image at 512^2: prior 2 steps + decoder 2 steps
    pipeline-768   the same at 768^2 (the peak-RSS comparison of issue 7)

`prepare-fp16` writes fp16 copies of the pipeline's weights beside the fp32 ones (`*.fp16.safetensors`, as
diffusers' variant="fp16"), for `unclip-bench --variant fp16`.
                   (prior guidance 4, decoder guidance 10, one image; load time not included)

FLOPs (analytic, see the *_flops functions): 2 per multiply-add of every convolution
(2*Cin*Cout*k^2*Hout*Wout), linear layer (2*in*out*tokens) and attention product
(QK^T and PV: 4*Tq*Tk*width, width = heads*head_dim). Not counted: norms, activations, softmax,
element-wise ops, embeddings lookups, upsampling copies, schedulers. That is exactly what
torch.utils.flop_counter counts, which `check-flops` verifies.

--quick: narrow architectures with the same block structure and small images (64^2 / 128^2 pixels),
for a smoke test of the whole machinery in seconds. Quick numbers are NOT benchmarks.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
DEFAULT_WORK = "/tmp/unclip-bench"
ALL_ITEMS = ["sgemm", "clip-vitl", "clip-h", "prior-step", "prior-25", "unet-512", "unet-768",
             "vae-512", "vae-768", "pipeline-512", "pipeline-768"]
PRIOR_STEPS = 25
PIPELINE_STEPS = (2, 2)  # prior, decoder
SEQ = 77

# ------------------------------------------------------------------------------------------------
# Architectures (the published configs; quick = same structure, narrow)
# ------------------------------------------------------------------------------------------------

UNET = dict(
    sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
    upcast_attention=True, class_embed_type="projection", projection_class_embeddings_input_dim=1536,
    norm_num_groups=32, act_fn="silu", center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
)
VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    latent_channels=4, norm_num_groups=32, sample_size=768, scaling_factor=0.18215, act_fn="silu",
)
PRIOR = dict(num_attention_heads=32, attention_head_dim=64, num_layers=20, embedding_dim=768, num_embeddings=77,
             additional_embeddings=4, dropout=0.0, time_embed_act_fn="silu", norm_in_type=None,
             embedding_proj_norm_type=None, encoder_hid_proj_type="linear", added_emb_type="prd")
CLIP_VITL = dict(vocab_size=49408, max_position_embeddings=77, hidden_size=768, num_attention_heads=12,
                 num_hidden_layers=12, intermediate_size=3072, projection_dim=768, hidden_act="quick_gelu",
                 layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)
CLIP_H = dict(vocab_size=49408, max_position_embeddings=77, hidden_size=1024, num_attention_heads=16,
              num_hidden_layers=23, intermediate_size=4096, projection_dim=512, hidden_act="gelu",
              layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)

# Quick: the prior's embedding width E = CLIP-L width = projection; the UNet's class input is 2E and its
# cross-attention width is the CLIP-H width, so the quick pipeline bundle is consistent too.
Q_E, Q_CTX = 32, 32
QUICK = dict(
    unet=dict(UNET, block_out_channels=[16, 32, 32, 32], attention_head_dim=[1, 2, 2, 2], cross_attention_dim=Q_CTX,
              projection_class_embeddings_input_dim=2 * Q_E, norm_num_groups=8, layers_per_block=1),
    vae=dict(VAE, block_out_channels=[8, 16, 16, 16], norm_num_groups=4, layers_per_block=1),
    prior=dict(PRIOR, num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=Q_E),
    clip_vitl=dict(CLIP_VITL, hidden_size=Q_E, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64,
                   projection_dim=Q_E),
    clip_h=dict(CLIP_H, hidden_size=Q_CTX, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64),
)
FULL = dict(unet=UNET, vae=VAE, prior=PRIOR, clip_vitl=CLIP_VITL, clip_h=CLIP_H)
SIZES = {"full": {"512": 512, "768": 768}, "quick": {"512": 64, "768": 128}}

# ------------------------------------------------------------------------------------------------
# Analytic FLOP counts (2 per multiply-add; see the module docstring for what is counted)
# ------------------------------------------------------------------------------------------------


def f_linear(i, o, tokens):
    return 2 * i * o * tokens


def f_conv(ci, co, k, h, w):
    """Convolution with a k x k kernel producing an h x w map (stride and padding folded into h, w)."""
    return 2 * ci * co * k * k * h * w


def f_attn(tq, tk, width):
    """softmax(QK^T)V over all heads: QK^T and PV, each 2*Tq*Tk*head_dim per head."""
    return 4 * tq * tk * width


def clip_text_flops(cfg, batch, seq=SEQ, projection=True):
    d, i, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    layer = 4 * f_linear(d, d, seq) + f_attn(seq, seq, d) + f_linear(d, i, seq) + f_linear(i, d, seq)
    per = n * layer + (f_linear(d, cfg["projection_dim"], 1) if projection else 0)
    return batch * per


def prior_flops(cfg, batch):
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    e, n = cfg["embedding_dim"], cfg["num_embeddings"]
    t = n + cfg["additional_embeddings"]
    f = 2 * f_linear(inner, inner, 1)  # time_embedding (linear_1, linear_2)
    f += 2 * f_linear(e, inner, 1)  # proj_in (noisy embedding), embedding_proj (text embedding)
    f += f_linear(e, inner, n)  # encoder_hidden_states_proj (77 text tokens)
    layer = 4 * f_linear(inner, inner, t) + f_attn(t, t, inner) + f_linear(inner, 4 * inner, t) + f_linear(4 * inner, inner, t)
    f += cfg["num_layers"] * layer
    f += f_linear(inner, e, 1)  # proj_to_clip_embeddings (last token)
    return batch * f


def _resnet(ci, co, h, w, temb):
    f = f_conv(ci, co, 3, h, w) + f_conv(co, co, 3, h, w)
    if temb:
        f += f_linear(temb, co, 1)
    if ci != co:
        f += f_conv(ci, co, 1, h, w)  # conv_shortcut
    return f


def _transformer2d(c, h, w, ctx_dim, ctx_len):
    """Transformer2DModel with one BasicTransformerBlock (self-attn, cross-attn, GEGLU feed-forward)."""
    t = h * w
    f = 2 * f_linear(c, c, t)  # proj_in, proj_out (1x1 convs without use_linear_projection: same count)
    f += 4 * f_linear(c, c, t) + f_attn(t, t, c)  # attn1
    f += 2 * f_linear(c, c, t) + 2 * f_linear(ctx_dim, c, ctx_len) + f_attn(t, ctx_len, c)  # attn2
    f += f_linear(c, 8 * c, t) + f_linear(4 * c, c, t)  # GEGLU proj (2 x 4c) and output
    return f


def unet_flops(cfg, batch, h, w, ctx_len=SEQ):
    """UNet2DConditionModel forward on latents h x w; skip channels follow diffusers' construction."""
    ch, lpb, ctx = cfg["block_out_channels"], cfg["layers_per_block"], cfg["cross_attention_dim"]
    temb = 4 * ch[0]
    f = f_linear(ch[0], temb, 1) + f_linear(temb, temb, 1)  # time_embedding
    if cfg.get("class_embed_type") == "projection":
        f += f_linear(cfg["projection_class_embeddings_input_dim"], temb, 1) + f_linear(temb, temb, 1)
    f += f_conv(cfg["in_channels"], ch[0], 3, h, w)
    skips, out = [ch[0]], ch[0]
    for i, kind in enumerate(cfg["down_block_types"]):
        prev, out = out, ch[i]
        for j in range(lpb):
            f += _resnet(prev if j == 0 else out, out, h, w, temb)
            if kind.startswith("CrossAttn"):
                f += _transformer2d(out, h, w, ctx, ctx_len)
            skips.append(out)
        if i < len(ch) - 1:
            h, w = (h + 1) // 2, (w + 1) // 2
            f += f_conv(out, out, 3, h, w)  # stride-2 downsampler
            skips.append(out)
    f += 2 * _resnet(ch[-1], ch[-1], h, w, temb) + _transformer2d(ch[-1], h, w, ctx, ctx_len)  # mid block
    rev = list(reversed(ch))
    out = rev[0]
    for i, kind in enumerate(cfg["up_block_types"]):
        prev, out = out, rev[i]
        for j in range(lpb + 1):
            f += _resnet((prev if j == 0 else out) + skips.pop(), out, h, w, temb)
            if kind.startswith("CrossAttn"):
                f += _transformer2d(out, h, w, ctx, ctx_len)
        if i < len(ch) - 1:
            h, w = 2 * h, 2 * w
            f += f_conv(out, out, 3, h, w)  # upsampler conv after nearest x2
    f += f_conv(ch[0], cfg["out_channels"], 3, h, w)
    return batch * f


def vae_decode_flops(cfg, batch, h, w):
    ch, lpb, lat = cfg["block_out_channels"], cfg["layers_per_block"], cfg["latent_channels"]
    top = ch[-1]
    f = f_conv(lat, lat, 1, h, w) + f_conv(lat, top, 3, h, w)  # post_quant_conv, conv_in
    f += 2 * _resnet(top, top, h, w, None) + 4 * f_linear(top, top, h * w) + f_attn(h * w, h * w, top)  # mid
    rev = list(reversed(ch))
    out = rev[0]
    for i in range(len(ch)):
        prev, out = out, rev[i]
        for j in range(lpb + 1):
            f += _resnet(prev if j == 0 else out, out, h, w, None)
        if i < len(ch) - 1:
            h, w = 2 * h, 2 * w
            f += f_conv(out, out, 3, h, w)
    f += f_conv(ch[0], cfg["out_channels"], 3, h, w)
    return batch * f


def pipeline_flops(cfgs, size, prior_steps, decoder_steps):
    lat = size // 8
    return (clip_text_flops(cfgs["clip_vitl"], 2)  # prior prompt + empty prompt
            + prior_steps * prior_flops(cfgs["prior"], 2)
            + clip_text_flops(cfgs["clip_h"], 2, projection=False)  # prompt + negative prompt
            + decoder_steps * unet_flops(cfgs["unet"], 2, lat, lat)
            + vae_decode_flops(cfgs["vae"], 1, lat, lat))


def item_flops(name, cfgs, mode):
    if name == "sgemm":
        return 2 * 2048 ** 3
    if name == "clip-vitl":
        return clip_text_flops(cfgs["clip_vitl"], 2)
    if name == "clip-h":
        return clip_text_flops(cfgs["clip_h"], 2, projection=False)
    if name == "prior-step":
        return prior_flops(cfgs["prior"], 2)
    if name == "prior-25":
        return PRIOR_STEPS * prior_flops(cfgs["prior"], 2)
    kind, tag = name.rsplit("-", 1)
    lat = SIZES[mode][tag] // 8
    if kind == "unet":
        return unet_flops(cfgs["unet"], 2, lat, lat)
    if kind == "vae":
        return vae_decode_flops(cfgs["vae"], 1, lat, lat)
    if kind == "pipeline":
        return pipeline_flops(cfgs, SIZES[mode][tag], *PIPELINE_STEPS)
    raise ValueError(name)


# ------------------------------------------------------------------------------------------------
# prepare: weights, inputs, manifest
# ------------------------------------------------------------------------------------------------

# Components each item needs (folder names under DIR/<mode>).
NEEDS = {"sgemm": [], "clip-vitl": ["clip-vitl"], "clip-h": ["clip-h"], "prior-step": ["prior"],
         "prior-25": ["prior", "prior_scheduler"], "unet-512": ["unet"], "unet-768": ["unet"],
         "vae-512": ["vae"], "vae-768": ["vae"],
         "pipeline-512": ["clip-vitl", "clip-h", "prior", "prior_scheduler", "unet", "vae", "pipeline"],
         "pipeline-768": ["clip-vitl", "clip-h", "prior", "prior_scheduler", "unet", "vae", "pipeline"]}


def _build_component(comp, cfgs, base):
    import torch
    from fixture_common import randomize_, save_clip_tokenizer

    folder = os.path.join(base, comp)
    if os.path.exists(os.path.join(folder, ".done")):
        return
    t0 = time.perf_counter()
    os.makedirs(folder, exist_ok=True)
    if comp in ("clip-vitl", "clip-h"):
        from clip_common import redraw_parameters
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        vitl = comp == "clip-vitl"
        cls = CLIPTextModelWithProjection if vitl else CLIPTextModel
        model = cls(CLIPTextConfig(**cfgs["clip_vitl" if vitl else "clip_h"])).eval()
        redraw_parameters(model, 7001 if vitl else 7002)
        te = os.path.join(folder, "text_encoder")
        model.save_pretrained(te)
        path = os.path.join(te, "model.safetensors")
        with safe_open(path, "pt") as f:
            keys, meta = list(f.keys()), f.metadata()
        if not any(k.startswith("text_model.") for k in keys):
            # transformers 5 drops "text_model." for a fresh CLIPTextModel; hub checkpoints have it.
            tensors = load_file(path)
            save_file({"text_model." + k: v for k, v in tensors.items()}, path, metadata=meta)
        save_clip_tokenizer(os.path.join(folder, "tokenizer"), pad_token="<|endoftext|>" if vitl else "!")
    elif comp == "prior":
        from diffusers import PriorTransformer

        model = PriorTransformer(**cfgs["prior"]).eval()
        randomize_(model, seed=9001)
        model.save_pretrained(folder, safe_serialization=True)
    elif comp == "prior_scheduler":
        from diffusers import DDPMScheduler

        # As diffusers' StableUnCLIPPipeline tests / our tiny bundle build the prior scheduler.
        DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample", num_train_timesteps=1000,
                      clip_sample=True, clip_sample_range=5.0).save_pretrained(folder)
    elif comp == "unet":
        from diffusers import UNet2DConditionModel

        torch.manual_seed(9101)
        model = UNet2DConditionModel(**cfgs["unet"]).eval()
        randomize_(model, seed=9101)
        model.save_pretrained(folder, safe_serialization=True)
    elif comp == "vae":
        from diffusers import AutoencoderKL

        torch.manual_seed(9102)
        model = AutoencoderKL(**cfgs["vae"]).eval()
        randomize_(model, seed=9102, overrides={"decoder.conv_out.weight": 0.4})
        model.save_pretrained(folder, safe_serialization=True)
    elif comp == "pipeline":
        _build_bundle(cfgs, base, folder)
    else:
        raise ValueError(comp)
    model = None
    gc.collect()
    open(os.path.join(folder, ".done"), "w").close()
    print(f"built {comp} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)


def _build_bundle(cfgs, base, folder):
    """A StableUnCLIPPipeline folder whose big components are symlinks to the item folders."""
    from diffusers import DDIMScheduler, DDPMScheduler
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from fixture_common import randomize_

    links = {"prior_text_encoder": "../clip-vitl/text_encoder", "prior_tokenizer": "../clip-vitl/tokenizer",
             "prior": "../prior", "prior_scheduler": "../prior_scheduler", "text_encoder": "../clip-h/text_encoder",
             "tokenizer": "../clip-h/tokenizer", "unet": "../unet", "vae": "../vae"}
    for name, target in links.items():
        path = os.path.join(folder, name)
        if not os.path.lexists(path):
            os.symlink(target, path)
    norm = StableUnCLIPImageNormalizer(embedding_dim=cfgs["prior"]["embedding_dim"])
    randomize_(norm, seed=9201)
    norm.save_pretrained(os.path.join(folder, "image_normalizer"), safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").save_pretrained(
        os.path.join(folder, "image_noising_scheduler"))
    # stable-diffusion-2-1-unclip's scheduler: DDIM, v-prediction.
    DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                  prediction_type="v_prediction").save_pretrained(os.path.join(folder, "scheduler"))
    index = {"_class_name": "StableUnCLIPPipeline", "_diffusers_version": "0.42.1",
             "image_noising_scheduler": ["diffusers", "DDPMScheduler"],
             "image_normalizer": ["stable_diffusion", "StableUnCLIPImageNormalizer"],
             "prior": ["diffusers", "PriorTransformer"], "prior_scheduler": ["diffusers", "DDPMScheduler"],
             "prior_text_encoder": ["transformers", "CLIPTextModelWithProjection"],
             "prior_tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)


def _inputs(name, cfgs, mode):
    """Input tensors of an item (seeded), as saved in inputs/<name>.safetensors; None if it has none."""
    import torch

    if name == "sgemm" or name.startswith("pipeline"):
        return None  # the pipeline makes its own inputs from the prompt and seed
    g = torch.Generator().manual_seed(9300 + ALL_ITEMS.index(name))
    if name in ("clip-vitl", "clip-h"):
        # Two full-length prompts' worth of ids: <start> 75 word tokens <end> (no padding; cost is the same).
        ids = torch.randint(400, 40000, (2, SEQ), generator=g, dtype=torch.int64)
        ids[:, 0], ids[:, -1] = 49406, 49407
        return {"input_ids": ids}
    if name in ("prior-step", "prior-25"):
        d, n = cfgs["prior"]["embedding_dim"], cfgs["prior"]["num_embeddings"]
        mask = torch.zeros(2, n, dtype=torch.int64)
        mask[0, :2] = 1  # "" -> <start> <end>
        mask[1, :14] = 1
        return {"hidden_states": torch.randn(2, d, generator=g),
                "timestep": torch.tensor([999, 999], dtype=torch.int64),
                "proj_embedding": torch.randn(2, d, generator=g),
                "encoder_hidden_states": torch.randn(2, n, d, generator=g),
                "attention_mask": mask}
    kind, tag = name.rsplit("-", 1)
    lat = SIZES[mode].get(tag, 0) // 8
    if kind == "unet":
        return {"sample": torch.randn(2, 4, lat, lat, generator=g),
                "timestep": torch.tensor([999], dtype=torch.int64),
                "encoder_hidden_states": torch.randn(2, SEQ, cfgs["unet"]["cross_attention_dim"], generator=g),
                "class_labels": torch.randn(2, cfgs["unet"]["projection_class_embeddings_input_dim"], generator=g)}
    if kind == "vae":
        return {"latents": torch.randn(1, 4, lat, lat, generator=g) / cfgs["vae"]["scaling_factor"]}
    return None


def prepare(args):
    from safetensors.torch import save_file

    mode = "quick" if args.quick else "full"
    cfgs = QUICK if args.quick else FULL
    base = os.path.join(args.work, mode)
    os.makedirs(os.path.join(base, "inputs"), exist_ok=True)
    path = os.path.join(base, "manifest.json")
    manifest = json.load(open(path)) if os.path.exists(path) else {"mode": mode, "items": {}}
    manifest["configs"] = cfgs
    manifest["flops_counted"] = ("2 per multiply-add of convolutions, linear layers and attention products "
                                 "(QK^T, PV); norms, activations, softmax, element-wise ops not counted")
    for name in _items(args.items, sgemm_first=True):
        for comp in NEEDS[name]:
            _build_component(comp, cfgs, base)
        x = _inputs(name, cfgs, mode)
        inputs = None
        if x is not None:
            inputs = os.path.join(base, "inputs", f"{name}.safetensors")
            save_file(x, inputs)
        entry = {"flops": item_flops(name, cfgs, mode), "inputs": inputs}
        if name.startswith(("unet", "vae", "pipeline")):
            entry["size"] = SIZES[mode][name.rsplit("-", 1)[1]]
        if name == "prior-25":
            entry["steps"] = PRIOR_STEPS
        if name.startswith("pipeline"):
            entry["prior_steps"], entry["decoder_steps"] = PIPELINE_STEPS
        entry["folders"] = {c: os.path.join(base, c) for c in NEEDS[name]}
        manifest["items"][name] = entry
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"manifest: {path}")


# ------------------------------------------------------------------------------------------------
# check-flops: analytic counts vs torch.utils.flop_counter on the meta device
# ------------------------------------------------------------------------------------------------


def check_flops(args):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    mode = "quick" if args.quick else "full"
    cfgs = QUICK if args.quick else FULL
    bad = 0
    for name in _items(args.items):
        if name == "sgemm" or name.startswith("pipeline"):
            continue  # the pipeline is the sum of the components checked here
        model, fwd = _model_and_forward(name, cfgs, mode, meta=True)
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            fwd()
        measured = counter.get_total_flops()
        ours = item_flops(name, cfgs, mode)
        ok = measured == ours
        bad += not ok
        print(f"{name:12s} analytic {ours:.6e}  flop_counter {measured:.6e}  {'OK' if ok else 'MISMATCH'}")
        del model
    sys.exit(1 if bad else 0)


def _model_and_forward(name, cfgs, mode, meta=False, base=None):
    """(model, forward closure) for a component item; meta=True builds it on the meta device from the config."""
    import torch

    x = _inputs(name, cfgs, mode)

    def make(cls_build, load):
        """The model: built from the config on the meta device, or loaded from its folder."""
        if meta:
            with torch.device("meta"):
                return cls_build().eval()
        return load().eval()

    if meta:
        x = {k: v.to("meta") if v.dtype.is_floating_point else v for k, v in x.items()}
    else:
        from safetensors.torch import load_file

        x = load_file(os.path.join(base, "inputs", f"{name}.safetensors"))
    if name in ("clip-vitl", "clip-h"):
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if name == "clip-vitl" else CLIPTextModel
        key = name.replace("-", "_")
        model = make(lambda: cls(CLIPTextConfig(**cfgs[key])),
                     lambda: cls.from_pretrained(os.path.join(base, name, "text_encoder")))
        ids = x["input_ids"] if not meta else x["input_ids"].to("meta")
        return model, lambda: model(input_ids=ids)
    if name.startswith("prior"):
        from diffusers import PriorTransformer

        model = make(lambda: PriorTransformer(**cfgs["prior"]),
                     lambda: PriorTransformer.from_pretrained(os.path.join(base, "prior")))
        mask = x["attention_mask"].bool()
        if meta:
            mask = mask.to("meta")
        timestep = x["timestep"].to("meta") if meta else x["timestep"]

        def step(hidden, t=timestep):
            return model(hidden, timestep=t, proj_embedding=x["proj_embedding"],
                         encoder_hidden_states=x["encoder_hidden_states"], attention_mask=mask).predicted_image_embedding

        if name == "prior-step" or meta:
            if meta and name == "prior-25":
                return model, lambda: [step(x["hidden_states"]) for _ in range(PRIOR_STEPS)]
            return model, lambda: step(x["hidden_states"])
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler.from_pretrained(os.path.join(base, "prior_scheduler"))

        def loop():
            # StableUnCLIPPipeline's prior loop, one candidate, guidance 4.
            scheduler.set_timesteps(PRIOR_STEPS)
            gen = torch.Generator().manual_seed(0)
            latents = torch.randn(1, x["hidden_states"].shape[1], generator=gen) * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                latent_in = scheduler.scale_model_input(torch.cat([latents] * 2), t)
                out = model(latent_in, timestep=t, proj_embedding=x["proj_embedding"],
                            encoder_hidden_states=x["encoder_hidden_states"], attention_mask=mask).predicted_image_embedding
                uncond, cond = out.chunk(2)
                out = uncond + 4.0 * (cond - uncond)
                latents = scheduler.step(out, timestep=t, sample=latents, generator=gen).prev_sample
            return model.post_process_latents(latents)

        return model, loop
    if name.startswith("unet"):
        from diffusers import UNet2DConditionModel

        model = make(lambda: UNet2DConditionModel(**cfgs["unet"]),
                     lambda: UNet2DConditionModel.from_pretrained(os.path.join(base, "unet")))
        t = x["timestep"].to("meta") if meta else x["timestep"]
        return model, lambda: model(x["sample"], t, encoder_hidden_states=x["encoder_hidden_states"],
                                    class_labels=x["class_labels"]).sample
    if name.startswith("vae"):
        from diffusers import AutoencoderKL

        model = make(lambda: AutoencoderKL(**cfgs["vae"]),
                     lambda: AutoencoderKL.from_pretrained(os.path.join(base, "vae")))
        return model, lambda: model.decode(x["latents"]).sample
    raise ValueError(name)


# ------------------------------------------------------------------------------------------------
# run: one child process per item and precision
# ------------------------------------------------------------------------------------------------


def vmhwm_bytes():
    """This process's peak resident set (VmHWM). Not ru_maxrss: that keeps the pre-exec parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _child(args):
    import torch

    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    cfgs = QUICK if args.quick else FULL
    base = os.path.join(args.work, mode)
    name = args.name
    result = {"item": name, "side": "diffusers", "precision": args.precision, "threads": args.threads,
              "torch_threads": torch.get_num_threads(), "mode": mode}
    with torch.inference_mode():
        t0 = time.perf_counter()
        if name == "sgemm":
            g = torch.Generator().manual_seed(0)
            a, b = torch.randn(2048, 2048, generator=g), torch.randn(2048, 2048, generator=g)
            if args.precision == "bf16":
                a, b = a.bfloat16(), b.bfloat16()
            fwd = lambda: torch.mm(a, b)  # noqa: E731
        elif name.startswith("pipeline"):
            from diffusers import StableUnCLIPPipeline

            pipe = StableUnCLIPPipeline.from_pretrained(os.path.join(base, "pipeline"))
            pipe.set_progress_bar_config(disable=True)
            size = SIZES[mode][name.rsplit("-", 1)[1]]

            def fwd():
                return pipe("a photo of an astronaut riding a horse on mars", height=size, width=size,
                            num_inference_steps=PIPELINE_STEPS[1], prior_num_inference_steps=PIPELINE_STEPS[0],
                            generator=torch.Generator().manual_seed(0), output_type="np").images
        else:
            _, fwd = _model_and_forward(name, cfgs, mode, base=base)
        result["load_seconds"] = time.perf_counter() - t0

        def call():
            if args.precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return fwd()
            return fwd()

        for _ in range(args.warmup):
            call()
        times = []
        for _ in range(max(1, args.runs)):
            s = time.perf_counter()
            call()
            times.append(time.perf_counter() - s)
    # sgemm reports the best run (the machine's peak); everything else the median.
    result["times"] = times
    result["seconds"] = min(times) if name == "sgemm" else statistics.median(times)
    result["peak_rss_bytes"] = vmhwm_bytes()
    print(json.dumps(result))


def _pinned(cmd, threads):
    """Run on the first `threads` cores only, so neither side can use more than it is told."""
    if threads < (os.cpu_count() or threads):
        return ["taskset", "-c", f"0-{threads - 1}", *cmd]
    return cmd


def run(args):
    mode = "quick" if args.quick else "full"
    base = os.path.join(args.work, mode)
    manifest_path = os.path.join(base, "manifest.json")
    if not os.path.exists(manifest_path):
        sys.exit(f"{manifest_path} not found: run `bench_peer.py prepare{' --quick' if args.quick else ''}` first")
    manifest = json.load(open(manifest_path))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    rows, peak = [], {}
    for name in _items(args.items, sgemm_first=True):
        if name not in manifest["items"]:
            sys.exit(f"item {name} is not prepared in {manifest_path}: run prepare --items {name}")
        for precision in args.precisions.split(","):
            runs = 3 if name == "sgemm" else args.runs
            cmd = [sys.executable, os.path.abspath(__file__), "child", "--work", args.work, "--name", name,
                   "--precision", precision, "--threads", str(args.threads), "--runs", str(runs),
                   "--warmup", str(1 if name == "sgemm" else args.warmup)] + (["--quick"] if args.quick else [])
            proc = subprocess.run(_pinned(cmd, args.threads), capture_output=True, text=True, env=env, cwd=ROOT)
            line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
            if proc.returncode != 0 or line is None:
                print(f"{name} {precision}: child failed ({proc.returncode})\n{proc.stderr[-3000:]}", file=sys.stderr)
                rows.append({"item": name, "side": "diffusers", "precision": precision, "threads": args.threads,
                             "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"})
                continue
            r = json.loads(line)
            r["flops"] = manifest["items"][name]["flops"]
            r["gflops"] = r["flops"] / r["seconds"] / 1e9
            if name == "sgemm":
                peak[precision] = r["gflops"]
            elif precision in peak:
                r["peak_share"] = r["gflops"] / peak[precision]
            rows.append(r)
            share = f"{100 * r['peak_share']:5.1f}% of mm peak" if "peak_share" in r else ""
            print(f"{name:13s} {precision:5s} {r['seconds']:9.4f} s {r['gflops']:8.1f} GFLOP/s {share:18s} "
                  f"peak RSS {r['peak_rss_bytes'] / 2**20:7.0f} MiB  (load {r['load_seconds']:.1f} s)", flush=True)
    out = {"side": "diffusers", "mode": mode, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
           "cpu": _cpu_name(), "torch": _version("torch"), "diffusers": _version("diffusers"),
           "transformers": _version("transformers"), "peak_gflops": peak, "rows": rows}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"results: {args.json}")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(pkg):
    try:
        from importlib.metadata import version

        return version(pkg)
    except Exception:  # noqa: BLE001
        return None


def _items(spec, sgemm_first=False):
    names = ALL_ITEMS if spec in (None, "", "all") else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in ALL_ITEMS]
    if unknown:
        sys.exit(f"unknown item(s) {unknown}; known: {', '.join(ALL_ITEMS)}")
    if sgemm_first and "sgemm" not in names:
        names = ["sgemm"] + names  # the share-of-peak column needs the peak of the same run
    return names


def prepare_fp16(args):
    """fp16 copies of every weight file the pipeline uses, named as diffusers' fp16 variant."""
    import torch
    from safetensors.torch import load_file, save_file

    base = os.path.join(args.work, "quick" if args.quick else "full")
    for comp in ("clip-vitl/text_encoder", "clip-h/text_encoder", "prior", "unet", "vae", "pipeline/image_normalizer"):
        folder = os.path.join(base, comp)
        for fname in sorted(os.listdir(folder)):
            if not fname.endswith(".safetensors") or ".fp16." in fname:
                continue
            out = os.path.join(folder, fname.replace(".safetensors", ".fp16.safetensors"))
            if os.path.exists(out):
                continue
            tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(os.path.join(folder, fname)).items()}
            save_file(tensors, out + ".tmp", metadata={"format": "pt"})
            os.replace(out + ".tmp", out)
            del tensors
            gc.collect()
            print(f"wrote {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("prepare", "prepare-fp16", "run", "check-flops", "child"):
        p = sub.add_parser(name)
        p.add_argument("--work", default=DEFAULT_WORK, help=f"weights and inputs folder (default {DEFAULT_WORK})")
        p.add_argument("--quick", action="store_true", help="tiny architectures and sizes (smoke test)")
        p.add_argument("--items", default=None, help="comma list (default: all): " + ",".join(ALL_ITEMS))
        if name in ("run", "child"):
            p.add_argument("--threads", type=int, default=2)
            p.add_argument("--runs", type=int, default=3, help="timed runs per item (median reported)")
            p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
        if name == "run":
            p.add_argument("--precisions", default="fp32,bf16", help="comma list from fp32, bf16 (autocast)")
            p.add_argument("--json", default=None, help="write results here")
        if name == "child":
            p.add_argument("--name", required=True)
            p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = ap.parse_args()
    {"prepare": prepare, "prepare-fp16": prepare_fp16, "run": run, "check-flops": check_flops, "child": _child}[args.cmd](args)


if __name__ == "__main__":
    main()
