"""Turning LEDiff weights into objects ComfyUI manages: the bracket denoiser as a MODEL, the HDR
VAE's weights as a standard VAE, and the HDR VAE itself under ComfyUI's device management."""

from __future__ import annotations

import comfy.diffusers_convert
import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
import comfy.utils
import folder_paths
import torch

from ..lediff_core.hdr_vae import HDRVAE
from ..lediff_core.unet_config import ldm_unet_config
from ..lediff_core.weights import WeightError, check_keys, list_models, resolve_model

FOLDER = "lediff"


def model_names() -> list[str]:
    return list_models(folder_paths.get_folder_paths(FOLDER))


def model_path(name: str) -> str:
    return resolve_model(folder_paths.get_folder_paths(FOLDER), name)


def build_denoiser(config: dict, diffusers_sd: dict, source: str) -> comfy.model_patcher.ModelPatcher:
    """An 8-channel SD1.x UNet from its diffusers config and weights, as a ComfyUI MODEL.

    ComfyUI has no diffusers-format detection entry for 8-channel SD1.5 UNets, so the model is built
    from the config: keys are converted with ComfyUI's own diffusers-to-ldm map and checked exactly.
    """
    unet_config = ldm_unet_config(config)
    model_config = comfy.supported_models.SD15_instructpix2pix(unet_config)
    # SD15's model config forces 8 heads; a config that says otherwise must win (else attention is
    # silently wrong)
    model_config.unet_config["num_heads"] = unet_config["num_heads"]
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    params = sum(v.numel() for v in diffusers_sd.values())
    weight_dtype = next(iter(diffusers_sd.values())).dtype if diffusers_sd else None
    dtype = mm.unet_dtype(model_params=params, supported_dtypes=model_config.supported_inference_dtypes,
                          weight_dtype=weight_dtype)
    model_config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device,
                                                                 model_config.supported_inference_dtypes))
    model = model_config.get_model({}, "")
    model_keys = set(model.diffusion_model.state_dict())
    # ComfyUI's diffusers-to-ldm map also names optional embeddings: keep what this model has
    key_map = {d: ldm for d, ldm in comfy.utils.unet_to_diffusers(model_config.unet_config).items()
               if ldm in model_keys}
    check_keys(model_keys, key_map.values(), f"bracket denoiser {source} (key conversion)")
    check_keys(key_map.keys(), diffusers_sd.keys(), f"bracket denoiser {source}",
               "The unet/ weights do not match unet/config.json; re-download the model")
    try:
        model.load_model_weights({key_map[k]: v for k, v in diffusers_sd.items()}, "")
    except RuntimeError as e:  # shape mismatches
        raise WeightError(f"bracket denoiser {source}: {e}") from e
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def build_comfy_vae(config: dict, diffusers_sd: dict, source: str) -> comfy.sd.VAE:
    """A standard ComfyUI VAE (for VAE Encode of photos and bracket previews) from the HDR VAE's
    weights; its decoder is LEDiff's HDR decoder, so VAE Decode shows a log-encoded view."""
    widths = list(config["block_out_channels"])
    if config.get("norm_num_groups", 32) != 32 or not config.get("mid_block_add_attention", True):
        raise WeightError(f"{source}: ComfyUI's VAE needs 32 GroupNorm groups and mid-block attention")
    ddconfig = {
        "double_z": True, "z_channels": config.get("latent_channels", 4), "resolution": 256,
        "in_channels": config.get("in_channels", 3), "out_ch": config.get("out_channels", 3),
        "ch": widths[0], "ch_mult": [w // widths[0] for w in widths],
        "num_res_blocks": config.get("layers_per_block", 2), "attn_resolutions": [], "dropout": 0.0,
    }
    ldm_sd = comfy.diffusers_convert.convert_vae_state_dict(dict(diffusers_sd))
    vae = comfy.sd.VAE(sd=dict(ldm_sd), config={"params": {"ddconfig": ddconfig,
                                                          "embed_dim": ddconfig["z_channels"]}})
    # ComfyUI loads VAE weights with strict=False: check that every weight really arrived
    loaded = vae.first_stage_model.state_dict()
    check_keys(loaded.keys(), ldm_sd.keys(), f"VAE {source}")
    return vae


class HDRVAEModel:
    """The LEDIFF_HDR_VAE value: the core HDR VAE plus a ModelPatcher so ComfyUI loads it to the
    VAE device and offloads it like its own models."""

    def __init__(self, core: HDRVAE, name: str):
        self.core = core.eval()
        self.name = name
        self.patcher = comfy.model_patcher.ModelPatcher(
            self.core, load_device=mm.vae_device(), offload_device=mm.vae_offload_device())
        self.dtype = mm.vae_dtype(mm.vae_device(), [torch.bfloat16, torch.float32])
        self.core.to(self.dtype)

    def load(self, latent_shape) -> torch.device:
        """Load to the VAE device with room for decoding ``latent_shape`` (like ComfyUI's VAE)."""
        b, _, h, w = latent_shape
        widest = max(self.core.vae.config["block_out_channels"])
        # the widest decoder activations at full resolution dominate: a few of them at once
        memory = 4 * b * widest * (h * 8) * (w * 8) * mm.dtype_size(self.dtype)
        mm.load_models_gpu([self.patcher], memory_required=memory)
        return self.patcher.load_device

    def __repr__(self):
        return f"LEDiff HDR VAE ({self.name})"
