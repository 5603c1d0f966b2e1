"""Reference fixtures for UNet2DConditionModel and AutoencoderKL forward passes (single components).

Run from the repository root:  venv/bin/python notebooks-export/fixtures_unet_vae.py
(diffusers 0.42.1, torch CPU, float32 everywhere).

Writes
  Tests/Fixtures/unet/<name>/{config.json, diffusion_pytorch_model.safetensors}   tiny UNet, every parameter random
  Tests/Fixtures/unet/<name>.expected.safetensors                                  inputs / outputs per case
  Tests/Fixtures/vae/<name>/{config.json, diffusion_pytorch_model.safetensors}    tiny VAE, every parameter random
  Tests/Fixtures/vae/<name>.expected.safetensors
  Tests/Fixtures/unet/index.json, Tests/Fixtures/vae/index.json                    configs, cases, shapes, |max|

UNet tensors, per case prefix ("t999.", "t1p5.", "t0."):
  sample [2,4,H,W], timestep [1] (int64 for integer cases, float32 for "t1p5."),
  encoder_hidden_states [2,S,cross_attention_dim], class_labels (only with class_embed_type:
  [2, projection_class_embeddings_input_dim] for "projection", [2] float32 timesteps for "timestep"),
  out = unet(sample, timestep, encoder_hidden_states, class_labels=...).sample
VAE tensors, per case prefix ("" square, "wide." non-square):
  latents [B,4,h,w]  -> decoded = vae.decode(latents).sample   (latents already divided by scaling_factor)
  image [B,3,H,W] in [-1,1] -> latent_mean = vae.encode(image).latent_dist.mean (unscaled)

Every parameter is re-drawn after construction (fixture_common.randomize_): diffusers zero-initialises
conv_out / proj_out and sets norms to 1/0, which would hide a missing bias or a skipped layer.
Each model is reloaded with from_pretrained from the saved folder before computing the outputs, so
the expected values are those of exactly what is committed.
"""

import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import assert_all_random, randomize_, tensor_info  # noqa: E402

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_grad_enabled(False)
UNET_OUT = os.path.join("Tests", "Fixtures", "unet")
VAE_OUT = os.path.join("Tests", "Fixtures", "vae")

CA3_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
CA3_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")

# name -> (config, latent (H, W), encoder sequence length, class_labels kind)
UNETS = {
    # Stable unCLIP 2.1's shape: linear projections, per-block head counts (diffusers reads
    # attention_head_dim as the NUMBER of heads when num_attention_heads is unset: 2, 4, 8 heads
    # of width 4, 4, 2; the mid block uses the last entry), noise-augmented image embedding
    # through class_embed_type "projection", upcast_attention (no effect in fp32).
    "linear-perblock": (
        dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16, 16),
             down_block_types=CA3_DOWN, up_block_types=CA3_UP, cross_attention_dim=24, attention_head_dim=(2, 4, 8),
             use_linear_projection=True, upcast_attention=True, class_embed_type="projection",
             projection_class_embeddings_input_dim=16, norm_num_groups=4),
        (8, 12), 77, "projection",
    ),
    # SD 1.x shape: 1x1-conv proj_in/proj_out, one head count for all blocks (4), two layers per block.
    "conv-int": (
        dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(8, 16, 16),
             down_block_types=CA3_DOWN, up_block_types=CA3_UP, cross_attention_dim=12, attention_head_dim=4,
             use_linear_projection=False, upcast_attention=False, norm_num_groups=4),
        (8, 8), 7, None,
    ),
    # diffusers 0.42.1 REFUSES num_attention_heads in UNet2DConditionModel.__init__ ("At the moment it is
    # not possible to define the number of attention heads via `num_attention_heads` ..."), so the head
    # count is given the only way diffusers accepts: attention_head_dim=(4, 2) = number of heads per
    # block (widths 2, 8). Class embedding "timestep" (class_labels are timesteps, embedded with the
    # same sinusoidal projection as the timestep), two transformer layers per block, and an odd 9x7
    # latent so diffusers' forward_upsample_size path runs (9x7 -> 5x4 -> upsampled to 9x7, not 10x8).
    "numheads-timestep": (
        dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
             down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=(4, 2),
             transformer_layers_per_block=2, use_linear_projection=True, class_embed_type="timestep",
             norm_num_groups=4),
        (9, 7), 7, "timestep",
    ),
    # only_cross_attention=True (a bool): attn1 of every down/up transformer block attends to the text
    # too. diffusers also sets mid_block_only_cross_attention=True internally, but
    # UNetMidBlock2DCrossAttn never reads it: the mid block keeps self-attention. Also center_input_sample (2x - 1 before
    # conv_in), freq_shift 1 and flip_sin_to_cos False (sin first) in the sinusoidal embedding.
    "only-cross": (
        dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
             down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=20,
             attention_head_dim=4, use_linear_projection=True, only_cross_attention=True,
             center_input_sample=True, freq_shift=1, flip_sin_to_cos=False, norm_num_groups=4),
        (8, 8), 7, None,
    ),
    # only_cross_attention as a per-block list: block 0 cross-only, block 1 normal; the mid block keeps
    # self-attention (as always with UNetMidBlock2DCrossAttn). The up blocks
    # use the reversed list (up 0 normal, up 1 cross-only).
    "only-cross-list": (
        dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 8),
             down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
             attention_head_dim=2, use_linear_projection=False, only_cross_attention=(True, False),
             norm_num_groups=4),
        (8, 8), 7, None,
    ),
}

# (prefix, timestep): integer cases as int64 (what DDIM/DDPM pass), a fractional float32 one (Euler-type).
UNET_CASES = [
    ("t999.", torch.tensor([999], dtype=torch.int64)),
    ("t1p5.", torch.tensor([1.5], dtype=torch.float32)),
    ("t0.", torch.tensor([0], dtype=torch.int64)),
]


def unet_inputs(cfg, hw, seq, class_kind, timestep, g):
    x = {
        "sample": torch.randn(2, cfg["in_channels"], *hw, generator=g),
        "timestep": timestep,
        "encoder_hidden_states": torch.randn(2, seq, cfg["cross_attention_dim"], generator=g),
    }
    if class_kind == "projection":
        x["class_labels"] = torch.randn(2, cfg["projection_class_embeddings_input_dim"], generator=g)
    elif class_kind == "timestep":
        # A different (and fractional) timestep per row: the class path embeds each row separately.
        x["class_labels"] = torch.tensor([37.0, 801.5]) + torch.rand(2, generator=g).round()
    return x


def unet_forward(model, x):
    return model(x["sample"], x["timestep"], encoder_hidden_states=x["encoder_hidden_states"],
                 class_labels=x.get("class_labels")).sample


def unet_fixtures():
    index = {}
    for i, (name, (cfg, hw, seq, class_kind)) in enumerate(UNETS.items()):
        torch.manual_seed(0)
        model = UNet2DConditionModel(**cfg).eval()
        randomize_(model, seed=500 + i)
        folder = os.path.join(UNET_OUT, name)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        model.save_pretrained(folder, safe_serialization=True)
        assert_all_random(load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors")), folder)
        reloaded = UNet2DConditionModel.from_pretrained(folder).eval()
        if name == "only-cross":
            # UNetMidBlock2DCrossAttn ignores mid_block_only_cross_attention (only the Simple* mid block
            # uses it): the mid block keeps plain self-attention even with only_cross_attention=True.
            assert reloaded.config.mid_block_only_cross_attention is None
            assert not reloaded.mid_block.attentions[0].transformer_blocks[0].only_cross_attention
            assert reloaded.down_blocks[0].attentions[0].transformer_blocks[0].only_cross_attention
        g = torch.Generator().manual_seed(600 + i)
        tensors, cases = {}, {}
        for prefix, t in UNET_CASES:
            x = unet_inputs(cfg, hw, seq, class_kind, t, g)
            y = unet_forward(reloaded, x)
            torch.testing.assert_close(y, unet_forward(model, x), rtol=0, atol=0)
            assert torch.isfinite(y).all()
            for k, v in x.items():
                tensors[prefix + k] = v.contiguous()
            tensors[prefix + "out"] = y.contiguous()
            cases[prefix] = {"inputs": {k: tensor_info(v) for k, v in x.items()},
                             "out": tensor_info(y), "out_abs_max": float(y.abs().max()),
                             "out_std": float(y.std())}
        save_file(tensors, os.path.join(UNET_OUT, f"{name}.expected.safetensors"))
        index[name] = {"config": json.load(open(os.path.join(folder, "config.json"))), "cases": cases,
                       "parameters": sum(p.numel() for p in model.parameters())}
        print(f"unet {name}: {index[name]['parameters']} params, out |max| "
              + ", ".join(f"{p}{c['out_abs_max']:.3f}" for p, c in cases.items()))
    doc = {"about": "UNet2DConditionModel (diffusers 0.42.1) forward passes in float32 on CPU; see "
           "notebooks-export/fixtures_unet_vae.py. Tensors '<case>.<name>': sample, timestep ([1]; int64 "
           "or float32), encoder_hidden_states, class_labels (only with class_embed_type), out.",
           "models": index}
    json.dump(doc, open(os.path.join(UNET_OUT, "index.json"), "w"), indent=1, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, block_out_channels=(8, 16, 16), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    latent_channels=4, norm_num_groups=4, sample_size=24, scaling_factor=0.18215,
)
# Renames that old diffusers checkpoints have in the VAE mid-block attention (diffusers converts them
# on load in ModelMixin._fix_state_dict_keys_on_load; group_norm keeps its name).
LEGACY = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
# (prefix, latents shape, image shape): a square case as the brief specifies, and a non-square one
# whose image size is not a multiple of 4, so the encoder's asymmetric (0,1,0,1) downsample padding
# shows: 18x26 -> 9x13 -> 4x6 (a symmetric padding of 1 would give 5x7).
VAE_CASES = [("", (2, 4, 6, 6), (2, 3, 24, 24)), ("wide.", (2, 4, 5, 7), (2, 3, 18, 26))]


def legacy_rename(path):
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    state = load_file(path)
    out, renamed = {}, 0
    for k, v in state.items():
        nk = k
        if ".mid_block.attentions." in k:
            for new, old in LEGACY.items():
                if f".{new}." in k:
                    nk = k.replace(f".{new}.", f".{old}.")
                    renamed += 1
        out[nk] = v
    assert renamed == 16, renamed  # encoder + decoder, 4 linears, weight + bias
    save_file(out, path, metadata=meta)
    return sorted(k for k in out if ".mid_block.attentions." in k)


def vae_fixtures():
    index = {}
    for i, name in enumerate(("sd-like", "legacy-names")):
        torch.manual_seed(0)
        model = AutoencoderKL(**VAE_CONFIG).eval()
        # A smaller gain on the decoder's last conv keeps the decoded pixels around [-1, 1].
        randomize_(model, seed=700 + i, overrides={"decoder.conv_out.weight": 0.4})
        folder = os.path.join(VAE_OUT, name)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        model.save_pretrained(folder, safe_serialization=True)
        weights = os.path.join(folder, "diffusion_pytorch_model.safetensors")
        assert_all_random(load_file(weights), folder)
        legacy_keys = legacy_rename(weights) if name == "legacy-names" else None
        reloaded = AutoencoderKL.from_pretrained(folder).eval()
        for k, v in model.state_dict().items():  # the legacy names really were mapped back
            assert torch.equal(v, reloaded.state_dict()[k]), k
        g = torch.Generator().manual_seed(800 + i)
        tensors, cases = {}, {}
        for prefix, zshape, xshape in VAE_CASES:
            z = torch.randn(*zshape, generator=g)
            x = torch.rand(*xshape, generator=g) * 2 - 1
            decoded = reloaded.decode(z).sample
            mean = reloaded.encode(x).latent_dist.mean
            assert torch.isfinite(decoded).all() and torch.isfinite(mean).all()
            tensors.update({prefix + "latents": z, prefix + "decoded": decoded, prefix + "image": x,
                            prefix + "latent_mean": mean})
            cases[prefix or "(default)"] = {
                "latents": list(zshape), "decoded": list(decoded.shape), "image": list(xshape),
                "latent_mean": list(mean.shape), "decoded_abs_max": float(decoded.abs().max()),
                "latent_mean_abs_max": float(mean.abs().max()),
            }
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(VAE_OUT, f"{name}.expected.safetensors"))
        index[name] = {"config": json.load(open(os.path.join(folder, "config.json"))), "cases": cases,
                       "parameters": sum(p.numel() for p in model.parameters())}
        if legacy_keys:
            index[name]["legacy_keys"] = legacy_keys
        print(f"vae {name}: {index[name]['parameters']} params, "
              + ", ".join(f"{p} decoded |max| {c['decoded_abs_max']:.3f} mean |max| {c['latent_mean_abs_max']:.3f}"
                          for p, c in cases.items()))
    doc = {"about": "AutoencoderKL (diffusers 0.42.1) in float32 on CPU; see notebooks-export/fixtures_unet_vae.py. "
                    "Tensors '<case>.<name>' (case '' square, 'wide.' non-square): latents -> decoded = "
                    "vae.decode(latents).sample; image in [-1,1] -> latent_mean = vae.encode(image).latent_dist.mean. "
                    "legacy-names stores the mid-block attention as query/key/value/proj_attn.",
           "models": index}
    json.dump(doc, open(os.path.join(VAE_OUT, "index.json"), "w"), indent=1, sort_keys=True)


if __name__ == "__main__":
    os.makedirs(UNET_OUT, exist_ok=True)
    os.makedirs(VAE_OUT, exist_ok=True)
    unet_fixtures()
    vae_fixtures()
