"""Shared machinery of the by-hand full-size checks (check_fullsize_prior.py, check_fullsize_unet_vae.py).

Both sides run in their own subprocess that only loads one component and runs it, so that peak
memory is comparable. Peak RSS is each process's own VmHWM from /proc/self/status, read at its end
(run-model prints it as peak_rss_bytes; the worker below reads it the same way). NOT ru_maxrss:
on Linux a process's ru_maxrss (getrusage, or os.wait4 in the parent) keeps the high-water mark of
the address space it had before execve, i.e. of the forked Python parent, which here is ~350 MB
with torch imported and several GB after building a full-size model - a tiny run-model child then
"peaks" at the parent's size. VmHWM belongs to the new address space and starts from zero at exec.

  diffusers side:  python fullsize_common.py worker --kind KIND --model DIR --inputs IN --output OUT
                       --threads N --repeat R [--variant fp16]
                   loads the component with from_pretrained (a --variant is loaded as torch.float32,
                   i.e. fp16-rounded weights computed in fp32), runs it R times under
                   torch.set_num_threads(N), writes the last output and prints one JSON line.
  our side:        .build/release/unclip run-model --kind KIND --model DIR --inputs IN --output OUT
                       --repeat R [--variant fp16]
                   with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS = N.

With N smaller than the machine's CPU count both sides also run under `taskset -c 0-(N-1)`, so
neither can use more cores than it is told to.

Timing: both report the "median" of R runs the way run-model computes it, sorted(times)[R // 2]
(for R = 2 that is the slower run). run-model has no warm-up run, so by default neither has the
worker (--warmup exists for experiments). Load time is reported separately by both.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CLI = os.path.join(ROOT, ".build", "release", "unclip")

# kind -> (name of the output tensor in our run-model file, in the reference file)
OUTPUT_NAME = {
    "prior": "predicted_image_embedding",
    "unet": "sample",
    "vae-decode": "sample",
    "vae-encode": "latent_mean",
}


def _pinned(cmd, threads):
    if threads < (os.cpu_count() or threads):
        return ["taskset", "-c", f"0-{threads - 1}", *cmd]
    return cmd


def _run_measured(cmd, env):
    """Run `cmd`, return (returncode, stdout, stderr, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start


def vmhwm_bytes():
    """This process's peak resident set (VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _json_line(stdout, key):
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and key in line:
            return json.loads(line)
    return None


def diffusers_run(kind, model_dir, inputs, output, threads, repeat, variant=None, warmup=0):
    """Time diffusers in a fresh subprocess; returns a dict with seconds_per_run, load_seconds, peak_rss_bytes."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, os.path.abspath(__file__), "worker", "--kind", kind, "--model", model_dir,
           "--inputs", inputs, "--output", output, "--threads", str(threads), "--repeat", str(repeat),
           "--warmup", str(warmup)]
    if variant:
        cmd += ["--variant", variant]
    rc, out, err, wall = _run_measured(_pinned(cmd, threads), env)
    info = _json_line(out, "seconds_per_run")
    if rc != 0 or info is None:
        raise RuntimeError(f"diffusers worker failed ({rc}): {' '.join(cmd)}\n{err[-3000:]}")
    info["wall_seconds"] = wall
    return info


def ours_run(cli, kind, model_dir, inputs, output, threads, repeat, variant=None):
    """Time our run-model in a subprocess; returns its JSON line (seconds_per_run, load_seconds, peak_rss_bytes) plus wall_seconds."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [cli, "run-model", "--kind", kind, "--model", model_dir, "--inputs", inputs, "--output", output,
           "--repeat", str(repeat)]
    if variant:
        cmd += ["--variant", variant]
    rc, out, err, wall = _run_measured(_pinned(cmd, threads), env)
    info = _json_line(out, "seconds_per_run")
    if rc != 0 or info is None:
        raise RuntimeError(f"run-model failed ({rc}): {' '.join(cmd)}\n{err[-3000:]}\n{out[-1000:]}")
    info["wall_seconds"] = wall
    return info


def compare(ours, ref):
    """Max |difference|, and the same relative to max |ref| (both floats); shapes must agree."""
    if tuple(ours.shape) != tuple(ref.shape):
        raise RuntimeError(f"shape mismatch: ours {list(ours.shape)} vs diffusers {list(ref.shape)}")
    d = (ours.float() - ref.float()).abs().max().item()
    scale = ref.float().abs().max().item()
    return d, d / scale if scale > 0 else float("nan")


def fmt_bytes(n):
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def print_table(rows, cols):
    """rows: dicts; cols: (key, header, format) with format a callable or None."""
    table = [[h for _, h, _ in cols]]
    for r in rows:
        line = []
        for key, _, f in cols:
            v = r.get(key)
            if v is None:
                line.append("-")
            elif f is not None:
                line.append(f(v))
            elif isinstance(v, float):
                line.append(f"{v:.3g}")
            else:
                line.append(str(v))
        table.append(line)
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    for i, line in enumerate(table):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


# ---------------------------------------------------------------------------------------------
# The diffusers worker (runs in its own process)
# ---------------------------------------------------------------------------------------------

def _worker(argv):
    ap = argparse.ArgumentParser(prog="fullsize_common.py worker")
    ap.add_argument("--kind", required=True, choices=sorted(OUTPUT_NAME))
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--variant", default=None)
    a = ap.parse_args(argv)

    import torch
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    x = load_file(a.inputs)
    start = time.perf_counter()
    kw = dict(variant=a.variant, torch_dtype=torch.float32) if a.variant else {}
    if a.kind == "prior":
        from diffusers import PriorTransformer

        m = PriorTransformer.from_pretrained(a.model, **kw).eval()

        def fwd():
            mask = x["attention_mask"].bool() if "attention_mask" in x else None  # pipelines pass bool
            return m(x["hidden_states"], timestep=x["timestep"], proj_embedding=x["proj_embedding"],
                     encoder_hidden_states=x["encoder_hidden_states"], attention_mask=mask).predicted_image_embedding
    elif a.kind == "unet":
        from diffusers import UNet2DConditionModel

        m = UNet2DConditionModel.from_pretrained(a.model, **kw).eval()

        def fwd():
            return m(x["sample"], x["timestep"], encoder_hidden_states=x["encoder_hidden_states"],
                     class_labels=x.get("class_labels")).sample
    else:
        from diffusers import AutoencoderKL

        m = AutoencoderKL.from_pretrained(a.model, **kw).eval()
        if a.kind == "vae-decode":
            def fwd():
                return m.decode(x["latents"]).sample
        else:
            def fwd():
                return m.encode(x["sample"]).latent_dist.mean
    load_seconds = time.perf_counter() - start
    for _ in range(a.warmup):
        fwd()
    times, y = [], None
    for _ in range(max(1, a.repeat)):
        s = time.perf_counter()
        y = fwd()
        times.append(time.perf_counter() - s)
    save_file({OUTPUT_NAME[a.kind]: y.contiguous()}, a.output)
    print(json.dumps({"kind": a.kind, "load_seconds": load_seconds,
                      "seconds_per_run": sorted(times)[len(times) // 2], "true_median": statistics.median(times),
                      "runs": len(times), "torch_threads": torch.get_num_threads(),
                      "peak_rss_bytes": vmhwm_bytes()}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _worker(sys.argv[2:])
    else:
        print(__doc__)
