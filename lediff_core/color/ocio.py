"""The one path for conversions between linear colour spaces: OpenColorIO's built-in ACES config.

``opencolorio`` (PyPI, BSD-3) ships the ACES "CG" config in its wheel as ``ocio://default``, so the
matrices (including the Bradford-adapted D65 <-> ACES white conversions) are OCIO's own, not ours.
The pack's working space is ``WORKING_SPACE``: linear Rec.709/sRGB primaries, D65 white, which is
what HDR Decode produces.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

WORKING_SPACE = "Linear Rec.709 (sRGB)"
# The linear spaces the nodes offer, by their names in OCIO's default (ACES CG) config.
LINEAR_SPACES = ("Linear Rec.709 (sRGB)", "Linear P3-D65", "Linear Rec.2020", "ACEScg", "ACES2065-1")
DEFAULT_CONFIG = "ocio://default"


@lru_cache(maxsize=1)
def config():
    import PyOpenColorIO as ocio  # imported lazily: a pack import must not need it

    return ocio.Config.CreateFromFile(DEFAULT_CONFIG)


@lru_cache(maxsize=64)
def _processor(source: str, target: str):
    names = {cs.getName() for cs in config().getColorSpaces()}
    for name in (source, target):
        if name not in names:
            raise ValueError(f"unknown colour space {name!r}; OCIO's default config has {sorted(names)}")
    return config().getProcessor(source, target).getDefaultCPUProcessor()


@lru_cache(maxsize=64)
def linear_matrix(source: str, target: str) -> np.ndarray:
    """The 3x3 matrix OCIO applies between two linear spaces (read back from the processor by
    transforming the unit vectors, so that large images can go through torch instead of a copy)."""
    basis = np.eye(3, dtype=np.float32).copy()
    _processor(source, target).applyRGB(basis)
    # applyRGB transforms each row (a pixel); the matrix's columns are the transformed unit vectors
    return basis.T.astype(np.float64)


def convert_linear(rgb, source: str, target: str):
    """Convert linear RGB (numpy array or torch tensor, channels last; a 4th alpha channel passes
    through) from ``source`` to ``target`` (OCIO colour space names, see LINEAR_SPACES).
    Never clamps. Returns the same type (torch keeps device, computes in at least float32)."""
    if source == target:
        return rgb
    m = linear_matrix(source, target)
    if isinstance(rgb, torch.Tensor):
        dtype = torch.promote_types(rgb.dtype, torch.float32)
        mt = torch.as_tensor(m, dtype=dtype, device=rgb.device)
        out = rgb.to(dtype).clone()
        out[..., :3] = rgb[..., :3].to(dtype) @ mt.T
        return out
    arr = np.asarray(rgb)
    out = np.array(arr, dtype=np.promote_types(arr.dtype, np.float32), copy=True)
    out[..., :3] = arr[..., :3] @ m.T.astype(out.dtype)
    return out
