"""Colour management node: HDR Color Space (linear spaces through OCIO, BT.2100 HLG and PQ, camera log
encodings and PU21)."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ...lediff_core.color import check_image_size
from ...lediff_core.color.ocio import WORKING_SPACE
from ...lediff_core.color.spaces import COLOR_SPACES, HLG_SPACE, convert_image

log = logging.getLogger("lediff")

_SPACES_HELP = (
    "Linear Rec.709 (sRGB) is the pack's working space (what HDR Decode gives: linear, sRGB "
    "primaries, D65). Linear P3-D65, Linear Rec.2020, ACEScg (AP1) and ACES2065-1 (AP0) are linear; "
    "HLG Rec.2020 (ComfyUI HDR) is ComfyUI core's HDR IMAGE (Save Image (Advanced), colorspace HDR); "
    "PQ Rec.2020 is an ST 2084 signal. ACEScct, ARRI LogC3 (EI 800) / LogC4, Sony S-Log3, PU21 and the "
    "signals of HDR LoRAs (LTX-2.3's HDR LoRA: LogC3 on Rec.709; DiffHDR: log-gamma; X2HDR: its quadratic "
    "PU21) are log signals, each on its own gamut: encode to one before a node that clamps to 0..1 "
    "(upscale, inpaint, face restore) and decode after it to keep values far above 1; decode a LoRA's "
    "VAE Decode output with its own."
)


class ColorSpace(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LEDiffColorSpace",
            display_name="HDR Color Space",
            category="LEDiff/color",
            description="Converts an HDR image between linear colour spaces (OpenColorIO's ACES config), "
            "ComfyUI's HLG HDR convention, PQ, camera log encodings (ACEScct, ARRI LogC3/LogC4, Sony "
            "S-Log3), PU21 and the log signals of HDR LoRAs (LTX-2.3, DiffHDR, X2HDR). Linear results are never "
            "clamped.",
            inputs=[
                io.Image.Input("image", tooltip="The image, in the source space (alpha passes through)."),
                io.Combo.Input(
                    "source", options=list(COLOR_SPACES), default=WORKING_SPACE,
                    tooltip="The space the image is in. " + _SPACES_HELP,
                ),
                io.Combo.Input(
                    "target", options=list(COLOR_SPACES), default=HLG_SPACE,
                    tooltip="The space to convert to. Encoding to HLG/PQ clips negative components to 0; "
                    "PQ and the PU21s clip above 10000 cd/m2 (linear 49.26 x reference_white); HLG keeps "
                    "values above its nominal peak (signal > 1, as core decodes them). The other logs keep "
                    "everything (a toe below black, no ceiling; signal 1 is linear 222.9 ACEScct, 55.08 LogC3 "
                    "and LTX-2.3, 469.8 LogC4, 38.42 S-Log3, 65536 DiffHDR). Decoding mirrors negative HLG/PQ "
                    "signals (negative light). The log says how many pixels were affected; NaN/Inf in or out "
                    "of a log encoding are an error.",
                ),
                io.Float.Input(
                    "reference_white", default=1.0, min=1e-6, max=1e6, step=0.01, optional=True,
                    tooltip="The linear value that is diffuse (paper) white. It maps to BT.2408's "
                    "reference white: HLG signal 0.75, PQ and the PU21s 203 cd/m2 (PQ signal 0.5807). Only used "
                    "when the source or target is HLG, PQ or a PU21 (the other logs take linear as it is: 0.18 "
                    "is mid grey).",
                ),
            ],
            outputs=[io.Image.Output("image", tooltip="The image in the target space (float32).")],
        )

    @classmethod
    def execute(cls, image, source, target, reference_white=1.0) -> io.NodeOutput:
        check_image_size(image, "image")
        out, notes = convert_image(image, source, target, reference_white)
        pixels = image.shape[0] * image.shape[1] * image.shape[2]
        for note in notes:
            log.warning("HDR Color Space (%s -> %s, %d pixels): %s", source, target, pixels, note)
        return io.NodeOutput(out.float())


NODES = [ColorSpace]
