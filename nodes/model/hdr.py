"""Latent Exposure Fusion, HDR Decode and Blend with LDR."""

from __future__ import annotations

import logging

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ...lediff_core.color import check_finite, check_image_size, nonfinite_warning
from ...lediff_core.color.tonemap import tone_map
from ...lediff_core.model.blend import PRESETS, anchor_exposure, blend_with_ldr
from ...lediff_core.video import FRAMES
from ...lediff_core.video.temporal import stabilise
from .runtime import PRECISION_EXACT, PRECISIONS
from .sampling import BACKBONE_KEY

HDR_VAE = io.Custom("LEDIFF_HDR_VAE")
log = logging.getLogger("lediff")

PRECISION_TOOLTIP = (
    "float32 (exact): the decoder and exp() compute in float32 whatever ComfyUI's VAE dtype is. "
    "vae dtype (fast): compute in ComfyUI's VAE dtype (bfloat16 on recent NVIDIA GPUs, float32 on "
    "CPU unless --bf16-vae/--fp16-vae), meant to be faster on GPUs; but the decoder's output is a "
    "logarithm, so its rounding becomes relative HDR error. Measured (SD-sized decoder, log output "
    "spanning about +-8, against float32): bfloat16 median 1.7 %, 99th percentile 7.7 %, max 12 %; "
    "float16 median 0.23 %, 99th percentile 1.1 %, max 1.9 %. On a CPU without native "
    "bfloat16/float16 it is also much slower. An SDXL HDR VAE never computes in float16 (SDXL's VAE "
    "overflows it): with --fp16-vae its fast precision is float32 too; bfloat16 stays.")

# inputs in exposure order, darkest first (the order the fusion module was trained with)
BRACKET_ORDER = ("darker", "dark", "mid", "bright", "brighter")


class LatentExposureFusion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffLatentExposureFusion",
            display_name="Latent Exposure Fusion",
            category="LEDiff/hdr",
            description="Merges exposure-bracket latents into one HDR latent with LEDiff's fusion module.",
            inputs=[
                HDR_VAE.Input("hdr_vae", tooltip="From Load HDR VAE (holds the fusion weights); of the same "
                              "backbone (SD1.5 or SDXL) as the denoisers that made the brackets."),
                io.Latent.Input("dark", tooltip="Darkest of the three brackets."),
                io.Latent.Input("mid", tooltip="Middle bracket."),
                io.Latent.Input("bright", tooltip="Brightest of the three brackets."),
                io.Latent.Input("darker", optional=True, tooltip="Optional bracket darker than 'dark' "
                                "(five brackets: Highlight's dark/mid here as darker/dark, the input as "
                                "mid, Shadow's mid/bright as bright/brighter)."),
                io.Latent.Input("brighter", optional=True, tooltip="Optional bracket brighter than "
                                "'bright'."),
            ],
            outputs=[
                io.Latent.Output("latent", tooltip="The fused HDR latent, for HDR Decode."),
                io.Image.Output("weights", tooltip="Per-bracket fusion weights (mean over latent "
                                "channels), one grey image per bracket and batch item, darkest first."),
            ],
        )

    @classmethod
    def execute(cls, hdr_vae, dark, mid, bright, darker=None, brighter=None) -> io.NodeOutput:
        given = {"darker": darker, "dark": dark, "mid": mid, "bright": bright, "brighter": brighter}
        given = {name: given[name] for name in BRACKET_ORDER if given[name] is not None}
        made_by = {name: latent.get(BACKBONE_KEY) for name, latent in given.items()}
        hdr_vae.check_made_by(made_by)
        brackets = {name: latent["samples"] for name, latent in given.items()}
        fused, weights = hdr_vae.fuse(brackets)
        out_dtype = mm.intermediate_dtype()
        # one grey image per bracket and batch item, nearest-upscaled to the decoded image size
        maps = weights.float().mean(dim=2).flatten(0, 1)
        f = hdr_vae.downscale_factor
        maps = maps.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)[..., None].expand(-1, -1, -1, 3)
        out = {k: v for k, v in mid.items() if k not in ("samples", "noise_mask")}
        out["samples"] = fused.to(dtype=out_dtype)
        # the fused latent is in the brackets' latent space: say so even when 'mid' came untagged from KSampler
        tags = {b for b in made_by.values() if b is not None}
        if tags:
            out[BACKBONE_KEY] = tags.pop()
        return io.NodeOutput(out, maps.to(dtype=out_dtype))


class HDRDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffHDRDecode",
            display_name="HDR Decode",
            category="LEDiff/hdr",
            description="Decodes a (fused) latent with LEDiff's HDR decoder into linear HDR, never clamped.",
            inputs=[
                HDR_VAE.Input("hdr_vae", tooltip="From Load HDR VAE (SD1.5 or SDXL: the latent's backbone)."),
                io.Latent.Input("latent", tooltip="Usually from Latent Exposure Fusion."),
                io.Boolean.Input("wrap_x", default=False, optional=True,
                                 tooltip="The latent is a 360-degree panorama: the decoder wraps "
                                 "horizontally, so the left and right edges join seamlessly."),
                io.Int.Input("tile_size", default=0, min=0, max=16384, step=64, optional=True,
                             tooltip="0: automatic (one piece when it fits the free memory, else the "
                             "largest tiles that fit; smaller tiles if it still runs out of memory; the log "
                             "says when it tiles). Otherwise decode in tiles of this many pixels overlapping "
                             "by a quarter tile, in bounded memory."),
                io.Combo.Input("precision", options=list(PRECISIONS), default=PRECISION_EXACT, optional=True,
                               tooltip=PRECISION_TOOLTIP),
            ],
            outputs=[
                io.Image.Output("hdr", tooltip="Linear HDR in the working space (Rec.709/sRGB primaries, "
                                "D65; exp of the decoder output; arbitrary global scale, use Blend with LDR to "
                                "calibrate). Save it with Save EXR."),
                io.Image.Output("preview", tooltip="Tone-mapped sRGB preview (ACES, automatic exposure)."),
            ],
        )

    @classmethod
    def execute(cls, hdr_vae, latent, wrap_x=False, tile_size=0, precision=PRECISION_EXACT) -> io.NodeOutput:
        hdr_vae.check_made_by({"latent": latent.get(BACKBONE_KEY)})
        hdr = hdr_vae.decode(latent["samples"], wrap_x, tile_size, precision)
        if note := nonfinite_warning(hdr, "decoded image"):  # exp() overflowed: the decoder's output passed 88.7
            log.warning("HDR Decode: %s", note)
        return io.NodeOutput(hdr, tone_map(hdr, "aces", auto_exposure=True))


def _match_ldr(ldr: torch.Tensor, hdr: torch.Tensor) -> torch.Tensor:
    """The LDR cropped like ComfyUI's VAE Encode crops to multiples of 8 (centred), if that is
    what makes it match the HDR."""
    dh, dw = ldr.shape[1] - hdr.shape[1], ldr.shape[2] - hdr.shape[2]
    if 0 <= dh < 8 and 0 <= dw < 8 and (dh or dw):
        ldr = ldr[:, dh // 2: dh // 2 + hdr.shape[1], dw // 2: dw // 2 + hdr.shape[2]]
    return ldr


class BlendLDR(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffBlendLDR",
            display_name="Blend with LDR",
            category="LEDiff/hdr",
            description="LEDiff's post-process: keep the LDR photo where it is not clipped (fitted to the "
                        "HDR) and the generated HDR where it is; optionally anchor the exposure.",
            inputs=[
                io.Image.Input("ldr", tooltip="The LDR input photo (sRGB-encoded, 0..1)."),
                io.Image.Input("hdr", tooltip="The linear HDR from HDR Decode."),
                io.Combo.Input("preset", options=[*PRESETS, "none"], default="released",
                               tooltip="released: threshold 0.05, gamma 2.4-2.6 (the released code). "
                               "supplementary: threshold 0.10, gamma 1.8-2.4 (the paper's supplement). "
                               "none: no blending, only the exposure anchor."),
                io.Combo.Input("anchor", options=["none", "percentile"], default="none",
                               tooltip="percentile: scale each image so the given percentile of its "
                               "luminance lands at the given value (calibrated output)."),
                io.Float.Input("percentile", default=50.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Luminance percentile used by the anchor."),
                io.Float.Input("value", default=0.18, min=1e-6, max=1e6, step=0.01,
                               tooltip="Value the anchored percentile lands at (0.18 = middle grey)."),
                io.Combo.Input("frames", options=list(FRAMES), default="independent", optional=True,
                               tooltip="independent: every image of the batch is fitted and anchored on "
                               "its own. video: the batch is the frames of one shot: one LDR fit and one "
                               "anchor scale for the whole shot, so the brightness does not pump, and the HDR "
                               "blended along the motion of the LDR frames, so it does not flicker."),
            ],
            outputs=[
                io.Image.Output("hdr", tooltip="Blended (and anchored) linear HDR."),
                io.Mask.Output("mask", tooltip="Over-exposure mask: 1 where the generated HDR is used."),
            ],
        )

    @classmethod
    def execute(cls, ldr, hdr, preset, anchor, percentile, value, frames="independent") -> io.NodeOutput:
        shot = frames == "video"
        for name, pixels in (("ldr", ldr), ("hdr", hdr)):
            check_image_size(pixels, name)
            # the LDR fit and the anchor would use them, and the blend would hide those under the LDR
            check_finite(pixels, name, "the fit to the LDR and the exposure anchor would use them")
        hdr = hdr[..., :3].float()
        ldr = _match_ldr(ldr[..., :3].float().to(hdr.device), hdr)
        if shot:
            hdr = stabilise(hdr, ldr.clamp(0, 1), what="frames = video: the ldr frames")
        if preset == "none":
            out, mask = hdr, torch.ones(hdr.shape[:3], device=hdr.device)
        else:
            out, mask, _, _ = blend_with_ldr(ldr, hdr, PRESETS[preset], shared=shot)
            mask = mask[..., 0]
        if anchor == "percentile":
            out, _ = anchor_exposure(out, percentile, value, shared=shot)
        return io.NodeOutput(out, mask)


NODES = [LatentExposureFusion, HDRDecode, BlendLDR]
