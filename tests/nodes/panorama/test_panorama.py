"""360-degree panoramas: a horizontally wrapping MODEL, a wrap-aware and tiled HDR Decode, the
lighting preview, and lat-long EXRs read back by Debian's exrenvmap (an independent reader)."""

from __future__ import annotations

import os

import pytest
import torch

from lediff_core.color.tonemap import tone_map
from lediff_core.io.exr import read_exr
from lediff_core.model.vae import AutoencoderKL
from support import tiny_models as fx
from support.common import HDRI_DIR
from support.graphs import MODEL


def unet_output(model, x, t, context):
    import comfy.model_management as mm

    mm.load_models_gpu([model])
    with torch.no_grad():
        return model.model.diffusion_model(x, t, context=context)


def test_seamless_panorama_wraps_a_copy_of_the_model(host, models):
    model = host.node_class("LEDiffLoadDenoiser").execute(MODEL)[0]
    wrapped = host.node_class("LEDiffPanoramaWrap").execute(model).args[0]
    gen = torch.Generator().manual_seed(0)
    x, ctx, t = torch.randn(1, 8, 8, 16, generator=gen), torch.randn(1, 77, 768, generator=gen), torch.tensor([500.0])
    before = unet_output(model, x, t, ctx)
    shifted = unet_output(wrapped, torch.roll(x, 4, -1), t, ctx)
    # circular shifts by a multiple of the UNet's total downsampling (4) commute with it exactly
    assert torch.allclose(shifted, torch.roll(unet_output(wrapped, x, t, ctx), 4, -1), atol=1e-4)
    assert not torch.allclose(torch.roll(before, 4, -1), unet_output(model, torch.roll(x, 4, -1), t, ctx), atol=1e-3)
    assert torch.equal(unet_output(model, x, t, ctx), before)  # the caller's model is untouched


def encoded_panorama(name="city.exr", size=(128, 64)):
    """A real HDRI, tone-mapped to LDR, encoded by the fixture VAE: a latent with true 360 content."""
    vae = AutoencoderKL(fx.VAE_CONFIG)
    vae.load_weights(fx.make_vae().state_dict())
    rgb = torch.from_numpy(read_exr(os.path.join(HDRI_DIR, name)).rgb)[None]
    ldr = tone_map(rgb, "aces", auto_exposure=True).movedim(-1, 1)
    ldr = torch.nn.functional.interpolate(ldr, size=size[::-1], mode="area")
    with torch.no_grad():
        return vae, vae.encode(ldr * 2 - 1)


def column_steps(img):
    """Mean absolute step between neighbouring columns [W-1], and across the left/right edge."""
    inner = (img[..., 1:] - img[..., :-1]).abs().mean(dim=(0, 1, 2))
    edge = (img[..., 0] - img[..., -1]).abs().mean()
    return inner, edge


def test_wrap_x_decodes_seamlessly(host, models):
    hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(MODEL)[0]
    _, z = encoded_panorama()
    decode = host.node_class("LEDiffHDRDecode")
    wrapped = torch.log(decode.execute(hdr_vae, {"samples": z}, True, 0).args[0]).movedim(-1, 1)
    plain = torch.log(decode.execute(hdr_vae, {"samples": z}, False, 0).args[0]).movedim(-1, 1)
    inner, edge = column_steps(wrapped)
    assert edge <= torch.quantile(inner, 0.9)  # the seam is like a typical column step inside
    assert column_steps(plain)[1] > edge  # without wrapping the seam is worse
    # exact: decoding commutes with circular shifts
    rolled = torch.log(decode.execute(hdr_vae, {"samples": torch.roll(z, 5, -1)}, True, 0).args[0]).movedim(-1, 1)
    assert torch.allclose(rolled, torch.roll(wrapped, 40, -1), atol=1e-4)
    # tiled and wrapped: still seamless
    tiled = torch.log(decode.execute(hdr_vae, {"samples": z}, True, 64).args[0]).movedim(-1, 1)
    inner, edge = column_steps(tiled)
    assert edge <= torch.quantile(inner, 0.9)


def seam_errors(a, b):
    d = (a - b).abs().flatten()
    return d.mean().item(), torch.quantile(d, 0.99).item(), d.max().item()


def test_tiled_decode_differs_from_one_piece_less_than_comfyui_tiled_decode(host, models):
    """Same weights, same tile and overlap: our tiling error vs ComfyUI's own tiled VAE decode error,
    both measured as (x + 1) / 2 clamped to 0..1, the domain ComfyUI's decode returns."""
    core_hdr_vae, comfy_vae = (host.node_class("LEDiffLoadHDRVAE").execute(MODEL)[i] for i in (0, 1))
    vae = core_hdr_vae.core.vae
    z = torch.randn(1, 4, 32, 64, generator=torch.Generator().manual_seed(0)) * 0.8
    to01 = lambda x: ((x + 1) / 2).clamp(0, 1).movedim(1, -1)  # noqa: E731
    with torch.no_grad():
        ours_full, ours_tiled = to01(vae.decode(z)), to01(vae.decode_tiled(z, 16, 4))
    comfy_full = comfy_vae.decode(z)
    comfy_tiled = comfy_vae.decode_tiled(z, tile_x=16, tile_y=16, overlap=4)
    assert torch.allclose(ours_full, comfy_full, atol=1e-4)  # the same decoder
    ours, theirs = seam_errors(ours_tiled, ours_full), seam_errors(comfy_tiled, comfy_full)
    assert all(o <= t for o, t in zip(ours, theirs, strict=True)), (ours, theirs)
    assert ours[0] > 0  # the tiles really were decoded separately


def test_preview_lighting_on_constant_and_real_environments(host, models):
    node = host.node_class("LEDiffIBLPreview")
    preview, hdr = node.execute(torch.full((1, 32, 64, 3), 2.0), 64, 0.0).args
    assert preview.shape == hdr.shape == (1, 64, 128, 3)
    sphere = hdr[0, 32, 8:56]  # a row through the diffuse sphere: lit uniformly by a constant sky
    assert torch.allclose(sphere, torch.full_like(sphere, 2.0), rtol=2e-2)
    env = torch.from_numpy(read_exr(os.path.join(HDRI_DIR, "sunset.exr")).rgb)[None]
    preview, hdr = node.execute(env, 128, 0.0).args
    assert torch.isfinite(hdr).all() and preview.min() >= 0 and preview.max() <= 1
    with pytest.raises(ValueError, match="NaN"):
        node.execute(torch.full((1, 32, 64, 3), float("nan")), 64, 0.0)


