"""Reference values of torch's CPU generator for Tests/UnCLIPRandomTests.

Run with the reference environment (torch 2.13 CPU):
    venv/bin/python notebooks-export/fixtures_rng.py

Writes Tests/Fixtures/rng/manifest.json and Tests/Fixtures/rng/values.bin. Every case starts from
`torch.Generator().manual_seed(seed)` and runs a list of operations on that one generator; each
operation's output is stored little-endian in values.bin at the byte offset the manifest gives.
Operations: randn (float32 or float64), rand (float32), randint (int64, [low, high)) and
manual_seed (reseeds the same generator mid-stream, no output).

Note: torch's float32 randn of >= 16 elements runs its AVX2 kernel on any x86 CPU with AVX2
(normal_stub is not dispatched to AVX512), so the values are the same on AVX2 and AVX512 machines;
a CPU without AVX2 (ATEN_CPU_CAPABILITY=default) would give values differing by ~1 ulp.
"""

import json
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "rng")

SEEDS = [0, 1, 42, 2**32 - 1, 2**40 + 123, 2**64 - 1]
RANDN_SIZES = [[1], [2], [15], [16], [17], [31], [32], [33], [1000]]
BIG_SHAPE = [4, 64, 64]
BIG_SEEDS = [0, 42]
RAND_SIZES = [[1], [17], [1000]]
RANDINT_CASES = [  # (low, high, count): ranges on both sides of torch's 2^28 switch to 64-bit words
    (0, 1000, 50),
    (-5, 5, 17),
    (0, 2, 30),
    (0, 2**28 - 1, 10),
    (0, 2**28, 10),
    (0, 2**28 + 1, 10),
    (0, 2**32, 8),
    (-(2**40), 2**40, 20),
    (-(2**63), 2**63 - 1, 10),
]

# Several calls on one generator: checks that the stream continues and that the cached second
# Box-Muller output of the scalar (< 16 elements) path is kept, shared with float64, untouched by
# the >= 16 path and dropped by manual_seed.
SEQUENCES = {
    "sequence_a": (1234, [
        ("randn", [3]), ("randn", [20]), ("rand", [5]), ("randn", [16]),
        ("randint", 0, 1000, [7]), ("randn", [1]), ("randn", [1]), ("randn", [2]),
        ("rand", [1]), ("randn", [17]), ("randint", 0, 2**40, [3]), ("randn", [5]),
        ("randn64", [3]), ("randn64", [1]), ("randn64", [20]), ("randn", [2, 3]),
        ("manual_seed", 7), ("randn", [1]), ("randn", [1]), ("randn", [1000]), ("randn", [4, 4, 4]),
    ]),
    "sequence_b": (0, [  # crosses several 624-word refills, with a cached normal spanning a big call
        ("rand", [620]), ("randn", [3]), ("rand", [1]), ("randint", -3, 3, [700]),
        ("randn", [1]), ("randn", [32]), ("randn", [1]), ("randn", [1]),
        ("randn", [1250]), ("randint", 0, 2**30, [300]), ("randn", [7]),
    ]),
}


class Writer:
    def __init__(self):
        self.blob = bytearray()
        self.cases = []

    def run_case(self, name, seed, ops):
        g = torch.Generator().manual_seed(seed)
        records = []
        for op in ops:
            kind = op[0]
            if kind == "manual_seed":
                g.manual_seed(op[1])
                records.append({"op": "manual_seed", "seed": op[1]})
                continue
            if kind == "randn":
                t, rec = torch.randn(op[1], generator=g), {"op": "randn", "shape": op[1]}
            elif kind == "randn64":
                t = torch.randn(op[1], generator=g, dtype=torch.float64)
                rec = {"op": "randn", "shape": op[1]}
            elif kind == "rand":
                t, rec = torch.rand(op[1], generator=g), {"op": "rand", "shape": op[1]}
            elif kind == "randint":
                t = torch.randint(op[1], op[2], op[3], generator=g)
                rec = {"op": "randint", "low": op[1], "high": op[2], "shape": op[3]}
            else:
                raise ValueError(kind)
            arr = t.numpy()
            dtype = {np.float32: "float32", np.float64: "float64", np.int64: "int64"}[arr.dtype.type]
            rec.update(dtype=dtype, offset=len(self.blob), count=int(arr.size))
            self.blob += arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            records.append(rec)
        self.cases.append({"name": name, "seed": seed, "ops": records})


def main():
    w = Writer()
    for seed in SEEDS:
        for shape in RANDN_SIZES:
            w.run_case(f"randn_s{seed}_n{shape[0]}", seed, [("randn", shape)])
        for shape in RAND_SIZES:
            w.run_case(f"rand_s{seed}_n{shape[0]}", seed, [("rand", shape)])
    for seed in BIG_SEEDS:
        w.run_case(f"randn_s{seed}_4x64x64", seed, [("randn", BIG_SHAPE)])
    for seed in [0, 42]:
        for shape in [[1], [15], [16], [17], [100]]:
            w.run_case(f"randn64_s{seed}_n{shape[0]}", seed, [("randn64", shape)])
        for low, high, count in RANDINT_CASES:
            w.run_case(f"randint_s{seed}_{low}_{high}_n{count}", seed, [("randint", low, high, [count])])
    for name, (seed, ops) in SEQUENCES.items():
        w.run_case(name, seed, ops)

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "values.bin"), "wb") as f:
        f.write(w.blob)
    manifest = {
        "generator": "torch.Generator().manual_seed(seed) on CPU",
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "data_file": "values.bin",
        "cases": w.cases,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(w.cases)} cases, {len(w.blob)} bytes")


if __name__ == "__main__":
    main()
