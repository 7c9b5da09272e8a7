"""Translating a diffusers SD1.x-family or SDXL-family ``unet/config.json`` into the original (ldm)
UNet hyper-parameters that ComfyUI's UNet is built from (the backbone is told apart by
``backbones.identify``).

Facts this relies on (diffusers' UNet2DConditionModel and the original SD UNet):
- For SD1.x configs ``attention_head_dim`` is, by a historical naming accident, the number of
  heads (SD1.5 has 8 heads of 40, 80, 160 channels); ``num_attention_heads`` wins when set.
- The original UNet lists transformer depths per down-block resnet (``transformer_depth``) and per
  up-block resnet, top level first (``transformer_depth_output``); diffusers lists up blocks deepest
  first, so the up-block depths are reversed here.
- ComfyUI's UNet uses 32 GroupNorm groups, SiLU and sinusoidal time embeddings with
  ``flip_sin_to_cos`` and no shift: configs that differ cannot be built faithfully and are refused.
- ComfyUI's SDXL model (``model_base.SDXL.encode_adm``) embeds the six size/crop ids with 256
  channels each (``backbones.SDXL.time_ids``, ``time_embed_dim``) and feeds pooled text + ids to the ``label_emb`` MLP
  (``num_classes`` "sequential", ``adm_in_channels`` inputs). SDXL's per-block head counts share
  one head width (64 stock), which ComfyUI takes as ``num_head_channels`` with ``num_heads`` -1.
"""

from __future__ import annotations

from .backbones import LEDIFF_IN_CHANNELS, SDXL, UNET_ADDITION_KEYS, UNetConfigError, identify
from .fit import dim, indices, mismatch

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


def _per_block(value, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise UNetConfigError(f"unet config {name} has {len(value)} entries for {n} blocks")
        return list(value)
    return [value] * n


def ldm_unet_config(config: dict, require_channels: int | None = LEDIFF_IN_CHANNELS) -> dict:
    """The ldm UNet hyper-parameters (as ComfyUI names them) for a diffusers UNet config, SD1.x- or
    SDXL-family (``backbones.identify``)."""
    if identify(config, "unet").time_ids:
        return _sdxl_ldm_unet_config(config, require_channels)
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


def _sdxl_ldm_unet_config(config: dict, require_channels: int | None) -> dict:
    in_channels = config.get("in_channels", 4)
    if require_channels is not None and in_channels != require_channels:
        raise UNetConfigError(
            f"this SDXL UNet has in_channels {in_channels} in unet/config.json; an SDXL LEDiff bracket "
            f"denoiser has {require_channels} (noisy latent + condition latent). This is a plain SDXL UNet: "
            "load an SDXL LEDiff denoiser (made with `python -m lediff_train ... --model SDXL_FOLDER`; none "
            "are published yet), or take the image route (docs/hdr-from-any-model.md)"
        )
    time_dim, ids_count, id_width = config["addition_time_embed_dim"], SDXL.time_ids, SDXL.time_embed_dim
    if time_dim != id_width:
        raise UNetConfigError(
            f"unet config addition_time_embed_dim={time_dim!r}: ComfyUI's SDXL embeds each of the six "
            f"size/crop ids with {id_width} channels (SDXL's value); this UNet cannot run in it"
        )
    adm = config["projection_class_embeddings_input_dim"]
    ids = ids_count * id_width
    if not isinstance(adm, int) or adm <= ids:
        raise UNetConfigError(
            f"unet config projection_class_embeddings_input_dim={adm!r} must be the pooled text width + "
            f"{ids_count} x {id_width} = {ids} (2816 for stock SDXL)"
        )
    # the block layout and every other setting are read and checked exactly as for SD1.x (which
    # refuses per-block head counts: give it one, SDXL's heads are set below)
    plain = {k: v for k, v in config.items() if k not in UNET_ADDITION_KEYS}
    out = ldm_unet_config({**plain, "num_attention_heads": None, "attention_head_dim": 1}, None)
    widths = config["block_out_channels"]
    n = len(widths)
    heads = _per_block(config.get("num_attention_heads") or config.get("attention_head_dim", 8), n,
                       "attention_head_dim")
    # levels with attention (down or up); the mid block's attention uses the deepest level's heads
    down, up = config["down_block_types"], list(reversed(config["up_block_types"]))
    attn = [_DOWN[down[i]] or _UP[up[i]] for i in range(n)]
    attn[-1] = True
    head_widths = set()
    for i in range(n):
        if attn[i]:
            if not isinstance(heads[i], int) or heads[i] < 1 or widths[i] % heads[i]:
                raise UNetConfigError(f"attention_head_dim {heads} does not divide block_out_channels {widths}")
            head_widths.add(widths[i] // heads[i])
    if len(head_widths) != 1:
        raise UNetConfigError(
            f"attention_head_dim {heads} over block_out_channels {widths} gives head widths "
            f"{sorted(head_widths)}; ComfyUI's SDXL UNet needs one head width for every attention block"
        )
    out.update(num_heads=-1, num_head_channels=head_widths.pop(), adm_in_channels=adm, num_classes="sequential")
    return out


def _like(given, weights: list):
    """The weights' per-level values in the config's form: one number where the config gives one
    and the weights agree at every level, else the list."""
    return weights[0] if not isinstance(given, (list, tuple)) and len(set(weights)) == 1 else weights


def unet_mismatches(config: dict, shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, object, object]]:
    """The settings of a diffusers UNet config that its weights (diffusers names: key -> shape, e.g.
    a safetensors header) contradict, as (key, config value, weights value): the levels and their
    widths, resnets and transformer blocks per level, the channels in and out, the text widths
    (``fit.check_settings`` turns them into the error; ``fit`` describes the whole check)."""
    found = []
    levels = indices(shapes, "down_blocks.")
    if levels:
        widths = [dim(shapes, f"down_blocks.{i}.resnets.0.conv2.weight", 0) for i in levels]
        mismatch(found, config, "block_out_channels", None if None in widths else widths)
        layers = [len(indices(shapes, f"down_blocks.{i}.resnets.")) for i in levels]
        mismatch(found, config, "layers_per_block", _like(config.get("layers_per_block"), layers))
        given = config.get("transformer_layers_per_block", 1)
        if isinstance(given, int) or (isinstance(given, (list, tuple)) and len(given) == len(levels)):
            # per level: its down block's transformer blocks; the deepest level's also sets the mid
            # block's; a level without attention has none to count (its setting is then unused)
            depth = [len(indices(shapes, f"down_blocks.{i}.attentions.0.transformer_blocks.")) for i in levels]
            depth[-1] = depth[-1] or len(indices(shapes, "mid_block.attentions.0.transformer_blocks."))
            if isinstance(given, int):
                counted = [d for d in depth if d]
                mismatch(found, config, "transformer_layers_per_block", _like(given, counted) if counted else None)
            else:
                mismatch(found, config, "transformer_layers_per_block",
                         [d or g for d, g in zip(depth, given, strict=True)])
    mismatch(found, config, "in_channels", dim(shapes, "conv_in.weight", 1))
    mismatch(found, config, "out_channels", dim(shapes, "conv_out.weight", 0))
    cross = next((k for k in shapes if k.endswith(".attn2.to_k.weight")), None)
    if isinstance(config.get("cross_attention_dim"), int) and cross:
        mismatch(found, config, "cross_attention_dim", dim(shapes, cross, 1))
    mismatch(found, config, "projection_class_embeddings_input_dim", dim(shapes, "add_embedding.linear_1.weight", 1))
    return found
