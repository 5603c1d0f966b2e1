#!/usr/bin/env python
"""Reference fixtures for UnCLIPImage (PNG decoding + CLIPImageProcessor preprocessing).

Run from the repository root:  venv/bin/python notebooks-export/fixtures_image.py
Writes Tests/Fixtures/image/ (deterministic; re-running gives identical files).

What the references are:
- Decoded RGB: what the pipeline sees for a PNG: PIL `Image.open(path)` then transformers'
  `convert_to_rgb` (PIL `convert("RGB")`, or for images with alpha/tRNS an alpha composite onto
  white). The white composite is also computed explicitly here and asserted equal.
  Two PIL behaviours are NOT reproduced (they are PIL defects, documented per image in the
  manifest with `pil_matches: false`): 16-bit grayscale ("I;16") is clamped to 255 by
  convert("RGB") instead of scaled, and 16-bit RGB tRNS keys are compared against 8-bit samples.
  For those the expected bytes are computed here from the source samples (high byte, as PIL
  does for every other 16-bit type; tRNS key compared at 16 bits, as the PNG spec says).
- pixel_values: `transformers.CLIPImageProcessor.from_pretrained(config_dir)(images=...)`, the
  class diffusers' StableUnCLIPImg2ImgPipeline loads for `feature_extractor`. In transformers 5.x
  without torchvision (this venv) that resolves to `CLIPImageProcessorPil` (PIL resize); the
  resolved class name is recorded in the manifest.
  pixel_values are stored losslessly and compactly: every value is LUT[c][q] where q is the uint8
  level after PIL resize + crop and LUT[c] is transformers' own rescale+normalize of levels 0..255
  (computed by running the same processor with resize/crop off). The script asserts that
  LUT[c][q] reproduces pixel_values bit for bit before saving q.
"""
import hashlib
import json
import os
import shutil
import struct
import zlib

import numpy as np
from PIL import Image

import transformers
from transformers import CLIPImageProcessor
from transformers.image_transforms import convert_to_rgb

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "image")
RAW_DECODED_MAX_PIXELS = 40_000  # larger decoded images are checked by digest only

rng = np.random.default_rng(20240611)


# ---------------------------------------------------------------- PNG encoder (all types)
def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_row(samples, bit_depth):
    """samples: 1-D array of per-sample values for one row."""
    if bit_depth == 16:
        return samples.astype(">u2").tobytes()
    if bit_depth == 8:
        return samples.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    padded = np.zeros(-(-len(samples) // per_byte) * per_byte, dtype=np.uint8)
    padded[: len(samples)] = samples
    padded = padded.reshape(-1, per_byte)
    out = np.zeros(len(padded), dtype=np.uint8)
    for i in range(per_byte):
        out |= (padded[:, i] << (8 - bit_depth * (i + 1))).astype(np.uint8)
    return out.tobytes()


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def encode_png(samples, bit_depth, color_type, interlace=False, plte=None, trns=None):
    """samples: (H, W, C) integer array of raw PNG samples (palette indices for type 3)."""
    h, w, c = samples.shape
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue  # empty Adam7 passes carry no scanlines at all
        for row in sub:
            raw += b"\x00" + _pack_row(row.reshape(-1), bit_depth)
    data = b"\x89PNG\r\n\x1a\n"
    data += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0))
    if plte is not None:
        data += _chunk(b"PLTE", np.asarray(plte, dtype=np.uint8).tobytes())
    if trns is not None:
        data += _chunk(b"tRNS", trns)
    data += _chunk(b"IDAT", zlib.compress(raw, 9))
    data += _chunk(b"IEND", b"")
    return data


# ---------------------------------------------------------------- image content
def blurred_field(h, w, channels, sigma, rng):
    """Smooth random field in 0..1 (photo-like), Gaussian blur through the FFT."""
    noise = rng.standard_normal((channels, h, w))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    field = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    field -= field.min(axis=(1, 2), keepdims=True)
    field /= field.max(axis=(1, 2), keepdims=True)
    return np.moveaxis(field, 0, -1)


def to_u8(x):
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def gradient_checker(h, w, cell):
    y, x = np.mgrid[0:h, 0:w]
    r = x * 255 // max(w - 1, 1)
    g = y * 255 // max(h - 1, 1)
    b = np.where(((x // cell) + (y // cell)) % 2 == 0, 255, 0)
    return np.stack([r, g, b], -1).astype(np.uint8)


def checkerboard(h, w, cell, a=(0, 0, 0), b=(255, 255, 255)):
    y, x = np.mgrid[0:h, 0:w]
    mask = (((x // cell) + (y // cell)) % 2 == 0)[..., None]
    return np.where(mask, np.array(a, np.uint8), np.array(b, np.uint8)).astype(np.uint8)


def hard_edges(h, w):
    """Stripes, a disc and single-pixel lines: the worst case for ringing filters."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.where((x // 7) % 2 == 0, 250, 5)
    img[..., 1] = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(h, w) / 3) ** 2, 255, 0)
    img[..., 2] = np.where((y % 11) == 0, 255, 30)
    img[:, w // 3] = (255, 255, 255)
    img[h // 3, :] = (0, 0, 0)
    return img


def photo(h, w, sigma, rng, noise=4.0):
    base = blurred_field(h, w, 3, sigma, rng) * 255 + rng.normal(0, noise, (h, w, 3))
    return np.clip(np.round(base), 0, 255).astype(np.uint8)


def mixed(h, w, rng):
    """Smooth photo-like field with hard-edged shapes on top (compresses well, still hard)."""
    img = photo(h, w, 40, rng, noise=0.0)
    y, x = np.mgrid[0:h, 0:w]
    img[(x // 50 + y // 50) % 7 == 0] = (255, 255, 255)
    img[(np.abs(x - y * w / h) < 3)] = (0, 0, 0)
    img[h // 2 : h // 2 + 40, w // 4 : 3 * w // 4] = (200, 30, 30)
    return img


# ---------------------------------------------------------------- helpers
def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def white_composite(rgba):
    """Alpha composite onto opaque white, rounded to nearest (equals PIL's alpha_composite)."""
    rgb = rgba[..., :3].astype(np.int64)
    a = rgba[..., 3:4].astype(np.int64)
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def pipeline_rgb(path):
    """What the processor sees for an opened PNG (transformers' convert_to_rgb on the PIL image)."""
    with Image.open(path) as im:
        im.load()
        via_transformers = convert_to_rgb(im, return_numpy=True)
        has_alpha = "A" in im.getbands() or im.info.get("transparency") is not None
        if has_alpha:
            explicit = white_composite(np.array(im.convert("RGBA")))
        else:
            explicit = np.array(im.convert("RGB"))
    assert np.array_equal(via_transformers, explicit), path
    return explicit, has_alpha


# ---------------------------------------------------------------- main
def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for sub in ["png", "bad", "configs", "expected/decoded", "expected/levels", "expected/lut"]:
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)

    images = []  # manifest entries

    def add(name, data_or_array, kind, expected_rgb=None, note=None, pil_save=False):
        """Store one PNG. expected_rgb given => PIL is known to differ; use this instead."""
        path = os.path.join(OUT, "png", name + ".png")
        if pil_save:
            Image.fromarray(data_or_array).save(path)
        else:
            with open(path, "wb") as f:
                f.write(data_or_array)
        pil_rgb, has_alpha = pipeline_rgb(path)
        decoded = pil_rgb if expected_rgb is None else expected_rgb
        entry = {
            "name": name,
            "file": "png/" + name + ".png",
            "kind": kind,
            "width": int(decoded.shape[1]),
            "height": int(decoded.shape[0]),
            "has_alpha": bool(has_alpha),
            "pil_matches": bool(np.array_equal(pil_rgb, decoded)),
            "decoded_fnv1a64": fnv1a64(decoded.tobytes()),
            "decoded_file": None,
        }
        if expected_rgb is not None:
            assert not entry["pil_matches"], name + ": expected a PIL deviation here"
            entry["note"] = note
            entry["pil_max_abs_diff"] = int(np.abs(pil_rgb.astype(int) - decoded.astype(int)).max())
        if decoded.shape[0] * decoded.shape[1] <= RAW_DECODED_MAX_PIXELS:
            entry["decoded_file"] = "expected/decoded/" + name + ".rgb"
            decoded.tofile(os.path.join(OUT, entry["decoded_file"]))
        entry["_rgb"] = decoded
        entry["_pil_path"] = path if expected_rgb is None else None
        images.append(entry)

    # --- resampling set: 8-bit RGB written by PIL (adaptive filters), several sizes/aspects.
    add("rgb_224x224_gradchecker", gradient_checker(224, 224, 16), "resample", pil_save=True)
    add("rgb_300x200_checker", checkerboard(200, 300, 5, (20, 200, 40), (240, 10, 220)), "resample", pil_save=True)
    add("rgb_200x500_edges", hard_edges(500, 200), "resample", pil_save=True)
    add("rgb_640x480_photo", photo(480, 640, 8, rng, noise=0.5), "resample", pil_save=True)
    add("rgb_33x57_checker", checkerboard(57, 33, 3), "resample", pil_save=True)
    add("rgb_1000x750_mixed", mixed(750, 1000, rng), "resample", pil_save=True)
    add("rgb_231x224_edges", hard_edges(224, 231), "resample", pil_save=True)  # no resize, odd crop offset
    add("rgb_224x300_photo", photo(300, 224, 3, rng, noise=2.0), "resample", pil_save=True)  # no resize, vertical crop
    add("rgb_7x4_photo", photo(4, 7, 1, rng, noise=30), "resample", pil_save=True)  # extreme upscale
    add("rgb_20x600_gradchecker", gradient_checker(600, 20, 3), "resample", pil_save=True)  # extreme aspect
    add("rgb_229x227_photo", photo(227, 229, 3, rng, noise=1.0), "resample", pil_save=True)  # slight downscale

    # --- colour types and bit depths (own encoder; several types share content on purpose).
    H, W = 29, 37
    gray = to_u8(blurred_field(H, W, 1, 2, rng)[..., 0])
    gray[::5, ::3] = 255
    gray[2::7, 1::4] = 0
    alpha = to_u8(blurred_field(H, W, 1, 3, rng)[..., 0])
    alpha[:, :4] = 0
    alpha[:, -4:] = 255
    color = photo(H, W, 2, rng, noise=12)
    color[5, :] = (255, 0, 0)
    lo = rng.integers(0, 256, (H, W), dtype=np.uint16)  # low bytes of 16-bit samples (ignored when reading)

    def wide(x8):
        return (x8.astype(np.uint16) << 8) | lo[..., None] if x8.ndim == 3 else (x8.astype(np.uint16) << 8) | lo

    g = gray[..., None]
    add("gray8", encode_png(g, 8, 0), "color")
    add("gray8_interlaced", encode_png(g, 8, 0, interlace=True), "color")
    g16_expected = np.repeat(g, 3, -1)
    add("gray16", encode_png(wide(gray)[..., None], 16, 0), "color", expected_rgb=g16_expected,
        note="PIL opens 16-bit gray as I;16 and convert('RGB') clamps values > 255 to 255; we keep the high byte")
    add("gray1", encode_png((gray >= 128).astype(np.uint8)[..., None], 1, 0), "color")
    add("gray2_interlaced", encode_png((gray >> 6)[..., None], 2, 0, interlace=True), "color")
    add("gray4", encode_png((gray >> 4)[..., None], 4, 0), "color")
    # Sub-byte tRNS keys are raw sample values. PIL compares the 4-bit key with samples already
    # scaled to 8 bits (so it never matches here); libpng, like the PNG spec, compares raw samples.
    g4 = gray >> 4
    key4 = int(g4[3, 3])
    g4t_rgba = np.concatenate([np.repeat((g4 * 17)[..., None], 3, -1), np.where(g4 == key4, 0, 255)[..., None]], -1)
    add("gray4_trns", encode_png(g4[..., None], 4, 0, trns=struct.pack(">H", key4)), "color",
        expected_rgb=white_composite(g4t_rgba.astype(np.uint8)),
        note="PIL compares the 4-bit tRNS key with samples scaled to 8 bits; we compare raw 4-bit samples")
    add("gray1_trns", encode_png((gray >= 128).astype(np.uint8)[..., None], 1, 0, trns=struct.pack(">H", 0)), "color")
    key8 = int(gray[3, 3])
    add("gray8_trns", encode_png(g, 8, 0, trns=struct.pack(">H", key8)), "color")
    # 16-bit tRNS: the key matches one full 16-bit sample value; pixels sharing only its high byte stay opaque.
    g16 = wide(gray)
    key16 = int(g16[3, 3])
    g16t_alpha = np.where(g16 == key16, 0, 255).astype(np.uint8)[..., None]
    g16t_expected = white_composite(np.concatenate([np.repeat(g, 3, -1), g16t_alpha], -1))
    add("gray16_trns", encode_png(g16[..., None], 16, 0, trns=struct.pack(">H", key16)), "color",
        expected_rgb=g16t_expected, note="PIL clamps I;16 to 255 on convert; we keep the high byte and honour the 16-bit tRNS key")
    ga = np.stack([gray, alpha], -1)
    add("gray_alpha8", encode_png(ga, 8, 4), "color")
    add("gray_alpha8_interlaced", encode_png(ga, 8, 4, interlace=True), "color")
    add("gray_alpha16", encode_png(wide(ga), 16, 4), "color")
    add("rgb8_interlaced", encode_png(color, 8, 2, interlace=True), "color")
    add("rgb16", encode_png(wide(color), 16, 2), "color")
    add("rgb16_interlaced", encode_png(wide(color), 16, 2, interlace=True), "color")
    key_rgb = color[7, 9].astype(int)
    color_k = color.copy()
    color_k[10:14, 10:20] = key_rgb  # a block of the key colour becomes transparent
    add("rgb8_trns", encode_png(color_k, 8, 2, trns=struct.pack(">HHH", *key_rgb)), "color")
    # 16-bit: the key block carries low bytes (7, 7, 7); a second block has the key's high bytes only.
    rgb16k = wide(color_k)
    key16_rgb = key_rgb * 256 + 7
    rgb16k[10:14, 10:20] = key16_rgb
    rgb16k[16:20, 10:20] = key_rgb * 256 + 8
    is_key = np.all(rgb16k == key16_rgb, -1)
    rgb16t_expected = white_composite(np.concatenate([(rgb16k >> 8).astype(np.uint8), np.where(is_key, 0, 255).astype(np.uint8)[..., None]], -1))
    add("rgb16_trns", encode_png(rgb16k, 16, 2, trns=struct.pack(">HHH", *key16_rgb)),
        "color", expected_rgb=rgb16t_expected,
        note="PIL compares the low byte of the 16-bit tRNS key with the 8-bit (high byte) samples; we compare at 16 bits")
    rgba = np.concatenate([color, alpha[..., None]], -1)
    add("rgba8", encode_png(rgba, 8, 6), "color")
    add("rgba8_interlaced", encode_png(rgba, 8, 6, interlace=True), "color")
    add("rgba16", encode_png(wide(rgba), 16, 6), "color")
    # Palettes: 8-bit (256 colours), 4-bit with tRNS, 1-bit; indices from the gray content.
    pal256 = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    idx8 = gray[..., None]
    add("palette8", encode_png(idx8, 8, 3, plte=pal256), "color")
    add("palette8_interlaced", encode_png(idx8, 8, 3, interlace=True, plte=pal256), "color")
    trns8 = bytes(rng.integers(0, 256, 200, dtype=np.uint8))  # shorter than PLTE: rest is opaque
    add("palette8_trns", encode_png(idx8, 8, 3, plte=pal256, trns=trns8), "color")
    pal16 = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    add("palette4_trns", encode_png((gray >> 4)[..., None], 4, 3, plte=pal16, trns=bytes([0, 64, 128, 255, 10])), "color")
    add("palette1", encode_png((gray >= 100).astype(np.uint8)[..., None], 1, 3, plte=[[200, 30, 60], [10, 220, 140]]), "color")
    # A 3x2 interlaced image leaves some Adam7 passes empty.
    tiny = rng.integers(0, 65536, (2, 3, 4), dtype=np.uint16)
    add("rgba16_3x2_interlaced", encode_png(tiny, 16, 6, interlace=True), "color")

    # --- bad files
    good = open(os.path.join(OUT, "png", "rgb8_interlaced.png"), "rb").read()
    idat = good.index(b"IDAT")
    idat_len = struct.unpack(">I", good[idat - 4 : idat])[0]
    bad = bytearray(good)
    bad[idat + 4 + idat_len] ^= 0xFF  # the stored CRC no longer matches the (intact) IDAT data
    open(os.path.join(OUT, "bad", "corrupt_crc.png"), "wb").write(bytes(bad))
    bad = bytearray(good)
    bad[idat + 20] ^= 0xFF  # payload changed and CRC not updated
    open(os.path.join(OUT, "bad", "corrupt_data.png"), "wb").write(bytes(bad))
    # Valid CRC around garbage zlib data.
    garbage = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
    garbage += _chunk(b"IDAT", b"this is not zlib data at all") + _chunk(b"IEND", b"")
    open(os.path.join(OUT, "bad", "corrupt_zlib.png"), "wb").write(garbage)
    open(os.path.join(OUT, "bad", "truncated.png"), "wb").write(good[: len(good) * 6 // 10])
    open(os.path.join(OUT, "bad", "not_a_png.jpg"), "wb").write(b"This is a text file with a .jpg name.\n")
    open(os.path.join(OUT, "bad", "empty.png"), "wb").write(b"")
    bad_files = {
        "corrupt_crc.png": "IDAT CRC altered",
        "corrupt_data.png": "IDAT payload altered, CRC not updated",
        "corrupt_zlib.png": "IDAT is not a zlib stream (CRC valid)",
        "truncated.png": "first 60% of a valid PNG",
        "not_a_png.jpg": "a text file",
        "empty.png": "zero bytes",
    }

    # --- processor configs
    openai_mean = [0.48145466, 0.4578275, 0.40821073]
    openai_std = [0.26862954, 0.26130258, 0.27577711]
    configs = {
        # As stabilityai/stable-diffusion-2-1-unclip feature_extractor/preprocessor_config.json.
        "openai_clip": {
            "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
            "do_normalize": True, "do_rescale": True, "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": openai_mean,
            "image_processor_type": "CLIPImageProcessor", "image_std": openai_std, "resample": 3,
            "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224},
        },
        # Legacy int forms, non-square crop wider than many resized images (zero padding), other stats.
        "other_size": {
            "crop_size": {"height": 128, "width": 176}, "do_center_crop": True, "do_normalize": True,
            "do_resize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "resample": 3, "size": 144, "image_processor_type": "CLIPImageProcessor",
        },
    }
    # The other PIL convolution filters, exact target size, no crop (resampling set only).
    for resample, fname in [(1, "lanczos"), (2, "bilinear"), (4, "box"), (5, "hamming")]:
        configs["filter_" + fname] = {
            "size": {"height": 48, "width": 64}, "do_center_crop": False, "resample": resample,
            "image_processor_type": "CLIPImageProcessor",
        }

    processed = []
    config_entries = []
    levels_seen = {}
    for cname, cfg in configs.items():
        cdir = os.path.join(OUT, "configs", cname)
        os.makedirs(cdir)
        with open(os.path.join(cdir, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        proc = CLIPImageProcessor.from_pretrained(cdir)
        # transformers' own rescale+normalize of every level: a 1x256 image, resize/crop off.
        ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, -1)
        lut = proc(images=Image.fromarray(ramp), do_resize=False, do_center_crop=False,
                   return_tensors="np").pixel_values[0, :, 0, :].astype(np.float32)
        for c in range(3):
            assert np.all(np.diff(lut[c]) > 0), "LUT must be strictly increasing to be invertible"
        lut_file = "expected/lut/" + cname + ".f32"
        lut.astype("<f4").tofile(os.path.join(OUT, lut_file))
        config_entries.append({
            "name": cname, "dir": "configs/" + cname, "lut": lut_file,
            "processor_class": type(proc).__name__,
            "std": [float(s) for s in (proc.image_std if proc.do_normalize else [1, 1, 1])],
            "rescale_factor": float(proc.rescale_factor) if proc.do_rescale else 1.0,
        })
        for entry in images:
            if cname.startswith("filter_") and entry["kind"] != "resample":
                continue
            if entry["_pil_path"] is not None:
                with Image.open(entry["_pil_path"]) as im:  # exactly what a pipeline user passes
                    pv = proc(images=im, return_tensors="np").pixel_values[0]
            else:
                pv = proc(images=Image.fromarray(entry["_rgb"]), return_tensors="np").pixel_values[0]
            assert pv.dtype == np.float32
            levels = np.empty(pv.shape, np.uint8)
            for c in range(3):
                q = np.searchsorted(lut[c], pv[c])
                assert np.all(q < 256)
                levels[c] = q
                assert np.array_equal(lut[c][q], pv[c]), "pixel_values not a LUT of uint8 levels"
            # Stored as an 8-bit gray PNG of shape (3*H, W) written by PIL (lossless, ~3x smaller than
            # raw); the FNV-1a digest of the raw CHW bytes lets the test verify its container decode.
            digest = hashlib.sha1(levels.tobytes() + str(levels.shape).encode()).hexdigest()[:16]
            lfile = "expected/levels/" + digest + ".png"
            if digest not in levels_seen:
                Image.fromarray(levels.reshape(-1, levels.shape[2]), mode="L").save(
                    os.path.join(OUT, lfile), optimize=True)
                levels_seen[digest] = lfile
            processed.append({
                "image": entry["name"], "config": cname, "shape": list(pv.shape), "levels_png": lfile,
                "levels_fnv1a64": fnv1a64(levels.tobytes()),
            })

    # --- PIL resize sweep: one random source, many target sizes, every convolution filter.
    # Raw uint8 outputs of PIL's Image.resize (what the PIL backend calls), concatenated.
    sweep_src = rng.integers(0, 256, (29, 41, 3), dtype=np.uint8)
    sweep_src[10:20, 5:30] = (255, 0, 255)  # hard edges drive over/undershoot into the clamps
    sweep_src.tofile(os.path.join(OUT, "expected", "sweep_source.rgb"))
    targets = [(1, 1), (41, 1), (1, 29), (40, 29), (41, 30), (20, 14), (7, 60), (60, 7), (50, 35), (13, 9),
               (3, 2), (41, 28), (17, 29), (150, 3), (30, 22)]
    sweep_cases, blob = [], b""
    for resample in [1, 2, 3, 4, 5]:
        for tw, th in targets:
            out = np.array(Image.fromarray(sweep_src).resize((tw, th), resample=resample))
            sweep_cases.append({"resample": resample, "width": tw, "height": th, "offset": len(blob)})
            blob += out.tobytes()
    with open(os.path.join(OUT, "expected", "sweep_outputs.rgb"), "wb") as f:
        f.write(blob)

    for e in images:
        del e["_rgb"], e["_pil_path"]
    manifest = {
        "generator": "notebooks-export/fixtures_image.py",
        "versions": {"transformers": transformers.__version__, "pillow": Image.__version__,
                     "numpy": np.__version__},
        "images": images,
        "bad_files": bad_files,
        "configs": config_entries,
        "processed": processed,
        "sweep": {"source": "expected/sweep_source.rgb", "width": 41, "height": 29,
                  "outputs": "expected/sweep_outputs.rgb", "cases": sweep_cases},
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(OUT) for n in ns)
    print(f"{len(images)} images, {len(processed)} processed cases, {len(levels_seen)} distinct level files, "
          f"{total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
