"""PU21 perceptually uniform encoding of absolute luminance (Mantiuk & Azimi, "PU21: A novel
perceptually uniform encoding for adapting existing quality metrics for HDR", PCS 2021).

Only the ``banding_glare`` variant, the one recommended for HDR quality metrics. Input is absolute
luminance (or a linear colour channel) in cd/m^2; 100 cd/m^2 encodes to about 256, the value an
8-bit SDR metric would give to white, so PSNR uses a peak of 256.
"""

from __future__ import annotations

import numpy as np

# banding_glare parameters p1..p7 of the paper's Table 1
PU21_BANDING_GLARE = (
    0.353487901,
    0.3734658629,
    8.277049286e-05,
    0.9062562627,
    0.09150303166,
    0.9099517204,
    596.3148142,
)
PU21_L_MIN = 0.005  # cd/m^2, the encoding's domain
PU21_L_MAX = 10000.0
PU21_PEAK = 256.0  # PSNR peak and SSIM data range of PU21-encoded values


def pu21_encode(luminance: np.ndarray) -> np.ndarray:
    """PU21 (banding_glare) of absolute luminance in cd/m^2, clipped to the encoding's domain
    [0.005, 10000] first (as the reference implementation does); float64 out."""
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    y = np.clip(np.asarray(luminance, dtype=np.float64), PU21_L_MIN, PU21_L_MAX)
    yp = y**p4
    v = p7 * (((p1 + p2 * yp) / (1.0 + p3 * yp)) ** p5 - p6)
    return np.maximum(v, 0.0)
