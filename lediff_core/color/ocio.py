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

# The published primaries and white of each linear space, as an EXR ``chromaticities`` attribute
# stores them (Rx, Ry, Gx, Gy, Bx, By, Wx, Wy). They tag files and recognise them; the conversions
# themselves are OCIO's (tests check that these describe the same spaces as OCIO's matrices).
CHROMATICITIES = {
    # ITU-R BT.709 / IEC 61966-2-1 (sRGB), D65
    "Linear Rec.709 (sRGB)": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    # SMPTE EG 432-1 (Display P3 / P3-D65)
    "Linear P3-D65": (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290),
    # ITU-R BT.2020 / BT.2100, D65
    "Linear Rec.2020": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
    # ACES AP1 (Academy S-2014-004), ACES white (approx. D60)
    "ACEScg": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
    # ACES AP0 (SMPTE ST 2065-1), ACES white
    "ACES2065-1": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.0770, 0.32168, 0.33767),
}
# How far (largest difference of the 8 numbers) a file's chromaticities may be from a space's to
# count as that space: files round the same values differently (e.g. D65 as 0.31271, 0.32902).
CHROMATICITIES_TOLERANCE = 1e-3


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
        if rgb.shape[-1] == 3:
            return rgb.to(dtype) @ mt.T
        out = rgb.to(dtype).clone()
        out[..., :3] = rgb[..., :3].to(dtype) @ mt.T
        return out
    arr = np.asarray(rgb)
    out = np.array(arr, dtype=np.promote_types(arr.dtype, np.float32), copy=True)
    out[..., :3] = arr[..., :3] @ m.T.astype(out.dtype)
    return out


def space_of_chromaticities(chromaticities, tolerance: float = CHROMATICITIES_TOLERANCE) -> str | None:
    """The linear space (one of LINEAR_SPACES) whose published chromaticities are within
    ``tolerance`` of the given 8 numbers, or None for any other primaries (XYZ, camera spaces)."""
    value = np.asarray(chromaticities, dtype=np.float64).reshape(-1)
    if value.size != 8:
        raise ValueError(f"chromaticities must be 8 numbers (R, G, B, white x/y), got {chromaticities!r}")
    for name, known in CHROMATICITIES.items():
        if np.max(np.abs(value - np.asarray(known))) <= tolerance:
            return name
    return None
