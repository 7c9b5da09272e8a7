"""JPEG XL with float samples, linear transfer, Rec.709/sRGB primaries, D65, through libjxl in
``imagecodecs``: the working space as it is, values above 1 kept. 1.0 in the file is the reference
white (``imagecodecs`` exposes no intensity target, so libjxl's default of 255 cd/m2 applies).
Negative components (outside Rec.709) are kept too. The workflow goes in an ``Exif`` box of the
ISO BMFF container."""

from __future__ import annotations

import numpy as np

from .metadata import jxl_with_exif
from .registry import DisplayFormat, Encoded, Settings, check_image, encoder_threads, register


def jxl_options(quality: int) -> dict:
    """The ``imagecodecs.jpegxl_encode`` keywords of our files (shared with the benchmark)."""
    return dict(level=quality, usecontainer=True, numthreads=encoder_threads())


def encode(rgb: np.ndarray, settings: Settings, exif: bytes | None = None) -> Encoded:
    import imagecodecs

    t = check_image(rgb, settings)
    data = bytes(imagecodecs.jpegxl_encode(t.numpy(), **jxl_options(settings.quality)))
    if exif:
        data = jxl_with_exif(data, exif)
    return Encoded(data, 0, "none (float)")


register(DisplayFormat("jxl_linear", ".jxl", encode,
                       "JPEG XL, 32-bit float, linear Rec.709 primaries: lossless range, no peak"))
