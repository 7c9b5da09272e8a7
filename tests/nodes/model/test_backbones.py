"""Each backbone's ComfyUI half (``nodes.model.backbones``) against ComfyUI's own tables: the scale
it applies in sampling, the channels, the ADM input."""

from __future__ import annotations


def test_comfyui_half_agrees_with_comfyui(comfy):
    """Each record against ComfyUI's own tables: the latent format's scale and channels, the 8-channel
    model config's latent format, input channels and ADM input (SDXL: pooled CLIP-G text, 1280 wide,
    plus the size/crop ids)."""
    pack = comfy.pack_module("nodes.model.backbones")
    core = comfy.pack_module("lediff_core.model.backbones")
    assert [c.backbone.name for c in pack.COMFY_BACKBONES] == ["sdxl", "sd15"]
    for c in pack.COMFY_BACKBONES:
        b = c.backbone
        fmt = c.latent_format()
        assert fmt.scale_factor == b.scaling_factor and fmt.latent_channels == b.latent_channels
        assert c.model_config.latent_format is c.latent_format
        unet = c.model_config.unet_config
        assert unet["in_channels"] == core.LEDIFF_IN_CHANNELS
        if b.time_ids:
            assert unet["adm_in_channels"] - b.time_ids * b.time_embed_dim == 1280
        else:
            assert unet["adm_in_channels"] is None
