"""Check that weights/shapes is a standard diffusers StableUnCLIPPipeline folder that diffusers can run.

Run from the repository root:  venv/bin/python notebooks-export/check_shapes_diffusers.py [--out DIR]
(diffusers 0.42.1, transformers 5.23.0, torch CPU; nothing is written into the repository).

1. Loads the folder with StableUnCLIPPipeline.from_pretrained (float32 on CPU) and the variation parts
   (feature_extractor + image_encoder) with StableUnCLIPImg2ImgPipeline.from_pretrained.
2. Generates the demo prompts (prompts/shapes-demo.txt), seed i for prompt i, at the native 32x32, with
   the pipeline's own defaults except the settings printed below, and saves PNGs plus an 8x-enlarged
   contact sheet under --out (default /tmp/shapes-check).
3. Measures each image by pixel analysis (same rules as the world: nearest background colour of the
   border, nearest palette colour of the object pixels, bounding-box size and centre, shape by
   IoU against the three rendered templates) and prints per-attribute accuracy on the stated attributes.
4. Checks the feature extractor gives exactly (x / 255 - mean) / std on 32x32 world images (what the
   CLIP image tower was trained on), and runs one image variation.
"""

import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_world as W  # noqa: E402

from diffusers import StableUnCLIPImg2ImgPipeline, StableUnCLIPPipeline  # noqa: E402
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection  # noqa: E402

torch.set_num_threads(2)
FOLDER = os.environ.get("SHAPES_OUT", "weights/shapes")


def analyse(img: np.ndarray) -> dict:
    """Attributes of a 32x32 RGB uint8 image, read by pixel rules (ground truth for world images)."""
    px = img.astype(np.float64)
    border = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    bg_rgb = np.median(border, axis=0)
    bg = min(W.BACKGROUNDS, key=lambda k: np.sum((np.array(W.BACKGROUNDS[k]) - bg_rgb) ** 2))
    dist_bg = np.sqrt(((px - np.array(W.BACKGROUNDS[bg])) ** 2).sum(-1))
    mask = dist_bg > 60
    out = {"background": bg}
    if mask.sum() < 8:
        return out
    obj = np.median(px[mask], axis=0)
    out["colour"] = min(W.COLOURS, key=lambda k: np.sum((np.array(W.COLOURS[k]) - obj) ** 2))
    ys, xs = np.nonzero(mask)
    w, h = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    out["size"] = "small" if max(w, h) <= 12 else "large"
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    out["position"] = min(W.POSITIONS, key=lambda k: (W.POSITIONS[k][0] - cx) ** 2 + (W.POSITIONS[k][1] - cy) ** 2)
    best, best_iou = None, -1.0
    for shape in W.SHAPES:
        for dx in (-2, -1, 0, 1, 2):
            for dy in (-2, -1, 0, 1, 2):
                t = W.render({"shape": shape, "colour": "red", "size": out["size"], "position": out["position"],
                              "background": "black", "dx": dx, "dy": dy}).any(-1)
                iou = (t & mask).sum() / max(1, (t | mask).sum())
                if iou > best_iou:
                    best, best_iou = shape, iou
    out["shape"] = best
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/shapes-check")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=3.0)  # the pipeline default 10 over-saturates this model
    ap.add_argument("--prior-steps", type=int, default=25)
    ap.add_argument("--prior-guidance", type=float, default=4.0)
    ap.add_argument("--prompts", default="prompts/shapes-demo.txt")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--variations", type=int, default=0, help="also vary this many random world images")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    # Sanity of the checker itself on world images.
    rng = np.random.default_rng(0)
    for _ in range(200):
        img, _, attrs, _ = W.sample(rng)
        got = analyse(img)
        assert all(got[k] == attrs[k] for k in W.ATTRIBUTES), (attrs, got)

    pipe = StableUnCLIPPipeline.from_pretrained(FOLDER, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    print("loaded", type(pipe).__name__, {k: type(v).__name__ for k, v in pipe.components.items()})
    print("unet sample_size", pipe.unet.config.sample_size, "vae scale factor", pipe.vae_scale_factor)
    settings = dict(num_inference_steps=a.steps, guidance_scale=a.guidance, prior_num_inference_steps=a.prior_steps,
                    prior_guidance_scale=a.prior_guidance)
    print("settings", settings)

    prompts = [p.strip() for p in open(a.prompts) if p.strip()]
    if a.limit:
        prompts = prompts[:a.limit]
    hits, totals, images = {}, {}, []
    for i, prompt in enumerate(prompts):
        g = torch.Generator().manual_seed(i)
        img = np.array(pipe(prompt, generator=g, output_type="pil", **settings).images[0])
        Image.fromarray(img).save(os.path.join(a.out, f"{i:03d}.png"))
        images.append(img)
        got = analyse(img)
        want = W.parse_caption(prompt)
        for k, v in want.items():
            totals[k] = totals.get(k, 0) + 1
            hits[k] = hits.get(k, 0) + int(got.get(k) == v)
        if i < 12 or len(prompts) <= 20:
            print(f"{i:3d} {prompt!r} -> {got}")
    print("accuracy on stated attributes:",
          {k: f"{hits[k]}/{totals[k]} = {hits[k] / totals[k]:.2f}" for k in totals})
    cols = 6
    rows = (len(images) + cols - 1) // cols
    sheet = np.full((rows * 34, cols * 34, 3), 255, np.uint8)
    for i, img in enumerate(images[:rows * cols]):
        r, c = divmod(i, cols)
        sheet[r * 34 + 1:r * 34 + 33, c * 34 + 1:c * 34 + 33] = img
    Image.fromarray(sheet).resize((sheet.shape[1] * 8, sheet.shape[0] * 8), Image.NEAREST).save(
        os.path.join(a.out, "sheet.png"))

    # Feature extractor = the training preprocessing; one variation through the img2img pipeline.
    # model_index.json lists the text-to-image components; the variation pipeline takes the same ones plus the
    # two image-side folders, loaded on their own (as the karlo / SD 2.1 unCLIP repos are used).
    shared = {k: v for k, v in pipe.components.items() if not k.startswith("prior")}
    var = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor.from_pretrained(os.path.join(FOLDER, "feature_extractor")),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(os.path.join(FOLDER, "image_encoder"),
                                                                    dtype=torch.float32),
        **shared)
    var.set_progress_bar_config(disable=True)
    world = W.render({"shape": "triangle", "colour": "green", "size": "large", "position": "center",
                      "background": "white"})
    pv = var.feature_extractor(images=Image.fromarray(world), return_tensors="pt").pixel_values[0]
    mean = torch.tensor(var.feature_extractor.image_mean)[:, None, None]
    std = torch.tensor(var.feature_extractor.image_std)[:, None, None]
    ref = (torch.from_numpy(world).permute(2, 0, 1).float() / 255 - mean) / std
    print("feature extractor max |diff| vs (x/255-mean)/std:", float((pv - ref).abs().max()))
    out = var(Image.fromarray(world), generator=torch.Generator().manual_seed(0), output_type="pil",
              num_inference_steps=a.steps, guidance_scale=a.guidance).images[0]
    out.save(os.path.join(a.out, "variation.png"))
    print("variation of a large green triangle in the center on white ->", analyse(np.array(out)))

    # Decoder fidelity without the prior: variations (noise level 0, new seed) of random world images.
    rng = np.random.default_rng(7)
    kept = {k: 0 for k in W.ATTRIBUTES}
    for i in range(a.variations):
        img, _, attrs, _ = W.sample(rng)
        out = var(Image.fromarray(img), generator=torch.Generator().manual_seed(1000 + i), output_type="pil",
                  num_inference_steps=a.steps, guidance_scale=a.guidance).images[0]
        got = analyse(np.array(out))
        for k in W.ATTRIBUTES:
            kept[k] += int(got.get(k) == attrs[k])
    if a.variations:
        print(f"variations of {a.variations} world images keep:",
              {k: f"{v}/{a.variations} = {v / a.variations:.2f}" for k, v in kept.items()})


if __name__ == "__main__":
    main()
