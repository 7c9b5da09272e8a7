"""One record per backbone (``lediff_core.model.backbones``): the records and the one function that
answers "which backbone is this?" for diffusers configs (``identify``), checked against diffusers'
AutoencoderKL default (the scale of a VAE config that leaves it out). ComfyUI's half:
tests/nodes/model/test_backbones.py; each fact written once: tests/e2e/test_layout.py."""

from __future__ import annotations

import inspect

import pytest

from lediff_core.model.backbones import BACKBONES, LEDIFF_IN_CHANNELS, SD15, SDXL, UNetConfigError, identify, label
from support import tiny_models as fx


def test_identify_reads_configs():
    assert identify(fx.UNET_CONFIG, "unet") is SD15 and identify(fx.SDXL_UNET_CONFIG, "unet") is SDXL
    assert identify(fx.VAE_CONFIG, "vae") is SD15 and identify(fx.SDXL_VAE_CONFIG, "vae") is SDXL
    # the VAE scale is matched, not the UNet's settings (and the other way round)
    assert identify({**fx.SDXL_UNET_CONFIG, "scaling_factor": SD15.scaling_factor}, "unet") is SDXL
    assert identify({**fx.VAE_CONFIG, "addition_embed_type": "text_time"}, "vae") is SD15
    assert identify({**fx.VAE_CONFIG, "scaling_factor": SDXL.scaling_factor + 1e-7}, "vae") is SDXL
    assert identify({**fx.VAE_CONFIG, "scaling_factor": SDXL.scaling_factor + 1e-4}, "vae") is None
    with pytest.raises(UNetConfigError, match="neither an SD1.x UNet"):
        identify({**fx.UNET_CONFIG, "addition_embed_type": "text_time"}, "unet")
    with pytest.raises(ValueError, match="part must be one of"):
        identify(fx.UNET_CONFIG, "text_encoder")


def test_records():
    assert [b.name for b in BACKBONES] == ["sd15", "sdxl"] and len({b.label for b in BACKBONES}) == 2
    assert label("sdxl") == "SDXL" and label("flux") == "flux" and label(None) is None
    for b in BACKBONES:
        assert 2 * b.latent_channels == LEDIFF_IN_CHANNELS  # noisy latent + condition latent
        assert b.text_parts[:2] == ("text_encoder", "tokenizer")
        assert (b.addition_embed_type is None) == (b.time_ids == 0)
    assert SD15.float16_safe and not SDXL.float16_safe


def test_sd15_scale_is_diffusers_default():
    """A vae/config.json without scaling_factor is SD1.x's: diffusers' AutoencoderKL default."""
    from diffusers import AutoencoderKL

    default = inspect.signature(AutoencoderKL.__init__).parameters["scaling_factor"].default
    assert default == SD15.scaling_factor
    assert identify({k: v for k, v in fx.VAE_CONFIG.items() if k != "scaling_factor"}, "vae") is SD15
