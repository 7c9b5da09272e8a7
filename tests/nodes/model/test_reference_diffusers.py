"""Faithfulness: our brackets, fused latent and HDR against an independent reference built from
stock diffusers parts (UNet2DConditionModel, DDIMScheduler with leading spacing and steps_offset 1,
AutoencoderKL), loaded by diffusers itself from the same official-layout folder, following the
official LEDiff loop:

  C+ = input latent (scaled); pass A: seed s, condition C+ -> C0; pass B: seed s + 22, condition C0
  -> C-; the condition is concatenated after the noisy latent in both CFG branches;
  C_merge = F(C-, C0, C+); HDR = exp(vae.decode(C_merge / 0.18215)).

ComfyUI's DDIM trajectory starts from noise scaled for the first visited timestep and ends on a
clean sample; the official loop starts from unit noise and ends at alpha_cumprod[0]. With the
reference set to ComfyUI's start and end, we must agree to 1e-3 relative.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from support.graphs import bracket_graph, saved_hdr, saved_latent, write_photo

STEPS, CFG, SEED, SCALE = 50, 7.5, 1234, 0.18215


def encode(host, models, text):
    clip = host.node_class("CLIPLoader")().load_clip(os.path.basename(models["clip"]), "stable_diffusion")[0]
    return host.node_class("CLIPTextEncode")().encode(clip, text)[0][0][0]


def reference_pass(unet, condition, pos, neg, seed, comfy_convention=True):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", clip_sample=False, steps_offset=1,
                          timestep_spacing="leading", set_alpha_to_one=comfy_convention)
    sched.set_timesteps(STEPS)
    torch.manual_seed(seed)
    latents = torch.randn(condition.shape)
    if comfy_convention:  # noise at the first visited timestep's level, as ComfyUI starts
        latents = latents * (1 - sched.alphas_cumprod[sched.timesteps[0]]).sqrt()
    context = torch.cat([neg, pos])
    for t in sched.timesteps:
        x = torch.cat([torch.cat([latents] * 2), torch.cat([condition] * 2)], dim=1)
        uncond, cond = unet(x, t, encoder_hidden_states=context).sample.chunk(2)
        latents = sched.step(uncond + CFG * (cond - uncond), t, latents, eta=0.0).prev_sample
    return latents


def fuse_formula(latents, fusion_sd):
    a = fusion_sd["weight_conv.weight"].view(1, -1, 1, 1)
    b = fusion_sd["weight_conv.bias"].view(1, -1, 1, 1)
    logits = torch.stack([a * c + b for c in latents])
    w = torch.softmax(logits, dim=0)
    return (w * torch.stack(latents)).sum(0)


def rel(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def run(comfy, models, tmp_path_factory):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    comfy.use_folders(tmp_path_factory.mktemp("ref_run"))
    write_photo(comfy, size=(64, 40))
    graph = bracket_graph(steps=STEPS, cfg=CFG, seed=SEED)
    graph["2"]["inputs"]["text"] = "a bright window"
    comfy.run(graph)
    ours = {n: saved_latent(comfy, n) for n in ("input", "dark", "mid", "bright", "fused")}
    ours["hdr"] = torch.from_numpy(saved_hdr(comfy))
    folder = models["highlight"]
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").eval()
    fusion_sd = torch.load(os.path.join(folder, "vae", "merge_model.pth"), weights_only=True)
    pos, neg = encode(comfy, models, "a bright window"), encode(comfy, models, "")
    return {"ours": ours, "unet": unet, "vae": vae, "fusion": fusion_sd, "pos": pos, "neg": neg}


def test_brackets_fused_latent_and_hdr_match_the_diffusers_reference(run):
    ours, unet, vae = run["ours"], run["unet"], run["vae"]
    with torch.no_grad():
        c_plus = ours["input"] * SCALE
        c0 = reference_pass(unet, c_plus, run["pos"], run["neg"], SEED)
        c_minus = reference_pass(unet, c0, run["pos"], run["neg"], SEED + 22)
        merged = fuse_formula([c_minus, c0, c_plus], run["fusion"])
        hdr = torch.exp(vae.decode(merged / SCALE).sample)[0].permute(1, 2, 0)
    assert rel(ours["mid"] * SCALE, c0) < 1e-3
    assert rel(ours["dark"] * SCALE, c_minus) < 1e-3
    assert rel(ours["fused"] * SCALE, merged) < 1e-3
    assert rel(ours["hdr"], hdr) < 1e-3
    assert hdr.max() / hdr.min() > 4  # a non-trivial HDR, so the comparison means something

    # the remaining difference to the official start/end convention (reported, not a target)
    with torch.no_grad():
        official = reference_pass(unet, c_plus, run["pos"], run["neg"], SEED, comfy_convention=False)
    print(f"\nrelative difference to the official DDIM convention (pass A): {rel(ours['mid'] * SCALE, official):.2e}; "
          f"to the ComfyUI-convention reference: {rel(ours['mid'] * SCALE, c0):.2e}")


def test_fusion_and_decode_alone_match_the_formulas(run):
    ours, vae = run["ours"], run["vae"]
    brackets = [ours["dark"] * SCALE, ours["mid"] * SCALE, ours["bright"] * SCALE]
    with torch.no_grad():
        merged = fuse_formula(brackets, run["fusion"])
        hdr = torch.exp(vae.decode(ours["fused"]).sample)[0].permute(1, 2, 0)
    assert rel(ours["fused"] * SCALE, merged) < 1e-5
    assert rel(ours["hdr"], hdr) < 1e-5
    assert np.isfinite(hdr.numpy()).all()
