"""UNet configs in the core (lediff_core.model.unet_config): the backbone read from a config, the
translation of a tiny SDXL config to ComfyUI's, and SDXL configs ComfyUI cannot run refused by name."""

from __future__ import annotations

import pytest

from lediff_core.model.backbones import identify
from lediff_core.model.unet_config import UNetConfigError, ldm_unet_config
from support import tiny_models as fx
from support.tiny_models import STOCK_SDXL


def test_backbone_is_read_from_the_config():
    assert identify(fx.UNET_CONFIG, "unet").name == "sd15"
    assert identify(fx.SDXL_UNET_CONFIG, "unet").name == "sdxl" and identify(STOCK_SDXL, "unet").name == "sdxl"
    half = {**fx.SDXL_UNET_CONFIG, "addition_time_embed_dim": None}
    with pytest.raises(UNetConfigError, match="addition_time_embed_dim=None.*neither an SD1.x UNet"):
        identify(half, "unet")
    with pytest.raises(UNetConfigError, match="addition_embed_type='text'"):
        identify({**fx.UNET_CONFIG, "addition_embed_type": "text"}, "unet")
    with pytest.raises(UNetConfigError, match="projection_class_embeddings_input_dim=2816"):
        identify({**fx.UNET_CONFIG, "projection_class_embeddings_input_dim": 2816}, "unet")


def test_tiny_sdxl_translation():
    c = ldm_unet_config(fx.SDXL_UNET_CONFIG)
    # closed forms for [32, 64] widths, one resnet per level, no attention at the top level,
    # two transformer layers below, heads [2, 4] of 32 / 2 = 64 / 4 = 16 channels
    assert c["model_channels"] == 32 and c["channel_mult"] == [1, 2] and c["num_res_blocks"] == [1, 1]
    assert c["transformer_depth"] == [0, 2] and c["transformer_depth_output"] == [0, 0, 2, 2]
    assert c["transformer_depth_middle"] == 2
    assert c["num_heads"] == -1 and c["num_head_channels"] == 16
    assert c["use_linear_in_transformer"] is True and c["context_dim"] == 768
    assert c["adm_in_channels"] == 768 + 6 * 256 and c["num_classes"] == "sequential"
    # SD1.5's translation has no SDXL keys (unchanged)
    assert "num_classes" not in ldm_unet_config(fx.UNET_CONFIG)
    assert ldm_unet_config(fx.UNET_CONFIG)["adm_in_channels"] is None


def test_sdxl_configs_comfyui_cannot_run_are_refused():
    with pytest.raises(UNetConfigError, match=r"in_channels 4 in unet/config.json.*has 8.*lediff_train"):
        ldm_unet_config({**STOCK_SDXL, "in_channels": 4})
    assert ldm_unet_config({**STOCK_SDXL, "in_channels": 4}, require_channels=None)["in_channels"] == 4
    with pytest.raises(UNetConfigError, match="addition_time_embed_dim=128.*256"):
        ldm_unet_config({**fx.SDXL_UNET_CONFIG, "addition_time_embed_dim": 128})
    with pytest.raises(UNetConfigError, match="pooled text width \\+ 6 x 256 = 1536"):
        ldm_unet_config({**fx.SDXL_UNET_CONFIG, "projection_class_embeddings_input_dim": 1536})
    with pytest.raises(UNetConfigError, match=r"head widths \[32, 64\]"):
        ldm_unet_config({**STOCK_SDXL, "attention_head_dim": [5, 10, 40]})
    with pytest.raises(UNetConfigError, match="norm_num_groups"):  # the SD1.x checks apply as well
        ldm_unet_config({**fx.SDXL_UNET_CONFIG, "norm_num_groups": 16})

