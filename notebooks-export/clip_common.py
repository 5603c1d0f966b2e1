"""Shared helpers for the CLIP fixture scripts (fixtures_clip.py, check_fullsize_clip.py).

- `build_clip_tokenizer`: a transformers CLIPTokenizer built from open_clip's BPE file, so no
  hub download is needed. open_clip itself is not imported (it needs torchvision); the vocab
  is rebuilt exactly like open_clip's SimpleTokenizer does.
- `redraw_parameters`: overwrite every parameter of a CLIP model with seeded random values of
  O(1)-preserving magnitude, so that no parameter keeps a constant default (LayerNorm 1/0 ...).
"""

import gzip
import importlib.util
import math
import os

import torch
from transformers import CLIPTokenizer



def open_clip_file(name):
    """Path of a file inside the open_clip package of the running interpreter (README: `venv/` at the
    repository root), found without importing the package (its __init__ needs torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed for this interpreter; set up venv/ as README's "
                                "'Reference fixtures' says (venv/bin/pip install --no-deps open-clip-torch)")
    return os.path.join(list(spec.submodule_search_locations)[0], name)


BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


def _bytes_to_unicode():
    """GPT-2/CLIP byte -> printable unicode char table (same as open_clip.tokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_and_merges(bpe_path=None):
    """Returns (vocab dict token->id, merges list of "a b" strings), 49408 tokens as in open_clip."""
    lines = gzip.open(bpe_path or open_clip_file(BPE_FILE)).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    units = list(_bytes_to_unicode().values())
    tokens = units + [u + "</w>" for u in units]
    tokens += ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == 49408, len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408
    return vocab, merges


def build_clip_tokenizer(pad_token="<|endoftext|>"):
    """CLIPTokenizer (transformers, tokenizers backend) from open_clip's vocab.

    pad_token "<|endoftext|>" (id 49407) = OpenAI CLIP / SD1 convention,
    pad_token "!" (id 0) = Stable Diffusion 2 convention.
    """
    vocab, merges = clip_vocab_and_merges()
    pairs = [tuple(m.split()) for m in merges]
    tok = CLIPTokenizer(vocab=vocab, merges=pairs, pad_token=pad_token, model_max_length=77)
    assert tok.convert_tokens_to_ids("<|startoftext|>") == 49406
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 49407
    assert tok.convert_tokens_to_ids("!") == 0
    return tok


def save_tokenizer_folder(tok, folder):
    """save_pretrained plus the classic vocab.json / merges.txt pair (what hub CLIP repos ship)."""
    import json

    os.makedirs(folder, exist_ok=True)
    tok.save_pretrained(folder)
    vocab, merges = clip_vocab_and_merges()
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def _is_layer_norm(name):
    return any(s in name for s in ("layer_norm", "layernorm", "layrnorm"))


@torch.no_grad()
def redraw_parameters(model, seed):
    """Re-draw every parameter with a seeded generator.

    Linear / conv weights: N(0, 1/fan_in) keeps each output component O(1) for O(1) inputs.
    LayerNorm: weight 1 + 0.1 N, bias 0.1 N.  Biases: 0.1 N.
    Embeddings (token, position, class): 0.5 N (pre-LN residual stream, so O(1) is fine).
    Every parameter must match one rule (asserted), so new parameter kinds cannot slip by.
    """
    g = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=g, dtype=torch.float32)

    for name, p in model.named_parameters():
        if _is_layer_norm(name):
            if name.endswith(".weight"):
                new = 1.0 + 0.1 * randn(p.shape)
            else:
                assert name.endswith(".bias"), name
                new = 0.1 * randn(p.shape)
        elif name.endswith(".bias"):
            new = 0.1 * randn(p.shape)
        elif name.endswith(("token_embedding.weight", "position_embedding.weight", "class_embedding")):
            new = 0.5 * randn(p.shape)
        elif name.endswith("patch_embedding.weight"):
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            new = randn(p.shape) / math.sqrt(fan_in)
        elif name.endswith(".weight") and p.dim() == 2:
            new = randn(p.shape) / math.sqrt(p.shape[1])
        else:
            raise ValueError(f"no redraw rule for parameter {name} {tuple(p.shape)}")
        p.copy_(new.to(p.dtype))
