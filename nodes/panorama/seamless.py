"""Seamless Panorama (a horizontally wrapping MODEL) and Preview Lighting."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..lediff_core.ibl import render_spheres
from ..lediff_core.tonemap import tone_map


def _wrapped_forward(module: torch.nn.Conv2d, pad: int, x: torch.Tensor, *args, **kwargs):
    # circular padding on the width axis only; the module's own padding now covers the height
    return type(module).forward(module, F.pad(x, (pad, pad, 0, 0), mode="circular"), *args, **kwargs)


def _unpatched_padding(module: torch.nn.Conv2d) -> tuple[int, int]:
    """The convolution's own padding, even while a wrapped clone is loaded: ComfyUI applies object
    patches to the shared module when it loads a clone and leaves them until that clone unloads."""
    forward = module.__dict__.get("forward")
    if isinstance(forward, partial) and forward.func is _wrapped_forward:
        return module.padding[0], forward.args[1]
    return module.padding


def wrap_model_x(model):
    """A clone of ``model`` whose UNet convolutions wrap horizontally (object patches: ComfyUI
    applies them when it loads this clone and restores the modules afterwards)."""
    clone = model.clone()
    for name, module in clone.get_model_object("diffusion_model").named_modules():
        if not isinstance(module, torch.nn.Conv2d) or module.padding == "same":
            continue
        pad_h, pad_w = _unpatched_padding(module)
        if pad_w > 0:
            clone.add_object_patch(f"diffusion_model.{name}.padding", (pad_h, 0))
            clone.add_object_patch(f"diffusion_model.{name}.forward", partial(_wrapped_forward, module, pad_w))
    return clone


class PanoramaWrap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffPanoramaWrap",
            display_name="Seamless Panorama",
            category="LEDiff/panorama",
            description="Makes a MODEL's convolutions wrap horizontally, so 2:1 latents it samples are "
                        "seamless 360-degree panoramas. Works for SD checkpoints and LEDiff bracket denoisers.",
            inputs=[io.Model.Input("model", tooltip="Any SD1.x-style MODEL (checkpoint or bracket denoiser).")],
            outputs=[io.Model.Output("model", tooltip="A patched copy; the input MODEL is not changed.")],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        return io.NodeOutput(wrap_model_x(model))


class PreviewLighting(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffIBLPreview",
            display_name="Preview Lighting",
            category="LEDiff/panorama",
            description="Renders a diffuse and a mirror sphere lit by an equirectangular HDR environment.",
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR equirect panorama (2:1, up at the top, "
                               "Blender's World-texture convention)."),
                io.Int.Input("size", default=256, min=32, max=2048, step=32,
                             tooltip="Height of the preview (each sphere is size x size)."),
                io.Float.Input("exposure", default=0.0, min=-32.0, max=32.0, step=0.1,
                               tooltip="Stops added to the automatic exposure of the preview."),
            ],
            outputs=[
                io.Image.Output("preview", tooltip="Tone-mapped preview: diffuse sphere left, mirror right."),
                io.Image.Output("hdr", tooltip="The same render, linear HDR."),
            ],
        )

    @classmethod
    def execute(cls, image, size, exposure) -> io.NodeOutput:
        rgb = image[..., :3].float()
        bad = (~torch.isfinite(rgb)).any(dim=-1).sum().item()
        if bad:
            raise ValueError(f"Preview Lighting: {bad} pixel(s) of the environment are NaN/Inf")
        hdr = render_spheres(rgb, size)
        return io.NodeOutput(tone_map(hdr, "aces", exposure, auto_exposure=True), hdr)


NODES = [PanoramaWrap, PreviewLighting]
