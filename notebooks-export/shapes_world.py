"""The procedural "shapes" world of the shipped model (weights/shapes): seeded (image, caption, attributes).

Run from the repository root with venv/bin/python (numpy + pillow only).
  python notebooks-export/shapes_world.py --prompts     writes prompts/shapes-eval.txt and prompts/shapes-demo.txt
  python notebooks-export/shapes_world.py --sheet PATH  writes a contact sheet of 64 samples (PNG)

Exact rules (everything integer; simple to re-implement, e.g. in the Swift checker):

Image: 32 x 32 RGB, uint8. Pixel (x, y) has x = column 0..31 (left to right), y = row 0..31 (top to bottom);
its centre is (x + 0.5, y + 0.5).

Background (whole image, one colour):
  black (0, 0, 0)   gray (128, 128, 128)   white (255, 255, 255)   navy (0, 0, 128)

Object colour (one filled shape, one colour, no outline, no anti-aliasing):
  red (230, 30, 30)   green (30, 190, 40)   blue (40, 90, 255)
  yellow (250, 225, 30)   purple (160, 50, 200)   orange (255, 140, 0)

Size: the shape's bounding box is an s x s square, s = 8 (small) or 16 (large).

Position: the bounding box centre (cx, cy), before jitter, is
  left (10, 16)   right (22, 16)   top (16, 10)   bottom (16, 22)   center (16, 16)
Jitter: dx, dy each uniform in {-1, 0, 1}. The box is x0 = cx - s/2 + dx, y0 = cy - s/2 + dy (it always lies
inside the image: x0 >= 1, x0 + s <= 31). The box centre is then (x0 + s/2, y0 + s/2).

Shape, with c = (x0 + s/2, y0 + s/2) and a pixel centre p = (x + 0.5, y + 0.5):
  square:   x0 <= p.x <= x0 + s and y0 <= p.y <= y0 + s  (exactly the s*s pixels x0..x0+s-1, y0..y0+s-1)
  circle:   (p.x - c.x)^2 + (p.y - c.y)^2 <= (s/2)^2     (small: 52 pixels, large: 208 pixels)
  triangle: apex up, isosceles: y0 <= p.y <= y0 + s and |p.x - c.x| <= (p.y - y0) / 2
            (apex at (c.x, y0), base from (x0, y0 + s) to (x0 + s, y0 + s); small: 32 pixels, large: 128)
  Pixel counts: small square 64, circle 52, triangle 32; large square 256, circle 208, triangle 128.
  So size is best read from the bounding box extent (8 vs 16), not from the area alone.

Caption grammar (issue 6), every bracketed part optional:
  a [small|large] [COLOUR] SHAPE [on the left|on the right|at the top|at the bottom|in the center] [on a BACKGROUND background]
e.g. "a large blue triangle at the top on a white background", "a red circle". Always "a" (also before "orange").
Attributes a caption omits are drawn at random like the others (all uniform and independent).

Sampling order of one example from numpy.random.Generator `rng` (see `sample`):
  shape, colour, size, position, background (each rng.integers over its list, in the list orders below),
  dx, dy (rng.integers(-1, 2)), then the four "stated" flags (rng.random() < p_state, in the order
  size, colour, position, background; the shape is always stated).
"""

import argparse
import os

import numpy as np

SIZE = 32  # image width and height in pixels

SHAPES = ["circle", "square", "triangle"]
COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 190, 40),
    "blue": (40, 90, 255),
    "yellow": (250, 225, 30),
    "purple": (160, 50, 200),
    "orange": (255, 140, 0),
}
BACKGROUNDS = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "white": (255, 255, 255),
    "navy": (0, 0, 128),
}
SIZES = {"small": 8, "large": 16}
POSITIONS = {  # bounding-box centre before jitter, (cx, cy)
    "left": (10, 16),
    "right": (22, 16),
    "top": (16, 10),
    "bottom": (16, 22),
    "center": (16, 16),
}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
COLOUR_NAMES = list(COLOURS)
BACKGROUND_NAMES = list(BACKGROUNDS)
SIZE_NAMES = list(SIZES)
POSITION_NAMES = list(POSITIONS)
ATTRIBUTES = ("size", "colour", "shape", "position", "background")


def render(attrs: dict) -> np.ndarray:
    """The 32x32x3 uint8 image of `attrs` (keys shape, colour, size, position, background, dx, dy)."""
    s = SIZES[attrs["size"]]
    cx, cy = POSITIONS[attrs["position"]]
    x0 = cx - s // 2 + attrs.get("dx", 0)
    y0 = cy - s // 2 + attrs.get("dy", 0)
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = BACKGROUNDS[attrs["background"]]
    py, px = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    ccx, ccy = x0 + s / 2, y0 + s / 2
    shape = attrs["shape"]
    if shape == "square":
        mask = (px >= x0) & (px <= x0 + s) & (py >= y0) & (py <= y0 + s)
    elif shape == "circle":
        mask = (px - ccx) ** 2 + (py - ccy) ** 2 <= (s / 2) ** 2
    elif shape == "triangle":
        mask = (py >= y0) & (py <= y0 + s) & (np.abs(px - ccx) <= (py - y0) / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    img[mask] = COLOURS[attrs["colour"]]
    return img


def caption(attrs: dict, stated: dict) -> str:
    """The grammar's caption of `attrs` naming the attributes whose `stated[name]` is true (shape always)."""
    words = ["a"]
    if stated.get("size"):
        words.append(attrs["size"])
    if stated.get("colour"):
        words.append(attrs["colour"])
    words.append(attrs["shape"])
    if stated.get("position"):
        words.append(POSITION_PHRASES[attrs["position"]])
    if stated.get("background"):
        words += ["on a", attrs["background"], "background"]
    return " ".join(words)


def sample_attrs(rng: np.random.Generator) -> dict:
    """Uniform, independent attributes plus the position jitter."""
    return {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "colour": COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
        "size": SIZE_NAMES[rng.integers(len(SIZE_NAMES))],
        "position": POSITION_NAMES[rng.integers(len(POSITION_NAMES))],
        "background": BACKGROUND_NAMES[rng.integers(len(BACKGROUND_NAMES))],
        "dx": int(rng.integers(-1, 2)),
        "dy": int(rng.integers(-1, 2)),
    }


def sample_stated(rng: np.random.Generator, p_state: float = 0.5) -> dict:
    """Which optional attributes a caption names (each independently with probability p_state)."""
    stated = {k: bool(rng.random() < p_state) for k in ("size", "colour", "position", "background")}
    stated["shape"] = True
    return stated


def sample(rng: np.random.Generator, p_state: float = 0.5):
    """One (image uint8 32x32x3, caption, attrs, stated) example."""
    attrs = sample_attrs(rng)
    stated = sample_stated(rng, p_state)
    return render(attrs), caption(attrs, stated), attrs, stated


def all_captions() -> list:
    """Every caption the grammar can produce (3 * 7 * 3 * 6 * 5 = 1890), in a fixed order."""
    out = []
    for size in [None] + SIZE_NAMES:
        for colour in [None] + COLOUR_NAMES:
            for shape in SHAPES:
                for position in [None] + POSITION_NAMES:
                    for background in [None] + BACKGROUND_NAMES:
                        attrs = {"size": size, "colour": colour, "shape": shape, "position": position,
                                 "background": background}
                        stated = {k: v is not None for k, v in attrs.items()}
                        out.append(caption(attrs, stated))
    return out


def parse_caption(text: str) -> dict:
    """The attributes a grammar caption states ({name: value}); raises ValueError on anything else."""
    words = text.strip().split()
    if not words or words[0] != "a":
        raise ValueError(f"caption must start with 'a': {text!r}")
    i, out = 1, {}
    if i < len(words) and words[i] in SIZES:
        out["size"] = words[i]; i += 1
    if i < len(words) and words[i] in COLOURS:
        out["colour"] = words[i]; i += 1
    if i >= len(words) or words[i] not in SHAPES:
        raise ValueError(f"no shape in {text!r}")
    out["shape"] = words[i]; i += 1
    rest = " ".join(words[i:])
    for name, phrase in POSITION_PHRASES.items():
        if rest.startswith(phrase):
            out["position"] = name
            rest = rest[len(phrase):].strip()
            break
    if rest:
        parts = rest.split()
        if len(parts) != 4 or parts[:2] != ["on", "a"] or parts[2] not in BACKGROUNDS or parts[3] != "background":
            raise ValueError(f"cannot parse {rest!r} in {text!r}")
        out["background"] = parts[2]
    return out


def matches(stated_attrs: dict, attrs: dict) -> bool:
    """Whether an image with `attrs` satisfies a caption stating `stated_attrs`."""
    return all(attrs[k] == v for k, v in stated_attrs.items())


def eval_prompts(seed: int = 6, n_full: int = 180, n_partial: int = 180) -> list:
    """The eval set: n_full fully specified + n_partial partially specified prompts, every attribute value
    appearing stated at least 10 times; deterministic for a seed. Full prompts cycle through each attribute's
    values in turn (balanced), partial prompts state each optional attribute with probability 1/2."""
    rng = np.random.default_rng(seed)
    lists = {"size": SIZE_NAMES, "colour": COLOUR_NAMES, "shape": SHAPES, "position": POSITION_NAMES,
             "background": BACKGROUND_NAMES}
    prompts = []
    perms = {k: [] for k in lists}
    for i in range(n_full):
        attrs = {}
        for k, vals in lists.items():
            if not perms[k]:
                perms[k] = list(rng.permutation(len(vals)))
            attrs[k] = vals[perms[k].pop()]
        prompts.append(caption(attrs, {k: True for k in lists}))
    while len(prompts) < n_full + n_partial:
        attrs = sample_attrs(rng)
        stated = sample_stated(rng, 0.5)
        if all(stated.values()):
            continue  # keep the partial half partial
        prompts.append(caption(attrs, stated))
    return prompts


DEMO_PROMPTS = [
    "a small red circle on the left",
    "a large blue triangle at the top on a white background",
    "a red circle",
    "a large yellow square in the center on a navy background",
    "a small green triangle at the bottom on a black background",
    "a purple circle on the right on a gray background",
    "a large orange triangle",
    "a small blue square",
    "a green square at the top",
    "a triangle on a navy background",
    "a large purple square on the left on a white background",
    "a small orange circle at the bottom on a gray background",
]


def write_prompt_files(root: str = ".") -> None:
    prompts = eval_prompts()
    counts = {}
    for p in prompts:
        for k, v in parse_caption(p).items():
            counts[(k, v)] = counts.get((k, v), 0) + 1
    expected = ([("size", v) for v in SIZE_NAMES] + [("colour", v) for v in COLOUR_NAMES]
                + [("shape", v) for v in SHAPES] + [("position", v) for v in POSITION_NAMES]
                + [("background", v) for v in BACKGROUND_NAMES])
    missing = [kv for kv in expected if counts.get(kv, 0) < 10]
    assert not missing, f"attribute values stated fewer than 10 times: {missing}"
    os.makedirs(os.path.join(root, "prompts"), exist_ok=True)
    with open(os.path.join(root, "prompts", "shapes-eval.txt"), "w") as f:
        f.write("\n".join(prompts) + "\n")
    for p in DEMO_PROMPTS:
        parse_caption(p)
    with open(os.path.join(root, "prompts", "shapes-demo.txt"), "w") as f:
        f.write("\n".join(DEMO_PROMPTS) + "\n")
    print(f"wrote {len(prompts)} eval prompts, {len(DEMO_PROMPTS)} demo prompts; min count per value "
          f"{min(counts[kv] for kv in expected)}")


def contact_sheet(path: str, n: int = 64, seed: int = 0) -> None:
    from PIL import Image
    rng = np.random.default_rng(seed)
    cols = 8
    sheet = np.zeros((((n + cols - 1) // cols) * (SIZE + 2), cols * (SIZE + 2), 3), np.uint8)
    for i in range(n):
        img, cap, _, _ = sample(rng)
        r, c = divmod(i, cols)
        sheet[r * (SIZE + 2) + 1:r * (SIZE + 2) + 1 + SIZE, c * (SIZE + 2) + 1:c * (SIZE + 2) + 1 + SIZE] = img
        print(i, cap)
    Image.fromarray(sheet).resize((sheet.shape[1] * 4, sheet.shape[0] * 4), Image.NEAREST).save(path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", action="store_true")
    ap.add_argument("--sheet")
    a = ap.parse_args()
    if a.prompts:
        write_prompt_files()
    if a.sheet:
        contact_sheet(a.sheet)
