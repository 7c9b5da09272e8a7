"""Radiance RGBE (``.hdr``), run-length encoded, through the pack's own writer
(``lediff_core.io.radiance.encode_hdr``): the format of image-based-lighting tools and HDRI
libraries. Linear Rec.709 primaries, D65 (a ``PRIMARIES=`` header line says so), 1.0 = reference
white, values above 1 kept with RGBE's precision (8-bit mantissas sharing an exponent: about 1 %
of the pixel's largest component). RGBE holds no negative components: they become 0 and are
counted. No workflow metadata: common readers (OpenCV's among them) read header lines into
fixed-size buffers, and a long JSON line could end their header early."""

from __future__ import annotations

import numpy as np

from ..radiance import REC709_PRIMARIES_LINE, RGBE_MAX, encode_hdr
from .registry import DisplayFormat, Encoded, Settings, check_image, count_above, register


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None) -> Encoded:
    t = check_image(rgb, settings)
    over = count_above(t, RGBE_MAX)
    negative = int((t.amin(dim=-1) < 0).sum())
    data = encode_hdr(t.clamp(min=0).numpy(), (REC709_PRIMARIES_LINE, "SOFTWARE=LEDiff for ComfyUI"))
    peak = f"{RGBE_MAX:.3g}x reference white (RGBE's largest)"
    if negative:
        peak += f"; {negative} pixel(s) with negative components (outside Rec.709) written as 0"
    return Encoded(data, over, peak)


register(DisplayFormat("radiance_hdr", ".hdr", encode,
                       "Radiance RGBE, run-length encoded, linear Rec.709: for IBL and HDRI tools",
                       workflow=False))
