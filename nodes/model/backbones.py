"""The ComfyUI half of each backbone (its facts are ``lediff_core.model.backbones``'s record): the
model config class a bracket denoiser is built as, its latent format, how a ComfyUI MODEL is
recognised as it, and the conditioning it takes; and the one answer to "which backbone is this
MODEL?" (``model_backbone``).

ComfyUI's own table of models is ``comfy.supported_models`` + ``comfy.latent_formats``: SD1.x's
8-channel model is ``SD15_instructpix2pix`` (``SD15`` latents, no ADM input), SDXL's is
``SDXL_instructpix2pix`` (the CosXL Edit type: ``SDXL`` latents, pooled text and size/crop values
through ``model_base.SDXL.encode_adm``).
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.latent_formats
import comfy.model_base
import comfy.supported_models

from ...lediff_core.model.backbones import SD15, SDXL, Backbone


@dataclass(frozen=True)
class ComfyBackbone:
    backbone: Backbone
    model_config: type  # ComfyUI's 8-channel (InstructPix2Pix) model config class
    latent_format: type  # its latent format (the latent scale ComfyUI applies in sampling)
    head_settings: tuple[str, ...]  # the head settings model_config overwrites with its stock values
    # a MODEL is this backbone's when its model is an instance of this class; None: when it has this
    # latent format (exactly) and no ADM input
    model_class: type | None
    conditioning_fix: str  # what to do when a conditioning does not fit a denoiser of this backbone

    def recognises(self, model) -> bool:
        inner = model.model
        if self.model_class is not None:
            return isinstance(inner, self.model_class)
        adm = inner.model_config.unet_config.get("adm_in_channels")
        return type(inner.latent_format) is self.latent_format and adm is None


# SDXL first: its model class is the sharper test
COMFY_BACKBONES = (
    ComfyBackbone(SDXL, comfy.supported_models.SDXL_instructpix2pix, comfy.latent_formats.SDXL,
                  ("num_heads", "num_head_channels"), comfy.model_base.SDXL,
                  "encode the prompts with an SDXL checkpoint's CLIP (CLIP Text Encode or CLIPTextEncodeSDXL), "
                  "or load an SD1.5 LEDiff denoiser for SD1.5 conditioning"),
    ComfyBackbone(SD15, comfy.supported_models.SD15_instructpix2pix, comfy.latent_formats.SD15,
                  ("num_heads",), None,
                  "encode the prompts with an SD1.5 checkpoint's CLIP, or load an SDXL LEDiff denoiser for "
                  "SDXL conditioning"),
)
COMFY = {c.backbone: c for c in COMFY_BACKBONES}


def model_backbone(model) -> Backbone:
    """The backbone of a ComfyUI MODEL (a ``ModelPatcher``): the one place that answers "which
    backbone is this?" for ComfyUI objects. SDXL: ComfyUI's SDXL-family models (Load Bracket
    Denoiser's SDXL_instructpix2pix); SD1.5: SD1.x-family ones (SD15_instructpix2pix, or any MODEL
    with SD1.5's latent format and no ADM input). Anything else is an error."""
    found = next((c.backbone for c in COMFY_BACKBONES if c.recognises(model)), None)
    if found is None:
        inner = model.model
        raise ValueError(
            f"this MODEL is a {type(inner).__name__} with {type(inner.latent_format).__name__} latents; a bracket "
            "needs an SD1.5 or SDXL LEDiff denoiser: load one with 'Load Bracket Denoiser'"
        )
    return found


def denoiser_model_config(backbone: Backbone, unet_config: dict):
    """ComfyUI's 8-channel model config of ``backbone`` over a translated UNet config
    (``lediff_core.model.unet_config.ldm_unet_config``). The model configs overwrite the head
    settings with their stock values (SD1.5: 8 heads; SDXL: 64-wide heads): the config's own must
    win, else attention is silently wrong."""
    comfy_backbone = COMFY[backbone]
    model_config = comfy_backbone.model_config(unet_config)
    for key in comfy_backbone.head_settings:
        model_config.unet_config[key] = unet_config[key]
    return model_config
