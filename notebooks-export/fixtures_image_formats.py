#!/usr/bin/env python
"""Reference fixtures for UnCLIPImage's ImageFile (PNG / JPEG / WebP input, EXIF orientation).

Run from the repository root:  /work/venv/bin/python notebooks-export/fixtures_image_formats.py
(Pillow 13.0.0 with its bundled libjpeg-turbo 3.2.0 and libwebp 1.6.0; numpy.)
Writes Tests/Fixtures/image_formats/ (deterministic for a given Pillow build; re-running gives
identical files).

What the references are: exactly what diffusers' `load_image(path)` returns, i.e.
    PIL.Image.open(path) -> PIL.ImageOps.exif_transpose -> .convert("RGB")
stored as raw interleaved RGB bytes (`<name>.rgb`, width*height*3, rows top to bottom).
Note convert("RGB") DROPS alpha (no compositing): transparent pixels keep whatever colour the
file stores under them. That differs from transformers' `convert_to_rgb` (alpha composited onto
white), which is what `PNG.read` reproduces; see Tests/Fixtures/image (fixtures_image.py).

Cases (small images with odd sizes, so chroma subsampling edges and rotations are exercised):
  JPEG: baseline 4:2:0 / 4:2:2 / 4:4:4, progressive 4:2:0, grayscale, RGB stored as RGB (Adobe
        transform 0), CMYK (Pillow writes Adobe-inverted CMYK), YCCK (the CMYK file with its
        Adobe transform byte set to 2, so libjpeg converts YCC->RGB on the first three channels),
        EXIF orientations 2..8 (6 and 3 on the 4:2:0 photo), orientation 6 from XMP only.
  WebP: lossy, lossless, lossy + alpha, lossless + alpha, animated (first frame), lossy + EXIF 6.
  PNG:  RGBA, palette + tRNS, gray + alpha, eXIf orientation 8, "Raw profile type exif" text
        with orientation 5.
Every expected image is produced by PIL's own decoders; `tolerance` in the manifest is the
largest per-channel difference the Swift test accepts (0 = exact).
"""
import io
import json
import os
import shutil

import numpy as np
import PIL
from PIL import Image, ImageOps, PngImagePlugin, features

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "image_formats")

rng = np.random.default_rng(20260515)


def blurred_field(h, w, channels, sigma):
    """Smooth random field in 0..1 (photo-like), Gaussian blur through the FFT."""
    noise = rng.standard_normal((channels, h, w))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    field = np.real(np.fft.ifft2(np.fft.fft2(noise) * kernel))
    field -= field.min(axis=(1, 2), keepdims=True)
    field /= field.max(axis=(1, 2), keepdims=True)
    return np.moveaxis(field, 0, -1)


def photo(h, w, channels=3):
    """Smooth colours plus a few hard edges and a little noise: exercises DCT, chroma and upsampling."""
    x = blurred_field(h, w, channels, sigma=6.0) * 200 + 20
    x[h // 3 : h // 3 + 5, :, :] = 250  # a bright bar (sharp chroma edges)
    x[:, w // 2 : w // 2 + 3, 0] = 10
    x += rng.normal(0, 6, x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def load_image(path):
    """diffusers.utils.load_image for a local path, without the diffusers import."""
    image = Image.open(path)
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def exif_with_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    cases = []

    def add(name, filename, data, fmt, note="", tolerance=0):
        path = os.path.join(OUT, filename)
        with open(path, "wb") as f:
            f.write(data)
        # Open from the file on disk, exactly as load_image(path) would.
        rgb = load_image(path)
        arr = np.asarray(rgb, dtype=np.uint8)
        raw = name + ".rgb"
        with open(os.path.join(OUT, raw), "wb") as f:
            f.write(arr.tobytes())
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112)
            mode = im.mode
            stored = im.size
        cases.append(dict(name=name, file=filename, format=fmt, pil_mode=mode,
                          stored_width=stored[0], stored_height=stored[1],
                          width=rgb.width, height=rgb.height, orientation=orientation,
                          expected=raw, tolerance=tolerance, note=note, bytes=len(data)))

    def encode(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    rgb = Image.fromarray(photo(45, 67), "RGB")

    # ---------------------------------------------------------------- JPEG
    add("jpeg_baseline_420", "baseline_420.jpg", encode(rgb, "JPEG", quality=85, subsampling=2), "jpeg",
        "baseline, 4:2:0 (h2v2 fancy upsampling)")
    add("jpeg_baseline_422", "baseline_422.jpg", encode(rgb, "JPEG", quality=85, subsampling=1), "jpeg",
        "baseline, 4:2:2 (h2v1 fancy upsampling)")
    add("jpeg_baseline_444", "baseline_444.jpg", encode(rgb, "JPEG", quality=90, subsampling=0), "jpeg",
        "baseline, 4:4:4")
    add("jpeg_progressive_420", "progressive_420.jpg",
        encode(rgb, "JPEG", quality=80, subsampling=2, progressive=True), "jpeg", "progressive, 4:2:0")
    add("jpeg_gray", "gray.jpg", encode(rgb.convert("L"), "JPEG", quality=85), "jpeg",
        "one component; convert('RGB') repeats it")
    add("jpeg_rgb", "rgb_adobe0.jpg", encode(rgb, "JPEG", quality=85, keep_rgb=True), "jpeg",
        "three components stored as RGB (Adobe transform 0), no YCbCr conversion")

    cmyk_arr = photo(45, 67, channels=4)
    cmyk_arr[..., 3] //= 3  # modest black, so the CMYK->RGB formula sees a spread of k
    cmyk = Image.fromarray(cmyk_arr, "CMYK")
    cmyk_jpeg = encode(cmyk, "JPEG", quality=90)
    add("jpeg_cmyk", "cmyk.jpg", cmyk_jpeg, "jpeg",
        "Adobe CMYK (stored inverted); PIL's CMYK->RGB: nk - c*nk/255 rounded, nk = 255 - k")
    # YCCK: same bitstream, Adobe transform byte (APP14 payload offset 11) = 2.
    i = cmyk_jpeg.index(b"Adobe") - 4  # the APP14 marker and its length precede the payload
    ycck = bytearray(cmyk_jpeg)
    assert ycck[i + 4 + 11] == 0, "expected Adobe transform 0 in Pillow's CMYK JPEG"
    ycck[i + 4 + 11] = 2
    add("jpeg_ycck", "ycck.jpg", bytes(ycck), "jpeg",
        "4 components with Adobe transform 2: libjpeg decodes YCCK -> CMYK, then as CMYK")
    with Image.open(os.path.join(OUT, "ycck.jpg")) as im:
        assert im.info.get("adobe_transform") == 2

    add("jpeg_exif6", "exif6.jpg",
        encode(rgb, "JPEG", quality=85, subsampling=2, exif=exif_with_orientation(6)), "jpeg",
        "EXIF orientation 6 (rotate 90 clockwise)")
    add("jpeg_exif3", "exif3.jpg",
        encode(rgb, "JPEG", quality=85, subsampling=2, exif=exif_with_orientation(3)), "jpeg",
        "EXIF orientation 3 (rotate 180)")
    small = Image.fromarray(photo(14, 23), "RGB")
    for o in (2, 4, 5, 7, 8):
        add(f"jpeg_exif{o}_small", f"exif{o}_small.jpg",
            encode(small, "JPEG", quality=95, subsampling=0, exif=exif_with_orientation(o)), "jpeg",
            f"EXIF orientation {o}")
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
           b"</rdf:RDF></x:xmpmeta>")
    add("jpeg_xmp6", "xmp6.jpg", encode(small, "JPEG", quality=95, subsampling=0, xmp=xmp), "jpeg",
        "no EXIF; XMP tiff:Orientation=\"6\" (PIL falls back to XMP)")

    # ---------------------------------------------------------------- WebP
    rgba_arr = np.concatenate([photo(45, 67), np.zeros((45, 67, 1), np.uint8)], axis=-1)
    yy, xx = np.mgrid[0:45, 0:67]
    rgba_arr[..., 3] = np.clip(xx * 6 - 60, 0, 255)  # fully transparent strip on the left, then a ramp
    rgba = Image.fromarray(rgba_arr, "RGBA")
    add("webp_lossy", "lossy.webp", encode(rgb, "WEBP", quality=80), "webp", "VP8 (lossy)")
    add("webp_lossless", "lossless.webp", encode(rgb, "WEBP", lossless=True), "webp", "VP8L (lossless)")
    add("webp_lossy_alpha", "lossy_alpha.webp", encode(rgba, "WEBP", quality=80), "webp",
        "VP8X + ALPH + VP8; convert('RGB') drops alpha")
    add("webp_lossless_alpha", "lossless_alpha.webp", encode(rgba, "WEBP", lossless=True, exact=True), "webp",
        "VP8L with alpha, exact=True (RGB under transparent pixels kept); alpha dropped")
    frame2 = Image.fromarray(255 - photo(45, 67), "RGB")
    add("webp_animated", "animated.webp",
        encode(rgb, "WEBP", save_all=True, append_images=[frame2], duration=100, lossless=True), "webp",
        "two-frame animation: the first frame")
    add("webp_exif6", "exif6.webp", encode(rgb, "WEBP", quality=80, exif=exif_with_orientation(6).tobytes()),
        "webp", "VP8X with an EXIF chunk, orientation 6")

    # ---------------------------------------------------------------- PNG
    add("png_rgba", "rgba.png", encode(rgba, "PNG"), "png", "RGBA: alpha dropped, not composited")
    pal = rgb.quantize(16)
    add("png_palette_trns", "palette_trns.png", encode(pal, "PNG", transparency=3), "png",
        "palette with tRNS: palette colours, transparency ignored")
    la = Image.fromarray(np.stack([photo(45, 67)[..., 0], rgba_arr[..., 3]], -1), "LA")
    add("png_la", "gray_alpha.png", encode(la, "PNG"), "png", "gray + alpha: gray repeated, alpha dropped")
    add("png_exif8", "exif8.png", encode(rgb, "PNG", exif=exif_with_orientation(8)), "png",
        "eXIf chunk, orientation 8 (rotate 90 counter-clockwise)")
    raw_exif = exif_with_orientation(5).tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw_exif):8}\n{raw_exif.hex()}\n", zip=True)
    add("png_rawprofile5", "rawprofile5.png", encode(small, "PNG", pnginfo=info), "png",
        "zTXt 'Raw profile type exif' (ImageMagick style), orientation 5")

    manifest = dict(
        generator="notebooks-export/fixtures_image_formats.py",
        pillow=PIL.__version__,
        libjpeg_turbo=features.version("libjpeg_turbo"),
        libwebp=features.version("webp"),
        cases=cases,
    )
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"{len(cases)} cases, {total} bytes in {OUT}")
    for c in cases:
        print(f"  {c['name']:22s} {c['pil_mode']:5s} {c['stored_width']}x{c['stored_height']} -> "
              f"{c['width']}x{c['height']} orientation={c['orientation']} {c['bytes']} bytes")


if __name__ == "__main__":
    main()
