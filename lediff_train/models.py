"""The MODEL a training run starts from, read strictly.

Two layouts are accepted (both diffusers folders):

- an **official LEDiff download** (fine-tune): ``unet/`` with 8 input channels, ``vae/`` with
  ``merge_model.pth``, ``scheduler/``; ``text_encoder/`` and ``tokenizer/`` when present;
- a **plain SD1.5 folder** (start fresh): ``unet/`` with 4 input channels, which is widened to 8
  (InstructPix2Pix layout: noisy latent, then the condition; the extra ``conv_in`` weights are
  zero, so the widened UNet starts out as the SD UNet ignoring its condition), ``vae/`` without
  fusion weights (the fusion starts as the plain average, the paper's initialisation).

Captions are encoded with the MODEL's own ``text_encoder/`` and ``tokenizer/`` (or those of
``text_model``, an SD1.5 folder, when the MODEL has none). Every weight file is checked key by key
and shape by shape; nothing falls back silently.
"""

from __future__ import annotations

import os

import torch

from lediff_core.model.fusion import ExposureFusion
from lediff_core.model.vae import AutoencoderKL, parse_vae_config
from lediff_core.model.weights import (
    FUSION_NAME,
    WeightError,
    _weights_in,
    check_keys,
    load_state_dict,
    read_json,
)

LEDIFF_IN_CHANNELS = 8
# SD1.x's training schedule (its scheduler_config.json), used when a MODEL has no scheduler/
SD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}


class ModelError(ValueError):
    """A MODEL folder the recipe cannot start from; the message names the part and the fix."""


def _part(path: str, name: str) -> str:
    folder = os.path.join(path, name)
    if not os.path.isdir(folder):
        raise ModelError(
            f"MODEL {path!r} has no {name}/ folder: give an official LEDiff download (unet/, vae/ with "
            f"{FUSION_NAME}) or a plain Stable Diffusion 1.5 diffusers folder (unet/, vae/, text_encoder/, "
            "tokenizer/, scheduler/)"
        )
    return folder


def vae_config(path: str) -> dict:
    return read_json(os.path.join(_part(path, "vae"), "config.json"))


def scaling_factor(path: str) -> float:
    return float(parse_vae_config(vae_config(path))["scaling_factor"])


def load_vae(path: str) -> AutoencoderKL:
    """The MODEL's VAE (SD encoder + its decoder: SD's, or LEDiff's HDR one), strictly, float32."""
    folder = _part(path, "vae")
    vae = AutoencoderKL(vae_config(path))
    vae.load_weights(load_state_dict(_weights_in(folder)), folder)
    return vae


def has_fusion(path: str) -> bool:
    return os.path.isfile(os.path.join(_part(path, "vae"), FUSION_NAME))


def load_fusion(path: str, channels: int = 4) -> ExposureFusion:
    """The MODEL's fusion module (vae/merge_model.pth), or the average initialisation without one."""
    fusion = ExposureFusion(channels)
    if has_fusion(path):
        fusion_path = os.path.join(path, "vae", FUSION_NAME)
        fusion.load_weights(load_state_dict(fusion_path), fusion_path)
    return fusion


def unet_config(path: str) -> dict:
    return read_json(os.path.join(_part(path, "unet"), "config.json"))


def load_unet(path: str):
    """(diffusers UNet2DConditionModel with 8 input channels, widened) from MODEL's unet/.

    8 channels: loaded as is (fine-tuning a LEDiff denoiser). 4 channels: an SD UNet, widened with
    zero weights for the condition channels. Anything else is an error."""
    from diffusers import UNet2DConditionModel

    folder = _part(path, "unet")
    config = unet_config(path)
    channels = config.get("in_channels")
    if channels not in (4, LEDIFF_IN_CHANNELS):
        raise ModelError(
            f"{folder!r}: the UNet has in_channels={channels}; the recipe starts from an SD1.5 UNet (4) or a "
            f"LEDiff bracket denoiser ({LEDIFF_IN_CHANNELS}). "
            "Inpainting UNets (9) and other backbones are not supported"
        )
    state = load_state_dict(_weights_in(folder))
    wide = {**config, "in_channels": LEDIFF_IN_CHANNELS}
    unet = UNet2DConditionModel.from_config(wide)
    expected = unet.state_dict()
    check_keys(expected.keys(), state.keys(), f"UNet weights in {folder!r} do not match its config.json",
               "expected a diffusers UNet2DConditionModel state dict (unet/diffusion_pytorch_model.safetensors)")
    if channels == 4:
        narrow = state["conv_in.weight"]
        widened = torch.zeros(expected["conv_in.weight"].shape, dtype=narrow.dtype)
        widened[:, :4] = narrow
        state = {**state, "conv_in.weight": widened}
    wrong = [f"{k}: file {list(v.shape)} vs model {list(expected[k].shape)}"
             for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise WeightError(f"UNet weights in {folder!r} have tensors of the wrong shape: {', '.join(wrong[:5])}")
    unet.load_state_dict(state, strict=True)
    unet.train()
    return unet, channels == 4


def noise_schedule(path: str):
    """diffusers' DDPMScheduler with the MODEL's training schedule (scheduler/, else SD's)."""
    from diffusers import DDPMScheduler

    config_path = os.path.join(path, "scheduler", "scheduler_config.json")
    config = dict(SD_SCHEDULE)
    if os.path.isfile(config_path):
        given = read_json(config_path)
        config.update({k: given[k] for k in (*SD_SCHEDULE, "trained_betas") if k in given})
    if config["prediction_type"] != "epsilon":
        raise ModelError(f"{config_path!r}: prediction_type {config['prediction_type']!r}; LEDiff's denoisers "
                         "predict epsilon (SD1.5's)")
    return DDPMScheduler.from_config(config)


def text_parts_folder(path: str, text_model: str | None = None) -> str:
    """The folder whose text_encoder/ and tokenizer/ encode the captions."""
    source = text_model or path
    missing = [p for p in ("text_encoder", "tokenizer") if not os.path.isdir(os.path.join(source, p))]
    if missing:
        hint = ("pass --text-model with a Stable Diffusion 1.5 diffusers folder (the official LEDiff "
                "downloads do not always carry the text encoder)") if not text_model else "use an SD1.5 folder"
        raise ModelError(f"{source!r} has no {' or '.join(f'{m}/' for m in missing)} to encode captions: {hint}")
    return source


class CaptionEncoder:
    """Captions -> the UNet's cross-attention context [B, 77, dim] (SD1.5's last hidden state)."""

    def __init__(self, folder: str):
        from transformers import CLIPTextModel, CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"), local_files_only=True)
        self.model = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), local_files_only=True)
        self.model.requires_grad_(False).eval()
        self.folder = folder

    @torch.no_grad()
    def __call__(self, captions: list[str], device=None) -> torch.Tensor:
        device = device or self.model.device
        self.model.to(device)
        # SD1.5 pads/truncates every prompt to the text encoder's 77 positions
        ids = self.tokenizer(list(captions), padding="max_length", truncation=True,
                             max_length=self.model.config.max_position_embeddings, return_tensors="pt").input_ids
        return self.model(ids.to(device))[0].float()


def check_same_vae(data_path: str, data, path: str) -> None:
    """The data's latents must come from MODEL's encoder (same scaling factor and VAE config)."""
    if abs(float(data.scaling_factor) - scaling_factor(path)) > 1e-9:
        raise ModelError(
            f"{data_path!r} was prepared with a VAE of scaling factor {data.scaling_factor}, but MODEL {path!r} has "
            f"{scaling_factor(path)}: prepare the data with this MODEL (python -m lediff_train prepare --model ...)")
