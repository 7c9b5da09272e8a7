"""SDXL on the HDR side, in a genuine ComfyUI: Load HDR VAE reads an SDXL HDR VAE's backbone and
latent scale (0.13025) from vae/config.json, the fusion works in that scale, HDR Decode of an SDXL
latent equals the core HDR VAE in float32 whatever ComfyUI's VAE flags say (an SDXL HDR VAE never
computes in float16, which SDXL's VAE overflows), bracket LATENTs of the other backbone are refused
with an error naming both sides, and five-bracket fusion of SDXL brackets runs end to end.

References: the fusion's closed form (per-channel affine logits of the *scaled* latents, softmax over
the brackets); the core AutoencoderKL / HDRVAE (tested against diffusers in tests/core/model/test_vae.py) run in
float32 on the same weights."""

from __future__ import annotations

import os

import pytest
import torch

from lediff_core.model.hdr_vae import HDRVAE
from lediff_core.model.vae import AutoencoderKL
from lediff_core.model.weights import load_hdr_vae
from support import tiny_models as fx
from support.graphs import MODEL, SDXL_MODEL

SDXL_SCALE, SD15_SCALE = 0.13025, 0.18215
FLAGS = {"bf16_vae": torch.bfloat16, "fp16_vae": torch.float16}


@pytest.fixture(params=list(FLAGS))
def vae_flag(request, comfy, monkeypatch):
    """ComfyUI as started with --bf16-vae or --fp16-vae (what a GPU's ComfyUI computes VAEs in)."""
    from comfy.cli_args import args

    monkeypatch.setattr(args, request.param, True)
    return FLAGS[request.param]


def core_hdr_vae(folder):
    """The core HDR VAE of a folder, float32 (the reference; independent of the node pack's runtime)."""
    config, vae_sd, fusion_sd = load_hdr_vae(folder)
    return HDRVAE(config, vae_sd, fusion_sd).eval().float()


def fusion_closed_form(brackets, fusion_sd, scale):
    """LEDiff's fusion written out: logits_i = w_c * (s C_i) + b_c per channel c, W = softmax_i,
    fused = sum_i W_i (s C_i) / s."""
    w = fusion_sd["weight_conv.weight"].view(1, -1, 1, 1).double()
    b = fusion_sd["weight_conv.bias"].view(1, -1, 1, 1).double()
    scaled = [c.double() * scale for c in brackets]
    logits = torch.stack([w * c + b for c in scaled])
    weights = torch.softmax(logits, dim=0)
    return (weights * torch.stack(scaled)).sum(0) / scale


def randn(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# --- pure: the backbone of a VAE config, and the check on tags -----------------------------------


# --- Load HDR VAE --------------------------------------------------------------------------------

def test_load_hdr_vae_reads_an_sdxl_hdr_vae_from_its_config(host, sdxl_folder):
    hdr_vae, vae = host.node_class("LEDiffLoadHDRVAE").execute(SDXL_MODEL).args
    assert hdr_vae.backbone.name == "sdxl" and hdr_vae.core.scaling_factor == SDXL_SCALE
    assert "SDXL" in repr(hdr_vae)
    sd15 = host.node_class("LEDiffLoadHDRVAE").execute(MODEL).args[0]
    assert sd15.backbone.name == "sd15" and sd15.core.scaling_factor == SD15_SCALE
    # the standard vae encodes to unscaled latents (ComfyUI's VAE leaves the scale to the MODEL's
    # latent_format): the core encoder's posterior mean, with no 0.13025 anywhere
    ref = AutoencoderKL(fx.SDXL_VAE_CONFIG)
    ref.load_weights(fx.make_vae(fx.SDXL_VAE_CONFIG, seed=42).state_dict())  # the folder's VAE (seed 40 + 2)
    pixels = torch.rand(1, 32, 48, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref.encode(pixels.movedim(-1, 1) * 2 - 1)
    got = vae.encode(pixels)
    assert got.shape == expected.shape == (1, 4, 4, 6)
    assert torch.allclose(got.float(), expected, rtol=1e-4, atol=1e-5)


def test_fusion_of_sdxl_brackets_works_in_sdxls_latent_scale(host, sdxl_folder):
    hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(SDXL_MODEL).args[0]
    brackets = [randn(1, 4, 5, 6, seed=s, scale=4) for s in range(3)]
    fused = host.node_class("LEDiffLatentExposureFusion").execute(
        hdr_vae, *({"samples": b} for b in brackets)).args[0]["samples"]
    fusion_sd = torch.load(os.path.join(sdxl_folder, "vae", "merge_model.pth"), weights_only=True)
    expected = fusion_closed_form(brackets, fusion_sd, SDXL_SCALE)
    assert torch.allclose(fused.double(), expected, rtol=1e-5, atol=1e-5)
    # the scale matters (the logits are affine in the scaled latent): SD1.5's gives another result
    assert (fusion_closed_form(brackets, fusion_sd, SD15_SCALE) - expected).abs().max() > 1e-2


# --- HDR Decode precision ------------------------------------------------------------------------

def test_sdxl_hdr_decode_is_float32_whatever_the_vae_flag(host, sdxl_folder, vae_flag):
    import comfy.model_management as mm

    assert mm.vae_dtype(mm.vae_device(), [torch.bfloat16, torch.float32]) == vae_flag
    hdr_vae, vae = host.node_class("LEDiffLoadHDRVAE").execute(SDXL_MODEL).args
    core = core_hdr_vae(sdxl_folder)
    z = randn(1, 4, 6, 8, seed=3, scale=2)
    with torch.no_grad():
        ref = core.decode_hdr(z)
        ref_tiled = core.decode_hdr(z, tile=4)  # 32 pixels
    assert torch.log(ref).max() - torch.log(ref).min() > 4  # an HDR range, where the dtype matters

    ran_in = []
    hook = hdr_vae.core.vae.decoder.conv_out.register_forward_hook(lambda m, i, out: ran_in.append(out.dtype))
    decode = host.node_class("LEDiffHDRDecode")
    try:
        exact = decode.execute(hdr_vae, {"samples": z}).args[0]
        tiled = decode.execute(hdr_vae, {"samples": z}, False, 32).args[0]
        assert set(ran_in) == {torch.float32}
        ran_in.clear()
        fast = decode.execute(hdr_vae, {"samples": z}, False, 0, "vae dtype (fast)").args[0]
    finally:
        hook.remove()
    assert torch.allclose(exact, ref, rtol=1e-5, atol=0) and torch.allclose(tiled, ref_tiled, rtol=1e-5, atol=0)
    if vae_flag == torch.float16:
        # SDXL's VAE overflows float16: the opt-in stays float32 for it, and so does the standard vae
        assert set(ran_in) == {torch.float32} and torch.equal(fast, exact)
        assert vae.vae_dtype == torch.float32
    else:
        assert set(ran_in) == {torch.bfloat16} and vae.vae_dtype == torch.bfloat16  # bfloat16 has float32's range


def test_float16_overflow_is_what_the_sdxl_guard_avoids(host, sdxl_folder, monkeypatch):
    """A latent representable in float16 whose decoder activations are not (SDXL's real VAE
    overflows at ordinary latents; the tiny random one needs a large latent to show it): under
    --fp16-vae the fast precision of the same weights tagged SD1.5 (float16 allowed) breaks, the
    SDXL HDR VAE's gives the float32 result."""
    from comfy.cli_args import args

    runtime = host.pack_module("nodes.model.runtime")
    monkeypatch.setattr(args, "fp16_vae", True)
    config, vae_sd, fusion_sd = load_hdr_vae(sdxl_folder)
    as_sd15 = runtime.HDRVAEModel(HDRVAE({**config, "scaling_factor": SD15_SCALE}, vae_sd, fusion_sd), "as SD1.5")
    sdxl = host.node_class("LEDiffLoadHDRVAE").execute(SDXL_MODEL).args[0]
    z = randn(1, 4, 6, 8, seed=3).sign() * 6e4  # float16's largest is 65504
    with torch.no_grad():
        ref = core_hdr_vae(sdxl_folder).decode_hdr(z)
    assert torch.isfinite(ref).all()
    assert not torch.isfinite(as_sd15.decode(z, precision="vae dtype (fast)")).all()
    assert torch.equal(sdxl.decode(z, precision="vae dtype (fast)"), sdxl.decode(z))
    assert torch.allclose(sdxl.decode(z), ref, rtol=1e-5, atol=0)


# --- mismatches (ValueError: ComfyUI imports the pack under another package name, so its LatentError
# is another class than this test's; LatentError subclasses ValueError) ---------------------------

def test_brackets_of_the_other_backbone_are_refused(host, sdxl_folder):
    load, fuse, decode = (host.node_class(n) for n in ("LEDiffLoadHDRVAE", "LEDiffLatentExposureFusion",
                                                       "LEDiffHDRDecode"))
    sdxl, sd15 = load.execute(SDXL_MODEL).args[0], load.execute(MODEL).args[0]
    z = [randn(1, 4, 4, 4, seed=s) for s in range(3)]
    tagged = [{"samples": s, "lediff_backbone": "sd15"} for s in z]
    with pytest.raises(ValueError, match=r"dark was made by an SD1\.5 LEDiff bracket denoiser, but the HDR VAE "
                                          rf"'{SDXL_MODEL}' is SDXL's.*Load the SD1\.5 LEDiff model's HDR VAE"):
        fuse.execute(sdxl, *tagged)
    with pytest.raises(ValueError, match=r"latent was made by an SDXL LEDiff bracket denoiser, but the HDR VAE "
                                          rf"'{MODEL}' is SD1\.5's"):
        decode.execute(sd15, {"samples": z[0], "lediff_backbone": "sdxl"})
    # untagged latents (KSampler, VAE Encode) are not an error; a five-bracket mid from KSampler is
    # untagged while the others are tagged, and the fused latent carries the brackets' tag
    fused = fuse.execute(sd15, *tagged[:1], {"samples": z[1]}, *tagged[2:]).args[0]
    assert fused["lediff_backbone"] == "sd15"
    assert "lediff_backbone" not in fuse.execute(sdxl, *({"samples": s} for s in z)).args[0]
    assert torch.isfinite(decode.execute(sdxl, {"samples": z[0]}).args[0]).all()
    with pytest.raises(ValueError, match=r"latent was made by an SD1\.5 LEDiff bracket denoiser.* is SDXL's"):
        decode.execute(sdxl, fused)


# --- end to end ----------------------------------------------------------------------------------

def test_five_bracket_fusion_of_sdxl_brackets(host, models, sdxl_folder):
    """SDXL Highlight and Shadow Bracket around one latent, fused as five brackets by the SDXL HDR VAE
    and decoded tiled: the fused latent is the closed form of the five, in SDXL's scale, and the HDR
    the core decoder's."""
    clip = host.node_class("CLIPLoader")().load_clip(os.path.basename(models["clip"]), "stable_diffusion")[0]
    encode = host.node_class("CLIPTextEncode")()
    pos, neg = (encode.encode(clip, t)[0] for t in ("a sunlit room", ""))
    model = host.node_class("LEDiffLoadDenoiser").execute(SDXL_MODEL).args[0]
    hdr_vae = host.node_class("LEDiffLoadHDRVAE").execute(SDXL_MODEL).args[0]
    latent = {"samples": randn(1, 4, 8, 8, seed=5)}  # untagged, as from an SDXL KSampler
    args = (pos, neg, latent, 7, 2, 7.5, "ddim", "ddim_uniform")
    darker, dark, _ = host.node_class("LEDiffHighlightBracket").execute(model, *args).args
    _, bright, brighter = host.node_class("LEDiffShadowBracket").execute(model, *args).args
    five = [darker, dark, latent, bright, brighter]
    assert [b.get("lediff_backbone") for b in five] == ["sdxl", "sdxl", None, "sdxl", "sdxl"]
    fused = host.node_class("LEDiffLatentExposureFusion").execute(
        hdr_vae, dark, latent, bright, darker, brighter).args[0]
    fusion_sd = torch.load(os.path.join(sdxl_folder, "vae", "merge_model.pth"), weights_only=True)
    expected = fusion_closed_form([b["samples"] for b in five], fusion_sd, SDXL_SCALE)
    assert fused["lediff_backbone"] == "sdxl"
    assert torch.allclose(fused["samples"].double(), expected, rtol=1e-5, atol=1e-5)
    hdr = host.node_class("LEDiffHDRDecode").execute(hdr_vae, fused, False, 32).args[0]
    with torch.no_grad():
        ref = core_hdr_vae(sdxl_folder).decode_hdr(fused["samples"], tile=4)
    assert hdr.shape == (1, 64, 64, 3) and torch.allclose(hdr, ref, rtol=1e-5, atol=0)
    # Blend with LDR takes the SDXL HDR like any other (IMAGEs only: nothing backbone-specific)
    ldr = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(6)) * 0.85 + 0.05  # nothing clipped
    blended, mask = host.node_class("LEDiffBlendLDR").execute(ldr, hdr, "released", "percentile", 50.0, 0.18).args
    assert blended.shape == hdr.shape and torch.isfinite(blended).all() and mask.max() == 0
    # and the same SDXL brackets into the SD1.5 HDR VAE: refused
    sd15 = host.node_class("LEDiffLoadHDRVAE").execute(MODEL).args[0]
    with pytest.raises(ValueError, match=r"an SDXL LEDiff bracket denoiser, but the HDR VAE .* is SD1\.5's"):
        host.node_class("LEDiffLatentExposureFusion").execute(sd15, dark, latent, bright, darker, brighter)
