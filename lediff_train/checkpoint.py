"""ComfyUI's single-file Stable Diffusion checkpoints (``models/checkpoints/*.safetensors``) as a MODEL.

The original ("ldm") single-file layout, SD1.5 or SDXL, as the checkpoints ship::

    model.diffusion_model.*                   the UNet
    first_stage_model.*                       the VAE
    cond_stage_model.transformer.*            SD1.x: CLIP-L (transformers' CLIPTextModel names follow)
    conditioner.embedders.0.transformer.*     SDXL: CLIP-L (likewise)
    conditioner.embedders.1.model.*           SDXL: CLIP-G (open_clip's names, with text_projection)

The keys are translated by diffusers' single-file key maps (``diffusers.loaders.single_file_utils``:
``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``,
``convert_open_clip_checkpoint``), which need a diffusers config per part. diffusers gets those from
the Hub; here they are built from the file's tensor shapes (read from the header, no tensor loaded)
and the few facts of each family that shapes cannot tell, so nothing touches the network:

- attention heads: SD1.x's UNet has 8 heads at every level; SDXL's heads are 64 channels wide (5, 10,
  20 heads for 320, 640, 1280 channels); CLIP's heads are 64 wide (ViT-L/14's 12, bigG's 20);
- activations: CLIP-L (OpenAI's) uses quick_gelu, CLIP-G (open_clip's bigG) gelu;
- each backbone's latent scale, training size, size/crop ids and whether its VAE overflows float16
  (SDXL's: force_upcast): its record in ``lediff_core.model.backbones``;
- the training schedule (scaled_linear 0.00085-0.012, 1000 steps, epsilon) is SD1.5's and SDXL
  base's: ``models.SD_SCHEDULE``, which a MODEL without scheduler/ gets anyway.

A wrong inference cannot pass silently: every converted part is loaded strictly (every key, every
shape) into the model its config builds. A single file has no tokenizer: the caption encoder takes
one from ``--tokenizer`` (ComfyUI ships SD's CLIP tokenizer as ``comfy/sd1_tokenizer``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from safetensors import safe_open

from lediff_core.model.backbones import NAMED, SD15, SDXL, Backbone
from lediff_core.model.fit import meta_model
from lediff_core.model.weights import WeightError, check_keys, read_header

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD15_CLIP = "cond_stage_model.transformer."
SDXL_CLIP_L = "conditioner.embedders.0.transformer."
SDXL_CLIP_G = "conditioner.embedders.1.model."
SD15_HEADS = 8
SDXL_HEAD_WIDTH = CLIP_HEAD_WIDTH = 64
EXPECTED = ("a Stable Diffusion 1.5 or SDXL checkpoint in the original single-file layout, as ComfyUI's "
            "models/checkpoints/ holds them (UNet under model.diffusion_model.*, VAE under first_stage_model.*, "
            "text encoders under cond_stage_model.transformer.* (SD1.5) or conditioner.embedders.0/1.* (SDXL))")


class CheckpointError(ValueError):
    """A file that is not a single-file SD1.5/SDXL checkpoint; the message names the file and what was expected."""


@dataclass(frozen=True)
class SingleFile:
    """A single-file checkpoint read once (``read``): its path, the shape of every tensor (from the
    header; no tensor loaded) and its backbone. The functions below take it instead of a path."""

    path: str
    shapes: dict[str, tuple[int, ...]]
    backbone: str


def read(path: str) -> SingleFile:
    """The file's header and backbone; CheckpointError naming the file for anything else."""
    path = os.path.abspath(path)
    keys = shapes(path)
    return SingleFile(path, keys, backbone(path, keys))


def shapes(path: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} of every tensor in the file (header only)."""
    if not path.endswith(".safetensors"):
        raise CheckpointError(f"{path!r} is not a .safetensors file: expected {EXPECTED}. Pickled checkpoints "
                              "(.ckpt) are not loaded (they can run code); use the .safetensors download")
    try:  # the header alone, refused by name where it lies about the file (lediff_core's reader)
        return read_header(path)[0]
    except WeightError as e:
        raise CheckpointError(f"{e}; expected {EXPECTED}") from e


def tensors(path: str, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The tensors whose keys start with one of ``prefixes`` (the rest of the file is not read)."""
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefixes)}


def backbone(path: str, keys: dict[str, tuple[int, ...]]) -> str:
    """The name of the file's backbone (``"sd15"`` or ``"sdxl"``) from its keys (``shapes``); anything
    else is a CheckpointError."""
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    found = sorted({".".join(k.split(".")[:2]) for k in keys})[:6]
    if not has(UNET) or not has(VAE):
        missing = " and ".join(p + "*" for p in (UNET, VAE) if not has(p))
        raise CheckpointError(f"{path!r} is not a Stable Diffusion checkpoint (no {missing}; its keys start "
                              f"with {', '.join(found) or 'nothing'}): expected {EXPECTED}")
    sdxl_unet = UNET + "label_emb.0.0.weight" in keys
    if sdxl_unet and has(SDXL_CLIP_L) and has(SDXL_CLIP_G):
        return SDXL.name
    if not sdxl_unet and has(SD15_CLIP):
        return SD15.name
    if has("cond_stage_model.model."):
        what = "an SD2.x checkpoint (OpenCLIP-H text encoder)"
    elif sdxl_unet and has("conditioner.embedders.0.model."):
        what = "an SDXL refiner (one OpenCLIP-G text encoder)"
    else:
        what = "a checkpoint without the text encoders of SD1.5 or SDXL"
    raise CheckpointError(f"{path!r} is {what}; the recipe starts from SD1.5 or SDXL: expected {EXPECTED}")


def _latent_size(family: Backbone) -> int:
    """The latent side of the backbone's training resolution (its VAE downscales 8x)."""
    return family.training_size // 8


# ----------------------------------------------------------------------------------------------- UNet
def _count(keys, pattern: str) -> int:
    """How many distinct indices ``(\\d+)`` the regex ``pattern`` matches among ``keys``."""
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def unet_config(f: SingleFile) -> dict:
    """A diffusers UNet2DConditionModel config for the file's UNet, from its shapes and family."""
    path, family, s = f.path, NAMED[f.backbone], f.shapes
    keys = [k[len(UNET):] for k in s if k.startswith(UNET)]
    u = {k: s[UNET + k] for k in keys}
    model_channels, in_channels = u["input_blocks.0.0.weight"][:2]
    levels = [{"widths": set(), "resnets": 0, "depth": set()}]
    i = 1
    while f"input_blocks.{i}.0.op.weight" in u or f"input_blocks.{i}.0.in_layers.0.weight" in u:
        if f"input_blocks.{i}.0.op.weight" in u:  # a downsample ends the level
            levels.append({"widths": set(), "resnets": 0, "depth": set()})
        else:
            level = levels[-1]
            level["resnets"] += 1
            level["widths"].add(u[f"input_blocks.{i}.0.out_layers.3.weight"][0])
            level["depth"].add(_count(keys, rf"input_blocks\.{i}\.1\.transformer_blocks\.(\d+)\."))
        i += 1
    resnets = {lv["resnets"] for lv in levels}
    if len(resnets) != 1 or any(len(lv["widths"]) != 1 or len(lv["depth"]) != 1 for lv in levels):
        raise CheckpointError(f"{path!r}: its UNet's input blocks are not laid out like SD1.5's or SDXL's "
                              f"(resnets per level {[lv['resnets'] for lv in levels]}); expected {EXPECTED}")
    widths = [lv["widths"].pop() for lv in levels]
    depth = [lv["depth"].pop() for lv in levels]
    layers = resnets.pop()
    # up blocks, deepest level first as diffusers lists them: output block j belongs to level n-1-j//(layers+1)
    n = len(widths)
    up_attn = [any(f"output_blocks.{lv * (layers + 1) + r}.1.transformer_blocks.0.attn1.to_q.weight" in u
                   for r in range(layers + 1)) for lv in range(n)]
    block = next((k for k in keys if k.endswith("transformer_blocks.0.attn2.to_k.weight")), None)
    proj_in = next((k for k in keys if k.endswith(".proj_in.weight")), None)
    if block is None or proj_in is None:
        raise CheckpointError(f"{path!r}: its UNet has no cross-attention; expected {EXPECTED}")
    config = {
        "_class_name": "UNet2DConditionModel",
        "sample_size": _latent_size(family),
        "in_channels": in_channels,
        "out_channels": u["out.2.weight"][0],
        "block_out_channels": widths,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depth],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in up_attn],
        "cross_attention_dim": u[block][1],
        "use_linear_projection": len(u[proj_in]) == 2,
        "transformer_layers_per_block": [max(d, 1) for d in depth],
        "attention_head_dim": (SD15_HEADS if family == SD15
                               else [max(w // SDXL_HEAD_WIDTH, 1) for w in widths]),
    }
    if family.addition_embed_type is not None:
        config.update({"addition_embed_type": family.addition_embed_type,
                       "addition_time_embed_dim": family.time_embed_dim,
                       "projection_class_embeddings_input_dim": u["label_emb.0.0.weight"][1]})
    if model_channels != widths[0]:
        raise CheckpointError(f"{path!r}: its UNet's first level has {widths[0]} channels after a "
                              f"{model_channels}-channel input conv; expected {EXPECTED}")
    return config


def unet_state_dict(f: SingleFile, config: dict) -> dict[str, torch.Tensor]:
    """The file's UNet in diffusers' names (diffusers' key map), float32."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return {k: v.float() for k, v in convert_ldm_unet_checkpoint(tensors(f.path, (UNET,)), config).items()}


# ------------------------------------------------------------------------------------------------ VAE
def vae_config(f: SingleFile) -> dict:
    """A diffusers AutoencoderKL config for the file's VAE, from its shapes and family."""
    family, s = NAMED[f.backbone], f.shapes
    v = {k[len(VAE):]: shape for k, shape in s.items() if k.startswith(VAE)}
    levels = _count(v, r"encoder\.down\.(\d+)\.")
    config = {
        "_class_name": "AutoencoderKL",
        "in_channels": v["encoder.conv_in.weight"][1],
        "out_channels": v["decoder.conv_out.weight"][0],
        "latent_channels": v["decoder.conv_in.weight"][1],
        "block_out_channels": [v[f"encoder.down.{i}.block.0.conv2.weight"][0] for i in range(levels)],
        "layers_per_block": _count(v, r"encoder\.down\.0\.block\.(\d+)\."),
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "use_quant_conv": "quant_conv.weight" in v,
        "use_post_quant_conv": "post_quant_conv.weight" in v,
        "scaling_factor": family.scaling_factor,
        "sample_size": _latent_size(family) * 2 ** (levels - 1),
    }
    if not family.float16_safe:
        config["force_upcast"] = True
    return config


def vae_state_dict(f: SingleFile, config: dict) -> dict[str, torch.Tensor]:
    """The file's VAE in diffusers' names (diffusers' key map: attention convs become linears), float32."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return {k: v.float() for k, v in convert_ldm_vae_checkpoint(tensors(f.path, (VAE,)), config).items()}


# ------------------------------------------------------------------------------------- text encoders
def _clip_config(width: int, layers: int, intermediate: int, positions: int, vocab: int, act: str,
                 projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(hidden_size=width, num_hidden_layers=layers, intermediate_size=intermediate,
                          num_attention_heads=max(width // CLIP_HEAD_WIDTH, 1), max_position_embeddings=positions,
                          vocab_size=vocab, hidden_act=act, projection_dim=projection or width)


def _load_strict(build, state: dict, path: str, what: str):
    """``build()`` loaded with ``state``: every key and shape (transformers' position_ids buffer
    aside), compared on the meta device before the model is built for real (its config comes from
    the file's shapes, which a crafted file could make huge: ``lediff_core.model.fit``)."""
    state = {k: v.float() for k, v in state.items() if not k.endswith("position_ids")}
    planned = meta_model(build, len(state), f"the {what} config built from the shapes in {path!r}", repr(path))
    own = {k: v for k, v in planned.state_dict().items() if not k.endswith("position_ids")}
    # the files' CLIP-L keys start with text_model., which transformers 5's CLIPTextModel leaves out
    prefix = "text_model."
    if not any(k.startswith(prefix) for k in own) and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    check_keys(own, state, f"{what} of {path!r}", f"expected {EXPECTED}", error=CheckpointError)
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise CheckpointError(f"{what} of {path!r}: {wrong[0]} has shape {list(state[wrong[0]].shape)}, the "
                              f"config built from the file gives {list(own[wrong[0]].shape)}")
    model = build()
    model.load_state_dict(state, strict=False)  # only the position_ids buffer may be left (checked above)
    return model.requires_grad_(False).eval()


def text_encoders(f: SingleFile):
    """(CLIP-L as transformers' CLIPTextModel, SDXL's CLIP-G as CLIPTextModelWithProjection or None)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    path, family, s = f.path, NAMED[f.backbone], f.shapes
    prefix = SD15_CLIP if family == SD15 else SDXL_CLIP_L
    t = {k[len(prefix):]: v for k, v in s.items() if k.startswith(prefix)}
    vocab, width = t["text_model.embeddings.token_embedding.weight"]
    config = _clip_config(width, _count(t, r"text_model\.encoder\.layers\.(\d+)\."),
                          t["text_model.encoder.layers.0.mlp.fc1.weight"][0],
                          t["text_model.embeddings.position_embedding.weight"][0], vocab, "quick_gelu")
    first = _load_strict(lambda: CLIPTextModel(config), convert_ldm_clip_checkpoint(tensors(path, (prefix,))), path,
                         "the CLIP-L text encoder")
    if family == SD15:
        return first, None
    g = {k[len(SDXL_CLIP_G):]: v for k, v in s.items() if k.startswith(SDXL_CLIP_G)}
    vocab, width = g["token_embedding.weight"]
    config = _clip_config(width, _count(g, r"transformer\.resblocks\.(\d+)\."),
                          g["transformer.resblocks.0.mlp.c_fc.weight"][0], g["positional_embedding"][0], vocab,
                          "gelu", g["text_projection"][1])
    # the key map reads only the model's config (its width, where the file has no text_projection)
    state = convert_open_clip_checkpoint(SimpleNamespace(config=config), tensors(path, (SDXL_CLIP_G,)),
                                         prefix=SDXL_CLIP_G)
    return first, _load_strict(lambda: CLIPTextModelWithProjection(config), state, path, "the CLIP-G text encoder")
