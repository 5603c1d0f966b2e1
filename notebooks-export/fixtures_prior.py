"""Reference fixtures for the PriorTransformer and Karlo's prior sampling loop.

Run from the repository root:  venv/bin/python notebooks-export/fixtures_prior.py
(diffusers 0.42.1, transformers 5.23.0, torch CPU, float32 everywhere).

Writes Tests/Fixtures/prior/:
  <name>/{config.json, diffusion_pytorch_model.safetensors}  tiny PriorTransformer, all parameters random
  <name>.expected.safetensors                                 forward inputs/outputs (see CASES below)
  karlo-tiny/{prior, prior_scheduler, text_encoder, tokenizer}  tiny Karlo-layout prior stage
  karlo-tiny.expected.safetensors + karlo-tiny.expected.json    UnCLIPPipeline prior-stage captures
  prior_transformers.expected.json                              index of the single-model fixtures
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_common import RandnLog, assert_all_random, randomize_, save_clip_tokenizer, tensor_info  # noqa: E402

from diffusers import PriorTransformer, UnCLIPScheduler  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModelWithProjection  # noqa: E402

torch.set_grad_enabled(False)
OUT = os.path.join("Tests", "Fixtures", "prior")

# ---------------------------------------------------------------------------------------------
# 1a. Single PriorTransformer forward passes
# ---------------------------------------------------------------------------------------------

CONFIGS = {
    # Karlo's layout (karlo-v1-alpha/prior/config.json sets only heads/head dim/layers/embedding
    # dim/num_embeddings/additional_embeddings/dropout; everything else is the default below).
    "karlo-like": dict(
        num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=32, num_embeddings=77,
        additional_embeddings=4, norm_in_type=None, embedding_proj_norm_type=None,
        encoder_hid_proj_type="linear", added_emb_type="prd", time_embed_act_fn="silu",
    ),
    # proj_embedding and output widths differ from embedding_dim; time_embed_dim differs from inner_dim.
    "proj-dims": dict(
        num_attention_heads=4, attention_head_dim=4, num_layers=1, embedding_dim=16, num_embeddings=7,
        additional_embeddings=4, embedding_proj_dim=24, clip_embed_dim=20, time_embed_dim=40,
    ),
    # LayerNorm on the input sequence and on proj_embedding.
    "layernorm": dict(
        num_attention_heads=4, attention_head_dim=8, num_layers=3, embedding_dim=32, num_embeddings=7,
        additional_embeddings=4, norm_in_type="layer", embedding_proj_norm_type="layer",
    ),
    # encoder_hid_proj_type=None / added_emb_type=None. diffusers only accepts this layout the way
    # Shap-E uses it: no encoder_hidden_states, no prd token, hidden_states [B, num_embeddings, D]
    # and additional_embeddings=0 (the positional table has num_embeddings + additional_embeddings
    # rows and is zero-padded in front for the proj/time tokens; with additional_embeddings=4 the
    # sum would not broadcast). The output is then [B, num_embeddings, clip_embed_dim].
    "shap-e-like": dict(
        num_attention_heads=2, attention_head_dim=4, num_layers=1, embedding_dim=16, num_embeddings=7,
        additional_embeddings=0, norm_in_type="layer", embedding_proj_norm_type="layer",
        encoder_hid_proj_type=None, added_emb_type=None, time_embed_act_fn="gelu",
        embedding_proj_dim=12, clip_embed_dim=24,
    ),
}


def make_inputs(cfg: dict, batch: int, g: torch.Generator, timestep, with_mask=True):
    """Random inputs for one forward pass. attention_mask rows: 1 = token, 0 = padding; the first
    rows have padding at the end (like CLIP tokenizer output), the last row has none."""
    emb = cfg["embedding_dim"]
    proj = cfg.get("embedding_proj_dim") or emb
    n_emb = cfg["num_embeddings"]
    x = {}
    if cfg.get("added_emb_type", "prd") is None:
        x["hidden_states"] = torch.randn(batch, n_emb, emb, generator=g)
    else:
        x["hidden_states"] = torch.randn(batch, emb, generator=g)
    x["timestep"] = timestep
    x["proj_embedding"] = torch.randn(batch, proj, generator=g)
    if cfg.get("encoder_hid_proj_type", "linear") is not None:
        # The sequence must have exactly num_embeddings tokens: the mask is padded by
        # additional_embeddings and added to the [num_embeddings + additional] causal mask.
        x["encoder_hidden_states"] = torch.randn(batch, n_emb, emb, generator=g)
        if with_mask:
            mask = torch.ones(batch, n_emb, dtype=torch.int64)
            for b in range(batch - 1):
                valid = max(2, n_emb * (b + 1) // (batch + 1))  # a different length per row
                mask[b, valid:] = 0
            x["attention_mask"] = mask
    return x


def run_forward(model, x):
    kwargs = dict(
        hidden_states=x["hidden_states"], timestep=x["timestep"], proj_embedding=x["proj_embedding"]
    )
    if "encoder_hidden_states" in x:
        kwargs["encoder_hidden_states"] = x["encoder_hidden_states"]
    if "attention_mask" in x:
        kwargs["attention_mask"] = x["attention_mask"].bool()  # pipelines pass a bool mask
    return model(**kwargs).predicted_image_embedding


def single_model_fixtures():
    index = {}
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(0)
        model = PriorTransformer(**cfg).eval()
        randomize_(model, seed=100 + i)
        folder = os.path.join(OUT, name)
        model.save_pretrained(folder, safe_serialization=True)
        assert_all_random(load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors")), folder)
        model = PriorTransformer.from_pretrained(folder).eval()  # test exactly what is committed

        g = torch.Generator().manual_seed(1000 + i)
        clip_dim = cfg.get("clip_embed_dim") or cfg["embedding_dim"]
        cases = {
            # per-row int64 timesteps
            "": make_inputs(cfg, 2, g, torch.tensor([999, 17], dtype=torch.int64)),
            # per-row non-integer float32 timesteps
            "float_t.": make_inputs(cfg, 2, g, torch.tensor([500.5, 3.25], dtype=torch.float32)),
        }
        if name == "karlo-like":
            # Guidance layout: rows [uncond0, uncond1, cond0, cond1], one 0-d int64 timestep as
            # the pipelines pass it (an element of scheduler.timesteps).
            cases["b4."] = make_inputs(cfg, 4, g, torch.tensor(250, dtype=torch.int64))
            # Without attention_mask diffusers applies NO causal mask at all.
            cases["nomask."] = make_inputs(cfg, 2, g, torch.tensor([10, 900]), with_mask=False)
        tensors, meta = {}, {}
        for prefix, x in cases.items():
            y = run_forward(model, x)
            lat = torch.randn(*y.shape, generator=g)
            for k, v in x.items():
                tensors[prefix + k] = v
            tensors[prefix + "predicted_image_embedding"] = y
            tensors[prefix + "post_process_input"] = lat
            tensors[prefix + "post_process_output"] = model.post_process_latents(lat)
            meta[prefix or "(default)"] = {k: tensor_info(v) for k, v in x.items()}
        assert all(torch.isfinite(v.float()).all() for v in tensors.values())
        save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, f"{name}.expected.safetensors"))
        index[name] = {
            "config": cfg,
            "clip_embed_dim": clip_dim,
            "cases": meta,
            "tensors": sorted(tensors),
            "output_abs_max": float(max(tensors[p + "predicted_image_embedding"].abs().max() for p in cases)),
        }
        print(name, "output |max|", index[name]["output_abs_max"])
    doc = {
        "about": "PriorTransformer (diffusers 0.42.1) forward passes, float32 CPU, on the model in <name>/. In "
                 "<name>.expected.safetensors each case's tensors share a prefix ('' = default case, 'float_t.', "
                 "'b4.', 'nomask.'): inputs hidden_states, timestep, proj_embedding, encoder_hidden_states, "
                 "attention_mask (int64 1 = token / 0 = padding; passed to the model as bool), output "
                 "predicted_image_embedding, and post_process_output = post_process_latents(post_process_input). "
                 "Default case: per-row int64 timesteps; float_t: per-row float32 timesteps; b4: batch of 4 "
                 "(guidance layout) with a 0-d int64 timestep (shape []); nomask: attention_mask=None, in which "
                 "case diffusers applies no causal mask either.",
        "models": index,
    }
    with open(os.path.join(OUT, "prior_transformers.expected.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# 1b. Tiny Karlo prior stage, run through diffusers' UnCLIPPipeline
# ---------------------------------------------------------------------------------------------

KARLO_DIR = os.path.join(OUT, "karlo-tiny")
KARLO_EMB = 32
SHORT_PROMPT = "a red cube on a table"
# Longer than 77 tokens: the pipeline truncates it (and logs a warning), so the cond row's mask is
# all ones while the unconditional "" row is mostly padding.
LONG_PROMPT = (
    "A highly detailed oil painting of an old lighthouse standing on a rocky cliff at sunset, "
    "waves crashing against the rocks below, seagulls circling in a purple and orange sky, "
    "soft volumetric light, dramatic clouds, tiny fishing boats returning to the harbour, "
    "warm glowing windows, textured brush strokes, trending on artstation, 4k, masterpiece, "
    "by a famous painter of the romantic era, with reflections shimmering on the wet sand"
)


def build_karlo_tiny():
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=KARLO_EMB,
        num_embeddings=77, additional_embeddings=4, dropout=0.0,
    ).eval()
    randomize_(prior, seed=200)
    prior.save_pretrained(os.path.join(KARLO_DIR, "prior"), safe_serialization=True)

    # As karlo-v1-alpha/prior_scheduler/scheduler_config.json configures it.
    sched = UnCLIPScheduler(
        variance_type="fixed_small_log", prediction_type="sample", clip_sample=True,
        clip_sample_range=5.0, num_train_timesteps=1000,
    )
    sched.save_pretrained(os.path.join(KARLO_DIR, "prior_scheduler"))

    # openai/clip-vit-large-patch14's text tower shrunk: quick_gelu, legacy eos_token_id=2 (the
    # pooled token is then input_ids.argmax(-1), i.e. the first <|endoftext|>), bos 0 / pad 1.
    te_cfg = CLIPTextConfig(
        vocab_size=49408, hidden_size=KARLO_EMB, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
        projection_dim=KARLO_EMB, layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    te = CLIPTextModelWithProjection(te_cfg).eval()
    randomize_(te, seed=201)
    te.save_pretrained(os.path.join(KARLO_DIR, "text_encoder"), safe_serialization=True)

    save_clip_tokenizer(os.path.join(KARLO_DIR, "tokenizer"), pad_token="<|endoftext|>")
    for sub, fname in (("prior", "diffusion_pytorch_model.safetensors"), ("text_encoder", "model.safetensors")):
        assert_all_random(load_file(os.path.join(KARLO_DIR, sub, fname)), sub)


class _StopAfterPrior(Exception):
    pass


def karlo_fixtures():
    from diffusers.pipelines.deprecated.unclip import pipeline_unclip
    from diffusers.schedulers import scheduling_unclip
    from transformers import CLIPTokenizer

    prior = PriorTransformer.from_pretrained(os.path.join(KARLO_DIR, "prior")).eval()
    sched = UnCLIPScheduler.from_pretrained(os.path.join(KARLO_DIR, "prior_scheduler"))
    te = CLIPTextModelWithProjection.from_pretrained(os.path.join(KARLO_DIR, "text_encoder")).eval()
    tok = CLIPTokenizer.from_pretrained(os.path.join(KARLO_DIR, "tokenizer"))
    # The decoder / super-res components are not needed to reach the end of the prior stage: we
    # stop the real pipeline right after `prior.post_process_latents` (the end of "# prior").
    pipe = pipeline_unclip.UnCLIPPipeline(
        prior=prior, decoder=None, text_encoder=te, tokenizer=tok, text_proj=None, super_res_first=None,
        super_res_last=None, prior_scheduler=sched, decoder_scheduler=None, super_res_scheduler=None,
    )
    pipe.set_progress_bar_config(disable=True)

    cap = {}
    orig_post = prior.post_process_latents
    orig_step = sched.step
    orig_prior_fwd = prior.forward
    orig_te_fwd = te.forward
    orig_tok_call = tok.__call__

    def post(latents):
        cap["latents_final"] = latents.clone()
        out = orig_post(latents)
        cap["image_embeds"] = out.clone()
        raise _StopAfterPrior

    def step(model_output, timestep, sample, generator=None, prev_timestep=None, **kw):
        out = orig_step(model_output, timestep, sample, generator=generator, prev_timestep=prev_timestep, **kw)
        cap.setdefault("steps", []).append((int(timestep), -1 if prev_timestep is None else int(prev_timestep),
                                           model_output.clone(), sample.clone(), out.prev_sample.clone()))
        return out

    def prior_fwd(*a, **kw):
        out = orig_prior_fwd(*a, **kw)
        if "prior_inputs" not in cap:  # the first call's inputs show the batch layout
            cap["prior_inputs"] = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in kw.items()}
            cap["prior_inputs"]["hidden_states"] = a[0].clone()
            cap["first_raw_output"] = out.predicted_image_embedding.clone()
        return out

    def te_fwd(input_ids, *a, **kw):
        out = orig_te_fwd(input_ids, *a, **kw)
        cap.setdefault("text_encoder", []).append(
            (input_ids.clone(), out.text_embeds.clone(), out.last_hidden_state.clone())
        )
        return out

    prior.post_process_latents = post
    sched.step = step
    prior.forward = prior_fwd
    te.forward = te_fwd

    def tok_call(text, *a, **kw):
        out = orig_tok_call(text, *a, **kw)
        if kw.get("padding") == "max_length":
            cap.setdefault("tokens", []).append((out.input_ids.clone(), out.attention_mask.clone()))
        return out

    # tokenizers are called as tok(...) -> type(tok).__call__; patch on a per-instance subclass.
    tok.__class__ = type("CapturingCLIPTokenizer", (type(tok),), {"__call__": lambda self, *a, **kw: tok_call(*a, **kw)})

    cases = []
    for seed in (0, 1, 1234):
        for pname, prompt in (("short", SHORT_PROMPT), ("long", LONG_PROMPT)):
            cases.append(dict(name=f"{pname}_s{seed}_n25_g4", prompt=prompt, seed=seed, steps=25, guidance=4.0))
    cases += [
        dict(name="short_s0_n5_g4", prompt=SHORT_PROMPT, seed=0, steps=5, guidance=4.0),
        # prior_guidance_scale 1.0 with decoder_guidance_scale 1.0: no CFG at all (batch not doubled).
        dict(name="short_s0_n25_g1_nocfg", prompt=SHORT_PROMPT, seed=0, steps=25, guidance=1.0, decoder_guidance=1.0),
        # UnCLIPPipeline quirk: CFG is on when prior OR decoder guidance > 1, so with the default
        # decoder_guidance_scale=8 a prior scale of 1.0 still runs the doubled batch and computes
        # uncond + 1.0 * (text - uncond).
        dict(name="short_s0_n25_g1_cfg", prompt=SHORT_PROMPT, seed=0, steps=25, guidance=1.0, decoder_guidance=8.0),
        # Two prompts in one call share one generator: batch layout [uncond0, uncond1, cond0, cond1].
        dict(name="both_s1234_n25_g4", prompt=[SHORT_PROMPT, LONG_PROMPT], seed=1234, steps=25, guidance=4.0),
        dict(name="short_s1_n5_g4_x2", prompt=SHORT_PROMPT, seed=1, steps=5, guidance=4.0, images_per_prompt=2),
    ]

    tensors, meta = {}, []
    for c in cases:
        cap.clear()
        gen = torch.Generator().manual_seed(c["seed"])
        with RandnLog([pipeline_unclip, scheduling_unclip]) as log:
            try:
                pipe(
                    prompt=c["prompt"], num_images_per_prompt=c.get("images_per_prompt", 1),
                    prior_num_inference_steps=c["steps"], generator=gen,
                    prior_guidance_scale=c["guidance"], decoder_guidance_scale=c.get("decoder_guidance", 8.0),
                )
                raise RuntimeError("pipeline did not reach post_process_latents")
            except _StopAfterPrior:
                pass
        n = c["name"]
        t = {}
        # Tokenizer calls in pipeline order: the prompt(s), then the unconditional "" (CFG only).
        t["input_ids"], t["attention_mask"] = cap["tokens"][0]
        te_calls = cap["text_encoder"]
        t["text_embeds"], t["last_hidden_state"] = te_calls[0][1], te_calls[0][2]
        if len(cap["tokens"]) > 1:
            t["uncond_input_ids"], t["uncond_attention_mask"] = cap["tokens"][1]
            t["uncond_text_embeds"], t["uncond_last_hidden_state"] = te_calls[1][1], te_calls[1][2]
        # What the prior actually received on its first call (after CFG concat / repeat_interleave).
        pi = cap["prior_inputs"]
        t["prior_in.proj_embedding"] = pi["proj_embedding"]
        t["prior_in.encoder_hidden_states"] = pi["encoder_hidden_states"]
        t["prior_in.attention_mask"] = pi["attention_mask"].to(torch.int64)
        t["prior_in.hidden_states"] = pi["hidden_states"]
        t["prior_in.first_raw_output"] = cap["first_raw_output"]
        # Draw 0 is the initial latents (init_noise_sigma is 1.0); later draws are step noises.
        assert log.draws[0][0] == "pipeline_unclip"
        t["latents_init"] = log.draws[0][1]
        steps = cap["steps"]
        t["timesteps"] = torch.tensor([s[0] for s in steps], dtype=torch.int64)
        t["prev_timesteps"] = torch.tensor([s[1] for s in steps], dtype=torch.int64)
        t["step.model_output"] = torch.stack([s[2] for s in steps])  # guided prediction per step
        t["step.sample"] = torch.stack([s[3] for s in steps])
        t["step.prev_sample"] = torch.stack([s[4] for s in steps])
        noise = [d for m, d in log.draws[1:]]
        assert all(m == "scheduling_unclip" for m, _ in log.draws[1:])
        assert len(noise) == len(steps) - 1  # no noise at t = 0
        t["step.noise"] = torch.stack(noise)
        t["latents_final"] = cap["latents_final"]
        t["image_embeds"] = cap["image_embeds"]
        for k, v in t.items():
            tensors[f"{n}.{k}"] = v.contiguous()
        meta.append({
            "name": n, "prompt": c["prompt"], "seed": c["seed"], "prior_num_inference_steps": c["steps"],
            "prior_guidance_scale": c["guidance"], "decoder_guidance_scale": c.get("decoder_guidance", 8.0),
            "num_images_per_prompt": c.get("images_per_prompt", 1),
            "classifier_free_guidance": len(cap["tokens"]) > 1,
            "random_draws": [{"module": m, "shape": list(d.shape)} for m, d in log.draws],
            "tensors": {f"{n}.{k}": tensor_info(v) for k, v in t.items()},
        })
        print(n, "embeds |max|", float(t["image_embeds"].abs().max()), "draws", len(log.draws))

    save_file(tensors, os.path.join(OUT, "karlo-tiny.expected.safetensors"))
    doc = {
        "about": "UnCLIPPipeline (diffusers 0.42.1, deprecated/unclip/pipeline_unclip.py) prior stage on "
                 "Tests/Fixtures/prior/karlo-tiny, float32 CPU, generator = torch.Generator().manual_seed(seed). "
                 "Tensor names are '<case>.<what>'. step.* are stacked over steps in order: model_output is the "
                 "guided prior prediction passed to UnCLIPScheduler.step (with prev_timestep = next timestep, "
                 "None -> -1 on the last step), sample its input latents, prev_sample its output, noise the "
                 "variance noise it drew (steps with t > 0 only). image_embeds = prior.post_process_latents("
                 "latents_final). prior_in.* = the first prior call's inputs (batch [uncond..., cond...] with CFG). "
                 "Masks are stored as int64 (the pipeline passes them as bool).",
        "cases": meta,
    }
    with open(os.path.join(OUT, "karlo-tiny.expected.json"), "w") as f:
        json.dump(doc, f, indent=1)


def verify_karlo():
    """Self-check of the captures: rebuild each case from the stored tensors with direct model /
    scheduler calls (no pipeline) and compare, so a mis-ordered capture cannot go unnoticed."""
    from diffusers.schedulers import scheduling_unclip
    from diffusers.utils.torch_utils import randn_tensor

    t = load_file(os.path.join(OUT, "karlo-tiny.expected.safetensors"))
    doc = json.load(open(os.path.join(OUT, "karlo-tiny.expected.json")))
    prior = PriorTransformer.from_pretrained(os.path.join(KARLO_DIR, "prior")).eval()
    te = CLIPTextModelWithProjection.from_pretrained(os.path.join(KARLO_DIR, "text_encoder")).eval()
    for c in doc["cases"]:
        n, k = c["name"], c["num_images_per_prompt"]
        out = te(t[f"{n}.input_ids"])
        assert torch.equal(out.text_embeds, t[f"{n}.text_embeds"])
        emb, hid, mask = out.text_embeds, out.last_hidden_state, t[f"{n}.attention_mask"].bool()
        emb, hid, mask = (x.repeat_interleave(k, dim=0) for x in (emb, hid, mask))
        if c["classifier_free_guidance"]:
            u = te(t[f"{n}.uncond_input_ids"])
            b = emb.shape[0]
            emb = torch.cat([u.text_embeds.expand(b, -1), emb])
            hid = torch.cat([u.last_hidden_state.expand(b, -1, -1), hid])
            mask = torch.cat([t[f"{n}.uncond_attention_mask"].bool().expand(b, -1), mask])
        assert torch.equal(emb, t[f"{n}.prior_in.proj_embedding"])
        assert torch.equal(mask.long(), t[f"{n}.prior_in.attention_mask"])
        sched = UnCLIPScheduler.from_pretrained(os.path.join(KARLO_DIR, "prior_scheduler"))
        sched.set_timesteps(c["prior_num_inference_steps"])
        assert torch.equal(sched.timesteps, t[f"{n}.timesteps"])
        x = t[f"{n}.latents_init"]
        # Feed the recorded variance noises back in place of the scheduler's own draws.
        queue = list(t[f"{n}.step.noise"])
        scheduling_unclip.randn_tensor = lambda *a, **kw: queue.pop(0)
        ts = list(sched.timesteps)
        for i, ti in enumerate(ts):
            inp = torch.cat([x, x]) if c["classifier_free_guidance"] else x
            y = prior(inp, timestep=ti, proj_embedding=emb, encoder_hidden_states=hid, attention_mask=mask)
            y = y.predicted_image_embedding
            if c["classifier_free_guidance"]:
                yu, yt = y.chunk(2)
                y = yu + c["prior_guidance_scale"] * (yt - yu)
            prev = ts[i + 1] if i + 1 < len(ts) else None
            x = sched.step(y, ti, x, prev_timestep=prev).prev_sample
        scheduling_unclip.randn_tensor = randn_tensor
        assert not queue
        torch.testing.assert_close(x, t[f"{n}.latents_final"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prior.post_process_latents(x), t[f"{n}.image_embeds"], rtol=1e-5, atol=1e-5)
    print("karlo-tiny captures verified")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    single_model_fixtures()
    build_karlo_tiny()
    karlo_fixtures()
    verify_karlo()
