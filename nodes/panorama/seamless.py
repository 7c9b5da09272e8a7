"""Seamless Panorama: a MODEL whose convolutions wrap horizontally, for 360-degree latents."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from comfy_api.latest import io


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


NODES = [PanoramaWrap]
