"""Shared helpers for the prior / unCLIP fixture scripts (run with venv/bin/python from the repository root).

- `randomize_`: re-draws EVERY parameter of a torch module (diffusers zero-initialises several
  layers and sets norms to 1/0, which would hide bugs such as a missing bias or a skipped norm).
- `save_clip_tokenizer`: a transformers CLIPTokenizer built from open_clip's BPE vocabulary (the same
  49408-token vocabulary as openai/clip-vit-large-patch14 and SD2's tokenizer; clip_common.py rebuilds it).
- `RandnLog`: records every `randn_tensor` draw diffusers makes (module, shape, value) in order.
"""

import json
import math
import os
import shutil

import torch
from torch import nn

from clip_common import clip_vocab_and_merges

# Name fragments of parameters that are plain nn.Parameter attributes rather than weights of
# Linear/Conv/Embedding/Norm modules, with how to draw them.
_POSITIVE = ("clip_std", "std")  # scales: must stay positive


def randomize_(module: nn.Module, seed: int, linear_gain: float = 1.0, overrides: dict | None = None) -> None:
    """Re-draw all parameters of `module` in place so that activations stay O(1).

    Linear / conv weights ~ N(0, gain^2 / fan_in); biases ~ N(0, 0.1^2); norm weights ~ 1 + N(0, 0.25^2),
    norm biases ~ N(0, 0.1^2); embeddings and free parameters ~ N(0, 0.5^2); `*std` parameters ~ 0.5 + U(0, 1).
    `overrides` maps a full parameter name to a gain replacing `linear_gain` for that weight.
    Raises if any parameter is left untouched.
    """
    g = torch.Generator().manual_seed(seed)
    overrides = overrides or {}
    done = set()

    def normal(p, std, mean=0.0):
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * std + mean)

    for mname, m in module.named_modules():
        prefix = mname + "." if mname else ""
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            if m.weight is not None:
                normal(m.weight, 0.25, 1.0)
                done.add(prefix + "weight")
            if m.bias is not None:
                normal(m.bias, 0.1)
                done.add(prefix + "bias")
        elif isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d)):
            fan_in = m.weight[0].numel()
            gain = overrides.get(prefix + "weight", linear_gain)
            normal(m.weight, gain / math.sqrt(fan_in))
            done.add(prefix + "weight")
            if m.bias is not None:
                normal(m.bias, 0.1)
                done.add(prefix + "bias")
        elif isinstance(m, nn.Embedding):
            normal(m.weight, 0.5)
            done.add(prefix + "weight")

    for name, p in module.named_parameters():
        if name in done:
            continue
        leaf = name.split(".")[-1]
        if leaf in _POSITIVE:
            with torch.no_grad():
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
        else:
            normal(p, 0.5)
        done.add(name)

    missing = [n for n, _ in module.named_parameters() if n not in done]
    assert not missing, f"parameters not randomised: {missing}"


def assert_all_random(state: dict, where: str) -> None:
    """Fail if a saved tensor still looks like a default init (constant 0 or 1 everywhere)."""
    for k, v in state.items():
        if v.numel() > 1 and v.float().std() == 0:
            raise AssertionError(f"{where}: tensor {k} is constant ({v.flatten()[0].item()})")


def save_clip_tokenizer(folder: str, pad_token: str = "<|endoftext|>"):
    """Save a CLIPTokenizer into `folder` in the layout the published repos use
    (vocab.json + merges.txt + tokenizer_config.json + special_tokens_map.json) and return it
    reloaded from there, so the caller uses exactly what is committed.

    transformers 5's `save_pretrained` writes only tokenizer.json (3.6 MB); we keep the
    tokenizer_config.json it writes, but replace tokenizer.json by the 1.5 MB vocab/merges pair,
    which is what karlo-v1-alpha and stable-diffusion-2-1-unclip ship.
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    tmp = folder + ".raw"
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer.from_pretrained(tmp, model_max_length=77, pad_token=pad_token)
    tok.save_pretrained(folder)
    os.remove(os.path.join(folder, "tokenizer.json"))
    for f in ("vocab.json", "merges.txt"):
        shutil.move(os.path.join(tmp, f), os.path.join(folder, f))
    shutil.rmtree(tmp)
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    cfg = json.load(open(cfg_path))
    for k in ("is_local", "local_files_only"):  # machine-local noise written by save_pretrained
        cfg.pop(k, None)
    json.dump(cfg, open(cfg_path, "w"), indent=2, sort_keys=True)
    special = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    json.dump(special, open(os.path.join(folder, "special_tokens_map.json"), "w"), indent=2)
    reloaded = CLIPTokenizer.from_pretrained(folder)
    probe = ["a photo of an astronaut riding a horse, Hello WORLD!!  café", ""]
    assert reloaded(probe, padding="max_length", max_length=77).input_ids == tok(
        probe, padding="max_length", max_length=77
    ).input_ids
    assert reloaded.pad_token == pad_token and reloaded.model_max_length == 77
    return reloaded


class RandnLog:
    """Wraps diffusers' `randn_tensor` in the given modules and records every draw in call order."""

    def __init__(self, modules):
        from diffusers.utils.torch_utils import randn_tensor

        self._orig = randn_tensor
        self._modules = modules
        self.draws = []  # (module short name, tensor)

    def __enter__(self):
        for mod in self._modules:
            short = mod.__name__.split(".")[-1]

            def wrapped(*args, _short=short, **kwargs):
                out = self._orig(*args, **kwargs)
                self.draws.append((_short, out.detach().clone()))
                return out

            mod.randn_tensor = wrapped
        return self

    def __exit__(self, *exc):
        for mod in self._modules:
            mod.randn_tensor = self._orig
        return False


def tensor_info(t: torch.Tensor) -> dict:
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
