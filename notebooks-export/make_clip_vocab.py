"""Build the real CLIP BPE vocabulary and save it as two transformers tokenizer folders.

Source: open_clip's `bpe_simple_vocab_16e6.txt.gz` (the OpenAI CLIP merges file).
Vocabulary layout (as OpenAI CLIP and every Hugging Face CLIP checkpoint):
  0..255      the 256 byte characters (GPT-2 bytes_to_unicode order)
  256..511    the same characters + "</w>"
  512..49405  the 48894 merges, joined
  49406       <|startoftext|>
  49407       <|endoftext|>

Outputs (committed, shipped with the project):
  weights/clip-tokenizer/      OpenAI / Karlo style: pad token <|endoftext|> (49407)
  weights/clip-tokenizer-sd2/  Stable Diffusion 2 / stable unCLIP style: pad token "!" (id 0)
  Tests/Fixtures/tokenizer/tokenizer-json-only/tokenizer.json  (OpenAI style, as transformers saves it)

Each folder holds what real checkpoints hold: vocab.json, merges.txt, tokenizer_config.json,
special_tokens_map.json. transformers 5.x `save_pretrained` writes only tokenizer.json +
tokenizer_config.json, so vocab.json / merges.txt are written from the tokenizer transformers built
(and checked to round-trip through `CLIPTokenizer.from_pretrained`).

Run: venv/bin/python notebooks-export/make_clip_vocab.py
Optional: ftfy on PYTHONPATH for the open_clip comparison (open_clip cleans text with ftfy).
"""
import gzip
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types

from transformers import CLIPTokenizer

from clip_common import BPE_FILE, open_clip_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPE_PATH = open_clip_file(BPE_FILE)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode():
    """GPT-2 / CLIP byte -> printable character table (same as open_clip)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build_vocab():
    lines = gzip.open(BPE_PATH).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]  # exactly as OpenAI CLIP / open_clip slice it
    assert len(merges) == 48894, len(merges)
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    encoder = {tok: i for i, tok in enumerate(vocab)}
    assert len(encoder) == 49408 and encoder[BOS] == 49406 and encoder[EOS] == 49407
    return encoder, merges


def load_open_clip_tokenizer():
    """open_clip's SimpleTokenizer without importing the open_clip package (it needs torchvision)."""
    try:
        import ftfy  # noqa: F401
        have_ftfy = True
    except ImportError:
        # ftfy.fix_text is the identity on the plain strings compared below.
        sys.modules["ftfy"] = types.SimpleNamespace(fix_text=lambda s: s)
        have_ftfy = False
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", open_clip_file("tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(BPE_PATH), have_ftfy


def write_folder(tok, out_dir, encoder, merges, pad_token):
    """save_pretrained, then add vocab.json / merges.txt / special_tokens_map.json as real checkpoints have."""
    shutil.rmtree(out_dir, ignore_errors=True)
    tok.save_pretrained(out_dir)
    saved = json.load(open(os.path.join(out_dir, "tokenizer.json"), encoding="utf-8"))
    # The vocabulary / merges transformers actually holds must be the one we built.
    assert saved["model"]["vocab"] == encoder
    assert [" ".join(m) for m in saved["model"]["merges"]] == merges
    os.remove(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": BOS, "eos_token": EOS, "pad_token": pad_token, "unk_token": EOS}, f, indent=2)
        f.write("\n")


def main():
    encoder, merges = build_vocab()
    tmp = tempfile.mkdtemp()
    vocab_file, merges_file = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False)
    with open(merges_file, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")

    # NOTE: in transformers 5.x the keyword names are `vocab` / `merges` (paths or objects);
    # `CLIPTokenizer(vocab_file=..., merges_file=...)` silently builds a 3-token dummy vocabulary.
    styles = {
        "clip-tokenizer": EOS,  # OpenAI CLIP, Karlo
        "clip-tokenizer-sd2": "!",  # Stable Diffusion 2.x, stable unCLIP
    }
    open_clip_tok, have_ftfy = load_open_clip_tokenizer()
    checks = ["a photo of a cat", "A Photo Of A CAT, highly detailed!!", "it's 2024 — don't panic", "café naïve 東京 🐱",
              "an astronaut riding a horse on mars, trending on artstation, 8k"]
    for name, pad in styles.items():
        tok = CLIPTokenizer(vocab=vocab_file, merges=merges_file, pad_token=pad, model_max_length=77)
        assert len(tok) == 49408, len(tok)
        out_dir = os.path.join(ROOT, "weights", name)
        write_folder(tok, out_dir, encoder, merges, pad)
        loaded = CLIPTokenizer.from_pretrained(out_dir)
        assert loaded.pad_token == pad and loaded.model_max_length == 77
        print(f"{name}: pad={loaded.pad_token!r} id={loaded.pad_token_id} bos={loaded.bos_token_id} eos={loaded.eos_token_id} -> {out_dir}")
        for text in checks:
            ours = loaded(text)["input_ids"]
            ref = open_clip_tok.encode(text)
            ref = [49406] + ref + [49407]
            same = ours == ref
            # SD2 style makes "!" a special token, which changes how "!!" splits (see fixtures_tokenizer.py).
            if name == "clip-tokenizer":
                assert same, (text, ours, ref)
            print(f"  open_clip {'==' if same else '!='} transformers: {text!r} {ours}")

    # tokenizer.json-only fixture for the Swift loader (OpenAI style, exactly as transformers writes it).
    json_dir = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer", "tokenizer-json-only")
    shutil.rmtree(json_dir, ignore_errors=True)
    tok = CLIPTokenizer(vocab=vocab_file, merges=merges_file, model_max_length=77)
    tok.save_pretrained(tmp + "/fast")
    os.makedirs(json_dir)
    shutil.copy(tmp + "/fast/tokenizer.json", json_dir)
    print(f"open_clip comparison ran {'with' if have_ftfy else 'without (identity shim for)'} ftfy")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
