"""Reading linear HDR image files by extension."""

from __future__ import annotations

import os

from .exr import HDRImage, read_exr
from .radiance import read_hdr

EXTENSIONS = (".exr", ".hdr", ".pic")


def read_linear_image(
    path: str, layer: str = "", part: str = "", view: str = "", window: str = "data"
) -> HDRImage:
    """Read an OpenEXR (optionally one ``part``, ``view`` and ``layer`` of it, its data or display
    ``window``: see ``read_exr``) or Radiance RGBE file as linear RGB."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".exr":
        return read_exr(path, layer, part=part, view=view, window=window)
    if ext in (".hdr", ".pic"):
        for name, value in (("layer", layer), ("part", part), ("view", view)):
            if value:
                raise ValueError(
                    f"{path!r} is a Radiance file, which has no {name}s: leave {name} empty"
                )
        return read_hdr(path)
    raise ValueError(f"{path!r}: unsupported extension {ext!r}; expected one of {EXTENSIONS}")
