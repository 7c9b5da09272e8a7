"""Tone Map: linear HDR to an sRGB IMAGE in 0..1, for previews and LDR nodes."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ...lediff_core.color import check_image_size, nonfinite_warning
from ...lediff_core.color.tonemap import OPERATORS, tone_map

log = logging.getLogger("lediff")


class ToneMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffToneMap",
            display_name="Tone Map",
            category="LEDiff/image",
            description="Turns linear HDR into an sRGB image in 0..1 for previews or LDR nodes.",
            inputs=[
                io.Image.Input("image", tooltip="Linear HDR image."),
                io.Combo.Input(
                    "operator",
                    options=list(OPERATORS),
                    default="aces",
                    tooltip="aces: filmic curve (Narkowicz's ACES fit). reinhard: extended Reinhard on "
                    "luminance with a white point. clip: exposure, then clip at 1.",
                ),
                io.Float.Input(
                    "exposure", default=0.0, min=-32.0, max=32.0, step=0.1,
                    tooltip="Exposure in stops (x2 per stop), applied before the curve.",
                ),
                io.Float.Input(
                    "white", default=4.0, min=0.01, max=1e6, step=0.1,
                    tooltip="reinhard only: the luminance (after exposure) that maps to white.",
                ),
                io.Boolean.Input(
                    "auto_exposure", default=False,
                    tooltip="Add the exposure that maps each image's log-average luminance to 0.18 "
                    "(useful for LEDiff's arbitrary-scale output).",
                ),
            ],
            outputs=[io.Image.Output("image", tooltip="sRGB-encoded image in 0..1. NaN/Inf pixels of the "
                                     "input are painted cyan (0, 1, 1), and the log says how many.")],
        )

    @classmethod
    def execute(cls, image, operator, exposure, white, auto_exposure) -> io.NodeOutput:
        check_image_size(image, "image")
        if note := nonfinite_warning(image):
            log.warning("Tone Map: %s", note)
        return io.NodeOutput(tone_map(image, operator, exposure, white, auto_exposure).to(image.device))


NODES = [ToneMap]
