"""Independent references for the colour tests: SMPTE RP 177 matrices written from their
definition, PyOpenColorIO called directly, and HDR test pixels."""

from __future__ import annotations

import numpy as np
import PyOpenColorIO as ocio

XYZ_PRIMARIES = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1 / 3, 1 / 3)


def rp177(chroma) -> np.ndarray:
    """SMPTE RP 177 normalised primary matrix (RGB -> XYZ, white at Y = 1), written here for the
    tests from its definition so that the pack's own matrices are not the reference."""
    rx, ry, gx, gy, bx, by, wx, wy = chroma
    p = np.array([[rx, gx, bx], [ry, gy, by], [1 - rx - ry, 1 - gx - gy, 1 - bx - by]], dtype=np.float64)
    w = np.array([wx / wy, 1.0, (1 - wx - wy) / wy])
    return p * np.linalg.solve(p, w)


def ocio_apply(pixels: np.ndarray, source: str, target: str) -> np.ndarray:
    out = np.ascontiguousarray(pixels, dtype=np.float32).copy()
    cfg = ocio.Config.CreateFromFile("ocio://default")
    cfg.getProcessor(source, target).getDefaultCPUProcessor().applyRGB(out)
    return out


def hdr_pixels(n=4096, seed=0, lo=-10.0, hi=5.0) -> np.ndarray:
    """Positive linear HDR over 15 stops, per-channel independent (saturated colours included)."""
    rng = np.random.default_rng(seed)
    return np.exp2(rng.uniform(lo, hi, (n, 3))).astype(np.float32)


def rel_error(got, want) -> float:
    """Largest error relative to each pixel's largest component."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float((np.abs(got - want) / np.abs(want).max(axis=-1, keepdims=True)).max())
