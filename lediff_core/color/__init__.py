"""Colour science: the working colour space, conversions between linear spaces, transfer curves.

Owns the pack's working space (linear Rec.709/sRGB primaries, D65) and, here, its sRGB transfer
function and luminance; chromaticities and RGB/XYZ matrices (``chromaticities``); every conversion
between linear colour spaces, through one OpenColorIO helper (``ocio``); ComfyUI's HLG and PQ image
conventions (``spaces``, ``transfer``); exact PQ/HLG code quantisation (``quantize``) and tone
mapping for previews (``tonemap``). Torch tensors or numpy arrays, never clamped. Imports nothing
else of lediff_core; never ComfyUI, ``nodes`` or ``lediff_runner``.
"""

from __future__ import annotations

import torch

# Rec.709 / sRGB primaries with a D65 white point, as (Rx, Ry, Gx, Gy, Bx, By, Wx, Wy): what an
# EXR `chromaticities` attribute holds for linear sRGB data.
REC709_CHROMATICITIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)

# Relative luminance of linear Rec.709 RGB (ITU-R BT.709).
REC709_LUMA = (0.2126, 0.7152, 0.0722)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB transfer function (IEC 61966-2-1), extended to values outside 0..1.

    Values above 1 continue the power segment and negatives mirror it, so nothing is clamped.
    """
    a = x.abs()
    lin = torch.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)
    return torch.sign(x) * lin


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function, extended to values outside 0..1 the same way as its inverse."""
    a = x.abs()
    enc = torch.where(a <= 0.0031308, a * 12.92, 1.055 * a ** (1 / 2.4) - 0.055)
    return torch.sign(x) * enc


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Luminance of linear Rec.709 RGB in the last dimension (keeps that dimension, size 1)."""
    w = torch.tensor(REC709_LUMA, dtype=rgb.dtype, device=rgb.device)
    return (rgb[..., :3] * w).sum(dim=-1, keepdim=True)
