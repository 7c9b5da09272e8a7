"""SDXL bracket denoisers: the backbone read from unet/config.json, the SDXL config translation
(checked against ComfyUI's own detection of stock SDXL), Load Bracket Denoiser building ComfyUI's
SDXL_instructpix2pix, faithfulness of Highlight/Shadow Bracket against stock diffusers parts
following the official LEDiff loop with SDXL's added_cond_kwargs, UNet evaluations per node equal to
SD1.5's, and the mismatches each refused with a clear error.

Faithfulness reference (as tests/nodes/model/test_reference_diffusers.py, with SDXL's extra inputs):
  C+ = input latent x 0.13025; pass A: seed s, condition C+ -> C0; pass B: seed s + 22, condition C0
  -> C-; the condition is concatenated after the noisy latent in both CFG branches; the UNet gets
  text_embeds = the pooled output and time_ids = (height, width, crop_h, crop_w, target_height,
  target_width) in pixels, the values ComfyUI's SDXL.encode_adm reads from the conditioning.
Conditioning is random tensors of the tiny model's widths (768 context, 768 pooled): a real SDXL CLIP
cannot be built small.
"""

from __future__ import annotations

import os

import pytest
import torch

from lediff_core.model.unet_config import ldm_unet_config
from support import tiny_models as fx
from support.graphs import MODEL, SDXL_MODEL
from support.tiny_models import STOCK_SDXL

STEPS, SEED, SCALE = 50, 1234, 0.13025
# explicit size/crop values, all different, so an order mix-up shows (ComfyUI's default is 768 x 768)
SIZE = {"height": 832, "width": 1216, "crop_h": 32, "crop_w": 64, "target_height": 896, "target_width": 1152}
TIME_IDS = [SIZE[k] for k in ("height", "width", "crop_h", "crop_w", "target_height", "target_width")]


# --- the config --------------------------------------------------------------------------------


def test_stock_sdxl_translates_to_comfyuis_own_sdxl_ip2p_detection(comfy):
    """ComfyUI detects SDXL from the weights' shapes (model_detection's table of published models):
    an independent reference for the translation, and for the model config it selects."""
    pack_backbones = comfy.pack_module("nodes.model.backbones")  # (before `import comfy.*` rebinds the name)
    core_backbones = comfy.pack_module("lediff_core.model.backbones")
    import comfy.model_detection
    import comfy.supported_models
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # shapes only: 2.6 billion parameters, no memory
        stock = UNet2DConditionModel.from_config(STOCK_SDXL)
    detected = comfy.model_detection.unet_config_from_diffusers_unet(stock.state_dict())
    ours = ldm_unet_config(STOCK_SDXL)
    assert detected is not None and detected.pop("dtype") is None
    assert ours.pop("num_heads") == -1  # ComfyUI's SDXL model config sets it
    assert ours == detected
    # ... and the model config ComfyUI picks for it is the one Load Bracket Denoiser builds
    picked = comfy.model_detection.model_config_from_unet_config(detected)
    assert type(picked) is comfy.supported_models.SDXL_instructpix2pix
    built = pack_backbones.denoiser_model_config(core_backbones.SDXL, ldm_unet_config(STOCK_SDXL))
    assert type(built) is type(picked) and built.unet_config == picked.unet_config


# --- the MODEL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdxl(comfy, sdxl_folder):
    return comfy.node_class("LEDiffLoadDenoiser").execute(SDXL_MODEL)[0]


@pytest.fixture(scope="module")
def sd15(comfy, models):
    return comfy.node_class("LEDiffLoadDenoiser").execute(MODEL)[0]


def cond(seed, **kw):
    return fx.sdxl_conditioning(seed, **{**SIZE, **kw})


def latent(h=8, w=12, seed=0):
    # an unscaled SDXL latent: unit variance once scaled
    return {"samples": torch.randn(1, 4, h, w, generator=torch.Generator().manual_seed(seed)) / SCALE}


def test_load_bracket_denoiser_builds_comfyuis_sdxl_ip2p(sdxl, sdxl_folder):
    import comfy.latent_formats
    import comfy.model_base
    import comfy.supported_models
    from safetensors.torch import load_file

    assert type(sdxl.model) is comfy.model_base.SDXL_instructpix2pix
    assert type(sdxl.model.model_config) is comfy.supported_models.SDXL_instructpix2pix
    assert isinstance(sdxl.model.latent_format, comfy.latent_formats.SDXL)
    unet = sdxl.get_model_object("diffusion_model")
    assert unet.in_channels == 8 and sdxl.model.model_config.unet_config["num_head_channels"] == 16
    # the ADM embedding arrived under its ComfyUI name (diffusers' add_embedding -> label_emb)
    sd = load_file(os.path.join(sdxl_folder, "unet", "diffusion_pytorch_model.safetensors"))
    assert torch.equal(unet.label_emb[0][0].weight, sd["add_embedding.linear_1.weight"])
    assert torch.equal(unet.label_emb[0][2].bias, sd["add_embedding.linear_2.bias"])


def test_the_converters_single_file_loads_the_same_sdxl_model(comfy, sdxl, sdxl_folder, models):
    from lediff_core.model.convert import convert

    name = "sdxl_denoiser_test_single"
    convert(sdxl_folder, models["lediff"], name)
    single = comfy.node_class("LEDiffLoadDenoiser").execute(f"{name}_denoiser.safetensors")[0]
    assert type(single.model) is type(sdxl.model)
    ours, theirs = (m.get_model_object("diffusion_model").state_dict() for m in (single, sdxl))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_tiles_wrap_and_video_run_unchanged_on_sdxl(comfy, sdxl):
    """The bracket options on an SDXL MODEL: tiles (the ADM input rides along with each tile),
    wrap_x, and video mode (motion measured on SDXL's latent RGB preview)."""
    sampling = comfy.pack_module("nodes.model.sampling")
    args = (cond(1), cond(2))
    wide = latent(8, 24, seed=7)
    shapes = []
    unet = sdxl.get_model_object("diffusion_model")
    handle = unet.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape[-2:])))
    try:
        tiled = sampling.run_brackets(sdxl, *args, wide, sampling.BracketSampling(3, 2, 7.5, "ddim", "ddim_uniform",
                                                                                  64, True))
    finally:
        handle.remove()
    assert set(shapes) == {(8, 8)}
    video_settings = sampling.BracketSampling(3, 2, 1.0, "ddim", "ddim_uniform", frames="video", chunk_frames=2)
    video = sampling.run_brackets(sdxl, *args, {"samples": wide["samples"].repeat(3, 1, 1, 1)}, video_settings)
    for out in (tiled, video):
        assert all(torch.isfinite(o["samples"]).all() and o["lediff_backbone"] == "sdxl" for o in out)
        assert not torch.allclose(out[1]["samples"], out[0]["samples"], atol=1e-3)


# --- faithfulness ------------------------------------------------------------------------------

def reference_pass(unet, condition, pos, neg, seed, cfg, time_ids=TIME_IDS):
    """One official LEDiff DDIM pass with stock diffusers parts, in ComfyUI's start/end convention
    (see tests/nodes/model/test_reference_diffusers.py)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", clip_sample=False, steps_offset=1,
                          timestep_spacing="leading", set_alpha_to_one=True)
    sched.set_timesteps(STEPS)
    torch.manual_seed(seed)
    latents = torch.randn(condition.shape) * (1 - sched.alphas_cumprod[sched.timesteps[0]]).sqrt()
    branches = [neg, pos] if cfg != 1 else [pos]  # ComfyUI skips the unconditional branch at CFG 1
    context = torch.cat([c[0][0] for c in branches])
    added = {"text_embeds": torch.cat([c[0][1]["pooled_output"] for c in branches]),
             "time_ids": torch.tensor([time_ids] * len(branches), dtype=torch.float32)}
    n = len(branches)
    for t in sched.timesteps:
        x = torch.cat([torch.cat([latents] * n), torch.cat([condition] * n)], dim=1)
        eps = unet(x, t, encoder_hidden_states=context, added_cond_kwargs=added).sample
        if n == 2:
            uncond, c = eps.chunk(2)
            eps = uncond + cfg * (c - uncond)
        latents = sched.step(eps, t, latents, eta=0.0).prev_sample
    return latents


def rel(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def diffusers_unet(sdxl_folder):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(sdxl_folder, subfolder="unet").eval()


@pytest.mark.parametrize("node, cfg", [("LEDiffHighlightBracket", 7.5), ("LEDiffShadowBracket", 1.0)])
def test_brackets_match_the_diffusers_reference(comfy, sdxl, diffusers_unet, node, cfg):
    pos, neg = cond(1), cond(2)
    given = latent()
    out = comfy.node_class(node).execute(sdxl, pos, neg, given, SEED, STEPS, cfg, "ddim", "ddim_uniform").args
    dark, mid, bright = (o["samples"] for o in out)
    # Highlight: (pass B, pass A, input); Shadow: (input, pass A, pass B)
    a, b, inp = (mid, dark, bright) if node == "LEDiffHighlightBracket" else (mid, bright, dark)
    assert torch.equal(inp, given["samples"])
    with torch.no_grad():
        c_plus = given["samples"] * SCALE
        c0 = reference_pass(diffusers_unet, c_plus, pos, neg, SEED, cfg)
        c_minus = reference_pass(diffusers_unet, c0, pos, neg, SEED + 22, cfg)
        # the size/crop values matter: the same pass with two ids swapped is far off
        swapped = TIME_IDS[1::-1] + TIME_IDS[2:]
        wrong = reference_pass(diffusers_unet, c_plus, pos, neg, SEED, cfg, swapped)
    errors = rel(a * SCALE, c0), rel(b * SCALE, c_minus)
    print(f"\n{node} CFG {cfg}: relative difference to the diffusers reference: pass A {errors[0]:.2e}, "
          f"pass B {errors[1]:.2e}; with height/width swapped {rel(a * SCALE, wrong):.2e}")
    assert max(errors) < 1e-3
    assert rel(a * SCALE, wrong) > 1e-2
    assert all(o["lediff_backbone"] == "sdxl" for o in out)


# --- UNet evaluations ----------------------------------------------------------------------------

def count_evaluations(model, run):
    """(UNet forward calls, latents evaluated) while ``run()`` runs, counted on the diffusion
    model's forward (a cond/uncond batch is one call of two latents, as ComfyUI batches them)."""
    counts = [0, 0]

    def hook(module, args):
        counts[0] += 1
        counts[1] += args[0].shape[0]

    handle = model.get_model_object("diffusion_model").register_forward_pre_hook(hook)
    try:
        out = run()
    finally:
        handle.remove()
    return tuple(counts), out


def test_unet_evaluations_per_bracket_node_equal_sd15s(comfy, sdxl, sd15):
    steps = 4
    evals = {}
    for name, model in (("sd15", sd15), ("sdxl", sdxl)):
        for cfg in (7.5, 1.0):
            counts, out = count_evaluations(model, lambda model=model, cfg=cfg: comfy.node_class(
                "LEDiffHighlightBracket").execute(model, cond(3), cond(4), latent(seed=5), 7, steps, cfg,
                                                  "ddim", "ddim_uniform").args)
            evals[name, cfg] = counts
            assert all(o["lediff_backbone"] == name for o in out)
    print(f"\nUNet (calls, latents) per bracket node, {steps} steps: {evals}")
    for cfg, latents in ((7.5, 2 * steps * 2), (1.0, 2 * steps)):  # two passes; cond + uncond vs cond only
        assert evals["sd15", cfg][1] == evals["sdxl", cfg][1] == latents
        assert evals["sd15", cfg][0] == evals["sdxl", cfg][0]


# --- mismatches ----------------------------------------------------------------------------------

def test_mismatches_are_clear_errors(comfy, sdxl, sd15, models):
    sampling = comfy.pack_module("nodes.model.sampling")
    args = (sampling.BracketSampling(3, 2, 1.0, "ddim", "ddim_uniform"),)
    # an SD1.5 denoiser given an SDXL checkpoint's conditioning (2048-wide text, 1280 pooled)
    xl = cond(1, context_dim=2048, pooled_dim=1280)
    with pytest.raises(ValueError, match=r"positive conditioning has text embeddings 2048 wide \(an SDXL "
                       r"checkpoint's CLIP\); this SD1.5 bracket denoiser takes 768.*SDXL LEDiff denoiser"):
        sampling.run_brackets(sd15, xl, xl, latent(), *args)
    # an SDXL denoiser given conditioning without a pooled output, or of other widths
    with pytest.raises(ValueError, match="negative conditioning has no pooled_output; this SDXL bracket "
                       "denoiser needs the pooled text embedding \\(768 wide\\)"):
        sampling.run_brackets(sdxl, cond(1), cond(2, pooled=False), latent(), *args)
    with pytest.raises(ValueError, match=r"pooled_output is 1280 wide; this SDXL bracket denoiser takes 768 "
                       r"\(its ADM input 2304"):
        sampling.run_brackets(sdxl, cond(1, pooled_dim=1280), cond(2), latent(), *args)
    with pytest.raises(ValueError, match="text embeddings 2048 wide.*this SDXL bracket denoiser takes 768"):
        sampling.run_brackets(sdxl, xl, xl, latent(), *args)
    # latents of another channel count, or made by the other backbone's bracket nodes
    with pytest.raises(ValueError, match="latent has 16 channels; this SDXL bracket denoiser works on SDXL "
                       "latents with 4"):
        sampling.run_brackets(sdxl, cond(1), cond(2), {"samples": torch.zeros(1, 16, 8, 8)}, *args)
    tagged = {**latent(), "lediff_backbone": "sd15"}
    with pytest.raises(ValueError, match="made by an SD1.5 LEDiff bracket node.*this bracket denoiser is SDXL"):
        sampling.run_brackets(sdxl, cond(1), cond(2), tagged, *args)
    with pytest.raises(ValueError, match="made by an SDXL LEDiff bracket node.*this bracket denoiser is SD1.5"):
        sampling.run_brackets(sd15, cond(1), cond(2), {**latent(), "lediff_backbone": "sdxl"}, *args)
    # a 4-channel SDXL UNet cannot be loaded as a denoiser
    fx.write_official_folder(models["lediff"], "plain_sdxl_unet", extras=False, vae_config=fx.SDXL_VAE_CONFIG,
                             unet_config={**fx.SDXL_UNET_CONFIG, "in_channels": 4})
    with pytest.raises(ValueError, match="SDXL UNet has in_channels 4.*lediff_train"):
        comfy.node_class("LEDiffLoadDenoiser").execute("plain_sdxl_unet")
