"""Train the small unCLIP of the "shapes" world (notebooks-export/shapes_world.py) and export weights/shapes.

Run from the repository root with venv/bin/python (torch CPU, diffusers 0.42.1, transformers 5.23.0):
  python notebooks-export/train_shapes.py clip  [--steps N]   contrastive CLIP pair (text + vision towers)
  python notebooks-export/train_shapes.py vae   [--steps N]   AutoencoderKL, 32x32x3 <-> 8x8x4
  python notebooks-export/train_shapes.py vaedec [--steps N]  fine-tune the VAE decoder only (encoder frozen)
  python notebooks-export/train_shapes.py prior [--steps N]   PriorTransformer on the frozen CLIP's embeddings
  python notebooks-export/train_shapes.py unet  [--steps N]   UNet2DConditionModel decoder on VAE latents
  python notebooks-export/train_shapes.py unetft [--steps N]  fine-tune it: plain v-loss, more high-noise steps
  python notebooks-export/train_shapes.py export              weights/shapes (fp16 safetensors)
  python notebooks-export/train_shapes.py bench               seconds per training step of each model

Every stage is seeded and resumable: checkpoints, logs and caches go to $SHAPES_WORK (default
/work/shapes-work, outside the repository); re-running a stage continues from its last checkpoint.
Each stage appends its numbers to $SHAPES_WORK/report.json; `export` writes
notebooks-export/shapes_training_report.md from it. Uses 2 threads (the machine is shared; run under nice).

What is trained, following the unCLIP / Stable unCLIP recipe:
  - CLIP: CLIPTextModelWithProjection (real 49408-token CLIP BPE vocabulary, weights/clip-tokenizer) and
    CLIPVisionModelWithProjection, symmetric contrastive loss; because captions may omit attributes, the
    targets are "multi-positive": every image in the batch that satisfies a caption counts as its match.
    The same text tower is shipped twice: as prior_text_encoder (with projection) and as the decoder's
    text_encoder (CLIPTextModel, same weights).
  - VAE: AutoencoderKL, MSE reconstruction + 1e-6 KL; scaling_factor = 1 / std of the latents.
  - Prior: PriorTransformer predicting the (normalised) CLIP image embedding (prediction_type "sample",
    DDPM squaredcos_cap_v2, as diffusers' StableUnCLIPPipeline runs it), conditioned on the text embedding
    and the 77 text hidden states; 10% of captions replaced by "" for classifier-free guidance.
  - Decoder: UNet2DConditionModel, class_embed_type "projection" fed with the noise-augmented image
    embedding concatenated with the noise level's sinusoidal embedding (StableUnCLIPPipeline's
    noise_image_embeddings), text hidden states by cross-attention; image conditioning zeroed for 10% of
    the batch (the pipeline's negative is all zeros), captions replaced by "" for 50%. v-prediction,
    squaredcos_cap_v2 betas, min-SNR-5 weighting, EMA of the weights.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_world as W  # noqa: E402

torch.set_num_threads(int(os.environ.get("SHAPES_THREADS", "2")))  # 1 when two stages run side by side
WORK = os.environ.get("SHAPES_WORK", "/work/shapes-work")
TOKENIZER_DIR = "weights/clip-tokenizer"
OUT_DIR = os.environ.get("SHAPES_OUT", "weights/shapes")
REPORT_MD = "notebooks-export/shapes_training_report.md"

# ---- sizes -----------------------------------------------------------------------------------------
EMBED = 64  # CLIP projection dim = image embedding width = prior embedding_dim
TEXT_WIDTH = 64  # text tower hidden size = UNet cross_attention_dim
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # OPENAI_CLIP_MEAN / STD (CLIPImageProcessor defaults)
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def text_config():
    from transformers import CLIPTextConfig
    # eos_token_id 2 = the legacy setting of the published CLIP configs: pooled output at argmax(input_ids).
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=EMBED,
        layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )


def vision_config():
    from transformers import CLIPVisionConfig
    return CLIPVisionConfig(
        hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=4, num_channels=3, projection_dim=EMBED, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )


def make_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=1.0,
    )


def make_prior():
    from diffusers import PriorTransformer
    return PriorTransformer(
        num_attention_heads=4, attention_head_dim=16, num_layers=3, embedding_dim=EMBED, num_embeddings=77,
        additional_embeddings=4, dropout=0.0,
    )


def make_unet():
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        # SD2 convention: with num_attention_heads unset, attention_head_dim is the NUMBER of heads.
        attention_head_dim=(1, 2, 2),  # 32-wide heads
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * EMBED,
        norm_num_groups=8, use_linear_projection=True, act_fn="silu",
    )


def decoder_scheduler_config():
    return dict(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
        clip_sample=False, set_alpha_to_one=False, steps_offset=0, timestep_spacing="trailing",
    )


# ---- data ------------------------------------------------------------------------------------------
class Pool:
    """Every distinct image of the world: 3 shapes x 6 colours x 2 sizes x 5 positions x 4 backgrounds
    x 9 jitters = 6480, with integer attribute codes; training batches draw from it uniformly, which is
    the world's own (uniform, independent) distribution."""

    def __init__(self):
        rows, imgs = [], []
        for sh in range(3):
            for co in range(6):
                for si in range(2):
                    for po in range(5):
                        for bg in range(4):
                            for dx in (-1, 0, 1):
                                for dy in (-1, 0, 1):
                                    attrs = {"shape": W.SHAPES[sh], "colour": W.COLOUR_NAMES[co],
                                             "size": W.SIZE_NAMES[si], "position": W.POSITION_NAMES[po],
                                             "background": W.BACKGROUND_NAMES[bg], "dx": dx, "dy": dy}
                                    imgs.append(W.render(attrs))
                                    rows.append((si, co, sh, po, bg))
        self.codes = torch.tensor(rows, dtype=torch.long)  # columns: size, colour, shape, position, bg
        self.images = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,32,32
        self.n = len(rows)

    def pixels_m11(self, idx):
        """Images in [-1, 1] (VAE input)."""
        return self.images[idx].float() / 127.5 - 1.0

    def pixels_clip(self, idx):
        """CLIPImageProcessor's output for 32x32 inputs (resize to 32 and crop 32 are the identity):
        (x / 255 - mean) / std."""
        x = self.images[idx].float() / 255.0
        return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


# Caption index in W.all_captions(): each optional attribute coded 0 = not stated, else value + 1.
CAPTION_RADIX = (3, 7, 3, 6, 5)  # size, colour, shape (always stated: 0..2), position, background
UNCOND = 1890  # index of the empty caption "" appended after the 1890 grammar captions


def caption_index(codes, stated):
    """codes: (B, 5) attribute codes; stated: (B, 5) bool (shape column ignored) -> (B,) caption indices."""
    c = codes.clone()
    for j in (0, 1, 3, 4):
        c[:, j] = torch.where(stated[:, j], codes[:, j] + 1, torch.zeros_like(codes[:, j]))
    idx = torch.zeros(len(codes), dtype=torch.long)
    for j, r in enumerate(CAPTION_RADIX):
        idx = idx * r + c[:, j]
    return idx


def random_stated(g, b, p=0.5):
    s = torch.rand(b, 5, generator=g) < p
    s[:, 2] = True
    return s


def tokenize_all():
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    caps = W.all_captions() + [""]
    enc = tok(caps, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    return caps, enc.input_ids, enc.attention_mask


def stated_codes_of_captions():
    """(1891, 5) attribute code per caption, -1 where the caption does not state it (all -1 for "")."""
    out = []
    for cap in W.all_captions():
        p = W.parse_caption(cap)
        out.append((W.SIZE_NAMES.index(p["size"]) if "size" in p else -1,
                    W.COLOUR_NAMES.index(p["colour"]) if "colour" in p else -1,
                    W.SHAPES.index(p["shape"]),
                    W.POSITION_NAMES.index(p["position"]) if "position" in p else -1,
                    W.BACKGROUND_NAMES.index(p["background"]) if "background" in p else -1))
    out.append((-1,) * 5)
    return torch.tensor(out)


# ---- bookkeeping -----------------------------------------------------------------------------------
def log(stage, msg):
    line = f"[{time.strftime('%H:%M:%S')}] {stage}: {msg}"
    print(line, flush=True)
    with open(os.path.join(WORK, f"{stage}.log"), "a") as f:
        f.write(line + "\n")


def report_update(stage, **kw):
    path = os.path.join(WORK, "report.json")
    rep = json.load(open(path)) if os.path.exists(path) else {}
    rep.setdefault(stage, {}).update(kw)
    json.dump(rep, open(path, "w"), indent=2)


def save_ckpt(stage, state):
    path = os.path.join(WORK, f"{stage}.pt")
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_ckpt(stage):
    path = os.path.join(WORK, f"{stage}.pt")
    return torch.load(path, weights_only=False) if os.path.exists(path) else None


def lr_at(step, total, peak, warmup=100):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class EMA:
    def __init__(self, model, decay):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
            else:
                self.shadow[k].copy_(v)


def train_loop(stage, model_params, step_fn, total, peak_lr, extra_state=None, ema=None, ema_model=None,
               ckpt_every=100, log_every=25, wd=0.0):
    """Generic resumable AdamW loop. step_fn(step, g) -> loss tensor; extra_state: dict of objects with
    state_dict()/load_state_dict() to checkpoint alongside."""
    params = [p for p in model_params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=peak_lr, weight_decay=wd)
    g = torch.Generator().manual_seed(1234)
    start, elapsed, hist = 0, 0.0, []
    ck = load_ckpt(stage)
    if ck is not None:
        for name, obj in (extra_state or {}).items():
            obj.load_state_dict(ck[name])
        opt.load_state_dict(ck["opt"])
        g.set_state(ck["gen"])
        start, elapsed, hist = ck["step"], ck["elapsed"], ck["hist"]
        if ema is not None:
            ema.shadow = ck["ema"]
        log(stage, f"resumed at step {start} ({elapsed:.0f} s so far)")

    def checkpoint(step):
        state = {name: obj.state_dict() for name, obj in (extra_state or {}).items()}
        state.update(opt=opt.state_dict(), gen=g.get_state(), step=step, elapsed=elapsed, hist=hist)
        if ema is not None:
            state["ema"] = ema.shadow
        save_ckpt(stage, state)

    t0 = time.time()
    run = []
    for step in range(start, total):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, peak_lr)
        loss = step_fn(step, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            ema.update(ema_model)
        run.append(loss.item())
        now = time.time()
        elapsed += now - t0
        t0 = now
        if (step + 1) % log_every == 0:
            hist.append((step + 1, float(np.mean(run))))
            log(stage, f"step {step + 1}/{total} loss {np.mean(run):.5f} lr {opt.param_groups[0]['lr']:.2e} "
                       f"{elapsed:.0f} s")
            run = []
        if (step + 1) % ckpt_every == 0 or step + 1 == total:
            checkpoint(step + 1)
    return elapsed, hist



# ---- stage: clip -----------------------------------------------------------------------------------
class CLIPPair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection
        torch.manual_seed(0)
        self.text = CLIPTextModelWithProjection(text_config())
        self.vision = CLIPVisionModelWithProjection(vision_config())
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))


def stage_clip(steps):
    pool = Pool()
    caps, ids, _ = tokenize_all()
    ids16 = ids[:, :16]  # captions are <= 16 tokens; causal attention makes the EOS state independent of padding
    assert (ids[:, 16:] == 49407).all()
    cap_codes = stated_codes_of_captions()
    model = CLIPPair()
    B = 128

    def step_fn(step, g):
        idx = torch.randint(pool.n, (B,), generator=g)
        codes = pool.codes[idx]
        cidx = caption_index(codes, random_stated(g, B))
        cc = cap_codes[cidx]  # (B, 5), -1 = unstated
        # match[i, j]: image j satisfies caption i
        match = ((cc[:, None, :] == codes[None, :, :]) | (cc[:, None, :] < 0)).all(-1).float()
        t = model.text(input_ids=ids16[cidx]).text_embeds
        v = model.vision(pixel_values=pool.pixels_clip(idx)).image_embeds
        # Keep the raw (un-normalised) embeddings near unit norm: the decoder and prior see raw embeddings.
        norm_pen = ((t.norm(dim=-1) - 1) ** 2).mean() + ((v.norm(dim=-1) - 1) ** 2).mean()
        tn, vn = F.normalize(t, dim=-1), F.normalize(v, dim=-1)
        logits = model.logit_scale.clamp(max=math.log(100)).exp() * tn @ vn.T
        loss_t = -(match / match.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
        loss_i = -(match.T / match.T.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
        return (loss_t + loss_i) / 2 + 0.1 * norm_pen

    elapsed, hist = train_loop("clip", model.parameters(), step_fn, steps, 1e-3, extra_state={"model": model},
                               ckpt_every=200, wd=0.01)
    acc = eval_clip(model, pool, ids)
    log("clip", f"done: {elapsed:.0f} s, zero-shot attribute accuracy {acc}")
    report_update("clip", steps=steps, batch=B, seconds=round(elapsed), final_loss=hist[-1][1] if hist else None,
                  zero_shot_accuracy=acc, params_text=sum(p.numel() for p in model.text.parameters()),
                  params_vision=sum(p.numel() for p in model.vision.parameters()))


@torch.no_grad()
def eval_clip(model, pool, ids):
    """Zero-shot retrieval: for every 7th pool image, the best of the 720 fully specified captions;
    accuracy of each attribute of that caption."""
    model.eval()
    full = [i for i, c in enumerate(W.all_captions()) if len(W.parse_caption(c)) == 5]
    t = F.normalize(model.text(input_ids=ids[full, :16]).text_embeds, dim=-1)
    cap_codes = stated_codes_of_captions()[full]
    idx = torch.arange(0, pool.n, 7)
    v = F.normalize(model.vision(pixel_values=pool.pixels_clip(idx)).image_embeds, dim=-1)
    best = (v @ t.T).argmax(1)
    pred = cap_codes[best]
    acc = {name: round(float((pred[:, j] == pool.codes[idx, j]).float().mean()), 4)
           for j, name in enumerate(("size", "colour", "shape", "position", "background"))}
    model.train()
    return acc


# The contrastive loss ignores the embeddings' scale, and the norm penalty leaves image embeddings of norm ~1
# (per-dimension std ~0.12). unCLIP's decoder and prior see the RAW embedding, and at that scale the UNet's
# class-embedding projection learned slowly; the shipped image tower therefore outputs 8x the trained
# projection (cosine similarities, hence CLIP's behaviour, unchanged; the prior works in its normalised space).
IMAGE_EMBED_SCALE = 8.0


def load_clip():
    model = CLIPPair()
    ck = load_ckpt("clip")
    assert ck is not None, "train the clip stage first"
    model.load_state_dict(ck["model"])
    with torch.no_grad():
        model.vision.visual_projection.weight.mul_(IMAGE_EMBED_SCALE)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def clip_cache():
    """Frozen-CLIP features, cached: text embeds / hidden states / masks of all captions, image embeds of the pool."""
    path = os.path.join(WORK, "clip_cache.pt")
    if os.path.exists(path):
        return torch.load(path)
    model = load_clip()
    pool = Pool()
    caps, ids, mask = tokenize_all()
    out = model.text(input_ids=ids)
    img = torch.cat([model.vision(pixel_values=pool.pixels_clip(torch.arange(i, min(i + 512, pool.n)))).image_embeds
                     for i in range(0, pool.n, 512)])
    cache = {"text_embeds": out.text_embeds, "hidden": out.last_hidden_state, "mask": mask.bool(),
             "image_embeds": img, "mean": img.mean(0), "std": img.std(0)}
    torch.save(cache, path)
    return cache


# ---- stage: vae ------------------------------------------------------------------------------------
def stage_vae(steps):
    pool = Pool()
    torch.manual_seed(1)
    vae = make_vae()
    B = 32

    def step_fn(step, g):
        x = pool.pixels_m11(torch.randint(pool.n, (B,), generator=g))
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / (3 * 32 * 32)
        return F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x) + 1e-4 * kl

    elapsed, hist = train_loop("vae", vae.parameters(), step_fn, steps, 1e-3, extra_state={"model": vae},
                               ckpt_every=100)
    vae.eval()
    with torch.no_grad():
        zs, errs = [], []
        for i in range(0, pool.n, 512):
            idx = torch.arange(i, min(i + 512, pool.n))
            x = pool.pixels_m11(idx)
            z = vae.encode(x).latent_dist.mean
            zs.append(z)
            rec = vae.decode(z).sample.clamp(-1, 1)
            errs.append(((rec - x).abs() * 127.5).amax(1).flatten(1))  # per-pixel max channel error (0..255)
        z = torch.cat(zs)
        err = torch.cat(errs)
    scale = float(1.0 / z.std())
    stats = {"latent_std": float(z.std()), "scaling_factor": scale,
             "mean_abs_err_255": float(err.mean()), "frac_pixels_err_gt_32": float((err > 32).float().mean())}
    log("vae", f"done: {elapsed:.0f} s, {stats}")
    report_update("vae", steps=steps, batch=B, seconds=round(elapsed), final_loss=hist[-1][1] if hist else None,
                  params=sum(p.numel() for p in vae.parameters()), **stats)


def load_vae():
    """The trained VAE; with the decoder of the `vaedec` stage when that has run (same encoder, so the
    latents the UNet learned are unchanged)."""
    vae = make_vae()
    ck = load_ckpt("vae")
    assert ck is not None, "train the vae stage first"
    vae.load_state_dict(ck["model"])
    dec = load_ckpt("vaedec")
    if dec is not None:
        vae.load_state_dict(dec["model"])
    rep = json.load(open(os.path.join(WORK, "report.json")))
    vae.register_to_config(scaling_factor=rep["vae"]["scaling_factor"])
    vae.eval()
    return vae


@torch.no_grad()
def latent_cache():
    path = os.path.join(WORK, "latent_cache.pt")
    if os.path.exists(path):
        return torch.load(path)
    vae = load_vae()
    pool = Pool()
    z = torch.cat([vae.encode(pool.pixels_m11(torch.arange(i, min(i + 512, pool.n)))).latent_dist.mean
                   for i in range(0, pool.n, 512)]) * vae.config.scaling_factor
    torch.save(z, path)
    return z


def stage_vaedec(steps):
    """Fine-tune only the decoder (post_quant_conv + decoder) on the cached latents, sharper edges for small
    shapes; the encoder, hence the UNet's latent space, stays fixed. Latents get N(0, 0.1^2) noise (scaled
    units) so the decoder tolerates the UNet's small errors."""
    pool = Pool()
    z_all = latent_cache()  # scaled latents of the stage-1 encoder
    torch.manual_seed(4)
    vae = make_vae()
    vae.load_state_dict(load_ckpt("vae")["model"])
    scale = json.load(open(os.path.join(WORK, "report.json")))["vae"]["scaling_factor"]
    for p in vae.parameters():
        p.requires_grad_(False)
    trainable = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    for p in trainable:
        p.requires_grad_(True)
    B = 32

    def step_fn(step, g):
        idx = torch.randint(pool.n, (B,), generator=g)
        x = pool.pixels_m11(idx)
        z = z_all[idx] + 0.1 * torch.randn(z_all[idx].shape, generator=g)
        rec = vae.decode(z / scale).sample
        return F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)

    elapsed, hist = train_loop("vaedec", trainable, step_fn, steps, 3e-4, extra_state={"model": vae},
                               ckpt_every=100)
    vae.eval()
    with torch.no_grad():
        errs = []
        for i in range(0, pool.n, 512):
            idx = torch.arange(i, min(i + 512, pool.n))
            rec = vae.decode(z_all[idx] / scale).sample.clamp(-1, 1)
            errs.append(((rec - pool.pixels_m11(idx)).abs() * 127.5).amax(1).flatten(1))
        err = torch.cat(errs)
    stats = {"mean_abs_err_255": float(err.mean()), "frac_pixels_err_gt_32": float((err > 32).float().mean())}
    log("vaedec", f"done: {elapsed:.0f} s, {stats}")
    report_update("vaedec", steps=steps, batch=B, seconds=round(elapsed),
                  final_loss=hist[-1][1] if hist else None, **stats)


# ---- stage: prior ----------------------------------------------------------------------------------
def prior_scheduler():
    from diffusers import DDPMScheduler
    return DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample", num_train_timesteps=1000,
                         clip_sample=True, clip_sample_range=5.0)


def stage_prior(steps):
    pool = Pool()
    cc = clip_cache()
    torch.manual_seed(2)
    prior = make_prior()
    with torch.no_grad():
        prior.clip_mean.copy_(cc["mean"][None])
        prior.clip_std.copy_(cc["std"][None])
    prior.clip_mean.requires_grad_(False)
    prior.clip_std.requires_grad_(False)
    abar = prior_scheduler().alphas_cumprod
    x0_all = (cc["image_embeds"] - cc["mean"]) / cc["std"]
    B = 128

    def step_fn(step, g):
        idx = torch.randint(pool.n, (B,), generator=g)
        cidx = caption_index(pool.codes[idx], random_stated(g, B))
        cidx = torch.where(torch.rand(B, generator=g) < 0.1, torch.full_like(cidx, UNCOND), cidx)
        x0 = x0_all[idx]
        t = torch.randint(1000, (B,), generator=g)
        a = abar[t][:, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=g)
        pred = prior(xt, timestep=t, proj_embedding=cc["text_embeds"][cidx],
                     encoder_hidden_states=cc["hidden"][cidx], attention_mask=cc["mask"][cidx]).predicted_image_embedding
        return F.mse_loss(pred, x0)

    ema = EMA(prior, 0.995)
    elapsed, hist = train_loop("prior", prior.parameters(), step_fn, steps, 5e-4, extra_state={"model": prior},
                               ema=ema, ema_model=prior, ckpt_every=100)
    prior.load_state_dict(ema.shadow)
    acc = eval_prior(prior, cc, pool)
    log("prior", f"done: {elapsed:.0f} s, accuracy of nearest pool image to sampled embedding {acc}")
    report_update("prior", steps=steps, batch=B, seconds=round(elapsed), final_loss=hist[-1][1] if hist else None,
                  params=sum(p.numel() for p in prior.parameters()), nearest_image_accuracy=acc)


@torch.no_grad()
def sample_prior(prior, cc, cidx, g, steps=25, guidance=4.0):
    """StableUnCLIPPipeline's prior loop (DDPM, CFG with the "" caption), returning raw image embeddings."""
    sch = prior_scheduler()
    sch.set_timesteps(steps)
    b = len(cidx)
    lat = torch.randn(b, EMBED, generator=g)
    cond = torch.cat([torch.full_like(cidx, UNCOND), cidx])
    for t in sch.timesteps:
        pred = prior(torch.cat([lat, lat]), timestep=t, proj_embedding=cc["text_embeds"][cond],
                     encoder_hidden_states=cc["hidden"][cond], attention_mask=cc["mask"][cond]).predicted_image_embedding
        u, c = pred.chunk(2)
        lat = sch.step(u + guidance * (c - u), t, lat, generator=g).prev_sample
    return prior.post_process_latents(lat)


@torch.no_grad()
def eval_prior(prior, cc, pool, n=300):
    g = torch.Generator().manual_seed(99)
    idx = torch.randint(pool.n, (n,), generator=g)
    stated = random_stated(g, n)
    cidx = caption_index(pool.codes[idx], stated)
    emb = sample_prior(prior, cc, cidx, g)
    near = (F.normalize(emb, dim=-1) @ F.normalize(cc["image_embeds"], dim=-1).T).argmax(1)
    got = pool.codes[near]
    want = pool.codes[idx]
    acc = {}
    for j, name in enumerate(("size", "colour", "shape", "position", "background")):
        m = stated[:, j]
        acc[name] = round(float((got[m, j] == want[m, j]).float().mean()), 4)
    return acc


# ---- stage: unet -----------------------------------------------------------------------------------
def image_noising():
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")


def class_labels(emb, noise_level, mean, std, g):
    """StableUnCLIPPipeline.noise_image_embeddings, batched with per-example noise levels."""
    from diffusers.models.embeddings import get_timestep_embedding
    abar = image_noising().alphas_cumprod[noise_level][:, None]
    x = (emb - mean) / std
    x = abar.sqrt() * x + (1 - abar).sqrt() * torch.randn(x.shape, generator=g)
    x = x * std + mean
    lvl = get_timestep_embedding(noise_level, EMBED, flip_sin_to_cos=True, downscale_freq_shift=0)
    return torch.cat([x, lvl], 1)


def unet_step_fn(unet, weighting):
    """The decoder's training loss. weighting "min-snr-5": min(SNR, 5) / (SNR + 1) on the v-loss with uniform
    timesteps (the first run). "plain-high": the unweighted v-loss, a quarter of the batch drawn from t >= 850.
    min-SNR on v-prediction weights the noisiest steps by ~SNR -> 0, so the first sampling steps (where layout
    and colour are decided, v ~ -x0) were never trained to use the conditioning: position came out at chance."""
    pool = Pool()
    cc = clip_cache()
    z_all = latent_cache()
    from diffusers import DDIMScheduler
    abar = DDIMScheduler(**decoder_scheduler_config()).alphas_cumprod.clone()
    B = 64

    def step_fn(step, g):
        idx = torch.randint(pool.n, (B,), generator=g)
        cidx = caption_index(pool.codes[idx], random_stated(g, B))
        cidx = torch.where(torch.rand(B, generator=g) < 0.5, torch.full_like(cidx, UNCOND), cidx)
        # Noise augmentation of the image embedding: level 0 (the default at generation) half the time.
        lvl = torch.randint(1000, (B,), generator=g)
        lvl = torch.where(torch.rand(B, generator=g) < 0.5, torch.zeros_like(lvl), lvl)
        cl = class_labels(cc["image_embeds"][idx], lvl, cc["mean"], cc["std"], g)
        cl = torch.where((torch.rand(B, generator=g) < 0.1)[:, None], torch.zeros_like(cl), cl)
        x0 = z_all[idx]
        t = torch.randint(1000, (B,), generator=g)
        if weighting == "plain-high":
            t = torch.where(torch.rand(B, generator=g) < 0.25, torch.randint(850, 1000, (B,), generator=g), t)
        a = abar[t][:, None, None, None]
        eps = torch.randn(x0.shape, generator=g)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        pred = unet(xt, t, encoder_hidden_states=cc["hidden"][cidx], class_labels=cl).sample
        if weighting == "plain-high":
            return ((pred - v) ** 2).mean()
        snr = a / (1 - a)
        w = (snr.clamp(max=5.0) / (snr + 1)).flatten()  # min-SNR-5 for v-prediction
        return ((pred - v) ** 2).mean((1, 2, 3)).mul(w).mean()

    return step_fn, B


def stage_unet(steps):
    torch.manual_seed(3)
    unet = make_unet()
    step_fn, B = unet_step_fn(unet, "min-snr-5")
    ema = EMA(unet, 0.998)
    elapsed, hist = train_loop("unet", unet.parameters(), step_fn, steps, 1e-3, extra_state={"model": unet},
                               ema=ema, ema_model=unet, ckpt_every=50)
    log("unet", f"done: {elapsed:.0f} s")
    report_update("unet", steps=steps, batch=B, seconds=round(elapsed), final_loss=hist[-1][1] if hist else None,
                  params=sum(p.numel() for p in unet.parameters()))


def stage_unetft(steps):
    """Fine-tune the min-SNR UNet (the "unet" stage's EMA weights) with the plain v-loss and extra high-noise
    timesteps; export ships this checkpoint when it exists."""
    unet = make_unet()
    unet.load_state_dict(load_ckpt("unet")["ema"])
    step_fn, B = unet_step_fn(unet, "plain-high")
    ema = EMA(unet, 0.998)
    elapsed, hist = train_loop("unetft", unet.parameters(), step_fn, steps, 3e-4, extra_state={"model": unet},
                               ema=ema, ema_model=unet, ckpt_every=50)
    log("unetft", f"done: {elapsed:.0f} s")
    report_update("unetft", steps=steps, batch=B, seconds=round(elapsed),
                  final_loss=hist[-1][1] if hist else None, peak_lr=3e-4,
                  note="fine-tune of the unet stage's EMA: unweighted v-loss, 25% of timesteps from t >= 850")


# ---- stage: export ---------------------------------------------------------------------------------
def copy_tokenizer(dst):
    os.makedirs(dst, exist_ok=True)
    for f in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(TOKENIZER_DIR, f), os.path.join(dst, f))


def stage_export():
    from diffusers import DDIMScheduler, StableUnCLIPPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer

    clip = load_clip()
    cc = clip_cache()
    prior = make_prior()
    prior.load_state_dict(load_ckpt("prior")["ema"])
    with torch.no_grad():  # fixed (untrained) statistics of the image embeddings the prior models
        prior.clip_mean.copy_(cc["mean"][None])
        prior.clip_std.copy_(cc["std"][None])
    unet = make_unet()
    unet.load_state_dict((load_ckpt("unetft") or load_ckpt("unet"))["ema"])
    vae = load_vae()
    text_encoder = CLIPTextModel(text_config())
    # transformers 5's CLIPTextModel is the bare text transformer (its keys have no "text_model." prefix).
    text_encoder.load_state_dict(clip.text.text_model.state_dict())
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=EMBED)
    with torch.no_grad():
        normalizer.mean.copy_(cc["mean"][None])
        normalizer.std.copy_(cc["std"][None])

    tmp_tok = os.path.join(WORK, "tok")
    copy_tokenizer(tmp_tok)
    tok = CLIPTokenizer.from_pretrained(tmp_tok)
    pipe = StableUnCLIPPipeline(
        prior_tokenizer=tok, prior_text_encoder=clip.text, prior=prior, prior_scheduler=prior_scheduler(),
        image_normalizer=normalizer, image_noising_scheduler=image_noising(), tokenizer=tok,
        text_encoder=text_encoder, unet=unet, scheduler=DDIMScheduler(**decoder_scheduler_config()), vae=vae,
    )
    pipe.to(torch.float16)
    if os.path.exists(OUT_DIR):
        for name in os.listdir(OUT_DIR):
            if name not in ("README.md", "unclip.json"):  # the model card and recommended settings are hand-written
                p = os.path.join(OUT_DIR, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    pipe.save_pretrained(OUT_DIR, safe_serialization=True)
    for sub in ("prior_tokenizer", "tokenizer"):  # the vocab.json + merges.txt layout, not tokenizer.json
        shutil.rmtree(os.path.join(OUT_DIR, sub))
        copy_tokenizer(os.path.join(OUT_DIR, sub))
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True, do_resize=True,
        resample=3, do_rescale=True, do_normalize=True, do_convert_rgb=True, image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    ).save_pretrained(os.path.join(OUT_DIR, "feature_extractor"))
    clip.vision.to(torch.float16).save_pretrained(os.path.join(OUT_DIR, "image_encoder"), safe_serialization=True)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT_DIR) for f in fs)
    log("export", f"wrote {OUT_DIR}: {total / 2**20:.2f} MiB")
    report_update("export", folder_mib=round(total / 2**20, 2))
    write_report()


def write_report():
    rep = json.load(open(os.path.join(WORK, "report.json")))
    lines = ["# Shapes unCLIP: training report", "",
             "Written by `notebooks-export/train_shapes.py export` from the numbers each stage logged.",
             "Hardware: 2 CPU cores shared with other jobs (torch CPU, 1 thread per stage when two ran side by side, "
             "else 2; nice 19), no GPU.", ""]
    for stage in [k for k in rep if k != "wall_clock"]:
        if stage in rep:
            lines.append(f"## {stage}")
            lines += [f"- {k}: {v}" for k, v in rep[stage].items()]
            lines.append("")
    if "wall_clock" in rep:
        lines += ["## wall clock", rep["wall_clock"], ""]
    open(REPORT_MD, "w").write("\n".join(lines))


# ---- bench -----------------------------------------------------------------------------------------
def stage_bench():
    pool = Pool()
    g = torch.Generator().manual_seed(0)

    def timeit(name, fn, params, n=3):
        opt = torch.optim.AdamW(params, lr=1e-4)
        fn().backward(); opt.step()
        t = time.time()
        for _ in range(n):
            opt.zero_grad(); fn().backward(); opt.step()
        print(f"{name}: {(time.time() - t) / n:.3f} s/step", flush=True)

    clip = CLIPPair()
    ids = tokenize_all()[1]
    timeit("clip text+vision B=256", lambda: clip.text(input_ids=ids[:256, :16]).text_embeds.sum()
           + clip.vision(pixel_values=pool.pixels_clip(torch.arange(256))).image_embeds.sum(), clip.parameters())
    vae = make_vae()
    timeit("vae B=32", lambda: vae(pool.pixels_m11(torch.arange(32))).sample.square().mean(), vae.parameters())
    prior = make_prior()
    timeit("prior B=128", lambda: prior(torch.randn(128, EMBED), timestep=torch.randint(1000, (128,)),
                                         proj_embedding=torch.randn(128, EMBED),
                                         encoder_hidden_states=torch.randn(128, 77, TEXT_WIDTH),
                                         attention_mask=torch.ones(128, 77, dtype=torch.bool)
                                         ).predicted_image_embedding.square().mean(), prior.parameters())
    unet = make_unet()
    print("unet params", sum(p.numel() for p in unet.parameters()))
    timeit("unet B=64", lambda: unet(torch.randn(64, 4, 8, 8), torch.randint(1000, (64,)),
                                     encoder_hidden_states=torch.randn(64, 77, TEXT_WIDTH),
                                     class_labels=torch.randn(64, 2 * EMBED)).sample.square().mean(), unet.parameters())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["clip", "vae", "vaedec", "prior", "unet", "unetft", "export", "bench", "report"])
    ap.add_argument("--steps", type=int)
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    defaults = {"clip": 1000, "vae": 1000, "vaedec": 1000, "prior": 1500, "unet": 5500, "unetft": 3000}  # the shipped run
    if a.stage in defaults:
        globals()[f"stage_{a.stage}"](a.steps or defaults[a.stage])
    elif a.stage == "export":
        stage_export()
    elif a.stage == "report":
        write_report()
    else:
        stage_bench()


if __name__ == "__main__":
    main()
