"""One-off step of the shipped shapes run (see notebooks-export/shapes_training_report.md, unet): after 2600 UNet
steps on the image embeddings as CLIP trained them, switch to train_shapes.IMAGE_EMBED_SCALE = 8 without changing
what the UNet computes: the CLIP cache embeddings/statistics are multiplied by 8 and the columns of the UNet's
class_embedding.linear_1 weight that read the embedding are divided by 8 (weights, EMA, Adam moments).
A from-scratch rerun of train_shapes.py does not need it (load_clip applies the scale from the start).
Run from the repository root: venv/bin/python notebooks-export/shapes_migrate_embed_scale.py
"""
import sys, torch
sys.path.insert(0, "notebooks-export")
import train_shapes as T
K = T.IMAGE_EMBED_SCALE
W = T.WORK + "/"
cc = torch.load(W + "clip_cache.pt")
torch.save(cc, W + "clip_cache_unscaled.pt")
for k in ("image_embeds", "mean", "std"):
    cc[k] = cc[k] * K
torch.save(cc, W + "clip_cache.pt")
ck = torch.load(W + "unet.pt", weights_only=False)
torch.save(ck, W + "unet_2600_unscaled.pt")
name = "class_embedding.linear_1.weight"
for sd in (ck["model"], ck["ema"]):
    sd[name][:, :T.EMBED] /= K
unet = T.make_unet()
names = [n for n, p in unet.named_parameters() if p.requires_grad]
i = names.index(name)
st = ck["opt"]["state"][i]
assert st["exp_avg"].shape == ck["model"][name].shape
st["exp_avg"][:, :T.EMBED] /= K
st["exp_avg_sq"][:, :T.EMBED] /= K * K
torch.save(ck, W + "unet.pt")
print("migrated at step", ck["step"])
