"""Small random-weight models in exactly the official LEDiff layout and file formats.

The official downloads are diffusers folders (unet/, vae/ with merge_model.pth); here the same
folders are written with tiny configs, by diffusers itself (the reference implementation of that
format), with every parameter randomised so that no layer is trivially zero. A random CLIP-L text
encoder (ComfyUI's SD1 layout) provides real CONDITIONING through CLIPTextEncode.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import save_file

UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.21.4",
    "in_channels": 8,
    "out_channels": 4,
    "sample_size": 8,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 768,
    # 2 heads: differs from the 8 that ComfyUI's SD1.5 config forces, so a missed override shows
    "attention_head_dim": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "use_linear_projection": False,
}

# A tiny SDXL-architecture bracket denoiser (diffusers UNet2DConditionModel): SDXL's block layout
# (no attention at the top level, deeper transformers below), linear projections, per-block head
# counts of one head width (16 here, SDXL's 64), and the "text_time" addition embedding (pooled text +
# six size/crop ids x 256). The text widths are SD1.5's CLIP (768 context, 768 pooled: 768 + 6 x 256
# = 2304 ADM inputs) so ComfyUI graphs can condition it with the small SD1.5 checkpoint's CLIP (a tiny
# SDXL checkpoint cannot exist: see conftest.workflow_models); stock SDXL is 2048 / 1280 / 2816.
SDXL_UNET_CONFIG = {
    **UNET_CONFIG,
    "sample_size": 16,
    "block_out_channels": [32, 64],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2],
    "attention_head_dim": [2, 4],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768 + 6 * 256,
}

VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "_diffusers_version": "0.21.4",
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [32, 64, 64, 64],  # four levels: 8x downscale, like SD's VAE
    "layers_per_block": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 64,
    "scaling_factor": 0.18215,
}


# SDXL's VAE has SD's architecture with another latent scale (and overflows in float16)
SDXL_VAE_CONFIG = {**VAE_CONFIG, "scaling_factor": 0.13025, "force_upcast": True}


def randomise(module: torch.nn.Module, seed: int, scale: float = 0.05,
              norm_scale: float | None = None) -> torch.nn.Module:
    """Every parameter random (diffusers zero-initialises some layers), norm scales near 1 (spread
    ``norm_scale``, by default ``scale``)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + noise * (scale if norm_scale is None else norm_scale))
            else:
                p.copy_(noise * scale)
    return module


def make_unet(config=None, seed=1):
    from diffusers import UNet2DConditionModel

    return randomise(UNet2DConditionModel.from_config(config or UNET_CONFIG), seed).eval()


def make_vae(config=None, seed=2):
    from diffusers import AutoencoderKL

    # a larger weight scale makes the decoder's log output span several stops
    return randomise(AutoencoderKL.from_config(config or VAE_CONFIG), seed, 0.08).eval()


def fusion_state_dict(seed=3, channels=4) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {"weight_conv.weight": torch.randn(channels, 1, 1, 1, generator=gen),
            "weight_conv.bias": torch.randn(channels, generator=gen) * 0.5}


def write_official_folder(root, name="LEDiff_highlight", *, weight_format="safetensors",
                          unet_config=None, vae_config=None, seed=0, extras=True) -> str:
    """An official-layout download under ``root/name``; returns its path."""
    folder = os.path.join(root, name)
    weight_file = ("diffusion_pytorch_model.safetensors" if weight_format == "safetensors"
                   else "diffusion_pytorch_model.bin")
    for sub, model, config in (("unet", make_unet(unet_config, seed + 1), unet_config or UNET_CONFIG),
                               ("vae", make_vae(vae_config, seed + 2), vae_config or VAE_CONFIG)):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        with open(os.path.join(folder, sub, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        path = os.path.join(folder, sub, weight_file)
        save_file(sd, path) if weight_format == "safetensors" else torch.save(sd, path)
    torch.save(fusion_state_dict(seed + 3), os.path.join(folder, "vae", "merge_model.pth"))
    if extras:
        with open(os.path.join(folder, "model_index.json"), "w") as f:
            json.dump({"_class_name": "StableDiffusionLEDiffPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                       "vae": ["diffusers", "AutoencoderKL"]}, f)
        os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
        with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
            json.dump({"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                       "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False,
                       "steps_offset": 1, "num_train_timesteps": 1000, "prediction_type": "epsilon"}, f)
    return folder


def write_clip_l(path: str, seed: int = 4) -> str:
    """A random CLIP-L text encoder (transformers' CLIPTextModel layout, as SD1.5 ships it), fp16."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, vocab_size=49408,
                            hidden_act="quick_gelu", projection_dim=768)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in CLIPTextModel(config).state_dict().items()}
    # SD1.5 checkpoints name the keys text_model.*; transformers 5 drops that prefix
    shapes = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in shapes.items()}
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("position_ids"):
            sd[k] = torch.arange(shape[-1]).expand(shape).clone()
        elif "layer_norm" in k:
            sd[k] = (torch.ones(shape) if k.endswith("weight") else torch.zeros(shape)).half()
        else:
            sd[k] = (torch.randn(shape, generator=gen) * 0.02).half()
    save_file(sd, path)
    return path


def write_sd15_checkpoint(path: str, seed: int = 5) -> str:
    """A small random SD1.5-style checkpoint (original ldm key layout, as SD1.5 ships), which
    ComfyUI's Load Checkpoint detects as SD1.5: a UNet with SD1.5's base width (320), context (768)
    and head count but fewer blocks, SD's VAE encoder with a narrow decoder, and a random CLIP-L.
    Needs ComfyUI imported (its model classes define the layout)."""
    import tempfile

    import comfy.ldm.models.autoencoder
    import comfy.supported_models

    unet_config = {"use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
                   "model_channels": 320, "channel_mult": [1, 1], "num_res_blocks": [1, 1],
                   "transformer_depth": [1, 0], "transformer_depth_output": [1, 1, 0, 0],
                   "transformer_depth_middle": 1, "use_spatial_transformer": True,
                   "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
                   "num_head_channels": -1, "legacy": False, "adm_in_channels": None,
                   "use_temporal_attention": False, "use_temporal_resblock": False}
    unet = comfy.supported_models.SD15(unet_config).get_model({}, "").diffusion_model
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
                "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4,
                                                     decoder_ddconfig={**ddconfig, "ch": 32})
    sd = {}
    for prefix, module, s in (("model.diffusion_model.", unet, seed), ("first_stage_model.", vae, seed + 1)):
        randomise(module, s, 0.03)
        sd.update({prefix + k: v.half().contiguous() for k, v in module.state_dict().items()})
    with tempfile.TemporaryDirectory() as tmp:
        from safetensors.torch import load_file

        clip = load_file(write_clip_l(os.path.join(tmp, "clip.safetensors"), seed + 2))
    sd.update({"cond_stage_model.transformer." + k: v for k, v in clip.items()})
    save_file(sd, path)
    return path


def sdxl_conditioning(seed: int, *, context_dim: int = 768, pooled_dim: int = 768, tokens: int = 77,
                      pooled: bool = True, **size) -> list:
    """A ComfyUI CONDITIONING for an SDXL-family denoiser made of random tensors (a real SDXL CLIP
    cannot be built small): text embeddings [1, tokens, context_dim], a pooled output [1, pooled_dim]
    (left out with ``pooled=False``), and the size/crop values given (``width``, ``height``,
    ``crop_w``, ``crop_h``, ``target_width``, ``target_height``, in pixels, as CLIPTextEncodeSDXL
    sets them). The defaults fit SDXL_UNET_CONFIG."""
    gen = torch.Generator().manual_seed(seed)
    context = torch.randn(1, tokens, context_dim, generator=gen)
    extra = dict(size)
    if pooled:
        extra["pooled_output"] = torch.randn(1, pooled_dim, generator=gen)
    return [[context, extra]]


# SDXL base 1.0's published unet/config.json, with LEDiff's 8 input channels
STOCK_SDXL = {
    "in_channels": 8, "out_channels": 4, "sample_size": 128, "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "attention_head_dim": [5, 10, 20], "num_attention_heads": None,
    "cross_attention_dim": 2048, "use_linear_projection": True, "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816, "norm_num_groups": 32, "act_fn": "silu",
    "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "class_embed_type": None, "upcast_attention": None,
}
