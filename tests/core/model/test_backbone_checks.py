"""Which backbone a VAE is, in the core: read from its scaling factor, and a denoiser and HDR VAE of
different backbones refused together."""

from __future__ import annotations

import pytest

from lediff_core.model.backbones import SD15, SDXL, identify
from lediff_core.model.hdr_vae import LatentError, check_backbones
from support import tiny_models as fx


def test_vae_backbone_is_read_from_the_scaling_factor():
    assert identify(fx.VAE_CONFIG, "vae") is SD15 and identify(fx.SDXL_VAE_CONFIG, "vae") is SDXL
    unscaled = {k: v for k, v in fx.VAE_CONFIG.items() if k != "scaling_factor"}
    assert identify(unscaled, "vae") is SD15  # diffusers' default
    assert identify({**fx.VAE_CONFIG, "scaling_factor": 1.5305}, "vae") is None  # SD3's scale: neither


def test_check_backbones():
    check_backbones({"dark": None, "mid": None}, SDXL)  # untagged (KSampler, VAE Encode): nothing to check
    check_backbones({"dark": "sdxl", "mid": None}, SDXL)
    with pytest.raises(LatentError, match=r"dark was made by an SD1\.5 LEDiff bracket denoiser, but the HDR VAE "
                                          r"'x' is SDXL's \(scaling_factor 0\.13025\).*Load the SD1\.5 LEDiff "
                                          r"model's HDR VAE.*or make the brackets with SDXL LEDiff denoisers"):
        check_backbones({"dark": "sd15", "mid": "sdxl"}, SDXL, "'x'")
    with pytest.raises(LatentError, match=r"an SDXL LEDiff bracket denoiser, but the HDR VAE is SD1\.5's"):
        check_backbones({"latent": "sdxl"}, SD15)
    check_backbones({"dark": "sd15", "mid": "sd15"}, None)
    with pytest.raises(LatentError, match="different backbones"):
        check_backbones({"dark": "sd15", "mid": "sdxl"}, None)

