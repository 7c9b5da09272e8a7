"""The LEDiff nodes in a genuine ComfyUI: loaders, brackets, fusion, HDR decode, blend, and the
bad inputs each must refuse clearly."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from support import tiny_models as fx
from support.comfy_harness import GraphError
from support.graphs import (
    MODEL,
    bracket_graph,
    conditioning,
    count_evaluations,
    interrupted_at_third_evaluation,
    load_denoiser,
    saved_hdr,
    saved_latent,
    write_photo,
)


def test_loaders_list_the_official_folder(host, models):
    for node in ("LEDiffLoadHDRVAE", "LEDiffLoadDenoiser"):
        options = host.node_class(node).GET_SCHEMA().inputs[0].options
        assert MODEL in options


def test_highlight_graph_end_to_end(host, models):
    write_photo(host)
    host.run(bracket_graph(steps=3))
    inp, dark, mid, bright, fused = (saved_latent(host, n) for n in ("input", "dark", "mid", "bright", "fused"))
    assert inp.shape == (1, 4, 6, 8)
    assert torch.equal(bright, inp)  # Highlight: bright is the input itself
    assert not torch.allclose(dark, mid) and fused.shape == inp.shape
    hdr = saved_hdr(host)
    assert hdr.shape == (48, 64, 3) and np.isfinite(hdr).all() and (hdr > 0).all()
    # linear HDR, unclamped: the random decoder's log output spans values far from [0, 1]
    assert hdr.max() > 1.5 or hdr.min() < 0.05


def test_shadow_bracket_keeps_the_input_as_dark(host, models):
    write_photo(host)
    host.run(bracket_graph(node="LEDiffShadowBracket", steps=2))
    assert torch.equal(saved_latent(host, "dark"), saved_latent(host, "input"))
    assert not torch.equal(saved_latent(host, "bright"), saved_latent(host, "mid"))


def test_batches_and_any_multiple_of_8_size(host, models):
    write_photo(host, size=(80, 40))
    host.run(bracket_graph(steps=2, batch=2))
    fused = saved_latent(host, "fused")
    assert fused.shape == (2, 4, 5, 10)
    first, second = saved_hdr(host, 1), saved_hdr(host, 2)
    assert first.shape == second.shape == (40, 80, 3)
    assert not np.array_equal(first, second)  # each batch item gets its own noise


def test_cfg_1_skips_the_unconditional_branch(host, models):
    sampling = host.pack_module("nodes.model.sampling")
    model = load_denoiser(host)
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    evals = {}
    for cfg in (7.5, 1.0):
        counted, counts = count_evaluations(model)
        settings = sampling.BracketSampling(5, 5, cfg, "ddim", "ddim_uniform")
        out = sampling.run_brackets(counted, pos, neg, latent, settings)
        assert all(torch.isfinite(o["samples"]).all() for o in out)
        evals[cfg] = counts["samples"]
    assert evals == {7.5: 2 * 5 * 2, 1.0: 2 * 5}  # two passes of five steps; cond+uncond vs cond only


def test_one_progress_bar_across_both_passes_and_interrupt_within_a_step(host, models):
    import comfy.utils

    sampling = host.pack_module("nodes.model.sampling")
    model = load_denoiser(host)
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        sampling.run_brackets(model, pos, neg, latent, sampling.BracketSampling(1, 4, 1.0, "ddim", "ddim_uniform"))
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    # ComfyUI throttles what reaches the hook; one bar of 2 x 4 steps, never reset between passes
    values = [v for v, _ in seen]
    assert {t for _, t in seen} == {8} and values == sorted(values) and values[-1] == 8

    assert interrupted_at_third_evaluation(sampling, model, pos, neg, latent) == 3  # inside it, not after the pass


def test_a_four_channel_unet_is_refused(host, models, tmp_path):
    import comfy.model_patcher
    import comfy.supported_models

    from lediff_core.model.unet_config import ldm_unet_config
    plain = ldm_unet_config({**fx.UNET_CONFIG, "in_channels": 4}, require_channels=None)
    sd15 = comfy.supported_models.SD15(plain).get_model({}, "")
    model = comfy.model_patcher.ModelPatcher(sd15, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    sampling = host.pack_module("nodes.model.sampling")
    with pytest.raises(ValueError, match="takes 4 input channels; a bracket needs an 8-channel LEDiff"):
        sampling.run_brackets(model, [], [], {"samples": torch.zeros(1, 4, 8, 8)},
                              sampling.BracketSampling(0, 2, 1.0, "ddim", "ddim_uniform"))
    # and a folder whose unet/ has 4 input channels cannot be loaded as a denoiser
    fx.write_official_folder(models["lediff"], "plain_sd_unet",
                             unet_config={**fx.UNET_CONFIG, "in_channels": 4}, extras=False)
    with pytest.raises(ValueError, match="4 input channels; a LEDiff bracket denoiser has 8"):
        load_denoiser(host, "plain_sd_unet")


def test_bad_inputs_are_clear_errors(host, models):
    write_photo(host)
    g = bracket_graph(steps=2, save_latents=False)
    g["30"] = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}}
    g["8"]["inputs"]["latent"] = ["30", 0]
    with pytest.raises(GraphError, match="16 channels"):
        host.run(g)

    g = bracket_graph(steps=2, save_latents=False)
    g["31"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    g["9"]["inputs"]["bright"] = ["31", 0]
    with pytest.raises(GraphError, match="differ in batch or size"):
        host.run(g)
    assert not os.path.exists(os.path.join(host.output_dir, "LEDiff"))

    hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(MODEL)[0]
    nan = torch.zeros(1, 4, 6, 8)
    nan[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        host.node_class("LEDiffLatentExposureFusion").execute(hdr_vae, {"samples": nan},
                                                              {"samples": nan}, {"samples": nan})


def test_broken_model_folders_are_clear_errors(host, models):
    os.makedirs(os.path.join(models["lediff"], "not_a_model"), exist_ok=True)
    with pytest.raises(ValueError, match="no unet/ folder"):
        load_denoiser(host, "not_a_model")
    broken = os.path.join(models["lediff"], "broken_keys")
    shutil.copytree(models["highlight"], broken, dirs_exist_ok=True)
    from safetensors.torch import load_file, save_file
    path = os.path.join(broken, "unet", "diffusion_pytorch_model.safetensors")
    sd = load_file(path)
    sd.pop("conv_in.bias")
    sd["conv_in.extra"] = torch.zeros(1)
    save_file(sd, path)
    with pytest.raises(ValueError, match=r"missing key\(s\): conv_in.bias.*unexpected key\(s\): conv_in.extra"):
        load_denoiser(host, "broken_keys")


def test_blend_with_ldr_keeps_unclipped_photo_and_anchors(host, models):
    gen = torch.Generator().manual_seed(0)
    ldr = torch.rand(1, 51, 70, 3, generator=gen) * 0.85 + 0.05  # nothing clipped
    # ComfyUI's VAE Encode crops 51x70 to 48x64, centred: rows 1..48, columns 3..66
    crop = ldr[:, 1:49, 3:67]
    hdr_in = crop ** 2.5 * 8  # an HDR that is exactly the photo under gamma 2.5 and +3 stops
    blend = host.node_class("LEDiffBlendLDR")
    out, mask = blend.execute(ldr, hdr_in, "released", "none", 50.0, 0.18).args
    assert mask.shape == (1, 48, 64) and mask.max() == 0
    assert torch.allclose(out, hdr_in, rtol=1e-3)
    out, mask = blend.execute(ldr, hdr_in * 3, "none", "percentile", 50.0, 0.18).args
    assert mask.min() == 1
    y = 0.2126 * out[..., 0] + 0.7152 * out[..., 1] + 0.0722 * out[..., 2]
    assert abs(torch.quantile(y.flatten(), 0.5).item() - 0.18) < 1e-4
    with pytest.raises(ValueError, match="resize the LDR"):
        blend.execute(torch.rand(1, 20, 20, 3), hdr_in, "released", "none", 50.0, 0.18)


def test_tiled_brackets_never_run_the_unet_on_more_than_a_tile(host, models):
    sampling = host.pack_module("nodes.model.sampling")

    def run_brackets(*options):
        settings = sampling.BracketSampling(3, 2, 1.0, "ddim", "ddim_uniform", *options)
        return sampling.run_brackets(model, pos, neg, latent, settings)

    model = load_denoiser(host)
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    latent = {"samples": torch.randn(1, 4, 16, 32, generator=torch.Generator().manual_seed(1))}
    shapes = []
    unet = model.get_model_object("diffusion_model")
    handle = unet.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[-2:])))
    try:
        for wrap in (False, True):
            out = run_brackets(128, wrap)
            assert all(o["samples"].shape == (1, 4, 16, 32) and torch.isfinite(o["samples"]).all() for o in out)
        assert set(shapes) == {(16, 16)}
        shapes.clear()
        # a tile as large as the latent means no tiling: the very same result as the plain node
        plain = run_brackets()
        same = run_brackets(256)
        assert torch.equal(plain[2]["samples"], same[2]["samples"]) and set(shapes) == {(16, 32)}
    finally:
        handle.remove()


def test_fusion_weight_maps_for_inspection(host, models):
    hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(MODEL)[0]
    gen = torch.Generator().manual_seed(2)
    brackets = [{"samples": torch.randn(2, 4, 3, 5, generator=gen)} for _ in range(5)]
    out = host.node_class("LEDiffLatentExposureFusion").execute(hdr_vae, *brackets[1:4], brackets[0], brackets[4])
    latent, maps = out.args
    assert latent["samples"].shape == (2, 4, 3, 5)
    # five brackets x two images, at the decoded size; the brackets' weights sum to one everywhere
    assert maps.shape == (10, 24, 40, 3)
    per_bracket = maps[..., 0].view(5, 2, 24, 40)
    assert torch.allclose(per_bracket.sum(0), torch.ones(2, 24, 40), atol=1e-5)


def test_untiled_wrap_x_brackets_equal_the_seamless_panorama_model(host, models):
    """wrap_x without tiles used to do nothing (a silent seam): it must wrap the UNet exactly like the
    Seamless Panorama node does."""
    sampling = host.pack_module("nodes.model.sampling")

    def run_brackets(model, latent, *options):
        settings = sampling.BracketSampling(3, 2, 1.0, "ddim", "ddim_uniform", *options)
        return sampling.run_brackets(model, pos, neg, latent, settings)

    model = load_denoiser(host)
    seamless = host.node_class("LEDiffPanoramaWrap").execute(model).args[0]
    pos, neg = conditioning(host, models), conditioning(host, models, "")
    latent = {"samples": torch.randn(1, 4, 8, 16, generator=torch.Generator().manual_seed(5))}
    wrapped = run_brackets(model, latent, 0, True)
    patched = run_brackets(seamless, latent)
    plain = run_brackets(model, latent)
    for i in (1, 2):
        assert torch.equal(wrapped[i]["samples"], patched[i]["samples"])
        assert not torch.allclose(wrapped[i]["samples"], plain[i]["samples"], atol=1e-3)
    # tiles as wide as the latent (here: taller than a tile) wrap the same way: the edge columns of
    # the result see each other, so they differ from the unwrapped tiled result
    tall = {"samples": torch.randn(1, 4, 24, 8, generator=torch.Generator().manual_seed(6))}
    tiled_wrapped = run_brackets(model, tall, 128, True)[2]["samples"]
    tiled_patched = run_brackets(seamless, tall, 128, False)[2]["samples"]
    assert torch.equal(tiled_wrapped, tiled_patched)
    assert not torch.allclose(tiled_wrapped, run_brackets(model, tall, 128, False)[2]["samples"], atol=1e-3)
