"""Full-size CLIP text encoders: our Swift CLI vs transformers, accuracy and speed.

Run by hand (not in CI), from the repository root, after `swift build -c release`:

    venv/bin/python notebooks-export/check_fullsize_clip.py
    venv/bin/python notebooks-export/check_fullsize_clip.py --models vitl --threads 2 --keep

For each model it builds the real architecture with seeded random weights (no download),
saves it as a transformers folder (fp32 safetensors, hub key layout) plus a tokenizer folder,
runs transformers (median of --repeat runs, torch.set_num_threads(n) for each n in --threads),
then runs

    .build/release/unclip encode-text --text-encoder DIR --tokenizer TOKDIR \\
        --output OUT.safetensors --repeat 5 "PROMPT" ["PROMPT2"]

which must write last_hidden_state, pooler_output, text_embeds (if projection) and print a JSON
line containing "seconds_per_run" (median). The CLI run gets OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS = n; pass its own thread flag with --cli-args if it has one.

Models:
  vitl  OpenAI CLIP ViT-L/14 text tower (SD1, Karlo / stable-unCLIP prior):
        CLIPTextModelWithProjection, 12 layers, width 768, 12 heads, 3072, quick_gelu,
        projection 768; config as openai/clip-vit-large-patch14 (bos 0, eos 2, pad 1);
        tokenizer pads with <|endoftext|> (49407).
  sd2   OpenCLIP ViT-H/14 text tower as Stable Diffusion 2.x / stable-unCLIP use it:
        CLIPTextModel, 23 layers, width 1024, 16 heads, 4096, gelu; config as in SD2's
        text_encoder/config.json (checked against a copy of stable-diffusion-2-1-base: bos 0,
        eos 2 -> legacy argmax pooling, pad_token_id 1, projection_dim 512 unused). The SD2
        tokenizer pads with "!" (id 0, from its special_tokens_map.json); config pad_token_id
        does not affect the encoder's output.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_common import build_clip_tokenizer, redraw_parameters, save_tokenizer_folder  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = {
    "vitl": dict(
        cls=CLIPTextModelWithProjection,
        config=dict(vocab_size=49408, max_position_embeddings=77, hidden_size=768, num_attention_heads=12,
                    num_hidden_layers=12, intermediate_size=3072, projection_dim=768, hidden_act="quick_gelu",
                    layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1),
        pad_token="<|endoftext|>",
        seed=7001,
    ),
    "sd2": dict(
        cls=CLIPTextModel,
        config=dict(vocab_size=49408, max_position_embeddings=77, hidden_size=1024, num_attention_heads=16,
                    num_hidden_layers=23, intermediate_size=4096, projection_dim=512, hidden_act="gelu",
                    layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1),
        pad_token="!",
        seed=7002,
    ),
}

PROMPT_SETS = [
    ["a photo of an astronaut riding a horse on mars"],
    [
        "a photo of an astronaut riding a horse on mars",
        "A highly detailed oil painting of a quiet harbour town at dusk, fishing boats with red and "
        "blue sails resting on calm water, warm lights glowing in the windows of old stone houses, "
        "seagulls circling above the lighthouse, mountains covered in snow far in the background",
    ],
]


def build_folder(name, spec, workdir):
    """Random full-size model saved like a hub text_encoder folder; returns (model, dir, tokdir)."""
    model = spec["cls"](CLIPTextConfig(**spec["config"])).eval()
    redraw_parameters(model, spec["seed"])
    folder = os.path.join(workdir, name, "text_encoder")
    model.save_pretrained(folder)
    path = os.path.join(folder, "model.safetensors")
    with safe_open(path, "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    if not any(k.startswith("text_model.") for k in keys):
        # transformers 5 drops the "text_model." prefix for a fresh CLIPTextModel; hub
        # checkpoints (SD2 text_encoder) have it, so write that layout.
        tensors = load_file(path)
        save_file({"text_model." + k: v for k, v in tensors.items()}, path, metadata=meta)
        del tensors
    tokdir = os.path.join(workdir, name, "tokenizer")
    save_tokenizer_folder(build_clip_tokenizer(spec["pad_token"]), tokdir)
    return model, folder, tokdir


@torch.no_grad()
def torch_reference(model, tok, prompts, threads, repeat):
    """Outputs (no attention mask, as diffusers' pipelines call it) and median forward seconds."""
    torch.set_num_threads(threads)
    ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    for _ in range(2):  # warm-up (thread pool, allocator)
        model(input_ids=ids)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = model(input_ids=ids)
        times.append(time.perf_counter() - start)
    inner = getattr(model, "text_model", model)
    base = inner(input_ids=ids)
    ref = {"last_hidden_state": base.last_hidden_state, "pooler_output": base.pooler_output}
    if hasattr(out, "text_embeds") and out.text_embeds is not None:
        ref["text_embeds"] = out.text_embeds
    return ref, statistics.median(times)


def run_cli(cli, folder, tokdir, prompts, threads, repeat, out_path, extra_args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [cli, "encode-text", "--text-encoder", folder, "--tokenizer", tokdir, "--output", out_path,
           "--repeat", str(repeat), *extra_args, *prompts]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"CLI failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    seconds = None
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{") and "seconds_per_run" in line:
            seconds = float(json.loads(line)["seconds_per_run"])
    if seconds is None:
        raise RuntimeError(f"no JSON line with seconds_per_run in CLI stdout:\n{proc.stdout[-2000:]}")
    return load_file(out_path), seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vitl,sd2", help="comma list from: " + ",".join(MODELS))
    ap.add_argument("--threads", default="2,1", help="comma list of thread counts")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cli", default=os.path.join(ROOT, ".build", "release", "unclip"))
    ap.add_argument("--cli-args", default="", help="extra CLI arguments, split on spaces")
    ap.add_argument("--skip-cli", action="store_true", help="only build folders and time transformers")
    ap.add_argument("--workdir", default=None, help="where to write the folders (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()

    torch.manual_seed(0)
    threads_list = [int(t) for t in args.threads.split(",")]
    run_cli_too = not args.skip_cli
    if run_cli_too and not os.access(args.cli, os.X_OK):
        print(f"note: {args.cli} not found or not executable; timing transformers only", file=sys.stderr)
        run_cli_too = False

    workdir = args.workdir or tempfile.mkdtemp(prefix="unclip-fullsize-clip-")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    try:
        for name in args.models.split(","):
            spec = MODELS[name]
            t0 = time.perf_counter()
            model, folder, tokdir = build_folder(name, spec, workdir)
            print(f"[{name}] built and saved in {time.perf_counter() - t0:.1f}s: {folder}", file=sys.stderr)
            tok = build_clip_tokenizer(spec["pad_token"])
            for prompts in PROMPT_SETS:
                for threads in threads_list:
                    ref, torch_s = torch_reference(model, tok, prompts, threads, args.repeat)
                    row = dict(model=name, batch=len(prompts), threads=threads, torch_s=torch_s)
                    if run_cli_too:
                        out_path = os.path.join(workdir, f"{name}-b{len(prompts)}-t{threads}.safetensors")
                        ours, ours_s = run_cli(args.cli, folder, tokdir, prompts, threads, args.repeat,
                                               out_path, args.cli_args.split())
                        row["ours_s"] = ours_s
                        row["ratio"] = ours_s / torch_s
                        for key, value in ref.items():
                            if key not in ours:
                                row[key] = "MISSING"
                            elif tuple(ours[key].shape) != tuple(value.shape):
                                row[key] = f"shape {list(ours[key].shape)} != {list(value.shape)}"
                            else:
                                row[key] = (ours[key].float() - value).abs().max().item()
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
            del model
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print_table(rows)


def print_table(rows):
    cols = ["model", "batch", "threads", "torch_s", "ours_s", "ratio",
            "last_hidden_state", "pooler_output", "text_embeds"]
    head = ["model", "batch", "thr", "torch s/run", "ours s/run", "ours/torch",
            "max|d| last_hidden", "max|d| pooler", "max|d| text_embeds"]

    def fmt(col, v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3e}" if col not in ("torch_s", "ours_s", "ratio") else f"{v:.4f}"
        return str(v)

    table = [head] + [[fmt(c, r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    for i, line in enumerate(table):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
