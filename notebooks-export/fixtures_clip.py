"""Reference fixtures for the Swift CLIP text/vision encoders and the safetensors dtype reader.

Run:  venv/bin/python notebooks-export/fixtures_clip.py   (from the repository root)

Writes (deterministic: seeded generators, torch float32, 1 thread):
  Tests/Fixtures/clip/<name>/                      tiny transformers CLIP model folders
  Tests/Fixtures/clip/<name>.expected.safetensors  inputs + transformers outputs for each
  Tests/Fixtures/weights/dtypes.safetensors        F16 / BF16 tensors with special values
  Tests/Fixtures/weights/dtypes.expected.safetensors   torch .float() of those (F32)

Every parameter is re-drawn at random after construction (clip_common.redraw_parameters), so
a loader that skips a tensor, or a kernel that assumes LayerNorm weight 1 / bias 0, fails.
Vocabulary is the real 49408 tokens and max_position_embeddings 77, so the fixtures can be fed
by the real CLIP tokenizer (built here from open_clip's BPE file).
"""

import json
import os
import shutil
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_common import build_clip_tokenizer, redraw_parameters  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP_DIR = os.path.join(ROOT, "Tests", "Fixtures", "clip")
WEIGHTS_DIR = os.path.join(ROOT, "Tests", "Fixtures", "weights")

EOT = "<|endoftext|>"  # id 49407: OpenAI / SD1 padding
BANG = "!"  # id 0: SD2 padding

# Three prompts of different lengths; the last one is longer than 77 tokens (truncated, eos kept).
PROMPTS = [
    "a photo of a cat",
    "An astronaut riding a horse on Mars, digital art, trending on artstation!",
    (
        "A highly detailed oil painting of a quiet harbour town at dusk, fishing boats with "
        "red and blue sails resting on calm water, warm lights glowing in the windows of "
        "old stone houses, seagulls circling above the lighthouse, mountains covered in snow "
        "far in the background, dramatic clouds lit in orange and purple, painted in the style "
        "of the nineteenth century romantic landscape masters, 8k, sharp focus, award winning"
    ),
]

TEXT_COMMON = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406)

# name -> (model class, config kwargs, tokenizer pad token, seed)
TEXT_MODELS = {
    "text-quickgelu-l2": (
        CLIPTextModelWithProjection,
        dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
             projection_dim=24, hidden_act="quick_gelu", eos_token_id=2, pad_token_id=1),
        EOT, 1001,
    ),
    "text-gelu-l3": (
        CLIPTextModelWithProjection,
        dict(hidden_size=48, num_attention_heads=6, num_hidden_layers=3, intermediate_size=96,
             projection_dim=16, hidden_act="gelu", eos_token_id=49407, pad_token_id=0),
        BANG, 1002,
    ),
    "text-plain-l1": (
        CLIPTextModel,
        dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=40,
             hidden_act="quick_gelu", eos_token_id=49407, pad_token_id=49407),
        EOT, 1003,
    ),
    "text-sd2-l4": (
        CLIPTextModel,
        dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=4, intermediate_size=64,
             hidden_act="gelu", eos_token_id=49407, pad_token_id=0, layer_norm_eps=1e-5),
        BANG, 1004,
    ),
}
# Variants (other weights = other seed) saved in special layouts.
TEXT_VARIANTS = {
    "text-fp16-variant": ("text-quickgelu-l2", 1007),
    "text-sharded": ("text-gelu-l3", 1008),
    "text-position-ids": ("text-plain-l1", 1009),
}

# CLIPTextModel folders written in the hub key layout ("text_model.embeddings...", as SD text_encoder
# checkpoints have). text-plain-l1 keeps the layout transformers 5 writes ("embeddings..."), so a
# loader must accept both.
HUB_PREFIX = {"text-sd2-l4", "text-position-ids"}

VISION_MODELS = {
    "vision-a": (
        dict(image_size=32, patch_size=8, hidden_size=32, num_attention_heads=4, num_hidden_layers=2,
             intermediate_size=64, projection_dim=24, hidden_act="quick_gelu"),
        2005,
    ),
    "vision-b": (
        dict(image_size=30, patch_size=6, hidden_size=48, num_attention_heads=3, num_hidden_layers=3,
             intermediate_size=80, projection_dim=20, hidden_act="gelu", layer_norm_eps=1e-5),
        2006,
    ),
}


def metadata(**extra):
    """Header metadata as ONE key: safetensors writes multiple metadata keys in random (hash
    map) order, which would make the files differ from run to run."""
    import transformers

    info = {"generator": "notebooks-export/fixtures_clip.py", "torch": torch.__version__,
            "transformers": transformers.__version__, **extra}
    return {"fixture": json.dumps(info, sort_keys=True)}


def fresh_dir(path):
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path)


# ---------------------------------------------------------------- text

def tokenize(pad_token):
    tok = build_clip_tokenizer(pad_token)
    enc = tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    ids, mask = enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.int64)
    # Sanity: every row starts with bos and contains an eos; the long prompt really was truncated.
    assert (ids[:, 0] == 49406).all()
    assert ((ids == 49407).sum(dim=1) >= 1).all()
    assert mask[2].all() and ids[2, 76] == 49407, "third prompt must fill all 77 positions"
    assert mask[0].sum() < mask[1].sum() < 77
    return ids, mask


@torch.no_grad()
def text_outputs(model, ids, mask):
    """All reference outputs for a text model (projection optional)."""
    # transformers 5 flattened CLIPTextModel (no .text_model); the projection wrapper still has one.
    tm = getattr(model, "text_model", model)
    out = {}
    o = tm(input_ids=ids, output_hidden_states=True)
    out["last_hidden_state"] = o.last_hidden_state
    out["hidden_states"] = torch.stack(o.hidden_states)
    out["pooler_output"] = o.pooler_output
    m = tm(input_ids=ids, attention_mask=mask)
    out["masked.last_hidden_state"] = m.last_hidden_state
    out["masked.pooler_output"] = m.pooler_output
    if hasattr(model, "text_projection"):
        full = model(input_ids=ids)
        out["text_embeds"] = full.text_embeds
        out["masked.text_embeds"] = model(input_ids=ids, attention_mask=mask).text_embeds
        # The wrapper must agree with text_model + projection (pooler_output is not in its output).
        assert torch.equal(full.last_hidden_state, out["last_hidden_state"])
        assert torch.allclose(full.text_embeds, model.text_projection(out["pooler_output"]), atol=1e-6)
    return {k: v.float().contiguous() for k, v in out.items()}


# --zero-unused-vocab-rows: zero the token-embedding rows no fixture prompt uses. The outputs are
# unchanged (those rows are never read) but the files compress ~15x in git. Off by default.
ZERO_UNUSED_ROWS = "--zero-unused-vocab-rows" in sys.argv


def build_text(cls, cfg_kwargs, seed):
    cfg = CLIPTextConfig(**TEXT_COMMON, **cfg_kwargs)
    model = cls(cfg).eval()
    redraw_parameters(model, seed)
    if ZERO_UNUSED_ROWS:
        used = torch.unique(torch.cat([tokenize(EOT)[0].flatten(), tokenize(BANG)[0].flatten()]))
        weight = model.get_input_embeddings().weight
        keep = torch.zeros(weight.shape[0], dtype=torch.bool)
        keep[used] = True
        with torch.no_grad():
            weight[~keep] = 0
    return model


def compare(a, b, what, tol=0.0):
    for k in a:
        d = (a[k] - b[k]).abs().max().item()
        assert d <= tol, f"{what}: {k} differs by {d}"


def rewrite_weights(folder, fn):
    """Apply fn to the tensors of folder/model.safetensors, keeping the header metadata."""
    path = os.path.join(folder, "model.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    save_file(fn(load_file(path)), path, metadata=meta)


def make_text(name, cls, cfg_kwargs, pad_token, seed, layout="plain", hub_prefix=False):
    folder = os.path.join(CLIP_DIR, name)
    fresh_dir(folder)
    model = build_text(cls, cfg_kwargs, seed)
    ids, mask = tokenize(pad_token)
    load_kwargs = {}

    if layout == "fp16":
        model = model.half()
        model.save_pretrained(folder, variant="fp16")
        model = model.float()  # expected outputs: fp32 math on the fp16-rounded weights
        load_kwargs = dict(variant="fp16")
    elif layout == "sharded":
        model.save_pretrained(folder, max_shard_size="200KB")
    else:
        model.save_pretrained(folder)

    if hub_prefix:
        # transformers 5 saves a fresh CLIPTextModel without the "text_model." key prefix, but
        # hub checkpoints (SD1/SD2 text_encoder folders) have it; transformers loads both.
        rewrite_weights(folder, lambda t: {"text_model." + k: v for k, v in t.items()})
    if layout == "position_ids":
        # Older checkpoints also stored the position_ids buffer (int64 [1, 77]); loaders ignore it.
        def add_position_ids(t):
            assert "text_model.embeddings.position_ids" not in t
            return {**t, "text_model.embeddings.position_ids": torch.arange(77, dtype=torch.int64).unsqueeze(0)}

        rewrite_weights(folder, add_position_ids)

    expected = text_outputs(model, ids, mask)

    # The folder must load back in transformers and reproduce the outputs.
    loaded = cls.from_pretrained(folder, **load_kwargs).float().eval()
    compare(expected, text_outputs(loaded, ids, mask), f"{name} reload")

    tensors = {"input_ids": ids.contiguous(), "attention_mask": mask.contiguous(), **expected}
    save_file(
        tensors,
        os.path.join(CLIP_DIR, f"{name}.expected.safetensors"),
        metadata=metadata(prompts=PROMPTS, pad_token=pad_token, layout=layout, seed=seed),
    )
    return sorted(os.listdir(folder)), {k: list(v.shape) for k, v in tensors.items()}


# ---------------------------------------------------------------- vision

@torch.no_grad()
def vision_outputs(model, pixels):
    vm = model.vision_model
    o = vm(pixel_values=pixels, output_hidden_states=True)
    full = model(pixel_values=pixels)
    assert torch.equal(full.last_hidden_state, o.last_hidden_state)
    out = {
        "image_embeds": full.image_embeds,
        "last_hidden_state": o.last_hidden_state,
        "pooler_output": o.pooler_output,
        "hidden_states": torch.stack(o.hidden_states),
    }
    return {k: v.float().contiguous() for k, v in out.items()}


def make_vision(name, cfg_kwargs, seed):
    folder = os.path.join(CLIP_DIR, name)
    fresh_dir(folder)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg_kwargs)).eval()
    redraw_parameters(model, seed)
    model.save_pretrained(folder)
    s = cfg_kwargs["image_size"]
    pixels = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(seed + 1))
    expected = vision_outputs(model, pixels)
    loaded = CLIPVisionModelWithProjection.from_pretrained(folder).eval()
    compare(expected, vision_outputs(loaded, pixels), f"{name} reload")
    tensors = {"pixel_values": pixels.contiguous(), **expected}
    save_file(tensors, os.path.join(CLIP_DIR, f"{name}.expected.safetensors"), metadata=metadata(seed=seed))
    return sorted(os.listdir(folder)), {k: list(v.shape) for k, v in tensors.items()}


# ---------------------------------------------------------------- dtypes

def bits_to(dtype, bits):
    return torch.tensor(bits, dtype=torch.int32).to(torch.int16).view(dtype)


def u16(x):
    """uint16 bit pattern -> the int16 with the same bits (torch has no uint16 view for int16 ops)."""
    return x - 0x10000 if x >= 0x8000 else x


def make_dtypes():
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    g = torch.Generator().manual_seed(3000)
    # F16 special values by bit pattern.
    f16_special = [
        0x3C00,  # 1.0
        0xBC00,  # -1.0
        0x0000,  # +0
        0x8000,  # -0
        0x0001,  # smallest subnormal 2^-24
        0x8001,  # -2^-24
        0x03FF,  # largest subnormal
        0x0200,  # mid subnormal 2^-15
        0x0400,  # smallest normal 2^-14
        0x7BFF,  # max finite 65504
        0xFBFF,  # -65504
        0x7C00,  # +inf
        0xFC00,  # -inf
        0x3555,  # ~1/3
        0x4248,  # 3.140625
    ]
    f16 = torch.cat([bits_to(torch.float16, [u16(b) for b in f16_special]),
                     (torch.randn(17, generator=g) * 10).half()])
    bf16_special = [
        0x3F80,  # 1.0
        0xBF80,  # -1.0
        0x0000,  # +0
        0x8000,  # -0
        0x0001,  # smallest subnormal 2^-133
        0x8001,  # -2^-133
        0x007F,  # largest subnormal
        0x0080,  # smallest normal 2^-126
        0x7F7F,  # max finite ~3.39e38
        0xFF7F,  # -max finite
        0x7F80,  # +inf
        0xFF80,  # -inf
        0x3EAB,  # ~1/3
        0x4049,  # 3.140625
    ]
    bf16 = torch.cat([bits_to(torch.bfloat16, [u16(b) for b in bf16_special]),
                      (torch.randn(18, generator=g) * 1000).bfloat16()])
    f16_nan = bits_to(torch.float16, [u16(b) for b in (0x7E00, 0xFE00, 0x7C01, 0x3C00)])
    bf16_nan = bits_to(torch.bfloat16, [u16(b) for b in (0x7FC0, 0xFFC0, 0x7F81, 0x3F80)])
    f16_matrix = (torch.randn(5, 7, generator=g) * 3).half()
    src = {"f16": f16, "bf16": bf16, "f16_matrix": f16_matrix, "f16_nan": f16_nan, "bf16_nan": bf16_nan}
    note = "NaN tensors: compare with isNaN (payloads are not part of the contract)"
    save_file(src, os.path.join(WEIGHTS_DIR, "dtypes.safetensors"), metadata=metadata(note=note))
    exp = {k: v.float().contiguous() for k, v in src.items()}
    assert exp["f16"][3].item() == 0 and torch.signbit(exp["f16"][3])
    assert exp["f16"][4].item() == 2.0**-24 and exp["bf16"][4].item() == 2.0**-133
    assert exp["f16"][9].item() == 65504.0 and torch.isinf(exp["bf16"][10])
    save_file(exp, os.path.join(WEIGHTS_DIR, "dtypes.expected.safetensors"), metadata=metadata(note=note))
    return {k: (str(v.dtype), list(v.shape)) for k, v in src.items()}


# ---------------------------------------------------------------- main

def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(CLIP_DIR, exist_ok=True)
    report = {}
    for name, (cls, cfg, pad, seed) in TEXT_MODELS.items():
        report[name] = make_text(name, cls, cfg, pad, seed, hub_prefix=name in HUB_PREFIX)
    layouts = {"text-fp16-variant": "fp16", "text-sharded": "sharded", "text-position-ids": "position_ids"}
    for name, (base, seed) in TEXT_VARIANTS.items():
        cls, cfg, pad, _ = TEXT_MODELS[base]
        report[name] = make_text(name, cls, cfg, pad, seed, layout=layouts[name], hub_prefix=name in HUB_PREFIX)
    for name, (cfg, seed) in VISION_MODELS.items():
        report[name] = make_vision(name, cfg, seed)
    report["dtypes"] = make_dtypes()

    for name, value in report.items():
        print(name, json.dumps(value))
    print(f"clip fixtures: {dir_size(CLIP_DIR) / 1e6:.2f} MB, weights fixtures: {dir_size(WEIGHTS_DIR) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
