"""Single-file checkpoints in the original (CompVis / LDM, A1111, ComfyUI) layout, made from the tiny diffusers
folders of fixtures_sd.py, and proved by diffusers' own single-file loader.

Run from the repository root after fixtures_sd.py (it reads Tests/Fixtures/sd/tiny-sd-eps and tiny-sd-v):
    /tmp/fullsize/venv/bin/python notebooks-export/fixtures_single_file.py
(diffusers 0.42.1, transformers 5.23.0, torch CPU.)

The layout is written by the inverse of diffusers' key mapping (below), then VALIDATED BY DIFFUSERS:
StableDiffusionPipeline.from_single_file(FILE, config=<tiny folder>) must give every unet / vae / text_encoder
tensor equal to the folder's own (so the file is what diffusers reads as that model, not just what we think).

Writes Tests/Fixtures/single_file/:
  tiny-sd1.safetensors  SD 1.x layout of tiny-sd-eps: model.diffusion_model.*, first_stage_model.* (attention as
                        1x1 convs), cond_stage_model.transformer.text_model.* (CLIP).
  tiny-sd1-ema.ckpt     the same in a torch zip as {"state_dict": ..., "global_step": 470000}, fp16, with a LitEma
                        copy (model_ema.*, other values): the non-EMA weights are the model (diffusers' default).
  tiny-sd2-v.safetensors  SD 2.x layout of tiny-sd-v: OpenCLIP text encoder under cond_stage_model.model.*
                        (fused attn.in_proj_weight/bias, positional_embedding, ln_final, text_projection).
  single_file.json      per file: the folder it came from, its family, dtype; and "a1111_probe": AUTOMATIC1111's
                        v-prediction statistic (is_using_v_parameterization_for_sd2: mean(unet(0.5, t=999, context 0.5
                        at [1, 2, cross]) - 0.5) at [1, 4, 8, 8]) computed by diffusers' UNet on each tiny folder.
  standard-sd1.json, standard-sd2.json  the full-size SD 1.5 / SD 2.1 (768-v) layouts, without weights: diffusers'
                        configs derived by diffusers' create_unet/vae_diffusers_config_from_ldm from the original
                        v1-inference.yaml / v2-inference-v.yaml parameters, and for the models built from them (on
                        the meta device) every diffusers key with its shape and every original key with its shape
                        (by the inverse mapping proved above; diffusers' infer_diffusers_model_type must call the
                        original key set v1 / v2). The Swift tests check the standard configs and rule tables
                        against them, since real single files use those configs.
The expected values are the tiny folders' own weights and the existing sd.expected.* runs (diffusers' images).
"""

import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

from diffusers import StableDiffusionPipeline

SD = os.path.join("Tests", "Fixtures", "sd")
OUT = os.path.join("Tests", "Fixtures", "single_file")

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
          ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def resnet(rest):
    for a, o in RESNET:
        rest = rest.replace(a, o)
    return rest


def unet_to_ldm(sd, cfg):
    L = cfg["layers_per_block"]
    out = {}
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    up_has_attn = {i: t.startswith("CrossAttn") for i, t in enumerate(cfg["up_block_types"])}
    for k, v in sd.items():
        p = k.split(".")
        head, leaf = ".".join(p[:-1]), p[-1]
        if head in fixed:
            out[f"{fixed[head]}.{leaf}"] = v
            continue
        rest = ".".join(p[4:])
        if p[0] in ("down_blocks", "up_blocks"):
            down = p[0] == "down_blocks"
            b, kind, j = int(p[1]), p[2], int(p[3])
            # A down level is L resnets (+ attentions) then a downsampler block, after conv_in at 0; an up level L + 1.
            group, first = ("input_blocks", 1 + b * (L + 1)) if down else ("output_blocks", b * (L + 1))
            if kind == "resnets":
                out[f"{group}.{first + j}.0.{resnet(rest)}"] = v
            elif kind == "attentions":
                out[f"{group}.{first + j}.1.{rest}"] = v
            elif down:  # downsamplers.0.conv
                out[f"input_blocks.{first + L}.0.op.{leaf}"] = v
            else:  # upsamplers.0.conv
                out[f"output_blocks.{first + L}.{2 if up_has_attn[b] else 1}.conv.{leaf}"] = v
        elif p[0] == "mid_block":
            kind, j = p[1], int(p[2])
            rest = ".".join(p[3:])
            if kind == "resnets":
                out[f"middle_block.{2 * j}.{resnet(rest)}"] = v
            else:
                out[f"middle_block.1.{rest}"] = v
        else:
            raise KeyError(k)
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def vae_to_ldm(sd, cfg):
    n = len(cfg["block_out_channels"])
    out = {}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for k, v in sd.items():
        p = k.split(".")
        side = p[0]
        if p[1] in ("conv_in", "conv_out") or side in ("quant_conv", "post_quant_conv"):
            out[k] = v
            continue
        if p[1] == "conv_norm_out":
            out[f"{side}.norm_out.{p[2]}"] = v
            continue
        if p[1] in ("down_blocks", "up_blocks"):
            i = int(p[2])
            level = i if side == "encoder" else n - 1 - i
            name = "down" if side == "encoder" else "up"
            if p[3] == "resnets":
                rest = ".".join(p[5:]).replace("conv_shortcut", "nin_shortcut")
                out[f"{side}.{name}.{level}.block.{p[4]}.{rest}"] = v
            else:  # downsamplers / upsamplers .0.conv
                out[f"{side}.{name}.{level}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{p[-1]}"] = v
            continue
        if p[1] == "mid_block":
            if p[2] == "resnets":
                rest = ".".join(p[4:]).replace("conv_shortcut", "nin_shortcut")
                out[f"{side}.mid.block_{int(p[3]) + 1}.{rest}"] = v
            else:
                sub = ".".join(p[4:-1])
                if v.ndim == 2:  # the original attention is 1x1 convolutions
                    v = v[:, :, None, None]
                out[f"{side}.mid.attn_1.{attn[sub]}.{p[-1]}"] = v
            continue
        raise KeyError(k)
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_to_ldm(sd):
    return {"cond_stage_model.transformer.text_model." + k: v for k, v in sd.items()}


def open_clip_to_ldm(sd, seed):
    out = {}
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for i in layers:
        pre, o = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for a, b in [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
                     ("self_attn.out_proj", "attn.out_proj")]:
            for leaf in ("weight", "bias"):
                out[f"{o}{b}.{leaf}"] = sd[f"{pre}{a}.{leaf}"]
        for leaf in ("weight", "bias"):
            out[f"{o}attn.in_proj_{leaf}"] = torch.cat([sd[f"{pre}self_attn.{x}_proj.{leaf}"] for x in "qkv"], 0)
    out["token_embedding.weight"] = sd["embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd["embeddings.position_embedding.weight"]
    out["ln_final.weight"] = sd["final_layer_norm.weight"]
    out["ln_final.bias"] = sd["final_layer_norm.bias"]
    hidden = sd["final_layer_norm.weight"].shape[0]
    # Present in real SD 2 files, unused by the diffusers text encoder (CLIPTextModel has no projection).
    out["text_projection"] = torch.randn(hidden, hidden, generator=torch.Generator().manual_seed(seed))
    return {"cond_stage_model.model." + k: v for k, v in out.items()}


def folder_state(folder):
    def one(sub):
        d = os.path.join(SD, folder, sub)
        f = [x for x in os.listdir(d) if x.endswith(".safetensors")][0]
        return load_file(os.path.join(d, f)), json.load(open(os.path.join(d, "config.json")))
    return one("unet"), one("vae"), one("text_encoder")


def original_layout(folder, open_clip):
    (unet, ucfg), (vae, vcfg), (te, _) = folder_state(folder)
    out = {}
    out.update(unet_to_ldm(unet, ucfg))
    out.update(vae_to_ldm(vae, vcfg))
    out.update(open_clip_to_ldm(te, 7) if open_clip else clip_to_ldm(te))
    return {k: v.contiguous() for k, v in out.items()}


def ema_copy(state, seed):
    """LitEma's keys: model_ema. + the UNet key after 'model.' with its dots removed."""
    g = torch.Generator().manual_seed(seed)
    out = {"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(470000, dtype=torch.int32)}
    for k, v in state.items():
        if k.startswith("model.diffusion_model."):
            out["model_ema." + k[len("model."):].replace(".", "")] = v + 0.5 * torch.randn(v.shape, generator=g)
    return out


def check_with_diffusers(path, folder):
    """diffusers' own single-file loader must read the file as exactly the folder's model."""
    pipe = StableDiffusionPipeline.from_single_file(path, config=os.path.join(SD, folder), local_files_only=True,
                                                    torch_dtype=torch.float32)
    (unet, _), (vae, _), (te, _) = folder_state(folder)
    for name, want, model in [("unet", unet, pipe.unet), ("vae", vae, pipe.vae), ("text_encoder", te, pipe.text_encoder)]:
        got = model.state_dict()
        got = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in got.items()}
        missing = set(want) - set(got)
        assert not missing, (path, name, sorted(missing)[:5])
        for k, v in want.items():
            tol = 1e-3 if path.endswith(".ckpt") else 0  # the .ckpt is fp16
            err = (got[k].float() - v.float()).abs().max().item()
            assert err <= tol * max(1.0, v.abs().max().item()), (path, name, k, err)
    print("diffusers from_single_file matches", path)


# The unet / first-stage parameters of the original configs (CompVis v1-inference.yaml, Stability v2-inference-v.yaml).
LDM_PARAMS = {
    "sd1": dict(unet=dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                          num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                          transformer_depth=1, context_dim=768, legacy=False), image_size=512, upcast=None),
    "sd2": dict(unet=dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                          num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_head_channels=64, use_spatial_transformer=True,
                          use_linear_in_transformer=True, transformer_depth=1, context_dim=1024, legacy=False),
                image_size=768, upcast=True),
}
VAE_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
                    num_res_blocks=2, attn_resolutions=[], dropout=0.0)
# transformers' configs of openai/clip-vit-large-patch14's text model and of stable-diffusion-2's text_encoder.
TEXT = {
    "sd1": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, hidden_act="quick_gelu",
                projection_dim=768),
    "sd2": dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23, hidden_act="gelu",
                projection_dim=512),
}


def standard_layout(family):
    import warnings
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (create_unet_diffusers_config_from_ldm,
                                                     create_vae_diffusers_config_from_ldm, infer_diffusers_model_type)
    from transformers import CLIPTextConfig, CLIPTextModel

    p = LDM_PARAMS[family]
    original = {"model": {"params": {"unet_config": {"params": p["unet"]}, "scale_factor": 0.18215,
                                     "first_stage_config": {"params": {"ddconfig": VAE_DDCONFIG}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ucfg = create_unet_diffusers_config_from_ldm(original, {}, image_size=p["image_size"], upcast_attention=p["upcast"])
        vcfg = create_vae_diffusers_config_from_ldm(original, {}, image_size=p["image_size"])
    tcfg = dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5, **TEXT[family])
    with torch.device("meta"):
        unet = UNet2DConditionModel(**ucfg).state_dict()
        vae = AutoencoderKL(**vcfg).state_dict()
        te = CLIPTextModel(CLIPTextConfig(**tcfg)).state_dict()
    te = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in te.items()}
    te = {k: v for k, v in te.items() if not k.endswith("position_ids")}
    ldm = {}
    ldm.update(unet_to_ldm(unet, ucfg))
    ldm.update(vae_to_ldm(vae, vcfg))
    if family == "sd2":
        ldm.update({k: v for k, v in open_clip_to_ldm_shapes(te).items()})
    else:
        ldm.update(clip_to_ldm(te))
    model_type = infer_diffusers_model_type({k: torch.empty(v.shape, device="meta") for k, v in ldm.items()})
    assert model_type == {"sd1": "v1", "sd2": "v2"}[family], (family, model_type)
    shapes = lambda d: {k: list(v.shape) for k, v in d.items()}  # noqa: E731
    return {"configs": {"unet": ucfg, "vae": vcfg, "text_encoder": tcfg},
            "diffusers": {"unet": shapes(unet), "vae": shapes(vae), "text_encoder": shapes(te)},
            "original": shapes(ldm), "diffusers_model_type": model_type}


def open_clip_to_ldm_shapes(te):
    """open_clip_to_ldm's keys and shapes, plus OpenCLIP's last layer (SD 2 files carry it; diffusers drops it)."""
    layers = sorted({int(k.split(".")[2]) for k in te if k.startswith("encoder.layers.")})
    extra = {k.replace(f"encoder.layers.{layers[-1]}.", f"encoder.layers.{layers[-1] + 1}."): v
             for k, v in te.items() if k.startswith(f"encoder.layers.{layers[-1]}.")}
    src = dict(te, **extra)
    # Shapes only (meta tensors): the fused in_proj is three projections stacked.
    out = {}
    for i in layers + [layers[-1] + 1]:
        pre, o = f"encoder.layers.{i}.", f"cond_stage_model.model.transformer.resblocks.{i}."
        for a, b in [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
                     ("self_attn.out_proj", "attn.out_proj")]:
            for leaf in ("weight", "bias"):
                out[f"{o}{b}.{leaf}"] = src[f"{pre}{a}.{leaf}"]
        q = src[f"{pre}self_attn.q_proj.weight"]
        out[f"{o}attn.in_proj_weight"] = torch.empty(3 * q.shape[0], q.shape[1], device="meta")
        out[f"{o}attn.in_proj_bias"] = torch.empty(3 * q.shape[0], device="meta")
    h = src["final_layer_norm.weight"].shape[0]
    out["cond_stage_model.model.token_embedding.weight"] = src["embeddings.token_embedding.weight"]
    out["cond_stage_model.model.positional_embedding"] = src["embeddings.position_embedding.weight"]
    out["cond_stage_model.model.ln_final.weight"] = src["final_layer_norm.weight"]
    out["cond_stage_model.model.ln_final.bias"] = src["final_layer_norm.bias"]
    out["cond_stage_model.model.text_projection"] = torch.empty(h, h, device="meta")
    return out


def a1111_statistic(folder):
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(os.path.join(SD, folder, "unet")).eval()
    x = torch.ones((1, 4, 8, 8)) * 0.5
    cross = unet.config.cross_attention_dim
    with torch.no_grad():
        out = unet(x, torch.asarray([999]), encoder_hidden_states=torch.ones((1, 2, cross)) * 0.5).sample
    return (out - x).mean().item()


def main():
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    doc = {"about": "written by notebooks-export/fixtures_single_file.py; validated by diffusers' from_single_file", "files": {}}

    sd1 = original_layout("tiny-sd-eps", open_clip=False)
    p = os.path.join(OUT, "tiny-sd1.safetensors")
    save_file(sd1, p)
    doc["files"]["tiny-sd1.safetensors"] = {"folder": "tiny-sd-eps", "family": "sd1", "dtype": "float32"}

    p16 = os.path.join(OUT, "tiny-sd1-ema.ckpt")
    state = {k: v.half() for k, v in sd1.items()}
    state.update({k: (v.half() if v.is_floating_point() else v) for k, v in ema_copy(sd1, 11).items()})
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 3}, p16)
    doc["files"]["tiny-sd1-ema.ckpt"] = {"folder": "tiny-sd-eps", "family": "sd1", "dtype": "float16"}

    sd2 = original_layout("tiny-sd-v", open_clip=True)
    p2 = os.path.join(OUT, "tiny-sd2-v.safetensors")
    save_file(sd2, p2)
    doc["files"]["tiny-sd2-v.safetensors"] = {"folder": "tiny-sd-v", "family": "sd2", "dtype": "float32"}

    for f in os.listdir(OUT):
        os.chmod(os.path.join(OUT, f), 0o644)
    check_with_diffusers(p, "tiny-sd-eps")
    check_with_diffusers(p16, "tiny-sd-eps")
    check_with_diffusers(p2, "tiny-sd-v")
    doc["a1111_probe"] = {folder: a1111_statistic(folder) for folder in ("tiny-sd-eps", "tiny-sd-v")}
    with open(os.path.join(OUT, "single_file.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    for family in ("sd1", "sd2"):
        with open(os.path.join(OUT, f"standard-{family}.json"), "w") as f:
            json.dump(standard_layout(family), f, sort_keys=True)


if __name__ == "__main__":
    main()
