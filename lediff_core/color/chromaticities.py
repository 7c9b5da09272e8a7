"""RGB <-> CIE XYZ from an EXR ``chromaticities`` attribute, the way OpenEXR's ImfChromaticities
(``RGBtoXYZ`` / ``XYZtoRGB``) defines it: the primaries' XYZ columns scaled so that RGB (1, 1, 1)
is the white point with Y = 1, and *no* chromatic adaptation between white points.

This is the fallback for chromaticities that are not one of the colour spaces OCIO's ACES config
knows (XYZ primaries, camera spaces), and the source of the luminance weights of
luminance/chroma (YC) files.
"""

from __future__ import annotations

import numpy as np

# (Rx, Ry, Gx, Gy, Bx, By, Wx, Wy), as an EXR chromaticities attribute stores them
Chromaticities = tuple[float, float, float, float, float, float, float, float]


def as_chromaticities(value) -> Chromaticities:
    """Accept the OpenEXR bindings' form (a tuple of 8 floats, possibly numpy scalars) or
    ((Rx, Ry), (Gx, Gy), (Bx, By), (Wx, Wy)); returns 8 Python floats."""
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size != 8 or not np.all(np.isfinite(flat)):
        raise ValueError(f"chromaticities must be 8 finite numbers (R, G, B, white x/y), got {value!r}")
    return tuple(float(v) for v in flat)  # type: ignore[return-value]


def rgb_to_xyz_matrix(chromaticities) -> np.ndarray:
    """3x3 float64 matrix M with XYZ = M @ RGB for linear RGB in the given primaries.

    Raises ValueError for degenerate chromaticities (collinear primaries, a white point with y = 0).
    """
    rx, ry, gx, gy, bx, by, wx, wy = as_chromaticities(chromaticities)
    if wy == 0:
        raise ValueError(f"a white point with y = 0 cannot be converted to XYZ: {chromaticities!r}")
    # columns: each primary's (x, y, z) chromaticity; scaled below so that RGB (1, 1, 1) is the
    # white point at Y = 1. Unlike XYZ-at-Y=1 columns this also works for primaries with y = 0
    # (CIE XYZ's own primaries).
    primaries = np.array([[x, y, 1 - x - y] for x, y in ((rx, ry), (gx, gy), (bx, by))], dtype=np.float64).T
    white = np.array([wx / wy, 1.0, (1 - wx - wy) / wy], dtype=np.float64)
    # Cramer's rule, not np.linalg.solve: LAPACK's first call makes OpenBLAS allocate its buffers,
    # and OpenBLAS exits the process when that fails, e.g. when a YC EXR is read with little memory
    # left (tests/core/io/test_decompression_bombs.py).
    r, g, b = primaries.T
    det = float(np.sum(r * np.cross(g, b)))
    if det == 0:
        raise ValueError(f"chromaticities {chromaticities!r} have collinear primaries")
    scale = np.array([np.sum(white * np.cross(g, b)), np.sum(r * np.cross(white, b)),
                      np.sum(r * np.cross(g, white))]) / det
    return primaries * scale


def xyz_to_rgb_matrix(chromaticities) -> np.ndarray:
    """Inverse of ``rgb_to_xyz_matrix``: the adjugate over the determinant (rows: cross products of
    the columns), not np.linalg.inv, for the reason given above."""
    c0, c1, c2 = rgb_to_xyz_matrix(chromaticities).T
    return np.stack([np.cross(c1, c2), np.cross(c2, c0), np.cross(c0, c1)]) / float(np.dot(c0, np.cross(c1, c2)))


def luminance_weights(chromaticities) -> np.ndarray:
    """Y of R, G and B (the middle row of RGB->XYZ): OpenEXR's ``computeYw``, used for YC files."""
    return rgb_to_xyz_matrix(chromaticities)[1].copy()
