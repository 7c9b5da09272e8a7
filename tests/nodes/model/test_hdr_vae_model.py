"""The LEDIFF_HDR_VAE value's runtime in a genuine ComfyUI: float32 fusion and decoding whatever
ComfyUI's VAE dtype is (its --bf16-vae / --fp16-vae flags give a GPU's low-precision VAE on the
CPU), the explicit fast opt-in, tiling in the VAE's own latent units, progress, and one copy of
the weights (no encoder held by the HDR VAE)."""

from __future__ import annotations

import pytest
import torch

from lediff_core.model.fusion import ExposureFusion
from lediff_core.model.hdr_vae import HDRVAE
from lediff_core.model.vae import AutoencoderKL
from support import tiny_models as fx
from support.graphs import MODEL

LOW_DTYPES = {"bf16_vae": torch.bfloat16, "fp16_vae": torch.float16}


@pytest.fixture(params=list(LOW_DTYPES))
def low_vae_dtype(request, comfy, monkeypatch):
    """ComfyUI as started with --bf16-vae or --fp16-vae (what a recent NVIDIA GPU gets by default)."""
    from comfy.cli_args import args

    monkeypatch.setattr(args, request.param, True)
    return LOW_DTYPES[request.param]


def reference_hdr(z, config=None, seed=2, tile=0):
    """exp of a plain float32 decode (tiled: in ``tile`` latent pixels, a quarter overlapping) by the
    core AutoencoderKL with the fixture model's VAE weights."""
    vae = AutoencoderKL(config or fx.VAE_CONFIG)
    vae.load_weights(fx.make_vae(config, seed).state_dict())
    with torch.no_grad():
        log = vae.decode_tiled(z.float(), tile, max(tile // 4, 1)) if tile else vae.decode(z.float())
        return torch.exp(log).movedim(1, -1)


def relative_p99(hdr, ref):
    rel = ((hdr.double() - ref.double()).abs() / ref.double()).flatten()
    return torch.quantile(rel, 0.99).item()


def test_hdr_decode_is_float32_unless_the_user_opts_in(host, models, low_vae_dtype):
    import comfy.model_management as mm

    assert mm.vae_dtype(mm.vae_device(), [torch.bfloat16, torch.float32]) == low_vae_dtype
    hdr_vae, vae = host.node_class("LEDiffLoadHDRVAE").execute(MODEL).args
    assert vae.vae_dtype == low_vae_dtype  # the encoder path keeps ComfyUI's dtype
    assert {p.dtype for p in hdr_vae.core.parameters()} == {torch.float32}
    z = torch.randn(2, 4, 6, 8, generator=torch.Generator().manual_seed(3)) * 2
    ref = reference_hdr(z)
    assert torch.log(ref).max() - torch.log(ref).min() > 4  # an HDR range, where the dtype matters

    ran_in = []
    handle = hdr_vae.core.vae.decoder.conv_out.register_forward_hook(lambda m, i, out: ran_in.append(out.dtype))
    try:
        decode = host.node_class("LEDiffHDRDecode")
        exact = decode.execute(hdr_vae, {"samples": z}).args[0]
        exact_tiled = decode.execute(hdr_vae, {"samples": z}, False, 32, "float32 (exact)").args[0]
        assert set(ran_in) == {torch.float32}
        ran_in.clear()
        fast = decode.execute(hdr_vae, {"samples": z}, False, 0, "vae dtype (fast)").args[0]
        assert set(ran_in) == {low_vae_dtype}  # the opt-in really computes in the VAE dtype
    finally:
        handle.remove()
    assert exact.dtype == fast.dtype == torch.float32 and exact.shape == ref.shape == (2, 48, 64, 3)
    err_exact, err_fast = relative_p99(exact, ref), relative_p99(fast, ref)
    assert err_exact <= 1e-4
    assert relative_p99(exact_tiled, reference_hdr(z, tile=4)) <= 1e-4  # 32 pixels = 4 latent pixels
    assert err_fast > 1e-3 and err_fast > 100 * max(err_exact, 1e-7), (err_fast, err_exact)


def test_fusion_is_float32_under_a_low_precision_vae(host, models, low_vae_dtype):
    hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(MODEL).args[0]
    gen = torch.Generator().manual_seed(4)
    brackets = [torch.randn(1, 4, 5, 6, generator=gen) * 3 for _ in range(3)]
    fused = host.node_class("LEDiffLatentExposureFusion").execute(
        hdr_vae, *({"samples": b} for b in brackets)).args[0]["samples"]
    fusion = ExposureFusion()
    fusion.load_weights(fx.fusion_state_dict(seed=3))  # the fixture folder's merge_model.pth
    scale = 0.18215
    with torch.no_grad():
        ref = fusion([b * scale for b in brackets])[0] / scale
    assert fused.dtype == torch.float32
    assert torch.allclose(fused, ref, rtol=1e-6, atol=1e-6)


def test_the_hdr_vae_holds_no_encoder(host, models):
    hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(MODEL).args[0]
    names = [n for n, _ in hdr_vae.core.named_parameters()]
    assert not [n for n in names if n.startswith(("vae.encoder.", "vae.quant_conv."))]
    ref = fx.make_vae()
    decoder_params = sum(p.numel() for n, p in ref.named_parameters() if n.startswith(("decoder.", "post_quant_conv.")))
    assert sum(p.numel() for p in hdr_vae.core.parameters()) == decoder_params + 4 + 4  # + fusion conv
    with pytest.raises(RuntimeError, match="decoder-only"):
        hdr_vae.core.vae.encode(torch.zeros(1, 3, 16, 16))


def test_tiles_are_in_the_vaes_own_latent_units_with_progress_per_tile(host):
    """A VAE with three levels (4x downscale, not SD's 8): tile_size is in image pixels."""
    import comfy.utils

    models = host.pack_module("nodes.model.runtime")
    config = {**fx.VAE_CONFIG, "block_out_channels": [32, 64, 64], "down_block_types": ["DownEncoderBlock2D"] * 3,
              "up_block_types": ["UpDecoderBlock2D"] * 3}
    core = HDRVAE(config, fx.make_vae(config, seed=5).state_dict(), fx.fusion_state_dict(), "three levels")
    hdr_vae = models.HDRVAEModel(core, "three levels")
    assert hdr_vae.downscale_factor == 4
    z = torch.randn(1, 4, 20, 40, generator=torch.Generator().manual_seed(6))
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        hdr = hdr_vae.decode(z, tile_size=64)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert hdr.shape == (1, 80, 160, 3)
    # 16-pixel latent tiles overlapping by 4 (step 12): 2 rows x 3 columns (starts 0, 12, 24)
    assert seen and {t for _, t in seen} == {6} and seen[-1][0] == 6
    with torch.no_grad():
        expected = torch.exp(core.vae.decode_tiled(z, 16, 4)).movedim(1, -1)
    assert torch.equal(hdr, expected)
