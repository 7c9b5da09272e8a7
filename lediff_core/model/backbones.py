"""The backbones LEDiff runs on, one record each, and the one answer to "which backbone is this?"
for a diffusers config.

A backbone is the Stable Diffusion family whose latent space, VAE and UNet a LEDiff model shares:
SD1.5 (SD1.x; SD2's VAE is the same) and SDXL. Every fact that differs between them is written
here once and read from the record everywhere else; the ComfyUI half of a backbone (its model
config class, latent format, how a ComfyUI MODEL is recognised, the conditioning it takes) is
``nodes.model.backbones``; the diffusers half (pipeline class, text encoders, the single-file
layout) is in ``lediff_train`` (``export``, ``models``, ``checkpoint``). docs/ARCHITECTURE.md says
how to add one.

Facts (diffusers' ``vae/config.json`` and ``unet/config.json`` of the published models, ComfyUI's
``latent_formats`` and ``model_base.SDXL.encode_adm``):
- the latent scale (``scaling_factor``) is the one VAE config value that tells the latent spaces
  apart: SD1.x and SD2 share 0.18215 (also diffusers' default when a config leaves it out); SDXL's
  VAE (same architecture, retrained) has 0.13025. Both have 4 latent channels.
- SDXL's VAE overflows float16 (activations beyond its 65504 maximum become inf, then NaN: why
  diffusers upcasts it, ``force_upcast``, and why the "fp16-fix" SDXL VAE exists); SD1.5's does not.
- a UNet config is told apart by its config alone (never by file names): SDXL's has
  ``addition_embed_type`` "text_time" with ``projection_class_embeddings_input_dim`` (pooled text
  width + 6 x 256) and ``addition_time_embed_dim``; SD1.x's sets none of the three. SDXL embeds six
  size/crop ids (height, width, crop_h, crop_w, target_height, target_width) with 256 channels each.
- the training resolutions: 512 (SD1.5), 1024 (SDXL); the text parts of a diffusers folder: CLIP-L
  (SD1.5), CLIP-L and CLIP-G (SDXL).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import LEDiffError

LEDIFF_IN_CHANNELS = 8  # a bracket denoiser's UNet input: noisy latent (4) + condition latent (4), InstructPix2Pix
# the UNet config settings that tell the backbones apart (``Backbone.addition_embed_type``)
UNET_ADDITION_KEYS = ("addition_embed_type", "projection_class_embeddings_input_dim", "addition_time_embed_dim")
PARTS = ("unet", "vae")


class UNetConfigError(LEDiffError, ValueError):
    """A UNet config that is not an SD1.x- or SDXL-family bracket denoiser; the message says why."""


@dataclass(frozen=True)
class Backbone:
    """One backbone's facts. ``name`` is what LATENTs (``lediff_backbone``), files and command lines
    carry; ``label`` is what messages and tooltips say."""

    name: str
    label: str
    latent_channels: int
    scaling_factor: float  # vae/config.json's scaling_factor: how its VAE config is recognised
    training_size: int  # pixels, the side of the images the backbone was trained on
    text_parts: tuple[str, ...]  # a diffusers folder's text encoder and tokenizer folders
    float16_safe: bool  # whether its VAE may compute in float16
    addition_embed_type: str | None  # unet/config.json's: how its UNet config is recognised (UNET_ADDITION_KEYS)
    time_ids: int = 0  # size/crop ids embedded into the UNet's ADM input with the pooled text (0: none)
    time_embed_dim: int = 0  # channels each id is embedded with

    def recognises(self, config: dict, part: str) -> bool:
        """Whether ``config`` (a diffusers ``unet/`` or ``vae/`` config.json, parsed) is this backbone's."""
        if part == "vae":
            # diffusers' default scaling_factor (absent from the config) is SD1.x's
            return abs(float(config.get("scaling_factor", SD15.scaling_factor)) - self.scaling_factor) < 1e-6
        values = [config.get(k) for k in UNET_ADDITION_KEYS]
        if self.addition_embed_type is None:
            return all(v is None for v in values)
        return values[0] == self.addition_embed_type and all(v is not None for v in values[1:])


SD15 = Backbone(name="sd15", label="SD1.5", latent_channels=4, scaling_factor=0.18215, training_size=512,
                text_parts=("text_encoder", "tokenizer"), float16_safe=True, addition_embed_type=None)
SDXL = Backbone(name="sdxl", label="SDXL", latent_channels=4, scaling_factor=0.13025, training_size=1024,
                text_parts=("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"), float16_safe=False,
                addition_embed_type="text_time", time_ids=6, time_embed_dim=256)
BACKBONES = (SD15, SDXL)
NAMED = {b.name: b for b in BACKBONES}


def identify(config: dict, part: str) -> Backbone | None:
    """The backbone whose ``part`` (``"unet"`` or ``"vae"``) a diffusers config is: the one place
    that answers "which backbone is this?" for configs.

    A VAE of neither backbone is None (another latent space: its HDR VAE still decodes, with no
    backbone to check brackets against). A UNet of neither is a UNetConfigError: no other family
    of bracket denoiser can be loaded or trained."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    found = next((b for b in BACKBONES if b.recognises(config, part)), None)
    if found is None and part == "unet":
        values = {k: config.get(k) for k in UNET_ADDITION_KEYS}
        raise UNetConfigError(
            f"unet config has {', '.join(f'{k}={v!r}' for k, v in values.items())}: neither an SD1.x UNet "
            "(none of them set) nor an SDXL UNet (addition_embed_type 'text_time' with both dimensions set); "
            "only SD1.5- and SDXL-family LEDiff denoisers can be loaded"
        )
    return found


def label(name: str | None) -> str | None:
    """The label of the backbone called ``name`` (a LATENT's tag), or ``name`` itself when unknown."""
    return NAMED[name].label if name in NAMED else name
