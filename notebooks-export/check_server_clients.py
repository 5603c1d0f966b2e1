"""Drive `unclip serve` with unmodified third-party clients: AUTOMATIC1111's `webuiapi` and OpenAI's official
Python SDK, both from PyPI. Not a test the CI runs (CI has no PyPI packages); run it by hand:

    python3 -m venv venv && venv/bin/pip install webuiapi openai pillow
    swift build -c release --product unclip
    venv/bin/python notebooks-export/check_server_clients.py

It starts the server on the shipped model (a fresh store in a temporary folder, an API key, a free port), runs
the calls below, checks what comes back, and prints the package versions and one line per check. Exit code 0
when every check passed.
"""
import argparse
import base64
import importlib.metadata as md
import io
import os
import re
import subprocess
import sys
import tempfile
import time

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "client-check-key-123"
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + str(detail) if detail else ''}")
    if not ok:
        failures.append(name)


def start(binary, folder):
    proc = subprocess.Popen([binary, "serve", "--port", "0", "--api-key", KEY, "--store", os.path.join(folder, "store.sqlite")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
    seen = ""
    while True:
        line = proc.stderr.readline()
        if not line:
            sys.exit("unclip serve did not start:\n" + seen)
        seen += line
        m = re.search(r"listening on http://[^:]+:(\d+)", line)
        if m:
            return proc, int(m.group(1))


def a1111(port):
    import webuiapi
    # A1111 clients authenticate with HTTP Basic (--api-auth user:password); the key is the password.
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port, username="me", password=KEY, sampler="Euler a", steps=20)
    r = api.txt2img(prompt="a red circle on the left", seed=1, cfg_scale=2, batch_size=2, width=32, height=32)
    check("webuiapi txt2img: two PIL images", len(r.images) == 2 and r.images[0].size == (32, 32), [i.size for i in r.images])
    check("webuiapi txt2img: info seeds", r.info.get("all_seeds") == [1, 2], r.info.get("all_seeds"))
    check("webuiapi txt2img: infotext", "Sampler: Euler a" in r.info["infotexts"][0], r.info["infotexts"][0].splitlines()[-1])
    e = api.img2img(images=[r.image], prompt="a blue circle", denoising_strength=0.6, seed=3, width=32, height=32)
    check("webuiapi img2img", len(e.images) == 1 and e.image.size == (32, 32), e.info.get("denoising_strength"))
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (16, 0, 32, 32))  # white = repaint, A1111's convention
    m = api.img2img(images=[r.image], mask_image=mask, prompt="a blue square", denoising_strength=1.0, seed=3, width=32, height=32)
    check("webuiapi img2img with mask_image (inpainting)", len(m.images) == 1 and m.image.size == (32, 32), m.info.get("denoising_strength"))
    info = api.png_info(r.image)
    text = info.json.get("info", "")
    check("webuiapi png_info reads our parameters", text.startswith("a red circle on the left\nSteps: 20, Sampler: Euler a"), text[:80])
    samplers = api.util_get_sampler_names()
    check("webuiapi samplers", {"Euler a", "DPM++ 2M", "DDIM"} <= set(samplers), samplers)
    check("webuiapi schedulers", api.util_get_scheduler_names() == ["automatic", "karras", "uniform"], api.util_get_scheduler_names())
    models = api.util_get_model_names()
    check("webuiapi models", len(models) == 1 and models[0].startswith("shapes ["), models)
    api.util_set_model("shapes")
    check("webuiapi options", api.get_options()["sd_model_checkpoint"] == models[0], api.get_options().get("sd_model_checkpoint"))
    p = api.get_progress()
    check("webuiapi progress (idle)", p["progress"] == 0 and p["state"]["job_count"] == 0, p)
    api.interrupt()
    check("webuiapi interrupt", True)


def openai_sdk(port):
    from openai import OpenAI, BadRequestError
    client = OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")
    r = client.images.generate(model="dall-e-2", prompt="a green triangle", n=2, size="256x256", response_format="b64_json")
    imgs = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in r.data]
    check("openai images.generate n=2", len(imgs) == 2 and imgs[0].size == (256, 256), [i.size for i in imgs])
    u = client.images.generate(prompt="a green triangle", n=1, size="256x256")
    check("openai images.generate url", u.data[0].url.startswith(f"http://127.0.0.1:{port}/api/generations/"), u.data[0].url)
    buf = io.BytesIO()
    imgs[0].save(buf, format="PNG")
    v = client.images.create_variation(image=("in.png", buf.getvalue(), "image/png"), n=2, size="256x256", response_format="b64_json")
    check("openai images.create_variation n=2", len(v.data) == 2 and v.data[0].b64_json, len(v.data))
    # OpenAI's edits repaint where the mask is fully transparent.
    mask = Image.new("RGBA", imgs[0].size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, imgs[0].size[0] // 2, imgs[0].size[1]))
    mbuf = io.BytesIO()
    mask.save(mbuf, format="PNG")
    ed = client.images.edit(image=("in.png", buf.getvalue(), "image/png"), mask=("mask.png", mbuf.getvalue(), "image/png"),
                            prompt="a blue square", n=1, size="256x256", response_format="b64_json")
    out = Image.open(io.BytesIO(base64.b64decode(ed.data[0].b64_json)))
    check("openai images.edit with an alpha mask", len(ed.data) == 1 and out.size == (256, 256), out.size)
    try:
        client.images.generate(prompt="x", n=50)
        check("openai error shape", False, "no error")
    except BadRequestError as e:
        check("openai error shape (param n)", e.body and e.body.get("param") == "n", e.body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/unclip"))
    args = ap.parse_args()
    for pkg in ("webuiapi", "openai", "requests", "pillow"):
        print(f"{pkg} {md.version(pkg)}")
    with tempfile.TemporaryDirectory() as folder:
        proc, port = start(args.binary, folder)
        try:
            t0 = time.time()
            a1111(port)
            openai_sdk(port)
            print(f"all calls in {time.time() - t0:.1f} s")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print("PASS" if not failures else f"FAILED: {', '.join(failures)}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
