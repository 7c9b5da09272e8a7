"""Display formats for linear HDR: one module per format, each an encoder function plus its options.

A format is a ``DisplayFormat``: a file extension, ``encode(rgb, settings, exif) -> Encoded``,
``check_options(settings)`` (the options it uses) and ``check_size(width, height)`` (the sizes its
file cannot hold), both refused before anything is encoded or created, where ``rgb`` is linear HDR
in the pack's working space (Rec.709 primaries, D65) as float32 [H, W, 3], ``settings`` the node's
options and ``exif`` an optional TIFF (Exif) block carrying the workflow. Adding a format means one
module that registers itself in ``FORMATS`` (``registry.py``, which the format modules import: never
this package, which imports them) and is imported below, plus tests. Nothing here imports ComfyUI;
the node that publishes the bytes is Save HDR Image (``nodes/io/display.py``, through
``nodes/io/savers.py``).
"""

from __future__ import annotations

from .registry import (
    FORMATS,
    DisplayFormat,
    Encoded,
    FormatError,
    Settings,
    check_image,
    check_settings,
    count_above,
    encoder_threads,
    register,
)

__all__ = ["FORMATS", "FORMAT_NAMES", "DisplayFormat", "Encoded", "FormatError", "Settings", "check_image",
           "check_settings", "count_above", "encoder_threads", "register"]

# the formats register themselves on import; keep this list in the order the node offers them
from . import avif, jxl, png, radiance_hdr, tiff, ultrahdr  # noqa: E402,F401

FORMAT_NAMES = ("ultrahdr", "avif_pq", "avif_hlg", "jxl_linear", "png_pq", "png_hlg", "tiff_16bit", "tiff_half",
                "tiff_float", "radiance_hdr")
