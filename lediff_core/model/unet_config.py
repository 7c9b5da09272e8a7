"""Translating a diffusers SD1.x-family ``unet/config.json`` into the original (ldm) UNet
hyper-parameters that ComfyUI's UNet is built from.

Facts this relies on (diffusers' UNet2DConditionModel and the original SD UNet):
- For SD1.x configs ``attention_head_dim`` is, by a historical naming accident, the number of
  heads (SD1.5 has 8 heads of 40, 80, 160 channels); ``num_attention_heads`` wins when set.
- The original UNet lists transformer depths per down-block resnet (``transformer_depth``) and per
  up-block resnet, top level first (``transformer_depth_output``); diffusers lists up blocks deepest
  first, so the up-block depths are reversed here.
- ComfyUI's UNet uses 32 GroupNorm groups, SiLU and sinusoidal time embeddings with
  ``flip_sin_to_cos`` and no shift: configs that differ cannot be built faithfully and are refused.
"""

from __future__ import annotations

LEDIFF_IN_CHANNELS = 8  # noisy latent (4) + condition latent (4), the InstructPix2Pix layout

_DOWN = {"CrossAttnDownBlock2D": True, "DownBlock2D": False}
_UP = {"CrossAttnUpBlock2D": True, "UpBlock2D": False}
# settings that must have these values (diffusers' defaults), or the model would differ silently
_REQUIRED = {
    "act_fn": "silu",
    "norm_num_groups": 32,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "center_input_sample": False,
    "class_embed_type": None,
    "addition_embed_type": None,
    "time_embedding_type": "positional",
    "dual_cross_attention": False,
    "only_cross_attention": False,
    "resnet_time_scale_shift": "default",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "encoder_hid_dim": None,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "reverse_transformer_layers_per_block": None,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "num_class_embeds": None,
    "projection_class_embeddings_input_dim": None,
    "time_cond_proj_dim": None,
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "encoder_hid_dim_type": None,
    "class_embeddings_concat": False,
    "attention_type": "default",
    "cross_attention_norm": None,
    "addition_time_embed_dim": None,
}


class UNetConfigError(ValueError):
    """A UNet config that is not an SD1.x-family bracket denoiser; the message says why."""


def _per_block(value, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise UNetConfigError(f"unet config {name} has {len(value)} entries for {n} blocks")
        return list(value)
    return [value] * n


def ldm_unet_config(config: dict, require_channels: int | None = LEDIFF_IN_CHANNELS) -> dict:
    """The ldm UNet hyper-parameters (as ComfyUI names them) for a diffusers UNet config."""
    in_channels = config.get("in_channels", 4)
    if require_channels is not None and in_channels != require_channels:
        raise UNetConfigError(
            f"this UNet has {in_channels} input channels; a LEDiff bracket denoiser has "
            f"{require_channels} (noisy latent + condition latent). Load the unet/ of an official LEDiff "
            "download (Highlight or Shadow model), not a plain Stable Diffusion UNet"
        )
    for key, want in _REQUIRED.items():
        if config.get(key, want) != want:
            raise UNetConfigError(f"unet config {key}={config[key]!r} is not supported (needs {want!r})")
    down, up = config.get("down_block_types"), config.get("up_block_types")
    widths = config.get("block_out_channels")
    if not down or not up or not widths or not len(down) == len(up) == len(widths):
        raise UNetConfigError("unet config needs down_block_types, up_block_types and block_out_channels "
                              "of equal length")
    unknown = [t for t in down if t not in _DOWN] + [t for t in up if t not in _UP]
    if unknown:
        raise UNetConfigError(f"unet config has unsupported block types {unknown}")
    n = len(widths)
    base = widths[0]
    if any(w % base for w in widths) or any(w % 32 for w in widths):
        raise UNetConfigError(f"block_out_channels {widths} must be multiples of the first and of 32")
    layers = _per_block(config.get("layers_per_block", 2), n, "layers_per_block")
    if len(set(layers)) != 1:
        raise UNetConfigError("layers_per_block must be the same for every block")
    depth = _per_block(config.get("transformer_layers_per_block", 1), n, "transformer_layers_per_block")
    heads = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
    heads = _per_block(heads, n, "attention_head_dim")
    if len(set(heads)) != 1:
        raise UNetConfigError(f"per-block head counts {heads} are not supported (SD1.x uses one count)")
    context_dim = config.get("cross_attention_dim", 768)
    if not isinstance(context_dim, int):
        raise UNetConfigError("per-block cross_attention_dim is not supported")
    has_attn_down = [_DOWN[t] for t in down]
    has_attn_up = [_UP[t] for t in reversed(up)]  # now top level first, like has_attn_down
    return {
        "use_checkpoint": False,
        "image_size": 32,
        "in_channels": in_channels,
        "out_channels": config.get("out_channels", 4),
        "model_channels": base,
        "channel_mult": [w // base for w in widths],
        "num_res_blocks": layers,
        "transformer_depth": [depth[i] if has_attn_down[i] else 0 for i in range(n) for _ in range(layers[i])],
        "transformer_depth_output": [depth[i] if has_attn_up[i] else 0 for i in range(n)
                                     for _ in range(layers[i] + 1)],
        "transformer_depth_middle": depth[-1],
        "use_spatial_transformer": True,
        "use_linear_in_transformer": bool(config.get("use_linear_projection", False)),
        "context_dim": context_dim,
        "num_heads": heads[0],
        "num_head_channels": -1,
        "legacy": False,
        "adm_in_channels": None,
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
    }
