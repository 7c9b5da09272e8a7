"""Which backbone a VAE is, in the core: read from its scaling factor, and a denoiser and HDR VAE of
different backbones refused together."""

from __future__ import annotations

import pytest

from lediff_core.model.hdr_vae import LatentError, check_backbones, vae_backbone
from support import tiny_models as fx


def test_vae_backbone_is_read_from_the_scaling_factor():
    assert vae_backbone(fx.VAE_CONFIG) == "sd15" and vae_backbone(fx.SDXL_VAE_CONFIG) == "sdxl"
    unscaled = {k: v for k, v in fx.VAE_CONFIG.items() if k != "scaling_factor"}
    assert vae_backbone(unscaled) == "sd15"  # diffusers' default
    assert vae_backbone({**fx.VAE_CONFIG, "scaling_factor": 1.5305}) is None  # SD3's scale: neither


def test_check_backbones():
    check_backbones({"dark": None, "mid": None}, "sdxl")  # untagged (KSampler, VAE Encode): nothing to check
    check_backbones({"dark": "sdxl", "mid": None}, "sdxl")
    with pytest.raises(LatentError, match=r"dark was made by an SD1\.5 LEDiff bracket denoiser, but the HDR VAE "
                                          r"'x' is SDXL's \(scaling_factor 0\.13025\).*Load the SD1\.5 LEDiff "
                                          r"model's HDR VAE.*or make the brackets with SDXL LEDiff denoisers"):
        check_backbones({"dark": "sd15", "mid": "sdxl"}, "sdxl", "'x'")
    with pytest.raises(LatentError, match=r"an SDXL LEDiff bracket denoiser, but the HDR VAE is SD1\.5's"):
        check_backbones({"latent": "sdxl"}, "sd15")
    check_backbones({"dark": "sd15", "mid": "sd15"}, None)
    with pytest.raises(LatentError, match="different backbones"):
        check_backbones({"dark": "sd15", "mid": "sdxl"}, None)

