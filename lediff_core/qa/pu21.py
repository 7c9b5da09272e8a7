"""PU21 perceptually uniform encoding of absolute luminance (Mantiuk & Azimi, "PU21: A novel
perceptually uniform encoding for adapting existing quality metrics for HDR", PCS 2021).

Only the ``banding_glare`` variant, the one recommended for HDR quality metrics. Input is absolute
luminance (or a linear colour channel) in cd/m^2; 100 cd/m^2 encodes to about 256, the value an
8-bit SDR metric would give to white, so PSNR uses a peak of 256. The curve and its parameters
live in ``lediff_core.color.log``, which also offers PU21 as an invertible image encoding.
"""

from __future__ import annotations

import numpy as np

from ..color.log import PU21_BANDING_GLARE, PU21_L_MAX, PU21_L_MIN, pu21_curve

__all__ = ["PU21_BANDING_GLARE", "PU21_L_MAX", "PU21_L_MIN", "PU21_PEAK", "pu21_encode"]

PU21_PEAK = 256.0  # PSNR peak and SSIM data range of PU21-encoded values


def pu21_encode(luminance: np.ndarray) -> np.ndarray:
    """PU21 (banding_glare) of absolute luminance in cd/m^2, clipped to the encoding's domain
    [0.005, 10000] first (as the reference implementation does); float64 out."""
    y = np.clip(np.asarray(luminance, dtype=np.float64), PU21_L_MIN, PU21_L_MAX)
    return np.maximum(pu21_curve(y), 0.0)
