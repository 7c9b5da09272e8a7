"""Reading linear HDR image files by extension."""

from __future__ import annotations

import os

from .exr import HDRImage, read_exr
from .radiance import read_hdr

EXTENSIONS = (".exr", ".hdr", ".pic")


def read_linear_image(path: str, layer: str = "") -> HDRImage:
    """Read an OpenEXR (optionally one ``layer`` of it) or Radiance RGBE file as linear RGB."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".exr":
        return read_exr(path, layer)
    if ext in (".hdr", ".pic"):
        if layer:
            raise ValueError(f"{path!r} is a Radiance file, which has no layers: leave layer empty")
        return read_hdr(path)
    raise ValueError(f"{path!r}: unsupported extension {ext!r}; expected one of {EXTENSIONS}")
