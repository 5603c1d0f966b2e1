"""Torch zip checkpoints (.ckpt) saved by real torch, their expected values, hostile pickles, and the fuzz corpus
of the restricted unpickler (Sources/UnCLIPWeights/Unpickler.swift).

Run from the repository root:
    /tmp/fullsize/venv/bin/python notebooks-export/fixtures_ckpt.py
(torch 2.13.0 CPU; numpy for the numpy scalar entry.)

Writes Tests/Fixtures/ckpt/:
  fp32.ckpt           torch.save(OrderedDict) of float32 tensors: contiguous, a transposed (non-contiguous) view,
                      a slice at a storage offset that shares its storage, a 0-dim scalar, an empty tensor,
                      an nn.Parameter. The archive folder is the file stem ("fp32").
  fp16.ckpt           float16 and bfloat16 tensors, saved through a BytesIO (archive folder "archive").
  sd_nested.ckpt      the original Stable Diffusion layout: {"state_dict": {model.* and model_ema.* (an EMA copy,
                      with the int model_ema.num_updates)}, "global_step", "epoch", "pytorch-lightning_version",
                      "callbacks": {<class ModelCheckpoint>: {...numpy scalar...}}, "hparams": ModelCheckpoint
                      instance}. The ModelCheckpoint class is a stand-in registered under Lightning's module path,
                      so the pickle names exactly the global a real sd-v1-5 checkpoint names.
  NAME.expected.safetensors   every tensor of NAME's state dict, as torch gives it (.float().contiguous());
                      integer tensors as int64 (they must be listed but refused as float tensors).
  legacy.pt           torch.save(..., _use_new_zipfile_serialization=False): the pre-1.6 format, to be refused.
  deflated.ckpt       fp32.ckpt re-zipped with ZIP_DEFLATED, to be refused with the method named.
  evil_system.ckpt    a valid torch zip whose data.pkl calls os.system("touch /tmp/unclip-pickle-marker-ran")
                      on load (checked here: torch.load(weights_only=False) of it creates the marker).
  evil_eval.ckpt      a state dict whose second value is builtins.eval("...") (an unknown global, nested).
  evil_deep_global.ckpt  subprocess.Popen hidden inside the args tuple of a tensor rebuild.
  bad_offset.ckpt     a tensor view whose storage offset reaches past the storage's element count.
  bad_storage_size.ckpt  a storage that claims more elements than its data entry has bytes.
  absurd_size.ckpt    a tensor of size (2**40, 2**40): the element count overflows.
  deep.ckpt           a 2000-level nested tuple in the state dict.
  manifest.json       file -> what the Swift test expects (loads, or the words its error must contain).
  vae-bin/            a diffusers component folder whose weights are only a torch.save'd
                      diffusion_pytorch_model.bin: tiny-sd-eps's VAE (fixtures_sd.py; run that first), same values.

Writes fuzz/corpus/unpickler/: raw pickles (data.pkl bodies): the valid fixtures' pickles, pickles of plain
Python values in protocols 2 and 4 (many refused: they use opcodes torch does not write), and the hostile ones.
The Swift replay test feeds every file through the unpickler: each must load or throw, never crash or hang.
"""

import collections
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import types
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join("Tests", "Fixtures", "ckpt")
CORPUS = os.path.join("fuzz", "corpus", "unpickler")
MARKER = "/tmp/unclip-pickle-marker-ran"


def gen(seed):
    return torch.Generator().manual_seed(seed)


def expected(name, sd):
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        out[k] = v.detach().to(torch.int64 if not v.is_floating_point() else torch.float32).contiguous().clone()
    save_file(out, os.path.join(OUT, name + ".expected.safetensors"))
    os.chmod(os.path.join(OUT, name + ".expected.safetensors"), 0o644)


def fp32_state():
    g = gen(1)
    base = torch.randn(4, 6, generator=g)
    sd = collections.OrderedDict()
    sd["layer.weight"] = torch.randn(3, 5, generator=g)
    sd["layer.bias"] = torch.randn(3, generator=g)
    sd["transposed"] = base.t()  # non-contiguous: strides (1, 6)
    sd["row_slice"] = base[1:3]  # shares base's storage at offset 6
    sd["col_slice"] = base[:, 2:5]  # non-contiguous slice at offset 2
    sd["scalar"] = torch.tensor(3.25)
    sd["empty"] = torch.zeros(0, 4)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, 2, generator=g))
    sd["conv.weight"] = torch.randn(2, 3, 3, 3, generator=g)
    return sd


def fp16_state():
    g = gen(2)
    sd = collections.OrderedDict()
    sd["half.weight"] = torch.randn(4, 3, generator=g).half()
    sd["half.transposed"] = torch.randn(3, 4, generator=g).half().t()
    sd["bf16.weight"] = torch.randn(5, generator=g).bfloat16()
    sd["f64.weight"] = torch.randn(2, 2, generator=g).double()
    return sd


class ModelCheckpoint:
    """A stand-in registered as pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint (not installed)."""

    def __init__(self):
        self.monitor = None
        self.best_model_score = np.float64(0.125)
        self.dirpath = "/logs/checkpoints"


def register_lightning():
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for n in names:
        sys.modules.setdefault(n, types.ModuleType(n))
    ModelCheckpoint.__module__ = names[-1]
    sys.modules[names[-1]].ModelCheckpoint = ModelCheckpoint


def sd_nested_state():
    g = gen(3)
    sd = collections.OrderedDict()
    for prefix in ["model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."]:
        sd[prefix + "a.weight"] = torch.randn(2, 3, generator=g)
        sd[prefix + "a.bias"] = torch.randn(2, generator=g)
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    # LitEma's copy: the dotted name with the dots removed, as ldm writes it.
    sd["model_ema.diffusion_modela.weight"] = torch.randn(2, 3, generator=g)
    sd["model_ema.diffusion_modela.bias"] = torch.randn(2, generator=g)
    return sd


def save(obj, name, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    return path


def zip_like_torch(path, pickle_bytes, storages=None, folder="archive"):
    """A torch-style archive (stored entries) around a hand-made data.pkl."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{folder}/data.pkl", pickle_bytes)
        z.writestr(f"{folder}/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"{folder}/data/{key}", data)
        z.writestr(f"{folder}/version", "3\n")


class Storage:
    def __init__(self, key, count, cls=torch.FloatStorage):
        self.key, self.count, self.cls = key, count, cls


class FakeTensor:
    """Pickles as torch does (REDUCE of _rebuild_tensor_v2), with any offset/size/stride we choose."""

    def __init__(self, storage, offset, size, stride, extra=None):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
        if extra is not None:
            self.args = self.args + (extra,)

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.count)
        return None


def torch_like_pickle(obj):
    buf = io.BytesIO()
    TorchLikePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def floats(n, seed):
    return torch.randn(n, generator=gen(seed)).numpy().tobytes()


def hostile():
    cases = {}
    # os.system on load: a real torch zip (the state dict beside it is fine).
    st = Storage("0", 4)
    evil = collections.OrderedDict(ok=FakeTensor(st, 0, [4], [1]), run=Evil(os.system, f"touch {MARKER}"))
    cases["evil_system.ckpt"] = (torch_like_pickle(evil), {"0": floats(4, 10)}, ["posix.system"])
    ev = collections.OrderedDict(ok=FakeTensor(st, 0, [4], [1]), nested={"inner": [1, Evil(eval, "1+1")]})
    cases["evil_eval.ckpt"] = (torch_like_pickle(ev), {"0": floats(4, 11)}, ["builtins.eval"])
    deep_global = collections.OrderedDict(w=FakeTensor(st, 0, [4], [1], extra=(1, (2, Evil(subprocess.Popen, "true")))))
    cases["evil_deep_global.ckpt"] = (torch_like_pickle(deep_global), {"0": floats(4, 12)}, ["subprocess.Popen"])
    cases["bad_offset.ckpt"] = (torch_like_pickle(collections.OrderedDict(w=FakeTensor(st, 3, [2], [1]))),
                                {"0": floats(4, 13)}, ["reaches element 4", "which has 4"])
    big = Storage("0", 1000)
    cases["bad_storage_size.ckpt"] = (torch_like_pickle(collections.OrderedDict(w=FakeTensor(big, 0, [4], [1]))),
                                      {"0": floats(4, 14)}, ["claims 1000 elements", "holds 16 bytes"])
    cases["absurd_size.ckpt"] = (torch_like_pickle(collections.OrderedDict(w=FakeTensor(Storage("0", 2**62), 0, [2**40, 2**40], [2**40, 1]))),
                                 {"0": floats(4, 15)}, ["overflow"])
    deep = b"\x80\x02}X\x01\x00\x00\x00d)" + b"\x85" * 2000 + b"s."
    cases["deep.ckpt"] = (deep, {}, ["nest deeper than"])
    return cases


def corpus_values():
    """Plain Python values whose pickles exercise opcodes beyond torch's (sets, floats, bytes, big ints, ...)."""
    return [
        None, True, 0, -1, 255, 65536, -(2**31), 2**63 - 1, 2**100, 1.5, float("inf"), "text", "ünï", b"\x00\x01",
        (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]], {}, {"a": 1, "b": [1.0, None]}, {1, 2},
        frozenset([3]), collections.OrderedDict(a=1), bytearray(b"xy"), complex(1, 2), range(3),
    ]


def write_corpus(valid_ckpts, hostile_cases):
    if os.path.exists(CORPUS):
        shutil.rmtree(CORPUS)
    os.makedirs(CORPUS)
    n = 0
    for path in valid_ckpts:
        with zipfile.ZipFile(path) as z:
            name = [x for x in z.namelist() if x.endswith("/data.pkl")][0]
            open(os.path.join(CORPUS, f"valid-{os.path.basename(path)}.pkl"), "wb").write(z.read(name))
            n += 1
    for name, (pkl, _, _) in hostile_cases.items():
        if len(pkl) < 20000:
            open(os.path.join(CORPUS, f"hostile-{name}.pkl"), "wb").write(pkl)
            n += 1
    for i, v in enumerate(corpus_values()):
        for proto in (2, 4):
            open(os.path.join(CORPUS, f"value{i:02d}-p{proto}.pkl"), "wb").write(pickle.dumps(v, protocol=proto))
            n += 1
    # Truncations and byte flips of a valid pickle (deterministic).
    src = open(os.path.join(CORPUS, "valid-fp32.ckpt.pkl"), "rb").read()
    for cut in (0, 1, 2, 10, 50, len(src) // 2, len(src) - 1):
        open(os.path.join(CORPUS, f"truncated-{cut}.pkl"), "wb").write(src[:cut])
        n += 1
    g = np.random.default_rng(19)
    for i in range(8):
        b = bytearray(src)
        for _ in range(3):
            b[g.integers(len(b))] = int(g.integers(256))
        open(os.path.join(CORPUS, f"flipped-{i:02d}.pkl"), "wb").write(bytes(b))
        n += 1
    return n


def main():
    torch.manual_seed(0)
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    register_lightning()
    manifest = {}

    sd = fp32_state()
    save(sd, "fp32.ckpt")
    expected("fp32", sd)
    manifest["fp32.ckpt"] = {"loads": True, "archive": "fp32"}

    sd16 = fp16_state()
    buf = io.BytesIO()
    torch.save(sd16, buf)
    open(os.path.join(OUT, "fp16.ckpt"), "wb").write(buf.getvalue())
    expected("fp16", sd16)
    manifest["fp16.ckpt"] = {"loads": True, "archive": "archive"}

    nested = sd_nested_state()
    obj = {"epoch": 4, "global_step": 123, "pytorch-lightning_version": "1.4.2", "state_dict": nested,
           "callbacks": {ModelCheckpoint: {"monitor": None, "best_model_score": np.float64(0.5), "dirpath": "/logs"}},
           "hparams": ModelCheckpoint()}
    save(obj, "sd_nested.ckpt")
    expected("sd_nested", nested)
    manifest["sd_nested.ckpt"] = {"loads": True, "archive": "sd_nested", "global_step": 123}

    save(sd, "legacy.pt", _use_new_zipfile_serialization=False)
    manifest["legacy.pt"] = {"loads": False, "error": ["legacy (pre-1.6"]}
    with zipfile.ZipFile(os.path.join(OUT, "fp32.ckpt")) as src, \
            zipfile.ZipFile(os.path.join(OUT, "deflated.ckpt"), "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    manifest["deflated.ckpt"] = {"loads": False, "error": ["compressed (zip method 8)", "fp32/"]}

    cases = hostile()
    for name, (pkl, storages, words) in cases.items():
        zip_like_torch(os.path.join(OUT, name), pkl, storages)
        manifest[name] = {"loads": False, "error": words}

    # The hostile fixtures are live: torch's unrestricted loader runs them.
    if os.path.exists(MARKER):
        os.remove(MARKER)
    torch.load(os.path.join(OUT, "evil_system.ckpt"), weights_only=False)
    assert os.path.exists(MARKER), "evil_system.ckpt did not run os.system under torch.load"
    os.remove(MARKER)
    # Real torch loads the valid files and gives the expected values (self-check of this script).
    for name in ["fp32", "fp16", "sd_nested"]:
        got = torch.load(os.path.join(OUT, name + ".ckpt"), weights_only=False)
        got = got["state_dict"] if "state_dict" in got else got
        from safetensors.torch import load_file
        want = load_file(os.path.join(OUT, name + ".expected.safetensors"))
        assert set(want) == set(got), name
        for k in want:
            assert torch.equal(got[k].to(want[k].dtype), want[k]), (name, k)

    from safetensors.torch import load_file as load_safetensors
    vae_bin = os.path.join(OUT, "vae-bin")
    os.makedirs(vae_bin)
    src = os.path.join("Tests", "Fixtures", "sd", "tiny-sd-eps", "vae")
    shutil.copy(os.path.join(src, "config.json"), vae_bin)
    torch.save(load_safetensors(os.path.join(src, "diffusion_pytorch_model.safetensors")), os.path.join(vae_bin, "diffusion_pytorch_model.bin"))

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"about": "written by notebooks-export/fixtures_ckpt.py; torch " + torch.__version__,
                   "marker": MARKER, "files": manifest}, f, indent=1, sort_keys=True)
    n = write_corpus([os.path.join(OUT, x) for x in ["fp32.ckpt", "fp16.ckpt", "sd_nested.ckpt"]], cases)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {len(os.listdir(OUT))} files ({total} bytes) to {OUT}, {n} corpus files to {CORPUS}")


if __name__ == "__main__":
    main()
